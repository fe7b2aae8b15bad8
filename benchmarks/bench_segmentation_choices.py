"""What the two segmentation choices a recipe must state change: --split-lines and --vibrato-defaults.

Usage:
    python benchmarks/bench_segmentation_choices.py [--corpus DIR] [--dict NAME] [--tokenizer MODEL] [--repeats N]
        [--smoke]

Segments the same documents three ways (the default: whole documents with the MeCab-identical settings;
one line at a time; vibrato's own settings) and reports, against the default: the share of group edges that
move (a token that starts a group in one and not in the other, over the default's group starts), the share of
documents with any such change, and the throughput ratio. The token ids are the same in all three (SentencePiece
does not depend on the choice), so the comparison is position by position. Passes alternate, best of N.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus_args import SMOKE, corpus_parser, corpus_texts, parse_with_smoke  # noqa: E402
from wwm_prep.pipeline.segment import Segmenter  # noqa: E402
from wwm_prep.text.dictionary import load_dictionary  # noqa: E402
from wwm_prep.text.tokenizer import load_tokenizer  # noqa: E402

CHOICES = {"default": {}, "split_lines": {"split_lines": True}, "vibrato_defaults": {"vibrato_defaults": True}}


def main() -> None:
    args = parse_with_smoke(corpus_parser(__doc__.splitlines()[0]), SMOKE)
    corpus = args.corpus
    _, texts = corpus_texts(corpus)
    tokenizer = load_tokenizer(args.tokenizer)
    segmenters = {}
    for name, choice in CHOICES.items():
        dictionary = load_dictionary(args.dict, vibrato_defaults=choice.get("vibrato_defaults", False))
        segmenters[name] = Segmenter(dictionary, tokenizer, split_lines=choice.get("split_lines", False))
    print(f"corpus {corpus}: {len(texts)} documents, {sum(map(len, texts)):,} characters; dictionary "
          f"{segmenters['default'].dictionary.name}, tokenizer {tokenizer.path.name}")

    seconds = {name: [] for name in CHOICES}
    results = {}
    for _ in range(args.repeats):
        for name, segmenter in segmenters.items():
            started = time.perf_counter()
            results[name] = segmenter(texts)
            seconds[name].append(time.perf_counter() - started)
    base = results["default"]
    doc_of = np.repeat(np.arange(len(texts)), base.token_counts)
    figures = {}
    for name in ("split_lines", "vibrato_defaults"):
        other = results[name]
        assert np.array_equal(other.ids, base.ids)
        moved = base.word_starts != other.word_starts
        figures[name] = {
            "edges_changed_share": round(float(moved.sum() / base.word_starts.sum()), 6),
            "documents_changed_share": round(len(np.unique(doc_of[moved])) / len(texts), 6),
            "groups_ratio": round(float(other.word_starts.sum() / base.word_starts.sum()), 6),
            "throughput_ratio": round(min(seconds["default"]) / min(seconds[name]), 3),
        }
        f = figures[name]
        print(f"--{name.replace('_', '-')}: {100 * f['edges_changed_share']:.3f} % of group edges change, in "
              f"{100 * f['documents_changed_share']:.1f} % of documents; groups ×{f['groups_ratio']:.4f}; "
              f"throughput ×{f['throughput_ratio']:.3f} of the default's")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
