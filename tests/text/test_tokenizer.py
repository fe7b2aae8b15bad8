"""The one way to open a tokenizer and to check it against a record, and the tables alignment reads."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from hypothesis import given
from hypothesis import strategies as st

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.files import sha256_file
from wwm_prep.core.resources import resource
from wwm_prep.text.tokenizer import DEFAULT_TOKENIZER, load_tokenizer, locate_tokenizer, open_tokenizer

SAMPLE = resource(*DEFAULT_TOKENIZER)
SAMPLE_TOKENIZER = load_tokenizer(SAMPLE)


@pytest.fixture(scope="module")
def nfkc_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real SentencePiece model that normalizes with NFKC, trained here on a few lines."""
    lines = ["東北大学の研究者が言語モデルを学習する。", "ＡＢＣ１２３とABC123は別の文字です。", "ｶﾀｶﾅとカタカナ。"] * 20
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, vocab_size=320,
                                   normalization_rule_name="nmt_nfkc", character_coverage=1.0, byte_fallback=True,
                                   hard_vocab_limit=False, minloglevel=2)
    path = tmp_path_factory.mktemp("nfkc") / "nfkc.model"
    path.write_bytes(model.getvalue())
    return path


def test_a_model_that_rewrites_text_is_refused_for_alignment_but_opens_for_reading_ids(nfkc_model: Path) -> None:
    with pytest.raises(WwmPrepError, match="rewrites text as it tokenizes"):
        load_tokenizer(nfkc_model)
    opened = open_tokenizer(nfkc_model)
    assert opened.sha256 == sha256_file(nfkc_model)
    assert opened.special_ids == {"unk": 0, "bos": 1, "eos": 2}  # trained without <MASK>, <PAD>, <CLS>, <SEP>


def test_missing_files_and_non_models_are_named(tmp_path: Path) -> None:
    with pytest.raises(WwmPrepError, match="tokenizer not found: .*nowhere.model"):
        open_tokenizer(tmp_path / "nowhere.model")
    (tmp_path / "text.model").write_text("not a model")
    with pytest.raises(WwmPrepError, match="text.model: not a SentencePiece model"):
        open_tokenizer(tmp_path / "text.model")


@given(st.text(st.sampled_from("あいうえおかきくけこアイウエオ東北大学研究者abcXYZ0123 。、\n"), min_size=1, max_size=80))
def test_piece_lengths_add_up_to_the_text_s_bytes(text: str) -> None:
    """What alignment relies on: each piece stands for a fixed number of bytes, plus the one dummy-prefix space."""
    ids = np.asarray(SAMPLE_TOKENIZER.sp.encode(text), dtype=np.int64)
    assert SAMPLE_TOKENIZER.tables.piece_bytes[ids].sum() == len(text.encode("utf-8")) + 1
    continuing = SAMPLE_TOKENIZER.tables.continuation[ids]
    assert not continuing[0] and continuing.sum() == sum(len(c.encode("utf-8")) - 1 for c in text
                                                        if SAMPLE_TOKENIZER.sp.piece_to_id(c) == 0)


def test_locate_prefers_the_override_and_checks_it_against_the_record(tmp_path: Path) -> None:
    sha = sha256_file(SAMPLE)
    path, line = locate_tokenizer(str(SAMPLE), sha, None, made_with="these shards were made with")
    assert path == SAMPLE and "sha256 matches the record" in line
    moved = tmp_path / "moved.model"
    shutil.copy(SAMPLE, moved)
    assert locate_tokenizer(str(tmp_path / "gone.model"), sha, moved, made_with="x")[0] == moved
    with pytest.raises(WwmPrepError, match="is not the tokenizer these shards were made with"):
        locate_tokenizer(str(SAMPLE), "0" * 64, None, made_with="these shards were made with")
    with pytest.raises(WwmPrepError, match="tokenizer not found"):
        locate_tokenizer(str(SAMPLE), sha, tmp_path / "typo.model", made_with="x")


def test_locate_without_the_model_says_why_or_fails_when_it_is_required(tmp_path: Path) -> None:
    path, why = locate_tokenizer(str(tmp_path / "gone.model"), "0" * 64, None, made_with="x", required=False)
    assert path is None and "gone.model" in why
    assert locate_tokenizer(None, None, None, made_with="x", required=False) == (None, "no tokenizer is recorded")
    with pytest.raises(WwmPrepError, match=f"give the model whose sha256 is {'0' * 64} with --tokenizer"):
        locate_tokenizer(str(tmp_path / "gone.model"), "0" * 64, None, made_with="x")
    with pytest.raises(WwmPrepError, match="give the tokenizer with --tokenizer"):
        locate_tokenizer(str(tmp_path / "gone.model"), None, None, made_with="x")
