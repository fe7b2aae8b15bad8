"""Running a stage's independent work units: in this process, in forked worker processes, or on Ray.

A stage says what every unit needs (`prepare`, e.g. loading a dictionary) and how to do one unit
(`run`, which writes the unit's own output and returns a small report). Executors only decide where
`run` happens; reports come back, data never passes through the parent.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from wwm_prep.core.errors import WwmPrepError


class Stage(Protocol):
    def prepare(self) -> None: ...

    def run(self, unit: Any) -> dict[str, Any]: ...


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def slice_units(units: Sequence[Any], num_shards: int, shard_index: int) -> list[Any]:
    """The deterministic share of an array job: every num_shards-th unit, starting at shard_index."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise WwmPrepError(f"--shard-index must be in 0..{num_shards - 1} (got {shard_index} of {num_shards})")
    return list(units[shard_index::num_shards])


# The stage and units of a local run, inherited by forked workers: the dictionary loaded before the
# fork is shared copy-on-write instead of being loaded again in every worker.
_STAGE: Stage | None = None
_UNITS: Sequence[Any] = ()


def _run_one(index: int) -> dict[str, Any]:
    assert _STAGE is not None
    return _STAGE.run(_UNITS[index])


def run_local(stage: Stage, units: Sequence[Any], workers: int) -> Iterator[dict[str, Any]]:
    """Yield each unit's report as it finishes; `stage.prepare()` runs once, before any fork."""
    global _STAGE, _UNITS
    stage.prepare()
    if workers <= 1 or len(units) <= 1:
        for unit in units:
            yield stage.run(unit)
        return
    _STAGE, _UNITS = stage, units
    pool = multiprocessing.get_context("fork").Pool(min(workers, len(units)))
    try:
        yield from pool.imap_unordered(_run_one, range(len(units)))
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
        _STAGE, _UNITS = None, ()


def run_ray(stage: Stage, units: Sequence[Any], workers: int, address: str | None) -> Iterator[dict[str, Any]]:
    """Yield each unit's report from a pool of Ray actors, each of which prepares the stage once."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as exc:
        raise WwmPrepError("--executor ray needs Ray: pip install 'wwm-prep[ray]'") from exc
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 **({} if address else {"num_cpus": workers}))

    @ray.remote(num_cpus=1)
    class Worker:
        def __init__(self, stage: Stage):
            self.stage = stage
            self.stage.prepare()

        def run(self, unit: Any) -> dict[str, Any]:
            return self.stage.run(unit)

    actors = [Worker.remote(stage) for _ in range(max(1, min(workers, len(units))))]
    try:
        yield from ActorPool(actors).map_unordered(lambda actor, unit: actor.run.remote(unit), units)
    finally:
        for actor in actors:
            ray.kill(actor)
