"""greedy: next-fit in stream order, the least memory (one row of pieces)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from wwm_prep.pipeline.strategies.base import Strategy

if TYPE_CHECKING:
    from wwm_prep.pipeline.packing import Piece


def greedy(batches: Iterable[list[Piece]], seq_len: int) -> Iterator[list[Piece]]:
    """Rows in stream order: pieces go into the current row until the next does not fit (next-fit)."""
    pieces: list[Piece] = []
    room = seq_len
    for batch in batches:
        for piece in batch:
            if piece.size > room:
                yield pieces
                pieces, room = [], seq_len
            pieces.append(piece)
            room -= piece.size
    if pieces:
        yield pieces


STRATEGY = Strategy("greedy", "stream order, least memory", greedy)
