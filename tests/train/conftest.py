"""Helpers shared by the collator's tests: hand-made packed rows and the exactness checks of one batch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from wwm_prep.train.collator import IGNORE_INDEX, WholeWordMaskCollator

MASK, PAD, CLS, SEP = 3, 4, 5, 6
N_SPECIAL = 8  # llm-jp v3: ids 0..7 are <unk> and control pieces


@pytest.fixture()
def small_collator() -> WholeWordMaskCollator:
    """A collator over a 300-id vocabulary whose first N_SPECIAL ids are special."""
    return WholeWordMaskCollator(vocab_size=300, special_ids=range(N_SPECIAL), seed=7)


def reference_groups(row: dict, n_special: int = N_SPECIAL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(maskable mask, group start positions, group sizes) of one row, computed plainly."""
    ids = np.asarray(row["input_ids"]).astype(np.int64)
    ws = np.asarray(row["word_starts"]).astype(bool)
    n = ids.shape[0]
    content = n
    doc_starts = set()
    if row.get("doc_lengths") is not None:
        d = np.asarray(row["doc_lengths"]).astype(np.int64)
        content = int(d.sum())
        doc_starts = set((np.cumsum(d) - d).tolist())
    maskable = (ids >= n_special) & (np.arange(n) < content)
    starts, sizes = [], []
    for j in range(n):  # plain loop: this is the reference, not the thing tested
        if not maskable[j]:
            continue
        if j == 0 or not maskable[j - 1] or ws[j] or j in doc_starts:
            starts.append(j)
            sizes.append(1)
        else:
            sizes[-1] += 1
    return maskable, np.asarray(starts, np.int64), np.asarray(sizes, np.int64)


def check_batch(rows: Sequence[dict], out: dict, collator: WholeWordMaskCollator, per_document: bool = False) -> dict:
    """Assert every exactness property on one batch; return counts for the statistical checks."""
    ids_out = np.asarray(out["input_ids"])
    labels = np.asarray(out["labels"])
    stats = {"maskable": 0, "chosen": 0, "mask": 0, "random": 0, "keep": 0, "groups": 0, "at_budget": 0, "rows": 0}
    for i, row in enumerate(rows):
        orig = np.asarray(row["input_ids"]).astype(np.int64)
        n = orig.shape[0]
        maskable, starts, sizes = reference_groups(row)
        chosen = labels[i, :n] != IGNORE_INDEX
        # padding added by the collator is never chosen
        assert (labels[i, n:] == IGNORE_INDEX).all()
        assert (ids_out[i, n:] == collator.pad_id).all()
        # no special or pad token, nothing outside the content, is ever chosen
        assert not (chosen & ~maskable).any()
        # labels are the original ids exactly at chosen positions
        assert (labels[i, :n][chosen] == orig[chosen]).all()
        # unchosen tokens are untouched
        assert (ids_out[i, :n][~chosen] == orig[~chosen]).all()
        # whole groups: every group chosen entirely or not at all
        if starts.size:
            per_group = np.add.reduceat(chosen.astype(np.int64), starts)
            # reduceat sums to the next start; non-maskable tokens between groups are never chosen
            assert ((per_group == 0) | (per_group == sizes)).all()
            stats["groups"] += int((per_group > 0).sum())
        # budget never exceeded; at budget in (nearly) every row
        if per_document:
            d = np.asarray(row["doc_lengths"]).astype(np.int64)
            bounds = np.cumsum(d) - d
            for b, ln in zip(bounds, d):
                nm = int(maskable[b : b + ln].sum())
                budget = max(1, int(np.rint(collator.mlm_probability * nm))) if nm else 0
                assert int(chosen[b : b + ln].sum()) <= budget
        else:
            nm = int(maskable.sum())
            budget = max(1, int(np.rint(collator.mlm_probability * nm))) if nm else 0
            assert int(chosen.sum()) <= budget
            stats["at_budget"] += int(chosen.sum()) == budget
        rep = ids_out[i, :n][chosen]
        src = orig[chosen]
        is_mask = rep == collator.mask_id
        is_keep = rep == src
        is_random = ~is_mask & ~is_keep
        # random replacements are ordinary tokens of the vocabulary
        assert (rep[is_random] >= N_SPECIAL).all() and (rep[is_random] < collator.vocab_size).all()
        stats["maskable"] += int(maskable.sum())
        stats["chosen"] += int(chosen.sum())
        stats["mask"] += int(is_mask.sum())
        stats["random"] += int(is_random.sum())
        stats["keep"] += int(is_keep.sum())
        stats["rows"] += 1
    return stats


def make_packed_row(rng: np.random.Generator, seq_len: int, vocab: int = 300, max_group: int = 4) -> dict:
    """A packed row of random documents with random group sizes (1..max_group)."""
    ids = np.full(seq_len, PAD, np.int32)
    ws = np.zeros(seq_len, np.uint8)
    docs = []
    pos = 0
    while seq_len - pos > 8:
        n = int(rng.integers(3, max(4, min(200, seq_len - pos - 2))))
        n = min(n, seq_len - pos - 2 - int(rng.integers(0, 3)))
        if n < 1:
            break
        toks = rng.integers(N_SPECIAL, vocab, n)
        w = np.zeros(n, np.uint8)
        j = 0
        while j < n:
            w[j] = 1
            j += int(rng.integers(1, max_group + 1))
        ids[pos] = CLS
        ids[pos + 1 : pos + 1 + n] = toks
        ids[pos + 1 + n] = SEP
        ws[pos + 1 : pos + 1 + n] = w
        docs.append(n + 2)
        pos += n + 2
    return {"input_ids": ids, "word_starts": ws, "doc_lengths": np.asarray(docs, np.int32)}




def pieces_and_padding(rows: Sequence[dict], n: int) -> list[dict]:
    """``n`` real rows, half of them holding several pieces and half ending in padding (packed 512-token rows of
    ja-sample hold one or two pieces, and only single pieces leave room for padding)."""
    several = [r for r in rows if len(r["doc_lengths"]) > 1]
    padded = [r for r in rows if int(np.sum(r["doc_lengths"])) < len(r["input_ids"])]
    return several[: n - n // 2] + padded[: n // 2]
