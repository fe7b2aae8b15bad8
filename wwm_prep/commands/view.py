"""`wwm-prep stats` and `inspect`: see what was prepared before training on it."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from wwm_prep.commands.base import LOCATION, user_errors


@click.command()
@click.argument("shards_dir", metavar="DIR", type=LOCATION)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for machines) instead of the tables.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw histograms to this PNG (needs matplotlib: pip install 'wwm-prep[plot]').")
@click.option("--tokenizer", type=click.Path(path_type=Path),
              help="The shards' tokenizer model, if it is no longer where the manifest says (checked by sha256); "
                   "sequence rows need it to count characters.")
@user_errors
def stats(shards_dir: Path, as_json: bool, plot: Path | None, tokenizer: Path | None) -> None:
    """Statistics of document shards (from `segment`) or sequence shards (from `pack`) in DIR.

    Counted from the shards themselves: documents, characters, words, tokens, word groups, tokens per group and
    characters per token, per subset, with distributions; for sequence shards also the packing (efficiency,
    pieces per row, cut documents). The manifest's totals are compared with these counts.
    """
    import json

    from wwm_prep.view.plot import plot_path, plot_stats, require_matplotlib
    from wwm_prep.view.report import format_stats
    from wwm_prep.view.stats import compute_stats, disagrees

    if plot is not None:
        require_matplotlib()  # fail before the long part
        plot = plot_path(plot)
    result = compute_stats(shards_dir, tokenizer=tokenizer)
    click.echo(json.dumps(result.summary, ensure_ascii=False, indent=2) if as_json else format_stats(result.summary))
    if plot is not None:
        plot_stats(result, plot)
        click.echo(f"plot → {plot}", err=True)
    if disagrees(result.summary):
        sys.exit(1)


@click.command("inspect")
@click.argument("shards_dir", metavar="DIR", type=LOCATION)
@click.option("--row", type=click.IntRange(min=0), default=0, show_default=True,
              help="Row to show, counted across the shards in file-name order.")
@click.option("--mask", is_flag=True, help="Also show what the collator would mask in this row.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="With --mask: the collator's seed (the row's index is its place in the stream, epoch 0).")
@click.option("--masking", type=click.Choice(["word", "ngram", "span"]), default="word", show_default=True,
              help="With --mask: what the collator masks: whole words (BERT), n-grams of 1-3 whole words (Megatron-LM) "
                   "or spans of whole words with geometric lengths (SpanBERT); spans are shown as [word|word].")
@click.option("--tokenizer", type=click.Path(path_type=Path),
              help="SentencePiece .model or tokenizer.json, or its directory (default: the one the manifest records; "
                   "checked by sha256).")
@click.option("--max-tokens", type=click.IntRange(min=0), default=1024, show_default=True,
              help="Show at most this many tokens of the row (0: all).")
@click.option("--color/--no-color", default=None, help="Colour the output (default: only in a terminal).")
@user_errors
def inspect_command(shards_dir: Path, row: int, mask: bool, seed: int, masking: str, tokenizer: Path | None,
                    max_tokens: int, color: bool | None) -> None:
    """Show one row of DIR as text, its whole-word groups separated by |.

    Sequence rows are shown piece by piece with their provenance. With --mask, the groups (or, with --masking
    ngram|span, the spans of groups) the collator would mask are in [brackets], with what each token became
    (<MASK>, a random token, or kept).
    """
    from wwm_prep.view.inspect import inspect_row

    text = inspect_row(shards_dir, row, tokenizer=tokenizer, mask=mask, seed=seed, max_tokens=max_tokens,
                       masking=masking)
    click.echo(text, color=color)
