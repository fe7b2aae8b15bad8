"""Executors decide only where units run: the reports are the same in this process and in forked workers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pytest

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.pipeline.executor import LocalExecutor, Slice


@dataclass
class Squares:
    """A stage whose `prepare` is expensive in real life (a dictionary): it must run once, in the parent."""

    prepared: list[int] = field(default_factory=list)

    def prepare(self) -> None:
        self.prepared.append(os.getpid())

    def run(self, unit: int) -> dict[str, Any]:
        return {"unit": unit, "square": unit * unit, "prepared_in": self.prepared[-1], "pid": os.getpid()}


@pytest.mark.parametrize("workers", [1, 2])
def test_every_unit_runs_once_and_prepare_runs_once_before_the_fork(workers: int) -> None:
    stage = Squares()
    reports = list(LocalExecutor(workers).run(stage, list(range(10))))
    assert sorted(r["unit"] for r in reports) == list(range(10))
    assert all(r["square"] == r["unit"] ** 2 for r in reports)
    assert stage.prepared == [os.getpid()] and {r["prepared_in"] for r in reports} == {os.getpid()}
    if workers == 2:
        assert os.getpid() not in {r["pid"] for r in reports}  # they ran in the forked workers


def test_slices_cover_every_unit_once() -> None:
    units = list(range(11))
    parts = [Slice(3, i).of(units) for i in range(3)]
    assert sorted(sum(parts, [])) == units and parts[1] == [1, 4, 7, 10]
    assert Slice().of(units) == units
    with pytest.raises(WwmPrepError, match="--shard-index must be in 0..2"):
        Slice(3, 3)
    with pytest.raises(WwmPrepError):
        Slice(0, 0)
