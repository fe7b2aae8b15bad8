"""Where a stage's independent work units run: in this process, in forked worker processes, or on Ray.

A stage says what every unit needs (`prepare`, e.g. loading a dictionary) and how to do one unit (`run`,
which writes the unit's own output and returns a small report). The caller picks an executor object, which
only decides where `run` happens; reports come back, data never passes through the parent. Which units a
run takes (all, or one slice of an array job) is a `Slice`, decided before any executor is involved.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from wwm_prep.core.errors import WwmPrepError

U = TypeVar("U")


class Stage(Protocol):
    def prepare(self) -> None: ...

    def run(self, unit: Any) -> dict[str, Any]: ...


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class Slice:
    """The deterministic share of an array job: every `num_shards`-th unit, starting at `shard_index`."""

    num_shards: int = 1
    shard_index: int = 0

    def __post_init__(self) -> None:
        if self.num_shards < 1 or not 0 <= self.shard_index < self.num_shards:
            raise WwmPrepError(f"--shard-index must be in 0..{self.num_shards - 1} "
                               f"(got {self.shard_index} of {self.num_shards})")

    def of(self, units: Sequence[U]) -> list[U]:
        return list(units[self.shard_index :: self.num_shards])


# The stage and units of a local run, inherited by forked workers: the dictionary loaded before the
# fork is shared copy-on-write instead of being loaded again in every worker.
_STAGE: Stage | None = None
_UNITS: Sequence[Any] = ()


def _run_one(index: int) -> dict[str, Any]:
    assert _STAGE is not None
    return _STAGE.run(_UNITS[index])


@dataclass(frozen=True)
class LocalExecutor:
    """Units in this process (1 worker) or in worker processes forked after `stage.prepare()`."""

    workers: int = 1
    shares_memory = True  # forked workers reach the parent's shared-memory progress counters

    def run(self, stage: Stage, units: Sequence[Any]) -> Iterator[dict[str, Any]]:
        """Yield each unit's report as it finishes; `stage.prepare()` runs once, before any fork."""
        global _STAGE, _UNITS
        stage.prepare()
        if self.workers <= 1 or len(units) <= 1:
            for unit in units:
                yield stage.run(unit)
            return
        _STAGE, _UNITS = stage, units
        pool = multiprocessing.get_context("fork").Pool(min(self.workers, len(units)))
        try:
            yield from pool.imap_unordered(_run_one, range(len(units)))
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
            _STAGE, _UNITS = None, ()


@dataclass(frozen=True)
class RayExecutor:
    """Units on a pool of Ray actors (a local Ray, or the cluster at `address`), each preparing the stage once."""

    workers: int = 1
    address: str | None = None
    shares_memory = False  # actors report per unit; the parent counts their progress

    def run(self, stage: Stage, units: Sequence[Any]) -> Iterator[dict[str, Any]]:
        try:
            import ray
            from ray.util import ActorPool
        except ImportError as exc:
            raise WwmPrepError("--executor ray needs Ray: pip install 'wwm-prep[ray]'") from exc
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     **({} if self.address else {"num_cpus": self.workers}))

        @ray.remote(num_cpus=1)
        class Worker:
            def __init__(self, stage: Stage):
                self.stage = stage
                self.stage.prepare()

            def run(self, unit: Any) -> dict[str, Any]:
                return self.stage.run(unit)

        actors = [Worker.remote(stage) for _ in range(max(1, min(self.workers, len(units))))]
        try:
            yield from ActorPool(actors).map_unordered(lambda actor, unit: actor.run.remote(unit), units)
        finally:
            for actor in actors:
                ray.kill(actor)


Executor = LocalExecutor | RayExecutor
