"""The `wwm-prep` command line: small commands, one per stage, that read and write directories."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from wwm_prep import __version__
from wwm_prep.errors import WwmPrepError

DICT_HELP = (
    "Dictionary: a registered name (see `wwm-prep dict list`), a MeCab text or binary dictionary directory, "
    "or a vibrato system.dic(.zst). Default: the bundled one."
)
TOKENIZER_HELP = "SentencePiece .model (e.g. llm-jp-tokenizer-100k.ver3.0b1.model). Default: the bundled sample model."


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a WwmPrepError into a one-line message and exit status 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except WwmPrepError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


@click.group()
@click.version_option(__version__, prog_name="wwm-prep")
def main() -> None:
    """Prepare whole-word-masked MLM corpora: segment → pack → train with the collator."""


def print_segment_summary(manifest: dict[str, Any], out: Path) -> None:
    totals = manifest["totals"]
    rows = [
        ("documents", totals["documents"]),
        ("characters", totals["characters"]),
        ("words", totals["words"]),
        ("tokens", totals["tokens"]),
        ("word groups", totals["groups"]),
        ("tokens per group", f"{totals['tokens'] / max(totals['groups'], 1):.2f}"),
        ("empty documents", totals["empty"]),
        ("rejected records", totals["rejects"]),
        ("failed files", len(manifest["failed"])),
    ]
    click.echo(f"segment → {out}")
    for name, value in rows:
        click.echo(f"  {name:<18} {value:>14,}" if isinstance(value, int) else f"  {name:<18} {value:>14}")
    if totals["rejects"]:
        click.echo(f"  rejected records are kept with their reasons in {out / 'rejects'}")
    for failure in manifest["failed"]:
        click.echo(f"  FAILED {failure['path']}: {failure['error']}", err=True)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output directory for document shards.")
@click.option("--subsets", help="Comma-separated subsets to take from corpus roots, e.g. ja_wiki,kaken.")
@click.option("--dict", "dictionary", help=DICT_HELP)
@click.option("--tokenizer", type=click.Path(dir_okay=False, path_type=Path), help=TOKENIZER_HELP)
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Cache for dictionaries (default: $WWM_PREP_CACHE or ~/.cache/wwm-prep).")
@click.option("--overwrite", is_flag=True, help="Redo all units, even if the output was made with another configuration.")
@user_errors
def segment(inputs: tuple[str, ...], out: Path, subsets: str | None, dictionary: str | None,
            tokenizer: Path | None, cache_dir: Path | None, overwrite: bool) -> None:
    """Segment corpus files into document shards with whole-word groups.

    INPUTS are llm-jp-corpus-v3 roots (holding ja/<subset>/), directories, files or globs of
    .jsonl, .jsonl.gz or .jsonl.zst.
    """
    from wwm_prep.segment import run_segment

    manifest = run_segment(
        inputs, out, dictionary=dictionary, tokenizer=str(tokenizer) if tokenizer else None,
        subsets=subsets.split(",") if subsets else None, overwrite=overwrite, cache=cache_dir,
    )
    print_segment_summary(manifest, out)
    if manifest["failed"]:
        sys.exit(1)


@main.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out/demo"), show_default=True)
@user_errors
def demo(out: Path) -> None:
    """Run the pipeline on the bundled sample corpus with the default dictionary and tokenizer."""
    from wwm_prep.resources import resource
    from wwm_prep.segment import run_segment

    manifest = run_segment([str(resource("sample", "corpus"))], out / "documents", overwrite=True)
    print_segment_summary(manifest, out / "documents")
    if manifest["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
