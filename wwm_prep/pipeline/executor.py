"""Where a stage's independent work units run: in this process, in forked worker processes, or on Ray.

A stage says what every unit needs (`prepare`, e.g. loading a dictionary) and how to do one unit (`run`,
which writes the unit's own output and returns a small result). The caller picks an executor object, which
only decides where `run` happens; reports come back, data never passes through the parent. Which units a
run takes (all, or one slice of an array job) is a `Slice`, decided before any executor is involved.
"""

from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.pool
import os
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from wwm_prep.core.errors import WwmPrepError

U = TypeVar("U")


class Stage(Protocol):
    def prepare(self) -> None: ...

    def run(self, unit: Any) -> Any: ...  # the unit's result (`units.UnitResult`), small and picklable


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


# The prepared stage of this process's fork pool, inherited by the workers forked from it: the dictionary
# loaded before the fork is shared copy-on-write instead of being loaded again in every worker.
_STAGE: Stage | None = None


def _fork_pool(stage: Stage, workers: int) -> multiprocessing.pool.Pool:
    """`workers` processes forked now from this one, after its `stage.prepare()`, to run units with `_run_forked`.

    They take SIGTERM's default action, so `terminate()` stops them at once even where this process (a Ray
    actor) handles SIGTERM with Python code they must not run; and they ignore SIGINT, so Ctrl-C reaches the
    parent alone, which stops them and says so once instead of each worker printing a traceback."""
    global _STAGE
    _STAGE = stage
    return multiprocessing.get_context("fork").Pool(workers, _worker_signals)


def _worker_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_forked(unit: Any) -> Any:
    assert _STAGE is not None
    return _STAGE.run(unit)


@dataclass(frozen=True)
class LocalExecutor:
    """Units in this process (1 worker) or in worker processes forked after `stage.prepare()`."""

    workers: int = 1
    shares_memory = True  # forked workers reach the parent's shared-memory progress counters

    def run(self, stage: Stage, units: Sequence[Any]) -> Iterator[Any]:
        """Yield each unit's report as it finishes; `stage.prepare()` runs once, before any fork."""
        global _STAGE
        stage.prepare()
        if self.workers <= 1 or len(units) <= 1:
            for unit in units:
                yield stage.run(unit)
            return
        pool = _fork_pool(stage, min(self.workers, len(units)))
        try:
            yield from pool.imap_unordered(_run_forked, units)
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
            _STAGE = None


def _per_node(cpus: dict[str, int], workers: int) -> dict[str, int]:
    """How many of `workers` each node runs, given each node's CPUs: the nodes with the most CPUs are filled
    first. Every node in use holds one copy of what `prepare` loads (up to ~1.5 GB for a dictionary), so the
    fewest nodes means the fewest copies; spreading would load more of them for units that need only a CPU
    each. Workers beyond the cluster's CPUs are not started: a node asked for more CPUs than it has never
    places the actor."""
    share = {}
    for node, count in sorted(cpus.items(), key=lambda item: -item[1]):
        if workers > 0 and count > 0:
            share[node] = min(count, workers)
            workers -= share[node]
    return share


@dataclass(frozen=True)
class RayExecutor:
    """Units on Ray (a local Ray, or the cluster at `address`): one actor per node prepares the stage once and
    runs the units dealt to it in worker processes forked from it, as `LocalExecutor` does on one machine."""

    workers: int = 1
    address: str | None = None
    shares_memory = False  # actors report per unit; the parent counts their progress

    def run(self, stage: Stage, units: Sequence[Any]) -> Iterator[Any]:
        """Yield each unit's report as it finishes; each actor has as many units in flight as it has workers,
        and is given the next unit as one finishes, so a node that goes faster does more of them."""
        try:
            import ray
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        except ImportError as exc:
            raise WwmPrepError("--executor ray needs Ray: pip install 'wwm-prep[ray]'") from exc
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     **({} if self.address else {"num_cpus": self.workers}))

        @ray.remote
        class NodeWorkers:
            def __init__(self, stage: Stage, workers: int):
                stage.prepare()
                self.pool = _fork_pool(stage, workers)

            def run(self, unit: Any) -> Any:
                return self.pool.apply(_run_forked, (unit,))

            def shutdown(self) -> None:
                self.pool.terminate()  # forked workers would outlive a killed actor

        cpus = {n["NodeID"]: int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n["Alive"]}
        share = _per_node(cpus, min(self.workers, len(units)))
        if units and not share:
            raise WwmPrepError("the Ray cluster has no alive node with a CPU to run on")
        # one thread more than its workers: `shutdown` must not wait for a free one behind the units in flight
        actors = [(NodeWorkers.options(num_cpus=count, max_concurrency=count + 1,
                                       scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                   .remote(stage, count), count) for node, count in share.items()]
        todo = iter(units)
        running: dict[Any, Any] = {}  # a unit's report to come -> the actor running it

        def deal(actor: Any) -> None:
            for unit in itertools.islice(todo, 1):
                running[actor.run.remote(unit)] = actor

        try:
            for actor, count in actors:
                for _ in range(count):
                    deal(actor)
            while running:
                [done], _ = ray.wait(list(running))
                deal(running.pop(done))
                yield ray.get(done)
        finally:
            ray.wait([actor.shutdown.remote() for actor, _ in actors], num_returns=len(actors), timeout=30)
            for actor, _ in actors:
                ray.kill(actor)


Executor = LocalExecutor | RayExecutor
