"""What the segmentation benchmarks share: their corpus, dictionary and tokenizer options, and the texts."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from wwm_prep.pipeline.corpus import Document, InputFile, RecordReader, discover

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WWM_PREP_SHARED", REPO.parent / "shared"))


def corpus_parser(description: str) -> argparse.ArgumentParser:
    """--corpus (default: ../shared's ja-sample, else the bundled sample), --dict, --tokenizer, --repeats."""
    parser = argparse.ArgumentParser(description=description)
    default_corpus = SHARED / "corpora" / "ja-sample"
    default_tokenizer = SHARED / "tokenizers" / "llm-jp-v3" / "llm-jp-tokenizer-100k.ver3.0b1.model"
    parser.add_argument("--corpus", type=Path, default=default_corpus if default_corpus.exists() else REPO / "sample" / "corpus")
    parser.add_argument("--dict", default=None, help="dictionary (default: the tool's default)")
    parser.add_argument("--tokenizer", type=Path, default=default_tokenizer if default_tokenizer.exists() else None)
    parser.add_argument("--repeats", type=int, default=3)
    return parser


def corpus_texts(corpus: Path) -> tuple[list[InputFile], list[str]]:
    """The corpus's files and the texts of its documents that are not empty."""
    files = discover([str(corpus)])
    return files, [r.text for f in files for r in RecordReader(f.path) if isinstance(r, Document) and r.text.strip()]
