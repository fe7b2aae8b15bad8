"""The budgeted choice of groups, against a literal transcription of BERT's loop."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from wwm_prep.train.selection import RULES, select_groups


def bert_skip_reference(sizes: Sequence[int], budget: int) -> list[bool]:
    """BERT's create_pretraining_data loop over groups in the given order."""
    taken, total = [], 0
    for s in sizes:
        if total >= budget or total + s > budget:
            taken.append(False)
            continue
        taken.append(True)
        total += s
    return taken



@pytest.mark.parametrize("seed", range(30))
def test_select_groups_matches_bert_loop(seed):
    rng = np.random.default_rng(seed)
    n_units = int(rng.integers(1, 6))
    counts = rng.integers(0, 60, n_units)
    units = np.repeat(np.arange(n_units), counts)
    sizes = rng.geometric(rng.uniform(0.2, 0.9), units.size)
    if seed % 3 == 0:
        sizes[rng.random(units.size) < 0.1] = rng.integers(10, 40)  # a few long groups
    budget = rng.integers(0, 40, n_units)
    take = select_groups(sizes, units, budget, "skip")
    prefix = select_groups(sizes, units, budget, "prefix")
    for u in range(n_units):
        sel = units == u
        assert take[sel].tolist() == bert_skip_reference(sizes[sel].tolist(), int(budget[u]))
        cs = np.cumsum(sizes[sel])
        stop = np.flatnonzero(cs > budget[u])
        k = stop[0] if stop.size else cs.size
        assert prefix[sel].tolist() == [j < k for j in range(cs.size)]


def test_select_groups_long_tail_scan():
    # an odd budget over groups of 2 leaves capacity 1 that only a late single-token group can use:
    # the tail scan has to run through several windows to find it
    for late in (5, 40, 150, 700, 2999):
        sizes = np.full(3000, 2)
        sizes[late] = 1
        units = np.zeros(3000, np.int64)
        for budget in (1, 7, 11):
            take = select_groups(sizes, units, np.array([budget]))
            assert take.tolist() == bert_skip_reference(sizes.tolist(), budget)
            assert int(sizes[take].sum()) == budget


def test_rules_by_name_and_unknown_rule():
    assert set(RULES) == {"skip", "prefix"}
    with pytest.raises(ValueError, match="rule must be 'skip' or 'prefix', not 'span'"):
        select_groups(np.ones(3, np.int64), np.zeros(3, np.int64), np.array([1]), "span")


def test_visiting_order_keeps_units_contiguous():
    from wwm_prep.train.selection import visiting_order

    rng = np.random.default_rng(0)
    counts = np.array([3, 0, 5, 2])
    h = rng.integers(0, 2**63, counts.sum(), dtype=np.uint64)
    order = visiting_order(h.copy(), counts)
    unit = np.repeat(np.arange(4), counts)
    assert sorted(order.tolist()) == list(range(10))
    assert unit[order].tolist() == unit.tolist()  # unit by unit, each unit's own groups
    for u in range(4):  # within a unit, by key
        keys = h[order[unit == u]]
        assert (np.diff(keys.astype(np.float64)) >= 0).all()
