"""The `pack` stage: document shards → rows of exactly `seq_len` tokens → shuffled sequence shards.

The passes over document shards that the subset weights ask for (repeats, subsamples) are dealt to a number
of *partitions* fixed by the inputs and options alone, never by how many workers run, and each partition is a
unit of work: its shards are read in a seeded, token-weighted interleave, cut into pieces and packed into rows
by `packing`, and written in shards of `shard_rows` rows, each shuffled. So one worker or many, Ray or array
slices give the same bytes; a rerun skips the partitions done and redoes those whose document shards changed;
runs sharing an output claim partitions as `segment` claims files; the run that completes the last writes
the manifest.

Memory per worker is bounded whatever the input size: document shards are read one record batch at a time,
the packer holds at most `window` pieces (plus the batch being added), and the writer one shard of rows.
"""

from __future__ import annotations

import heapq
import itertools
import math
import re
import sys
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from wwm_prep.core.claims import DEFAULT_TIMEOUT, Holder, claim
from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.files import locked, write_json_atomic
from wwm_prep.core.manifest import (DocumentManifest, SequenceConfig, SequenceManifest, TokenizerRecord,
                                    manifest_sha256, schema_ref)
from wwm_prep.core.rows import PieceSource
from wwm_prep.core.shards import ShardWriter, load_schema, read_batches
from wwm_prep.core.storage import AnyPath, Output, identity, is_remote, local_copy, location, sha256_of
from wwm_prep.pipeline.packing import (SENTENCE_REACH, STRATEGIES, Piece, SentenceEnds, Specials, best_fit, columns,
                                       cut_bounds, greedy, load_sentence_ends)
from wwm_prep.pipeline.executor import Executor, LocalExecutor, Slice
from wwm_prep.pipeline.progress import Counters, ProgressDisplay
from wwm_prep.text.registry import cache_dir
from wwm_prep.text.tokenizer import locate_tokenizer

MIN_SEQ_LEN = 64
DEFAULT_WINDOW = 4096
DEFAULT_SHARD_ROWS = 2048
MAX_OPEN = 64  # document shards the interleave draws from at once (open files only: a batch is read when drawn)
WRITE_ROWS = 256  # rows per Arrow record batch of a sequence shard
PARTITION_TOKENS = 1 << 26  # default partitions hold ~67 M tokens (~8,000 rows of 8,192): best-fit's tail stays small
SHARD_NAME = "sequences-{:05d}-{:05d}.arrow"  # partition, shard within it
COUNTS = ("documents", "dropped_documents", "pieces", "tokens", "cut_documents", "cuts", "sentence_cuts",
          "group_splits")
_OWN_FILES = re.compile(r"^(units|claims|\.manifest\.lock|\.?(manifest\.json|sequences-\d{5,}(-\d{5,})?\.arrow)"
                        r"(\.tmp-[\w.]+-\d+)?)$")
# Independent random streams derived from --seed. The partition comes last in their seeds: a seed is padded with
# zeros, so partition 0 draws what packs made before partitions drew, and their bytes stay reproducible.
_INTERLEAVE, _SHUFFLE = 1, 2


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
    partitions: int | None = None  # None: one per PARTITION_TOKENS tokens, at most one per pass over a shard

    def __post_init__(self) -> None:
        if self.partitions is not None and self.partitions < 1:
            raise WwmPrepError(f"--partitions must be at least 1, not {self.partitions}")
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
    path: AnyPath
    sha256: str  # of the shard, as segment recorded it
    size: int | None  # its bytes, where segment recorded them
    tokens: int
    copy: int
    fraction: float  # share of its documents taken

    def key(self) -> list[Any]:
        """What a partition's report records of this pass, to tell on a rerun whether it is the same."""
        return [self.unit, self.copy, self.fraction, self.sha256]


@dataclass(frozen=True)
class Partition:
    """One unit of pack's work: the passes dealt to it, packed on their own into its own shards."""

    index: int
    sources: tuple[Source, ...]

    @property
    def name(self) -> str:
        return f"partition-{self.index:05d}"


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


def _documents(docs_dir: AnyPath) -> DocumentManifest:
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
    override = local_copy(location(override), cache_dir()) if override is not None else None
    path, _ = locate_tokenizer(tokenizer.path, tokenizer.sha256, override,
                               made_with="the documents were segmented with", required=False)
    return load_sentence_ends(path, cache_dir()) if path is not None else None


def _sources(docs_dir: AnyPath, units: Mapping[str, Any], weights: Mapping[str, float]) -> list[Source]:
    """Every pass over a document shard that the subset weights ask for (checksums are verified by the
    partition that reads them, so that a cluster's workers share that I/O)."""
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
        sources += [Source(name, unit["subset"], unit["source"], shard, unit["sha256"], unit.get("bytes"),
                           int(unit["tokens"]), copy, fraction) for copy, fraction in enumerate(fractions)]
    if not sources:
        raise WwmPrepError(f"{docs_dir}: no documents to pack (no shards, or every subset weighted 0)")
    return sources


def _intact(source: Source) -> bool:
    """Whether a document shard is still the one segment recorded: by sha256, or for an object with its size
    recorded, by size (reading it back over the network only to hash it would double pack's input)."""
    if is_remote(source.path) and source.size is not None:
        return identity(source.path)["size"] == source.size
    return sha256_of(source.path) == source.sha256


def default_partitions(sources: Sequence[Source]) -> int:
    tokens = sum(s.tokens * s.fraction for s in sources)
    return max(1, min(len(sources), math.ceil(tokens / PARTITION_TOKENS)))


def deal(sources: Sequence[Source], count: int, seed: int) -> list[Partition]:
    """The sources dealt to `count` partitions of about equal tokens: the largest first, each to the partition
    with the fewest tokens yet (ties by a seeded hash, then by index), so the plan depends on nothing else."""
    if count > len(sources):
        raise WwmPrepError(f"--partitions {count} is more than the {len(sources)} passes over document shards to "
                           "deal; give at most that many")
    order = sorted(sources, key=lambda s: (-s.tokens * s.fraction, zlib.crc32(f"{seed}:{s.unit}:{s.copy}".encode()),
                                           s.unit, s.copy))
    loads = [(0.0, i) for i in range(count)]
    members: list[list[Source]] = [[] for _ in range(count)]
    for source in order:
        load, i = heapq.heappop(loads)
        members[i].append(source)
        heapq.heappush(loads, (load + source.tokens * source.fraction, i))
    return [Partition(i, tuple(sorted(m, key=lambda s: (s.unit, s.copy)))) for i, m in enumerate(members)]


def _read(source: Source, seed: int) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """A source's record batches, each with which of its documents this pass takes.

    A `map`, not a generator: a suspended generator would keep its last batch alive, one per open source."""
    rng = np.random.default_rng([seed, zlib.crc32(source.unit.encode()), source.copy])
    return map(lambda batch: (batch, rng.random(batch.num_rows) < source.fraction),
               read_batches(source.path, load_schema("document")))


def _interleave(sources: Sequence[Source], seed: int, partition: int
                ) -> Iterator[tuple[Source, pa.RecordBatch, np.ndarray]]:
    """Record batches of a partition's sources in a seeded random order, each draw weighted by the tokens a
    source has left, so that every stretch of the stream mixes the partition's subsets in proportion."""
    rng = np.random.default_rng([seed, _INTERLEAVE, partition])
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
    long = np.flatnonzero(lengths[docs] > capacity)  # which of `docs` are cut
    counts["cut_documents"] += len(long)
    cuts = [cut_bounds(ids, word_starts, int(offsets[docs[i]]), int(offsets[docs[i] + 1]), capacity, ends, counts)
            for i in long]
    per_doc = np.ones(len(docs), dtype=np.int64)  # pieces; an uncut document is one, from its start to its end
    per_doc[long] = [len(b) - 1 for b in cuts]
    first = np.cumsum(per_doc) - per_doc
    doc = np.repeat(docs, per_doc)
    k = np.arange(len(doc)) - np.repeat(first, per_doc) + 1
    starts, stops = offsets[doc], offsets[doc + 1]
    for i, b in zip(long.tolist(), cuts):
        starts[first[i] : first[i] + len(b) - 1] = b[:-1]
        stops[first[i] : first[i] + len(b) - 1] = b[1:]
    lines = batch.column("line").to_numpy()[doc]
    names = PieceSource.entries(source.subset, source.source, lines.tolist(), k.tolist(),
                                np.repeat(per_doc, per_doc).tolist(), source.copy)
    pieces = [Piece(ids[s:e].copy(), word_starts[s:e].copy(), name)
              for s, e, name in zip(starts.tolist(), stops.tolist(), names)]
    counts["pieces"] += len(pieces)
    return pieces


# ---------------------------------------------------------------------------------------------- output


def _write_shard(path: Path, rows: list[list[Piece]], seed: int, partition: int, index: int, seq_len: int,
                 specials: Specials) -> dict[str, Any]:
    """Write rows in a seeded random order (so a shard mixes what the stream brought together)."""
    order = np.random.default_rng([seed, _SHUFFLE, index, partition]).permutation(len(rows))
    with ShardWriter(path, load_schema("sequence")) as writer:
        for at in range(0, len(rows), WRITE_ROWS):
            writer.write(columns([rows[i] for i in order[at : at + WRITE_ROWS]], seq_len, specials))
        digest = writer.close()
    pad = len(rows) * seq_len - sum(p.size for row in rows for p in row)
    return {"file": path.name, "rows": len(rows), "pad_tokens": pad, "sha256": digest, "bytes": path.stat().st_size,
            "partition": partition}


def _output(out_dir: AnyPath | str, docs_dir: AnyPath) -> Output:
    """The output directory, refused where it holds anything but pack's own output."""
    if str(out_dir).rstrip("/") == str(docs_dir).rstrip("/") or (
            not is_remote(docs_dir) and Path(out_dir).exists() and Path(out_dir).resolve() == docs_dir.resolve()):
        raise WwmPrepError("--out must not be the document directory")
    try:
        out = Output(out_dir, staging=cache_dir() / "staging")
        (out.local / "units").mkdir(exist_ok=True)
    except OSError as exc:
        raise WwmPrepError(f"cannot create {out_dir}: {exc}") from exc
    foreign = [name for name in out.names() if not _OWN_FILES.match(name)]
    manifest = out.read_json("manifest.json")
    if manifest is not None and manifest.get("kind") != "sequences":
        foreign.insert(0, "manifest.json")
    if foreign:
        raise WwmPrepError(f"{out} holds files pack did not write ({', '.join(foreign[:3])}); choose another --out")
    return out


def _options(config: PackConfig, partitions: int, specials: Specials, ends: SentenceEnds | None) -> dict[str, Any]:
    """Everything besides its inputs that a partition's rows depend on: a report made with others is redone."""
    return {"seq_len": config.seq_len, "strategy": config.strategy, "window": config.window, "seed": config.seed,
            "subset_weights": dict(sorted(config.subset_weights.items())), "shard_rows": config.shard_rows,
            "partitions": partitions, "specials": asdict(specials), "sentence_ends": ends is not None,
            "schema": load_schema("sequence").version}


def _done(out: Output, partition: Partition, options: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The partition's report where it is done with these options and inputs and its shards are intact; else
    why an earlier report no longer holds (None where there is none)."""
    report = out.read_json(f"units/{partition.name}.json")
    if not isinstance(report, dict):
        return None, None
    if report.get("options") != options:
        return None, "it was packed with other options"
    if report.get("inputs") != [s.key() for s in partition.sources]:
        return None, "its document shards changed since it was packed"
    if not all(out.holds(s["file"], s["sha256"], s.get("bytes")) for s in report["shards"]):
        return None, "a shard of it is missing or changed"
    return report, None


@dataclass
class PackStage:
    """One unit = one partition; nothing to prepare (the sentence-end tables come along, they are small)."""

    out: Output
    config: PackConfig
    options: dict[str, Any]
    specials: Specials
    ends: SentenceEnds | None
    claim_timeout: float = DEFAULT_TIMEOUT
    counters: Counters | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "counters": None}  # Ray workers report per unit instead

    def prepare(self) -> None:
        pass

    def run(self, partition: Partition) -> dict[str, Any]:
        """The partition's report once this process has claimed and packed it; or who else has or holds it."""
        taken = claim(self.out.local, partition.name, self.claim_timeout)
        if isinstance(taken, Holder):
            return {"partition": partition.index, "held_by": taken.describe()}
        with taken:
            done, _ = _done(self.out, partition, self.options)
            if done is not None:
                return {**done, "note": "done meanwhile by another run"}
            for source in {s.unit: s for s in partition.sources}.values():
                if not _intact(source):
                    return {"partition": partition.index, "error": f"{source.path} has changed since `wwm-prep "
                            "segment` wrote it (sha256 or size differs); rerun segment"}
            local = self.out.local
            local.mkdir(parents=True, exist_ok=True)  # a Ray node's own staging, for a URL
            taken.own_temps(lambda: local.glob(f".sequences-{partition.index:05d}-*.tmp-*"))
            report = self._pack(partition)
            for shard in report["shards"]:  # the shards before the report that vouches for them
                self.out.publish(shard["file"])
            (local / "units").mkdir(exist_ok=True)
            write_json_atomic(local / "units" / f"{partition.name}.json", report)
            self.out.publish(f"units/{partition.name}.json")
            gone = taken.taken_over
            return {**report, "note": f"taken over from {gone.describe()}, which stopped" if gone else None}

    def _pack(self, partition: Partition) -> dict[str, Any]:
        """Stream the partition's sources through cutting and packing into shards of `shard_rows` rows."""
        started, config, counters = time.perf_counter(), self.config, self.counters or Counters()
        counts = dict.fromkeys(COUNTS, 0)
        subsets = {s.subset: {"documents": 0, "tokens": 0} for s in partition.sources}
        batches = (_pieces(source, batch, keep, config.seq_len - 2, self.ends, counts, subsets, counters)
                   for source, batch, keep in _interleave(partition.sources, config.seed, partition.index))
        if config.strategy == "best-fit":
            rows = best_fit(batches, config.seq_len, config.window)
        else:
            rows = greedy(batches, config.seq_len)
        shards: list[dict[str, Any]] = []
        block: list[list[Piece]] = []
        for row in itertools.chain(rows, [None]):
            if row is not None:
                block.append(row)
            if block and (row is None or len(block) == config.shard_rows):
                path = self.out.local / SHARD_NAME.format(partition.index, len(shards))
                shards.append(_write_shard(path, block, config.seed, partition.index, len(shards), config.seq_len,
                                           self.specials))
                block = []
        return {"partition": partition.index, "options": self.options,
                "inputs": [s.key() for s in partition.sources], "shards": shards, "counts": counts,
                "subsets": subsets, "seconds": round(time.perf_counter() - started, 3)}


def _manifest(docs_dir: AnyPath, documents: DocumentManifest, config: PackConfig, specials: Specials,
              ends: SentenceEnds | None, reports: list[dict[str, Any]]) -> SequenceManifest:
    schema = load_schema("sequence")
    counts = {name: sum(r["counts"][name] for r in reports) for name in COUNTS}
    subsets = {name: {"weight": config.subset_weights.get(name, 1.0),
                      "documents": sum(r["subsets"].get(name, {}).get("documents", 0) for r in reports),
                      "tokens": sum(r["subsets"].get(name, {}).get("tokens", 0) for r in reports)}
               for name in sorted({u["subset"] for u in documents.units.values()})}
    shards = [shard for r in reports for shard in r["shards"]]
    recorded = SequenceConfig(
        schema=schema_ref(schema.name, schema.version),
        seq_len=config.seq_len,
        strategy=config.strategy,
        window=config.window if config.strategy == "best-fit" else None,
        seed=config.seed,
        subset_weights={name: s["weight"] for name, s in subsets.items()},
        shard_rows=config.shard_rows,
        tokenizer=TokenizerRecord(documents.config.tokenizer.sha256, asdict(specials)),
        sentence_ends={
            "used": ends is not None,
            "tokenizer": str(ends.path) if ends is not None else None,
            "reach": (config.seq_len - 2) // SENTENCE_REACH if ends is not None else 0,
        },
        partitions=len(reports),
    )
    n_rows = sum(s["rows"] for s in shards)
    pad = sum(s["pad_tokens"] for s in shards)
    return SequenceManifest(
        config=recorded,
        documents={"dir": str(docs_dir), "manifest_sha256": manifest_sha256(docs_dir),
                   "config": documents.config.to_dict(), "totals": documents.totals, "failed": documents.failed},
        totals={**counts, "rows": n_rows, "pad_tokens": pad,
                "efficiency": round(1 - pad / (n_rows * config.seq_len), 6) if n_rows else 0.0},
        subsets=subsets,
        shards=shards,
    )


def run_pack(docs_dir: AnyPath | str, out_dir: AnyPath | str, config: PackConfig, *,
             executor: Executor = LocalExecutor(),
             part: Slice = Slice(), claim_timeout: float = DEFAULT_TIMEOUT, quiet: bool = False
             ) -> SequenceManifest | None:
    """Pack the document shards of `docs_dir` (the `part` of the partitions an array job takes) into sequence
    shards in `out_dir`, skipping partitions already done; returns the manifest, or None while partitions
    are left to other slices or runs (the one that completes the last writes it)."""
    docs_dir = location(docs_dir)
    documents = _documents(docs_dir)
    tokenizer = documents.config.tokenizer
    specials = _specials(tokenizer)
    sources = _sources(docs_dir, documents.units, config.subset_weights)
    partitions = deal(sources, config.partitions or default_partitions(sources), config.seed)
    ends = _sentence_ends(tokenizer, config.tokenizer)
    if ends is None:
        print(f"tokenizer {tokenizer.path} not found: cutting long documents at group edges only "
              "(give it with --tokenizer to prefer sentence ends)", file=sys.stderr)
    out = _output(out_dir, docs_dir)
    options = _options(config, len(partitions), specials, ends)
    stage = PackStage(out, config, options, specials, ends, claim_timeout, Counters())
    found = {p.index: _done(out, p, options) for p in partitions}
    if any(report is None for report, _ in found.values()):
        out.remove("manifest.json")  # an earlier pack's, no longer what the shards hold
    reports = {i: report for i, (report, _) in found.items() if report is not None}
    failed = _run_partitions(stage, executor, part.of(partitions), found, reports, quiet)
    if failed:
        raise WwmPrepError("; ".join(f"partition {f['partition']}: {f['error']}" for f in failed))
    return _finish(docs_dir, documents, config, stage, partitions, reports)


def _run_partitions(stage: PackStage, executor: Executor, mine: list[Partition],
                    found: dict[int, tuple[dict[str, Any] | None, str | None]], reports: dict[int, dict[str, Any]],
                    quiet: bool) -> list[dict[str, Any]]:
    """Pack the partitions of `mine` not done yet, adding their reports to `reports`; returns the failed ones."""
    assert stage.counters is not None
    todo = [p for p in mine if p.index not in reports]
    total = int(sum(s.tokens * s.fraction for p in todo for s in p.sources))
    failed = []
    with ProgressDisplay(stage.counters, total, "pack", unit="tok", quiet=quiet) as display:
        for p in mine:
            if p.index in reports:
                display.write(f"skip partition {p.index}: already done")
            elif (reason := found[p.index][1]) is not None:
                display.write(f"redo partition {p.index}: {reason}")
        for report in executor.run(stage, todo):
            if "error" in report or "held_by" in report:
                if "error" in report:
                    failed.append(report)
                display.write(f"FAILED partition {report['partition']}: {report['error']}" if "error" in report else
                              f"skip partition {report['partition']}: being done by {report['held_by']}")
                continue
            note = report.pop("note")
            reports[report["partition"]] = report
            if not executor.shares_memory and note != "done meanwhile by another run":
                tokens = report["counts"]["tokens"]
                stage.counters.add(tokens, report["counts"]["documents"], tokens)
            rows = sum(s["rows"] for s in report["shards"])
            display.write(f"skip partition {report['partition']}: {note}" if note == "done meanwhile by another run"
                          else f"done partition {report['partition']}: {rows} rows in {len(report['shards'])} "
                               f"shard(s) from {', '.join(sorted(report['subsets']))}" + (f" ({note})" if note else ""))
    return failed


def _finish(docs_dir: AnyPath, documents: DocumentManifest, config: PackConfig, stage: PackStage,
            partitions: list[Partition], reports: dict[int, dict[str, Any]]) -> SequenceManifest | None:
    """Under a lock, gather the partitions others finished meanwhile; where all are done, write the manifest and
    remove what earlier packs left (their shards and reports) that it does not list."""
    out = stage.out
    with locked(out.local / ".manifest.lock"):
        for p in partitions:
            if p.index not in reports and (report := _done(out, p, stage.options)[0]) is not None:
                reports[p.index] = report
        if len(reports) < len(partitions):
            return None
        ordered = [reports[p.index] for p in partitions]
        if not any(r["shards"] for r in ordered):
            totals = documents.totals
            cause = (f"segment rejected all {totals['rejects']:,} records (see {docs_dir}/rejects/)" if
                     not totals["documents"] and totals["rejects"] else "segment found only empty documents" if
                     not totals["documents"] else "the subset weights leave every document out")
            raise WwmPrepError(f"{docs_dir}: no documents to pack: {cause}")
        manifest = _manifest(docs_dir, documents, config, stage.specials, stage.ends, ordered)
        manifest.write(out.local)
        out.publish("manifest.json")
        written = {s["file"] for s in manifest.shards}
        for stale in out.names():
            if stale.startswith("sequences-") and stale.endswith(".arrow") and stale not in written:
                out.remove(stale)
        for stale in out.names("units"):
            if stale.removesuffix(".json") not in {p.name for p in partitions}:
                out.remove(f"units/{stale}")
        return manifest
