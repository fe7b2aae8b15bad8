"""Where user paths live: the local file system, or any fsspec URL (s3://, gs://, hf://, http://, memory://…).

The one module that opens what the user named. A local path stays a `pathlib.Path`, read and written as it
always was: no fsspec on that path. A URL becomes a `upath.UPath`, which offers the same path operations
through fsspec; reading it streams in blocks, so memory stays bounded whatever the object's size. Object
stores have no rename, so an `Output` at a URL makes its files in a local staging directory and uploads each
one whole once it is complete (shards before the report that vouches for them): an object is visible only
when complete, and the resume logic of local outputs carries over.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.files import read_json, sha256_file

BUCKETED = ("s3", "s3a", "gs", "gcs", "az", "abfs")  # protocols whose first path component is a bucket
AnyPath = Any  # a pathlib.Path, or a upath.UPath for a URL (fsspec is imported only when a URL is given)


def is_url(text: str | Path) -> bool:
    return isinstance(text, str) and "://" in text and not text.startswith("file://")


def location(text: str | AnyPath) -> AnyPath:
    """A path for what the user named: `Path` for a local one, `UPath` for a URL (one already made stays)."""
    if not isinstance(text, (str, Path)):
        return text
    if isinstance(text, Path) or not is_url(text):
        return Path(str(text).removeprefix("file://"))
    try:
        from upath import UPath
    except ImportError as exc:  # pragma: no cover - universal_pathlib is a dependency
        raise WwmPrepError(f"{text}: URLs need universal_pathlib (pip install universal_pathlib)") from exc
    with remote_errors(text):
        return UPath(text)


def recorded(path: AnyPath | str) -> str:
    """A location as recorded, so that it names the same thing from any working directory: a URL as given, a
    local path made absolute as named (links kept)."""
    return str(path) if is_url(str(path)) or not isinstance(path, (str, Path)) else os.path.abspath(path)


def is_remote(path: AnyPath) -> bool:
    return not isinstance(path, Path)


def _fs(path: AnyPath, name: str = "") -> tuple[Any, str]:
    """The file system and its own path for a URL (and a name under it), looked up afresh each time: fsspec
    caches one instance per process, so a forked worker gets its own, not its parent's event loop."""
    from fsspec.core import url_to_fs

    url = f"{str(path).rstrip('/')}/{name}" if name else str(path)
    return url_to_fs(url)


@contextmanager
def remote_errors(url: Any) -> Iterator[None]:
    """A missing bucket or key, denied access, or a protocol without its library, as one line naming the URL."""
    try:
        yield
    except WwmPrepError:
        raise
    except FileNotFoundError as exc:
        raise WwmPrepError(f"{url}: not found (no such bucket, key or file)") from exc
    except PermissionError as exc:
        raise WwmPrepError(f"{url}: access denied ({exc})") from exc
    except ImportError as exc:
        raise WwmPrepError(f"{url}: {exc}; install the extra for it, e.g. pip install 'wwm-prep[s3]'") from exc
    except (OSError, ValueError) as exc:
        if not isinstance(url, str) or not is_url(url):
            raise
        raise WwmPrepError(f"{url}: {type(exc).__name__}: {exc}") from exc


def open_read(path: AnyPath) -> BinaryIO:
    """A binary stream of a file or object; a remote one is read in blocks as it is consumed."""
    if isinstance(path, Path):
        return open(path, "rb")
    fs, inner = _fs(path)
    return fs.open(inner, "rb", block_size=1 << 23)


def identity(path: AnyPath) -> dict[str, Any]:
    """What tells that a file is still the one it was: size and modification time (an object's ETag too; on the
    Hugging Face Hub, where files have no modification time, the git blob id)."""
    if isinstance(path, Path):
        stat = path.stat()
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    fs, inner = _fs(path)
    info = fs.info(inner)
    stamp = {"size": int(info["size"])}
    for key in ("ETag", "etag", "md5Hash", "LastModified", "mtime", "updated", "blob_id"):
        if info.get(key) is not None:
            stamp[key.lower()] = str(info[key])
    return stamp


def sha256_of(path: AnyPath) -> str:
    if isinstance(path, Path):
        return sha256_file(path)
    digest = hashlib.sha256()
    with open_read(path) as f:
        while block := f.read(1 << 23):
            digest.update(block)
    return digest.hexdigest()


def local_copy(path: AnyPath, cache: Path) -> Path:
    """A local file for tools that need one (SentencePiece reads only local files): the path itself, or the
    object downloaded into `cache` once, named for its URL."""
    if isinstance(path, Path):
        return path
    target = cache / "remote" / hashlib.sha256(str(path).encode()).hexdigest()[:16] / path.name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.part")
        with remote_errors(str(path)):
            fs, inner = _fs(path)
            fs.get_file(inner, str(partial))
        partial.replace(target)
    return target


class Output:
    """A stage's output directory. Files are made under `local`; for a URL, `local` is a staging directory and
    `publish` uploads a finished file (and drops the staged copy); reads go to the URL."""

    def __init__(self, target: str | Path, staging: Path):
        self.target = location(target)
        self.remote = is_remote(self.target)
        if self.remote:
            digest = hashlib.sha256(str(self.target).encode()).hexdigest()[:16]
            self.local = staging / digest
        else:
            self.local = self.target
        self.local.mkdir(parents=True, exist_ok=True)
        if self.remote and self.target.protocol in BUCKETED:  # fail now, not after the first unit's work
            fs, inner = _fs(self.target)
            with remote_errors(self.target):
                if not fs.exists(inner.split("/")[0]):
                    raise FileNotFoundError(inner)

    def __str__(self) -> str:
        return str(self.target)

    def publish(self, name: str, keep: bool = False) -> None:
        """Make the finished local file `name` visible at the output (a no-op for a local output)."""
        if not self.remote:
            return
        with remote_errors(f"{self.target}/{name}"):
            fs, inner = _fs(self.target, name)
            fs.put_file(str(self.local / name), inner)
        if not keep:
            (self.local / name).unlink()

    def read_json(self, name: str) -> Any:
        """The JSON of `name` at the output, or None where it is missing or not JSON."""
        if not self.remote:
            return read_json(self.local / name)
        fs, inner = _fs(self.target, name)
        try:
            return json.loads(fs.cat_file(inner))
        except (FileNotFoundError, ValueError):
            return None

    def holds(self, name: str, sha256: str, size: int | None) -> bool:
        """Whether the output holds `name` as recorded: by its sha256 locally; remotely by its size, since
        an object is only ever uploaded whole and hashing it again would read it back over the network."""
        if not self.remote:
            path = self.local / name
            return path.is_file() and sha256_file(path) == sha256
        fs, inner = _fs(self.target, name)
        try:
            return size is not None and int(fs.info(inner)["size"]) == size
        except FileNotFoundError:
            return False

    def names(self, folder: str = "") -> list[str]:
        """File names directly in `folder` of the output."""
        if not self.remote:
            directory = self.local / folder
            return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
        fs, inner = _fs(self.target, folder)
        try:
            fs.invalidate_cache(inner)  # other runs and workers add files: a listing must be fresh
            entries = fs.ls(inner, detail=False)
        except FileNotFoundError:
            return []
        return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def remove(self, name: str) -> None:
        if not self.remote:
            (self.local / name).unlink(missing_ok=True)
            return
        fs, inner = _fs(self.target, name)
        try:
            fs.rm_file(inner)
        except FileNotFoundError:
            pass
