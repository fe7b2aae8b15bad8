"""Whole-word masking of a padded batch, as a chain of steps over the flattened ``rows × length`` array.

content → maskable tokens → groups (the candidates) → budget units and budgets → random visiting order →
choice by the rule → 80/10/10 replacement → outputs. Every step works on the whole batch at once; none
loops over tokens or groups in Python. Another masking mode (n-grams, spans) is another way to find the
candidate :class:`Groups`; the steps after it take any groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from wwm_prep.core.rows import RowLayout
from wwm_prep.train.options import MaskingOptions
from wwm_prep.train.randomness import SALT_ACTION, SALT_GROUP, SALT_RANDOM_ID, stream, unit_interval
from wwm_prep.train.selection import RULES, ranges, visiting_order

#: The label of every position that is not predicted (PyTorch's cross-entropy default).
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Groups:
    """The candidate groups of a batch in flat order, and how they fall into rows and budget units."""

    starts: np.ndarray  # int64: flat position of each group's first token
    sizes: np.ndarray  # int64: its tokens
    row_counts: np.ndarray  # groups of each row
    unit_counts: np.ndarray  # groups of each budget unit (rows, or segments with a per-document budget)
    unit_maskable: np.ndarray  # maskable tokens of each unit


def mask_batch(options: MaskingOptions, ids: np.ndarray, word_starts: np.ndarray, lengths: np.ndarray,
               layout: RowLayout | None, keys: np.ndarray) -> dict[str, Any]:
    """Mask ``ids`` (rows × length, changed in place) and build the batch.

    ``lengths`` are the rows' own lengths before padding; ``layout`` places the pieces of packed rows (None
    for rows that are not packed); ``keys`` are the rows' random streams (``randomness.batch_keys``).
    """
    n_rows, length = ids.shape
    segments = None if layout is None else layout.segments()
    seg_starts = None if segments is None else segments[0][:-1]
    content = lengths if layout is None else layout.fill
    valid = np.arange(length)[None, :] < content[:, None]
    maskable = maskable_tokens(ids, valid, options)
    groups = word_groups(maskable, word_starts, seg_starts, options.per_document_budget)
    labels = np.full(n_rows * length, IGNORE_INDEX, dtype=np.int64)
    if groups.starts.shape[0] and options.mlm_probability > 0:
        chosen = choose(groups, budgets(options.mlm_probability, groups.unit_maskable), keys, options.rule)
        flat_ids = ids.reshape(-1)
        labels[chosen] = flat_ids[chosen]
        replace(flat_ids, chosen, keys, length, options)
    return outputs(ids, labels, valid, segments, options)


def maskable_tokens(ids: np.ndarray, valid: np.ndarray, options: MaskingOptions) -> np.ndarray:
    """bool[rows, length]: the content's tokens that are not special ids."""
    if options.special_below is not None:
        maskable = ids >= options.special_below
    else:
        maskable = ~np.isin(ids, options.special_array)
    maskable &= valid
    return maskable


def word_groups(maskable: np.ndarray, word_starts: np.ndarray, seg_starts: np.ndarray | None,
                per_document: bool) -> Groups:
    """Whole-word groups: a group starts at a maskable token with ``word_starts`` set, after a token that is
    not maskable, or at a segment's start, and runs over the maskable tokens that follow with it unset."""
    length = maskable.shape[1]
    mf = maskable.reshape(-1)
    prev = np.empty(mf.shape[0], dtype=bool)
    prev[0] = False
    prev[1:] = mf[:-1]
    prev[::length] = False
    gstart = mf & (word_starts.reshape(-1) | ~prev)
    if seg_starts is not None:
        gstart[seg_starts] = mf[seg_starts]
    cont = np.zeros(mf.shape[0], dtype=bool)  # token j+1 continues the group of token j
    cont[:-1] = mf[1:] & ~gstart[1:]
    cont[length - 1 :: length] = False
    starts = np.flatnonzero(gstart)
    sizes = np.flatnonzero(mf & ~cont)  # the groups' last tokens, made sizes in place
    sizes -= starts
    sizes += 1
    return Groups(starts, sizes, *budget_units(gstart, maskable, seg_starts if per_document else None))


def budget_units(gstart: np.ndarray, maskable: np.ndarray,
                 seg_starts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Groups per row, then groups and maskable tokens per budget unit: each row, or each segment of
    ``seg_starts`` (pieces, and padding tails that hold nothing maskable)."""
    row_counts = np.count_nonzero(gstart.reshape(maskable.shape), axis=1)
    if seg_starts is None:
        return row_counts, row_counts, np.count_nonzero(maskable, axis=1)
    unit_counts = np.add.reduceat(gstart, seg_starts, dtype=np.int64)
    return row_counts, unit_counts, np.add.reduceat(maskable.reshape(-1), seg_starts, dtype=np.int64)


def budgets(mlm_probability: float, n_maskable: np.ndarray) -> np.ndarray:
    """BERT's budget: ``round(p · maskable)``, half to even, at least 1 where anything is maskable; no cap."""
    budget = np.rint(mlm_probability * n_maskable).astype(np.int64)
    return np.where(n_maskable > 0, np.maximum(budget, 1), 0)


def choose(groups: Groups, budget: np.ndarray, keys: np.ndarray, rule: str) -> np.ndarray:
    """Flat positions of the chosen tokens: groups visited in a random order per unit, taken by the rule."""
    order = visiting_order(stream(groups.starts, np.repeat(keys, groups.row_counts), SALT_GROUP), groups.unit_counts)
    sorted_sizes = groups.sizes[order]
    ranks = RULES[rule](sorted_sizes, groups.unit_counts, budget)
    return ranges(groups.starts[order[ranks]], sorted_sizes[ranks])


def replace(flat_ids: np.ndarray, chosen: np.ndarray, keys: np.ndarray, length: int, options: MaskingOptions) -> None:
    """Each chosen token, independently: the mask id, a random ordinary id, or kept (0.8 / 0.1 / 0.1 by default)."""
    chosen_keys = keys[chosen // length]
    u = unit_interval(stream(chosen, chosen_keys, SALT_ACTION))
    to_mask = u < options.mask_replace_prob
    to_random = ~to_mask & (u < options.mask_replace_prob + options.random_replace_prob)
    flat_ids[chosen[to_mask]] = options.mask_id
    at = chosen[to_random]
    if at.size:
        h = stream(at, chosen_keys[to_random], SALT_RANDOM_ID)
        h %= np.uint64(options.random_pool.shape[0])
        flat_ids[at] = options.random_pool[h.view(np.int64)]


def outputs(ids: np.ndarray, labels: np.ndarray, valid: np.ndarray, segments: tuple[np.ndarray, np.ndarray] | None,
            options: MaskingOptions) -> dict[str, Any]:
    """The batch; packed rows add ``position_ids`` and, if asked, the varlen bounds."""
    attention = valid if segments is not None else valid & (ids != options.pad_id)
    out: dict[str, Any] = {
        "input_ids": ids,
        "labels": labels.reshape(ids.shape),
        "attention_mask": attention.astype(np.int64),
    }
    if segments is not None:
        bounds, position_ids = segments
        out["position_ids"] = position_ids.reshape(ids.shape)
        if options.return_varlen:
            out["cu_seqlens"], out["max_seqlen"] = varlen_bounds(bounds)
    return out


def varlen_bounds(bounds: np.ndarray) -> tuple[np.ndarray, int]:
    """``cu_seqlens`` (int32) and ``max_seqlen`` of segment bounds, as varlen attention kernels take them."""
    return bounds.astype(np.int32), int(np.diff(bounds).max(initial=0))
