"""Budgeted choice of groups: which candidate groups a unit (a row, or a packed piece) masks.

The masking steps hand over the candidates of every unit of a batch at once, already in visiting order (see
:func:`visiting_order`); a *rule* in :data:`RULES` returns the groups it takes. A masking mode with other
candidates (n-grams, spans) reuses the rules as they are; one with another way of choosing adds a rule.
Nothing here loops over groups or tokens in Python.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from wwm_prep.core.arrays import offsets_of


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``range(s, s + c)`` for each (s, c), without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    return np.repeat(starts - offsets, counts) + np.arange(total, dtype=np.int64)


def visiting_order(h: np.ndarray, unit_counts: np.ndarray) -> np.ndarray:
    """The order groups are visited in: unit by unit, by random key ``h`` (uint64, consumed) within a unit.

    One sort of 64-bit words holding (unit | top bits of the key | group index); for batches of many millions
    of groups, where fewer than 32 bits of key would remain, a slower lexicographic sort on the full keys.
    """
    n_groups, n_units = h.shape[0], unit_counts.shape[0]
    index_bits = max(1, int(n_groups - 1).bit_length())
    unit_bits = max(1, int(n_units - 1).bit_length())
    key_bits = 64 - index_bits - unit_bits
    if key_bits < 32:
        return np.lexsort((h, np.repeat(np.arange(n_units), unit_counts)))
    h >>= np.uint64(64 - key_bits)
    h <<= np.uint64(index_bits)
    h |= np.arange(n_groups, dtype=np.uint64)
    h |= np.repeat(np.arange(n_units, dtype=np.uint64) << np.uint64(64 - unit_bits), unit_counts)
    h.sort()
    h &= np.uint64((1 << index_bits) - 1)
    return h.view(np.int64)


def _prefix(sizes: np.ndarray, counts: np.ndarray, budget: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per unit: its first group, its end, and the first group whose running total exceeds the budget."""
    ustart = np.cumsum(counts) - counts
    uend = ustart + counts
    cs = offsets_of(sizes)  # cs[i] = total size of the groups before i (in visiting order)
    base = cs[ustart]
    stop = np.minimum(np.searchsorted(cs, base + budget, side="right") - 1, uend)
    stop = np.maximum(stop, ustart)
    return ustart, uend, stop, budget - (cs[stop] - base)


def take_prefix(sizes: np.ndarray, counts: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """Take groups while the running total fits; stop at the first that does not.

    One cumulative sum and one binary search per unit.
    """
    ustart, _, stop, _ = _prefix(sizes, counts, budget)
    return ranges(ustart, stop - ustart)


def take_skip(sizes: np.ndarray, counts: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """BERT's ``create_pretraining_data`` loop: a group that does not fit is skipped and later ones are still
    tried, so the budget is filled as far as the remaining groups allow.

    After the prefix, the capacity left is below the largest group size, and it is the scan's only state.
    The rest of the scan runs on windows of the following groups of all units at once (widths 32, 128, 512,
    ...); windows are almost always one.
    """
    ustart, uend, stop, cap = _prefix(sizes, counts, budget)
    taken = [ranges(ustart, stop - ustart)]
    ptr = stop + 1  # the group at `stop` overflowed: skipped for good
    width = 32
    while True:
        act = np.flatnonzero((cap > 0) & (ptr < uend))
        if act.size == 0:
            break
        window = ptr[act, None] + np.arange(width, dtype=np.int64)[None, :]
        took, cap[act] = _fill_window(sizes, window, window < uend[act, None], cap[act])
        taken.append(window[took])
        ptr[act] += width
        width *= 4
    return np.concatenate(taken) if len(taken) > 1 else taken[0]


def _fill_window(sizes: np.ndarray, window: np.ndarray, valid: np.ndarray, cap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The skip rule over one window per unit, in rounds; returns what it took and the capacity left.

    A round takes, per unit, the longest run of still-eligible groups (size <= capacity) whose sum fits, then
    drops the group that overflowed (it can never fit again, as the capacity only decreases). Every round
    takes a group in every unit still in play, so rounds are few (at most the capacity).
    """
    s = sizes[np.minimum(window, sizes.shape[0] - 1)]
    live = valid & (s <= cap[:, None])
    took = np.zeros(window.shape, dtype=bool)
    while live.any():
        fits = live & (np.cumsum(np.where(live, s, 0), axis=1) <= cap[:, None])
        took |= fits
        cap = cap - np.where(fits, s, 0).sum(axis=1)
        over = live & ~fits
        first_over = over & (np.cumsum(over, axis=1) == 1)
        live = over & ~first_over & (s <= cap[:, None])
    return took, cap


#: Choice rules by name. Each takes the group sizes in visiting order, the number of groups of each unit and
#: each unit's budget in tokens, and returns the (visiting-order) indices of the groups taken.
RULES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "skip": take_skip,
    "prefix": take_prefix,
}


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise ValueError(f"rule must be {' or '.join(map(repr, RULES))}, not {rule!r}")
    return rule


def select_groups(sizes: np.ndarray, units: np.ndarray, budget: np.ndarray, rule: str = "skip") -> np.ndarray:
    """Which groups a rule takes (bool per group); ``units`` (non-decreasing) names each group's unit.

    ``sizes``/``units`` list the groups in visiting order, the groups of a unit contiguous; ``budget[u]`` is
    unit u's budget.
    """
    budget = np.asarray(budget, dtype=np.int64)
    counts = np.bincount(np.asarray(units, dtype=np.int64), minlength=budget.shape[0])
    take = np.zeros(len(sizes), dtype=bool)
    take[RULES[check_rule(rule)](np.asarray(sizes, dtype=np.int64), counts, budget)] = True
    return take
