"""Known dictionaries, kept as data, and a safe, verified fetch into a local cache.

The registry (`dictionaries/registry.json`) says where each dictionary comes from and what its bytes must
hash to, so that a segmentation run can name exactly which dictionary it used and a mirror or a corrupted
download can never slip in silently. Three kinds of entry exist:

- ``vibrato-release``: a ``.tar.xz`` release archive holding ``<name>/system.dic.zst``, downloaded into
  ``<cache>/dictionaries/<name>/``;
- ``mecab-binary-pypi``: a PyPI package holding a MeCab binary dictionary directory (``pip install`` it);
- ``mecab-text-local``: a MeCab text source on disk (e.g. Debian's ``unidic-mecab``).

Every public function takes either a registry name or an :class:`Entry`, and an optional registry path, so
tests and tools can use their own entries without touching module state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import importlib
import importlib.util
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
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "BASE_URL_ENV",
    "CACHE_ENV",
    "FORMATS",
    "DictionaryError",
    "Entry",
    "cache_dir",
    "dictionary_dir",
    "entries",
    "entry",
    "fetch",
    "is_ready",
    "load_registry",
    "resolve",
    "status",
]

log = logging.getLogger(__name__)

CACHE_ENV = "WWM_PREP_CACHE"
BASE_URL_ENV = "WWM_PREP_DICT_BASE_URL"
FORMATS = ("vibrato-release", "mecab-binary-pypi", "mecab-text-local")
FETCH_RECORD = "fetched.json"

_CHUNK = 1 << 20
_TIMEOUT_S = 60.0
# Small files beside the dictionary in a release archive (BSD, NOTICE, COPYING...) carry its licence:
# keep them with it, but never anything big.
_SIDE_FILE_MAX = 1 << 20
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class DictionaryError(Exception):
    """A dictionary is unknown, missing, or could not be fetched safely; the message says what to do."""


@dataclass(frozen=True)
class Entry:
    """One known dictionary, as recorded in the registry."""

    name: str
    format: str
    description: str = ""
    word_unit: str = ""
    lexicon: str = ""
    license: str = ""
    approx_size: str = ""
    recipe: bool = False
    url: str | None = None
    sha256: str | None = None
    inner: str | None = None
    inner_sha256: str | None = None
    verified: bool = False
    package: str | None = None
    module: str | None = None
    attribute: str = "DICDIR"
    apt_package: str | None = None
    apt_version: str | None = None
    path: str | None = None
    required_files: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        problems = _entry_problems(self)
        if problems:
            raise DictionaryError(f"invalid dictionary entry {self.name!r}: " + "; ".join(problems))
        if self.format == "vibrato-release" and self.inner is None:
            object.__setattr__(self, "inner", f"{self.name}/system.dic.zst")
        object.__setattr__(self, "required_files", tuple(self.required_files))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        """Build an entry from its JSON form; unknown keys are kept in `extra`, not rejected."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        if "name" not in kwargs or "format" not in kwargs:
            raise DictionaryError(f"dictionary entry without name or format: {data!r}")
        if "required_files" in kwargs:
            kwargs["required_files"] = tuple(kwargs["required_files"] or ())
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, e.g. for a manifest recording which dictionary a run used."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        data["required_files"] = list(self.required_files)
        data.update(self.extra)
        return data

    @property
    def file_name(self) -> str:
        """Name of the loadable file inside the cache directory (vibrato releases only)."""
        return PurePosixPath(self.inner or "system.dic.zst").name


def _entry_problems(e: Entry) -> list[str]:
    problems = []
    if not isinstance(e.name, str) or not _NAME_RE.match(e.name):
        problems.append("name must be letters, digits and ._+- (it becomes a directory name)")
    if e.format not in FORMATS:
        problems.append(f"format {e.format!r} is not one of {', '.join(FORMATS)}")
    for key in ("sha256", "inner_sha256"):
        value = getattr(e, key)
        if value is not None and not (isinstance(value, str) and _SHA_RE.match(value)):
            problems.append(f"{key} must be 64 lowercase hex digits or null")
    if e.format == "vibrato-release":
        if not e.url:
            problems.append("a vibrato-release needs a url")
        if e.verified and (e.sha256 is None or e.inner_sha256 is None):
            problems.append("verified: true needs both sha256 and inner_sha256")
        if e.inner is not None and not _safe_relative(e.inner):
            problems.append(f"inner path {e.inner!r} must be a relative path without '..'")
    elif e.format == "mecab-binary-pypi":
        if not e.package or not e.module:
            problems.append("a mecab-binary-pypi entry needs package and module")
    elif e.format == "mecab-text-local":
        if not e.path:
            problems.append("a mecab-text-local entry needs a path")
    return problems


# --------------------------------------------------------------------------------------------- registry


def _default_registry() -> Path:
    from wwm_prep.core.resources import resource

    return resource("dictionaries", "registry.json")


_LOADED: dict[tuple[str, int, int], list[Entry]] = {}


def load_registry(path: Path | str) -> list[Entry]:
    """Read a registry file (an object with a `dictionaries` list, or a bare list of entries)."""
    path = Path(path)
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
        if key in _LOADED:
            return list(_LOADED[key])
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DictionaryError(f"cannot read the dictionary registry {path}: {exc}") from exc
    items = data.get("dictionaries") if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise DictionaryError(f"dictionary registry {path} must hold a list of entries")
    loaded = [Entry.from_dict(item) for item in items]
    names = [e.name for e in loaded]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DictionaryError(f"dictionary registry {path} names {', '.join(dupes)} more than once")
    _LOADED[key] = loaded
    return list(loaded)


def entries(registry: Path | str | None = None) -> list[Entry]:
    """All known dictionaries, from the bundled registry unless another file is given."""
    return load_registry(registry if registry is not None else _default_registry())


def entry(name: str, registry: Path | str | None = None) -> Entry:
    """The entry called `name`; an unknown name is an error that lists the known ones."""
    known = entries(registry)
    for e in known:
        if e.name == name:
            return e
    raise DictionaryError(
        f"unknown dictionary {name!r}; known dictionaries: {', '.join(e.name for e in known)}"
    )


def _as_entry(name_or_entry: str | Entry, registry: Path | str | None) -> Entry:
    return name_or_entry if isinstance(name_or_entry, Entry) else entry(name_or_entry, registry)


# ------------------------------------------------------------------------------------------------ cache


def cache_dir(override: Path | str | None = None) -> Path:
    """Where downloads live: the option, else $WWM_PREP_CACHE, else $XDG_CACHE_HOME/wwm-prep, else
    ~/.cache/wwm-prep. Nothing is created here: only a fetch writes."""
    if override is not None and str(override) != "":
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says relative values are to be ignored
        return Path(xdg) / "wwm-prep"
    return Path.home() / ".cache" / "wwm-prep"


def dictionary_dir(name_or_entry: str | Entry, cache: Path | str | None = None) -> Path:
    """`<cache>/dictionaries/<name>/`, where a fetched dictionary (or an unpacked .deb) lives."""
    name = name_or_entry.name if isinstance(name_or_entry, Entry) else name_or_entry
    if not _NAME_RE.match(name):
        raise DictionaryError(f"invalid dictionary name {name!r}")
    return cache_dir(cache) / "dictionaries" / name


# ----------------------------------------------------------------------------------- resolve and status


def _fetch_hint(e: Entry) -> str:
    if e.verified:
        return f"wwm-prep dict fetch {e.name}"
    return f"wwm-prep dict fetch {e.name} --allow-unverified"


def _unverified_note(e: Entry) -> str:
    return "" if e.verified else " (the registry records no checksums for it, so it cannot be verified)"


def _pip_hint(e: Entry) -> str:
    return f"pip install {e.package}"


def _apt_hint(e: Entry, cache: Path | str | None) -> str:
    target = dictionary_dir(e, cache)
    version = f", version {e.apt_version}" if e.apt_version else ""
    return (
        f"apt-get download {e.apt_package} && dpkg -x {e.apt_package}_*.deb {target} "
        f"(or: sudo apt-get install {e.apt_package}{version})"
    )


def _local_candidates(e: Entry, cache: Path | str | None) -> list[Path]:
    assert e.path is not None
    path = Path(e.path).expanduser()
    candidates = [path]
    if path.is_absolute():  # where `dpkg -x <deb> <cache>/dictionaries/<name>` puts it
        candidates.append(dictionary_dir(e, cache) / path.relative_to(path.anchor))
    return candidates


def _has_files(directory: Path, names: tuple[str, ...]) -> bool:
    return directory.is_dir() and all((directory / n).is_file() for n in names)


def _find_local(e: Entry, cache: Path | str | None) -> Path | None:
    for candidate in _local_candidates(e, cache):
        if _has_files(candidate, e.required_files):
            return candidate
    return None


def _find_pypi(e: Entry) -> Path | None:
    assert e.module is not None
    try:
        if importlib.util.find_spec(e.module) is None:
            return None
        module = importlib.import_module(e.module)
    except ImportError:
        return None
    value = getattr(module, e.attribute, None)
    if value is None:
        return None
    path = Path(value)
    return path if _has_files(path, e.required_files) else None


def _find_release(e: Entry, cache: Path | str | None) -> Path | None:
    path = dictionary_dir(e, cache) / e.file_name
    return path if path.is_file() else None


def _find(e: Entry, cache: Path | str | None) -> Path | None:
    if e.format == "vibrato-release":
        return _find_release(e, cache)
    if e.format == "mecab-binary-pypi":
        return _find_pypi(e)
    return _find_local(e, cache)


def is_ready(name_or_entry: str | Entry, cache: Path | str | None = None, *,
             registry: Path | str | None = None) -> bool:
    """Whether `resolve` would succeed, without raising."""
    return _find(_as_entry(name_or_entry, registry), cache) is not None


def status(name_or_entry: str | Entry, cache: Path | str | None = None, *,
           registry: Path | str | None = None) -> str:
    """One line for `dict list`: whether the dictionary is ready here, and where (or how to get it)."""
    e = _as_entry(name_or_entry, registry)
    found = _find(e, cache)
    if e.format == "vibrato-release":
        if found is not None:
            return f"fetched: {found}"
        return f"not fetched — run `{_fetch_hint(e)}`{_unverified_note(e)}"
    if e.format == "mecab-binary-pypi":
        if found is not None:
            return f"installed: {found}"
        return f"not installed — run `{_pip_hint(e)}`"
    if found is not None:
        return f"present: {found}"
    where = " or ".join(str(c) for c in _local_candidates(e, cache))
    return f"absent (looked in {where}) — run: {_apt_hint(e, cache)}"


def resolve(name_or_entry: str | Entry, cache: Path | str | None = None, *,
            registry: Path | str | None = None) -> Path:
    """The loadable thing: a release's cached `system.dic.zst`, a PyPI package's DICDIR, or a local
    text source directory. Missing is an error whose message says exactly how to get it."""
    e = _as_entry(name_or_entry, registry)
    found = _find(e, cache)
    if found is not None:
        return found
    if e.format == "vibrato-release":
        raise DictionaryError(
            f"dictionary {e.name!r} is not in the cache ({dictionary_dir(e, cache)}); "
            f"get it with: {_fetch_hint(e)}{_unverified_note(e)}"
        )
    if e.format == "mecab-binary-pypi":
        raise DictionaryError(
            f"dictionary {e.name!r} comes from the PyPI package {e.package!r}, which is not installed "
            f"(or lacks {', '.join(e.required_files)}); get it with: {_pip_hint(e)}"
        )
    where = " or ".join(str(c) for c in _local_candidates(e, cache))
    needs = f" with {', '.join(e.required_files)}" if e.required_files else ""
    raise DictionaryError(
        f"dictionary {e.name!r} is a local MeCab text source; no directory{needs} found at {where}; "
        f"get it with: {_apt_hint(e, cache)}"
    )


# ------------------------------------------------------------------------------------------------ fetch


def _download_url(e: Entry, url: str | None) -> str:
    if url:
        return url
    assert e.url is not None
    base = os.environ.get(BASE_URL_ENV)
    if base:
        return base.rstrip("/") + "/" + e.url.rsplit("/", 1)[-1]
    return e.url


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _safe_relative(name: str) -> bool:
    p = PurePosixPath(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and "\\" not in name \
        and not re.match(r"^[A-Za-z]:", name)


def _normalise(name: str) -> str:
    return "/".join(part for part in PurePosixPath(name).parts if part not in ("", "."))


class _Fail(Exception):
    """A fetch problem; turned into a DictionaryError naming the dictionary and URL."""


def _progress_bar(total: int | None, enabled: bool, label: str) -> Any:
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
    h = hashlib.sha256()
    size = 0
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as resp:  # noqa: S310 (scheme checked)
        header = resp.headers.get("Content-Length")
        expected = int(header) if header and header.strip().isdigit() else None
        with open(dest, "wb") as out, _progress_bar(expected, progress, label) as bar:
            while chunk := resp.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
    if expected is not None and size != expected:
        raise _Fail(f"truncated download: got {size} of {expected} bytes")
    return h.hexdigest(), size


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
    src = tar.extractfile(member)
    if src is None:
        raise _Fail(f"cannot read archive member {member.name!r}")
    h = hashlib.sha256()
    size = 0
    with src, open(dest, "xb") as out:
        while chunk := src.read(_CHUNK):
            h.update(chunk)
            out.write(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    if size != member.size:
        raise _Fail(f"archive member {member.name!r} is short: {size} of {member.size} bytes")
    return h.hexdigest()


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
        while f.read(_CHUNK):
            pass
    if inner.name.endswith(".zst"):
        import zstandard

        with open(inner, "rb") as raw:
            if raw.read(4) != _ZSTD_MAGIC:
                raise _Fail(f"{e.inner} is not zstd data")
            raw.seek(0)
            try:
                with zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as z:
                    while z.read(_CHUNK):
                        pass
            except zstandard.ZstdError as exc:
                raise _Fail(f"{e.inner} is corrupt zstd data ({exc})") from exc


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


def _pypi_fetch(e: Entry) -> Path:
    found = _find_pypi(e)
    if found is not None:
        return found
    raise DictionaryError(
        f"dictionary {e.name!r} is distributed as the PyPI package {e.package!r}, not downloaded by "
        f"wwm-prep; install it with: {_pip_hint(e)}"
    )


def _local_fetch(e: Entry, cache: Path | str | None) -> Path:
    found = _find_local(e, cache)
    if found is not None:
        return found
    raise DictionaryError(
        f"dictionary {e.name!r} is a local MeCab text source that wwm-prep does not download; "
        f"install it from Debian with: {_apt_hint(e, cache)}"
    )


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
    a mirror; the checksums still apply.
    """
    e = _as_entry(name_or_entry, registry)
    if e.format == "mecab-binary-pypi":
        return _pypi_fetch(e)
    if e.format == "mecab-text-local":
        return _local_fetch(e, cache)

    target = dictionary_dir(e, cache)
    final = target / e.file_name
    if final.is_file():
        if not e.verified:
            log.info("dictionary %s already present at %s (unverified entry)", e.name, final)
            return final
        if _sha256_file(final) == e.inner_sha256:
            return final
        log.warning("cached %s does not match its recorded sha256; fetching it again", final)

    source = _download_url(e, url)
    if not e.verified and not allow_unverified:
        raise DictionaryError(
            f"refusing to fetch dictionary {e.name!r} from {source}: the registry records no checksums "
            f"for it, so the download cannot be verified. Pass allow_unverified=True "
            f"(`wwm-prep dict fetch {e.name} --allow-unverified`) to fetch it anyway."
        )

    root = target.parent
    created = _make_dirs(root)
    staging: Path | None = None
    ok = False
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".fetch-{e.name}-", dir=root))
        archive = staging / "archive"
        try:
            archive_sha, size = _download(source, archive, progress=progress, label=e.name)
            if e.sha256 is not None and archive_sha != e.sha256:
                raise _Fail(f"archive sha256 mismatch: expected {e.sha256}, got {archive_sha} ({size} bytes)")
            inner_sha = _extract(e, archive, staging / "new")
            if e.inner_sha256 is not None and inner_sha != e.inner_sha256:
                raise _Fail(f"{e.inner} sha256 mismatch: expected {e.inner_sha256}, got {inner_sha}")
            if not e.verified:  # no checksum to lean on: at least make both layers decode to the end
                _check_decodes(e, archive, staging / "new" / e.file_name)
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
            (staging / "new" / FETCH_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        except _Fail as exc:
            raise DictionaryError(f"cannot fetch dictionary {e.name!r} from {source}: {exc}") from None
        except urllib.error.HTTPError as exc:
            raise DictionaryError(
                f"cannot fetch dictionary {e.name!r} from {source}: HTTP {exc.code} {exc.reason}"
            ) from exc
        except urllib.error.URLError as exc:
            raise DictionaryError(
                f"cannot fetch dictionary {e.name!r} from {source}: {exc.reason}"
            ) from exc
        except (http.client.HTTPException, socket.timeout, ConnectionError) as exc:
            raise DictionaryError(
                f"cannot fetch dictionary {e.name!r} from {source}: download failed "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        except (tarfile.TarError, lzma.LZMAError, EOFError, zlib.error) as exc:
            raise DictionaryError(
                f"cannot fetch dictionary {e.name!r} from {source}: corrupt archive "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        except OSError as exc:
            raise DictionaryError(f"cannot fetch dictionary {e.name!r} from {source}: {exc}") from exc
        try:
            _install(staging / "new", target, staging / "old")
        except OSError as exc:
            raise DictionaryError(f"cannot install dictionary {e.name!r} into {target}: {exc}") from exc
        if not e.verified:
            log.warning(
                "fetched UNVERIFIED dictionary %s from %s: archive sha256 %s, %s sha256 %s",
                e.name, source, archive_sha, e.inner, inner_sha,
            )
        ok = True
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if not ok:
            for d in reversed(created):
                try:
                    d.rmdir()
                except OSError:
                    pass
    return final

