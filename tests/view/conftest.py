"""What the view tests share: a tiny corpus whose counts are known by construction, segmented and packed once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sentencepiece as spm

from tests.conftest import REPO, run
from wwm_prep.text.tokenizer import DEFAULT_TOKENIZER

SAMPLE_MODEL = REPO.joinpath(*DEFAULT_TOKENIZER)
SEQ_LEN = 64  # rows hold 62 document tokens: the long documents below are cut

# Documents designed for the tests: subset → texts (one per line; "" is an empty document, counted apart).
CORPUS: dict[str, list[str]] = {
    "news": [
        "東北大学の研究者が新しい方法を発表した。",
        "今日は晴れです。\n明日は雨が降るでしょう。",
        "",
        "東京の天気は晴れ。" * 20,
    ],
    "wiki": [
        "龘と😀は珍しい文字です。 a|b　全角の空白。",
        "日本語の文章を単語に分けて、語の境目を調べる。",
        "研究者は大学で言語を研究している。\n" * 12,
    ],
}


@pytest.fixture(scope="session")
def sp() -> spm.SentencePieceProcessor:
    """The bundled model opened by SentencePiece itself, to count tokens independently of wwm-prep."""
    return spm.SentencePieceProcessor(model_file=str(SAMPLE_MODEL))


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The corpus segmented with tiny-ja and the bundled tokenizer, then packed into 64-token rows."""
    root = tmp_path_factory.mktemp("stats")
    for subset, texts in CORPUS.items():
        path = root / "corpus" / "ja" / subset / "part_0.jsonl"
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    docs, seqs = root / "documents", root / "sequences"
    assert run("segment", str(root / "corpus"), "--dict", "tiny-ja", "--out", str(docs))[0] == 0
    assert run("pack", str(docs), "--out", str(seqs), "--seq-len", str(SEQ_LEN))[0] == 0
    return {"root": root, "documents": docs, "sequences": seqs}
