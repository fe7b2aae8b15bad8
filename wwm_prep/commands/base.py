"""What every command shares: one-line errors instead of tracebacks, summary tables, common options."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from wwm_prep.commands import interrupts
from wwm_prep.core.errors import WwmPrepError


class Location(click.ParamType):
    """A local path, or any fsspec URL (s3://, gs://, hf://, …): a `Path` for the one, a `UPath` for the other."""

    name = "PATH|URL"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from wwm_prep.core.storage import location

        return location(value)


LOCATION = Location()
TOKENIZER_HELP = ("SentencePiece .model (e.g. llm-jp-tokenizer-100k.ver3.0b1.model) or Hugging Face tokenizer.json "
                  "(or a directory holding one, with its tokenizer_config.json), a path or URL. Default: the bundled "
                  "sample model.")


class UserError(click.ClickException):
    exit_code = 2  # as click's usage errors; 1 means some input files failed


def user_errors(command: Callable[..., Any] | None = None, *, interrupted: str = interrupts.STOPPED) -> Any:
    """Turn a WwmPrepError into a one-line message and exit status 2, and Ctrl-C into `interrupted` and exit status
    130, never a traceback. `@user_errors`, or `@user_errors(interrupted=interrupts.RESUME)` for a resumable run."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                with interrupts.at_work():
                    return command(*args, **kwargs)
            except WwmPrepError as exc:
                raise UserError(str(exc)) from exc
            except KeyboardInterrupt:
                interrupts.stop_unwinding(interrupted)
                click.echo(interrupted, err=True)
                sys.exit(interrupts.EXIT_STATUS)

        return wrapper

    return decorate(command) if command is not None else decorate


def echo_rows(rows: list[tuple[str, Any]], name_width: int, value_width: int) -> None:
    """A summary table: names left, values right, whole numbers with thousands separators."""
    for name, value in rows:
        shown = f"{value:,}" if isinstance(value, int) else str(value)
        click.echo(f"  {name:<{name_width}} {shown:>{value_width}}")


CACHE_OPTION = click.option(
    "--cache-dir", type=click.Path(file_okay=False, path_type=Path),
    help="Cache for dictionaries (default: $WWM_PREP_CACHE, else $XDG_CACHE_HOME/wwm-prep or ~/.cache/wwm-prep).",
)
