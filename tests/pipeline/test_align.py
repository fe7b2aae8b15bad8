"""Whole-word groups against the contract, on the real llm-jp v3 tokenizer and real Japanese text.

The reference (tests/pipeline/contract.py) is written plainly and independently of wwm_prep.pipeline.align:
it asks SentencePiece for token offsets (proto output) and vibrato for word offsets (tokenize + start/end),
and applies the contract's rules token by token, whitespace being what `str.isspace()` says of each character.
"""

from __future__ import annotations

from functools import cache
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import corpus_texts
from tests.pipeline.contract import document, vibrato_words
from tests.pipeline.contract import reference_word_starts as contract_word_starts
from wwm_prep.pipeline.segment import Segmenter
from wwm_prep.text.dictionary import load_dictionary
from wwm_prep.text.tokenizer import load_tokenizer

DICTIONARIES = ["tiny-ja", "unidic-lite"]


@cache
def _segmenter(dictionary: str, tokenizer: str) -> Segmenter:
    return Segmenter(load_dictionary(dictionary), load_tokenizer(tokenizer))


@pytest.fixture(scope="module", params=DICTIONARIES)
def segmenter(request: pytest.FixtureRequest, llm_jp_tokenizer_path) -> Segmenter:
    try:
        return _segmenter(request.param, str(llm_jp_tokenizer_path))
    except ImportError as exc:
        pytest.skip(f"{request.param} cannot be loaded here: {exc}")


def reference_word_starts(text: str, segmenter: Segmenter) -> list[int]:
    """The contract applied token by token (tests/pipeline/contract.py) to vibrato's words of the whole text."""
    return contract_word_starts(text, segmenter.tokenizer.sp, vibrato_words(text, segmenter))


def token_char_spans(text: str, ids: np.ndarray, segmenter: Segmenter) -> np.ndarray:
    """Character span of each token, from the proto offsets (byte pieces of one character share it)."""
    pieces = segmenter.tokenizer.sp.encode(text, return_type="proto").pieces
    assert [p.id for p in pieces] == ids.tolist()
    spans = np.array([(p.begin, p.end) for p in pieces]).reshape(-1, 2)
    prefix = np.cumsum([0] + [len(c.encode("utf-8")) for c in text])
    return np.stack([np.searchsorted(prefix, spans[:, 0], side="right") - 1,
                     np.searchsorted(prefix, spans[:, 1], side="left")], axis=1)


@pytest.mark.shared
def test_matches_reference_on_first_documents(segmenter: Segmenter, ja_sample) -> None:
    checked = 0
    for source, _, text in corpus_texts(ja_sample):
        if checked >= 150 or not text.strip():
            continue
        seg = segmenter([text])
        assert seg.exact_path == 0
        assert seg.word_starts.tolist() == reference_word_starts(text, segmenter), (source, text[:80])
        assert segmenter._exact(text, seg.ids).tolist() == seg.word_starts.tolist()
        checked += 1
    assert checked == 150


@pytest.mark.shared
def test_contract_holds_on_every_document(segmenter: Segmenter, ja_sample) -> None:
    """Decoding gives the text back; no vibrato word straddles a group edge; every token is in one group."""
    sp = segmenter.tokenizer.sp
    documents = straddling = 0
    texts = [(source, line, text) for source, line, text in corpus_texts(ja_sample) if text.strip()]
    batch = segmenter([text for _, _, text in texts])
    assert batch.exact_path == 0
    for i, (source, line, text) in enumerate(texts):
        seg = SimpleNamespace(**dict(zip(("ids", "word_starts"), document(batch, i))))
        documents += 1
        assert seg.ids.dtype == np.int32 and seg.word_starts.dtype == np.uint8
        assert len(seg.ids) == len(seg.word_starts) and seg.word_starts[0] == 1
        assert sp.decode(seg.ids.tolist()) == text, (source, line)
        assert not segmenter.tokenizer.special[seg.ids].any()
        # Group edges in characters; a word may not contain one strictly inside it.
        edges = token_char_spans(text, seg.ids, segmenter)[seg.word_starts == 1, 0]
        words = np.asarray([(w.start(), w.end()) for w in segmenter.dictionary.tagger.tokenize(text)]).reshape(-1, 2)
        inside = np.searchsorted(edges, words[:, 1], side="left") - np.searchsorted(edges, words[:, 0], side="right")
        straddling += int((inside > 0).sum())
    assert documents == 4785
    assert straddling == 0


def test_whitespace_groups_join_the_next_word() -> None:
    from wwm_prep.pipeline.align import group_starts

    # two documents: "▁"(ws) "東京" "▁"(ws) "\n"(ws) "大学" "▁"(ws, trailing) | "▁"(ws) "▁"(ws)
    on_boundary = np.ones(8, dtype=bool)
    whitespace = np.array([True, False, True, True, False, True, True, True])
    doc_tokens = np.array([0, 6, 8])
    assert group_starts(on_boundary, whitespace, doc_tokens).tolist() == [1, 0, 1, 0, 0, 0, 1, 0]


def test_texts_the_arithmetic_cannot_take_use_the_exact_path(llm_jp_tokenizer_path) -> None:
    segmenter = _segmenter(DICTIONARIES[0], str(llm_jp_tokenizer_path))
    texts = ["東京の\u2581大学", "普通の文です。", "a\u2581\u2581b 研究"]
    seg = segmenter(texts)
    assert seg.exact_path == 2
    for i, text in enumerate(texts):
        ids, starts = document(seg, i)
        assert starts.tolist() == reference_word_starts(text, segmenter)


# The vectorised helpers against plain per-item references, on arbitrary Unicode (surrogates excluded: they have
# no UTF-8 and never reach alignment).
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


@given(st.lists(st.lists(_TEXT, max_size=6), max_size=8))
def test_string_ends_are_the_running_sum_of_byte_lengths(nested: list[list[str]]) -> None:
    from wwm_prep.pipeline.align import absent_char, string_ends

    sep = absent_char("".join(s for strings in nested for s in strings))
    expected = np.cumsum([0] + [len(s.encode("utf-8")) for strings in nested for s in strings])
    assert string_ends(nested, sep).tolist() == expected.tolist()


@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=40))
def test_absent_char_is_not_in_the_text(text: str) -> None:
    from wwm_prep.pipeline.align import absent_char

    char = absent_char(text)
    assert len(char) == 1 and char not in text and char.encode("utf-8")
    assert absent_char(text.replace("\x00", "")) == "\x00"


@given(st.text(st.sampled_from(" \t\n\u00a0\u3000\u2003\u0085a東é\U0001f600"), max_size=40))
def test_space_and_skipped_bytes_match_a_per_character_reference(text: str) -> None:
    from wwm_prep.pipeline.align import Spaces, bytes_of, present, space_bytes

    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    vibrato_spaces = " \t\u00a0\u3000"
    table = np.zeros(0x3001, dtype=bool)
    table[[ord(c) for c in vibrato_spaces]] = True
    spaces = Spaces.from_table(table)
    assert space_bytes(text, raw).tolist() == [c.isspace() for c in text for _ in c.encode("utf-8")]
    parts = bytes_of(raw, np.flatnonzero(raw <= spaces.top), spaces.ascii, present(text, spaces.others))
    at = np.cumsum([0] + [len(c.encode("utf-8")) for c in text])
    assert sorted(np.concatenate(parts).tolist()) == [
        b for i, c in enumerate(text) if c in vibrato_spaces for b in range(at[i], at[i + 1])]


@given(st.lists(st.integers(0, 30), max_size=20, unique=True), st.lists(st.integers(0, 31), max_size=4))
def test_runs_begin_after_a_gap_or_at_an_edge(offsets: list[int], edges: list[int]) -> None:
    from wwm_prep.pipeline.align import run_firsts

    at, edges = sorted(offsets), sorted(edges + [0, 31])
    expected = [i == 0 or x != at[i - 1] + 1 or x in edges for i, x in enumerate(at)]
    assert run_firsts(np.array(at, dtype=np.int64), np.array(edges, dtype=np.int64)).tolist() == expected


@given(st.text(st.sampled_from(" \t\n\u00a0\u3000\u2003\u2029\u0085\u1680a東é\u200b\U0001f600"), max_size=40))
def test_the_character_of_any_byte_is_whitespace_as_str_isspace_says(text: str) -> None:
    from wwm_prep.pipeline.align import in_space_char

    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    expected = [c.isspace() for c in text for _ in c.encode("utf-8")]
    assert in_space_char(raw, np.arange(len(raw))).tolist() == expected
