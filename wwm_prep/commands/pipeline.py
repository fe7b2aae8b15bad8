"""`wwm-prep segment`, `pack`, `prepare` and `demo`: the pipeline's commands.

Options become a `SegmentConfig`, a `PackConfig` and `RunOptions` here, once, each read by name from click's
values, and go down whole. Their defaults are the dataclasses' (`pipeline.config`, light to import).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from wwm_prep.commands import interrupts
from wwm_prep.commands.base import CACHE_OPTION, LOCATION, TOKENIZER_HELP, echo_rows, user_errors
from wwm_prep.core.lengths import LengthWeights
from wwm_prep.pipeline.config import (PackConfig, RunOptions, SegmentConfig, default, from_values,
                                      parse_subset_weights)
from wwm_prep.pipeline.strategies.base import every_option, owner, strategies

DICT_HELP = (
    "Dictionary: a registered name (see `wwm-prep dict list`), a MeCab text or binary dictionary directory, "
    "or a vibrato system.dic(.zst). Default: unidic-lite, the short-unit UniDic that is installed with wwm-prep "
    "(converted for vibrato on first use, then cached)."
)
DEMO_SEQ_LEN = 512  # the bundled sample is small: short rows still hold several documents
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1 << 10, "m": 1000**2, "mb": 1000**2, "mib": 1 << 20,
               "g": 1000**3, "gb": 1000**3, "gib": 1 << 30}


class ByteSize(click.ParamType):
    """A size in bytes: `65536`, `64MiB`, `1GB`."""

    name = "size"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        number = text.rstrip("kmgib")
        unit = text[len(number):]
        try:
            size = int(float(number) * _SIZE_UNITS[unit])
        except (ValueError, KeyError):
            self.fail(f"{value!r} is not a size (e.g. 65536, 64MiB, 1GB)", param, ctx)
        if size < 1:
            self.fail(f"{value!r} must be at least 1 byte", param, ctx)
        return size

    @staticmethod
    def text(size: int) -> str:
        """A size as the help shows it: `64MiB` for 64 << 20."""
        for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
            if size % (1 << shift) == 0:
                return f"{size >> shift}{unit}"
        return str(size)


# Summary rows: (label, key in the manifest's totals).
SEGMENT_ROWS = (("documents", "documents"), ("characters", "characters"), ("words", "words"), ("tokens", "tokens"),
                ("word groups", "groups"))
SEGMENT_MORE = (("empty documents", "empty"), ("rejected records", "rejects"))
PACK_ROWS = (("documents", "documents"), ("pieces", "pieces"), ("cut documents", "cut_documents"), ("cuts", "cuts"),
             ("  at a sentence end", "sentence_cuts"), ("split long groups", "group_splits"), ("rows", "rows"),
             ("tokens", "tokens"), ("pad tokens", "pad_tokens"))


def print_segment_summary(manifest: Any, out: Path) -> None:
    totals = manifest.totals
    per_group = f"{totals['tokens'] / max(totals['groups'], 1):.2f}"
    rows = [(label, totals[key]) for label, key in SEGMENT_ROWS] + [("tokens per group", per_group)]
    rows += [(label, totals[key]) for label, key in SEGMENT_MORE] + [("failed files", len(manifest.failed))]
    rows += [("files done", len({u["source"] for u in manifest.units.values()})), ("chunks done", len(manifest.units))]
    click.echo(f"segment → {out}")
    echo_rows(rows, 18, 14)
    if manifest.done_here is not None and len(manifest.done_here) < len(manifest.units):
        echo_own_share(manifest)
    echo_used(manifest.config)
    if totals["rejects"]:
        top = ", ".join(f"{reason} ({n:,})" for reason, n in reject_reasons(manifest)[:3])
        click.echo(f"  rejected records: {top}; each is kept with its reason in {out / 'rejects'}")
    for failure in manifest.failed:
        click.echo(f"  FAILED {failure['path']}: {failure['error']}", err=True)
    if len(manifest.missing) > len(manifest.failed):
        click.echo(f"  {len(manifest.missing) - len(manifest.failed)} input file(s) are left to other array slices or "
                   "to the runs that hold them; the run that completes the last one writes the complete manifest")


def echo_own_share(manifest: Any) -> None:
    """What this run did itself, where earlier or overlapping runs did the rest: the table counts the output."""
    own = [manifest.units[name] for name in sorted(manifest.done_here)]
    click.echo(f"  this run did {len(own)} of the {len(manifest.units)} chunks above: "
               f"{sum(u['documents'] for u in own):,} documents, {sum(u['tokens'] for u in own):,} tokens; "
               "the rest were done by earlier or overlapping runs")


def echo_used(config: Any) -> None:
    """The dictionary and the tokenizer the data was made with, each with a short sha256 to tell them apart."""
    dictionary, tokenizer = config.dictionary, config.tokenizer
    click.echo(f"  dictionary {dictionary.get('name', '?')} (sha256 {dictionary['sha256'][:12]}…)")
    click.echo(f"  tokenizer  {tokenizer.path or '?'} (sha256 {tokenizer.sha256[:12]}…)")


def warn_of_the_sample_tokenizer(inputs: tuple[str, ...], tokenizer: Any) -> None:
    """The bundled tokenizer is a toy for the bundled sample: on a real corpus it makes ids no trained model reads."""
    from wwm_prep.core.resources import resource

    sample = resource("sample", "corpus").resolve()
    if tokenizer is None and not all(Path(i).resolve().is_relative_to(sample) for i in inputs):
        click.echo("warning: no --tokenizer given, so the bundled sample tokenizer (a small toy) is used; for the "
                   "recipe, pass --tokenizer llm-jp-tokenizer-100k.ver3.0b1.model (see the README)", err=True)


def reject_reasons(manifest: Any) -> list[tuple[str, int]]:
    """The kinds of rejected records over all units, the most frequent first."""
    counts: dict[str, int] = {}
    for unit in manifest.units.values():
        for reason, n in unit.get("reject_reasons", {}).items():
            counts[reason] = counts.get(reason, 0) + n
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def no_documents(manifest: Any) -> str | None:
    """Why a complete segment run holds no documents to pack, where it holds none."""
    totals = manifest.totals
    if not manifest.complete or totals["documents"]:
        return None
    if totals["rejects"]:
        reason, _ = reject_reasons(manifest)[0] if reject_reasons(manifest) else ("see rejects/", 0)
        return (f"no documents: every one of the {totals['rejects']:,} records was rejected (most often: {reason}); "
                "llm-jp-corpus-v3 records are JSON objects with a \"text\" field; name another field or Parquet "
                "column with --text-column")
    return f"no documents: the input files hold none that is not empty ({totals['empty']:,} empty)"


def next_steps(*lines: str) -> None:
    click.echo("next:")
    for line in lines:
        click.echo(f"  {line}")


def print_pack_summary(manifest: Any, out: Path) -> None:
    if manifest is None:
        click.echo(f"pack → {out}: partitions are left to other array slices or to the runs that hold them; the run "
                   "that completes the last one writes the manifest")
        return
    totals, config = manifest.totals, manifest.config
    rows = [(label, totals[key]) for label, key in PACK_ROWS]
    rows += [("efficiency", f"{100 * totals['efficiency']:.2f} %"), ("partitions", config.partitions),
             ("shards", len(manifest.shards))]
    click.echo(f"pack → {out}  ({config.strategy}, {config.seq_len} tokens per row)")
    echo_rows(rows, 20, 12)
    echo_used(manifest.document_config)
    if not config.sentence_ends["used"]:
        click.echo("  long documents were cut at word-group edges only: the tokenizer model was not found "
                   "(give it with --tokenizer to prefer sentence ends)")


def with_options(options: list[Callable[[Any], Any]], command: Callable[..., Any]) -> Callable[..., Any]:
    """`command` with click's `options`, listed in the order `--help` shows them."""
    for option in reversed(options):
        command = option(command)
    return command


def pack_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of `pack`, shared by `prepare`: defaults are `PackConfig`'s, strategies and their options the
    registry's."""
    options = [
        click.option("--seq-len", type=int, required=True,
                     help="Tokens per row, e.g. 4096 or 8192 (at least 64)."),
        click.option("--strategy", type=click.Choice(list(strategies())), default=default(PackConfig, "strategy"),
                     show_default=True, help="; ".join(f"{s.name}: {s.help}" for s in strategies().values()) + "."),
        *[click.option(f"--{o.name}", o.key, type=int, default=o.default, show_default=True,
                       help=f"{owner(o.key).name}: {o.help}.") for o in every_option().values()],
        click.option("--seed", type=int, default=default(PackConfig, "seed"), show_default=True,
                     help="Seed of the interleaving of inputs, the subsampling and the shuffling of rows."),
        click.option("--subset-weights",
                     help="Repeat or subsample subsets, e.g. ja_wiki=2,kaken=0.5 (default 1 each)."),
        click.option("--length-weights",
                     help="Repeat or subsample documents by length in tokens, e.g. 0:0.5,4096:3: a document takes the "
                          "weight of the largest bound it reaches (1 below them all); times its subset's weight."),
        click.option("--shard-rows", type=int, default=default(PackConfig, "shard_rows"), show_default=True,
                     help="Rows per sequence shard; a shard is shuffled, and so held, in memory."),
        click.option("--partitions", type=int, default=default(PackConfig, "partitions"),
                     help="Packing partitions the document shards are dealt to, each packed on its own by one worker "
                          "(default: one per ~67 M tokens, at most one per document shard). The rows depend on it, "
                          "never on --workers."),
    ]
    return with_options(options, command)


def segment_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of `segment`, shared by `prepare`."""
    options = [
        click.option("--subsets", help="Comma-separated subsets to take from corpus roots, e.g. ja_wiki,kaken."),
        click.option("--dict", "dictionary", help=DICT_HELP),
        click.option("--tokenizer", type=LOCATION, help=TOKENIZER_HELP),
        CACHE_OPTION,
        click.option("--split-lines", is_flag=True,
                     help="Give vibrato one line at a time, as MeCab's and vibrato's command-line tools read text "
                          "(default: whole documents). Recorded in the manifest."),
        click.option("--vibrato-defaults", is_flag=True,
                     help="vibrato's own settings (ignore_space=False, max_grouping_len=0) instead of the "
                          "MeCab-identical ignore_space=True, max_grouping_len=24. Recorded in the manifest."),
        click.option("--chunk-size", type=ByteSize(), default=ByteSize.text(default(SegmentConfig, "chunk_size")),
                     show_default=True,
                     help="Bytes of text per unit of work, about: a larger input file is cut at line ends into "
                          "chunks, each its own unit and shard (a file no larger keeps one shard named for it)."),
        click.option("--text-column", default=default(SegmentConfig, "text_column"), show_default=True,
                     help="The Parquet column (or JSON field) that holds each document's text. Recorded in the "
                          "manifest."),
        click.option("--verify-inputs", is_flag=True,
                     help="Also record each input file's sha256 and, on a rerun, redo a unit whose sha256 differs "
                          "(default: its size and modification time are compared)."),
    ]
    return with_options(options, command)


def run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """How a run shares work with others (array slices, concurrent runs on one output): `segment`, `pack`, `prepare`."""
    options = [
        click.option("--workers", type=click.IntRange(min=1), default=default(RunOptions, "workers"),
                     help="Worker processes (default: the machine's cores); one unit (an input file, a packing "
                          "partition) at a time each."),
        click.option("--executor", type=click.Choice(["local", "ray"]), default=default(RunOptions, "executor"),
                     show_default=True,
                     help="Where units run: forked local processes, or on Ray, one process per node that loads what "
                          "the units share once and forks its workers (pip install 'wwm-prep[ray]')."),
        click.option("--ray-address", help="Ray cluster to join (e.g. 'auto' or HOST:6379); default: a local Ray."),
        click.option("--num-shards", type=click.IntRange(min=1), default=default(RunOptions, "num_shards"),
                     show_default=True,
                     help="Array jobs: split the units into this many slices..."),
        click.option("--shard-index", type=click.IntRange(min=0), default=default(RunOptions, "shard_index"),
                     show_default=True,
                     help="...and process slice number this (0-based)."),
        click.option("--claim-timeout", type=click.FloatRange(min=0, min_open=True),
                     default=default(RunOptions, "claim_timeout"), show_default=True,
                     help="Seconds after which a unit claimed by a silent run on another host is taken over (a dead "
                          "run on this host is taken over at once)."),
        click.option("--overwrite", is_flag=True, default=default(RunOptions, "overwrite"),
                     help="First remove all that earlier runs made in --out (shards, rejects, reports, manifest), "
                          "then start again; without it, --out made by another stage, from other inputs or with "
                          "another configuration is refused. Never empties a directory wwm-prep did not write."),
        click.option("--quiet", is_flag=True, help="No progress bar or per-unit lines; only the summary."),
    ]
    return with_options(options, command)


def segment_config(values: Mapping[str, Any], run: RunOptions) -> SegmentConfig:
    """The SegmentConfig of `segment_options`' values (read by name, nothing taken out), with the run's overwrite and
    claim timeout."""
    tokenizer = values["tokenizer"]
    return from_values(SegmentConfig, values, tokenizer=str(tokenizer) if tokenizer else None,
                       subsets=subset_names(values["subsets"]), cache=values["cache_dir"],
                       overwrite=run.overwrite, claim_timeout=run.claim_timeout)


def subset_names(text: str | None) -> tuple[str, ...] | None:
    """`--subsets ja_wiki, kaken,` as ("ja_wiki", "kaken"): spaces and empty names between commas mean nothing."""
    if text is None:
        return None
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise click.BadParameter(f"{text!r} names no subset (e.g. ja_wiki,kaken)", param_hint="--subsets")
    return names


def pack_config(values: Mapping[str, Any], tokenizer: Path | None = None) -> PackConfig:
    """The PackConfig of `pack_options`' values (read by name); checked before any long step."""
    return from_values(PackConfig, values, subset_weights=parse_subset_weights(values["subset_weights"]),
                       length_weights=LengthWeights.parse(values["length_weights"]),
                       strategy_options={key: values[key] for key in every_option()}, tokenizer=tokenizer)


def run_segment_command(inputs: tuple[str, ...], out: Path, config: SegmentConfig, run: RunOptions) -> Any:
    from wwm_prep.pipeline.segment import run_segment

    warn_of_the_sample_tokenizer(inputs, config.tokenizer)
    executor, part = run.executor_and_slice()
    return run_segment(inputs, out, config, executor=executor, part=part, quiet=run.quiet)


def inputs_and_out(out_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The INPUTS argument and the --out option of `segment` and `prepare`."""

    def add(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option("--out", "out", type=LOCATION, required=True,
                               help=out_help)(command)
        return click.argument("inputs", nargs=-1, required=True)(command)

    return add


@click.command()
@inputs_and_out("Output directory for document shards.")
@segment_options
@run_options
@user_errors(interrupted=interrupts.RESUME)
def segment(inputs: tuple[str, ...], out: Path, **values: Any) -> None:
    """Segment corpus files into document shards with whole-word groups.

    INPUTS are llm-jp-corpus-v3 roots (holding ja/<subset>/), directories, files or globs of
    .jsonl, .jsonl.gz, .jsonl.zst or .parquet, local or at URLs (s3://, hf://datasets/…). A rerun skips the
    files already done.
    """
    run = from_values(RunOptions, values)
    manifest = run_segment_command(inputs, out, segment_config(values, run), run)
    if manifest.complete and not manifest.failed and no_documents(manifest) is None:
        interrupts.completed()
    print_segment_summary(manifest, out)
    if (problem := no_documents(manifest)) is not None:
        click.echo(problem, err=True)
        sys.exit(1)
    if manifest.failed:
        sys.exit(1)
    if manifest.complete and not run.quiet:
        next_steps(f"wwm-prep stats {out}", f"wwm-prep pack {out} --out SEQUENCES --seq-len 8192")


@click.command()
@click.argument("docs_dir", type=LOCATION)
@click.option("--out", type=LOCATION, required=True,
              help="Output directory for sequence shards.")
@pack_options
@click.option("--tokenizer", type=LOCATION,
              help="The documents' tokenizer model, if it is no longer where segment found it (checked by sha256); "
                   "used to cut long documents at sentence ends.")
@click.option("--plan", is_flag=True,
              help="Print what the weights will give (tokens by subset and by document length) and pack nothing.")
@run_options
@user_errors(interrupted=interrupts.RESUME)
def pack(docs_dir: Path, out: Path, tokenizer: Path | None, plan: bool, **values: Any) -> None:
    """Pack document shards (from `segment`) into rows of exactly --seq-len tokens, sharded to Arrow.

    A rerun skips the partitions done and redoes those whose document shards changed."""
    if plan:
        from wwm_prep.pipeline.pack import plan_pack
        from wwm_prep.view.report import format_plan

        click.echo(format_plan(plan_pack(docs_dir, pack_config(values, tokenizer))))
        return
    run = from_values(RunOptions, values)
    packed = run_pack_command(docs_dir, out, pack_config(values, tokenizer), run)
    if packed is not None:
        interrupts.completed()
    print_pack_summary(packed, out)
    if packed is not None and not run.quiet:
        next_steps(*sequence_steps(out))


def sequence_steps(out: Any) -> tuple[str, ...]:
    return (f"wwm-prep stats {out} --plot stats.png", f"wwm-prep inspect {out} --row 0 --mask",
            f"python examples/train_tiny.py {out} --steps 20   # the collator in a DataLoader")


def run_pack_command(docs_dir: Path, out: Path, config: PackConfig, run: RunOptions) -> Any:
    from wwm_prep.pipeline.pack import run_pack

    executor, part = run.executor_and_slice()
    return run_pack(docs_dir, out, config, executor=executor, part=part, claim_timeout=run.claim_timeout,
                    overwrite=run.overwrite, quiet=run.quiet)


@click.command()
@inputs_and_out("Output directory: document shards go to OUT/documents, sequence shards to OUT/sequences.")
@segment_options
@pack_options
@run_options
@user_errors(interrupted=interrupts.RESUME)
def prepare(inputs: tuple[str, ...], out: Path, **values: Any) -> None:
    """Segment and pack in one step: corpus files → OUT/documents → OUT/sequences.

    INPUTS are as for `segment`. Segment units already done are skipped; nothing is packed if a file failed.
    """
    run = from_values(RunOptions, values)
    config = pack_config(values)  # a mistake should fail before the long step, not after
    manifest = run_segment_command(inputs, out / "documents", segment_config(values, run), run)
    print_segment_summary(manifest, out / "documents")
    if not manifest.complete:
        click.echo(f"not packing: {len(manifest.failed)} input file(s) failed, {len(manifest.missing)} not "
                   "done; fix them and rerun (completed files are skipped)", err=True)
        sys.exit(1)
    if (problem := no_documents(manifest)) is not None:
        click.echo(f"not packing: {problem}", err=True)
        sys.exit(1)
    packed = run_pack_command(out / "documents", out / "sequences", config, run)
    if packed is not None:
        interrupts.completed()
    print_pack_summary(packed, out / "sequences")
    if packed is not None and not run.quiet:
        next_steps(*sequence_steps(out / "sequences"))


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out/demo"), show_default=True)
@user_errors
def demo(out: Path) -> None:
    """Run the pipeline on the bundled sample corpus with the default dictionary and tokenizer."""
    from wwm_prep.core.resources import resource
    from wwm_prep.pipeline.pack import run_pack
    from wwm_prep.pipeline.segment import run_segment

    manifest = run_segment([str(resource("sample", "corpus"))], out / "documents", SegmentConfig(overwrite=True))
    print_segment_summary(manifest, out / "documents")
    if manifest.failed:
        sys.exit(1)
    packed = run_pack(out / "documents", out / "sequences", PackConfig(seq_len=DEMO_SEQ_LEN), overwrite=True)
    interrupts.completed()
    print_pack_summary(packed, out / "sequences")
    next_steps(*sequence_steps(out / "sequences"))
