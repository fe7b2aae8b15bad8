"""The masking steps on rows small enough to check by hand."""

from __future__ import annotations

import numpy as np

from tests.train.conftest import CLS, PAD, SEP
from wwm_prep.core.rows import RowLayout
from wwm_prep.train.masking import IGNORE_INDEX, budgets, mask_batch, maskable_tokens, word_groups
from wwm_prep.train.options import LLMJP_V3_SPECIALS, MaskingOptions
from wwm_prep.train.randomness import batch_keys

OPTIONS = MaskingOptions(**{**LLMJP_V3_SPECIALS, "vocab_size": 300})
# two pieces, then padding: <CLS> 10 11 | 12 <SEP> <CLS> 13 0(<unk>) 14 15 <SEP> <PAD> <PAD>
IDS = np.array([[CLS, 10, 11, 12, SEP, CLS, 13, 0, 14, 15, SEP, PAD, PAD]])
STARTS = np.array([[0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0]], dtype=bool)
LAYOUT = RowLayout(13, np.array([5, 6]), np.array([2]))


def test_groups_split_at_word_starts_specials_and_pieces():
    valid = np.arange(13)[None, :] < LAYOUT.fill[:, None]
    maskable = maskable_tokens(IDS, valid, OPTIONS)
    assert np.flatnonzero(maskable[0]).tolist() == [1, 2, 3, 6, 8, 9]
    groups = word_groups(maskable, STARTS, LAYOUT.segments()[0][:-1], per_document=False)
    assert groups.starts.tolist() == [1, 3, 6, 8] and groups.sizes.tolist() == [2, 1, 1, 2]
    assert groups.row_counts.tolist() == groups.unit_counts.tolist() == [4]
    per_piece = word_groups(maskable, STARTS, LAYOUT.segments()[0][:-1], per_document=True)
    assert per_piece.unit_counts.tolist() == [2, 2, 0] and per_piece.unit_maskable.tolist() == [3, 3, 0]


def test_budgets_round_half_to_even_and_at_least_one():
    assert budgets(0.15, np.array([0, 1, 3, 10, 30, 50])).tolist() == [0, 1, 1, 2, 4, 8]


def test_mask_batch_takes_whole_groups_within_budget():
    options = MaskingOptions(**{**LLMJP_V3_SPECIALS, "vocab_size": 300, "mlm_probability": 0.5})
    for seed in range(20):
        ids = IDS.copy()
        out = mask_batch(options, ids, STARTS, np.array([13]), LAYOUT, batch_keys(seed, 0, 0, 0, 1, 13))
        chosen = out["labels"][0] != IGNORE_INDEX
        assert 2 <= chosen.sum() <= 3 and chosen[1] == chosen[2] and chosen[8] == chosen[9]
        assert (out["labels"][0][chosen] == IDS[0][chosen]).all()
        assert out["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 0, 1]]
        assert out["cu_seqlens"].tolist() == [0, 5, 11, 13] and out["max_seqlen"] == 6
