"""Megatron-LM indexed datasets of sequence rows, written by `megatron-core`'s own `IndexedDatasetBuilder`.

One dataset per numeric column of the sequence schema, `PREFIX_<column>.bin/.idx`, each holding one Megatron
sequence (and one document) per packed row, so that `IndexedDataset(PREFIX_<column>)[i]` is row i of that
column in every one: `input_ids` (seq_len ids), `word_starts` (seq_len flags) and `doc_lengths` (the row's
pieces' lengths). Megatron's indexed format holds numbers only, so `doc_sources` stays in the Arrow shards.

Types are the schema's where Megatron has them: int32 ids (its `DType` has no uint32; int32 holds the llm-jp
vocabulary) and lengths, uint8 word starts. The library is imported only here (`pip install 'wwm-prep[megatron]'`,
which needs torch>=2.6).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.export.base import ExportFormat

if TYPE_CHECKING:
    from wwm_prep.core.shards import Schema
    from wwm_prep.export.source import Source, Tally


def require_megatron() -> Any:
    """`megatron.core.datasets.indexed_dataset`, or a one-line WwmPrepError that says how to install it."""
    try:
        with warnings.catch_warnings():  # megatron-core warns at import that Transformer Engine and Apex are absent
            warnings.simplefilter("ignore")
            from megatron.core.datasets import indexed_dataset
    except ImportError as exc:
        raise WwmPrepError(f"--format megatron needs megatron-core ({exc}): pip install 'wwm-prep[megatron]' "
                           "(it needs torch>=2.6)") from exc
    return indexed_dataset


def columns(schema: Schema | None = None) -> dict[str, str]:
    """The NumPy type each numeric column of the schema is stored as; lists of strings have no indexed form."""
    import pyarrow as pa

    from wwm_prep.core.shards import load_schema

    schema = schema or load_schema("sequence")
    return {f.name: str(f.type.value_type) for f in schema.arrow
            if pa.types.is_list(f.type) and pa.types.is_integer(f.type.value_type)}


def file_names(schema: Schema | None = None) -> list[str]:
    """The names of an export's files under its prefix (`input_ids.bin`, `input_ids.idx`, …)."""
    return [f"{name}.{ext}" for name in columns(schema) for ext in ("bin", "idx")]


def write(source: Source, prefix: Path, opts: dict[str, Any], tally: Tally | None = None) -> dict[str, str]:
    """Write every row of `source` as `prefix_<column>.bin/.idx` (in a temporary directory); return the columns."""
    import numpy as np
    import torch

    from wwm_prep.core.shards import ListColumn

    indexed = require_megatron()
    dtypes = columns(source.schema)
    builders = {}
    for name, dtype in dtypes.items():
        if dtype not in indexed.DType.__members__:
            raise WwmPrepError(f"megatron-core stores no {dtype} ({name})")  # pragma: no cover
        builders[name] = indexed.IndexedDatasetBuilder(f"{prefix}_{name}.bin", dtype=np.dtype(dtype).type)
    for batch in source.batches(tally):
        for name, builder in builders.items():
            col = ListColumn.of(batch, name, np.dtype(dtypes[name]))  # cast once: writable, in the stored type
            for i in range(col.rows):  # the builder takes one sequence at a time
                builder.add_item(torch.from_numpy(col.row(i)))
                builder.end_document()
    for name, builder in builders.items():
        builder.finalize(f"{prefix}_{name}.idx")
    return dtypes


FORMAT = ExportFormat(
    name="megatron", help="Megatron-LM indexed datasets PREFIX_<column>.bin/.idx (pip install 'wwm-prep[megatron]')",
    owns_directory=False, require=require_megatron, write=write, file_names=file_names,
)
