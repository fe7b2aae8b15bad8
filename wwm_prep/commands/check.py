"""`wwm-prep init-model`, `sanity` and `fill-mask`: does a model read the prepared data?"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from wwm_prep.commands.base import LOCATION, user_errors


@click.command("init-model")
@click.option("--config", "config_name", type=click.Choice(["tiny", "bert-alpha-500m"]), required=True,
              help="tiny: 2 layers of 64 (for tests); bert-alpha-500m: TohokuNLP BERT-alpha's architecture.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Checkpoint directory (config.json + model.safetensors, Hugging Face layout).")
@click.option("--vocab-size", type=int, help="Vocabulary size (default: the preset's, 99,584).")
@click.option("--tokenizer", type=click.Path(path_type=Path),
              help="SentencePiece .model or tokenizer.json (or its directory) the model is for: sizes the vocabulary "
                   "(padded to a multiple of 128) and "
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


@click.command()
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Checkpoint directory (Hugging Face layout, Llama tensor names).")
@click.option("--data", "data_dir", type=LOCATION, required=True,
              help="Sequence shards written by `wwm-prep pack` (a path or URL).")
@click.option("--batches", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True,
              help="Rows per batch; the first batches × batch-size rows of the data are used.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the collator's masking.")
@click.option("--tokenizer", type=click.Path(path_type=Path),
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


@click.command("fill-mask")
@click.argument("text")
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Checkpoint directory.")
@click.option("--tokenizer", type=click.Path(path_type=Path),
              help="SentencePiece .model or tokenizer.json, or its directory (default: the one the model declares, "
                   "if it is still there).")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the candidates as JSON.")
@user_errors
def fill_mask(text: str, model_dir: Path, tokenizer: Path | None, top_k: int, as_json: bool) -> None:
    """Print the top-k fillers of every mask in TEXT.

    `<MASK>` stands for one token; `<MASK>{word}` masks every token of word (whole-word masking) and
    prints the candidates of each of its positions, e.g. "東北<MASK>{大学}で研究する".
    """
    from wwm_prep.check.fill_mask import fill_mask as run_fill_mask
    from wwm_prep.check.fill_mask import format_fill_mask
    from wwm_prep.check.sanity import report_json

    result = run_fill_mask(model_dir, text, tokenizer=tokenizer, k=top_k)
    click.echo(report_json(result) if as_json else format_fill_mask(result))
