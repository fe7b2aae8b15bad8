"""The `pack` stage: document shards → rows of exactly `seq_len` tokens → shuffled sequence shards.

Document shards are read in a seeded, token-weighted interleave (subset weights repeat or subsample them), cut
into pieces and packed into rows by `packing`, and written in shards of `shard_rows` rows, each shuffled.

Memory is bounded whatever the input size: document shards are read one record batch at a time, the
packer holds at most `window` pieces (plus the batch being added), and the writer one shard of rows.
"""

from __future__ import annotations

import math
import re
import sys
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.files import read_json, sha256_file
from wwm_prep.core.manifest import (DocumentManifest, SequenceConfig, SequenceManifest, TokenizerRecord,
                                    manifest_sha256, schema_ref)
from wwm_prep.core.rows import PieceSource
from wwm_prep.core.shards import ShardWriter, load_schema, read_batches
from wwm_prep.pipeline.packing import (SENTENCE_REACH, STRATEGIES, Piece, SentenceEnds, Specials, best_fit, columns,
                                       cut_bounds, greedy, load_sentence_ends)
from wwm_prep.pipeline.progress import Counters, ProgressDisplay
from wwm_prep.text.tokenizer import locate_tokenizer

MIN_SEQ_LEN = 64
DEFAULT_WINDOW = 4096
DEFAULT_SHARD_ROWS = 2048
MAX_OPEN = 64  # document shards the interleave draws from at once (open files only: a batch is read when drawn)
WRITE_ROWS = 256  # rows per Arrow record batch of a sequence shard
SHARD_NAME = "sequences-{:05d}.arrow"
COUNTS = ("documents", "dropped_documents", "pieces", "tokens", "cut_documents", "cuts", "sentence_cuts",
          "group_splits")
_OWN_FILES = re.compile(r"^\.?(manifest\.json|sequences-\d{5,}\.arrow)(\.tmp-[\w.]+-\d+)?$")
_INTERLEAVE, _SHUFFLE = 1, 2  # independent random streams derived from --seed


@dataclass(frozen=True)
class PackConfig:
    """How to pack, built once (by the command line), checked here, and recorded in the manifest."""

    seq_len: int
    strategy: str = "best-fit"
    window: int = DEFAULT_WINDOW  # best-fit: pieces weighed at once
    seed: int = 0
    subset_weights: Mapping[str, float] = field(default_factory=dict)
    shard_rows: int = DEFAULT_SHARD_ROWS
    tokenizer: Path | None = None  # the documents' tokenizer, where it has moved since segment

    def __post_init__(self) -> None:
        if self.seq_len < MIN_SEQ_LEN:
            raise WwmPrepError(f"--seq-len must be at least {MIN_SEQ_LEN}, not {self.seq_len}")
        if self.strategy not in STRATEGIES:
            raise WwmPrepError(f"--strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}")
        if self.window < 1 or self.shard_rows < 1:
            raise WwmPrepError("--window and --shard-rows must be at least 1")


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


def _documents(docs_dir: Path) -> DocumentManifest:
    manifest = DocumentManifest.read(docs_dir)
    if not manifest.complete:
        missing = manifest.missing
        raise WwmPrepError(
            f"{docs_dir} is incomplete: {len(missing)} input file(s) have no shard yet ({', '.join(missing[:5])}"
            f"{', …' if len(missing) > 5 else ''}). Rerun `wwm-prep segment` with the same inputs (done files are "
            "skipped; array-job slices are gathered), and leave out files that cannot be read"
        )
    return manifest


def _specials(tokenizer: TokenizerRecord) -> Specials:
    ids = tokenizer.special_ids
    missing = [name for name in ("cls", "sep", "pad") if name not in ids]
    if missing:
        raise WwmPrepError(
            f"the tokenizer the documents were made with ({tokenizer.path}) has no "
            f"{'/'.join('<' + m.upper() + '>' for m in missing)} piece; pack needs <CLS>, <SEP> and <PAD>"
        )
    return Specials(ids["cls"], ids["sep"], ids["pad"])


def _sentence_ends(tokenizer: TokenizerRecord, override: Path | None) -> SentenceEnds | None:
    """The tables for the tokenizer the documents were made with; None where its model is not at hand."""
    path, _ = locate_tokenizer(tokenizer.path, tokenizer.sha256, override,
                               made_with="the documents were segmented with", required=False)
    return load_sentence_ends(path) if path is not None else None


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
    pieces = []
    for d in docs.tolist():
        start, end = int(offsets[d]), int(offsets[d + 1])
        bounds = cut_bounds(ids, word_starts, start, end, capacity, ends, counts) if long[d] else [start, end]
        n = len(bounds) - 1
        pieces += [Piece(ids[s:e].copy(), word_starts[s:e].copy(),
                         str(PieceSource(source.subset, source.source, int(lines[d]), k, n, source.copy)))
                   for k, (s, e) in enumerate(zip(bounds, bounds[1:]), start=1)]
    counts["pieces"] += len(pieces)
    return pieces


# ---------------------------------------------------------------------------------------------- output


def _write_shard(path: Path, rows: list[list[Piece]], index: int, seed: int, seq_len: int,
                 specials: Specials) -> dict[str, Any]:
    """Write rows in a seeded random order (so a shard mixes what the stream brought together)."""
    order = np.random.default_rng([seed, _SHUFFLE, index]).permutation(len(rows))
    with ShardWriter(path, load_schema("sequence")) as writer:
        for at in range(0, len(rows), WRITE_ROWS):
            writer.write(columns([rows[i] for i in order[at : at + WRITE_ROWS]], seq_len, specials))
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
    if manifest.is_file() and (read_json(manifest) or {}).get("kind") != "sequences":
        foreign.insert(0, manifest.name)
    if foreign:
        raise WwmPrepError(f"{out_dir} holds files pack did not write ({', '.join(foreign[:3])}); choose another --out")


def _write_rows(out_dir: Path, config: PackConfig, specials: Specials, sources: list[Source],
                ends: SentenceEnds | None, counts: dict[str, int], subsets: dict[str, dict[str, Any]],
                quiet: bool) -> list[dict[str, Any]]:
    """Stream the sources through cutting and packing into shards of `shard_rows` rows; returns their records."""
    counters = Counters()
    display = ProgressDisplay(counters, int(sum(s.tokens * s.fraction for s in sources)), "pack", unit="tok",
                              quiet=quiet)
    batches = (_pieces(source, batch, keep, config.seq_len - 2, ends, counts, subsets, counters)
               for source, batch, keep in _interleave(sources, config.seed))
    if config.strategy == "best-fit":
        rows = best_fit(batches, config.seq_len, config.window)
    else:
        rows = greedy(batches, config.seq_len)
    shards: list[dict[str, Any]] = []

    def write(block: list[list[Piece]]) -> None:
        index = len(shards)
        shards.append(_write_shard(out_dir / SHARD_NAME.format(index), block, index, config.seed, config.seq_len,
                                   specials))
        display.write(f"wrote {shards[-1]['file']}: {len(block)} rows")

    block: list[list[Piece]] = []
    with display:
        for row in rows:
            block.append(row)
            if len(block) == config.shard_rows:
                write(block)
                block = []
        if block:
            write(block)
    return shards


def _manifest(docs_dir: Path, documents: DocumentManifest, config: PackConfig, specials: Specials,
              ends: SentenceEnds | None, counts: dict[str, int], subsets: dict[str, dict[str, Any]],
              shards: list[dict[str, Any]]) -> SequenceManifest:
    schema = load_schema("sequence")
    recorded = SequenceConfig(
        schema=schema_ref(schema.name, schema.version),
        seq_len=config.seq_len,
        strategy=config.strategy,
        window=config.window if config.strategy == "best-fit" else None,
        seed=config.seed,
        subset_weights={name: s["weight"] for name, s in sorted(subsets.items())},
        shard_rows=config.shard_rows,
        tokenizer=TokenizerRecord(documents.config.tokenizer.sha256, asdict(specials)),
        sentence_ends={
            "used": ends is not None,
            "tokenizer": str(ends.path) if ends is not None else None,
            "reach": (config.seq_len - 2) // SENTENCE_REACH if ends is not None else 0,
        },
    )
    n_rows = sum(s["rows"] for s in shards)
    pad = sum(s["pad_tokens"] for s in shards)
    return SequenceManifest(
        config=recorded,
        documents={"dir": str(docs_dir), "manifest_sha256": manifest_sha256(docs_dir),
                   "config": documents.config.to_dict(), "totals": documents.totals, "failed": documents.failed},
        totals={**counts, "rows": n_rows, "pad_tokens": pad,
                "efficiency": round(1 - pad / (n_rows * config.seq_len), 6)},
        subsets=subsets,
        shards=shards,
    )


def run_pack(docs_dir: Path, out_dir: Path, config: PackConfig, *, quiet: bool = False) -> SequenceManifest:
    """Pack the document shards of `docs_dir` into sequence shards in `out_dir` and write `manifest.json`;
    returns the manifest. Shards of an earlier run in `out_dir` are replaced."""
    documents = _documents(docs_dir)
    tokenizer = documents.config.tokenizer
    specials = _specials(tokenizer)
    sources = _sources(docs_dir, documents.units, config.subset_weights)
    ends = _sentence_ends(tokenizer, config.tokenizer)
    if ends is None:
        print(f"tokenizer {tokenizer.path} not found: cutting long documents at group edges only "
              "(give it with --tokenizer to prefer sentence ends)", file=sys.stderr)
    _check_out(out_dir, docs_dir)
    counts = dict.fromkeys(COUNTS, 0)
    subsets = {unit["subset"]: {"weight": config.subset_weights.get(unit["subset"], 1.0), "documents": 0,
                                "tokens": 0} for unit in documents.units.values()}
    shards = _write_rows(out_dir, config, specials, sources, ends, counts, subsets, quiet)
    if not shards:
        raise WwmPrepError(f"{docs_dir}: no documents to pack (all empty, or all left out by the subset weights)")
    manifest = _manifest(docs_dir, documents, config, specials, ends, counts, subsets, shards)
    manifest.write(out_dir)
    written = {s["file"] for s in shards}
    for stale in out_dir.glob("sequences-*.arrow"):
        if stale.name not in written:
            stale.unlink()
    return manifest
