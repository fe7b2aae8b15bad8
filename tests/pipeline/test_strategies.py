"""The packing strategies' rules on hand-made pieces: best-fit decreasing within its window, greedy in stream order."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from wwm_prep.pipeline.packing import Piece
from wwm_prep.pipeline.strategies.best_fit import best_fit
from wwm_prep.pipeline.strategies.greedy import greedy


def make_pieces(sizes: list[int]) -> list[Piece]:
    return [Piece(np.full(s - 2, 9, np.int32), np.ones(s - 2, np.uint8), f"p{i}") for i, s in enumerate(sizes)]


def test_best_fit_completes_rows_with_the_longest_piece_that_fits() -> None:
    rows = list(best_fit([make_pieces([60, 4, 50, 14, 64, 30, 30])], 64, window=100))
    assert [[p.source for p in row] for row in rows] == [["p4"], ["p0", "p1"], ["p2", "p3"], ["p5", "p6"]]


def test_best_fit_holds_at_most_a_window_of_pieces() -> None:
    rng = np.random.default_rng(0)
    batches = [make_pieces(rng.integers(3, 200, size=10).tolist()) for _ in range(200)]
    arrived = 0

    def stream() -> Iterator[list[Piece]]:
        nonlocal arrived
        for batch in batches:
            arrived += len(batch)
            yield batch

    placed = 0
    for row in best_fit(stream(), 256, window=64):
        assert arrived - placed <= 64 - 1 + 10  # the window, plus the batch that filled it
        placed += len(row)
        assert sum(p.size for p in row) <= 256
    assert placed == 2000


def test_greedy_keeps_stream_order() -> None:
    rows = list(greedy([make_pieces([30, 30]), make_pieces([10, 40, 20])], 64))
    assert [[p.source for p in row] for row in rows] == [["p0", "p1"], ["p0", "p1"], ["p2"]]
