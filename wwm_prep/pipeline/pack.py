"""The `pack` stage: document shards → rows of exactly `seq_len` tokens → shuffled sequence shards.

Every document becomes one or more *pieces*, each wrapped `<CLS> … <SEP>`; pieces are packed whole into
rows, which are padded with `<PAD>`. A document longer than a row is cut only where a whole-word group
starts (at a sentence end when one is close before the limit), so a word never crosses a row boundary.

Memory is bounded whatever the input size: document shards are read one record batch at a time, the
packer holds at most `window` pieces (plus the batch being added), and the writer one shard of rows.
"""

from __future__ import annotations

import json
import math
import re
import sys
import zlib
from bisect import bisect_right, insort
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sentencepiece as spm

from wwm_prep import __version__
from wwm_prep.core.errors import WwmPrepError
from wwm_prep.pipeline.progress import Counters, ProgressDisplay
from wwm_prep.core.files import sha256_file, write_json_atomic
from wwm_prep.core.shards import ShardWriter, load_schema, read_batches

MIN_SEQ_LEN = 64
STRATEGIES = ("best-fit", "greedy")
DEFAULT_WINDOW = 4096
DEFAULT_SHARD_ROWS = 2048
MAX_OPEN = 64  # document shards the interleave draws from at once (open files only: a batch is read when drawn)
WRITE_ROWS = 256  # rows per Arrow record batch of a sequence shard
SENTENCE_ENDS = ("。", "！", "？", "\n")
SENTENCE_REACH = 32  # a sentence end is "close" to a cut within 1/32 of a row before the limit
SHARD_NAME = "sequences-{:05d}.arrow"
COUNTS = ("documents", "dropped_documents", "pieces", "tokens", "cut_documents", "cuts", "sentence_cuts",
          "group_splits")
UNIT_KEYS = ("shard", "sha256", "subset", "source", "tokens")  # what pack reads of a unit in the document manifest
_OWN_FILES = re.compile(r"^\.?(manifest\.json|sequences-\d{5,}\.arrow)(\.tmp-\d+)?$")
_ARRIVAL_BITS = 40  # best-fit keys: size << 40 | (2**40 - 1 - arrival), so ties go to the earlier piece
_ARRIVAL_MASK = (1 << _ARRIVAL_BITS) - 1
_INTERLEAVE, _SHUFFLE = 1, 2  # independent random streams derived from --seed


@dataclass(frozen=True, slots=True)
class Piece:
    """A document, or the piece of one, that goes into a row whole."""

    ids: np.ndarray  # int32, copied out of its batch so that a waiting piece never pins a whole batch
    word_starts: np.ndarray  # uint8
    source: str

    @property
    def size(self) -> int:
        """Tokens it takes in a row, `<CLS>` and `<SEP>` included."""
        return len(self.ids) + 2


@dataclass(frozen=True)
class Specials:
    cls: int
    sep: int
    pad: int


@dataclass(frozen=True)
class Source:
    """One pass over a document shard: subset weights make several (copies), the last maybe a subsample."""

    unit: str
    subset: str
    source: str
    path: Path
    tokens: int
    copy: int
    fraction: float  # share of its documents taken


@dataclass(frozen=True)
class SentenceEnds:
    """Per-piece tables that find sentence ends among the group starts without decoding text."""

    path: Path
    ends: np.ndarray  # bool[vocab]: the piece's text ends with 。！？ or a newline
    newline: np.ndarray  # bool[vocab]: the piece's text starts with a newline

    def at(self, ids: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Which group starts (positions in `ids`, none at 0) follow a sentence end or begin a line."""
        return self.ends[ids[starts - 1]] | self.newline[ids[starts]]


def load_sentence_ends(path: Path) -> SentenceEnds:
    """Tables for a SentencePiece model, from its piece names: cuts then never need the text."""
    sp = spm.SentencePieceProcessor(model_file=str(path))
    texts = pa.array(sp.id_to_piece(list(range(sp.get_piece_size()))), type=pa.string())
    ends = pc.match_substring_regex(texts, f"([{''.join(SENTENCE_ENDS)}]|<0x0A>)$")
    newline = pc.match_substring_regex(texts, "^(\n|<0x0A>$)")
    return SentenceEnds(path, ends.to_numpy(zero_copy_only=False), newline.to_numpy(zero_copy_only=False))


def _sentence_ends(tokenizer: Mapping[str, Any], override: Path | None) -> SentenceEnds | None:
    """The tables for the tokenizer the documents were made with; None where its model is not at hand."""
    path = override if override is not None else Path(tokenizer["path"])
    if not path.is_file():
        if override is not None:
            raise WwmPrepError(f"tokenizer not found: {override}")
        return None
    if sha256_file(path) != tokenizer["sha256"]:
        raise WwmPrepError(
            f"{path} is not the tokenizer the documents were segmented with (its sha256 differs from "
            f"{tokenizer['sha256'][:16]}… in the document manifest); give that model with --tokenizer"
        )
    return load_sentence_ends(path)


def parse_subset_weights(text: str | None) -> dict[str, float]:
    """`ja_wiki=2,kaken=0.5` → {"ja_wiki": 2.0, "kaken": 0.5}."""
    weights: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        name, sep, value = (part.strip() for part in item.partition("="))
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not sep or not name or not (math.isfinite(weight) and weight >= 0):
            raise WwmPrepError(
                f"subset weights: {item!r} is not SUBSET=WEIGHT with a weight ≥ 0 (e.g. ja_wiki=2,kaken=0.5)"
            )
        if name in weights:
            raise WwmPrepError(f"subset weights: {name} is given twice")
        weights[name] = weight
    return weights


# ---------------------------------------------------------------------------------------------- input


def _document_manifest(docs_dir: Path) -> tuple[dict[str, Any], str]:
    path = docs_dir / "manifest.json"
    if not path.is_file():
        raise WwmPrepError(f"{docs_dir}: no manifest.json here; give a directory written by `wwm-prep segment`")
    manifest = _read_json(path)
    if manifest is None or manifest.get("kind") != "documents":
        raise WwmPrepError(f"{path} is not a document manifest; give a directory written by `wwm-prep segment`")
    config, units = manifest.get("config"), manifest.get("units")
    tokenizer = config.get("tokenizer") if isinstance(config, dict) else None
    complete_units = isinstance(units, dict) and all(
        isinstance(u, dict) and set(UNIT_KEYS) <= u.keys() for u in units.values())
    if not (complete_units and isinstance(tokenizer, dict) and {"path", "sha256", "special_ids"} <= tokenizer.keys()):
        raise WwmPrepError(
            f"{path} lacks the tokenizer or shard records pack needs; re-create it with this version of segment"
        )
    if manifest.get("complete") is False:
        missing = manifest.get("missing", [])
        raise WwmPrepError(
            f"{docs_dir} is incomplete: {len(missing)} input file(s) have no shard yet ({', '.join(missing[:5])}"
            f"{', …' if len(missing) > 5 else ''}). Rerun `wwm-prep segment` with the same inputs (done files are "
            "skipped; array-job slices are gathered), and leave out files that cannot be read"
        )
    return manifest, sha256_file(path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _specials(tokenizer: Mapping[str, Any]) -> Specials:
    ids = tokenizer["special_ids"]
    missing = [name for name in ("cls", "sep", "pad") if name not in ids]
    if missing:
        raise WwmPrepError(
            f"the tokenizer the documents were made with ({tokenizer['path']}) has no "
            f"{'/'.join('<' + m.upper() + '>' for m in missing)} piece; pack needs <CLS>, <SEP> and <PAD>"
        )
    return Specials(int(ids["cls"]), int(ids["sep"]), int(ids["pad"]))


def _sources(docs_dir: Path, units: Mapping[str, Any], weights: Mapping[str, float]) -> list[Source]:
    """Every pass over a document shard that the subset weights ask for, the shards' checksums verified."""
    subsets = sorted({u["subset"] for u in units.values()})
    unknown = sorted(set(weights) - set(subsets))
    if unknown:
        raise WwmPrepError(
            f"subset weights name {', '.join(unknown)}; the documents hold {', '.join(subsets) or 'none'}"
        )
    sources = []
    for name in sorted(units):
        unit = units[name]
        whole, part = divmod(weights.get(unit["subset"], 1.0), 1.0)
        fractions = [1.0] * int(whole) + ([part] if part > 0 else [])
        if not fractions:
            continue
        shard = docs_dir / unit["shard"]
        if not shard.is_file():
            raise WwmPrepError(f"{shard} is missing; rerun `wwm-prep segment`")
        if sha256_file(shard) != unit["sha256"]:
            raise WwmPrepError(f"{shard} has changed since `wwm-prep segment` wrote it (sha256 differs); rerun segment")
        sources += [Source(name, unit["subset"], unit["source"], shard, int(unit["tokens"]), copy, fraction)
                    for copy, fraction in enumerate(fractions)]
    if not sources:
        raise WwmPrepError(f"{docs_dir}: no documents to pack (no shards, or every subset weighted 0)")
    return sources


def _read(source: Source, seed: int) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """A source's record batches, each with which of its documents this pass takes.

    A `map`, not a generator: a suspended generator would keep its last batch alive, one per open source."""
    rng = np.random.default_rng([seed, zlib.crc32(source.unit.encode()), source.copy])
    return map(lambda batch: (batch, rng.random(batch.num_rows) < source.fraction),
               read_batches(source.path, load_schema("document")))


def _interleave(sources: Sequence[Source], seed: int) -> Iterator[tuple[Source, pa.RecordBatch, np.ndarray]]:
    """Record batches of all sources in a seeded random order, each draw weighted by the tokens a source has
    left, so that every stretch of the stream mixes the subsets in proportion."""
    rng = np.random.default_rng([seed, _INTERLEAVE])
    waiting = [sources[i] for i in rng.permutation(len(sources))[::-1]]
    active: list[Source] = []
    readers: list[Iterator[tuple[pa.RecordBatch, np.ndarray]]] = []
    left: list[float] = []
    while waiting or active:
        while waiting and len(active) < MAX_OPEN:
            active.append(waiting.pop())
            readers.append(_read(active[-1], seed))
            left.append(active[-1].tokens * active[-1].fraction)
        cumulative = np.cumsum(np.maximum(left, 1.0))
        i = min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")), len(active) - 1)
        drawn = next(readers[i], None)
        if drawn is None:
            del active[i], readers[i], left[i]
            continue
        batch, keep = drawn
        offsets = batch.column("input_ids").offsets
        left[i] -= (offsets[-1].as_py() - offsets[0].as_py()) * active[i].fraction
        yield active[i], batch, keep


# ---------------------------------------------------------------------------------------------- cutting


def _flat(column: pa.ListArray) -> tuple[np.ndarray, np.ndarray]:
    """Values and zero-based offsets of a list column."""
    offsets = column.offsets.to_numpy()
    return column.flatten().to_numpy(), offsets - offsets[0]


def _cuts(ids: np.ndarray, word_starts: np.ndarray, start: int, end: int, capacity: int, ends: SentenceEnds | None,
          counts: dict[str, int]) -> list[int]:
    """Bounds of the pieces of the document `[start, end)`: each at most `capacity` tokens, cut at the last
    sentence end within `capacity // SENTENCE_REACH` tokens before the limit, else at the last group start."""
    reach = capacity // SENTENCE_REACH
    bounds = [start]
    while end - bounds[-1] > capacity:
        at, limit = bounds[-1], bounds[-1] + capacity
        near = max(at + 1, limit - reach)
        starts = near + np.flatnonzero(word_starts[near : limit + 1])
        sentences = starts[ends.at(ids, starts)] if ends is not None else starts[:0]
        if sentences.size:
            counts["sentence_cuts"] += 1
            starts = sentences
        elif not starts.size:
            starts = at + 1 + np.flatnonzero(word_starts[at + 1 : near])
        if starts.size:
            bounds.append(int(starts[-1]))
        else:  # one group longer than a row: split it
            bounds.append(limit)
            counts["group_splits"] += 1
    bounds.append(end)
    counts["cuts"] += len(bounds) - 2
    return bounds


def _pieces(source: Source, batch: pa.RecordBatch, keep: np.ndarray, capacity: int, ends: SentenceEnds | None,
            counts: dict[str, int], subsets: dict[str, dict[str, int]], progress: Counters) -> list[Piece]:
    """The pieces of a batch's documents taken by this pass, in document order."""
    ids, offsets = _flat(batch.column("input_ids"))
    word_starts, ws_offsets = _flat(batch.column("word_starts"))
    if not np.array_equal(offsets, ws_offsets):
        raise WwmPrepError(
            f"{source.path}: input_ids and word_starts differ in length; the shard is corrupt, rerun segment"
        )
    lengths = np.diff(offsets)
    docs = np.flatnonzero(keep & (lengths > 0))
    tokens = int(lengths[docs].sum())
    counts["documents"] += len(docs)
    counts["dropped_documents"] += int(np.count_nonzero(~keep))
    counts["tokens"] += tokens
    subsets[source.subset]["documents"] += len(docs)
    subsets[source.subset]["tokens"] += tokens
    progress.add(tokens, len(docs), tokens)
    long = lengths > capacity
    counts["cut_documents"] += int(np.count_nonzero(long[docs]))
    lines = batch.column("line").to_numpy()
    prefix, suffix = f"{source.subset}:{source.source}:", f"@{source.copy}" if source.copy else ""
    pieces = []
    for d in docs.tolist():
        start, end = int(offsets[d]), int(offsets[d + 1])
        bounds = _cuts(ids, word_starts, start, end, capacity, ends, counts) if long[d] else [start, end]
        n = len(bounds) - 1
        pieces += [Piece(ids[s:e].copy(), word_starts[s:e].copy(), f"{prefix}{lines[d]}:{k}/{n}{suffix}")
                   for k, (s, e) in enumerate(zip(bounds, bounds[1:]), start=1)]
    counts["pieces"] += len(pieces)
    return pieces


# ---------------------------------------------------------------------------------------------- packing


def best_fit(batches: Iterable[list[Piece]], seq_len: int, window: int) -> Iterator[list[Piece]]:
    """Rows by best-fit decreasing over a window of pieces.

    The longest waiting piece opens a row; the row is then completed best-fit, each time with the longest
    waiting piece that still fits, until none does. Short pieces thus wait for the small gaps that long ones
    leave, and fill them. Rows are made while at least `window` pieces wait, then from what remains at the
    end. Ties go to the piece that arrived first: the result depends on nothing but the input order.
    """
    keys: list[int] = []  # sorted: size << _ARRIVAL_BITS | (_ARRIVAL_MASK - arrival)
    waiting: dict[int, Piece] = {}

    def row() -> list[Piece]:
        first = waiting.pop(keys.pop())
        pieces, room = [first], seq_len - first.size
        while (i := bisect_right(keys, (room << _ARRIVAL_BITS) | _ARRIVAL_MASK) - 1) >= 0:
            pieces.append(waiting.pop(keys.pop(i)))
            room -= pieces[-1].size
        return pieces

    arrival = 0
    for batch in batches:
        for piece in batch:
            key = (piece.size << _ARRIVAL_BITS) | (_ARRIVAL_MASK - arrival)
            insort(keys, key)
            waiting[key] = piece
            arrival += 1
        while len(keys) >= window:
            yield row()
    while keys:
        yield row()


def greedy(batches: Iterable[list[Piece]], seq_len: int) -> Iterator[list[Piece]]:
    """Rows in stream order: pieces go into the current row until the next does not fit (next-fit)."""
    pieces: list[Piece] = []
    room = seq_len
    for batch in batches:
        for piece in batch:
            if piece.size > room:
                yield pieces
                pieces, room = [], seq_len
            pieces.append(piece)
            room -= piece.size
    if pieces:
        yield pieces


# ---------------------------------------------------------------------------------------------- output


def _columns(rows: list[list[Piece]], seq_len: int, specials: Specials) -> dict[str, pa.Array]:
    """Sequence-schema columns of rows, assembled with array operations over all their tokens at once."""
    pieces = [p for row in rows for p in row]
    per_row = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    sizes = np.fromiter((p.size for p in pieces), dtype=np.int64, count=len(pieces))
    row_of = np.repeat(np.arange(len(rows)), per_row)
    fill = np.bincount(row_of, weights=sizes, minlength=len(rows)).astype(np.int64)
    first = np.cumsum(sizes) - sizes - (np.cumsum(fill) - fill)[row_of] + row_of * seq_len  # each <CLS>
    last = first + sizes - 1  # each <SEP>
    content = (np.arange(seq_len) < fill[:, None]).reshape(-1)
    content[first] = False
    content[last] = False
    ids = np.full(len(rows) * seq_len, specials.pad, dtype=np.int32)
    ids[content] = np.concatenate([p.ids for p in pieces])
    ids[first] = specials.cls
    ids[last] = specials.sep
    word_starts = np.zeros(len(rows) * seq_len, dtype=np.uint8)
    word_starts[content] = np.concatenate([p.word_starts for p in pieces])
    word_starts[first + 1] = 1  # a piece cut inside an over-long group still starts a group of its own
    row_offsets = pa.array(np.arange(len(rows) + 1, dtype=np.int32) * seq_len)
    piece_offsets = pa.array(np.concatenate([[0], np.cumsum(per_row)]).astype(np.int32))
    return {
        "input_ids": pa.ListArray.from_arrays(row_offsets, pa.array(ids)),
        "word_starts": pa.ListArray.from_arrays(row_offsets, pa.array(word_starts)),
        "doc_lengths": pa.ListArray.from_arrays(piece_offsets, pa.array(sizes.astype(np.int32))),
        "doc_sources": pa.ListArray.from_arrays(piece_offsets, pa.array([p.source for p in pieces], type=pa.string())),
    }


def _write_shard(path: Path, rows: list[list[Piece]], index: int, seed: int, seq_len: int,
                 specials: Specials) -> dict[str, Any]:
    """Write rows in a seeded random order (so a shard mixes what the stream brought together)."""
    order = np.random.default_rng([seed, _SHUFFLE, index]).permutation(len(rows))
    with ShardWriter(path, load_schema("sequence")) as writer:
        for at in range(0, len(rows), WRITE_ROWS):
            writer.write(_columns([rows[i] for i in order[at : at + WRITE_ROWS]], seq_len, specials))
        digest = writer.close()
    pad = len(rows) * seq_len - sum(p.size for row in rows for p in row)
    return {"file": path.name, "rows": len(rows), "pad_tokens": pad, "sha256": digest}


def _check_out(out_dir: Path, docs_dir: Path) -> None:
    """Refuse an output directory holding anything but an earlier pack's output."""
    if out_dir.exists() and out_dir.resolve() == docs_dir.resolve():
        raise WwmPrepError("--out must not be the document directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WwmPrepError(f"cannot create {out_dir}: {exc}") from exc
    foreign = sorted(p.name for p in out_dir.iterdir() if not _OWN_FILES.match(p.name))
    manifest = out_dir / "manifest.json"
    if manifest.is_file() and (_read_json(manifest) or {}).get("kind") != "sequences":
        foreign.insert(0, manifest.name)
    if foreign:
        raise WwmPrepError(f"{out_dir} holds files pack did not write ({', '.join(foreign[:3])}); choose another --out")


def run_pack(
    docs_dir: Path,
    out_dir: Path,
    *,
    seq_len: int,
    strategy: str = "best-fit",
    window: int = DEFAULT_WINDOW,
    seed: int = 0,
    subset_weights: Mapping[str, float] | None = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    tokenizer: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Pack the document shards of `docs_dir` into sequence shards in `out_dir` and write `manifest.json`;
    returns the manifest. Shards of an earlier run in `out_dir` are replaced."""
    if seq_len < MIN_SEQ_LEN:
        raise WwmPrepError(f"--seq-len must be at least {MIN_SEQ_LEN}, not {seq_len}")
    if strategy not in STRATEGIES:
        raise WwmPrepError(f"--strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if window < 1 or shard_rows < 1:
        raise WwmPrepError("--window and --shard-rows must be at least 1")
    weights = dict(subset_weights or {})
    doc_manifest, doc_manifest_sha = _document_manifest(docs_dir)
    doc_tokenizer = doc_manifest["config"]["tokenizer"]
    specials = _specials(doc_tokenizer)
    sources = _sources(docs_dir, doc_manifest["units"], weights)
    ends = _sentence_ends(doc_tokenizer, tokenizer)
    if ends is None:
        print(f"tokenizer {doc_tokenizer['path']} not found: cutting long documents at group edges only "
              "(give it with --tokenizer to prefer sentence ends)", file=sys.stderr)
    _check_out(out_dir, docs_dir)
    counters = Counters()
    display = ProgressDisplay(counters, int(sum(s.tokens * s.fraction for s in sources)), "pack", unit="tok",
                              quiet=quiet)

    counts = dict.fromkeys(COUNTS, 0)
    subsets = {unit["subset"]: {"weight": weights.get(unit["subset"], 1.0), "documents": 0, "tokens": 0}
               for unit in doc_manifest["units"].values()}
    batches = (_pieces(source, batch, keep, seq_len - 2, ends, counts, subsets, counters)
               for source, batch, keep in _interleave(sources, seed))
    rows = best_fit(batches, seq_len, window) if strategy == "best-fit" else greedy(batches, seq_len)
    shards: list[dict[str, Any]] = []

    def write(block: list[list[Piece]]) -> None:
        index = len(shards)
        shards.append(_write_shard(out_dir / SHARD_NAME.format(index), block, index, seed, seq_len, specials))
        display.write(f"wrote {shards[-1]['file']}: {len(block)} rows")

    block: list[list[Piece]] = []
    with display:
        for row in rows:
            block.append(row)
            if len(block) == shard_rows:
                write(block)
                block = []
        if block:
            write(block)
    if not shards:
        raise WwmPrepError(f"{docs_dir}: no documents to pack (all empty, or all left out by the subset weights)")

    n_rows = sum(s["rows"] for s in shards)
    pad = sum(s["pad_tokens"] for s in shards)
    schema = load_schema("sequence")
    manifest = {
        "kind": "sequences",
        "wwm_prep_version": __version__,
        "config": {
            "stage": "pack",
            "schema": {"name": schema.name, "version": schema.version},
            "seq_len": seq_len,
            "strategy": strategy,
            "window": window if strategy == "best-fit" else None,
            "seed": seed,
            "subset_weights": {name: s["weight"] for name, s in sorted(subsets.items())},
            "shard_rows": shard_rows,
            "tokenizer": {"sha256": doc_tokenizer["sha256"], "special_ids": asdict(specials)},
            "sentence_ends": {
                "used": ends is not None,
                "tokenizer": str(ends.path) if ends is not None else None,
                "reach": (seq_len - 2) // SENTENCE_REACH if ends is not None else 0,
            },
        },
        "documents": {
            "dir": str(docs_dir),
            "manifest_sha256": doc_manifest_sha,
            "config": doc_manifest["config"],
            "totals": doc_manifest.get("totals"),
            "failed": doc_manifest.get("failed", []),
        },
        "totals": {
            **counts,
            "rows": n_rows,
            "pad_tokens": pad,
            "efficiency": round(1 - pad / (n_rows * seq_len), 6),
        },
        "subsets": subsets,
        "shards": shards,
    }
    write_json_atomic(out_dir / "manifest.json", manifest)
    written = {s["file"] for s in shards}
    for stale in out_dir.glob("sequences-*.arrow"):
        if stale.name not in written:
            stale.unlink()
    return manifest
