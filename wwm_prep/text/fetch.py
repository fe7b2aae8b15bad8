"""Download a release dictionary into the cache, verified, so that a bad or hostile download never lands.

A fetch streams the archive into a staging directory inside the cache, checks its sha256, checks every
tar member before extracting anything, checks the dictionary's own sha256 and only then renames the result
into place; on any failure the cache is left exactly as it was. What to fetch and where it goes comes from
:mod:`wwm_prep.text.registry`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import lzma
import os
import re
import shutil
import socket
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path, PurePosixPath
from typing import IO, Any

from wwm_prep.core.files import sha256_file
from wwm_prep.text.registry import DictionaryError, Entry, as_entry, dictionary_dir, installed_path

__all__ = ["BASE_URL_ENV", "FETCH_RECORD", "fetch"]

log = logging.getLogger(__name__)

BASE_URL_ENV = "WWM_PREP_DICT_BASE_URL"
FETCH_RECORD = "fetched.json"

_CHUNK = 1 << 20
_TIMEOUT_S = 60.0
# Small files beside the dictionary in a release archive (BSD, NOTICE, COPYING...) carry its licence:
# keep them with it, but never anything big.
_SIDE_FILE_MAX = 1 << 20
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _Fail(Exception):
    """A fetch problem; turned into a DictionaryError naming the dictionary and URL."""


def fetch(
    name_or_entry: str | Entry,
    cache: Path | str | None = None,
    *,
    url: str | None = None,
    progress: bool = True,
    allow_unverified: bool = False,
    registry: Path | str | None = None,
) -> Path:
    """Download, verify and install a release dictionary; return the path `resolve` gives.

    The archive is streamed to a temporary directory inside the cache, its sha256 checked, every member
    checked before anything is extracted, the dictionary's own sha256 checked, and only then renamed into
    place. On any failure the cache is left exactly as it was. An already present, verified copy makes
    this a no-op. `url` (or $WWM_PREP_DICT_BASE_URL, which replaces the registry URL's base) points at
    a mirror; the checksums still apply. Entries wwm-prep does not download give where they are installed.
    """
    e = as_entry(name_or_entry, registry)
    if e.format != "vibrato-release":
        return installed_path(e, cache)
    target = dictionary_dir(e, cache)
    final = target / e.file_name
    if _cached_copy_is_usable(e, final):
        return final
    source = _download_url(e, url)
    if not e.verified and not allow_unverified:
        raise DictionaryError(
            f"refusing to fetch dictionary {e.name!r} from {source}: the registry records no checksums "
            f"for it, so the download cannot be verified. Pass allow_unverified=True "
            f"(`wwm-prep dict fetch {e.name} --allow-unverified`) to fetch it anyway."
        )
    _fetch_release(e, source, target, progress=progress)
    return final


def _cached_copy_is_usable(e: Entry, final: Path) -> bool:
    """A copy already in the cache is kept if it matches its checksum (or there is none to compare)."""
    if not final.is_file():
        return False
    if not e.verified:
        log.info("dictionary %s already present at %s (unverified entry)", e.name, final)
        return True
    if sha256_file(final) == e.inner_sha256:
        return True
    log.warning("cached %s does not match its recorded sha256; fetching it again", final)
    return False


def _download_url(e: Entry, url: str | None) -> str:
    """The explicit URL, else the registry's file name under $WWM_PREP_DICT_BASE_URL, else the registry's."""
    if url:
        return url
    assert e.url is not None
    base = os.environ.get(BASE_URL_ENV)
    if base:
        return base.rstrip("/") + "/" + e.url.rsplit("/", 1)[-1]
    return e.url


# ------------------------------------------------------------------------------------ stage and install


def _fetch_release(e: Entry, source: str, target: Path, *, progress: bool) -> None:
    """Stage the download next to `target`, then swap it in; a failure takes away all it created."""
    root = target.parent
    created = _make_dirs(root)
    staging: Path | None = None
    ok = False
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".fetch-{e.name}-", dir=root))
        record = _stage(e, source, staging, progress=progress)
        try:
            _install(staging / "new", target, staging / "old")
        except OSError as exc:
            raise DictionaryError(f"cannot install dictionary {e.name!r} into {target}: {exc}") from exc
        if not e.verified:
            log.warning(
                "fetched UNVERIFIED dictionary %s from %s: archive sha256 %s, %s sha256 %s",
                e.name, source, record["archive_sha256"], e.inner, record["inner_sha256"],
            )
        ok = True
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if not ok:
            for d in reversed(created):
                with suppress(OSError):
                    d.rmdir()


def _stage(e: Entry, source: str, staging: Path, *, progress: bool) -> dict[str, Any]:
    """Download and check into `staging/new`; any problem becomes one DictionaryError naming the URL."""
    try:
        return _download_and_check(e, source, staging, progress=progress)
    except (_Fail, OSError, http.client.HTTPException, tarfile.TarError, lzma.LZMAError, EOFError,
            zlib.error) as exc:
        raise DictionaryError(
            f"cannot fetch dictionary {e.name!r} from {source}: {_reason(exc)}"
        ) from (None if isinstance(exc, _Fail) else exc)


def _reason(exc: BaseException) -> str:
    """What went wrong, in the words a user can act on (a server's, a network's or an archive's fault)."""
    if isinstance(exc, _Fail):
        return str(exc)
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason}"
    if isinstance(exc, (http.client.HTTPException, socket.timeout, ConnectionError)):
        return f"download failed ({type(exc).__name__}: {exc})"
    if isinstance(exc, (tarfile.TarError, lzma.LZMAError, EOFError, zlib.error)):
        return f"corrupt archive ({type(exc).__name__}: {exc})"
    return f"{exc}"


def _download_and_check(e: Entry, source: str, staging: Path, *, progress: bool) -> dict[str, Any]:
    """Fill `staging/new` with the checked dictionary, its licence files and a record of the fetch."""
    archive = staging / "archive"
    new = staging / "new"
    archive_sha, size = _download(source, archive, progress=progress, label=e.name)
    if e.sha256 is not None and archive_sha != e.sha256:
        raise _Fail(f"archive sha256 mismatch: expected {e.sha256}, got {archive_sha} ({size} bytes)")
    inner_sha = _extract(e, archive, new)
    if e.inner_sha256 is not None and inner_sha != e.inner_sha256:
        raise _Fail(f"{e.inner} sha256 mismatch: expected {e.inner_sha256}, got {inner_sha}")
    if not e.verified:  # no checksum to lean on: at least make both layers decode to the end
        _check_decodes(e, archive, new / e.file_name)
    record = {
        "name": e.name,
        "url": source,
        "archive_sha256": archive_sha,
        "archive_bytes": size,
        "inner": e.inner,
        "inner_sha256": inner_sha,
        "verified": e.verified,
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (new / FETCH_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def _make_dirs(path: Path) -> list[Path]:
    """mkdir -p that reports what it created, so a failed fetch can take it away again."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    created = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        created.append(d)
    return created


def _install(staged: Path, target: Path, trash: Path) -> None:
    """Put the staged directory in place with renames only, so readers see the old copy or the new one."""
    if target.exists() or target.is_symlink():
        os.rename(target, trash)
        try:
            os.rename(staged, target)
        except BaseException:
            os.rename(trash, target)
            raise
    else:
        os.rename(staged, target)


# ------------------------------------------------------------------------------------------- download


def _progress_bar(total: int | None, enabled: bool, label: str) -> Any:
    """A byte counter on a terminal only: logs and pipes get no carriage-return noise."""
    from tqdm import tqdm

    disable = not enabled or not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=disable,
                leave=False)


def _download(url: str, dest: Path, *, progress: bool, label: str) -> tuple[str, int]:
    """Stream `url` into `dest`; return its sha256 and size. A short body is an error."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise _Fail(f"unsupported URL scheme {scheme!r} (use http, https or file)")
    from wwm_prep import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"wwm-prep/{__version__}"})
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as resp:  # noqa: S310 (scheme checked)
        header = resp.headers.get("Content-Length")
        expected = int(header) if header and header.strip().isdigit() else None
        with _progress_bar(expected, progress, label) as bar:
            digest, size = _copy_hashed(resp, dest, "wb", bar.update)
    if expected is not None and size != expected:
        raise _Fail(f"truncated download: got {size} of {expected} bytes")
    return digest, size


def _copy_hashed(src: IO[bytes], dest: Path, mode: str,
                 on_chunk: Callable[[int], object] = lambda n: None) -> tuple[str, int]:
    """Copy a stream into `dest`, hashing it on the way (one read of the bytes), and sync it to disk;
    return its sha256 and size."""
    h = hashlib.sha256()
    size = 0
    with open(dest, mode) as out:
        while chunk := src.read(_CHUNK):
            h.update(chunk)
            out.write(chunk)
            size += len(chunk)
            on_chunk(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    return h.hexdigest(), size


# -------------------------------------------------------------------------------------------- archive


def _normalise(name: str) -> str:
    """A member name without empty or `.` parts, so `a//./b` and `a/b` are the same member."""
    return "/".join(part for part in PurePosixPath(name).parts if part not in ("", "."))


def _check_archive(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Refuse the whole archive if any member could escape or is not a plain file or directory."""
    members: dict[str, tarfile.TarInfo] = {}
    for m in tar.getmembers():
        p = PurePosixPath(m.name)
        if m.name.startswith(("/", "\\")) or p.is_absolute() or re.match(r"^[A-Za-z]:", m.name):
            raise _Fail(f"unsafe archive: member {m.name!r} has an absolute path")
        if ".." in p.parts or ".." in m.name.split("\\"):
            raise _Fail(f"unsafe archive: member {m.name!r} contains '..'")
        if m.issym() or m.islnk():
            raise _Fail(f"unsafe archive: member {m.name!r} is a link (to {m.linkname!r})")
        if m.ischr() or m.isblk() or m.isfifo():
            raise _Fail(f"unsafe archive: member {m.name!r} is a device or FIFO")
        if not (m.isreg() or m.isdir()):
            raise _Fail(f"unsafe archive: member {m.name!r} is not a regular file or directory")
        members[_normalise(m.name)] = m
    return members


def _copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> str:
    """Copy one checked member into a new file `dest`; return its sha256. A short member is an error."""
    src = tar.extractfile(member)
    if src is None:
        raise _Fail(f"cannot read archive member {member.name!r}")
    with src:
        digest, size = _copy_hashed(src, dest, "xb")
    if size != member.size:
        raise _Fail(f"archive member {member.name!r} is short: {size} of {member.size} bytes")
    return digest


def _extract(e: Entry, archive: Path, out_dir: Path) -> str:
    """Check every member, then copy out the dictionary and its small licence files; return the
    dictionary's sha256. Members are written under names we choose, never names from the archive."""
    assert e.inner is not None
    want = _normalise(e.inner)
    with tarfile.open(archive, "r:xz") as tar:
        members = _check_archive(tar)
        inner = members.get(want)
        if inner is None or not inner.isreg():
            raise _Fail(f"archive has no file {e.inner!r}")
        parent = PurePosixPath(want).parent
        side = [m for n, m in members.items()
                if n != want and m.isreg() and PurePosixPath(n).parent == parent
                and m.size <= _SIDE_FILE_MAX and not PurePosixPath(n).name.startswith(".")
                and PurePosixPath(n).name != FETCH_RECORD]
        out_dir.mkdir()
        digest = _copy_member(tar, inner, out_dir / e.file_name)
        for m in side:
            _copy_member(tar, m, out_dir / PurePosixPath(_normalise(m.name)).name)
    return digest


def _check_decodes(e: Entry, archive: Path, inner: Path) -> None:
    """Decode the whole xz stream (tarfile stops before its integrity check) and the zstd file."""
    with lzma.open(archive) as f:
        _read_to_end(f)
    if inner.name.endswith(".zst"):
        import zstandard

        with open(inner, "rb") as raw:
            if raw.read(4) != _ZSTD_MAGIC:
                raise _Fail(f"{e.inner} is not zstd data")
            raw.seek(0)
            try:
                with zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as z:
                    _read_to_end(z)
            except zstandard.ZstdError as exc:
                raise _Fail(f"{e.inner} is corrupt zstd data ({exc})") from exc


def _read_to_end(stream: IO[bytes]) -> None:
    """Read and drop everything, for the decoder's own integrity checks to run."""
    while stream.read(_CHUNK):
        pass
