"""`fill-mask` end to end on a tiny model that declares the bundled tokenizer, and the `<MASK>` syntax."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.check.conftest import SAMPLE_MODEL, invoke, ok, other_tokenizer
from wwm_prep.check import fill_mask as F
from wwm_prep.core.errors import WwmPrepError
from wwm_prep.text.tokenizer import open_tokenizer


def test_fill_mask_prints_k_candidates_per_masked_position(work):
    word_tokens = len(open_tokenizer(SAMPLE_MODEL).encode_continuing("研究者"))
    assert word_tokens == 2  # 研究 + 者: a whole word of two tokens
    text = "東北大学の<MASK>{研究者}が<MASK>する"
    result = ok("fill-mask", "--model", work / "tiny", "--top-k", 3, "--json", text)
    masks = json.loads(result.stdout)["masks"]
    assert len(masks) == word_tokens + 1
    assert all(len(m["candidates"]) == 3 for m in masks)
    assert all(0 <= c["probability"] <= 1 for m in masks for c in m["candidates"])
    out = ok("fill-mask", "--model", work / "tiny", "--top-k", 4, text).stdout
    candidate_lines = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(candidate_lines) == 4 * (word_tokens + 1)
    assert "研究者, token 2 of 2" in out and out.startswith("input: <CLS>")


def test_fill_mask_needs_a_tokenizer_it_can_trust(work, tmp_path):
    ok("init-model", "--config", "tiny", "--vocab-size", 4096, "--out", tmp_path / "undeclared")
    result = invoke("fill-mask", "--model", tmp_path / "undeclared", "東京<MASK>")
    assert result.exit_code == 2 and "give --tokenizer" in result.output
    ok("fill-mask", "--model", tmp_path / "undeclared", "--tokenizer", SAMPLE_MODEL, "--top-k", 2, "東京<MASK>")
    other = other_tokenizer(tmp_path / "other.model")
    result = invoke("fill-mask", "--model", work / "tiny", "--tokenizer", other, "東京<MASK>")
    assert result.exit_code == 2 and "not the tokenizer the model declares" in result.output
    result = invoke("fill-mask", "--model", work / "tiny", "no mark here")
    assert result.exit_code == 2 and "no <MASK>" in result.output


def test_masked_text_is_tokenized_as_the_whole_text_would_be():
    sp = open_tokenizer(SAMPLE_MODEL).sp
    masked = F.encode_masked("東北大学で研究する<MASK>", SAMPLE_MODEL)
    assert masked.ids[0] == 5 and masked.ids[-1] == 6  # <CLS> … <SEP>, as in packed rows
    assert masked.ids[1:-2] == sp.encode("東北大学で研究する") and masked.ids[-2] == 3
    # Text after a mark continues the line: no dummy-prefix ▁ in front of it.
    after = F.encode_masked("<MASK>研究する", SAMPLE_MODEL)
    assert not sp.id_to_piece(after.ids[2]).startswith("\u2581")
    # <MASK>{word}: every token of the word, as the whole text would tokenize it.
    whole_word = F.encode_masked("東北大学の<MASK>{研究者}", SAMPLE_MODEL)
    unmasked = sp.encode("東北大学の研究者")
    assert len(whole_word.ids) == len(unmasked) + 2 and whole_word.positions == [len(unmasked) - 1, len(unmasked)]
    assert all(np.asarray(whole_word.ids)[whole_word.positions] == 3)
    assert [sp.id_to_piece(i) for i in unmasked[-2:]] == ["研究", "者"]
    assert whole_word.ids[1:-3] == unmasked[:-2]


def test_the_hugging_face_mask_name_is_accepted_and_other_forms_are_text():
    assert F.encode_masked("東京<MASK|LLM-jp>大学", SAMPLE_MODEL) == F.encode_masked("東京<MASK>大学", SAMPLE_MODEL)
    for other in ("[MASK]", "<mask>"):
        with pytest.raises(WwmPrepError, match="no <MASK>"):
            F.encode_masked(f"東京{other}大学", SAMPLE_MODEL)


def test_a_declared_tokenizer_that_is_gone_asks_for_tokenizer(work, tmp_path):
    copy = tmp_path / "copy.model"
    copy.write_bytes(SAMPLE_MODEL.read_bytes())
    ok("init-model", "--config", "tiny", "--tokenizer", copy, "--out", tmp_path / "model")
    copy.unlink()
    result = invoke("fill-mask", "--model", tmp_path / "model", "東京<MASK>")
    assert result.exit_code == 2 and "give --tokenizer" in result.output
    ok("fill-mask", "--model", tmp_path / "model", "--tokenizer", SAMPLE_MODEL, "--top-k", 1, "東京<MASK>")
