"""Pack's plan: the passes over document shards that the subset weights ask for, dealt to partitions by tokens alone.

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

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.storage import AnyPath, identity, is_remote, sha256_of

PARTITION_TOKENS = 1 << 26  # default partitions hold ~67 M tokens (~8,000 rows of 8,192): best-fit's tail stays small


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


def passes(docs_dir: AnyPath, units: Mapping[str, Any], weights: Mapping[str, float]) -> list[Source]:
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
