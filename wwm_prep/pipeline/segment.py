"""The `segment` stage: corpus files → vibrato words + SentencePiece ids → whole-word groups → document shards.

One chunk of an input file (`chunks`; a small file is one chunk) is one unit of work and one output shard. Units
follow the protocol of `units`: claimed, written under temporary names, then vouched for by a report in `units/`
that records the shard's checksum and what its input was, so a rerun skips the units whose report, shard and
input agree and redoes the rest, and runs sharing the output take the units no other run holds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from wwm_prep.core.arrays import offsets_of
from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.files import temp_path
from wwm_prep.core.groups import count_groups
from wwm_prep.core.manifest import DocumentConfig, DocumentManifest, TokenizerRecord, schema_ref
from wwm_prep.core.shards import ShardWriter, load_schema
from wwm_prep.core.storage import Output, local_copy, location, recorded
from wwm_prep.pipeline.align import Aligned, Spaces, align_batch, align_offsets
from wwm_prep.pipeline.chunks import INDEX_DIR, Chunk, index_files, same_input
from wwm_prep.pipeline.config import SegmentConfig
from wwm_prep.pipeline.corpus import TEXT, Document, InputFile, UnreadableFile, discover, read_records
from wwm_prep.pipeline.executor import Executor, LocalExecutor, Slice
from wwm_prep.pipeline.progress import Counters, Elapsed, ProgressDisplay
from wwm_prep.pipeline.outputs import Identity, claim_output
from wwm_prep.pipeline.units import Made, Status, UnitFailed, UnitStage, announce, drive, gather, lock
from wwm_prep.text.dictionary import Dictionary, DictionaryFiles, locate_dictionary
from wwm_prep.text.registry import cache_dir
from wwm_prep.text.tokenizer import SPACE_MARK, Tokenizer, load_tokenizer, recorded_location

COUNTS = ("documents", "characters", "words", "tokens", "groups", "empty", "rejects", "exact_path", "not_reversible")


BATCH_CHARS = 1 << 20  # documents are aligned and written ~1 M characters at a time: memory stays flat
VIBRATO_CHARS = 100_000  # the longest text vibrato sees in one call (see _chunks)


def _chunks(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Spans of `text[start:end]` to give vibrato one at a time: its memory grows by ~600 bytes per character
    of one call and is not given back, so a very long document is cut after its last line or sentence end
    (else anywhere) within each VIBRATO_CHARS characters."""
    end = len(text) if end is None else end
    spans = []
    while end - start > VIBRATO_CHARS:
        limit = start + VIBRATO_CHARS
        cut = max(text.rfind("\n", start + VIBRATO_CHARS // 2, limit), text.rfind("。", start + VIBRATO_CHARS // 2, limit))
        cut_at = cut + 1 if cut >= 0 else limit
        spans.append((start, cut_at))
        start = cut_at
    spans.append((start, end))
    return spans


def _lines(text: str) -> list[tuple[int, int]]:
    """Spans of the lines of `text`, each with its newline (as MeCab's and vibrato's command-line tools read)."""
    bounds = [0]
    while (at := text.find("\n", bounds[-1])) >= 0:
        bounds.append(at + 1)
    if bounds[-1] < len(text) or len(bounds) == 1:
        bounds.append(len(text))
    return [span for a, b in zip(bounds, bounds[1:]) for span in _chunks(text, a, b)]


class Segmenter:
    """Words and tokens of texts, aligned into whole-word groups.

    vibrato reads each document whole (a very long one in pieces), or with `split_lines` one line at a time:
    a line start is then a sentence start for it, which moves a few word boundaries near line ends.
    """

    def __init__(self, dictionary: Dictionary, tokenizer: Tokenizer, split_lines: bool = False):
        self.dictionary = dictionary
        self.tokenizer = tokenizer
        self.split_lines = split_lines
        self.spaces = Spaces.from_table(dictionary.space)

    def _spans(self, text: str) -> list[tuple[int, int]]:
        return _lines(text) if self.split_lines else _chunks(text)

    def __call__(self, texts: list[str]) -> Aligned:
        tok, tagger = self.tokenizer, self.dictionary.tagger
        surfaces = [tagger.tokenize_to_surfaces(text) if len(text) <= VIBRATO_CHARS and not self.split_lines else
                    [s for start, end in self._spans(text) for s in tagger.tokenize_to_surfaces(text[start:end])]
                    for text in texts]
        ids = [tok.sp.encode(text) for text in texts]
        aligned = align_batch(texts, ids, surfaces, tok.piece_bytes, tok.whitespace, self.spaces)
        doc_tokens = offsets_of(aligned.token_counts)
        for i in aligned.misaligned:
            aligned.word_starts[doc_tokens[i] : doc_tokens[i + 1]] = self._exact(texts[i], aligned.ids[doc_tokens[i] : doc_tokens[i + 1]])
        return aligned

    def _exact(self, text: str, ids: np.ndarray) -> np.ndarray:
        pieces = self.tokenizer.sp.encode(text, return_type="proto").pieces
        if [p.id for p in pieces] != ids.tolist():
            raise AssertionError("SentencePiece gave different ids for the same text")
        token_spans = np.array([(p.begin, p.end) for p in pieces], dtype=np.int64).reshape(-1, 2)
        word_spans = np.array([(start + w.start(), start + w.end()) for start, end in self._spans(text)
                               for w in self.dictionary.tagger.tokenize(text[start:end])], dtype=np.int64).reshape(-1, 2)
        tok = self.tokenizer
        return align_offsets(text, token_spans, word_spans, ids, tok.continuation)


def _list_array(values: np.ndarray, counts: np.ndarray, dtype: pa.DataType) -> pa.ListArray:
    offsets = offsets_of(counts).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=dtype))


def _columns(chunk: Chunk, docs: list[Document], seg: Aligned) -> dict[str, Any]:
    n = len(docs)
    return {
        "input_ids": _list_array(seg.ids, seg.token_counts, pa.int32()),
        "word_starts": _list_array(seg.word_starts, seg.token_counts, pa.uint8()),
        "subset": pa.array([chunk.file.subset] * n, type=pa.string()),
        "source": pa.array([chunk.source] * n, type=pa.string()),
        "line": pa.array([d.line for d in docs], type=pa.int64()),
        "num_chars": pa.array([len(d.text) for d in docs], type=pa.int32()),
        "num_words": pa.array(seg.word_counts, type=pa.int32()),
    }


Progress = Callable[..., None]  # Counters.add: input bytes read, documents, tokens since the last call


def segment_file(chunk: Chunk, out_dir: Path, segmenter: Segmenter, progress: Progress | None = None,
                 text_column: str = TEXT) -> dict[str, Any]:
    """Segment one chunk of an input file (or all of it) into `<unit>.arrow`, its texts in `text_column`;
    rejected records go to `rejects/<unit>.jsonl`, with the file's own line (or row) numbers.

    Returns the unit's report (counts, shard checksum). I/O and decompression errors propagate and
    leave no shard behind.
    """
    counts = dict.fromkeys(COUNTS, 0)
    reasons: dict[str, int] = {}  # of rejects, by kind (the part of the reason before any detail)
    shard = out_dir / f"{chunk.unit}.arrow"
    rejects_path = out_dir / "rejects" / f"{chunk.unit}.jsonl"
    rejects_tmp = temp_path(rejects_path)
    rejects_tmp.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    reader = read_records(chunk.file.path, chunk.span if chunk.count > 1 else None, text_column)
    reported = 0

    def flush(writer: ShardWriter, batch: list[Document], chars: int) -> None:
        nonlocal reported
        seg = segmenter([d.text for d in batch])
        writer.write(_columns(chunk, batch, seg))
        counts["documents"] += len(batch)
        counts["characters"] += chars
        counts["words"] += int(seg.word_counts.sum())
        counts["tokens"] += len(seg.ids)
        doc_starts = np.cumsum(seg.token_counts) - seg.token_counts
        counts["groups"] += count_groups(~segmenter.tokenizer.special[seg.ids], seg.word_starts, doc_starts)
        counts["exact_path"] += seg.exact_path
        counts["not_reversible"] += sum(SPACE_MARK in d.text for d in batch)
        if progress is not None:
            progress(bytes=reader.consumed - reported, documents=len(batch), tokens=len(seg.ids))
            reported = reader.consumed

    try:
        with ShardWriter(shard, load_schema("document")) as writer, open(rejects_tmp, "w", encoding="utf-8") as rejects:
            batch: list[Document] = []
            chars = 0
            for record in reader:
                if not isinstance(record, Document):
                    rejects.write(json.dumps(record.record(chunk.source), ensure_ascii=False) + "\n")
                    counts["rejects"] += 1
                    kind = record.reason.split(":")[0]
                    reasons[kind] = reasons.get(kind, 0) + 1
                elif not record.text or record.text.isspace():
                    counts["empty"] += 1
                else:
                    batch.append(record)
                    chars += len(record.text)
                    if chars >= BATCH_CHARS:
                        flush(writer, batch, chars)
                        batch, chars = [], 0
            if batch or writer.rows == 0:
                flush(writer, batch, chars)
            digest = writer.close()
    except BaseException:
        rejects_tmp.unlink(missing_ok=True)
        raise
    if progress is not None:
        progress(bytes=max(chunk.size - reported, 0))
    if counts["rejects"]:
        rejects_tmp.replace(rejects_path)
    else:
        rejects_tmp.unlink()
        rejects_path.unlink(missing_ok=True)
    return {
        "source": chunk.source,
        "subset": chunk.file.subset,
        "shard": shard.name,
        "sha256": digest,
        "bytes": shard.stat().st_size,
        "rejects_file": f"rejects/{rejects_path.name}" if counts["rejects"] else None,
        "reject_reasons": reasons,
        "seconds": round(time.perf_counter() - started, 3),
        **counts,
    }


def _document_config(dictionary: DictionaryFiles, tokenizer: Tokenizer, config: SegmentConfig) -> DocumentConfig:
    schema = load_schema("document")
    where = recorded_location(config.tokenizer, tokenizer.path)
    record = TokenizerRecord(tokenizer.sha256, tokenizer.special_ids, where, tokenizer.vocab_size)
    return DocumentConfig(schema_ref(schema.name, schema.version), dictionary.describe(), record,
                          split_lines=config.split_lines, text_column=config.text_column)


@dataclass
class SegmentStage(UnitStage[Chunk]):
    """One unit = one chunk of an input file; prepared once per worker process (the dictionary is the cost)."""

    stage = "segment"
    out: Output
    config: SegmentConfig
    counters: Counters | None = None  # shared with forked workers, for the progress display
    segmenter: Segmenter | None = None

    def __post_init__(self) -> None:
        self.claim_timeout = self.config.claim_timeout

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "segmenter": None, "counters": None}  # Ray workers load their own

    @staticmethod
    def locate(c: SegmentConfig) -> tuple[DictionaryFiles, Tokenizer]:
        """The dictionary found and hashed, and the tokenizer loaded: what checks a run before the slow load."""
        tokenizer = local_copy(location(c.tokenizer), cache_dir(c.cache)) if c.tokenizer else None
        return locate_dictionary(c.dictionary, c.cache, vibrato_defaults=c.vibrato_defaults), load_tokenizer(tokenizer)

    def prepare(self, located: tuple[DictionaryFiles, Tokenizer] | None = None) -> None:
        for folder in ("units", "rejects"):  # and a Ray node's own staging, for a URL
            (self.out.local / folder).mkdir(parents=True, exist_ok=True)
        if self.segmenter is None:
            dictionary, tokenizer = located or self.locate(self.config)
            self.segmenter = Segmenter(dictionary.load(self.config.cache), tokenizer,
                                       split_lines=self.config.split_lines)

    def name(self, unit: Chunk) -> str:
        return unit.unit

    def done(self, unit: Chunk) -> tuple[dict[str, Any] | None, str | None]:
        """The chunk's report where its shard is done and still matches; else why an earlier one does not hold.

        Reports written before inputs were stamped are trusted as they are, so an upgrade does not redo a run."""
        report = self.out.read_json(f"units/{unit.unit}.json")
        if not isinstance(report, dict):
            return None, None
        if report.get("source") != unit.source or not self.out.holds(report["shard"], report["sha256"],
                                                                     report.get("bytes")):
            return None, "its shard is missing or changed"
        if "input" in report and not same_input(report["input"], unit.stamp):  # the index checked it just now, once
            return None, "it has changed since its shard was made"
        if unit.count > 1 and report.get("chunk") != unit.record():
            return None, "its chunk's bounds moved"
        return report, None

    def temps(self, unit: Chunk) -> Iterable[Path]:
        local = self.out.local
        return [*local.glob(f".{unit.unit}.arrow.tmp-*"), *local.glob(f"rejects/.{unit.unit}.jsonl.tmp-*")]

    def work(self, unit: Chunk) -> Made:
        assert self.segmenter is not None
        if self.out.remote and unit.span.gzip_index is not None:  # the seek points, fetched to this node once
            seek = local_copy(location(f"{self.out.target}/{INDEX_DIR}/{unit.span.gzip_index.name}"),
                              cache_dir(self.config.cache))
            unit = replace(unit, span=replace(unit.span, gzip_index=seek))
        try:
            report = segment_file(unit, self.out.local, self.segmenter, self.counters.add if self.counters else None,
                                  self.config.text_column)
        except UnreadableFile as exc:
            raise UnitFailed(str(exc)) from exc
        # the stamp taken before the file was indexed: a file that changes after it is indexed again, and redone
        report.update(unit=unit.unit, path=recorded(unit.file.path), input=unit.stamp)
        if unit.count > 1:
            report["chunk"] = unit.record()
        return Made(report, [name for name in (report["shard"], report["rejects_file"]) if name])


def run_segment(inputs: Iterable[str], out_dir: Path | str, config: SegmentConfig = SegmentConfig(), *,
                executor: Executor = LocalExecutor(), part: Slice = Slice(), quiet: bool = False) -> DocumentManifest:
    """Segment the input files' chunks (or the `part` of them an array job takes) into `out_dir`, skipping units
    already done, and write `manifest.json`; returns the manifest.

    Files that fail are named in the manifest's `failed` list; the others still complete. The
    manifest is `complete` once every chunk of every input file of the run has its shard.
    """
    inputs = list(inputs)
    files = discover(inputs, config.subsets)
    if config.chunk_size < 1:
        raise WwmPrepError(f"--chunk-size must be at least 1 byte, not {config.chunk_size}")
    located = SegmentStage.locate(config)
    doc_config = _document_config(*located, config)
    identity = Identity.of("segment", [recorded(f.path) for f in files], doc_config.to_dict())
    out = claim_output(out_dir, cache_dir(config.cache) / "staging", identity, overwrite=config.overwrite,
                       claim_timeout=config.claim_timeout, differences=_config_differences)
    stage = SegmentStage(out, config, Counters())
    try:
        chunks, failed = index_files(out, files, config.chunk_size, config.verify_inputs, config.claim_timeout,
                                     executor, quiet, config.text_column)
        found = located[0]
        first_use = ", converted for vibrato on first use" if found.converts_first(config.cache) else ""
        with Elapsed(f"loading dictionary {found.name} ({found.format}{first_use})", quiet=quiet):
            stage.prepare(located)
        checked = {c.unit: stage.done(c) for c in chunks}
        reports = {name: report for name, (report, _) in checked.items() if report is not None}
        mine = part.of(chunks)
        todo = [c for c in mine if c.unit not in reports]
        labels = {c.unit: c.label for c in chunks}
        with ProgressDisplay(stage.counters, sum(c.size for c in todo), "segment", units=len(todo),  # type: ignore[arg-type]
                             what="chunks", quiet=quiet) as display:
            announce(display, [(c.label, checked[c.unit][0], checked[c.unit][1]) for c in mine])
            for line in _unfinished(mine, checked) + [f"whole {c.label}: {c.note}" for c in mine if c.note]:
                display.write(line)
            by_name = {c.unit: c for c in todo}
            results = drive(stage, executor, todo, reports, display, labels.__getitem__, _summary, _progress)
            failed += [{"unit": r.name, "source": by_name[r.name].source,
                        "path": recorded(by_name[r.name].file.path), "error": r.why}
                       for r in results if r.status is Status.FAILED]
        manifest = _write_manifest(out, inputs, doc_config, stage, files, chunks, reports, failed)
        return replace(manifest, done_here=frozenset(r.name for r in results if r.status is Status.DONE))
    except OSError as exc:  # the output side: read-only directory, full disk
        raise WwmPrepError(f"cannot write to {out_dir}: {exc.strerror or exc}") from exc


def _unfinished(mine: list[Chunk], checked: dict[str, tuple[dict[str, Any] | None, str | None]]) -> list[str]:
    """Per file cut into chunks, the chunks an earlier run left undone (killed or stopped mid-file)."""
    lines = []
    for source in dict.fromkeys(c.source for c in mine if c.count > 1):
        chunks = [c for c in mine if c.source == source]
        left = [c for c in chunks if checked[c.unit] == (None, None)]
        if left and len(left) < len(chunks):
            lines.append(f"redo {source}: chunk(s) {', '.join(str(c.index + 1) for c in left)} of {left[0].count}, "
                         "which an earlier run did not finish")
    return lines


def _summary(report: dict[str, Any]) -> str:
    return f"{report['documents']} documents, {report['tokens']} tokens, {report['rejects']} rejects"


def _progress(report: dict[str, Any]) -> dict[str, int]:
    chunk = report.get("chunk")
    return {"bytes": chunk["end"] - chunk["start"] if chunk else report["input"]["size"],
            "documents": report["documents"], "tokens": report["tokens"]}


def _config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return DocumentConfig.from_dict(old).differences(DocumentConfig.from_dict(new))


def _write_manifest(out: Output, inputs: list[str], config: DocumentConfig, stage: SegmentStage,
                    files: list[InputFile], chunks: list[Chunk], reports: dict[str, dict[str, Any]],
                    failed: list[dict[str, Any]]) -> DocumentManifest:
    """The manifest of every unit done so far, by this run or by another sharing the output directory: under a
    lock, the units others finished meanwhile are gathered too, so the run that finishes last writes it whole.
    Units the inputs no longer have (a file was cut otherwise before it changed) go."""
    with lock(out):
        gather(stage, chunks, reports)
        _remove_stale(out, {c.unit for c in chunks})
        failed = [f for f in failed if f["unit"] not in reports]
        units = {name: {k: v for k, v in r.items() if k != "unit"} for name, r in sorted(reports.items())}
        indexed = {c.file.unit for c in chunks}
        manifest = DocumentManifest(
            config=config,
            inputs=[recorded(i) for i in inputs],
            units=units,
            totals={name: sum(int(u[name]) for u in units.values()) for name in COUNTS},
            failed=failed,
            missing=sorted([c.unit for c in chunks if c.unit not in reports] +
                           [f.unit for f in files if f.unit not in indexed]),
        )
        manifest.write(out.local)
        out.publish("manifest.json")
        return manifest


def _remove_stale(out: Output, current: set[str]) -> None:
    """Remove the shards, rejects and reports of units that are not the inputs' now (a file cut under other bounds
    before it grew or shrank, or under another chunk size): no shard is left that the manifest does not list."""
    found = ({name.removesuffix(".json") for name in out.names("units")} |
             {name.removesuffix(".arrow") for name in out.names() if name.endswith(".arrow")})
    for unit in found - current:
        for stale in (f"{unit}.arrow", f"rejects/{unit}.jsonl", f"units/{unit}.json"):
            out.remove(stale)
