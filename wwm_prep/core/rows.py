"""The packed-row layout and the provenance of each piece: the one module that knows both.

A sequence row holds *pieces* back to back from position 0, each `<CLS> … <SEP>`; its `doc_lengths` are the
pieces' lengths (the two specials included), and the rest of the row is `<PAD>`. Pack writes rows by this
layout; the collator, the model (`segments_and_positions`), stats and inspect read them back by it. Every
position is computed for a whole batch of rows at once, on the flattened `rows × seq_len` array.

Each piece's provenance, in `doc_sources`, is `subset:source:line:k/n`, with `@copy` after it for the extra
passes that a subset or length weight above 1 makes: piece k of the n pieces of the document at `line` of `source`.

NumPy only: the collator imports this, and must stay light.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wwm_prep.core.arrays import offsets_of

DocLengths = Sequence[Sequence[int]] | np.ndarray | None  # per row, the lengths of its pieces
#: A `doc_sources` entry; every group is named, so that Arrow's `extract_regex` can take it whole.
SOURCE_PATTERN = r"^(?P<subset>[^:]*):(?P<source>.*):(?P<line>\d+):(?P<k>\d+)/(?P<n>\d+)(?:@(?P<copy>\d+))?$"
#: Pattern and replacement that turn a piece's entry into its document's (k/n dropped, the copy kept).
DOCUMENT_OF_PIECE = (r":\d+/\d+(@\d+)?$", r"\1")
_SOURCE = re.compile(SOURCE_PATTERN)


@dataclass(frozen=True)
class PieceSource:
    """Where a packed piece comes from."""

    subset: str
    source: str  # the input file, relative to its corpus root
    line: int  # the document's line in that file
    k: int  # this is piece k (1-based) ...
    n: int  # ... of the n pieces the document was cut into
    copy: int = 0  # which pass over the document its weight made (0: the first)

    def __str__(self) -> str:
        return self.entries(self.subset, self.source, [self.line], [self.k], [self.n], self.copy)[0]

    @staticmethod
    def entries(subset: str, source: str, lines: Sequence[int], k: Sequence[int], n: Sequence[int], copy: int = 0
                ) -> list[str]:
        """The `doc_sources` entries of many pieces of one source at once: what pack writes for every batch."""
        head, tail = f"{subset}:{source}:", f"@{copy}" if copy else ""
        return [f"{head}{line}:{a}/{b}{tail}" for line, a, b in zip(lines, k, n)]

    @classmethod
    def parse(cls, text: str) -> PieceSource | None:
        """The parts of a `doc_sources` entry, or None for one written otherwise."""
        m = _SOURCE.match(text)
        if m is None:
            return None
        return cls(m["subset"], m["source"], int(m["line"]), int(m["k"]), int(m["n"]), int(m["copy"] or 0))


def subset_of(entry: str) -> str:
    """The subset of a `doc_sources` entry (what comes before its first colon)."""
    return entry.split(":", 1)[0]


@dataclass(frozen=True)
class RowLayout:
    """Where the pieces of packed rows lie: `lengths` of the pieces row after row, `counts` of pieces per row."""

    seq_len: int
    lengths: np.ndarray  # int64[pieces]
    counts: np.ndarray  # int64[rows]

    @classmethod
    def of(cls, doc_lengths: Any, seq_len: int, room: np.ndarray | None = None) -> RowLayout:
        """The layout of rows from their `doc_lengths`: one sequence per row (lists, arrays, 2-D arrays padded
        with zeros) or an Arrow list column. Pieces of length 0 are dropped. ValueError for lengths that are
        negative or overfill a row: `seq_len`, or with `room` each row's own tokens (rows padded to a batch)."""
        if hasattr(doc_lengths, "combine_chunks"):  # a pyarrow ChunkedArray (duck-typed: pyarrow is never imported)
            doc_lengths = doc_lengths.combine_chunks()
        if hasattr(doc_lengths, "offsets") and hasattr(doc_lengths, "flatten"):  # a pyarrow ListArray
            offsets = np.asarray(doc_lengths.offsets.to_numpy(), dtype=np.int64)
            lengths = np.asarray(doc_lengths.flatten().to_numpy(zero_copy_only=False), dtype=np.int64)
            counts = np.diff(offsets)
        else:
            parts = [np.asarray(_numpy(d)).reshape(-1).astype(np.int64) for d in doc_lengths]
            counts = np.fromiter((p.shape[0] for p in parts), dtype=np.int64, count=len(parts))
            lengths = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        layout = cls(int(seq_len), lengths, counts)
        layout._check(seq_len if room is None else room, "seq_len" if room is None else "its tokens")
        keep = lengths > 0
        if keep.all():
            return layout
        return cls(int(seq_len), lengths[keep], np.bincount(layout.row_of[keep], minlength=layout.rows))

    def _check(self, room: int | np.ndarray, what: str) -> None:
        bad = np.flatnonzero(np.bincount(self.row_of, weights=self.lengths < 0, minlength=self.rows) > 0)
        over = np.flatnonzero(self.fill > room)
        if bad.size or over.size:
            r = int(min(bad.min(initial=self.rows), over.min(initial=self.rows)))
            limit = int(np.broadcast_to(room, (self.rows,))[r])
            raise ValueError(f"row {r}: doc_lengths {self.row_lengths(r).tolist()} must be >= 0 and sum to at most "
                             f"{what} ({limit}); they sum to {int(self.fill[r])}")

    @property
    def rows(self) -> int:
        return int(self.counts.shape[0])

    @property
    def row_of(self) -> np.ndarray:
        """The row of each piece."""
        return np.repeat(np.arange(self.rows), self.counts)

    @property
    def fill(self) -> np.ndarray:
        """Tokens of each row that are not padding."""
        return np.bincount(self.row_of, weights=self.lengths, minlength=self.rows).astype(np.int64)

    def row_lengths(self, r: int) -> np.ndarray:
        start = int(self.counts[:r].sum())
        return self.lengths[start : start + int(self.counts[r])]

    @property
    def starts(self) -> np.ndarray:
        """Flat position of each piece's first token, its `<CLS>`."""
        row_of = self.row_of
        fill = self.fill
        return offsets_of(self.lengths)[:-1] - offsets_of(fill)[row_of] + row_of * self.seq_len

    @property
    def ends(self) -> np.ndarray:
        """Flat position of each piece's last token, its `<SEP>`."""
        return self.starts + self.lengths - 1

    def filled(self) -> np.ndarray:
        """bool[rows × seq_len]: the positions inside pieces (not padding)."""
        return (np.arange(self.seq_len) < self.fill[:, None]).reshape(-1)

    def content(self) -> np.ndarray:
        """bool[rows × seq_len]: the document tokens (inside pieces, neither `<CLS>` nor `<SEP>`)."""
        content = self.filled()
        content[self.starts] = False
        content[self.ends] = False
        return content

    def piece_index(self) -> np.ndarray:
        """int64[rows × seq_len]: each position's piece, counted within its row from 0; -1 in the padding."""
        out = np.full(self.rows * self.seq_len, -1, dtype=np.int64)
        within = np.arange(self.lengths.shape[0]) - np.repeat(offsets_of(self.counts)[:-1], self.counts)
        out[self.filled()] = np.repeat(within, self.lengths)
        return out

    def segments(self) -> tuple[np.ndarray, np.ndarray]:
        """Segment bounds (int64[S + 1]) and `position_ids` (int64[rows × seq_len]) of the flattened rows.

        The segments are each row's pieces, then its padding tail (empty ones dropped), so the bounds cover
        the whole batch (`bounds[-1] == rows * seq_len`) as FlashAttention's varlen kernels expect; positions
        restart at every segment.
        """
        tails = np.cumsum(self.counts) + np.arange(self.rows)
        is_tail = np.zeros(self.lengths.shape[0] + self.rows, dtype=bool)
        is_tail[tails] = True
        segments = np.empty(is_tail.shape[0], dtype=np.int64)
        segments[tails] = self.seq_len - self.fill
        segments[~is_tail] = self.lengths
        segments = segments[segments > 0]
        edges = offsets_of(segments)
        position_ids = np.arange(self.rows * self.seq_len, dtype=np.int64)
        position_ids -= np.repeat(edges[:-1], segments)
        return edges, position_ids


def segments_and_positions(input_ids: np.ndarray, attention_mask: np.ndarray | None = None,
                           position_ids: np.ndarray | None = None,
                           doc_lengths: DocLengths = None) -> tuple[np.ndarray, np.ndarray]:
    """Per token: which piece it belongs to (-1 = padding) and its RoPE position.

    Pieces come from `doc_lengths` (per row; tokens past their sum are padding), else from
    `position_ids` (a piece starts wherever the position does not follow the previous one, as
    in a collator's output), else the whole row is one piece. `attention_mask` == 0 marks
    padding in every case. Positions are `position_ids` if given, else restart at each piece
    (0 in padding).
    """
    b, n = input_ids.shape
    seg = np.zeros((b, n), dtype=np.int64)
    if doc_lengths is not None:
        if len(doc_lengths) != b:
            raise ValueError(f"doc_lengths has {len(doc_lengths)} rows, input_ids {b}")
        layout = RowLayout.of(doc_lengths, n)
        seg = layout.piece_index().reshape(b, n)
        pos = np.where(seg >= 0, layout.segments()[1].reshape(b, n), 0)
    elif position_ids is not None:
        pos = np.asarray(position_ids, dtype=np.int64).reshape(b, n)
        starts = np.ones((b, n), dtype=bool)
        starts[:, 1:] = pos[:, 1:] != pos[:, :-1] + 1
        seg = np.cumsum(starts, axis=1) - 1
    else:
        pos = np.broadcast_to(np.arange(n), (b, n)).copy()
    if attention_mask is not None:
        keep = np.asarray(attention_mask).reshape(b, n) != 0
        seg = np.where(keep, seg, -1)
        if position_ids is None and doc_lengths is None:  # left padding: count only real tokens
            pos = np.maximum(np.cumsum(keep, axis=1) - 1, 0)
    if position_ids is not None:
        pos = np.asarray(position_ids, dtype=np.int64).reshape(b, n)
    return seg, pos


def _numpy(x: Any) -> Any:
    """A CPU tensor as a NumPy array (torch is never imported here); anything else as it is."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else x
