"""One progress display per run, however many workers: a tqdm bar in a terminal, a log line at a
steady interval elsewhere, nothing with --quiet.

Workers add to counters in shared memory (created before they fork); a thread of the parent reads
them, so progress never travels with the data.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from tqdm import tqdm

class Counters:
    """What a run has done so far, shared with forked workers: input bytes read, documents, tokens, units."""

    NAMES = ("bytes", "documents", "tokens", "units")

    def __init__(self) -> None:
        self._values = multiprocessing.get_context("fork").Array("q", len(self.NAMES))

    def add(self, **counts: int) -> None:
        with self._values.get_lock():
            for name, n in counts.items():
                self._values[self.NAMES.index(name)] += n

    def read(self) -> dict[str, int]:
        with self._values.get_lock():
            return dict(zip(self.NAMES, self._values))

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("counters live in this machine's shared memory; Ray workers report per unit")


def _scaled(n: float, unit: str) -> str:
    for prefix in ("", "k", "M", "G"):
        if n < 1000:
            return f"{n:.1f} {prefix}{unit}"
        n /= 1000
    return f"{n:.1f} T{unit}"


class ProgressDisplay:
    """Shows `counters` against `total` of their `measure` ("bytes" of input text, or "tokens"), and the units done
    of `units` (chunks, partitions), until closed."""

    def __init__(self, counters: Counters, total: int, label: str, *, measure: str = "bytes", units: int = 0,
                 what: str = "units", quiet: bool = False, stream: TextIO | None = None, log_every: float = 30.0):
        stream = stream or sys.stderr
        self.counters, self.total, self.label, self._stream = counters, total, label, stream
        self.measure, self.units, self.what = measure, units, what
        unit = "B" if measure == "bytes" else "tok"
        self.unit = unit
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._bar: tqdm | None = None
        self._log: Callable[[str], None] | None = None
        if quiet:
            self._interval = None
        elif stream.isatty():
            self._bar = tqdm(total=total, unit=unit, unit_scale=True, desc=label, file=stream, dynamic_ncols=True)
            self._interval = 0.5
        else:
            self._log = lambda line: print(line, file=stream, flush=True)
            self._interval = log_every
        self._thread = threading.Thread(target=self._watch, daemon=True) if self._interval else None
        if self._thread:
            self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            self.refresh()

    def refresh(self) -> None:
        now = self.counters.read()
        done, documents, tokens = now[self.measure], now["documents"], now["tokens"]
        elapsed = max(time.monotonic() - self._started, 1e-9)
        units = f"{now['units']}/{self.units} {self.what}, " if self.units else ""
        if self._bar is not None:
            self._bar.n = min(done, self.total)
            self._bar.set_postfix_str(f"{units}{documents:,} docs, {tokens / elapsed / 1e3:,.0f} k tokens/s",
                                      refresh=False)
            self._bar.refresh()
        elif self._log is not None:
            share = done / self.total if self.total else 1.0
            eta = elapsed * (1 - share) / share if share > 0 else float("nan")
            self._log(f"{self.label}: {share:6.1%} of {_scaled(self.total, self.unit)}, {units}{documents:,} documents, "
                      f"{tokens / elapsed / 1e3:,.0f} k tokens/s, ETA {eta:,.0f} s")

    def write(self, line: str) -> None:
        """A message that does not break the bar."""
        if self._bar is not None:
            self._bar.write(line, file=self._stream)
        elif self._interval is not None:
            print(line, file=self._stream, flush=True)

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self._bar is not None:
            self.refresh()
            self._bar.close()

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


class Elapsed:
    """A wait with no counter to show (a dictionary's conversion and loading): in a terminal the seconds so far,
    redrawn each second; elsewhere a line before and one with the time taken after."""

    def __init__(self, label: str, *, stream: TextIO | None = None, quiet: bool = False):
        self.label, self.quiet = label, quiet
        self.stream = stream or sys.stderr
        self._done = threading.Event()
        self._started = 0.0

    def __enter__(self) -> Elapsed:
        self._started = time.perf_counter()
        if not self.quiet:
            self.stream.write(f"{self.label}…")
            self.stream.flush()
            if self.stream.isatty():
                threading.Thread(target=self._tick, daemon=True).start()
        return self

    def _tick(self) -> None:
        while not self._done.wait(1.0):
            self.stream.write(f"\r{self.label}… {time.perf_counter() - self._started:.0f} s")
            self.stream.flush()

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self._done.set()
        if not self.quiet:
            outcome = "failed" if exc_type is not None else "done"
            redraw = f"\r{self.label}…" if self.stream.isatty() else ""  # a log keeps the first line's words once
            self.stream.write(f"{redraw} {outcome} in {time.perf_counter() - self._started:.1f} s\n")
            self.stream.flush()
