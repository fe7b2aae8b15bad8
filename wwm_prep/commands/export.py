"""`wwm-prep export`: sequence shards as MosaicML MDS shards or Megatron-LM indexed datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from wwm_prep.commands.base import LOCATION, echo_rows, user_errors

# Kept equal to wwm_prep.export.mds's by a test; importing it here would slow every command down.
COMPRESSIONS = ("zstd", "zstd:1", "zstd:3", "zstd:9", "br", "gz", "snappy", "none")


@click.command()
@click.argument("seq_dir", metavar="SEQ_DIR", type=LOCATION)
@click.option("--format", "fmt", type=click.Choice(["mds", "megatron"]), required=True,
              help="mds: MosaicML MDS shards for StreamingDataset/Composer (pip install 'wwm-prep[mds]'); megatron: "
                   "Megatron-LM indexed datasets PREFIX_<column>.bin/.idx (pip install 'wwm-prep[megatron]').")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="mds: the directory to write (made whole, or not at all); megatron: the prefix of the files, "
                   "e.g. out/ja for out/ja_input_ids.bin.")
@click.option("--compression", type=click.Choice(COMPRESSIONS), default=None,
              help="mds: compression of each shard file (default: zstd, level 3; none for uncompressed).")
@click.option("--shard-size", default=None,
              help="mds: uncompressed bytes per shard before a new one starts, e.g. 64mb (the default) or 256mb.")
@click.option("--overwrite", is_flag=True, help="Replace what is at --out, even an export made otherwise.")
@user_errors
def export(seq_dir: Path, fmt: str, out: Path, compression: str | None, shard_size: str | None,
           overwrite: bool) -> None:
    """Export the sequence shards in SEQ_DIR (from `wwm-prep pack`) for other trainers.

    Every row is written as it is (input_ids, word_starts, doc_lengths; doc_sources too for MDS), read batch by
    batch. The export is written beside --out and moved into place when complete, with a record of the source
    manifest's sha256, the options, the counts and every file's sha256; the same command again does nothing.
    """
    from wwm_prep.export.run import run_export

    if fmt != "mds" and (compression or shard_size):
        raise click.UsageError("--compression and --shard-size are options of --format mds")
    options: dict[str, Any] = {}
    if fmt == "mds":
        from wwm_prep.export.mds import options as mds_options

        options = mds_options(compression, shard_size)
    outcome = run_export(seq_dir, out, fmt, options, overwrite=overwrite)
    record, target = outcome.record, outcome.target
    if outcome.already_done:
        click.echo(f"export → {target.path}: already complete ({record.rows:,} rows from the same source, "
                   f"the same options); nothing to do")
        return
    click.echo(f"export → {target.path}  ({fmt}, {record.source['seq_len']} tokens per row)")
    size = sum(f["bytes"] for f in record.files.values())
    echo_rows([("rows", record.rows), ("tokens", record.tokens), ("  inside pieces", record.content_tokens),
               ("files", len(record.files)), ("MiB", f"{size / 2**20:,.1f}")], 16, 14)
    click.echo(f"  record: {target.record_path}")
