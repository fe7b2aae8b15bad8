"""The `wwm-prep` command line: small commands, one per stage, that read and write directories."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from wwm_prep import __version__
from wwm_prep.core.errors import WwmPrepError

DICT_HELP = (
    "Dictionary: a registered name (see `wwm-prep dict list`), a MeCab text or binary dictionary directory, "
    "or a vibrato system.dic(.zst). Default: the bundled one."
)
DEMO_SEQ_LEN = 512  # the bundled sample is small: short rows still hold several documents
TOKENIZER_HELP = "SentencePiece .model (e.g. llm-jp-tokenizer-100k.ver3.0b1.model). Default: the bundled sample model."


class UserError(click.ClickException):
    exit_code = 2  # as click's usage errors; 1 means some input files failed


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a WwmPrepError into a one-line message and exit status 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except WwmPrepError as exc:
            raise UserError(str(exc)) from exc
        except KeyboardInterrupt:
            click.echo("interrupted: finished units are kept; rerun the same command to resume", err=True)
            sys.exit(130)

    return wrapper


@click.group()
@click.version_option(__version__, prog_name="wwm-prep")
def main() -> None:
    """Prepare whole-word-masked MLM corpora: segment → pack → train with the collator."""


def echo_rows(rows: list[tuple[str, Any]], name_width: int, value_width: int) -> None:
    """A summary table: names left, values right, whole numbers with thousands separators."""
    for name, value in rows:
        shown = f"{value:,}" if isinstance(value, int) else str(value)
        click.echo(f"  {name:<{name_width}} {shown:>{value_width}}")


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
    echo_rows(rows, 18, 14)
    if totals["rejects"]:
        click.echo(f"  rejected records are kept with their reasons in {out / 'rejects'}")
    for failure in manifest["failed"]:
        click.echo(f"  FAILED {failure['path']}: {failure['error']}", err=True)


CACHE_OPTION = click.option(
    "--cache-dir", type=click.Path(file_okay=False, path_type=Path),
    help="Cache for dictionaries (default: $WWM_PREP_CACHE, else $XDG_CACHE_HOME/wwm-prep or ~/.cache/wwm-prep).",
)


@main.group("dict")
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
    from wwm_prep.text import registry as dict_registry

    try:
        path = dict_registry.fetch(name, cache_dir, url=url, progress=sys.stderr.isatty(),
                                   allow_unverified=allow_unverified)
    except dict_registry.DictionaryError as exc:
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

    known = {e.name: e for e in dict_registry.entries()}
    started = time.perf_counter()
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


def print_pack_summary(manifest: dict[str, Any], out: Path) -> None:
    totals, config = manifest["totals"], manifest["config"]
    rows = [
        ("documents", totals["documents"]),
        ("pieces", totals["pieces"]),
        ("cut documents", totals["cut_documents"]),
        ("cuts", totals["cuts"]),
        ("  at a sentence end", totals["sentence_cuts"]),
        ("split long groups", totals["group_splits"]),
        ("rows", totals["rows"]),
        ("tokens", totals["tokens"]),
        ("pad tokens", totals["pad_tokens"]),
        ("efficiency", f"{100 * totals['efficiency']:.2f} %"),
        ("shards", len(manifest["shards"])),
    ]
    click.echo(f"pack → {out}  ({config['strategy']}, {config['seq_len']} tokens per row)")
    echo_rows(rows, 20, 12)
    if not config["sentence_ends"]["used"]:
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
        click.option("--shard-rows", type=int, default=2048, show_default=True,
                     help="Rows per sequence shard; a shard is shuffled, and so held, in memory."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def segment_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of `segment`, shared by `prepare`."""
    options = [
        click.option("--subsets", help="Comma-separated subsets to take from corpus roots, e.g. ja_wiki,kaken."),
        click.option("--dict", "dictionary", help=DICT_HELP),
        click.option("--tokenizer", type=click.Path(dir_okay=False, path_type=Path), help=TOKENIZER_HELP),
        CACHE_OPTION,
        click.option("--overwrite", is_flag=True,
                     help="Redo all units, even if the output was made with another configuration."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Worker processes (default: the machine's cores); one input file per unit."),
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="Where units run: forked local processes, or Ray actors (pip install 'wwm-prep[ray]')."),
        click.option("--ray-address", help="Ray cluster to join (e.g. 'auto' or HOST:6379); default: a local Ray."),
        click.option("--num-shards", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Array jobs: split the input files into this many slices..."),
        click.option("--shard-index", type=click.IntRange(min=0), default=0, show_default=True,
                     help="...and process slice number this (0-based)."),
        click.option("--quiet", is_flag=True, help="No progress bar or per-file lines; only the summary."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def run_segment_command(inputs: tuple[str, ...], out: Path, subsets: str | None, dictionary: str | None,
                        tokenizer: Path | None, cache_dir: Path | None, overwrite: bool, workers: int | None,
                        executor: str, ray_address: str | None, num_shards: int, shard_index: int,
                        quiet: bool) -> dict[str, Any]:
    from wwm_prep.pipeline.executor import default_workers
    from wwm_prep.pipeline.segment import run_segment

    manifest = run_segment(
        inputs, out, dictionary=dictionary, tokenizer=str(tokenizer) if tokenizer else None,
        subsets=subsets.split(",") if subsets else None, overwrite=overwrite, cache=cache_dir,
        workers=workers or default_workers(), executor=executor, ray_address=ray_address,
        num_shards=num_shards, shard_index=shard_index, quiet=quiet,
    )
    print_segment_summary(manifest, out)
    return manifest


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output directory for document shards.")
@segment_options
@user_errors
def segment(inputs: tuple[str, ...], out: Path, **options: Any) -> None:
    """Segment corpus files into document shards with whole-word groups.

    INPUTS are llm-jp-corpus-v3 roots (holding ja/<subset>/), directories, files or globs of
    .jsonl, .jsonl.gz or .jsonl.zst. A rerun skips the files already done.
    """
    manifest = run_segment_command(inputs, out, **options)
    if manifest["failed"]:
        sys.exit(1)


@main.command()
@click.argument("docs_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output directory for sequence shards.")
@pack_options
@click.option("--tokenizer", type=click.Path(dir_okay=False, path_type=Path),
              help="The documents' tokenizer model, if it is no longer where segment found it (checked by sha256); "
                   "used to cut long documents at sentence ends.")
@click.option("--quiet", is_flag=True, help="No progress bar or per-shard lines; only the summary.")
@user_errors
def pack(docs_dir: Path, out: Path, seq_len: int, strategy: str, window: int, seed: int,
         subset_weights: str | None, shard_rows: int, tokenizer: Path | None, quiet: bool) -> None:
    """Pack document shards (from `segment`) into rows of exactly --seq-len tokens, sharded to Arrow."""
    from wwm_prep.pipeline.pack import parse_subset_weights, run_pack

    manifest = run_pack(
        docs_dir, out, seq_len=seq_len, strategy=strategy, window=window, seed=seed,
        subset_weights=parse_subset_weights(subset_weights), shard_rows=shard_rows, tokenizer=tokenizer, quiet=quiet,
    )
    print_pack_summary(manifest, out)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output directory: document shards go to OUT/documents, sequence shards to OUT/sequences.")
@segment_options
@pack_options
@user_errors
def prepare(inputs: tuple[str, ...], out: Path, seq_len: int, strategy: str, window: int, seed: int,
            subset_weights: str | None, shard_rows: int, **options: Any) -> None:
    """Segment and pack in one step: corpus files → OUT/documents → OUT/sequences.

    INPUTS are as for `segment`. Segment units already done are skipped; nothing is packed if a file failed.
    """
    from wwm_prep.pipeline.pack import parse_subset_weights, run_pack

    weights = parse_subset_weights(subset_weights)  # a typo should fail before the long step, not after
    manifest = run_segment_command(inputs, out / "documents", **options)
    if not manifest["complete"]:
        click.echo(f"not packing: {len(manifest['failed'])} input file(s) failed, {len(manifest['missing'])} not "
                   "done; fix them and rerun (completed files are skipped)", err=True)
        sys.exit(1)
    packed = run_pack(out / "documents", out / "sequences", seq_len=seq_len, strategy=strategy, window=window,
                      seed=seed, subset_weights=weights, shard_rows=shard_rows, quiet=options["quiet"])
    print_pack_summary(packed, out / "sequences")


@main.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out/demo"), show_default=True)
@user_errors
def demo(out: Path) -> None:
    """Run the pipeline on the bundled sample corpus with the default dictionary and tokenizer."""
    from wwm_prep.pipeline.pack import run_pack
    from wwm_prep.core.resources import resource
    from wwm_prep.pipeline.segment import run_segment

    manifest = run_segment([str(resource("sample", "corpus"))], out / "documents", overwrite=True)
    print_segment_summary(manifest, out / "documents")
    if manifest["failed"]:
        sys.exit(1)
    packed = run_pack(out / "documents", out / "sequences", seq_len=DEMO_SEQ_LEN)
    print_pack_summary(packed, out / "sequences")


@main.command("init-model")
@click.option("--config", "config_name", type=click.Choice(["tiny", "bert-alpha-500m"]), required=True,
              help="tiny: 2 layers of 64 (for tests); bert-alpha-500m: TohokuNLP BERT-alpha's architecture.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Checkpoint directory (config.json + model.safetensors, Hugging Face layout).")
@click.option("--vocab-size", type=int, help="Vocabulary size (default: the preset's, 99,584).")
@click.option("--tokenizer", type=click.Path(dir_okay=False, path_type=Path),
              help="SentencePiece .model the model is for: sizes the vocabulary (padded to a multiple of 128) and "
                   "is declared in config.json (its sha256 and path), so `sanity` and `fill-mask` can check it.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16"]), default="float32", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace a checkpoint already in --out.")
@user_errors
def init_model(config_name: str, out: Path, vocab_size: int | None, tokenizer: Path | None, dtype: str, seed: int,
               overwrite: bool) -> None:
    """Write a randomly initialised checkpoint (nothing to download), e.g. to try `sanity` and `fill-mask`."""
    from wwm_prep.check.sanity import init_model as run_init_model

    made = run_init_model(config_name, out, vocab_size=vocab_size, tokenizer=tokenizer, dtype=dtype, seed=seed,
                          overwrite=overwrite)
    cfg = made["config"]
    click.echo(f"init-model → {out}  ({config_name}, {dtype}, seed {seed})")
    click.echo(f"  parameters   {made['parameters']:>14,}")
    click.echo(f"  vocab_size   {cfg.vocab_size:>14,}")
    click.echo(f"  on disk      {made['bytes'] / 1e6:>11,.1f} MB")
    if made["tokenizer"]:
        click.echo(f"  tokenizer    {made['tokenizer']['path']} ({made['tokenizer']['pieces']:,} pieces, "
                   f"sha256 {made['tokenizer']['sha256'][:16]}…)")
    else:
        click.echo("  tokenizer    none declared (give --tokenizer to declare one)")


@main.command()
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Checkpoint directory (Hugging Face layout, Llama tensor names).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Sequence shards written by `wwm-prep pack`.")
@click.option("--batches", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True,
              help="Rows per batch; the first batches × batch-size rows of the data are used.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the collator's masking.")
@click.option("--tokenizer", type=click.Path(dir_okay=False, path_type=Path),
              help="The tokenizer the model was trained with, for a checkpoint that declares none.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@user_errors
def sanity(model_dir: Path, data_dir: Path, batches: int, batch_size: int, seed: int, tokenizer: Path | None,
           as_json: bool) -> None:
    """Check that a model can read packed data: mask real rows and report masked-LM loss.

    Masks rows with the WholeWordMaskCollator (the data's special ids) and reports loss, accuracy and
    perplexity overall and per subset, and tokens per second. Before any forward it checks the data's
    tokenizer against the model's, the ids against its vocab_size and the row length against its
    max_position_embeddings.

    Exit status 1 on a red flag: any of those mismatches, or a loss within 10 % of ln V (or above it),
    which is what a model that cannot read the data scores — including an untrained (randomly
    initialised) one, so an untrained model fails this check on purpose. Exit status 2 on a usage error.
    """
    from wwm_prep.check.sanity import format_report, report_json, run_sanity

    report = run_sanity(model_dir, data_dir, batches=batches, batch_size=batch_size, seed=seed, tokenizer=tokenizer,
                        log=lambda message: click.echo(message, err=True))
    click.echo(report_json(report) if as_json else format_report(report))
    if report["red_flags"]:
        sys.exit(1)


@main.command("fill-mask")
@click.argument("text")
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Checkpoint directory.")
@click.option("--tokenizer", type=click.Path(dir_okay=False, path_type=Path),
              help="SentencePiece .model (default: the one the model declares, if its file is still there).")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the candidates as JSON.")
@user_errors
def fill_mask(text: str, model_dir: Path, tokenizer: Path | None, top_k: int, as_json: bool) -> None:
    """Print the top-k fillers of every mask in TEXT.

    `<MASK>` stands for one token; `<MASK>{word}` masks every token of word (whole-word masking) and
    prints the candidates of each of its positions, e.g. "東北<MASK>{大学}で研究する".
    """
    from wwm_prep.check.sanity import fill_mask as run_fill_mask
    from wwm_prep.check.sanity import format_fill_mask, report_json

    result = run_fill_mask(model_dir, text, tokenizer=tokenizer, k=top_k)
    click.echo(report_json(result) if as_json else format_fill_mask(result))


@main.command()
@click.argument("shards_dir", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for machines) instead of the tables.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw histograms to this PNG (needs matplotlib: pip install 'wwm-prep[plot]').")
@click.option("--tokenizer", type=click.Path(dir_okay=False, path_type=Path),
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

    from wwm_prep.view.stats import compute_stats, format_stats, plot_stats, require_matplotlib

    if plot is not None:
        require_matplotlib()  # fail before the long part
    result = compute_stats(shards_dir, tokenizer=tokenizer)
    click.echo(json.dumps(result.summary, ensure_ascii=False, indent=2) if as_json else format_stats(result.summary))
    if plot is not None:
        plot_stats(result, plot)
        click.echo(f"plot → {plot}", err=True)


@main.command("inspect")
@click.argument("shards_dir", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--row", type=click.IntRange(min=0), default=0, show_default=True,
              help="Row to show, counted across the shards in file-name order.")
@click.option("--mask", is_flag=True, help="Also show what the collator would mask in this row.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="With --mask: the collator's seed (the row's index is its place in the stream, epoch 0).")
@click.option("--tokenizer", type=click.Path(dir_okay=False, path_type=Path),
              help="SentencePiece .model (default: the one the manifest records; checked by sha256).")
@click.option("--max-tokens", type=click.IntRange(min=0), default=1024, show_default=True,
              help="Show at most this many tokens of the row (0: all).")
@click.option("--color/--no-color", default=None, help="Colour the output (default: only in a terminal).")
@user_errors
def inspect_command(shards_dir: Path, row: int, mask: bool, seed: int, tokenizer: Path | None, max_tokens: int,
                    color: bool | None) -> None:
    """Show one row of DIR as text, its whole-word groups separated by |.

    Sequence rows are shown piece by piece with their provenance. With --mask, the groups the collator would
    mask are in [brackets], with what each token became (<MASK>, a random token, or kept).
    """
    from wwm_prep.view.inspect import inspect_row

    text = inspect_row(shards_dir, row, tokenizer=tokenizer, mask=mask, seed=seed, max_tokens=max_tokens)
    click.echo(text, color=color)


if __name__ == "__main__":
    main()
