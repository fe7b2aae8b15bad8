"""Arrow shards and their schemas: the one place that knows how rows reach disk and come back.

Schemas are data files under `schemas/`; writers and readers both build their Arrow schema from
them, and every shard carries the schema's name and version in its metadata so a reader can refuse
a shard written by an incompatible version instead of misreading it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.files import read_json, sha256_file, temp_path
from wwm_prep.core.manifest import KINDS, MANIFEST, DocumentManifest, SequenceManifest, TokenizerRecord
from wwm_prep.core.resources import resource
from wwm_prep.core.storage import location, open_read, remote_errors

_SCALARS: dict[str, pa.DataType] = {
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
}
_LIST = re.compile(r"^list<(\w+)>$")
SCHEMA_KEY = b"wwm_prep.schema"
VERSION_KEY = b"wwm_prep.schema_version"


def _arrow_type(name: str) -> pa.DataType:
    match = _LIST.match(name)
    if match:
        return pa.list_(_SCALARS[match.group(1)])
    return _SCALARS[name]


@dataclass(frozen=True)
class Schema:
    """A shard schema from `schemas/`: its name and version, and its Arrow form (which carries both)."""

    name: str
    version: int
    arrow: pa.Schema

    @property
    def columns(self) -> list[str]:
        return self.arrow.names


@cache
def load_schema(name: str) -> Schema:
    """The schema `schemas/<name>.json` as Arrow, tagged with its name and version."""
    spec = json.loads(resource("schemas", f"{name}.json").read_text(encoding="utf-8"))
    fields = [pa.field(f["name"], _arrow_type(f["type"]), nullable=f.get("nullable", True)) for f in spec["fields"]]
    metadata = {SCHEMA_KEY: spec["name"].encode(), VERSION_KEY: str(spec["version"]).encode()}
    return Schema(spec["name"], int(spec["version"]), pa.schema(fields, metadata=metadata))


class ShardWriter:
    """Streams record batches into an Arrow IPC stream file (what `datasets` reads) under a temporary
    name, and renames it into place only when closed cleanly: a crash never leaves a shard that looks done."""

    def __init__(self, path: Path, schema: Schema):
        self.path = path
        self.schema = schema
        self.rows = 0
        self._tmp = temp_path(path)
        self._sink = pa.OSFile(str(self._tmp), "wb")
        self._writer = pa.ipc.new_stream(self._sink, schema.arrow)

    def write(self, columns: Mapping[str, Any]) -> None:
        batch = pa.record_batch([columns[name] for name in self.schema.columns], schema=self.schema.arrow)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def close(self) -> str:
        """Finish the shard and return its sha256."""
        self._writer.close()
        self._sink.close()
        digest = sha256_file(self._tmp)
        os.replace(self._tmp, self.path)
        return digest

    def abort(self) -> None:
        """Drop the temporary file; closing may fail again (a full disk) and must not keep it open."""
        for close in (self._writer.close, self._sink.close):
            try:
                close()
            except (OSError, pa.ArrowException):
                pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None:
            self.abort()


@dataclass(frozen=True)
class ListColumn:
    """One list column of a record batch as NumPy: flat values and row offsets into them, from 0 (views, no copy):
    the one way every reader of shards turns a column into arrays without a Python object per token."""

    values: np.ndarray
    offsets: np.ndarray  # int64[rows + 1], offsets[0] == 0

    @classmethod
    def of(cls, batch: pa.RecordBatch | pa.ListArray, name: str | None = None, dtype: Any = None) -> ListColumn:
        """The column `name` of a batch (or a list array itself); with `dtype`, its values cast once for the whole
        batch (a copy, so writable)."""
        column = batch.column(name) if name is not None else batch
        offsets = column.offsets.to_numpy().astype(np.int64)
        values = column.flatten().to_numpy(zero_copy_only=False)
        if dtype is not None:
            values = values.astype(dtype)
        return cls(values, offsets - offsets[0])

    @property
    def rows(self) -> int:
        return int(self.offsets.shape[0]) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def split(self) -> list[np.ndarray]:
        """One array per row (views)."""
        return np.split(self.values, self.offsets[1:-1])


def read_batches(path: Path, schema: Schema, mapped: bool = False) -> Iterator[pa.RecordBatch]:
    """Record batches of a shard, refusing one written under another schema or version; one at a URL is
    streamed. `mapped`: a local shard is memory-mapped, so that a reader of one small column (the list offsets
    that give lengths) touches only its pages, not every token."""
    if not isinstance(path, Path):
        opened = pa.PythonFile(open_read(path), "r")
    else:
        opened = pa.memory_map(str(path)) if mapped else pa.OSFile(str(path), "rb")
    with opened as source:
        reader = pa.ipc.open_stream(source)
        meta = reader.schema.metadata or {}
        name = meta.get(SCHEMA_KEY, b"?").decode()
        version = meta.get(VERSION_KEY, b"?").decode()
        if name != schema.name or version != str(schema.version):
            raise WwmPrepError(
                f"{path}: shard has schema {name!r} version {version}, expected {schema.name!r} version "
                f"{schema.version}; re-create it with this version of wwm-prep"
            )
        yield from reader


# ---------------------------------------------------------------------------------------------- a directory of shards

#: Schema name → the kind of manifest written beside shards of that schema.
SCHEMA_KINDS = {"document": "documents", "sequence": "sequences"}


@dataclass(frozen=True)
class ShardSet:
    """The shards of a directory, their kind, and the manifest beside them (if a valid one is there)."""

    dir: Path
    kind: str  # "documents" or "sequences"
    schema: Schema
    paths: list[Path]
    manifest: DocumentManifest | SequenceManifest | None

    def batches(self) -> Iterator[tuple[Path, pa.RecordBatch]]:
        for path in self.paths:
            for batch in read_batches(path, self.schema):
                yield path, batch

    def shard_rows(self) -> dict[str, int] | None:
        """Rows of each shard by file name, as the manifest records them (None without a manifest)."""
        return self.manifest.shard_rows() if self.manifest is not None else None

    def tokenizer_record(self) -> TokenizerRecord | None:
        """The tokenizer the shards were made with, as the manifest records it."""
        if isinstance(self.manifest, SequenceManifest):
            return self.manifest.tokenizer
        return self.manifest.config.tokenizer if self.manifest is not None else None


def _shard_schema_name(path: Path) -> str:
    try:
        with (pa.OSFile(str(path), "rb") if isinstance(path, Path) else pa.PythonFile(open_read(path), "r")) as source:
            meta = pa.ipc.open_stream(source).schema.metadata or {}
    except (OSError, pa.ArrowInvalid) as exc:
        raise WwmPrepError(f"{path}: not an Arrow shard ({exc})") from exc
    return meta.get(SCHEMA_KEY, b"?").decode()


def _shard_kind(directory: Path, paths: list[Path]) -> str:
    """The one kind all the shards are, told by the schema in their metadata."""
    names = {p.name: _shard_schema_name(p) for p in paths}
    kinds = {SCHEMA_KINDS.get(n) for n in names.values()}
    if None in kinds or len(kinds) != 1:
        found = ", ".join(sorted({f"{n!r} ({f})" for f, n in names.items()}))
        raise WwmPrepError(f"{directory}: shards must all be document or all sequence shards; found schemas {found}")
    return kinds.pop()


def _manifest(directory: Path, kind: str) -> DocumentManifest | SequenceManifest | None:
    """The manifest of the shards' kind; one that is unreadable or malformed counts as none, but one that
    names another kind means the directory holds the outputs of two stages."""
    manifest = KINDS[kind].read_if_any(directory)
    if manifest is None:
        data = read_json(directory / MANIFEST)
        if isinstance(data, dict) and data.get("kind") != kind:
            raise WwmPrepError(f"{directory / MANIFEST} is a {data.get('kind')!r} manifest but the shards are "
                               f"{kind}: the directory mixes outputs")
    return manifest  # type: ignore[return-value]


def open_shards(directory: Path) -> ShardSet:
    """The shards of `directory` (`*.arrow`, in file-name order; a path or URL), told apart by the schema in
    their metadata."""
    directory = location(directory)
    with remote_errors(directory):
        is_dir, exists = directory.is_dir(), directory.exists()
    if not exists:
        raise WwmPrepError(f"{directory} does not exist (give a directory written by `wwm-prep segment` or `pack`)")
    if not is_dir:
        raise WwmPrepError(f"{directory}: not a directory (give one written by `wwm-prep segment` or `pack`)")
    paths = sorted(p for p in directory.glob("*.arrow") if not p.name.startswith("."))
    if not paths:
        hint = [d.name for d in (directory / "documents", directory / "sequences") if d.is_dir()]
        more = f"; try {' or '.join(str(directory / h) for h in hint)}" if hint else ""
        raise WwmPrepError(f"{directory}: no shards (*.arrow) here{more}")
    kind = _shard_kind(directory, paths)
    schema_name = next(n for n, k in SCHEMA_KINDS.items() if k == kind)
    return ShardSet(directory, kind, load_schema(schema_name), paths, _manifest(directory, kind))


def open_sequences(directory: Path, reader: str) -> ShardSet:
    """The sequence shards of `directory` with their manifest, which must list exactly the shards there: what every
    reader of `pack`'s output opens (`reader` names it in the errors), or a one-line WwmPrepError saying what is
    there instead."""
    shards = open_shards(directory)
    if shards.kind != "sequences":
        raise WwmPrepError(f"{shards.dir} holds {shards.kind[:-1]} shards; {reader} takes the sequence shards that "
                           f"`wwm-prep pack {shards.dir} --out SEQUENCES --seq-len 8192` makes of them")
    manifest = SequenceManifest.read(shards.dir)
    listed, found = sorted(s["file"] for s in manifest.shards), [p.name for p in shards.paths]
    if listed != found:
        missing, extra = sorted(set(listed) - set(found)), sorted(set(found) - set(listed))
        raise WwmPrepError(f"{shards.dir}: the shards there are not those its manifest lists (missing: "
                           f"{', '.join(missing) or 'none'}; not listed: {', '.join(extra) or 'none'}); "
                           "re-run `wwm-prep pack` to complete it")
    return ShardSet(shards.dir, shards.kind, shards.schema, shards.paths, manifest)
