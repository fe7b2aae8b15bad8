"""`wwm-prep segment`, `pack`, `prepare` and `demo`: the pipeline's commands.

Options become a `SegmentConfig`, a `PackConfig` and an executor here, once, and go down whole.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from wwm_prep.commands import interrupts
from wwm_prep.commands.base import CACHE_OPTION, LOCATION, TOKENIZER_HELP, echo_rows, user_errors

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
                "llm-jp-corpus-v3 records are JSON objects with a \"text\" field")
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


def pack_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of `pack`, shared by `prepare`. Defaults are those of `wwm_prep.pipeline.pack` (kept equal by a test;
    importing it here would slow every command down)."""
    options = [
        click.option("--seq-len", type=int, required=True,
                     help="Tokens per row, e.g. 4096 or 8192 (at least 64)."),
        click.option("--strategy", type=click.Choice(["best-fit", "greedy"]), default="best-fit", show_default=True,
                     help="best-fit: best-fit decreasing over a window of pieces; greedy: stream order, least memory."),
        click.option("--window", type=int, default=4096, show_default=True,
                     help="best-fit: pieces weighed at once; bounds memory."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed of the interleaving of inputs, the subsampling and the shuffling of rows."),
        click.option("--subset-weights",
                     help="Repeat or subsample subsets, e.g. ja_wiki=2,kaken=0.5 (default 1 each)."),
        click.option("--length-weights",
                     help="Repeat or subsample documents by length in tokens, e.g. 0:0.5,4096:3: a document takes the "
                          "weight of the largest bound it reaches (1 below them all); times its subset's weight."),
        click.option("--shard-rows", type=int, default=2048, show_default=True,
                     help="Rows per sequence shard; a shard is shuffled, and so held, in memory."),
        click.option("--partitions", type=int, default=None,
                     help="Packing partitions the document shards are dealt to, each packed on its own by one worker "
                          "(default: one per ~67 M tokens, at most one per document shard). The rows depend on it, "
                          "never on --workers."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


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
        click.option("--chunk-size", type=ByteSize(), default="64MiB", show_default=True,
                     help="Bytes of text per unit of work, about: a larger input file is cut at line ends into "
                          "chunks, each its own unit and shard (a file no larger keeps one shard named for it)."),
        click.option("--verify-inputs", is_flag=True,
                     help="Also record each input file's sha256 and, on a rerun, redo a unit whose sha256 differs "
                          "(default: its size and modification time are compared)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """How a run shares work with others (array slices, concurrent runs on one output): `segment`, `pack`, `prepare`."""
    options = [
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Worker processes (default: the machine's cores); one unit (an input file, a packing "
                          "partition) at a time each."),
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="Where units run: forked local processes, or on Ray, one process per node that loads what "
                          "the units share once and forks its workers (pip install 'wwm-prep[ray]')."),
        click.option("--ray-address", help="Ray cluster to join (e.g. 'auto' or HOST:6379); default: a local Ray."),
        click.option("--num-shards", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Array jobs: split the units into this many slices..."),
        click.option("--shard-index", type=click.IntRange(min=0), default=0, show_default=True,
                     help="...and process slice number this (0-based)."),
        click.option("--claim-timeout", type=click.FloatRange(min=0, min_open=True), default=600, show_default=True,
                     help="Seconds after which a unit claimed by a silent run on another host is taken over (a dead "
                          "run on this host is taken over at once)."),
        click.option("--overwrite", is_flag=True,
                     help="First remove all that earlier runs made in --out (shards, rejects, reports, manifest), "
                          "then start again; without it, --out made by another stage, from other inputs or with "
                          "another configuration is refused. Never empties a directory wwm-prep did not write."),
        click.option("--quiet", is_flag=True, help="No progress bar or per-unit lines; only the summary."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def segment_config(options: dict[str, Any]) -> Any:
    """The SegmentConfig of `segment_options`' values (taken out of `options`)."""
    from wwm_prep.pipeline.segment import SegmentConfig

    subsets, tokenizer = options.pop("subsets"), options.pop("tokenizer")
    return SegmentConfig(dictionary=options.pop("dictionary"), tokenizer=str(tokenizer) if tokenizer else None,
                         subsets=subset_names(subsets), cache=options.pop("cache_dir"),
                         overwrite=options["overwrite"], split_lines=options.pop("split_lines"),
                         vibrato_defaults=options.pop("vibrato_defaults"), verify_inputs=options.pop("verify_inputs"),
                         claim_timeout=options["claim_timeout"], chunk_size=options.pop("chunk_size"))


def subset_names(text: str | None) -> tuple[str, ...] | None:
    """`--subsets ja_wiki, kaken,` as ("ja_wiki", "kaken"): spaces and empty names between commas mean nothing."""
    if text is None:
        return None
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise click.BadParameter(f"{text!r} names no subset (e.g. ja_wiki,kaken)", param_hint="--subsets")
    return names


def executor_and_slice(options: dict[str, Any]) -> tuple[Any, Any]:
    """The executor and the array-job slice that `run_options` ask for (taken out of `options`)."""
    from wwm_prep.pipeline.executor import LocalExecutor, RayExecutor, Slice, default_workers

    workers = options.pop("workers") or default_workers()
    kind, address = options.pop("executor"), options.pop("ray_address")
    executor = RayExecutor(workers, address) if kind == "ray" else LocalExecutor(workers)
    return executor, Slice(options.pop("num_shards"), options.pop("shard_index"))


def pack_config(options: dict[str, Any], tokenizer: Path | None = None) -> Any:
    """The PackConfig of `pack_options`' values (taken out of `options`); checked before any long step."""
    from wwm_prep.core.lengths import LengthWeights
    from wwm_prep.pipeline.pack import PackConfig, parse_subset_weights

    return PackConfig(seq_len=options.pop("seq_len"), strategy=options.pop("strategy"), window=options.pop("window"),
                      seed=options.pop("seed"), subset_weights=parse_subset_weights(options.pop("subset_weights")),
                      length_weights=LengthWeights.parse(options.pop("length_weights")),
                      shard_rows=options.pop("shard_rows"), tokenizer=tokenizer, partitions=options.pop("partitions"))


def run_segment_command(inputs: tuple[str, ...], out: Path, options: dict[str, Any]) -> Any:
    from wwm_prep.pipeline.segment import run_segment

    config = segment_config(options)
    warn_of_the_sample_tokenizer(inputs, config.tokenizer)
    executor, part = executor_and_slice(options)
    return run_segment(inputs, out, config, executor=executor, part=part, quiet=options["quiet"])


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
def segment(inputs: tuple[str, ...], out: Path, **options: Any) -> None:
    """Segment corpus files into document shards with whole-word groups.

    INPUTS are llm-jp-corpus-v3 roots (holding ja/<subset>/), directories, files or globs of
    .jsonl, .jsonl.gz or .jsonl.zst. A rerun skips the files already done.
    """
    manifest = run_segment_command(inputs, out, options)
    if manifest.complete and not manifest.failed and no_documents(manifest) is None:
        interrupts.completed()
    print_segment_summary(manifest, out)
    if (problem := no_documents(manifest)) is not None:
        click.echo(problem, err=True)
        sys.exit(1)
    if manifest.failed:
        sys.exit(1)
    if manifest.complete and not options["quiet"]:
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
def pack(docs_dir: Path, out: Path, tokenizer: Path | None, plan: bool, **options: Any) -> None:
    """Pack document shards (from `segment`) into rows of exactly --seq-len tokens, sharded to Arrow.

    A rerun skips the partitions done and redoes those whose document shards changed."""
    if plan:
        from wwm_prep.pipeline.pack import plan_pack
        from wwm_prep.view.report import format_plan

        click.echo(format_plan(plan_pack(docs_dir, pack_config(options, tokenizer))))
        return
    packed = run_pack_command(docs_dir, out, pack_config(options, tokenizer), options)
    if packed is not None:
        interrupts.completed()
    print_pack_summary(packed, out)
    if packed is not None and not options["quiet"]:
        next_steps(*sequence_steps(out))


def sequence_steps(out: Any) -> tuple[str, ...]:
    return (f"wwm-prep stats {out} --plot stats.png", f"wwm-prep inspect {out} --row 0 --mask",
            f"python examples/train_tiny.py {out} --steps 20   # the collator in a DataLoader")


def run_pack_command(docs_dir: Path, out: Path, config: Any, options: dict[str, Any]) -> Any:
    from wwm_prep.pipeline.pack import run_pack

    executor, part = executor_and_slice(options)
    return run_pack(docs_dir, out, config, executor=executor, part=part, claim_timeout=options.pop("claim_timeout"),
                    overwrite=options.pop("overwrite"), quiet=options["quiet"])


@click.command()
@inputs_and_out("Output directory: document shards go to OUT/documents, sequence shards to OUT/sequences.")
@segment_options
@pack_options
@run_options
@user_errors(interrupted=interrupts.RESUME)
def prepare(inputs: tuple[str, ...], out: Path, **options: Any) -> None:
    """Segment and pack in one step: corpus files → OUT/documents → OUT/sequences.

    INPUTS are as for `segment`. Segment units already done are skipped; nothing is packed if a file failed.
    """
    config = pack_config(options)  # a mistake should fail before the long step, not after
    manifest = run_segment_command(inputs, out / "documents", {**options})
    print_segment_summary(manifest, out / "documents")
    if not manifest.complete:
        click.echo(f"not packing: {len(manifest.failed)} input file(s) failed, {len(manifest.missing)} not "
                   "done; fix them and rerun (completed files are skipped)", err=True)
        sys.exit(1)
    if (problem := no_documents(manifest)) is not None:
        click.echo(f"not packing: {problem}", err=True)
        sys.exit(1)
    packed = run_pack_command(out / "documents", out / "sequences", config, options)
    if packed is not None:
        interrupts.completed()
    print_pack_summary(packed, out / "sequences")
    if packed is not None and not options["quiet"]:
        next_steps(*sequence_steps(out / "sequences"))


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out/demo"), show_default=True)
@user_errors
def demo(out: Path) -> None:
    """Run the pipeline on the bundled sample corpus with the default dictionary and tokenizer."""
    from wwm_prep.core.resources import resource
    from wwm_prep.pipeline.pack import PackConfig, run_pack
    from wwm_prep.pipeline.segment import SegmentConfig, run_segment

    manifest = run_segment([str(resource("sample", "corpus"))], out / "documents", SegmentConfig(overwrite=True))
    print_segment_summary(manifest, out / "documents")
    if manifest.failed:
        sys.exit(1)
    packed = run_pack(out / "documents", out / "sequences", PackConfig(seq_len=DEMO_SEQ_LEN), overwrite=True)
    interrupts.completed()
    print_pack_summary(packed, out / "sequences")
    next_steps(*sequence_steps(out / "sequences"))
