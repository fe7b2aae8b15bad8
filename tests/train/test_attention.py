"""Per-piece attention from the collator, NumPy only: ``document_ids`` and the 4-D block mask against a plain
reference built from ``doc_lengths``, on hand-made rows and on real packed rows. That real models keep the
pieces apart with them is tested in ``test_attention_models.py``."""

from __future__ import annotations

import numpy as np
import pytest

from tests.train.conftest import N_SPECIAL, PAD, make_packed_row, pieces_and_padding
from wwm_prep.train.attention import BLOCKED
from wwm_prep.train.collator import WholeWordMaskCollator


def reference_pieces(row: dict, length: int) -> np.ndarray:
    """Each position's piece in its row, -1 after the pieces (a plain loop: the reference, not the thing tested)."""
    ids = np.asarray(row["input_ids"])
    out = np.full(length, -1, dtype=np.int64)
    if row.get("doc_lengths") is None:
        for j in range(ids.shape[0]):
            if ids[j] != PAD:
                out[j] = 0
        return out
    at = 0
    for piece, n in enumerate(np.asarray(row["doc_lengths"]).tolist()):
        for j in range(at, at + n):
            out[j] = piece
        at += n
    return out


def reference_mask(pieces: np.ndarray) -> np.ndarray:
    """0 where query and key share a piece or both lie in the padding, float32's minimum elsewhere."""
    rows, length = pieces.shape
    mask = np.full((rows, 1, length, length), np.finfo(np.float32).min, dtype=np.float32)
    for r in range(rows):
        for q in range(length):
            for k in range(length):
                if pieces[r, q] == pieces[r, k]:
                    mask[r, 0, q, k] = 0.0
    return mask


def collators(**options: object) -> tuple[WholeWordMaskCollator, WholeWordMaskCollator]:
    """The same collator without and with per-piece attention."""
    common = dict(vocab_size=300, special_ids=range(N_SPECIAL), seed=11, **options)
    return (WholeWordMaskCollator(**common),
            WholeWordMaskCollator(**common, block_attention=True, return_document_ids=True))


def hand_made_rows() -> list[dict]:
    """Packed rows of different lengths (so the collator pads some), and one row that is not packed."""
    rng = np.random.default_rng(3)
    rows = [make_packed_row(rng, n) for n in (60, 45, 37)]
    plain = make_packed_row(rng, 30)
    plain["input_ids"][plain["input_ids"] == PAD] = 9  # no trailing padding of its own ...
    plain["input_ids"][-3:] = PAD  # ... but three pads, which are not its content
    del plain["doc_lengths"]
    return [*rows, plain]


def test_block_mask_and_document_ids_match_the_pieces():
    plain, blocked = collators()
    rows = hand_made_rows()
    before, out = plain(rows), blocked(rows)
    length = out["input_ids"].shape[1]
    assert length == 64  # 60 rounded up to pad_to_multiple_of=8: every row has a padding tail
    pieces = np.stack([reference_pieces(r, length) for r in rows])
    assert np.array_equal(out["document_ids"], pieces) and out["document_ids"].dtype == np.int64
    mask = out["attention_mask"]
    assert mask.shape == (4, 1, length, length) and mask.dtype == np.float32
    assert np.array_equal(mask, reference_mask(pieces))
    # the 2-D padding mask it replaces is what lies outside every piece; all else is as without the option
    assert np.array_equal(before["attention_mask"], (pieces >= 0).astype(np.int64))
    assert set(out) == set(before) | {"document_ids"}
    for key in set(before) - {"attention_mask"}:
        assert np.array_equal(out[key], before[key]), key


def test_rows_that_are_not_packed_are_one_piece():
    plain, blocked = collators()
    rng = np.random.default_rng(5)
    rows = [make_packed_row(rng, n) for n in (20, 13)]
    for row in rows:
        del row["doc_lengths"]
    before, out = plain(rows), blocked(rows)
    assert "position_ids" not in out
    assert np.array_equal(out["document_ids"], np.where(before["attention_mask"] == 1, 0, -1))
    allowed = out["attention_mask"][:, 0] == 0
    content = before["attention_mask"] == 1
    # content attends to content only, padding to padding only
    assert np.array_equal(allowed, content[:, :, None] == content[:, None, :])


def test_every_query_keeps_a_key_and_content_never_sees_padding():
    _, blocked = collators()
    rows = hand_made_rows() + [{"input_ids": np.array([5, 6]), "word_starts": np.array([0, 0]),
                                "doc_lengths": np.array([], dtype=np.int64)}]  # a row that is all padding
    out = blocked(rows)
    allowed = out["attention_mask"][:, 0] == 0
    documents = out["document_ids"]
    assert allowed.any(axis=-1).all()  # no softmax over nothing: no NaN, even in the padding row
    assert (documents[-1] == -1).all()
    assert not (allowed & (documents[:, :, None] >= 0) & (documents[:, None, :] < 0)).any()
    assert set(np.unique(out["attention_mask"]).tolist()) == {0.0, float(BLOCKED)}


def test_document_ids_only_on_request():
    c = WholeWordMaskCollator(vocab_size=300, special_ids=range(N_SPECIAL), block_attention=True)
    rows = hand_made_rows()
    assert "document_ids" not in c(rows) and c(rows)["attention_mask"].ndim == 4
    c.return_document_ids = True
    assert "document_ids" in c(rows)
    c.block_attention = False
    assert c(rows)["attention_mask"].ndim == 2
    assert "block_attention=False, return_document_ids=True" in repr(c)


@pytest.mark.shared
def test_real_rows(real_rows_512, llm_jp_tokenizer_path):
    """Real 512-token rows of packed ja-sample, with several pieces or padding: the mask allows exactly the pairs
    within one piece."""
    rows = pieces_and_padding(real_rows_512, 8)
    c = WholeWordMaskCollator(llm_jp_tokenizer_path, block_attention=True, return_document_ids=True)
    out = c(rows)
    pieces = np.stack([reference_pieces(r, 512) for r in rows])
    assert np.array_equal(out["document_ids"], pieces)
    assert len(rows) == 8 and pieces.max() == 1 and (pieces == -1).any()
    same = pieces[:, :, None] == pieces[:, None, :]
    assert np.array_equal(out["attention_mask"][:, 0] == 0, same)
    # positions restart where the pieces do
    starts = np.diff(pieces, axis=1, prepend=-2) != 0
    assert ((out["position_ids"] == 0) == starts).all()
