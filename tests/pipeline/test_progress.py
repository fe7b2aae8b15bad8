"""Progress: counters shared with forked workers, a log line at a steady interval where there is no terminal."""

from __future__ import annotations

import io
import multiprocessing

from tests.conftest import wait_until
from wwm_prep.pipeline.progress import Counters, ProgressDisplay


def _add(counters: Counters) -> None:
    for _ in range(100):
        counters.add(bytes=10, documents=1, tokens=7)


def test_counters_are_shared_with_forked_workers() -> None:
    counters = Counters()
    workers = [multiprocessing.get_context("fork").Process(target=_add, args=(counters,)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert counters.read() == {"bytes": 2000, "documents": 200, "tokens": 1400, "units": 0}


def test_log_lines_without_a_terminal_and_silence_when_quiet() -> None:
    counters = Counters()
    stream = io.StringIO()
    with ProgressDisplay(counters, 1000, "segment", units=4, what="chunks", stream=stream, log_every=0.02):
        counters.add(bytes=250, documents=3, tokens=1000, units=1)
        wait_until(lambda: "25.0%" in stream.getvalue())  # a line from the display's own thread
    lines = stream.getvalue().splitlines()
    assert lines and all(line.startswith("segment:") for line in lines)
    assert "25.0% of 1.0 kB, 1/4 chunks, 3 documents" in lines[-1]

    quiet = io.StringIO()
    with ProgressDisplay(counters, 1000, "segment", stream=quiet, quiet=True, log_every=0.02) as display:
        display.refresh()  # what the display's thread would do at each interval
        display.write("done x")
    assert quiet.getvalue() == ""
