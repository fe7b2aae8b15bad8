"""The one sha256 of a file, and JSON that is never seen half-written."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from wwm_prep.core.files import is_stale_temp, read_json, sha256_file, temp_path, write_json_atomic


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 5])
def test_sha256_file_reads_across_chunk_edges(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f", chunk=4096) == hashlib.sha256(data).hexdigest()


def test_json_is_written_whole_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    write_json_atomic(path, {"b": [1, "二"], "a": None})
    assert read_json(path) == {"a": None, "b": [1, "二"]}
    assert "二" in path.read_text(encoding="utf-8")  # kept readable, not escaped
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temporary file left
    write_json_atomic(path, [])
    assert read_json(path) == []


def test_read_json_says_none_for_what_is_not_json(tmp_path: Path) -> None:
    assert read_json(tmp_path / "absent.json") is None
    (tmp_path / "half.json").write_text('{"a": ', encoding="utf-8")
    assert read_json(tmp_path / "half.json") is None
    (tmp_path / "latin.json").write_bytes(b'"\xff"')
    assert read_json(tmp_path / "latin.json") is None


def test_only_a_dead_process_s_temporary_files_are_stale(tmp_path: Path) -> None:
    import subprocess
    import sys

    mine = temp_path(tmp_path / "a.arrow")
    assert mine.name.startswith(".a.arrow.tmp-") and not is_stale_temp(mine)  # this process is alive
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = mine.with_name(mine.name.rsplit("-", 1)[0] + f"-{int(gone.stdout)}")
    assert is_stale_temp(dead)
    other_host = mine.with_name(f".a.arrow.tmp-other_host.example-{int(gone.stdout)}")
    assert not is_stale_temp(other_host)  # another machine's run may still be writing it
    assert not is_stale_temp(tmp_path / "a.arrow")
