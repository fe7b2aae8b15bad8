"""Pack's plan: the passes over document shards that the subset and length weights ask for, dealt to partitions by
tokens alone.

A partition is one unit of pack's work. Which passes it holds depends on the document shards (one per chunk of an
input file, so a corpus of few large files still gives many), the weights, the partition count and the seed;
never on how many workers run.
"""

from __future__ import annotations

import heapq
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.lengths import LengthWeights, token_shares
from wwm_prep.core.shards import ListColumn, load_schema, read_batches
from wwm_prep.core.storage import AnyPath, identity, is_remote, sha256_of

PARTITION_TOKENS = 1 << 26  # default partitions hold ~67 M tokens (~8,000 rows of 8,192): best-fit's tail stays small


@dataclass(frozen=True)
class Source:
    """One pass over a document shard. A document of weight w (its subset's times its length's) is taken by
    the passes before ⌊w⌋ and, with chance w − ⌊w⌋, by pass ⌊w⌋: so weights above 1 make several passes
    (copies), and the last takes a seeded subsample."""

    unit: str
    subset: str
    source: str
    path: AnyPath
    sha256: str  # of the shard, as segment recorded it
    size: int | None  # its bytes, where segment recorded them
    tokens: int
    copy: int
    fraction: float  # share of its tokens this pass is expected to take
    weight: float = 1.0  # its subset's weight
    by_length: LengthWeights = LengthWeights()

    def key(self) -> list[Any]:
        """What a partition's report records of this pass, to tell on a rerun whether it is the same."""
        return [self.unit, self.copy, self.fraction, self.sha256]

    def chances(self, lengths: np.ndarray) -> np.ndarray:
        """float64[documents]: each document's chance to be taken by this pass, from its length in tokens."""
        return np.clip(self.weight * self.by_length.of(lengths) - self.copy, 0.0, 1.0)

    def draws(self, seed: int) -> np.random.Generator:
        """The pass's own random stream: the same whichever partition, worker or plan reads it."""
        return np.random.default_rng([seed, zlib.crc32(self.unit.encode()), self.copy])

    def take(self, draws: np.random.Generator, lengths: np.ndarray) -> np.ndarray:
        """bool[documents]: which of the next documents of the shard this pass takes (one draw each, in order,
        so a shard read in batches or whole takes the same)."""
        return draws.random(lengths.shape[0]) < self.chances(lengths)


@dataclass(frozen=True)
class Partition:
    """One unit of pack's work: the passes dealt to it, packed on their own into its own shards."""

    index: int
    sources: tuple[Source, ...]

    @property
    def name(self) -> str:
        return f"partition-{self.index:05d}"


def shard_lengths(path: AnyPath) -> np.ndarray:
    """int64[documents]: the length in tokens of each document of a shard, from its list offsets alone."""
    batches = read_batches(path, load_schema("document"), mapped=True)
    parts = [ListColumn.of(batch, "input_ids").lengths for batch in batches]  # values are views: not read
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def _shares(weight: float, by_length: LengthWeights, path: AnyPath) -> list[float]:
    """The share of a shard's tokens each of its passes is expected to take; with length weights, from the
    lengths of its documents (read from the shard: the document manifest records only its total)."""
    if not by_length:
        return [min(weight - copy, 1.0) for copy in range(math.ceil(weight))]
    lengths = shard_lengths(path)
    lengths = lengths[lengths > 0]
    if not lengths.size:
        return []
    weights = weight * by_length.of(lengths)
    total = float(lengths.sum())
    return [float(np.dot(lengths, np.clip(weights - copy, 0.0, 1.0))) / total
            for copy in range(math.ceil(float(weights.max())))]


def passes(docs_dir: AnyPath, units: Mapping[str, Any], weights: Mapping[str, float],
           by_length: LengthWeights = LengthWeights()) -> list[Source]:
    """Every pass over a document shard that the subset and length weights ask for (checksums are verified by
    the partition that reads them, so that a cluster's workers share that I/O)."""
    subsets = sorted({u["subset"] for u in units.values()})
    unknown = sorted(set(weights) - set(subsets))
    if unknown:
        raise WwmPrepError(
            f"subset weights name {', '.join(unknown)}; the documents hold {', '.join(subsets) or 'none'}"
        )
    sources = []
    for name in sorted(units):
        unit = units[name]
        weight = weights.get(unit["subset"], 1.0)
        if weight <= 0:
            continue
        shard = docs_dir / unit["shard"]
        if not shard.is_file():
            raise WwmPrepError(f"{shard} is missing; rerun `wwm-prep segment`")
        sources += [Source(name, unit["subset"], unit["source"], shard, unit["sha256"], unit.get("bytes"),
                           int(unit["tokens"]), copy, fraction, weight, by_length)
                    for copy, fraction in enumerate(_shares(weight, by_length, shard))]
    if not sources:
        raise WwmPrepError(f"{docs_dir}: no documents to pack (no shards, or every document weighted 0)")
    return sources


def intact(source: Source) -> bool:
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


def plan(docs_dir: AnyPath, units: Mapping[str, Any], sources: Sequence[Source], seed: int) -> dict[str, Any]:
    """What pack will take, by subset and by the band of each document's length, beside the documents as
    segment made them: each pass's draws replayed on its shard's lengths (read from the list offsets; no token
    is read), so the counts are those of the documents pack then takes, not an estimate."""
    lengths: dict[str, np.ndarray] = {}
    for name, unit in sorted(units.items()):
        shard = docs_dir / unit["shard"]
        if shard.is_file():
            lengths[name] = shard_lengths(shard)
    taken: dict[str, list[np.ndarray]] = {}
    for source in sources:
        docs = lengths[source.unit]
        taken.setdefault(source.subset, []).append(docs[source.take(source.draws(seed), docs) & (docs > 0)])
    segmented: dict[str, list[np.ndarray]] = {}
    for name, docs in lengths.items():
        segmented.setdefault(units[name]["subset"], []).append(docs[docs > 0])

    def composition(parts: list[np.ndarray]) -> dict[str, Any]:
        docs = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return {"documents": int(docs.size), "tokens": int(docs.sum()), "by_document_length": token_shares(docs)}

    subsets = sorted(segmented)
    return {"segmented": {"all": composition([d for s in subsets for d in segmented[s]]),
                          **{s: composition(segmented[s]) for s in subsets}},
            "packed": {"all": composition([d for s in subsets for d in taken.get(s, [])]),
                       **{s: composition(taken.get(s, [])) for s in subsets}}}
