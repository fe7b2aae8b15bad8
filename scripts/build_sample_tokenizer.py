#!/usr/bin/env python3
"""Rebuild the small default tokenizer, ``sample/tokenizer/wwm-prep-sample-unigram.model``.

It is a SentencePiece unigram model trained on the bundled sample corpus (``sample/corpus``), with
the conventions of the llm-jp v3 tokenizer (llm-jp-tokenizer-100k.ver3.0b1):

* ids 0 ``<unk>`` (UNKNOWN), 1 ``<s>``, 2 ``</s>``, 3 ``<MASK>``, 4 ``<PAD>``, 5 ``<CLS>``,
  6 ``<SEP>``, 7 ``<EOD>`` (all CONTROL), then the 256 byte pieces ``<0x00>``..``<0xFF>`` at ids 8-263;
* byte fallback on, normalizer ``identity`` (no NFKC), ``add_dummy_prefix`` on,
  ``remove_extra_whitespaces`` off, pieces may span spaces (``split_by_whitespace`` off,
  ``allow_whitespace_only_pieces`` on), digits split, pieces at most 16 characters.

It exists only so that wwm-prep runs without a download; real work should use the llm-jp v3
tokenizer (https://github.com/llm-jp/llm-jp-tokenizer/raw/main/models/ver3.0/llm-jp-tokenizer-100k.ver3.0b1.model).

Training input: every non-empty line of every document, subsets in sorted path order, documents in
file order. Newlines are never seen by the trainer, so a newline is encoded as the byte piece
``<0x0A>``, as in the real model. One thread and a fixed input order make the output
byte-identical from run to run (run with ``--check`` to verify against the file on disk).

Usage: python scripts/build_sample_tokenizer.py [--check]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Iterator

import sentencepiece as spm

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "sample" / "corpus"
OUTPUT = ROOT / "sample" / "tokenizer" / "wwm-prep-sample-unigram.model"

VOCAB_SIZE = 4000

SPECIAL_CONTROL = ["<MASK>", "<PAD>", "<CLS>", "<SEP>", "<EOD>"]  # ids 3..7, as in llm-jp v3

TRAINER_ARGS = dict(
    model_type="unigram",
    vocab_size=VOCAB_SIZE,
    hard_vocab_limit=True,
    character_coverage=0.9995,
    byte_fallback=True,
    normalization_rule_name="identity",
    remove_extra_whitespaces=False,
    add_dummy_prefix=True,
    split_by_whitespace=False,
    split_by_unicode_script=True,
    split_by_number=True,
    split_digits=True,
    allow_whitespace_only_pieces=True,
    max_sentencepiece_length=16,
    max_sentence_length=1 << 16,
    unk_id=0,
    bos_id=1,
    eos_id=2,
    pad_id=-1,  # <PAD> is the control symbol at id 4
    control_symbols=SPECIAL_CONTROL,
    input_sentence_size=0,  # use every sentence, no sampling
    shuffle_input_sentence=False,
    num_threads=1,
    minloglevel=2,
)


def corpus_files() -> list[Path]:
    files = sorted(CORPUS.rglob("*.jsonl.gz"))
    if not files:
        raise FileNotFoundError(f"no corpus files under {CORPUS}; run scripts/build_sample_corpus.py")
    return files


def sentences() -> Iterator[str]:
    for path in corpus_files():
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                text = json.loads(line)["text"]
                for sentence in text.split("\n"):
                    if sentence:
                        yield sentence


def train() -> bytes:
    spm.set_random_generator_seed(20240601)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=sentences(), model_writer=buf, **TRAINER_ARGS)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="verify the model on disk is up to date")
    args = ap.parse_args(argv)
    data = train()
    sp = spm.SentencePieceProcessor(model_proto=data)
    digest = hashlib.sha256(data).hexdigest()
    if args.check:
        same = OUTPUT.exists() and OUTPUT.read_bytes() == data
        print(f"{'up to date' if same else 'OUT OF DATE'}: {OUTPUT.relative_to(ROOT)}", file=sys.stderr)
        return 0 if same else 1
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_bytes(data)
    print(f"wrote {OUTPUT.relative_to(ROOT)}: {sp.get_piece_size()} pieces, {len(data)} bytes, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
