"""The `segment` stage: corpus files → vibrato words + SentencePiece ids → whole-word groups → document shards.

One input file is one unit of work and one output shard. A unit writes its shard under a temporary
name and, once complete, a small report in `units/` that records the shard's checksum: a rerun
skips the units whose report and shard agree and redoes the rest.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from wwm_prep import __version__
from wwm_prep.align import Misaligned, word_starts, word_starts_from_offsets
from wwm_prep.corpus import Document, InputFile, discover, read_records
from wwm_prep.dictionary import Dictionary, load_dictionary
from wwm_prep.errors import WwmPrepError
from wwm_prep.shards import ShardWriter, load_schema, sha256_file, write_json_atomic
from wwm_prep.tokenizer import SPACE_MARK, Tokenizer, load_tokenizer

BATCH_TOKENS = 1 << 21  # rows are flushed to the shard every ~2 M tokens: memory stays flat
COUNTS = ("documents", "characters", "words", "tokens", "groups", "empty", "rejects", "exact_path", "not_reversible")


@dataclass(frozen=True)
class Segmented:
    ids: np.ndarray  # int32
    word_starts: np.ndarray  # uint8
    words: int
    exact_path: bool  # the fast offset arithmetic did not add up, offsets were asked of both tools


class Segmenter:
    """Words and tokens of one text, aligned into whole-word groups."""

    def __init__(self, dictionary: Dictionary, tokenizer: Tokenizer):
        self.dictionary = dictionary
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> Segmented:
        tok = self.tokenizer
        surfaces = self.dictionary.tagger.tokenize_to_surfaces(text)
        ids = np.asarray(tok.sp.encode(text), dtype=np.int32)
        lengths = np.fromiter(map(len, surfaces), dtype=np.int64, count=len(surfaces))
        try:
            starts = word_starts(text, ids, lengths, tok.piece_bytes, tok.whitespace, self.dictionary.space)
            return Segmented(ids, starts, len(surfaces), False)
        except Misaligned:
            return self._exact(text)

    def _exact(self, text: str) -> Segmented:
        pieces = self.tokenizer.sp.encode(text, return_type="proto").pieces
        ids = np.array([p.id for p in pieces], dtype=np.int32)
        token_spans = np.array([(p.begin, p.end) for p in pieces], dtype=np.int64).reshape(-1, 2)
        words = self.dictionary.tagger.tokenize(text)
        word_spans = np.array([(w.start(), w.end()) for w in words], dtype=np.int64).reshape(-1, 2)
        starts = word_starts_from_offsets(text, token_spans, word_spans, ids, self.tokenizer.whitespace)
        return Segmented(ids, starts, len(words), True)


def _list_array(arrays: list[np.ndarray], dtype: pa.DataType) -> pa.ListArray:
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    values = np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype.to_pandas_dtype())
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=dtype))


class _Rows:
    """Documents waiting to be written as one record batch."""

    def __init__(self, unit: InputFile):
        self.unit = unit
        self.ids: list[np.ndarray] = []
        self.starts: list[np.ndarray] = []
        self.lines: list[int] = []
        self.chars: list[int] = []
        self.words: list[int] = []
        self.tokens = 0

    def add(self, doc: Document, seg: Segmented) -> None:
        self.ids.append(seg.ids)
        self.starts.append(seg.word_starts)
        self.lines.append(doc.line)
        self.chars.append(len(doc.text))
        self.words.append(seg.words)
        self.tokens += len(seg.ids)

    def columns(self) -> dict[str, Any]:
        n = len(self.lines)
        return {
            "input_ids": _list_array(self.ids, pa.int32()),
            "word_starts": _list_array(self.starts, pa.uint8()),
            "subset": pa.array([self.unit.subset] * n, type=pa.string()),
            "source": pa.array([self.unit.source] * n, type=pa.string()),
            "line": pa.array(self.lines, type=pa.int64()),
            "num_chars": pa.array(self.chars, type=pa.int32()),
            "num_words": pa.array(self.words, type=pa.int32()),
        }


def segment_file(unit: InputFile, out_dir: Path, segmenter: Segmenter) -> dict[str, Any]:
    """Segment one input file into `<unit>.arrow`; rejected records go to `rejects/<unit>.jsonl`.

    Returns the unit's report (counts, shard checksum). I/O and decompression errors propagate and
    leave no shard behind.
    """
    counts = dict.fromkeys(COUNTS, 0)
    shard = out_dir / f"{unit.unit}.arrow"
    rejects_path = out_dir / "rejects" / f"{unit.unit}.jsonl"
    rejects_tmp = rejects_path.with_name(f".{rejects_path.name}.tmp")
    rejects_tmp.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with ShardWriter(shard, load_schema("document")) as writer, open(rejects_tmp, "w", encoding="utf-8") as rejects:
        rows = _Rows(unit)
        for record in read_records(unit.path):
            if not isinstance(record, Document):
                rejects.write(json.dumps(record.record(unit.source), ensure_ascii=False) + "\n")
                counts["rejects"] += 1
                continue
            if not record.text or record.text.isspace():
                counts["empty"] += 1
                continue
            seg = segmenter(record.text)
            rows.add(record, seg)
            counts["documents"] += 1
            counts["characters"] += len(record.text)
            counts["words"] += seg.words
            counts["tokens"] += len(seg.ids)
            counts["groups"] += int(np.count_nonzero(seg.word_starts))
            counts["exact_path"] += seg.exact_path
            counts["not_reversible"] += SPACE_MARK in record.text
            if rows.tokens >= BATCH_TOKENS:
                writer.write(rows.columns())
                rows = _Rows(unit)
        if rows.lines or writer.rows == 0:
            writer.write(rows.columns())
        digest = writer.close()
    if counts["rejects"]:
        rejects_tmp.replace(rejects_path)
    else:
        rejects_tmp.unlink()
        rejects_path.unlink(missing_ok=True)
    return {
        "source": unit.source,
        "subset": unit.subset,
        "shard": shard.name,
        "sha256": digest,
        "rejects_file": f"rejects/{rejects_path.name}" if counts["rejects"] else None,
        "seconds": round(time.perf_counter() - started, 3),
        **counts,
    }


def _config(dictionary: Dictionary, tokenizer: Tokenizer) -> dict[str, Any]:
    schema = load_schema("document")
    return {
        "stage": "segment",
        "schema": {"name": schema.name, "version": schema.version},
        "dictionary": dictionary.describe(),
        "tokenizer": {
            "path": str(tokenizer.path),
            "sha256": tokenizer.sha256,
            "vocab_size": tokenizer.vocab_size,
            "special_ids": tokenizer.special_ids,
        },
    }


def _same_config(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Paths may differ between machines; what the output depends on is the hashes and the schema."""

    def key(c: dict[str, Any]) -> tuple[Any, ...]:
        return (c["stage"], c["schema"], c["dictionary"]["sha256"], c["dictionary"]["ignore_space"],
                c["dictionary"]["max_grouping_len"], c["tokenizer"]["sha256"])

    return key(a) == key(b)


def _completed(out_dir: Path, unit: InputFile) -> dict[str, Any] | None:
    report_path = out_dir / "units" / f"{unit.unit}.json"
    if not report_path.is_file():
        return None
    report = json.loads(report_path.read_text(encoding="utf-8"))
    shard = out_dir / report["shard"]
    if report.get("source") != unit.source or not shard.is_file() or sha256_file(shard) != report["sha256"]:
        return None
    return report


def run_segment(
    inputs: Iterable[str],
    out_dir: Path,
    *,
    dictionary: str | None = None,
    tokenizer: str | None = None,
    subsets: Iterable[str] | None = None,
    overwrite: bool = False,
    cache: Path | None = None,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
) -> dict[str, Any]:
    """Segment every input file into `out_dir` and write `manifest.json`; returns the manifest.

    Files that fail are named in the manifest's `failed` list; the others still complete.
    """
    inputs = list(inputs)
    files = discover(inputs, subsets)
    dic = load_dictionary(dictionary, cache)
    tok = load_tokenizer(tokenizer)
    segmenter = Segmenter(dic, tok)
    config = _config(dic, tok)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "units").mkdir(exist_ok=True)
    config_path = out_dir / "config.json"
    if config_path.is_file() and not overwrite:
        previous = json.loads(config_path.read_text(encoding="utf-8"))
        if not _same_config(previous, config):
            raise WwmPrepError(
                f"{out_dir} holds output made with another configuration (dictionary or tokenizer); "
                "choose another --out, or pass --overwrite to redo it"
            )
    elif overwrite:
        for old in (out_dir / "units").glob("*.json"):
            old.unlink()
    write_json_atomic(config_path, config)

    units: dict[str, dict[str, Any]] = {}
    failed: list[dict[str, str]] = []
    for unit in files:
        report = _completed(out_dir, unit)
        if report is not None:
            log(f"skip {unit.source}: already done")
        else:
            try:
                report = segment_file(unit, out_dir, segmenter)
            except (OSError, EOFError, ValueError) as exc:  # unreadable, truncated, corrupt compression
                failed.append({"source": unit.source, "path": str(unit.path), "error": f"{type(exc).__name__}: {exc}"})
                log(f"FAILED {unit.source}: {exc}")
                continue
            write_json_atomic(out_dir / "units" / f"{unit.unit}.json", report)
            log(f"done {unit.source}: {report['documents']} documents, {report['tokens']} tokens, "
                f"{report['rejects']} rejects")
        units[unit.unit] = report

    totals = {name: sum(int(u[name]) for u in units.values()) for name in COUNTS}
    manifest = {
        "kind": "documents",
        "wwm_prep_version": __version__,
        "config": config,
        "inputs": [str(i) for i in inputs],
        "units": units,
        "totals": totals,
        "failed": failed,
    }
    write_json_atomic(out_dir / "manifest.json", manifest)
    return manifest
