"""The `pack` stage: document shards → rows of exactly `seq_len` tokens → shuffled sequence shards.

The passes over document shards that the subset and length weights ask for are dealt to *partitions* (`partitions`), and
each partition is a unit of work under the protocol of `units`: its shards are read in a seeded, token-weighted
interleave, cut into pieces and packed into rows by `packing`, and written in shards of `shard_rows` rows, each
shuffled. So one worker or many, Ray or array slices give the same bytes; a rerun skips the partitions done and
redoes those whose document shards changed; the run that completes the last writes the manifest.

Memory per worker is bounded whatever the input size: document shards are read one record batch at a time,
the packer holds at most `window` pieces (plus the batch being added), and the writer one shard of rows.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from wwm_prep.core.claims import DEFAULT_TIMEOUT
from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.manifest import (DocumentManifest, SequenceConfig, SequenceManifest, TokenizerRecord,
                                    manifest_sha256, schema_ref)
from wwm_prep.core.rows import PieceSource
from wwm_prep.core.shards import ListColumn, ShardWriter, load_schema, read_batches
from wwm_prep.core.storage import AnyPath, Output, is_remote, local_copy, location, recorded
from wwm_prep.pipeline.config import PackConfig
from wwm_prep.pipeline.packing import (SENTENCE_REACH, Piece, SentenceEnds, Specials, columns, cut_bounds,
                                       load_sentence_ends)
from wwm_prep.pipeline.executor import Executor, LocalExecutor, Slice
from wwm_prep.pipeline.partitions import Partition, Source, deal, default_partitions, intact, passes, plan
from wwm_prep.pipeline.progress import Counters, ProgressDisplay
from wwm_prep.pipeline.outputs import Identity, claim_output
from wwm_prep.pipeline.units import Made, Status, UnitFailed, UnitStage, announce, drive, gather, lock
from wwm_prep.text.registry import cache_dir
from wwm_prep.text.tokenizer import locate_tokenizer

MAX_OPEN = 64  # document shards the interleave draws from at once (open files only: a batch is read when drawn)
WRITE_ROWS = 256  # rows per Arrow record batch of a sequence shard
SHARD_NAME = "sequences-{:05d}-{:05d}.arrow"  # partition, shard within it
COUNTS = ("documents", "dropped_documents", "pieces", "tokens", "cut_documents", "cuts", "sentence_cuts",
          "group_splits")
# Independent random streams derived from --seed. The partition comes last in their seeds: a seed is padded with
# zeros, so partition 0 draws what packs made before partitions drew, and their bytes stay reproducible.
_INTERLEAVE, _SHUFFLE = 1, 2


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
            f"{'/'.join('<' + m.upper() + '>' for m in missing)} piece; pack needs <CLS>, <SEP> and <PAD> "
            f"(for a tokenizer.json: name {' and '.join(m + '_token' for m in missing)} in a tokenizer_config.json "
            "beside it and segment again with --tokenizer naming their directory)"
        )
    return Specials(ids["cls"], ids["sep"], ids["pad"])


def _sentence_ends(tokenizer: TokenizerRecord, override: Path | None) -> SentenceEnds | None:
    """The tables for the tokenizer the documents were made with; None where its model is not at hand."""
    override = local_copy(location(override), cache_dir()) if override is not None else None
    path, _ = locate_tokenizer(tokenizer.path, tokenizer.sha256, override,
                               made_with="the documents were segmented with", required=False)
    return load_sentence_ends(path, cache_dir()) if path is not None else None


def _read(source: Source, seed: int) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """A source's record batches, each with which of its documents this pass takes.

    A `map`, not a generator: a suspended generator would keep its last batch alive, one per open source."""
    draws = source.draws(seed)
    return map(lambda batch: (batch, source.take(draws, ListColumn.of(batch, "input_ids").lengths)),
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


def _pieces(source: Source, batch: pa.RecordBatch, keep: np.ndarray, capacity: int, ends: SentenceEnds | None,
            counts: dict[str, int], subsets: dict[str, dict[str, int]], progress: Counters) -> list[Piece]:
    """The pieces of a batch's documents taken by this pass, in document order."""
    id_column, ws_column = ListColumn.of(batch, "input_ids"), ListColumn.of(batch, "word_starts")
    ids, offsets, word_starts = id_column.values, id_column.offsets, ws_column.values
    if not np.array_equal(offsets, ws_column.offsets):
        raise WwmPrepError(
            f"{source.path}: input_ids and word_starts differ in length; the shard is corrupt, rerun segment"
        )
    lengths = np.diff(offsets)
    docs = np.flatnonzero(keep & (lengths > 0))
    tokens = int(lengths[docs].sum())
    counts["documents"] += len(docs)
    if source.copy == 0:  # left out by the weights: not packed at all (a later pass not copying it drops nothing)
        counts["dropped_documents"] += int(np.count_nonzero(~keep))
    counts["tokens"] += tokens
    subsets[source.subset]["documents"] += len(docs)
    subsets[source.subset]["tokens"] += tokens
    progress.add(documents=len(docs), tokens=tokens)
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


def _output(out_dir: AnyPath | str, docs_dir: AnyPath, config: PackConfig, overwrite: bool,
            claim_timeout: float) -> Output:
    """The output directory, made this run's: refused where it is the documents' own, or another run's."""
    if str(out_dir).rstrip("/") == str(docs_dir).rstrip("/") or (
            not is_remote(docs_dir) and Path(out_dir).exists() and Path(out_dir).resolve() == docs_dir.resolve()):
        raise WwmPrepError("--out must not be the document directory")
    given = {name: value for name, value in asdict(config).items() if name != "tokenizer"}
    identity = Identity.of("pack", [recorded(docs_dir)], given)
    return claim_output(out_dir, cache_dir() / "staging", identity, overwrite=overwrite, claim_timeout=claim_timeout)


def _options(config: PackConfig, partitions: int, specials: Specials, ends: SentenceEnds | None) -> dict[str, Any]:
    """Everything besides its inputs that a partition's rows depend on: a report made with others is redone."""
    options = {"seq_len": config.seq_len, "strategy": config.strategy, **config.strategy_options, "seed": config.seed,
               "subset_weights": dict(sorted(config.subset_weights.items())), "shard_rows": config.shard_rows,
               "partitions": partitions, "specials": asdict(specials), "sentence_ends": ends is not None,
               "schema": load_schema("sequence").version}
    if config.length_weights:  # absent without them, so that partitions packed before they existed stay done
        options["length_weights"] = config.length_weights.record()
    return options


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
class PackStage(UnitStage[Partition]):
    """One unit = one partition; nothing to prepare (the sentence-end tables come along, they are small)."""

    stage = "pack"
    out: Output
    config: PackConfig
    options: dict[str, Any]
    specials: Specials
    ends: SentenceEnds | None
    claim_timeout: float = DEFAULT_TIMEOUT
    counters: Counters | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "counters": None}  # Ray workers report per unit instead

    def name(self, unit: Partition) -> str:
        return unit.name

    def done(self, unit: Partition) -> tuple[dict[str, Any] | None, str | None]:
        return _done(self.out, unit, self.options)

    def temps(self, unit: Partition) -> Iterable[Path]:
        return self.out.local.glob(f".sequences-{unit.index:05d}-*.tmp-*")

    def work(self, unit: Partition) -> Made:
        for source in {s.unit: s for s in unit.sources}.values():
            if not intact(source):
                raise UnitFailed(f"{source.path} has changed since `wwm-prep segment` wrote it (sha256 or size "
                                 "differs); rerun segment")
        self.out.local.mkdir(parents=True, exist_ok=True)  # a Ray node's own staging, for a URL
        report = self._pack(unit)
        return Made(report, [shard["file"] for shard in report["shards"]])

    def _pack(self, partition: Partition) -> dict[str, Any]:
        """Stream the partition's sources through cutting and packing into shards of `shard_rows` rows."""
        started, config, counters = time.perf_counter(), self.config, self.counters or Counters()
        counts = dict.fromkeys(COUNTS, 0)
        subsets = {s.subset: {"documents": 0, "tokens": 0} for s in partition.sources}
        batches = (_pieces(source, batch, keep, config.seq_len - 2, self.ends, counts, subsets, counters)
                   for source, batch, keep in _interleave(partition.sources, config.seed, partition.index))
        rows = config.packer.rows(batches, config.seq_len, config.strategy_options)
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
    settings = SequenceConfig(
        schema=schema_ref(schema.name, schema.version),
        seq_len=config.seq_len,
        strategy=config.strategy,
        window=config.strategy_options.get("window"),  # the manifest's one strategy option (schemas/manifest.json)
        seed=config.seed,
        subset_weights={name: s["weight"] for name, s in subsets.items()},
        length_weights=config.length_weights.record(),
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
        config=settings,
        documents={"dir": recorded(docs_dir), "manifest_sha256": manifest_sha256(docs_dir),
                   "config": documents.config.to_dict(), "totals": documents.totals, "failed": documents.failed},
        totals={**counts, "rows": n_rows, "pad_tokens": pad,
                "efficiency": round(1 - pad / (n_rows * config.seq_len), 6) if n_rows else 0.0},
        subsets=subsets,
        shards=shards,
    )


def plan_pack(docs_dir: AnyPath | str, config: PackConfig) -> dict[str, Any]:
    """`pack --plan`: what the weights will give, by subset and document length, from the documents' lengths
    alone (nothing is packed or written): the documents and tokens pack then takes, exactly."""
    docs_dir = location(docs_dir)
    documents = _documents(docs_dir)
    sources = passes(docs_dir, documents.units, config.subset_weights, config.length_weights)
    return {"seq_len": config.seq_len, "seed": config.seed,
            "subset_weights": dict(sorted(config.subset_weights.items())),
            "length_weights": config.length_weights.record(),
            **plan(docs_dir, documents.units, sources, config.seed)}


def run_pack(docs_dir: AnyPath | str, out_dir: AnyPath | str, config: PackConfig, *,
             executor: Executor = LocalExecutor(),
             part: Slice = Slice(), claim_timeout: float = DEFAULT_TIMEOUT, overwrite: bool = False,
             quiet: bool = False) -> SequenceManifest | None:
    """Pack the document shards of `docs_dir` (the `part` of the partitions an array job takes) into sequence
    shards in `out_dir`, skipping partitions already done; returns the manifest, or None while partitions
    are left to other slices or runs (the one that completes the last writes it)."""
    docs_dir = location(docs_dir)
    documents = _documents(docs_dir)
    tokenizer = documents.config.tokenizer
    specials = _specials(tokenizer)
    sources = passes(docs_dir, documents.units, config.subset_weights, config.length_weights)
    partitions = deal(sources, config.partitions or default_partitions(sources), config.seed)
    ends = _sentence_ends(tokenizer, config.tokenizer)
    if ends is None:
        print(f"tokenizer {tokenizer.path} not found: cutting long documents at group edges only "
              "(give it with --tokenizer to prefer sentence ends)", file=sys.stderr)
    out = _output(out_dir, docs_dir, config, overwrite, claim_timeout)
    options = _options(config, len(partitions), specials, ends)
    stage = PackStage(out, config, options, specials, ends, claim_timeout, Counters())
    found = {p.name: stage.done(p) for p in partitions}
    if any(report is None for report, _ in found.values()):
        out.remove("manifest.json")  # an earlier pack's, no longer what the shards hold
    reports = {name: report for name, (report, _) in found.items() if report is not None}
    mine = part.of(partitions)
    todo = [p for p in mine if p.name not in reports]
    total = int(sum(s.tokens * s.fraction for p in todo for s in p.sources))
    with ProgressDisplay(stage.counters, total, "pack", measure="tokens", units=len(todo),  # type: ignore[arg-type]
                         what="partitions", quiet=quiet) as display:
        announce(display, [(f"partition {p.index}", *found[p.name]) for p in mine])
        failed = [r for r in drive(stage, executor, todo, reports, display, _label, _summary, _progress)
                  if r.status is Status.FAILED]
    if failed:
        raise WwmPrepError("; ".join(f"{_label(f.name)}: {f.why}" for f in failed))
    return _finish(docs_dir, documents, config, stage, partitions, reports)


def _label(name: str) -> str:
    return f"partition {int(name.removeprefix('partition-'))}"


def _summary(report: dict[str, Any]) -> str:
    rows = sum(s["rows"] for s in report["shards"])
    return f"{rows} rows in {len(report['shards'])} shard(s) from {', '.join(sorted(report['subsets']))}"


def _progress(report: dict[str, Any]) -> dict[str, int]:
    return {"documents": report["counts"]["documents"], "tokens": report["counts"]["tokens"]}


def _finish(docs_dir: AnyPath, documents: DocumentManifest, config: PackConfig, stage: PackStage,
            partitions: list[Partition], reports: dict[str, dict[str, Any]]) -> SequenceManifest | None:
    """Under a lock, gather the partitions others finished meanwhile; where all are done, write the manifest and
    remove what earlier packs left (their shards and reports) that it does not list."""
    out = stage.out
    with lock(out):
        gather(stage, partitions, reports)
        if len(reports) < len(partitions):
            return None
        ordered = [reports[p.name] for p in partitions]
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
