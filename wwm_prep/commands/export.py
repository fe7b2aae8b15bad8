"""`wwm-prep export`: sequence shards as MosaicML MDS shards or Megatron-LM indexed datasets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from wwm_prep.commands.base import LOCATION, echo_rows, user_errors
from wwm_prep.export.base import formats


def format_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--format` and every format's own options, as the registry of formats has them."""
    for fmt in reversed(list(formats().values())):
        for option in reversed(fmt.options):
            command = click.option(f"--{option.name}", option.key, default=None,
                                   type=click.Choice(option.choices) if option.choices else None,
                                   help=f"{fmt.name}: {option.help}.")(command)
    return click.option("--format", "fmt", type=click.Choice(list(formats())), required=True,
                        help="; ".join(f"{f.name}: {f.help}" for f in formats().values()) + ".")(command)


@click.command()
@click.argument("seq_dir", metavar="SEQ_DIR", type=LOCATION)
@format_options
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="A format that owns a directory (mds): the directory to write (made whole, or not at all); one that "
                   "writes files under a prefix (megatron): the prefix, e.g. out/ja for out/ja_input_ids.bin.")
@click.option("--overwrite", is_flag=True, help="Replace what is at --out, even an export made otherwise.")
@user_errors
def export(seq_dir: Path, fmt: str, out: Path, overwrite: bool, **given: str | None) -> None:
    """Export the sequence shards in SEQ_DIR (from `wwm-prep pack`) for other trainers.

    Every row is written as it is (input_ids, word_starts, doc_lengths; doc_sources too for MDS), read batch by
    batch. The export is written beside --out and moved into place when complete, with a record of the source
    manifest's sha256, the options, the counts and every file's sha256; the same command again does nothing.
    """
    from wwm_prep.export.run import run_export

    own = {o.key for o in formats()[fmt].options}
    if others := [f"--{k.replace('_', '-')}" for k, v in given.items() if v is not None and k not in own]:
        raise click.UsageError(f"{', '.join(others)} {'is not an option' if len(others) == 1 else 'are not options'} "
                               f"of --format {fmt}")
    options = {k: v for k, v in given.items() if k in own}
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
