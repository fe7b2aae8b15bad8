"""Length weights and length bands: the spec parses as written, every document takes the weight of the largest
bound it reaches, the passes take a document as often as its weight says, and token shares add up."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.lengths import BANDS, LengthWeights, band_label, token_shares
from wwm_prep.pipeline.partitions import Source

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)
weights = st.floats(0, 4, allow_nan=False).map(lambda w: round(w, 2))
specs = st.dictionaries(st.integers(0, 10_000), weights, max_size=4)
lengths = st.lists(st.integers(0, 20_000), max_size=40).map(lambda v: np.array(v, dtype=np.int64))


def test_parse() -> None:
    spec = LengthWeights.parse("4096:3, 0:0.5,")
    assert (spec.bounds, spec.weights) == ((0, 4096), (0.5, 3.0))
    assert LengthWeights.parse("2k:2") == LengthWeights((2048,), (2.0,))
    assert not LengthWeights.parse(None) and not LengthWeights.parse("")
    assert LengthWeights.from_record(spec.record()) == spec and str(spec) == "0:0.5,4096:3"
    for bad in ("4096", "x:1", "-1:2", "0:-1", "0:nan", "0:1,0:2", "0:inf"):
        with pytest.raises(WwmPrepError, match="length weights"):
            LengthWeights.parse(bad)


@SETTINGS
@given(specs, lengths)
def test_a_document_takes_the_weight_of_the_largest_bound_it_reaches(spec: dict[int, float],
                                                                     docs: np.ndarray) -> None:
    by_length = LengthWeights(tuple(sorted(spec)), tuple(spec[b] for b in sorted(spec)))
    expected = [spec[max(b for b in spec if b <= n)] if any(b <= n for b in spec) else 1.0 for n in docs.tolist()]
    assert by_length.of(docs).tolist() == expected


def source(weight: float, by_length: LengthWeights, copy: int) -> Source:
    return Source("u", "s", "f", Path("x"), "0", None, 0, copy, 1.0, weight, by_length)


@SETTINGS
@given(weights, specs, lengths)
def test_the_passes_take_each_document_as_often_as_its_weight(weight: float, spec: dict[int, float],
                                                               docs: np.ndarray) -> None:
    """Subset × length weight w: passes 0 … ⌈w⌉−1 take it with chances that add up to w, all but the last 1."""
    by_length = LengthWeights(tuple(sorted(spec)), tuple(spec[b] for b in sorted(spec)))
    w = weight * by_length.of(docs)
    top = math.ceil(float(w.max())) if docs.size else 0
    chances = np.array([source(weight, by_length, copy).chances(docs) for copy in range(top + 2)])
    assert np.allclose(chances.sum(axis=0), w)
    assert (np.diff(chances, axis=0) <= 0).all()  # a pass takes no more than the one before it
    assert (chances[:-1][chances[1:] > 0] == 1).all()  # only the last pass a document reaches subsamples it
    assert (chances[top:] == 0).all()


@SETTINGS
@given(lengths, st.lists(st.integers(0, 40), max_size=4), st.integers(0, 2**32 - 1))
def test_a_shard_read_in_batches_or_whole_takes_the_same_documents(docs: np.ndarray, cuts: list[int],
                                                                    seed: int) -> None:
    """What `pack` draws batch by batch, `pack --plan` draws for the whole shard at once."""
    pass_ = source(1.0, LengthWeights((0, 4096), (0.5, 3.0)), 0)
    whole = pass_.take(pass_.draws(seed), docs)
    draws = pass_.draws(seed)
    bounds = [0, *sorted(c for c in cuts if c <= docs.size), docs.size]
    batched = np.concatenate([pass_.take(draws, docs[a:b]) for a, b in zip(bounds, bounds[1:])])
    assert whole.tolist() == batched.tolist()


@SETTINGS
@given(lengths, st.lists(st.integers(0, 3), min_size=40, max_size=40))
def test_token_shares_add_up(docs: np.ndarray, seen: list[int]) -> None:
    counts = np.array(seen[: docs.size], dtype=np.int64)
    rows = token_shares(docs, counts)
    assert [r["from"] for r in rows] == list(BANDS) and rows[-1]["to"] is None
    assert sum(r["tokens"] for r in rows) == int(np.dot(docs, counts))
    if np.dot(docs, counts):
        assert sum(r["share"] for r in rows) == pytest.approx(1, abs=1e-5)
    for r in rows:  # each band holds exactly the tokens of the lengths within it
        hi = r["to"] if r["to"] is not None else math.inf
        assert r["tokens"] == sum(n * c for n, c in zip(docs.tolist(), counts.tolist()) if r["from"] <= n <= hi)


def test_band_labels() -> None:
    assert [band_label(r) for r in token_shares(np.zeros(0))] == ["< 512", "512–2k", "2k–4k", "4k–8k", "≥ 8k"]
