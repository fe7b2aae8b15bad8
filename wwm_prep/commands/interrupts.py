"""Ctrl-C at any moment of a command: one line on stderr and exit status 130, never a traceback or a death by signal.

Python's own SIGINT handler raises KeyboardInterrupt wherever the main thread is. Inside a command's work that is
what we want (`finally` blocks remove temporary files and release claims, and `base.user_errors` turns it into one
line), but outside it — while click parses arguments, while a pool is torn down, while `sys.exit` unwinds or the
interpreter flushes its streams at exit — nothing catches it, and the process dies by the signal (status -2).
So the `wwm-prep` process owns SIGINT from its first line: while a command works it raises KeyboardInterrupt as
before; at every other moment there is nothing to clean up, and it says what state the output is in and leaves.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn

EXIT_STATUS = 128 + signal.SIGINT
RESUME = "interrupted: finished units are kept; rerun the same command to resume"
STOPPED = "interrupted"
BEFORE = "interrupted before any work began: nothing was written"
WHOLE = "interrupted after the run completed: the output is whole"
ENDED = "interrupted as the command ended: what it reported above stands"


class _State:
    """Whether a command is at work (SIGINT unwinds it) and what to say if SIGINT comes at any other moment."""

    working = False
    message = BEFORE


def install() -> None:
    """Own SIGINT for the life of this process (the command line's entry point; never a library import)."""
    signal.signal(signal.SIGINT, _on_sigint)


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    if _State.working:
        raise KeyboardInterrupt
    leave(_State.message)


def leave(message: str) -> NoReturn:
    """Say `message` and exit 130 now. stdout is not flushed: a reader that stopped reading would block us."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C while we say so changes nothing
    try:
        os.write(sys.stderr.fileno(), f"{message}\n".encode())
    finally:
        os._exit(EXIT_STATUS)


@contextmanager
def at_work() -> Iterator[None]:
    """A command's work: SIGINT raises KeyboardInterrupt here, so the work unwinds through its `finally` blocks."""
    _State.working, _State.message = True, ENDED
    try:
        yield
    finally:
        _State.working = False


def stop_unwinding(message: str) -> None:
    """The work has unwound after a KeyboardInterrupt: another Ctrl-C while we say so leaves with the same words."""
    _State.working, _State.message = False, message


def completed() -> None:
    """The command's output is whole: from here on Ctrl-C only says so, since nothing is left to do or undo."""
    _State.working, _State.message = False, WHOLE
