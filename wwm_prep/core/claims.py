"""Claims on units of work, so that several runs can share one output directory, on one machine or on many
over a shared file system, without doing a unit twice or waiting on each other.

A run claims a unit before doing it by writing `claims/<unit>.json` (who holds it: host, pid, the run's
start) under a lock file, and keeps the claim's modification time fresh while it works. Another run takes
the next unclaimed unit instead. A claim is taken over when its holder is known to be dead (its process on
this host is gone) or its heartbeat is older than the timeout (a holder on another host that stopped).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wwm_prep.core.files import HOST, is_own_temp, is_stale_temp, locked, pid_alive, read_json, write_json_atomic

DEFAULT_TIMEOUT = 600.0  # seconds without a heartbeat after which another host's claim is taken over
CLAIMS_DIR = "claims"


@dataclass(frozen=True)
class Holder:
    """Who holds a claim: the worker process, and the run (the command) it belongs to."""

    host: str
    pid: int  # the process doing the unit: a forked worker, a Ray worker, or the run itself
    run_pid: int
    run_started: float  # seconds since the epoch

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.run_started))
        return f"the run of pid {self.run_pid} on {self.host}, started {started}"


# The run this process belongs to: set when the module is first imported, so forked workers inherit their
# parent's, and a Ray worker (a process of its own) names itself.
_RUN = (os.getpid(), time.time())


def this_holder() -> Holder:
    return Holder(HOST, os.getpid(), *_RUN)


def _holder(path: Path) -> Holder | None:
    data = read_json(path)
    try:
        return Holder(**data)
    except TypeError:  # missing, half-written by a crashed writer, or not a claim
        return None


def _live(path: Path, holder: Holder | None, timeout: float) -> bool:
    """Whether a claim still stands: its holder here is alive, or its heartbeat elsewhere is recent."""
    if holder is None:
        return False
    if holder.host == HOST and not pid_alive(holder.pid):
        return False
    try:
        return time.time() - path.stat().st_mtime <= timeout
    except FileNotFoundError:
        return False


@dataclass
class Claim:
    """A unit this process holds; a context manager that beats while the unit runs and then lets it go."""

    path: Path
    holder: Holder
    interval: float
    taken_over: Holder | None = None  # the dead or silent holder whose claim this replaced
    _stop: threading.Event = field(default_factory=threading.Event)
    _temps: Callable[[], Iterable[Path]] = tuple

    def __enter__(self) -> Claim:
        threading.Thread(target=self._beat, daemon=True).start()
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self._stop.set()
        if exc_type is not None:  # an interrupt may come between making a file and the writer that owns it
            for temp in self._temps():
                if is_own_temp(temp):
                    temp.unlink(missing_ok=True)
        with locked(self.path.parent / ".lock"):
            if _holder(self.path) == self.holder:  # not one taken over from us while we were presumed dead
                self.path.unlink(missing_ok=True)

    def own_temps(self, find: Callable[[], Iterable[Path]]) -> None:
        """Take charge of the unit's temporary files, which `find` lists: those left by killed runs, or by the
        silent holder this claim replaced, go now (a live run's stay: the unit is ours, but its writer may be
        another host's that is only slow); this process's own go if the unit ends in an exception."""
        self._temps = find
        gone = self.taken_over
        for temp in find():
            if is_stale_temp(temp) or (gone is not None and temp.name.endswith(f".tmp-{gone.host}-{gone.pid}")):
                temp.unlink(missing_ok=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return


def claim(directory: Path, unit: str, timeout: float = DEFAULT_TIMEOUT) -> Claim | Holder:
    """Claim `unit`: a Claim for this process, or the Holder of the live claim that stands in the way."""
    directory = directory / CLAIMS_DIR
    directory.mkdir(exist_ok=True)
    path = directory / f"{unit}.json"
    me = this_holder()
    with locked(directory / ".lock"):
        previous = _holder(path)
        if path.exists() and _live(path, previous, timeout):
            assert previous is not None
            return previous
        write_json_atomic(path, asdict(me))
    return Claim(path, me, interval=max(timeout / 4, 0.05), taken_over=previous)


def live_claims(directory: Path, timeout: float = DEFAULT_TIMEOUT) -> list[Holder]:
    """The holders of the claims that stand in `directory`, other runs' and this one's."""
    holders = []
    for path in sorted((directory / CLAIMS_DIR).glob("*.json")):
        holder = _holder(path)
        if _live(path, holder, timeout):
            assert holder is not None
            holders.append(holder)
    return holders
