"""Known dictionaries, kept as data, and where each one is (or would be) on this machine.

The registry (`dictionaries/registry.json`) says where each dictionary comes from and what its bytes must
hash to, so that a segmentation run can name exactly which dictionary it used and a mirror or a corrupted
download can never slip in silently. Three kinds of entry exist:

- ``vibrato-release``: a ``.tar.xz`` release archive holding ``<name>/system.dic.zst``, downloaded into
  ``<cache>/dictionaries/<name>/``;
- ``mecab-binary-pypi``: a PyPI package holding a MeCab binary dictionary directory (``pip install`` it);
- ``mecab-text-local``: a MeCab text source on disk (e.g. Debian's ``unidic-mecab``).

Every public function takes either a registry name or an :class:`Entry`, and an optional registry path, so
tests and tools can use their own entries without touching module state. Downloading a release lives in
:mod:`wwm_prep.text.fetch`; this module only reads the registry and looks at what is on disk.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "CACHE_ENV",
    "FORMATS",
    "DictionaryError",
    "Entry",
    "as_entry",
    "cache_dir",
    "dictionary_dir",
    "entries",
    "entry",
    "installed_path",
    "is_ready",
    "load_registry",
    "resolve",
    "status",
]

CACHE_ENV = "WWM_PREP_CACHE"
FORMATS = ("vibrato-release", "mecab-binary-pypi", "mecab-text-local")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


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


def _safe_relative(name: str) -> bool:
    """Whether `name` stays inside the directory it is joined to, on POSIX and Windows alike."""
    p = PurePosixPath(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and "\\" not in name \
        and not re.match(r"^[A-Za-z]:", name)


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


def as_entry(name_or_entry: str | Entry, registry: Path | str | None = None) -> Entry:
    """The entry itself, or the one a name stands for, so callers accept either."""
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
    return _find(as_entry(name_or_entry, registry), cache) is not None


def status(name_or_entry: str | Entry, cache: Path | str | None = None, *,
           registry: Path | str | None = None) -> str:
    """One line for `dict list`: whether the dictionary is ready here, and where (or how to get it)."""
    e = as_entry(name_or_entry, registry)
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
    e = as_entry(name_or_entry, registry)
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


def installed_path(e: Entry, cache: Path | str | None = None) -> Path:
    """Where a dictionary that wwm-prep does not download (a PyPI package or a local MeCab text source)
    is installed; if it is not, an error saying how to install it. `fetch` hands such entries here."""
    if e.format == "mecab-binary-pypi":
        found = _find_pypi(e)
        if found is not None:
            return found
        raise DictionaryError(
            f"dictionary {e.name!r} is distributed as the PyPI package {e.package!r}, not downloaded by "
            f"wwm-prep; install it with: {_pip_hint(e)}"
        )
    found = _find_local(e, cache)
    if found is not None:
        return found
    raise DictionaryError(
        f"dictionary {e.name!r} is a local MeCab text source that wwm-prep does not download; "
        f"install it from Debian with: {_apt_hint(e, cache)}"
    )
