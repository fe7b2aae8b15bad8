"""Claims on units: one run holds a unit, others skip it, and a dead or silent holder's claim is taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.conftest import wait_until
from wwm_prep.core.claims import Claim, Holder, claim, live_claims, this_holder
from wwm_prep.core.files import HOST, temp_path


def write_claim(root: Path, unit: str, holder: Holder, age: float = 0.0) -> Path:
    path = root / "claims" / f"{unit}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(holder)))
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_unit_is_held_by_one_run_until_it_lets_go(tmp_path: Path) -> None:
    first = claim(tmp_path, "u")
    assert isinstance(first, Claim) and first.taken_over is None
    with first:
        assert claim(tmp_path, "u") == this_holder()  # a second attempt meets the first claim
        assert isinstance(claim(tmp_path, "other"), Claim)
        assert this_holder() in live_claims(tmp_path)
    assert not (tmp_path / "claims" / "u.json").exists()
    assert isinstance(claim(tmp_path, "u"), Claim)


def test_a_dead_process_s_claim_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    me = this_holder()
    gone = Holder(me.host, dead_pid(), me.run_pid, me.run_started)
    write_claim(tmp_path, "u", gone)
    assert live_claims(tmp_path) == []
    taken = claim(tmp_path, "u", timeout=3600)
    assert isinstance(taken, Claim) and taken.taken_over == gone


def test_another_host_s_claim_stands_until_its_heartbeat_is_older_than_the_timeout(tmp_path: Path) -> None:
    elsewhere = Holder("node-b", 4242, 4240, time.time() - 100)
    write_claim(tmp_path, "u", elsewhere, age=5)
    held = claim(tmp_path, "u", timeout=60)
    assert held == elsewhere and "node-b" in held.describe() and "4240" in held.describe()
    write_claim(tmp_path, "u", elsewhere, age=120)
    taken = claim(tmp_path, "u", timeout=60)
    assert isinstance(taken, Claim) and taken.taken_over == elsewhere


def test_a_held_claim_beats_and_a_taken_over_one_is_not_removed_by_its_old_holder(tmp_path: Path) -> None:
    mine = claim(tmp_path, "u", timeout=0.2)
    assert isinstance(mine, Claim)
    with mine:
        stamp = time.time() - 10
        os.utime(mine.path, (stamp, stamp))
        wait_until(lambda: time.time() - mine.path.stat().st_mtime < 5)  # the heartbeat refreshes it
        newcomer = Holder("node-b", 1, 1, time.time())
        write_claim(tmp_path, "u", newcomer)  # as if taken over while this process seemed silent
    assert json.loads(mine.path.read_text()) == asdict(newcomer)


def test_a_half_written_claim_is_no_claim(tmp_path: Path) -> None:
    path = tmp_path / "claims" / "u.json"
    path.parent.mkdir()
    path.write_text('{"host": "no')
    assert isinstance(claim(tmp_path, "u"), Claim)


def test_a_unit_s_temporary_files_go_when_their_writer_is_dead_or_is_this_process_interrupted(tmp_path: Path) -> None:
    """A run interrupted between creating a file and entering the writer that would remove it leaves nothing."""
    target = tmp_path / "u.arrow"
    dead = tmp_path / f".u.arrow.tmp-{HOST}-{dead_pid()}"
    elsewhere = tmp_path / ".u.arrow.tmp-node-b-1"
    dead.touch()
    elsewhere.touch()
    taken = claim(tmp_path, "u")
    assert isinstance(taken, Claim)
    with pytest.raises(KeyboardInterrupt), taken:
        taken.own_temps(lambda: tmp_path.glob(".u.arrow.tmp-*"))
        assert not dead.exists() and elsewhere.exists()  # a killed run's goes at once; a live host's stays
        temp_path(target).touch()
        raise KeyboardInterrupt
    assert not temp_path(target).exists() and elsewhere.exists()
    assert not (tmp_path / "claims" / "u.json").exists()
