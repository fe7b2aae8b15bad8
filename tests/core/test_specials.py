"""The one table of special pieces agrees with the real tokenizers, and finds roles by name in any other."""

from __future__ import annotations

from pathlib import Path

import pytest

from wwm_prep.core.resources import resource
from wwm_prep.core.specials import LLMJP_V3_IDS, LLMJP_V3_VOCAB_SIZE, find_special_ids
from wwm_prep.text.tokenizer import DEFAULT_TOKENIZER, open_tokenizer
from tests.conftest import SHARED

V31 = SHARED / "tokenizers" / "llm-jp-v3" / "llm-jp-tokenizer-100k.ver3.1.model"


def test_llm_jp_v3_table_is_the_real_tokenizers(llm_jp_tokenizer_path: Path) -> None:
    v30 = open_tokenizer(llm_jp_tokenizer_path)
    assert v30.special_ids == LLMJP_V3_IDS and v30.vocab_size == LLMJP_V3_VOCAB_SIZE
    if V31.exists():
        assert open_tokenizer(V31).special_ids == LLMJP_V3_IDS


def test_the_bundled_tokenizer_keeps_llm_jp_ids() -> None:
    assert open_tokenizer(resource(*DEFAULT_TOKENIZER)).special_ids == LLMJP_V3_IDS


def test_roles_are_found_by_name_and_left_out_when_absent() -> None:
    pieces = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "x"]
    to_id = {p: i for i, p in enumerate(pieces)}
    ids = find_special_ids(0, -1, -1, lambda name: to_id.get(name, 0), pieces.__getitem__)
    assert ids == {"unk": 0, "bos": -1, "eos": -1, "mask": 4, "pad": 3}  # BERT's names; no <CLS> or <SEP> piece


@pytest.mark.parametrize("name", ["<MASK>", "<MASK|LLM-jp>", "<mask>"])
def test_each_spelling_of_mask_is_found(name: str) -> None:
    pieces = ["<unk>", name]
    ids = find_special_ids(0, 1, 2, lambda n: pieces.index(n) if n in pieces else 0, pieces.__getitem__)
    assert ids["mask"] == 1
