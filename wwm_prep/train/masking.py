"""Whole-word masking of a padded batch, as a chain of steps over the flattened ``rows × length`` array.

content → maskable tokens → groups → candidates (the groups, or spans of them) → budget units and budgets →
random visiting order → choice by the rule → 80/10/10 replacement → outputs. Every step works on the whole batch
at once; none loops over tokens, groups or spans in Python. The masking modes differ only in their candidates
(whole-word groups, or the spans of ``spans``) and in drawing the replacement per token or per span; the steps
after the candidates take any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from wwm_prep.core import groups as core_groups
from wwm_prep.core.arrays import offsets_of
from wwm_prep.core.rows import RowLayout
from wwm_prep.core.specials import IGNORE_INDEX
from wwm_prep.train.attention import block_mask, document_ids
from wwm_prep.train.options import MaskingOptions
from wwm_prep.train.randomness import SALT_ACTION, SALT_GROUP, SALT_RANDOM_ID, SALT_SPAN, stream, unit_interval
from wwm_prep.train.selection import RULES, ranges, visiting_order
from wwm_prep.train.spans import REPLACED_PER_SPAN, draw_lengths, tile_runs

@dataclass(frozen=True)
class Groups:
    """The candidates of a batch in flat order (whole-word groups, or spans of them), and how they fall into rows
    and budget units."""

    starts: np.ndarray  # int64: flat position of each candidate's first token
    sizes: np.ndarray  # int64: its tokens
    row_counts: np.ndarray  # candidates of each row
    unit_counts: np.ndarray  # candidates of each budget unit (rows, or segments with a per-document budget)
    unit_maskable: np.ndarray  # maskable tokens of each unit
    words: np.ndarray | None = None  # spans: the whole-word groups of each (None: candidates are single groups)
    drawn: np.ndarray | None = None  # spans: the length drawn for each, in groups (above `words` where a run ended)


@dataclass(frozen=True)
class Choice:
    """A batch's candidates, the order they were visited in and those the rule took: what ``inspect`` shows and
    the tests check; masking itself needs only the taken ones."""

    candidates: Groups
    order: np.ndarray  # candidate indices, unit after unit, each unit's in its random visiting order
    taken: np.ndarray  # the candidates taken, in the order they were taken

    def positions(self) -> np.ndarray:
        """Flat positions of the chosen tokens, candidate after candidate."""
        return ranges(self.candidates.starts[self.taken], self.candidates.sizes[self.taken])


def mask_batch(options: MaskingOptions, ids: np.ndarray, word_starts: np.ndarray, lengths: np.ndarray,
               layout: RowLayout | None, keys: np.ndarray, mlm_probability: float | None = None) -> dict[str, Any]:
    """Mask ``ids`` (rows × length, changed in place) and build the batch.

    ``lengths`` are the rows' own lengths before padding; ``layout`` places the pieces of packed rows (None
    for rows that are not packed); ``keys`` are the rows' random streams (``randomness.batch_keys``);
    ``mlm_probability``, if given, replaces the options' rate (a schedule's rate for this batch).
    """
    n_rows, length = ids.shape
    valid, segments = content(lengths, layout, length)
    choice = choose(options, ids, word_starts, valid, segments, keys, mlm_probability)
    labels = np.full(n_rows * length, IGNORE_INDEX, dtype=np.int64)
    if choice.taken.shape[0]:
        chosen = choice.positions()
        flat_ids = ids.reshape(-1)
        labels[chosen] = flat_ids[chosen]
        replace(flat_ids, chosen, keys, length, options, choice if options.masking in REPLACED_PER_SPAN else None)
    return outputs(ids, labels, valid, layout, segments, options)


def content(lengths: np.ndarray, layout: RowLayout | None,
            length: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """bool[rows, length]: the rows' content (not padding); and the segments of packed rows (None otherwise)."""
    segments = None if layout is None else layout.segments()
    filled = lengths if layout is None else layout.fill
    return np.arange(length)[None, :] < filled[:, None], segments


def choose(options: MaskingOptions, ids: np.ndarray, word_starts: np.ndarray, valid: np.ndarray,
           segments: tuple[np.ndarray, np.ndarray] | None, keys: np.ndarray,
           mlm_probability: float | None = None) -> Choice:
    """The candidates of every unit visited in a random order and taken by the rule, within the unit's budget."""
    p = options.mlm_probability if mlm_probability is None else mlm_probability
    bounds = None if segments is None else segments[0]
    maskable = maskable_tokens(ids, valid, options)
    groups = word_groups(maskable, word_starts, None if bounds is None else bounds[:-1], options.per_document_budget)
    if options.masking != "word":
        groups = word_spans(groups, bounds, ids.shape[1], keys, options)
    if groups.starts.shape[0] == 0 or p <= 0:
        return Choice(groups, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    order = visiting_order(stream(groups.starts, np.repeat(keys, groups.row_counts), SALT_GROUP), groups.unit_counts)
    ranks = RULES[options.rule](groups.sizes[order], groups.unit_counts, budgets(p, groups.unit_maskable))
    return Choice(groups, order, order[ranks])


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
    """Whole-word groups (`core.groups`) of the padded batch, each row and each segment of ``seg_starts`` a unit."""
    flat = maskable.reshape(-1)
    unit_starts = np.arange(0, flat.shape[0], maskable.shape[1])
    if seg_starts is not None:
        unit_starts = np.concatenate([unit_starts, seg_starts])
    starts, sizes, gstart = core_groups.word_groups(flat, word_starts.reshape(-1), unit_starts)
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


def word_spans(groups: Groups, bounds: np.ndarray | None, length: int, keys: np.ndarray,
               options: MaskingOptions) -> Groups:
    """The "ngram" and "span" candidates: every run of adjacent groups inside one segment (no token that is not
    maskable between them) cut into spans of lengths drawn from the mode (``spans.tile_runs``)."""
    starts, sizes = groups.starts, groups.sizes
    rows = np.arange(keys.shape[0] + 1, dtype=np.int64) * length
    part = np.searchsorted(rows if bounds is None else bounds, starts, side="right")  # each group's segment (or row)
    run_start = np.ones(starts.shape[0], dtype=bool)
    run_start[1:] = (starts[1:] != starts[:-1] + sizes[:-1]) | (part[1:] != part[:-1])
    h = stream(starts, np.repeat(keys, groups.row_counts), SALT_SPAN)
    first, words, drawn = tile_runs(run_start, draw_lengths(h, options.span_thresholds))
    tokens_before = offsets_of(sizes)
    span_starts = starts[first]
    row_counts = np.diff(np.searchsorted(span_starts, rows))
    per_unit = bounds is not None and options.per_document_budget
    unit_counts = np.diff(np.searchsorted(span_starts, bounds)) if per_unit else row_counts
    return Groups(span_starts, tokens_before[first + words] - tokens_before[first], row_counts, unit_counts,
                  groups.unit_maskable, words, drawn)


def replace(flat_ids: np.ndarray, chosen: np.ndarray, keys: np.ndarray, length: int, options: MaskingOptions,
            spans: Choice | None = None) -> None:
    """Each chosen token becomes the mask id, a random ordinary id, or stays (0.8 / 0.1 / 0.1 by default): drawn
    for every token independently, or once per taken span of ``spans`` (whose tokens ``chosen`` lists in order)."""
    chosen_keys = keys[chosen // length]
    if spans is None:
        u = unit_interval(stream(chosen, chosen_keys, SALT_ACTION))
    else:
        starts = spans.candidates.starts[spans.taken]
        u = np.repeat(unit_interval(stream(starts, keys[starts // length], SALT_ACTION)),
                      spans.candidates.sizes[spans.taken])
    to_mask = u < options.mask_replace_prob
    to_random = ~to_mask & (u < options.mask_replace_prob + options.random_replace_prob)
    flat_ids[chosen[to_mask]] = options.mask_id
    at = chosen[to_random]
    if at.size:
        h = stream(at, chosen_keys[to_random], SALT_RANDOM_ID)
        h %= np.uint64(options.random_pool.shape[0])
        flat_ids[at] = options.random_pool[h.view(np.int64)]


def outputs(ids: np.ndarray, labels: np.ndarray, valid: np.ndarray, layout: RowLayout | None,
            segments: tuple[np.ndarray, np.ndarray] | None, options: MaskingOptions) -> dict[str, Any]:
    """The batch; packed rows add ``position_ids`` and, if asked, the varlen bounds; ``document_ids`` if asked;
    with ``block_attention`` the 2-D padding mask becomes the 4-D per-piece mask."""
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
    if options.return_document_ids or options.block_attention:
        documents = document_ids(attention, layout)
        if options.return_document_ids:
            out["document_ids"] = documents
        if options.block_attention:
            out["attention_mask"] = block_mask(documents)
    return out


def varlen_bounds(bounds: np.ndarray) -> tuple[np.ndarray, int]:
    """``cu_seqlens`` (int32) and ``max_seqlen`` of segment bounds, as varlen attention kernels take them."""
    return bounds.astype(np.int32), int(np.diff(bounds).max(initial=0))
