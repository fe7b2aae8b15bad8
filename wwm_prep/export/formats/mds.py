"""MosaicML MDS shards of sequence rows, written by `mosaicml-streaming`'s own `MDSWriter`.

The columns are the sequence schema's: each list of integers an `ndarray` of that schema's type, except token
ids, which are uint32 (the Arrow shards hold them as int32; MDS readers expect unsigned ids, and the llm-jp
vocabulary of 99,574 does not fit in uint16); each list of strings (`doc_sources`) a JSON list. A row's shape
is stored with it, so the rows of one export may be of any length. `StreamingDataset` hands rows back as a
dict of exactly these columns, which the collator takes as they are.

The library is imported only here (`pip install 'wwm-prep[mds]'`): it pins numpy<2.2 and transformers<5, so it
belongs in the training environment, not in every one wwm-prep is installed in.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.export.base import ExportFormat, Option

if TYPE_CHECKING:
    from wwm_prep.core.shards import Schema
    from wwm_prep.export.source import Source, Tally

TOKEN_IDS = "input_ids"
TOKEN_DTYPE = "uint32"
COMPRESSIONS = ("zstd", "zstd:1", "zstd:3", "zstd:9", "br", "gz", "snappy", "none")
DEFAULT_COMPRESSION = "zstd"  # level 3: about as fast as writing uncompressed, and half the bytes to stream
DEFAULT_SHARD_SIZE = "64mb"  # the library's default and MosaicML's advice: large enough to stream well


def require_streaming() -> Any:
    """The `streaming` package, or a one-line WwmPrepError that says how to install it."""
    try:
        import streaming
    except ImportError as exc:
        raise WwmPrepError(f"--format mds needs mosaicml-streaming ({exc}): pip install 'wwm-prep[mds]' (it pins "
                           "numpy<2.2 and transformers<5: install it in the training environment)") from exc
    return streaming


def columns(schema: Schema) -> dict[str, str]:
    """MDS encodings of the schema's columns."""
    import pyarrow as pa

    out = {}
    for f in schema.arrow:
        if not pa.types.is_list(f.type):
            raise WwmPrepError(f"column {f.name} of type {f.type} has no MDS encoding here")  # pragma: no cover
        value = f.type.value_type
        if pa.types.is_string(value):
            out[f.name] = "json"
        else:
            out[f.name] = f"ndarray:{TOKEN_DTYPE if f.name == TOKEN_IDS else value}"
    return out


def write(source: Source, out: Path, opts: dict[str, Any], tally: Tally | None = None) -> dict[str, str]:
    """Write every row of `source` to MDS shards in the (empty, temporary) directory `out`; return the columns."""
    import numpy as np
    from streaming import MDSWriter

    from wwm_prep.core.shards import ListColumn

    require_streaming()
    encodings = columns(source.schema)
    numeric = [name for name, enc in encodings.items() if enc.startswith("ndarray:")]
    listed = [name for name, enc in encodings.items() if enc == "json"]
    compression = None if opts["compression"] == "none" else opts["compression"]
    try:
        writer = MDSWriter(columns=encodings, out=str(out), compression=compression, size_limit=opts["shard_size"])
    except ValueError as exc:
        raise WwmPrepError(f"mosaicml-streaming refuses the options: {exc}") from exc
    with writer:
        for batch in source.batches(tally):
            arrays = {name: ListColumn.of(batch, name, np.dtype(encodings[name].split(":")[1])) for name in numeric}
            lists = {name: batch.column(name).to_pylist() for name in listed}
            for i in range(batch.num_rows):  # the writer's API takes one sample at a time
                sample: dict[str, Any] = {name: col.row(i) for name, col in arrays.items()}
                sample.update({name: values[i] for name, values in lists.items()})
                writer.write(sample)
    return encodings


FORMAT = ExportFormat(
    name="mds", help="MosaicML MDS shards for StreamingDataset/Composer (pip install 'wwm-prep[mds]')",
    owns_directory=True, require=require_streaming, write=write,
    options=(Option("compression", "compression of each shard file (default: zstd, level 3; none for uncompressed)",
                    DEFAULT_COMPRESSION, COMPRESSIONS),
             Option("shard-size", "uncompressed bytes per shard before a new one starts, e.g. 64mb (the default) or "
                    "256mb", DEFAULT_SHARD_SIZE, recorded=str.lower)),
)
