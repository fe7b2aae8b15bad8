"""`wwm-prep dict list|fetch|info`: the dictionaries vibrato segments with."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from wwm_prep.commands.base import CACHE_OPTION, user_errors
from wwm_prep.core.errors import WwmPrepError


@click.group("dict")
def dict_group() -> None:
    """List, fetch and describe vibrato dictionaries."""


@dict_group.command("list")
@CACHE_OPTION
@user_errors
def dict_list(cache_dir: Path | None) -> None:
    """Registered dictionaries and whether each is ready here."""
    from wwm_prep.text import registry as dict_registry
    from wwm_prep.text.dictionary import BUNDLED, DEFAULT_DICTIONARY

    for name in BUNDLED:
        mark = " (default)" if name == DEFAULT_DICTIONARY else ""
        click.echo(f"{name}{mark}\n  Bundled with wwm-prep.\n  ready")
    for e in dict_registry.entries():
        mark = " (default)" if e.name == DEFAULT_DICTIONARY else ""
        click.echo(f"{e.name}{mark}\n  {e.description}\n  {dict_registry.status(e, cache_dir)}")


@dict_group.command("fetch")
@click.argument("name")
@click.option("--url", help="Download from this address instead of the registry's (a mirror).")
@click.option("--allow-unverified", is_flag=True, help="Accept a dictionary whose checksums the registry lacks.")
@CACHE_OPTION
@user_errors
def dict_fetch(name: str, url: str | None, allow_unverified: bool, cache_dir: Path | None) -> None:
    """Download NAME, verify its checksums and install it in the cache."""
    from wwm_prep.text.fetch import fetch
    from wwm_prep.text.registry import DictionaryError

    try:
        path = fetch(name, cache_dir, url=url, progress=sys.stderr.isatty(), allow_unverified=allow_unverified)
    except DictionaryError as exc:
        raise WwmPrepError(str(exc)) from exc
    click.echo(f"{name}: ready at {path}")


@dict_group.command("info")
@click.argument("name_or_path")
@CACHE_OPTION
@user_errors
def dict_info(name_or_path: str, cache_dir: Path | None) -> None:
    """Load a dictionary and report its format, size, load time and memory."""
    import resource as rusage
    import time

    from wwm_prep.text import registry as dict_registry
    from wwm_prep.text.dictionary import load_dictionary

    from wwm_prep.pipeline.progress import Elapsed

    known = {e.name: e for e in dict_registry.entries()}
    started = time.perf_counter()
    with Elapsed(f"loading {name_or_path} to measure its load time and memory"):
        dic = load_dictionary(name_or_path, cache_dir)
    seconds = time.perf_counter() - started
    rows = [("name", dic.name), ("format", dic.format), ("source", str(dic.source)),
            ("size on disk", f"{sum(p.stat().st_size for p in dic.files) / 1e6:,.1f} MB"), ("sha256", dic.sha256)]
    if dic.name in known:
        rows += [("word unit", known[dic.name].word_unit), ("licence", known[dic.name].license)]
    rows += [("load time", f"{seconds:.2f} s"),
             ("peak memory", f"{rusage.getrusage(rusage.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB (whole process)")]
    for key, value in rows:
        click.echo(f"{key:<13} {value}")
