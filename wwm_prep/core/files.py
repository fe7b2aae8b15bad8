"""Files and checksums: the one sha256 of a file, and JSON written so that a crash never leaves half of it."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Temporary files are named for the host and process writing them, so that runs sharing an output directory
# (on one machine or several) never take each other's files for leftovers.
HOST = re.sub(r"[^\w.]", "_", socket.gethostname()) or "host"
_TEMP = re.compile(r"\.tmp-(?P<host>[\w.]+)-(?P<pid>\d+)$")


def feed_file(digest: Any, path: Path, chunk: int = 1 << 20) -> None:
    """Add a file's bytes to a running hash, in chunks so memory stays flat whatever its size."""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    feed_file(digest, path, chunk)
    return digest.hexdigest()


def temp_path(path: Path) -> Path:
    """Where `path` is written before it is renamed into place."""
    return path.with_name(f".{path.name}.tmp-{HOST}-{os.getpid()}")


def is_stale_temp(path: Path) -> bool:
    """A temporary file left by a process of this host that has died (a killed run); others' are never stale."""
    m = _TEMP.search(path.name)
    return m is not None and m["host"] == HOST and not pid_alive(int(m["pid"]))


def is_own_temp(path: Path) -> bool:
    """A temporary file this process is writing."""
    m = _TEMP.search(path.name)
    return m is not None and m["host"] == HOST and int(m["pid"]) == os.getpid()


def pid_alive(pid: int) -> bool:
    """Whether a process of this host is running (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that a reader (or a rerun after a crash) sees the old file or the new one, never half."""
    tmp = temp_path(path)
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the lock file `path` (made if absent): what runs sharing an output take turns on."""
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def read_json(path: Path) -> Any:
    """The JSON in `path`, or None where it is missing, unreadable or not JSON (callers say what that means)."""
    try:
        return json.loads((Path(path) if isinstance(path, str) else path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
