"""The sequence shards an export reads: checked once, then streamed record batch by record batch.

An export writes what `pack` made and nothing else, so it insists on sequence shards with a valid manifest
(whose sha256 the export records) and on the shards that manifest lists. Rows come in the order `datasets`
and the collator see them (shard file names in order), so row i of an export is row i of the Arrow shards.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from wwm_prep.core.manifest import SequenceManifest, manifest_sha256
from wwm_prep.core.shards import Schema, ShardSet, open_sequences
from wwm_prep.core.storage import AnyPath


@dataclass
class Tally:
    """Rows and the tokens inside their pieces, counted as batches pass (so an export records what it wrote)."""

    rows: int = 0
    content_tokens: int = 0

    def add(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        self.content_tokens += int(pc.sum(pc.list_flatten(batch.column("doc_lengths"))).as_py() or 0)


@dataclass(frozen=True)
class Source:
    """Sequence shards with their manifest: what an export reads and what its record says it came from."""

    shards: ShardSet
    manifest: SequenceManifest
    manifest_sha256: str

    @property
    def schema(self) -> Schema:
        return self.shards.schema

    @property
    def seq_len(self) -> int:
        return int(self.manifest.config.seq_len)

    @property
    def rows(self) -> int:
        return int(self.manifest.totals["rows"])

    def batches(self, tally: Tally | None = None) -> Iterator[pa.RecordBatch]:
        """The record batches of every shard in order; one at a time, so memory holds one batch. What passes
        is counted into `tally`."""
        for _, batch in self.shards.batches():
            if tally is not None:
                tally.add(batch)
            yield batch

    def record(self) -> dict[str, Any]:
        """What an export's record says of its source."""
        return {"dir": str(self.shards.dir), "manifest_sha256": self.manifest_sha256, "seq_len": self.seq_len,
                "rows": self.rows, "schema": {"name": self.schema.name, "version": self.schema.version},
                "tokenizer": self.manifest.tokenizer.to_dict()}


def open_source(seq_dir: AnyPath) -> Source:
    """The sequence shards of `seq_dir` and their manifest, or a one-line WwmPrepError saying what is there instead."""
    shards = open_sequences(seq_dir, "export")
    return Source(shards, shards.manifest, manifest_sha256(shards.dir))  # type: ignore[arg-type]
