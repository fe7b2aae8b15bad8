"""Span lengths of the n-gram and span modes, and the cutting of runs of groups into spans."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wwm_prep.train.spans import draw_lengths, length_pmf, length_thresholds, tile_runs


def test_length_distributions_are_the_papers():
    assert np.allclose(length_pmf("ngram", 3, 0.2, 10), [6 / 11, 3 / 11, 2 / 11])  # Megatron: weights 1, 1/2, 1/3
    span = length_pmf("span", 3, 0.2, 10)
    assert span.shape == (10,) and np.isclose(span.sum(), 1.0)
    assert np.allclose(span[1:] / span[:-1], 0.8)  # geometric ...
    assert round(float(np.arange(1, 11) @ span), 2) == 3.8  # ... truncated and renormalised: SpanBERT's mean 3.8
    assert length_pmf("word", 3, 0.2, 10).tolist() == [1.0]
    assert length_pmf("span", 3, 1.0, 10)[0] == 1.0


def test_draws_follow_the_distribution():
    pmf = length_pmf("span", 3, 0.2, 10)
    thresholds = length_thresholds(pmf)
    assert thresholds.dtype == np.uint64 and (np.diff(thresholds.astype(np.float64)) > 0).all()
    # an even grid of 64-bit values lands in each length in proportion to its probability
    grid = (np.arange(100_000, dtype=np.float64) + 0.5) * 2.0**64 / 100_000
    lengths = draw_lengths(grid.astype(np.uint64), thresholds)
    assert np.abs(np.bincount(lengths, minlength=11)[1:] / 100_000 - pmf).max() < 1e-4
    assert draw_lengths(np.array([0, 2**64 - 1], dtype=np.uint64), thresholds).tolist() == [1, 10]
    assert draw_lengths(np.array([2**64 - 1], dtype=np.uint64), length_thresholds(np.ones(1))).tolist() == [1]


@given(st.lists(st.tuples(st.integers(1, 30), st.lists(st.integers(1, 6), min_size=30, max_size=30)),
                min_size=1, max_size=8))
def test_runs_are_cut_into_consecutive_spans_of_the_drawn_lengths(runs):
    """Every run is covered exactly, span after span; the k-th span of a run has the k-th length drawn for it,
    except that the last one stops at the run's end."""
    run_start = np.concatenate([np.eye(1, m, dtype=bool)[0] for m, _ in runs])
    lengths = np.concatenate([np.asarray(draws[:m], dtype=np.int64) for m, draws in runs])
    first, words, drawn = tile_runs(run_start, lengths)
    at = 0
    spans = iter(zip(first.tolist(), words.tolist(), drawn.tolist()))
    for m, draws in runs:
        covered = 0
        for k in range(m):
            f, w, d = next(spans)
            assert f == at + covered and d == draws[k]
            assert w == min(d, m - covered)
            covered += w
            if covered == m:
                break
        at += m
    assert next(spans, None) is None


def test_no_groups():
    assert [a.size for a in tile_runs(np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64))] == [0, 0, 0]


@pytest.mark.parametrize("masking", ["ngram", "span"])
def test_lengths_are_drawn_in_groups_not_tokens(masking):
    """Spans count whole-word groups: a run of groups of several tokens gives spans of several groups each."""
    from wwm_prep.train.collator import WholeWordMaskCollator

    # one piece of 60 groups of 3 tokens each
    ids = np.concatenate([[5], np.arange(10, 190), [6]])
    ws = np.concatenate([[0], np.tile([1, 0, 0], 60), [0]])
    c = WholeWordMaskCollator(vocab_size=300, special_ids=range(8), masking=masking, mlm_probability=0.5, seed=2)
    spans = c.choice([{"input_ids": ids, "word_starts": ws, "doc_lengths": np.array([182])}]).candidates
    assert (spans.sizes == 3 * spans.words).all() and spans.words.sum() == 60 and spans.words.max() > 1
