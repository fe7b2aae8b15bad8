"""Ctrl-C gives exit status 130 and one line at every moment of a run: before its work, while the dictionary loads,
mid-run with workers, and after the run completed. Each moment is reached by an event (a frozen process, a named
pipe the run is blocked reading, a full pipe it is blocked writing), never by waiting for time."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.conftest import (EVENT_DEADLINE, big_corpus, freeze_when, held_at_work, run, start_command, start_segment,
                            units_done, wait_until)
from wwm_prep.commands import interrupts
from wwm_prep.core.resources import resource

SAMPLE = resource("sample", "corpus")


def interrupted_once(proc: subprocess.Popen, message: str) -> str:
    _, stderr = proc.communicate(timeout=EVENT_DEADLINE)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr and "Aborted" not in stderr, stderr
    assert stderr.count("interrupted") == 1 and message in stderr, stderr
    return stderr


def test_before_any_work_ctrl_c_says_nothing_was_written() -> None:
    code = ("import os, signal\nfrom wwm_prep.commands import interrupts\ninterrupts.install()\n"
            "os.kill(os.getpid(), signal.SIGINT)\nprint('not reached')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130 and proc.stdout == ""
    assert proc.stderr == f"{interrupts.BEFORE}\n"


def test_ctrl_c_mid_run_with_workers_is_one_line_and_exit_130(tmp_path: Path) -> None:
    corpus, out = big_corpus(tmp_path / "corpus"), tmp_path / "out"
    proc = start_segment(corpus, out, "--workers", "2", start_new_session=True)
    freeze_when(proc, lambda: bool(held_at_work(out)))
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to the parent and its workers alike
    proc.send_signal(signal.SIGCONT)
    interrupted_once(proc, interrupts.RESUME)
    code, output = run("segment", str(corpus), "--out", str(out), "--dict", "tiny-ja", "--workers", "1")
    assert code == 0 and "already done" in output and units_done(out) == 6  # the rerun completes it
    assert not list(out.glob(".*.tmp-*"))  # and removes what the stopped workers left


def test_ctrl_c_while_the_dictionary_loads(tmp_path: Path) -> None:
    """The lexicon is a named pipe: the run reads it once to hash it, then opens it again to compile it and is held
    reading, since it never gets the lexicon the second time. Ctrl-C comes while it is held there."""
    tiny = resource("dictionaries", "tiny-ja")
    dictionary = tmp_path / "dict"
    dictionary.mkdir()
    for part in ("matrix.def", "char.def", "unk.def"):
        shutil.copy(tiny / part, dictionary / part)
    lexicon = dictionary / "lex.csv"
    os.mkfifo(lexicon)
    proc = start_command("segment", str(SAMPLE / "ja" / "kaken"), "--out", str(tmp_path / "out"),
                         "--dict", str(dictionary), "--workers", "1")
    opened, released = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def serve() -> None:
        try:
            with open(lexicon, "wb") as pipe:  # the hash
                pipe.write(b"".join(p.read_bytes() for p in sorted(tiny.glob("*.csv"))))
            wait_until(lambda: not holds_open(proc.pid, lexicon), proc)  # the hash is done
            with open(lexicon, "wb"):  # returns once the loader has opened it
                opened.set()
                released.wait(EVENT_DEADLINE)
        except BaseException as error:  # the test reports it, instead of waiting in vain
            failed.append(error)
            opened.set()

    threading.Thread(target=serve, daemon=True).start()
    try:
        assert opened.wait(EVENT_DEADLINE), "the run never began to load the dictionary"
        if failed:
            raise failed[0]
        wait_until(lambda: blocked_in(proc.pid, "pipe_read"), proc)
        proc.send_signal(signal.SIGINT)
        interrupted_once(proc, interrupts.RESUME)
    finally:
        released.set()
    assert not (tmp_path / "out" / "manifest.json").exists()


def holds_open(pid: int, path: Path) -> bool:
    """Whether `pid` has `path` open; a descriptor closed between the listing and the look is not open."""
    fds = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fds):
        try:
            if os.readlink(fds / fd) == str(path):
                return True
        except FileNotFoundError:
            continue
    return False


def blocked_in(pid: int, wait: str) -> bool:
    """Whether `pid` sleeps in the kernel in `wait` (e.g. pipe_read): a signal now interrupts that call, where one
    sent a moment before it began would wait for the call to return before Python saw it."""
    return wait in Path(f"/proc/{pid}/wchan").read_text()


def full_pipe() -> tuple[int, int]:
    """A pipe already holding as much as it can: a process writing to it blocks on its first flushed byte."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
        while True:
            os.write(write, b"\0" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(write, True)
    return read, write


def test_ctrl_c_after_the_run_completed_says_the_output_is_whole(tmp_path: Path) -> None:
    """The run's summary goes to a pipe nobody reads, so after its last unit and its manifest it is held writing it
    (at exit, where Python flushes stdout): Ctrl-C there exits 130 and says the output is whole."""
    out = tmp_path / "out"
    read, write = full_pipe()
    try:
        proc = start_segment(SAMPLE, out, "--workers", "2", "--quiet", stdout=write)
        wait_until(lambda: blocked_in(proc.pid, "pipe_write"), proc)
        proc.send_signal(signal.SIGINT)
        interrupted_once(proc, interrupts.WHOLE)
    finally:
        os.close(read)
        os.close(write)
    assert units_done(out) == 5 and (out / "manifest.json").is_file()
