"""The tokenizer.json backend: chosen by file type, its roles from the configuration beside it, and per-id tables
that spell the text as the tokens do."""

from __future__ import annotations

import json
import shutil
import unicodedata
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.files import sha256_file
from wwm_prep.core.resources import resource
from wwm_prep.text.hf import HFTokenizer
from wwm_prep.text.sentencepiece import SentencePieceTokenizer
from wwm_prep.text.tokenizer import DEFAULT_TOKENIZER, load_tokenizer, locate_tokenizer, open_tokenizer

JAPANESE = st.text(st.sampled_from("あいうえおかきくけこアイウエオ東北大学研究者㍻ＡＢＣｶﾞabcXYZ0123 　。、\n\t😀"),
                   min_size=1, max_size=60)


_loaded = cache(load_tokenizer)


def test_the_backend_is_chosen_by_what_the_path_names(hf_tokenizers: dict[str, Path]) -> None:
    assert isinstance(load_tokenizer(resource(*DEFAULT_TOKENIZER)), SentencePieceTokenizer)
    directory = hf_tokenizers["wordpiece"]
    by_dir, by_file = load_tokenizer(directory), load_tokenizer(directory / "tokenizer.json")
    assert isinstance(by_dir, HFTokenizer) and isinstance(by_file, HFTokenizer)
    assert by_file.sha256 == sha256_file(directory / "tokenizer.json") != by_dir.sha256


def test_roles_come_from_the_configuration_else_from_the_usual_names(hf_tokenizers: dict[str, Path]) -> None:
    bpe = load_tokenizer(hf_tokenizers["bytelevel-bpe"])  # tokenizer_config.json, RoBERTa's names
    token = bpe.piece_name
    assert {role: token(i) for role, i in bpe.special_ids.items()} == {
        "bos": "<s>", "eos": "</s>", "cls": "<s>", "sep": "</s>", "pad": "<pad>", "mask": "<mask>"}
    wordpiece = load_tokenizer(hf_tokenizers["wordpiece"])  # special_tokens_map.json
    assert {role: wordpiece.piece_name(i) for role, i in wordpiece.special_ids.items()} == {
        "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "pad": "[PAD]", "mask": "[MASK]"}
    unigram = load_tokenizer(hf_tokenizers["unigram"])  # no configuration: llm-jp's names, and the model's unk
    assert {role: unigram.piece_name(i) for role, i in unigram.special_ids.items()} == {
        "unk": "<unk>", "cls": "<CLS>", "sep": "<SEP>", "pad": "<PAD>", "mask": "<MASK>"}
    for tok in (bpe, wordpiece, unigram):  # every role is a special id, never text
        assert tok.special[list(tok.special_ids.values())].all() and tok.special.sum() == len(set(tok.special_ids.values()))


def test_a_directory_s_checksum_covers_its_configuration(hf_tokenizers: dict[str, Path], tmp_path: Path) -> None:
    copy = shutil.copytree(hf_tokenizers["bytelevel-bpe"], tmp_path / "copy")
    before = load_tokenizer(copy).sha256
    path, _ = locate_tokenizer(str(copy), before, None, made_with="recorded")
    assert path == copy
    config = json.loads((copy / "tokenizer_config.json").read_text())
    (copy / "tokenizer_config.json").write_text(json.dumps({**config, "cls_token": "<pad>"}))
    assert load_tokenizer(copy).sha256 != before
    with pytest.raises(WwmPrepError, match="is not the tokenizer recorded"):
        locate_tokenizer(str(copy), before, None, made_with="recorded")


def test_bad_files_and_roles_are_named(hf_tokenizers: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(WwmPrepError, match="tokenizer not found: .*tokenizer.json"):
        open_tokenizer(tmp_path / "tokenizer.json")
    (tmp_path / "broken.json").write_text("{}")
    with pytest.raises(WwmPrepError, match="broken.json: not a Hugging Face tokenizer.json"):
        open_tokenizer(tmp_path / "broken.json")
    copy = shutil.copytree(hf_tokenizers["wordpiece"], tmp_path / "copy")
    (copy / "special_tokens_map.json").write_text(json.dumps({"mask_token": "<nowhere>"}))
    with pytest.raises(WwmPrepError, match="the mask token '<nowhere>' named in its configuration"):
        open_tokenizer(copy)


@settings(max_examples=60)
@given(JAPANESE)
def test_byte_level_tokens_spell_the_text_byte_for_byte(hf_tokenizers: dict[str, Path], text: str) -> None:
    """A byte-level token may hold part of a character: the tables count the characters it starts, and its
    continuation bytes are marked, so characters and blankness come out right however the bytes are cut."""
    tok = _loaded(hf_tokenizers["bytelevel-bpe"])
    ids = np.asarray(tok.encode([text]).ids[0], dtype=np.int64)
    assert b"".join(tok.token_bytes(ids)) == text.encode("utf-8")
    assert tok.tables.chars[ids].sum() == len(text)
    assert tok.tables.piece_bytes[ids].sum() == len(text.encode("utf-8")) and tok.prefix_bytes == 0


@settings(max_examples=40)
@given(JAPANESE)
def test_metaspace_tokens_spell_the_normalized_text(hf_tokenizers: dict[str, Path], text: str) -> None:
    """NFKC rewrites the text before it is split (ＡＢＣ → ABC, ㍻ → 平成): the tokens spell the normalized text."""
    tok = _loaded(hf_tokenizers["unigram"])
    ids = tok.encode([text]).ids[0]
    spelled = b"".join(tok.token_bytes(ids)).decode("utf-8")
    if tok.special_ids["unk"] not in ids:
        assert "".join(spelled.split()) == "".join(unicodedata.normalize("NFKC", text).split())


def test_wordpiece_tokens_spell_the_text_without_its_spaces(hf_tokenizers: dict[str, Path]) -> None:
    tok = load_tokenizer(hf_tokenizers["wordpiece"])
    text = "東北大学の 研究者\tです。"
    ids = tok.encode([text]).ids[0]
    assert tok.special_ids["unk"] not in ids
    assert b"".join(tok.token_bytes(ids)).decode() == "".join(text.split())
    assert tok.display(ids[0]) == "東" and tok.display(tok.special_ids["mask"]) == "[MASK]"


def test_fill_mask_reads_a_text_with_a_tokenizer_json(hf_tokenizers: dict[str, Path]) -> None:
    """`fill-mask`'s reading of <MASK> marks, with WordPiece (which splits on the mark's edges as on spaces)."""
    from wwm_prep.check.fill_mask import encode_masked

    tok = load_tokenizer(hf_tokenizers["wordpiece"])
    masked = encode_masked("東北大学で<MASK>{研究}する", hf_tokenizers["wordpiece"])
    whole = tok.encode(["東北大学で研究する"]).ids[0]
    word = tok.encode(["研究"]).ids[0]
    assert masked.ids[0] == tok.special_ids["cls"] and masked.ids[-1] == tok.special_ids["sep"]
    assert len(masked.ids) == len(whole) + 2 and masked.positions == [1 + whole.index(word[0]) + k for k in range(len(word))]
    assert all(masked.ids[p] == tok.special_ids["mask"] for p in masked.positions)
