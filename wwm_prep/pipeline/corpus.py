"""Finding corpus files and streaming their records, one line at a time, whatever the file size.

Files are JSON lines, plain, gzip or zstd, or Parquet (read by `parquet`), laid out like llm-jp-corpus-v3
(`ja/<subset>/…`) or anyhow. A record that cannot be used becomes a `Reject` with its reason instead of stopping
the run. Records are numbered from 1 in their file: the first line of JSON lines, the first row of Parquet.
"""

from __future__ import annotations

import base64
import glob
import io
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import orjson
import zstandard
from isal import igzip, isal_zlib

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.shards import load_schema
from wwm_prep.core.storage import AnyPath, is_url, location, open_read, remote_errors
from wwm_prep.pipeline.config import DEFAULT_TEXT_COLUMN

SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet")
# What reading a missing or broken file raises: I/O, truncation, bad headers, corrupt compressed data.
READ_ERRORS = (OSError, EOFError, zlib.error, isal_zlib.error, zstandard.ZstdError)
TEXT = DEFAULT_TEXT_COLUMN  # the JSON field or Parquet column of the text, unless --text-column names another


@dataclass(frozen=True)
class InputFile:
    path: AnyPath  # a Path, or a UPath for a URL
    source: str  # path relative to the corpus root it was found under
    subset: str

    @property
    def unit(self) -> str:
        """A name for this file's output, unique within a run and safe as a file name."""
        stem = self.source
        for suffix in SUFFIXES:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        return re.sub(r"[^\w.+-]+", "--", stem.removeprefix("ja/"))


@dataclass(frozen=True)
class Document:
    line: int
    text: str


@dataclass(frozen=True)
class Reject:
    line: int
    reason: str
    raw: bytes

    def record(self, source: str) -> dict[str, object]:
        """The reject as a line of `rejects/<unit>.jsonl`, with the fields of `schemas/reject.json` in its order."""
        try:
            raw, raw_base64 = self.raw.decode("utf-8"), None
        except UnicodeDecodeError:
            raw, raw_base64 = None, base64.b64encode(self.raw).decode("ascii")
        values = {"source": source, "line": self.line, "reason": self.reason, "raw": raw, "raw_base64": raw_base64}
        return {name: values[name] for name in load_schema("reject").columns}


def _is_corpus_file(path: AnyPath) -> bool:
    return path.is_file() and path.name.endswith(SUFFIXES)


def _input_file(path: AnyPath, root: AnyPath | None) -> InputFile:
    """Name a file by its place in the llm-jp-corpus-v3 layout (`ja/<subset>/…`) where it has one, so
    that a file gets the same source, subset and shard name however the user pointed at it."""
    parts = path.parts
    if "ja" in parts[:-2]:
        at = len(parts) - 1 - parts[::-1].index("ja")
        return InputFile(path, "/".join(parts[at:]), parts[at + 1])
    if root is not None and path.parent != root:
        relative = path.relative_to(root)
        return InputFile(path, relative.as_posix(), relative.parts[0])
    return InputFile(path, path.name, path.parent.name)


def _under(root: AnyPath) -> list[InputFile]:
    if (root / "ja").is_dir():
        root = root / "ja"
    return [_input_file(p, root) for p in sorted(root.rglob("*")) if _is_corpus_file(p)]


def discover(inputs: Iterable[str], subsets: Iterable[str] | None = None) -> list[InputFile]:
    """Input files named by corpus roots, directories, files or globs, in a stable order.

    In the llm-jp-corpus-v3 layout the subset is the directory under `ja/`; elsewhere it is the first
    directory below the named one, or the file's own directory. `subsets` filters what directories hold.
    """
    wanted = list(dict.fromkeys(subsets)) if subsets is not None else None
    found: list[InputFile] = []
    in_dirs: set[str] = set()  # subsets that directories hold, which `subsets` chooses among
    for item in inputs:
        with remote_errors(item):
            matches = _matches(item)
            if not matches or not all(p.exists() for p in matches):
                raise WwmPrepError(f"input not found: {item}")
        for path in matches:
            if path.is_dir():
                held = _under(path)
                in_dirs.update(f.subset for f in held)
                found.extend(f for f in held if wanted is None or f.subset in wanted)
            elif _is_corpus_file(path):
                found.append(_input_file(path, None))
            else:
                raise WwmPrepError(f"{path}: not a corpus file (expected one of {', '.join(SUFFIXES)})")
    names: dict[str, Path] = {}
    for f in found:
        if f.unit in names and names[f.unit] != f.path:
            raise WwmPrepError(f"two inputs would write the same shard {f.unit!r}: {names[f.unit]} and {f.path}")
        names[f.unit] = f.path
    unknown = [s for s in wanted or () if s not in in_dirs]
    if unknown:
        raise WwmPrepError(f"--subsets names {', '.join(unknown)}, which {', '.join(inputs)} does not hold; the subsets "
                           f"there are: {', '.join(sorted(in_dirs)) or 'none'}")
    unique = {f.path: f for f in found}
    if not unique:
        raise WwmPrepError(f"no input files found in {', '.join(inputs)} (looked for {', '.join(SUFFIXES)} files, "
                           "in llm-jp-corpus-v3's ja/<subset>/ layout or anywhere below)")
    return list(unique.values())


def _matches(item: str) -> list[AnyPath]:
    """What a named input stands for: itself, or what its glob matches (on the local disk or at a URL)."""
    if not glob.has_magic(item):
        return [location(item)]
    if not is_url(item):
        return [Path(p) for p in sorted(glob.glob(item))]
    root = location(item)
    return [type(root)(f"{root.protocol}://{p}", **root.storage_options) for p in sorted(root.fs.glob(root.path))]


class _ZstdFrames(io.RawIOBase):
    """The frames of a zstd file decompressed in order. Unlike zstandard's stream reader, it raises
    EOFError when the file ends inside a frame, so a truncated file is reported, not half-read. `frames` lists
    where each frame starts, in the file and in its text, for the chunk index."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._frame = zstandard.ZstdDecompressor().decompressobj()
        self._started = False
        self._pending = b""
        self._read = raw.tell()  # bytes of the file read so far
        self._made = 0  # bytes of text given out so far
        self.frames = [(self._read, 0)]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = self._raw.read(1 << 20)
            if not chunk:
                if self._started and not self._frame.eof:
                    raise EOFError("zstd stream ends inside a frame (truncated file)")
                return 0
            if self._frame.eof:  # the last block ended where a frame did
                self.frames.append((self._read, self._made))
                self._frame = zstandard.ZstdDecompressor().decompressobj()
            self._read += len(chunk)
            self._started = True
            out = self._frame.decompress(chunk)
            while self._frame.eof and self._frame.unused_data:
                rest = self._frame.unused_data
                self.frames.append((self._read - len(rest), self._made + len(out)))
                self._frame = zstandard.ZstdDecompressor().decompressobj()
                out += self._frame.decompress(rest)
            self._pending = out
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self._made += n
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _decompressed(path: Path, raw: BinaryIO) -> BinaryIO:
    """The decompressed byte stream of a corpus file, chosen by its name."""
    if path.name.endswith(".gz"):  # ISA-L reads gzip about 2.5x faster than zlib, the same bytes and checks
        return igzip.IGzipFile(fileobj=raw)  # type: ignore[return-value]
    if path.name.endswith(".zst"):
        return io.BufferedReader(_ZstdFrames(raw), 1 << 20)  # type: ignore[return-value]
    return raw


def open_binary(path: AnyPath) -> BinaryIO:
    return _decompressed(path, open_read(path))


def parse_record(line_no: int, raw: bytes, field: str = TEXT) -> Document | Reject:
    """A document from one JSON line (its text in `field`), or the reason it cannot be one.

    orjson takes the common case, an object whose field is a string: what it gives then is what `json` gives, and
    it never yields a lone surrogate (it refuses them). Every other line goes to `json`, whose reading decides
    what is kept and why not (orjson refuses lines `json` reads, and reads integers above 64 bits as floats)."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        record = None
    if type(record) is dict and type(text := record.get(field)) is str:
        return Document(line_no, text)
    return _parse_with_json(line_no, raw, field)


def _parse_with_json(line_no: int, raw: bytes, field: str) -> Document | Reject:
    try:
        record = json.loads(raw)
    except UnicodeDecodeError:
        return Reject(line_no, "invalid UTF-8", raw)
    except json.JSONDecodeError as exc:
        return Reject(line_no, f"not JSON: {exc.msg} at column {exc.colno}", raw)
    if not isinstance(record, dict):
        return Reject(line_no, f"not a JSON object but {type(record).__name__}", raw)
    if field not in record:
        return Reject(line_no, f"no {field!r} field", raw)
    text = record[field]
    if not isinstance(text, str):
        kind = "null" if text is None else type(text).__name__
        return Reject(line_no, f"{field!r} is {kind}, not a string", raw)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return Reject(line_no, f"{field!r} holds a lone surrogate (not valid Unicode)", raw)
    return Document(line_no, text)


class UnreadableFile(Exception):
    """An input file that cannot be read to its end: missing, unreadable, truncated, corrupt compression."""


def unreadable(exc: BaseException) -> UnreadableFile:
    """The one line a run reports for a file whose reading raised `exc`."""
    if isinstance(exc, zstandard.ZstdError) and "Unknown frame descriptor" in str(exc):
        return UnreadableFile("not a zstd file, although named .zst (its first bytes are no zstd frame)")
    return UnreadableFile(f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class Span:
    """Where a chunk of a file lies in its text: the byte offsets of its first line and of the line after its last,
    the file's own number of its first line, and how to get there without decompressing from the start."""

    start: int
    end: int
    line: int
    frame: tuple[int, int] | None = None  # zstd: compressed and text offsets of the frame holding `start`
    gzip_index: Path | None = None  # gzip: the seek points of the file (`indexed_gzip`'s export)
    row_groups: tuple[int, int] | None = None  # Parquet: the chunk's row groups, first and after last


def _open_at(path: AnyPath, raw: BinaryIO, span: Span) -> BinaryIO:
    """The file's text from `span.start` on: seek points for gzip, the frame holding it for zstd, else a seek."""
    if path.name.endswith(".gz"):
        import indexed_gzip

        stream = indexed_gzip.IndexedGzipFile(fileobj=raw, index_file=str(span.gzip_index))
        stream.seek(span.start)
        return stream  # type: ignore[no-any-return]
    at, skip = span.frame if span.frame is not None else (span.start, 0)
    raw.seek(at)
    stream = _decompressed(path, raw)
    if span.frame is not None:
        skip = span.start - skip
        while skip > 0 and (block := stream.read(min(skip, 1 << 22))):
            skip -= len(block)
    return stream


class RecordReader:
    """Every line of a corpus file (or of a `span` of it) as a Document or a Reject, numbered as in the whole file;
    the file's own errors become UnreadableFile. `consumed` is how many bytes of text reading has got through."""

    def __init__(self, path: Path, span: Span | None = None, field: str = TEXT):
        self.path = path
        self.span = span
        self.field = field
        self.consumed = 0

    def __iter__(self) -> Iterator[Document | Reject]:
        span = self.span
        try:
            with open_read(self.path) as raw, (_decompressed(self.path, raw) if span is None else
                                               _open_at(self.path, raw, span)) as stream:
                left = span.end - span.start if span is not None else -1
                for line_no, line in enumerate(stream, start=span.line if span is not None else 1):
                    self.consumed += len(line)
                    line = line.rstrip(b"\r\n")
                    if line and not line.isspace():  # no copy made only to test for blankness
                        yield parse_record(line_no, line, self.field)
                    if self.consumed == left:
                        break
        except READ_ERRORS as exc:
            raise unreadable(exc) from exc


def is_parquet(path: AnyPath) -> bool:
    return bool(path.name.endswith(".parquet"))


class Records(Protocol):
    """What reading a corpus file gives: its records in order, and how many bytes of its text were got through."""

    consumed: int

    def __iter__(self) -> Iterator[Document | Reject]: ...


def read_records(path: AnyPath, span: Span | None = None, field: str = TEXT) -> Records:
    """The records of a corpus file of any kind (or of a `span` of it)."""
    if is_parquet(path):
        from wwm_prep.pipeline.parquet import ParquetReader  # it builds on this module's records

        return ParquetReader(path, span, field)
    return RecordReader(path, span, field)
