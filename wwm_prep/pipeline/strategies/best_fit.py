"""best-fit: best-fit decreasing over a bounded window of pieces, the default (the fullest rows)."""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from wwm_prep.pipeline.strategies.base import Strategy, StrategyOption

if TYPE_CHECKING:
    from wwm_prep.pipeline.packing import Piece

_ARRIVAL_BITS = 40  # keys: size << 40 | (2**40 - 1 - arrival), so ties go to the earlier piece
_ARRIVAL_MASK = (1 << _ARRIVAL_BITS) - 1


def best_fit(batches: Iterable[list[Piece]], seq_len: int, window: int) -> Iterator[list[Piece]]:
    """Rows by best-fit decreasing over a window of pieces.

    The longest waiting piece opens a row; the row is then completed best-fit, each time with the longest
    waiting piece that still fits, until none does. Short pieces thus wait for the small gaps that long ones
    leave, and fill them. Rows are made while at least `window` pieces wait, then from what remains at the
    end. Ties go to the piece that arrived first: the result depends on nothing but the input order.
    """
    keys: list[int] = []  # sorted: size << _ARRIVAL_BITS | (_ARRIVAL_MASK - arrival)
    waiting: dict[int, Piece] = {}

    def row() -> list[Piece]:
        first = waiting.pop(keys.pop())
        pieces, room = [first], seq_len - first.size
        while (i := bisect_right(keys, (room << _ARRIVAL_BITS) | _ARRIVAL_MASK) - 1) >= 0:
            pieces.append(waiting.pop(keys.pop(i)))
            room -= pieces[-1].size
        return pieces

    arrival = 0
    for batch in batches:
        for piece in batch:
            key = (piece.size << _ARRIVAL_BITS) | (_ARRIVAL_MASK - arrival)
            insort(keys, key)
            waiting[key] = piece
            arrival += 1
        while len(keys) >= window:
            yield row()
    while keys:
        yield row()


STRATEGY = Strategy("best-fit", "best-fit decreasing over a window of pieces", best_fit,
                    (StrategyOption("window", "pieces weighed at once; bounds memory", 4096),))
