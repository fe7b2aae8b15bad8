"""The collator's options: defaults from llm-jp v3, checks, and attributes that stay live."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import numpy as np
import pytest

from wwm_prep.train.collator import WholeWordMaskCollator
from wwm_prep.train.options import LLMJP_V3_SPECIALS, MaskingOptions, keywords, token_ids


def test_llmjp_v3_defaults_are_what_the_real_tokenizer_says(llm_jp_tokenizer_path: Path) -> None:
    """The collator's defaults (no tokenizer given) are read off the llm-jp v3 model itself, not restated."""
    real = token_ids(llm_jp_tokenizer_path)
    assert {**real, "special_ids": tuple(real["special_ids"])} == LLMJP_V3_SPECIALS
    assert token_ids(None, pad_id=0, special_ids=None) == {**LLMJP_V3_SPECIALS, "pad_id": 0}


def test_tables_for_masking():
    options = MaskingOptions(**LLMJP_V3_SPECIALS)
    assert options.special_below == 8 and options.random_pool.size == 99_574 - 8
    other = MaskingOptions(mask_id=103, pad_id=0, special_ids=(100, 101), vocab_size=200)
    assert other.special_ids == (0, 100, 101, 103) and other.special_below is None
    assert not np.isin(other.random_pool, other.special_array).any() and other.random_pool.size == 196


@pytest.mark.parametrize(
    "change, message",
    [
        ({"mask_id": None}, "no mask token id"),
        ({"pad_id": None}, "no pad token id"),
        ({"mlm_probability": 1.5}, "mlm_probability"),
        ({"mask_replace_prob": -0.1}, "must lie in"),
        ({"mask_replace_prob": 0.6, "random_replace_prob": 0.5}, "must not exceed 1"),
        ({"return_tensors": "tf"}, "return_tensors"),
        ({"rule": "span"}, "rule must be"),
        ({"pad_to_multiple_of": 0}, "pad_to_multiple_of"),
        ({"special_ids": range(10), "vocab_size": 10}, "no non-special token"),
        ({"masking": "token"}, "masking must be 'word', 'ngram', 'span'"),
        ({"max_ngram": 0}, "max_ngram"),
        ({"max_span": 0}, "max_span"),
        ({"span_p": 0.0}, "span_p"),
    ],
)
def test_checks(change, message):
    with pytest.raises(ValueError, match=message):
        MaskingOptions(**{**LLMJP_V3_SPECIALS, **change})


def test_collator_attributes_read_and_set_the_options():
    c = WholeWordMaskCollator(vocab_size=300, special_ids=range(8), seed=3)
    assert (c.mask_id, c.pad_id, c.vocab_size, c.rule, c.pad_to_multiple_of) == (3, 4, 300, "skip", 8)
    before = c.options
    c.mlm_probability = 0.3
    assert c.options == dataclasses.replace(before, mlm_probability=0.3) and c.mlm_probability == 0.3
    with pytest.raises(ValueError, match="mlm_probability"):
        c.mlm_probability = 2.0
    assert c.mlm_probability == 0.3
    c.masking = "span"
    assert c.options.masking == "span" and c.options.span_thresholds.size == c.max_span - 1
    assert MaskingOptions(**LLMJP_V3_SPECIALS).span_thresholds.size == 0  # "word": every candidate is one group
    c.special_ids = [0, 100]
    assert c.special_ids == (0, 3, 4, 100) and c.options.special_below is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.options.seed = 1  # type: ignore[misc]


def test_the_collator_keywords_are_the_options_fields() -> None:
    """Each keyword is defined once, as a field of MaskingOptions: the collator's signature, defaults, attributes and
    repr follow it, and a keyword it does not define is refused."""
    fields = {o.name: o for o in keywords()}
    parameters = inspect.signature(WholeWordMaskCollator).parameters
    assert [p for p in parameters if p not in ("tokenizer", "seed", "epoch")] == list(fields)
    given = {"mlm_probability": 0.3, "rule": "prefix", "pad_to_multiple_of": None, "masking": "span", "max_span": 4,
             "block_attention": True, "vocab_size": 300}
    c = WholeWordMaskCollator(**given)
    for name, option in fields.items():
        expected = given.get(name, LLMJP_V3_SPECIALS.get(name, option.default))
        assert parameters[name].default in (option.default, None)
        assert getattr(c, name) == (tuple(expected) if name == "special_ids" else expected), name
        assert f"{name}={getattr(c, name)!r}" in repr(c)
    with pytest.raises(TypeError, match="mlm_prob"):
        WholeWordMaskCollator(mlm_prob=0.3)
