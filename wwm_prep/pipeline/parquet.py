"""Parquet inputs: row groups as a file's natural chunks, and its text column streamed batch by batch.

A Parquet file says in its footer how many rows each row group holds and how many bytes each column takes there,
so indexing one reads the footer alone, never its data: a chunk is a run of whole row groups of about the chunk
size in bytes of text (chunk k starts at the first row group that starts at or after k × chunk size, as a JSON
lines chunk starts at a line). Reading takes only the text column, a slice of rows at a time (about SLICE_BYTES
of text) through a buffered stream, so memory stays flat whatever the size of the file or of one row group.
Rows are numbered from 1, as JSON lines' lines are, so `line` means the same for both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from wwm_prep.core.storage import AnyPath, open_read
from wwm_prep.pipeline.corpus import TEXT, Document, Reject, Span, UnreadableFile, unreadable

SLICE_BYTES = 4 << 20  # bytes of text read at a time: a huge row group is read in slices
READ_BUFFER = 1 << 20  # a column chunk's pages are read through a buffer of this size, not whole
ONE_ROW_GROUP = ("one row group: a unit is a run of whole row groups, so it is one unit (read in slices, memory "
                 "bounded); write it with smaller row groups (e.g. row_group_size) to cut it")


def open_parquet(raw: BinaryIO) -> pq.ParquetFile:
    """A Parquet file over an open stream, read through a buffer rather than a column chunk at once."""
    return pq.ParquetFile(raw, buffer_size=READ_BUFFER, pre_buffer=False)


def text_leaves(meta: pq.FileMetaData, column: str) -> list[int]:
    """The leaf columns that hold `column` (one for a string column; several for a nested one)."""
    schema = meta.schema
    return [i for i in range(meta.num_columns) if schema.column(i).path.split(".")[0] == column]


def no_column(pf: pq.ParquetFile, column: str) -> str | None:
    """Why `column` cannot be the text, naming the columns the file has; None where it is there."""
    names = pf.schema_arrow.names
    if column in names:
        return None
    return f"no column {column!r} to take the text from (--text-column); its columns are: {', '.join(names) or 'none'}"


def group_sizes(meta: pq.FileMetaData, column: str) -> list[int]:
    """Bytes of `column` in each row group, uncompressed: how much text each holds, from the footer alone."""
    leaves = text_leaves(meta, column)
    return [sum(meta.row_group(g).column(i).total_uncompressed_size for i in leaves)
            for g in range(meta.num_row_groups)]


def parquet_index(path: AnyPath, chunk_size: int, column: str) -> dict[str, Any]:
    """The chunk index of a Parquet file, from its footer: `[text offset, first row, first row group]` per chunk."""
    with open_read(path) as raw:
        pf = open_parquet(raw)
        if (why := no_column(pf, column)) is not None:
            raise UnreadableFile(why)
        meta = pf.metadata
        sizes = group_sizes(meta, column)
        chunks, at, row = [], 0, 1
        for g, size in enumerate(sizes):
            if g == 0 or at // chunk_size > (at - sizes[g - 1]) // chunk_size:  # a multiple of the size in between
                chunks.append([at, row, g])
            at += size
            row += meta.row_group(g).num_rows
    index = {"format": "parquet", "text_column": column, "size": at, "rows": row - 1, "row_groups": len(sizes),
             "chunks": chunks or [[0, 1, 0]]}
    if len(sizes) == 1 and at > chunk_size:
        index["note"] = ONE_ROW_GROUP
    return index


def chunk_spans(index: dict[str, Any]) -> list[Span]:
    """The spans of a Parquet file's chunks, as its index gives them."""
    starts = index["chunks"]
    ends = [(s[0], s[2]) for s in starts[1:]] + [(index["size"], index["row_groups"])]
    return [Span(start, end, line, row_groups=(group, end_group)) for (start, line, group), (end, end_group)
            in zip(starts, ends)]


def _texts(values: pa.Array) -> list[Any]:
    """The column's values as Python objects; text that is not valid UTF-8 comes back as its bytes."""
    if pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
        return [_decoded(v) for v in values.to_pylist()]
    try:
        return values.to_pylist()
    except UnicodeDecodeError:  # the reader does not check UTF-8: look value by value, in this slice only
        binary = pa.large_binary() if pa.types.is_large_string(values.type) else pa.binary()
        return [_decoded(v) for v in values.view(binary).to_pylist()]


def _decoded(value: bytes | None) -> str | bytes | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


def _records(values: pa.Array, first: int, column: str) -> Iterator[Document | Reject]:
    """One slice of the text column as Documents, and Rejects for what is null, not text, or not valid UTF-8."""
    textual = (pa.types.is_string(values.type) or pa.types.is_large_string(values.type) or
               pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type))
    for row, value in enumerate(_texts(values) if textual else values.to_pylist(), start=first):
        if isinstance(value, str):
            yield Document(row, value)
        elif isinstance(value, bytes):
            yield Reject(row, "invalid UTF-8", value)
        else:
            kind = "null" if value is None else str(values.type)
            raw = json.dumps({column: value}, ensure_ascii=False, default=str).encode("utf-8")
            yield Reject(row, f"{column!r} is {kind}, not a string", raw)


class ParquetReader:
    """Every row of a Parquet file's text column (or of a `span`'s row groups) as a Document or a Reject,
    numbered from 1 as in the whole file; the file's own errors become UnreadableFile. `consumed` is how many
    bytes of text (as the footer counts them) reading has got through."""

    def __init__(self, path: AnyPath, span: Span | None = None, column: str = TEXT):
        self.path = path
        self.span = span
        self.column = column
        self.consumed = 0

    def __iter__(self) -> Iterator[Document | Reject]:
        for first, values in self.slices():
            yield from _records(values, first, self.column)

    def slices(self) -> Iterator[tuple[int, pa.Array]]:
        """(number of its first row, text values) of each slice read: about SLICE_BYTES of text each."""
        try:
            with open_read(self.path) as raw:
                pf = open_parquet(raw)
                if (why := no_column(pf, self.column)) is not None:
                    raise UnreadableFile(why)
                meta = pf.metadata
                sizes = group_sizes(meta, self.column)
                groups = range(*self.span.row_groups) if self.span is not None and self.span.row_groups else \
                    range(meta.num_row_groups)
                row = self.span.line if self.span is not None and self.span.row_groups else 1
                for g in groups:
                    rows, size = meta.row_group(g).num_rows, sizes[g]
                    per_slice = max(1, SLICE_BYTES * rows // max(size, 1))
                    done, before = 0, self.consumed
                    for batch in pf.iter_batches(batch_size=per_slice, row_groups=[g], columns=[self.column],
                                                 use_threads=False):
                        yield row + done, batch.column(0)
                        done += batch.num_rows
                        self.consumed = before + size * done // max(rows, 1)
                    row += rows
        except (OSError, EOFError, pa.ArrowException) as exc:
            raise unreadable(exc) from exc
