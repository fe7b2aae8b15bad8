"""The group contract on a fixed adversarial corpus, against a reference that shares nothing with wwm-prep.

Generates documents that mix Japanese scripts, ASCII, full- and half-width forms, every Unicode whitespace
character, U+2581, combining marks, astral and control characters (tests/pipeline/contract.py), segments
them with `Segmenter(dictionary, tokenizer)`, and compares every document's word_starts with the
reference built from MeCab's words (fugashi, on the same dictionary's MeCab binary), SentencePiece's proto
offsets and str.isspace() per character. Not part of the test suite, but for its --smoke run.

    python benchmarks/bench_contract.py [--documents N] [--seed S] [--dict unidic-lite|ipadic] [--tokenizer MODEL]
        [--smoke]

The last line is JSON: {"documents": N, "characters": C, "differing_documents": D}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WWM_PREP_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.corpus_args import SAMPLE_TOKENIZER, parse_with_smoke  # noqa: E402
from tests.pipeline.contract import (  # noqa: E402
    ASCII_WHITESPACE,
    adversarial_text,
    char_at_byte,
    mecab_words,
    reference_word_starts,
    vibrato_words,
)
from wwm_prep.pipeline.segment import BATCH_CHARS, Segmenter  # noqa: E402
from wwm_prep.text.dictionary import load_dictionary  # noqa: E402
from wwm_prep.text.tokenizer import load_tokenizer  # noqa: E402

MEAN_CHARS = 1867  # 3,000 documents of 1..3,733 characters: about 5.6 M characters


def dicdir(name: str) -> str:
    """The MeCab binary directory the dictionary `name` is converted from (for MeCab itself)."""
    if name == "unidic-lite":
        import unidic_lite

        return unidic_lite.DICDIR
    if name == "ipadic":
        import ipadic

        return ipadic.DICDIR
    raise SystemExit(f"--dict {name}: only unidic-lite and ipadic (MeCab binaries from PyPI) are supported")


def classify(text: str, sp, ours: list[int], reference: list[int], words_mecab, words_vibrato) -> str:
    """Why a document differs: the words (MeCab and vibrato segment it differently), the old per-piece
    whitespace rule (split by whether the whitespace is spelled in byte pieces), or something else."""
    reasons = []
    by_vibrato = reference_word_starts(text, sp, words_vibrato)
    if by_vibrato != reference and words_mecab != words_vibrato:
        reasons.append("words: MeCab and vibrato segment differently")
    if ours != by_vibrato:
        if ours == reference_word_starts(text, sp, words_vibrato, per_piece=True):
            pieces = sp.encode(text, return_type="proto").pieces
            at = char_at_byte(text)
            differing = [k for k in range(len(ours)) if ours[k] != by_vibrato[k]]
            near = [j for k in differing for j in range(max(0, k - 4), min(len(pieces), k + 5))]
            chars = [(j, text[at[pieces[j].begin]]) for j in near if at[pieces[j].begin] < len(text)]
            if any(sp.is_byte(pieces[j].id) and c.isspace() and c not in ASCII_WHITESPACE for j, c in chars):
                reasons.append("per-piece whitespace rule: whitespace spelled in byte pieces")
            elif any(c == "\u2581" for _, c in chars):
                reasons.append("per-piece whitespace rule: U+2581 (not whitespace) counted as whitespace")
            else:
                reasons.append("per-piece whitespace rule: other whitespace")
        else:
            reasons.append("other: differs from the reference on vibrato's own words")
    return "; ".join(reasons) or "other"


def diff(text: str, sp, ours: list[int], reference: list[int], shown: int = 3) -> list[str]:
    pieces = sp.encode(text, return_type="proto").pieces
    at = char_at_byte(text)
    out = []  # each token as piece=characters it covers; * marks the first that differs
    for k in [k for k in range(len(ours)) if ours[k] != reference[k]][:shown]:
        window = range(max(0, k - 3), min(len(pieces), k + 4))
        tokens = " ".join(f"{'*' if j == k else ''}{pieces[j].piece!r}"
                          f"={text[at[pieces[j].begin]:at[pieces[j].end]]!r}" for j in window)
        out.append(f"    token {k} (character {at[pieces[k].begin]}): {tokens}\n"
                   f"      reference {[reference[j] for j in window]} ours {[ours[j] for j in window]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_tokenizer = SHARED / "tokenizers" / "llm-jp-v3" / "llm-jp-tokenizer-100k.ver3.0b1.model"
    parser.add_argument("--documents", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--dict", default="unidic-lite", choices=("unidic-lite", "ipadic"))
    parser.add_argument("--tokenizer", type=Path, default=default_tokenizer if default_tokenizer.exists()
                        else SAMPLE_TOKENIZER)
    parser.add_argument("--show", type=int, default=5, help="differing documents to show a diff of")
    args = parse_with_smoke(parser, {"documents": 20, "show": 1, "dict": "ipadic", "tokenizer": SAMPLE_TOKENIZER})
    if not args.tokenizer.is_file():
        raise SystemExit(f"tokenizer not found: {args.tokenizer} (give one with --tokenizer)")

    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    texts = [adversarial_text(rng, int(n)) for n in rng.integers(1, 2 * MEAN_CHARS, size=args.documents)]
    characters = sum(map(len, texts))
    print(f"{len(texts)} documents, {characters} characters (seed {args.seed}), "
          f"generated in {time.perf_counter() - started:.1f} s")

    segmenter = Segmenter(load_dictionary(args.dict), load_tokenizer(args.tokenizer))
    sp, mecab_dir = segmenter.tokenizer.sp, dicdir(args.dict)
    print(f"dictionary {segmenter.dictionary.name} ({segmenter.dictionary.format}), MeCab on {mecab_dir}, "
          f"tokenizer {args.tokenizer.name}")

    started = time.perf_counter()
    ours: list[list[int]] = []
    exact = 0
    batch: list[str] = []
    size = 0
    for i, text in enumerate(texts):  # batches of about a million characters, as `segment` makes them
        batch.append(text)
        size += len(text)
        if size >= BATCH_CHARS or i == len(texts) - 1:
            seg = segmenter(batch)
            exact += seg.exact_path
            bounds = np.concatenate([[0], np.cumsum(seg.token_counts)])
            ours += [seg.word_starts[bounds[j]:bounds[j + 1]].tolist() for j in range(len(batch))]
            batch, size = [], 0
    print(f"segmented in {time.perf_counter() - started:.1f} s ({exact} documents on the exact path)")

    started = time.perf_counter()
    differing, classes, shown = 0, Counter(), 0
    for i, text in enumerate(texts):
        words = mecab_words(text, mecab_dir)
        reference = reference_word_starts(text, sp, words)
        if ours[i] == reference:
            continue
        differing += 1
        why = classify(text, sp, ours[i], reference, words, vibrato_words(text, segmenter))
        classes[why] += 1
        if shown < args.show:
            shown += 1
            print(f"document {i} ({len(text)} characters) differs: {why}")
            print("\n".join(diff(text, sp, ours[i], reference)))
    print(f"compared in {time.perf_counter() - started:.1f} s")
    print(f"documents {len(texts)}, characters {characters}, differing documents {differing}")
    for why, count in classes.most_common():
        print(f"  {count:6d}  {why}")
    print(json.dumps({"documents": len(texts), "characters": characters, "differing_documents": differing}))


if __name__ == "__main__":
    main()
