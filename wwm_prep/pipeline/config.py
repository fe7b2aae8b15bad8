"""What the pipeline's commands are set up with: one object per group of options, each default written once.

Light to import (no NumPy, Arrow or vibrato), so the command line reads its defaults and choices from here and
from the registry of packing strategies instead of copying them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from wwm_prep.core.claims import DEFAULT_TIMEOUT
from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.lengths import LengthWeights
from wwm_prep.pipeline.strategies.base import Strategy, strategy

MIN_SEQ_LEN = 64
DEFAULT_SHARD_ROWS = 2048
DEFAULT_CHUNK_SIZE = 64 << 20  # ≈16 M llm-jp tokens: ~30 s of one core, a ~75 MB shard (see the README)
DEFAULT_TEXT_COLUMN = "text"  # where llm-jp-corpus-v3's records, and most Parquet corpora, hold their text

T = TypeVar("T")


def default(cls: type, name: str) -> Any:
    """The default of a dataclass field: what a command-line option shows and falls back to."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def from_values(cls: type[T], values: Mapping[str, Any], **given: Any) -> T:
    """A dataclass built from the command line's values of the same names (read, never taken out), with `given`
    for those the command line names or types otherwise."""
    names = {f.name for f in dataclasses.fields(cls) if f.init} - set(given)  # type: ignore[arg-type]
    return cls(**{name: values[name] for name in names}, **given)


@dataclass(frozen=True)
class SegmentConfig:
    """What a segment run makes its shards with, built once (by the command line) and passed down whole."""

    dictionary: str | None = None  # a registered name, a dictionary directory or file; None: the default
    tokenizer: str | None = None  # a SentencePiece .model, a tokenizer.json or its directory; None: the sample model
    subsets: tuple[str, ...] | None = None  # subsets to take from corpus roots; None: all
    cache: Path | None = None  # where dictionaries are converted and fetched to
    overwrite: bool = False  # redo every unit, even of an output made with another configuration
    split_lines: bool = False  # vibrato reads one line at a time, not whole documents
    vibrato_defaults: bool = False  # vibrato's own settings, not the MeCab-identical ones
    verify_inputs: bool = False  # record and compare each input's sha256, not only its size and mtime
    claim_timeout: float = DEFAULT_TIMEOUT  # seconds before a silent run's claim on a unit is taken over
    chunk_size: int = DEFAULT_CHUNK_SIZE  # bytes of text per unit, about; a file no larger is one unit
    text_column: str = DEFAULT_TEXT_COLUMN  # the JSON field or Parquet column that holds the text


@dataclass(frozen=True)
class PackConfig:
    """How to pack, built once (by the command line), checked here, and recorded in the manifest.

    `strategy_options` are the strategy's own (best-fit's `window`): each is settled to its default where not
    given, and options of other strategies are dropped, so two configs that pack alike are equal.
    """

    seq_len: int
    strategy: str = "best-fit"
    strategy_options: Mapping[str, int] = field(default_factory=dict)
    seed: int = 0
    subset_weights: Mapping[str, float] = field(default_factory=dict)
    length_weights: LengthWeights = LengthWeights()  # by document length; they multiply the subset weights
    shard_rows: int = DEFAULT_SHARD_ROWS
    tokenizer: Path | None = None  # the documents' tokenizer, where it has moved since segment
    partitions: int | None = None  # None: one per PARTITION_TOKENS tokens, at most one per pass over a shard

    def __post_init__(self) -> None:
        if self.partitions is not None and self.partitions < 1:
            raise WwmPrepError(f"--partitions must be at least 1, not {self.partitions}")
        if self.seq_len < MIN_SEQ_LEN:
            raise WwmPrepError(f"--seq-len must be at least {MIN_SEQ_LEN}, not {self.seq_len}")
        object.__setattr__(self, "strategy_options", self.packer.settle(self.strategy_options))
        if self.shard_rows < 1:
            raise WwmPrepError(f"--shard-rows must be at least 1, not {self.shard_rows}")

    @property
    def packer(self) -> Strategy:
        return strategy(self.strategy)


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


@dataclass(frozen=True)
class RunOptions:
    """How a run shares its work (workers, executor, array slices, concurrent runs on one output): the same for
    `segment`, `pack` and `prepare`."""

    workers: int | None = None  # None: the machine's cores
    executor: str = "local"  # or "ray"
    ray_address: str | None = None
    num_shards: int = 1
    shard_index: int = 0
    claim_timeout: float = DEFAULT_TIMEOUT
    overwrite: bool = False  # first remove what earlier runs made in the output, then start again
    quiet: bool = False

    def executor_and_slice(self) -> tuple[Any, Any]:
        """The executor and the array-job slice asked for (imported here, when a command runs)."""
        from wwm_prep.pipeline.executor import LocalExecutor, RayExecutor, Slice, default_workers

        workers = self.workers or default_workers()
        executor = RayExecutor(workers, self.ray_address) if self.executor == "ray" else LocalExecutor(workers)
        return executor, Slice(self.num_shards, self.shard_index)
