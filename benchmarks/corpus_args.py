"""What the benchmarks share: their corpus, dictionary and tokenizer options, the texts, and `--smoke`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wwm_prep.pipeline.corpus import Document, InputFile, RecordReader, discover

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WWM_PREP_SHARED", REPO.parent / "shared"))
SAMPLE_CORPUS = REPO / "sample" / "corpus"
SAMPLE_TOKENIZER = REPO / "sample" / "tokenizer" / "wwm-prep-sample-unigram.model"

# What --smoke makes the defaults of the segmentation benchmarks: the bundled sample corpus (172 kB), the small
# bundled dictionary and tokenizer (None: the tool's bundled one), one pass. Each benchmark adds its own.
SMOKE = {"corpus": SAMPLE_CORPUS, "dict": "tiny-ja", "tokenizer": None, "repeats": 1}


def corpus_parser(description: str) -> argparse.ArgumentParser:
    """--corpus (default: ../shared's ja-sample, else the bundled sample), --dict, --tokenizer, --repeats."""
    parser = argparse.ArgumentParser(description=description)
    default_corpus = SHARED / "corpora" / "ja-sample"
    default_tokenizer = SHARED / "tokenizers" / "llm-jp-v3" / "llm-jp-tokenizer-100k.ver3.0b1.model"
    parser.add_argument("--corpus", type=Path, default=default_corpus if default_corpus.exists() else SAMPLE_CORPUS)
    parser.add_argument("--dict", default=None, help="dictionary (default: the tool's default)")
    parser.add_argument("--tokenizer", type=Path, default=default_tokenizer if default_tokenizer.exists() else None)
    parser.add_argument("--repeats", type=int, default=3)
    return parser


def parse_with_smoke(parser: argparse.ArgumentParser, smoke: dict[str, Any],
                     argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The arguments, with `--smoke` added: it makes `smoke`'s values the defaults (options given still win), so
    that the test suite can run the whole benchmark in seconds to see that it runs to its end. Its figures mean
    nothing."""
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny input and one pass, to check that the benchmark runs to its end (no figures)")
    args = parser.parse_args(argv)
    if args.smoke:
        parser.set_defaults(**smoke)
        args = parser.parse_args(argv)
    return args


def corpus_texts(corpus: Path) -> tuple[list[InputFile], list[str]]:
    """The corpus's files and the texts of its documents that are not empty."""
    files = discover([str(corpus)])
    return files, [r.text for f in files for r in RecordReader(f.path) if isinstance(r, Document) and r.text.strip()]
