"""The `wwm-prep` command line: one group of small commands, one module of them per concern (`commands/`)."""

from __future__ import annotations

import click

from wwm_prep import __version__
from wwm_prep.commands.check import fill_mask, init_model, sanity
from wwm_prep.commands.dicts import dict_group
from wwm_prep.commands.export import export
from wwm_prep.commands.pipeline import demo, pack, prepare, segment
from wwm_prep.commands.view import inspect_command, stats


@click.group()
@click.version_option(__version__, prog_name="wwm-prep")
def main() -> None:
    """Prepare whole-word-masked MLM corpora: segment → pack → train with the collator."""


for command in (segment, pack, prepare, demo, dict_group, init_model, sanity, fill_mask, stats, inspect_command,
                export):
    main.add_command(command)

