#!/usr/bin/env python3
"""Per-batch time of WholeWordMaskCollator, in each masking mode, against transformers'
DataCollatorForLanguageModeling.

    python benchmarks/bench_collator.py [--repeats 15] [--wwm-repeats 3] [--smoke]

Batches: 8 x 8,192 and 32 x 512 tokens of real packed rows: the ja-sample corpus in ../shared (llm-jp v3.0b1
tokenizer) or, where ../shared is absent, the bundled sample corpus and tokenizer, run through `wwm-prep
segment` (the bundled tiny-ja dictionary, for speed: the word groups only need to be realistic) and
`wwm-prep pack` into a temporary directory, then read back with `datasets` in the NumPy format.
Every collator gets the same rows, as `datasets` hands them over (a list of dicts of arrays); the extra
columns transformers needs (special_tokens_mask, and offset_mapping for its whole-word path, built so that
its words are exactly our word groups) are prepared beforehand and not timed.
The collator runs in its three masking modes ("word", the default; "ngram"; "span"), each timed as a ratio to
"word" and against transformers' plain token masking, with the same output type.
Methods are timed round-robin, so a busy machine slows all of them alike; the table shows medians.
Needs torch and transformers for the comparison (NumPy-only figures are printed without them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.corpus_args import SAMPLE_CORPUS, SMOKE, parse_with_smoke  # noqa: E402
from wwm_prep import WholeWordMaskCollator  # noqa: E402
from wwm_prep.train.spans import MODES  # noqa: E402  ("word" first: the other modes are timed against it)

SHARED = Path(os.environ.get("WWM_PREP_SHARED", REPO.parent / "shared"))
N_SPECIAL = 8
IGNORE_INDEX = -100


def find_data(sample_only: bool = False) -> tuple[Path, Path, str] | None:
    """(corpus root, tokenizer model, description), or None; `sample_only`: the bundled sample even where
    ../shared is present."""
    model = SHARED / "tokenizers" / "llm-jp-v3" / "llm-jp-tokenizer-100k.ver3.0b1.model"
    corpus = SHARED / "corpora" / "ja-sample"
    if model.exists() and corpus.is_dir() and not sample_only:
        return corpus, model, "../shared (llm-jp v3.0b1, ja-sample)"
    models = sorted((REPO / "sample" / "tokenizer").glob("*.model"))
    if models and SAMPLE_CORPUS.is_dir():
        return SAMPLE_CORPUS, models[0], "bundled sample"
    return None


def packed_rows(corpus: Path, model: Path, shapes: list[tuple[int, int]], work: Path) -> dict[tuple[int, int], list[dict]]:
    """The first rows of each shape from `segment` + `pack` output, as `datasets` (NumPy format) gives them."""
    import datasets

    from wwm_prep.pipeline.pack import PackConfig, run_pack
    from wwm_prep.pipeline.segment import SegmentConfig, run_segment

    datasets.disable_progress_bars()
    run_segment([str(corpus)], work / "documents", SegmentConfig(dictionary="tiny-ja", tokenizer=str(model)), quiet=True)
    batches = {}
    for n_rows, seq_len in shapes:
        out = work / f"sequences-{seq_len}"
        run_pack(work / "documents", out, PackConfig(seq_len=seq_len), quiet=True)
        ds = datasets.load_dataset("arrow", data_files=str(out / "*.arrow"), split="train",
                                   cache_dir=str(work / "hf-cache")).with_format("numpy")
        batches[(n_rows, seq_len)] = [ds[i] for i in range(min(n_rows, len(ds)))]
    return batches


def partly_masked_groups(rows: list[dict], labels: np.ndarray) -> tuple[int, int]:
    """(groups partly masked, groups masked at all) of a batch: our groups, judged on another collator's labels."""
    partly = chosen = 0
    for row, lab in zip(rows, labels):
        ids, ws = row["input_ids"], row["word_starts"].astype(bool)
        maskable = ids >= N_SPECIAL
        if row.get("doc_lengths") is not None:
            maskable &= np.arange(ids.shape[0]) < int(np.sum(row["doc_lengths"]))
        prev = np.r_[False, maskable[:-1]]
        starts = maskable & (ws | ~prev)
        group = np.cumsum(starts)[maskable]
        hit = (lab[: ids.shape[0]] != IGNORE_INDEX)[maskable]
        size = np.bincount(group)
        taken = np.bincount(group, weights=hit)
        chosen += int((taken > 0).sum())
        partly += int(((taken > 0) & (taken < size)).sum())
    return partly, chosen


def hf_tokenizer(model: Path):
    """A fast tokenizer with the llm-jp vocabulary and special tokens (all the collators need of it)."""
    import sentencepiece as spm
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    sp = spm.SentencePieceProcessor(model_file=str(model))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="<unk>")),
        unk_token="<unk>",
        mask_token="<MASK>",
        pad_token="<PAD>",
        cls_token="<CLS>",
        sep_token="<SEP>",
    )
    assert tok.mask_token_id == 3 and tok.pad_token_id == 4 and len(tok) == sp.get_piece_size()
    return tok


def hf_features(rows: list[dict], offsets: bool) -> list[dict]:
    out = []
    for r in rows:
        ids = r["input_ids"]
        f = {"input_ids": ids, "special_tokens_mask": (ids < N_SPECIAL).astype(np.int64)}
        if offsets:
            # one character per token, a one-character gap before every word group: transformers' words
            # (runs of tokens without a gap in their offsets) are then exactly our word groups
            starts = ids.shape[0] and np.cumsum(r["word_starts"].astype(np.int64))
            begin = np.arange(ids.shape[0]) + starts
            f["offset_mapping"] = np.stack([begin, begin + 1], axis=1)
        out.append(f)
    return out


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15, help="timed runs per method (median reported)")
    ap.add_argument("--wwm-repeats", type=int, default=3, help="timed runs of transformers' whole-word path")
    args = parse_with_smoke(ap, {**SMOKE, "wwm_repeats": 1})

    data = find_data(sample_only=args.smoke)
    if data is None:
        print("skipped: neither ../shared (set WWM_PREP_SHARED) nor a bundled sample tokenizer and corpus found")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-collator-") as work:  # the shards the rows are read from
        return run(args, *data, Path(work))


def run(args: argparse.Namespace, corpus: Path, model: Path, source: str, work: Path) -> int:
    shapes = [(8, 8192), (32, 512)]
    t = time.perf_counter()
    batches = packed_rows(corpus, model, shapes, work)
    print(f"segment (tiny-ja) + pack of {source}: {time.perf_counter() - t:.1f} s")
    for (n_rows, seq_len), rows in batches.items():
        if len(rows) < n_rows:
            print(f"note: only {len(rows)} rows of {seq_len} from {source}")

    try:
        import torch
        import transformers
        from transformers import DataCollatorForLanguageModeling

        torch.set_num_threads(1)
        tok = hf_tokenizer(model)
        have_hf = True
    except ImportError as e:
        print(f"transformers/torch not available ({e}); timing wwm-prep only")
        have_hf = False

    outputs = ("np", "pt") if have_hf else ("np",)
    ours = {(mode, rt): WholeWordMaskCollator(model, seed=0, masking=mode, return_tensors=rt)
            for mode in MODES for rt in outputs}

    results: dict[tuple, dict[str, list[float]]] = {}
    checks: dict[tuple, tuple[int, int]] = {}
    for shape, rows in batches.items():
        methods: dict[str, tuple[Callable[[], object], int]] = {
            ours_name(mode, rt): (lambda rows=rows, c=c: c(rows), args.repeats) for (mode, rt), c in ours.items()
        }
        if have_hf:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                hf_tok_pt = DataCollatorForLanguageModeling(tok, mlm_probability=0.15, seed=0, return_tensors="pt")
                hf_tok_np = DataCollatorForLanguageModeling(tok, mlm_probability=0.15, seed=0, return_tensors="np")
                hf_wwm_pt = DataCollatorForLanguageModeling(
                    tok, mlm_probability=0.15, whole_word_mask=True, seed=0, return_tensors="pt"
                )
            plain = hf_features(rows, offsets=False)
            with_offsets = hf_features(rows, offsets=True)
            methods.update(
                {
                    "transformers token masking (pt)": (lambda f=plain: hf_tok_pt(f), args.repeats),
                    "transformers token masking (np)": (lambda f=plain: hf_tok_np(f), args.repeats),
                    "transformers whole_word_mask=True (pt)": (lambda f=with_offsets: hf_wwm_pt(f), args.wwm_repeats),
                }
            )
        results[shape] = round_robin(methods)
        if have_hf:  # transformers' whole-word words are our groups: none of them is partly masked
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                labels = np.asarray(hf_wwm_pt(with_offsets)["labels"])
            checks[shape] = partly_masked_groups(rows, labels)

    print_tables(results, checks, source, outputs)
    return 0


def round_robin(methods: dict[str, tuple[Callable[[], object], int]]) -> dict[str, list[float]]:
    """Each method's times: one warm-up call each, then rounds of one call per method (while it has runs left)."""
    times: dict[str, list[float]] = {name: [] for name in methods}
    for fn, _ in methods.values():  # warm-up (and the workers' first-call costs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()
    for r in range(max(n for _, n in methods.values())):
        for name, (fn, n) in methods.items():
            if r < n:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    times[name].append(timed(fn))
    return times


def print_tables(results: dict[tuple, dict[str, list[float]]], checks: dict[tuple, tuple[int, int]], source: str,
                 outputs: tuple[str, ...]) -> None:
    """The median table, the masking modes' ratios and, with transformers, the ratios to it."""
    have_hf = "pt" in outputs
    if have_hf:
        import torch
        import transformers
    print(f"\nper-batch time, median (ms) -- data: {source}; numpy {np.__version__}", end="")
    if have_hf:
        print(f", torch {torch.__version__}, transformers {transformers.__version__}, torch threads 1", end="")
    print("\n")
    names = list(next(iter(results.values())))
    header = "| method | " + " | ".join(f"{b} x {s:,}" for b, s in results) + " |"
    print(header)
    print("|" + " --- |" * (len(results) + 1))
    med = {shape: {n: statistics.median(t) * 1e3 for n, t in times.items()} for shape, times in results.items()}
    for name in names:
        runs = [len(results[s][name]) for s in results]
        print(f"| {name} | " + " | ".join(f"{med[s][name]:.2f}" for s in results) + f" |  ({'/'.join(map(str, runs))} runs)")
    ratio_table("masking modes (mode time / word time, same output type; target at most 1.5x)", results, med, [
        (f"{mode} / word ({rt})", ours_name(mode, rt), ours_name("word", rt), 2)
        for mode in MODES[1:] for rt in outputs
    ])
    if have_hf:
        theirs = [(f"token masking ({rt}) / {mode} ({rt})", f"transformers token masking ({rt})",
                   ours_name(mode, rt), 1) for rt in ("pt", "np") for mode in MODES]
        theirs.append(("whole_word_mask (pt) / word (pt)", "transformers whole_word_mask=True (pt)",
                       ours_name("word", "pt"), 1))
        ratio_table("ratios (transformers time / wwm-prep time, same output type)", results, med, theirs)
        print("\ntransformers whole_word_mask=True, our groups partly masked / masked: "
              + ", ".join(f"{b} x {s:,}: {p} / {c:,}" for (b, s), (p, c) in checks.items()))


def ours_name(mode: str, return_tensors: str) -> str:
    return f"wwm-prep WholeWordMaskCollator {mode} ({return_tensors})"


def ratio_table(title: str, results: dict, med: dict, ratios: list[tuple[str, str, str, int]]) -> None:
    """Rows of (label, numerator method, denominator method, decimals): one ratio of medians per batch shape."""
    print(f"\n{title}:\n")
    print("| ratio | " + " | ".join(f"{b} x {s:,}" for b, s in results) + " |")
    print("|" + " --- |" * (len(results) + 1))
    for label, top, bottom, decimals in ratios:
        print(f"| {label} | " + " | ".join(f"{med[s][top] / med[s][bottom]:.{decimals}f}x" for s in results) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
