"""The unit protocol, written once for every stage: claim a unit, check it is not done, do it with its temporary
files in the stage's charge, publish what it made before the report that vouches for it, and say what happened
as a typed `UnitResult`. A stage gives only its name, its done-check and its work (`UnitStage`); `drive` runs
units on an executor and shows what each came to; `gather` completes a run's reports with what other runs
sharing the output finished, under the lock the manifest is written under.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from wwm_prep.core.claims import Holder, claim
from wwm_prep.core.files import locked, write_json_atomic
from wwm_prep.core.storage import Output
from wwm_prep.pipeline.executor import Executor
from wwm_prep.pipeline.progress import ProgressDisplay

U = TypeVar("U")
Report = dict[str, Any]


class Status(Enum):
    DONE = "done"  # this process did it
    DONE_ELSEWHERE = "done meanwhile by another run"  # finished by another run since this one looked
    HELD = "held"  # another live run holds its claim
    FAILED = "failed"  # its input cannot be read; the run goes on without it


@dataclass(frozen=True)
class UnitResult:
    """What became of one unit: its report where it is done, else who holds it or why it failed."""

    name: str
    status: Status
    report: Report | None = None
    why: str = ""  # HELD: who holds it; FAILED: the error; DONE: whose claim was taken over, if any


class UnitFailed(Exception):
    """A unit that cannot be done (its input is unreadable): reported as FAILED, and the run goes on."""


@dataclass(frozen=True)
class Made:
    """A unit's work: its report, and the output files it vouches for (published before it)."""

    report: Report
    files: Sequence[str]


class UnitStage(ABC, Generic[U]):
    """A stage of units. Subclasses say how a unit is named, when it is done and how it is done; `run` is the
    protocol, the same for all, and what an executor calls in whichever process runs the unit."""

    stage: ClassVar[str]  # what progress lines and claims call it
    reports: ClassVar[str] = "units"  # the output folder of the reports
    out: Output
    claim_timeout: float

    @abstractmethod
    def name(self, unit: U) -> str: ...

    @abstractmethod
    def done(self, unit: U) -> tuple[Report | None, str | None]:
        """The unit's report where it is done and intact; else why an earlier report no longer holds (None: none)."""

    @abstractmethod
    def temps(self, unit: U) -> Iterable[Path]:
        """The unit's temporary files, as they are now."""

    @abstractmethod
    def work(self, unit: U) -> Made: ...

    def prepare(self) -> None:
        """What every unit of a process needs, made once before workers fork (e.g. a loaded dictionary)."""

    def run(self, unit: U) -> UnitResult:
        name = self.name(unit)
        taken = claim(self.out.local, name if self.reports == "units" else f"{self.reports}~{name}",
                      self.claim_timeout)
        if isinstance(taken, Holder):
            return UnitResult(name, Status.HELD, why=taken.describe())
        with taken:
            report, _ = self.done(unit)
            if report is not None:
                return UnitResult(name, Status.DONE_ELSEWHERE, report)
            taken.own_temps(lambda: self.temps(unit))
            try:
                made = self.work(unit)
            except UnitFailed as exc:
                return UnitResult(name, Status.FAILED, why=str(exc))
            for file in made.files:  # what the report vouches for, first
                self.out.publish(file)
            (self.out.local / self.reports).mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.out.local / self.reports / f"{name}.json", made.report)
            self.out.publish(f"{self.reports}/{name}.json")
            gone = taken.taken_over
            return UnitResult(name, Status.DONE, made.report, f"taken over from {gone.describe()}, which stopped"
                              if gone else "")


def announce(display: ProgressDisplay, units: Iterable[tuple[str, Report | None, str | None]]) -> None:
    """Say, before a run, which units it skips and which it redoes and why: (label, report, why) of each."""
    for label, report, why in units:
        if report is not None:
            display.write(f"skip {label}: already done")
        elif why:
            display.write(f"redo {label}: {why}")


def drive(stage: UnitStage[U], executor: Executor, todo: Sequence[U], reports: dict[str, Report],
          display: ProgressDisplay, label: Callable[[str], str], summary: Callable[[Report], str],
          progress: Callable[[Report], dict[str, int]]) -> list[UnitResult]:
    """Run `todo` on `executor`, adding the reports of units done to `reports` and saying what each came to;
    returns what each came to. `progress` counts a unit's report where the executor's workers cannot reach the
    shared counters themselves."""
    results = []
    for result in executor.run(stage, todo):
        results.append(result)
        if result.status is Status.FAILED:
            continue
        if result.status is Status.HELD:
            display.write(f"skip {label(result.name)}: being done by {result.why}")
        else:
            assert result.report is not None
            reports[result.name] = result.report
            if result.status is Status.DONE_ELSEWHERE:
                display.write(f"skip {label(result.name)}: {result.status.value}")
                continue
            display.counters.add(units=1, **({} if executor.shares_memory else progress(result.report)))
            display.write(f"done {label(result.name)}: {summary(result.report)}"
                          + (f" ({result.why})" if result.why else ""))
    return results


def gather(stage: UnitStage[U], units: Iterable[U], reports: dict[str, Report]) -> None:
    """Add the reports of the units that other runs sharing the output finished meanwhile (call under `lock`)."""
    for unit in units:
        if (name := stage.name(unit)) not in reports and (report := stage.done(unit)[0]) is not None:
            reports[name] = report


@contextmanager
def lock(out: Output) -> Iterator[None]:
    """The lock that runs sharing an output take turns on to write its manifest."""
    with locked(out.local / ".manifest.lock"):
        yield
