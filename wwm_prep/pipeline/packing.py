"""Cutting documents into pieces and packing pieces into rows: the algorithms of `pack`, apart from its I/O.

Every document becomes one or more *pieces*, each wrapped `<CLS> … <SEP>` (the layout is `core.rows`'s); pieces
are packed whole into rows, which are padded with `<PAD>`. A document longer than a row is cut only where a
whole-word group starts (at a sentence end when one is close before the limit), so a word never crosses a row
boundary. The result depends only on the order pieces arrive in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from wwm_prep.core.arrays import offsets_of
from wwm_prep.core.files import temp_path
from wwm_prep.core.rows import RowLayout
from wwm_prep.text.tokenizer import open_tokenizer, tokenizer_sha256

SENTENCE_REACH = 32  # a sentence end is "close" to a cut within 1/32 of a row before the limit


class Piece(NamedTuple):
    """A document, or the piece of one, that goes into a row whole (a tuple: pack makes one per document)."""

    ids: np.ndarray  # int32, copied out of its batch so that a waiting piece never pins a whole batch
    word_starts: np.ndarray  # uint8
    source: str

    @property
    def size(self) -> int:
        """Tokens it takes in a row, `<CLS>` and `<SEP>` included."""
        return len(self.ids) + 2


@dataclass(frozen=True)
class Specials:
    cls: int
    sep: int
    pad: int


@dataclass(frozen=True)
class SentenceEnds:
    """Per-piece tables that find sentence ends among the group starts without decoding text."""

    path: Path
    ends: np.ndarray  # bool[vocab]: the piece's text ends with 。！？ or a newline
    newline: np.ndarray  # bool[vocab]: the piece's text starts with a newline

    def at(self, ids: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Which group starts (positions in `ids`, none at 0) follow a sentence end or begin a line."""
        return self.ends[ids[starts - 1]] | self.newline[ids[starts]]


def load_sentence_ends(path: Path, cache: Path | None = None) -> SentenceEnds:
    """Tables for a tokenizer, from what its pieces spell: cuts then never need the text. With `cache`,
    they are kept there by the tokenizer's sha256, since loading the model is most of what pack does before its
    workers start, and every run and slice of an array job would do it again."""
    kept = cache / "sentence-ends" / f"{tokenizer_sha256(path)}.npz" if cache is not None else None
    if kept is not None and kept.is_file():
        try:
            with np.load(kept) as tables:
                return SentenceEnds(path, tables["ends"], tables["newline"])
        except (OSError, ValueError, KeyError):  # damaged: made anew
            pass
    tables = open_tokenizer(path).tables
    ends, newline = tables.sentence_end, tables.newline
    if kept is not None:
        try:
            kept.parent.mkdir(parents=True, exist_ok=True)
            with open(temp_path(kept), "wb") as f:
                np.savez(f, ends=ends, newline=newline)
            os.replace(temp_path(kept), kept)
        except OSError:  # a cache that cannot be written only costs the next run the load
            temp_path(kept).unlink(missing_ok=True)
    return SentenceEnds(path, ends, newline)


# ---------------------------------------------------------------------------------------------- cutting


def cut_bounds(ids: np.ndarray, word_starts: np.ndarray, start: int, end: int, capacity: int, ends: SentenceEnds | None,
          counts: dict[str, int]) -> list[int]:
    """Bounds of the pieces of the document `[start, end)`: each at most `capacity` tokens, cut at the last
    sentence end within `capacity // SENTENCE_REACH` tokens before the limit, else at the last group start."""
    reach = capacity // SENTENCE_REACH
    bounds = [start]
    while end - bounds[-1] > capacity:
        at, limit = bounds[-1], bounds[-1] + capacity
        near = max(at + 1, limit - reach)
        starts = near + np.flatnonzero(word_starts[near : limit + 1])
        sentences = starts[ends.at(ids, starts)] if ends is not None else starts[:0]
        if sentences.size:
            counts["sentence_cuts"] += 1
            starts = sentences
        elif not starts.size:
            starts = at + 1 + np.flatnonzero(word_starts[at + 1 : near])
        if starts.size:
            bounds.append(int(starts[-1]))
        else:  # one group longer than a row: split it
            bounds.append(limit)
            counts["group_splits"] += 1
    bounds.append(end)
    counts["cuts"] += len(bounds) - 2
    return bounds


# ---------------------------------------------------------------------------------------------- rows


def columns(rows: list[list[Piece]], seq_len: int, specials: Specials) -> dict[str, pa.Array]:
    """Sequence-schema columns of rows: each column is one concatenation of its pieces with the specials and
    padding between them, so every token is copied once (a loop over pieces, never over tokens)."""
    pieces = [p for row in rows for p in row]
    per_row = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    sizes = np.fromiter((p.size for p in pieces), dtype=np.int64, count=len(pieces))
    layout = RowLayout(seq_len, sizes, per_row)
    cls, sep = np.array([specials.cls], dtype=np.int32), np.array([specials.sep], dtype=np.int32)
    pad, zeros = np.full(seq_len, specials.pad, dtype=np.int32), np.zeros(seq_len, dtype=np.uint8)
    id_parts: list[np.ndarray] = []
    start_parts: list[np.ndarray] = []
    for row, room in zip(rows, (seq_len - layout.fill).tolist()):
        for piece in row:
            id_parts += (cls, piece.ids, sep)
            start_parts += (zeros[:1], piece.word_starts, zeros[:1])
        id_parts.append(pad[:room])
        start_parts.append(zeros[:room])
    ids = np.concatenate(id_parts)
    word_starts = np.concatenate(start_parts)
    word_starts[layout.starts + 1] = 1  # a piece cut inside an over-long group still starts a group of its own
    row_offsets = pa.array(np.arange(len(rows) + 1, dtype=np.int32) * seq_len)
    piece_offsets = pa.array(offsets_of(per_row).astype(np.int32))
    return {
        "input_ids": pa.ListArray.from_arrays(row_offsets, pa.array(ids)),
        "word_starts": pa.ListArray.from_arrays(row_offsets, pa.array(word_starts)),
        "doc_lengths": pa.ListArray.from_arrays(piece_offsets, pa.array(sizes.astype(np.int32))),
        "doc_sources": pa.ListArray.from_arrays(piece_offsets, pa.array([p.source for p in pieces], type=pa.string())),
    }
