"""Chunks: the units of `segment`, runs of whole lines of one input file of about `chunk_size` bytes of its text.

Chunk k starts at the first line start at or after k × chunk_size bytes of the file's text, so chunks depend on
the file alone, never on how many workers run. Finding them takes one pass over each file, the *index*, which
also records how to reach each chunk without decompressing the file from its start: a byte offset for plain
JSON lines, the frame that holds it for zstd, seek points (`indexed_gzip`) for gzip. A Parquet file's chunks are
runs of whole row groups, found in its footer alone (`parquet`). The index is kept with the
output (`index/<file unit>.json`, and `.gzidx` for gzip), so reruns, other runs and other nodes reuse it; it is
rebuilt when the file or the chunk size changes. A file of one chunk keeps the unit name it had before chunks.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa

from wwm_prep.core.files import temp_path
from wwm_prep.core.storage import AnyPath, Output, identity, open_read, recorded, sha256_of
from wwm_prep.pipeline.corpus import (
    READ_ERRORS,
    TEXT,
    InputFile,
    Span,
    UnreadableFile,
    _decompressed,
    _ZstdFrames,
    is_parquet,
    unreadable,
)
from wwm_prep.pipeline.executor import Executor
from wwm_prep.pipeline.parquet import chunk_spans, parquet_index
from wwm_prep.pipeline.progress import Elapsed
from wwm_prep.pipeline.units import Made, Status, UnitFailed, UnitResult, UnitStage, gather

INDEX_DIR = "index"
INDEX_VERSION = 1
BLOCK = 4 << 20  # bytes of text scanned at a time for line ends
_SEEK_INDEX = re.compile(r"^(?P<unit>.+)\.[0-9a-f]{12}\.gzidx$")
ONE_FRAME = ("one zstd frame: its chunks could only be reached by decompressing it from its start, so it is one "
             "unit; recompress it in frames (pzstd, or zstd files concatenated) to cut it")


def input_stamp(path: AnyPath, verify: bool = False) -> dict[str, Any]:
    """What says an input file is the one a shard or an index was made from: its size and modification time (an
    object's ETag), and with `verify` its sha256 (which also catches an edit that kept both)."""
    try:
        return {**identity(path), **({"sha256": sha256_of(path)} if verify else {})}
    except OSError as exc:  # gone or unreadable since it was found: the unit fails, the run goes on
        raise unreadable(exc) from exc


def same_input(recorded: dict[str, Any], now: dict[str, Any]) -> bool:
    """Stamps agree on everything both hold: a sha256 is compared where the record has one and it was asked for."""
    return all(recorded.get(key) == value for key, value in now.items() if key != "sha256" or "sha256" in recorded)


@dataclass(frozen=True)
class Chunk:
    """One unit of `segment`: a span of lines of one input file."""

    file: InputFile
    index: int
    count: int  # chunks of the file
    span: Span
    stamp: dict[str, Any] = field(default_factory=dict, hash=False)  # the file's, when it was indexed
    note: str = ""  # why a file larger than a chunk is one unit all the same

    @classmethod
    def whole(cls, file: InputFile) -> Chunk:
        """The file as one unit read to its end, as a file within one chunk is (its size unknown: no progress)."""
        return cls(file, 0, 1, Span(0, 0, 1))

    @property
    def unit(self) -> str:
        return self.file.unit if self.count == 1 else f"{self.file.unit}~{self.index:05d}"

    @property
    def source(self) -> str:
        return self.file.source

    @property
    def label(self) -> str:
        """How progress lines name it."""
        return self.source if self.count == 1 else f"{self.source} chunk {self.index + 1}/{self.count}"

    @property
    def size(self) -> int:
        return self.span.end - self.span.start

    def record(self) -> dict[str, int]:
        """What its report records of it: a rerun redoes a chunk whose bounds moved."""
        return {"index": self.index, "count": self.count, "start": self.span.start, "end": self.span.end,
                "line": self.span.line}


def index_name(file: InputFile) -> str:
    return f"{INDEX_DIR}/{file.unit}.json"


def _bounds(blocks: Iterator[bytes], chunk_size: int) -> tuple[list[tuple[int, int]], int]:
    """(text offset, line number) of every chunk start, and the text's size: one `find` per chunk, counts per block."""
    starts, at, lines, target = [(0, 1)], 0, 0, chunk_size
    for block in blocks:
        look = max(target - 1 - at, 0)
        while look < len(block) and (end := block.find(b"\n", look)) >= 0:
            start = at + end + 1
            starts.append((start, lines + block.count(b"\n", 0, end + 1) + 1))
            target = (start // chunk_size + 1) * chunk_size
            look = max(target - 1 - at, end + 1)
        lines += block.count(b"\n")
        at += len(block)
    return [s for s in starts if s[0] < at or s[0] == 0], at


def _read_blocks(stream: BinaryIO) -> Iterator[bytes]:
    while block := stream.read(BLOCK):
        yield block


def _scan(file: InputFile, chunk_size: int, seek_index: Path, column: str = TEXT) -> dict[str, Any]:
    """One pass over the file's text: chunk starts, and what reaches them (written to `seek_index` for gzip).
    A Parquet file's footer says it all, and names the columns where `column` is not one of them."""
    name = file.path.name
    if is_parquet(file.path):
        return parquet_index(file.path, chunk_size, column)
    if not name.endswith((".gz", ".zst")) and identity(file.path)["size"] <= chunk_size:
        return {"format": "plain", "size": identity(file.path)["size"], "chunks": [[0, 1]]}
    with open_read(file.path) as raw:
        if name.endswith(".gz"):
            starts, size = _bounds(_read_blocks(_decompressed(file.path, raw)), chunk_size)
            if len(starts) > 1:  # seek points, in a second pass: a file of one chunk needs none
                import indexed_gzip

                raw.seek(0)
                with indexed_gzip.IndexedGzipFile(fileobj=raw, spacing=max(chunk_size // 4, 1 << 20)) as stream:
                    stream.build_full_index()
                    stream.export_index(str(seek_index))
            return {"format": "gzip", "size": size, "chunks": [list(s) for s in starts]}
        if name.endswith(".zst"):
            frames = _ZstdFrames(raw)
            starts, size = _bounds(_read_blocks(frames), chunk_size)  # type: ignore[arg-type]
            text_starts = [u for _, u in frames.frames]
            if len(frames.frames) == 1 and len(starts) > 1:
                return {"format": "zstd", "size": size, "chunks": [[0, 1]], "note": ONE_FRAME}
            chunks = [[s, line, *frames.frames[_last_at_or_before(text_starts, s)]] for s, line in starts]
            return {"format": "zstd", "size": size, "frames": len(frames.frames), "chunks": chunks}
        starts, size = _bounds(_read_blocks(raw), chunk_size)
        return {"format": "plain", "size": size, "chunks": [list(s) for s in starts]}


def _last_at_or_before(sorted_values: list[int], value: int) -> int:
    return bisect.bisect_right(sorted_values, value) - 1


def build_index(file: InputFile, chunk_size: int, local: Path, verify: bool = False, column: str = TEXT
                ) -> tuple[dict[str, Any], list[str]]:
    """Index one file into `local` (an output's local directory): the index and the names of the files made.
    `column` is the text column of a Parquet file."""
    stamp = input_stamp(file.path, verify)  # before reading: a file that changes while it is read is indexed again
    # named for what it indexes: a node that fetched an earlier one for this file never takes it for this one
    digest = hashlib.sha256(json.dumps([stamp, chunk_size], sort_keys=True).encode()).hexdigest()[:12]
    seek_index = local / INDEX_DIR / f"{file.unit}.{digest}.gzidx"
    seek_index.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path(seek_index)
    try:
        found = _scan(file, chunk_size, temp, column)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        if isinstance(exc, (*READ_ERRORS, pa.ArrowException)):
            raise unreadable(exc) from exc
        raise
    index = {"version": INDEX_VERSION, "source": file.source, "input": stamp, "chunk_size": chunk_size, **found}
    if not temp.exists():
        return index, []
    temp.replace(seek_index)
    return {**index, "seek_index": seek_index.name}, [f"{INDEX_DIR}/{seek_index.name}"]


def index_current(index: Any, file: InputFile, chunk_size: int, verify: bool, column: str = TEXT) -> str | None:
    """Why a recorded index no longer holds for the file ("" where there is none), or None where it holds."""
    if not isinstance(index, dict) or index.get("version") != INDEX_VERSION or index.get("source") != file.source:
        return ""
    if index.get("chunk_size") != chunk_size:
        return "the chunk size changed since it was indexed"
    if index.get("format") == "parquet" and index.get("text_column") != column:
        return "the text column changed since it was indexed"
    if verify and "sha256" not in index["input"]:
        return "its sha256 is asked for (--verify-inputs) and was not recorded"
    try:
        now = input_stamp(file.path, verify)
    except UnreadableFile:
        return ""
    return None if same_input(index["input"], now) else "it has changed since it was indexed"


def chunks_of(file: InputFile, index: dict[str, Any], where: Path) -> list[Chunk]:
    """The file's chunks, as its index gives them; `where` is the folder its gzip seek points are in."""
    if index.get("format") == "parquet":
        spans = chunk_spans(index)
        return [Chunk(file, k, len(spans), span, index["input"], index.get("note", "")) for k, span in enumerate(spans)]
    seek_index = where / index["seek_index"] if "seek_index" in index else None
    starts = index["chunks"]
    ends = [s[0] for s in starts[1:]] + [index["size"]]
    return [Chunk(file, k, len(starts), Span(s[0], end, s[1], tuple(s[2:4]) if len(s) > 2 else None,  # type: ignore[arg-type]
                                            seek_index),
                  index["input"], index.get("note", ""))
            for k, (s, end) in enumerate(zip(starts, ends))]


@dataclass
class IndexStage(UnitStage[InputFile]):
    """One unit = indexing one input file; its report is the index, kept in `index/` beside the output."""

    stage = "index"
    reports = INDEX_DIR
    out: Output
    chunk_size: int
    verify: bool
    claim_timeout: float
    column: str = TEXT  # a Parquet file's text column

    def name(self, unit: InputFile) -> str:
        return unit.unit

    def done(self, unit: InputFile) -> tuple[dict[str, Any] | None, str | None]:
        index = self.out.read_json(index_name(unit))
        why = index_current(index, unit, self.chunk_size, self.verify, self.column)
        return (index, None) if why is None else (None, why or None)

    def temps(self, unit: InputFile) -> Iterable[Path]:
        return [p for p in self.out.local.glob(f"{INDEX_DIR}/.{unit.unit}.*.gzidx.tmp-*")
                if (m := _SEEK_INDEX.match(p.name[1:].split(".tmp-")[0])) and m["unit"] == unit.unit]

    def work(self, unit: InputFile) -> Made:
        try:
            index, made = build_index(unit, self.chunk_size, self.out.local, self.verify, self.column)
        except UnreadableFile as exc:
            raise UnitFailed(str(exc)) from exc
        for name in self.out.names(INDEX_DIR):  # the seek points of the file as it was
            if (m := _SEEK_INDEX.match(name)) and m["unit"] == unit.unit and name != index.get("seek_index"):
                self.out.remove(f"{INDEX_DIR}/{name}")
        return Made(index, made)


def index_files(out: Output, files: list[InputFile], chunk_size: int, verify: bool, claim_timeout: float,
                executor: Executor, quiet: bool, column: str = TEXT) -> tuple[list[Chunk], list[dict[str, Any]]]:
    """Every file's chunks, indexing in parallel the files not indexed yet (or changed since); and the files
    that cannot be read (a Parquet file without the text `column` among them). A file another run is indexing is
    waited for: every run needs every file's chunks."""
    stage = IndexStage(out, chunk_size, verify, claim_timeout, column)
    indexes: dict[str, dict[str, Any]] = {}
    gather(stage, files, indexes)
    failed: list[UnitResult] = []
    todo = [f for f in files if f.unit not in indexes]
    with Elapsed(f"indexing {len(todo)} file(s) into chunks of {chunk_size:,} bytes", quiet=quiet or not todo):
        while todo:
            results = list(executor.run(stage, todo))
            failed += [r for r in results if r.status is Status.FAILED]
            indexes.update((r.name, r.report) for r in results if r.report is not None)
            held = {r.name for r in results if r.status is Status.HELD}
            todo = [f for f in todo if f.unit in held]
            if todo:
                time.sleep(0.5)  # another run is indexing them; its claim is taken over if it dies
    by_name = {f.unit: f for f in files}
    chunks = [c for f in files if f.unit in indexes for c in chunks_of(f, indexes[f.unit], out.local / INDEX_DIR)]
    return chunks, [{"unit": r.name, "source": by_name[r.name].source, "path": recorded(by_name[r.name].path),
                     "error": r.why} for r in failed]

