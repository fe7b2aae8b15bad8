"""Executors decide only where units run: the reports are the same in this process, in forked workers and on Ray,
and the stage is prepared once per machine, not once per worker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.pipeline.executor import LocalExecutor, RayExecutor, Slice, _per_node


@dataclass
class Squares:
    """A stage whose `prepare` is expensive in real life (a dictionary): it must run once, in the parent."""

    prepared: list[int] = field(default_factory=list)

    def prepare(self) -> None:
        self.prepared.append(os.getpid())

    def run(self, unit: int) -> dict[str, Any]:
        if unit < 0:
            raise ValueError(f"a bug on unit {unit}")
        return {"unit": unit, "square": unit * unit, "prepared_in": self.prepared[-1], "pid": os.getpid(),
                "parent": os.getppid()}


@pytest.mark.parametrize("workers", [1, 2])
def test_every_unit_runs_once_and_prepare_runs_once_before_the_fork(workers: int) -> None:
    stage = Squares()
    reports = list(LocalExecutor(workers).run(stage, list(range(10))))
    assert sorted(r["unit"] for r in reports) == list(range(10))
    assert all(r["square"] == r["unit"] ** 2 for r in reports)
    assert stage.prepared == [os.getpid()] and {r["prepared_in"] for r in reports} == {os.getpid()}
    if workers == 2:
        assert os.getpid() not in {r["pid"] for r in reports}  # they ran in the forked workers
        assert {r["parent"] for r in reports} == {os.getpid()}


def test_slices_cover_every_unit_once() -> None:
    units = list(range(11))
    parts = [Slice(3, i).of(units) for i in range(3)]
    assert sorted(sum(parts, [])) == units and parts[1] == [1, 4, 7, 10]
    assert Slice().of(units) == units
    with pytest.raises(WwmPrepError, match="--shard-index must be in 0..2"):
        Slice(3, 3)
    with pytest.raises(WwmPrepError):
        Slice(0, 0)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_prepares_once_per_node_and_runs_units_in_processes_forked_after(local_ray: None) -> None:
    reports = list(RayExecutor(2).run(Squares(), list(range(10))))
    assert sorted(r["unit"] for r in reports) == list(range(10))
    assert all(r["square"] == r["unit"] ** 2 for r in reports)
    [actor] = {r["prepared_in"] for r in reports}  # one node: one actor, prepared once
    assert actor != os.getpid() and actor not in {r["pid"] for r in reports}
    assert {r["parent"] for r in reports} == {actor}  # every unit ran in a worker forked from it
    for pid in {r["pid"] for r in reports}:  # which the actor stopped at the end
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_ray_unit_that_raises_is_an_error_in_the_driver(local_ray: None) -> None:
    with pytest.raises(ValueError, match="a bug on unit -1"):
        list(RayExecutor(2).run(Squares(), [1, -1, 2]))


def test_workers_fill_the_nodes_with_most_cpus_first() -> None:
    assert _per_node({"a": 2, "b": 8, "c": 0}, 9) == {"b": 8, "a": 1}
    assert _per_node({"a": 2, "b": 8}, 3) == {"b": 3}
    assert _per_node({"a": 2}, 5) == {"a": 2}  # no more than the cluster's CPUs
    assert _per_node({"a": 2}, 0) == {}


class Signals:
    """A stage whose units report how the worker running them handles SIGINT and SIGTERM."""

    def prepare(self) -> None:
        pass

    def run(self, unit: int) -> dict:
        import signal

        return {"unit": unit, "pid": os.getpid(), "int": signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
                "term": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL}


def test_forked_workers_leave_ctrl_c_to_the_parent() -> None:
    """A terminal's Ctrl-C reaches every process of the group: the workers ignore it, so only the parent answers
    (one line, exit 130) and stops them, instead of each worker printing a KeyboardInterrupt traceback."""
    reports = list(LocalExecutor(2).run(Signals(), [0, 1, 2, 3]))
    assert all(r["pid"] != os.getpid() and r["int"] and r["term"] for r in reports)
