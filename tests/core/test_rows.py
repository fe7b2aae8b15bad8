"""The packed-row layout and `doc_sources`, against a plain reference that walks each row piece by piece."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wwm_prep.core.rows import DOCUMENT_OF_PIECE, SOURCE_PATTERN, PieceSource, RowLayout, subset_of


@st.composite
def packed_rows(draw: st.DrawFn) -> tuple[list[list[int]], int]:
    """Rows of pieces of at least 2 tokens (a <CLS> and a <SEP>) that fit a row, some rows empty or full."""
    seq_len = draw(st.integers(2, 64))
    rows = []
    for _ in range(draw(st.integers(1, 6))):
        room, pieces = seq_len, []
        while room >= 2 and draw(st.booleans()):
            pieces.append(draw(st.integers(2, room)))
            room -= pieces[-1]
        rows.append(pieces)
    return rows, seq_len


def reference(rows: list[list[int]], seq_len: int) -> dict[str, np.ndarray]:
    """Each row walked piece by piece: where the specials are, what is content, positions and piece indices."""
    n = len(rows) * seq_len
    out = {"starts": [], "ends": [], "content": np.zeros(n, bool), "piece": np.full(n, -1), "positions": np.zeros(n)}
    bounds = [0]
    for r, pieces in enumerate(rows):
        at = r * seq_len
        for k, size in enumerate(pieces):
            out["starts"].append(at)
            out["ends"].append(at + size - 1)
            out["content"][at + 1 : at + size - 1] = True
            out["piece"][at : at + size] = k
            out["positions"][at : at + size] = np.arange(size)
            at += size
            bounds.append(at)
        if at < (r + 1) * seq_len:  # the padding tail is a segment of its own
            out["positions"][at : (r + 1) * seq_len] = np.arange((r + 1) * seq_len - at)
            bounds.append((r + 1) * seq_len)
    out["bounds"] = np.array(bounds)
    return out


@given(packed_rows())
def test_layout_matches_a_row_by_row_walk(case: tuple[list[list[int]], int]) -> None:
    rows, seq_len = case
    layout = RowLayout.of(rows, seq_len)
    ref = reference(rows, seq_len)
    assert layout.rows == len(rows)
    assert layout.fill.tolist() == [sum(p) for p in rows]
    assert layout.starts.tolist() == ref["starts"] and layout.ends.tolist() == ref["ends"]
    assert np.array_equal(layout.content(), ref["content"])
    assert np.array_equal(layout.piece_index(), ref["piece"])
    bounds, positions = layout.segments()
    assert np.array_equal(bounds, ref["bounds"]) and np.array_equal(positions, ref["positions"])


@given(packed_rows())
def test_arrow_columns_and_lists_give_the_same_layout(case: tuple[list[list[int]], int]) -> None:
    rows, seq_len = case
    column = pa.array(rows, type=pa.list_(pa.int32()))
    for source in (column, pa.chunked_array([column]), [np.asarray(r) for r in rows]):
        layout = RowLayout.of(source, seq_len)
        assert layout.lengths.tolist() == [p for r in rows for p in r]
        assert layout.counts.tolist() == [len(r) for r in rows]


def test_zero_lengths_are_no_pieces_and_bad_lengths_name_their_row() -> None:
    padded = np.array([[3, 4, 0], [10, 0, 0]])  # a 2-D array padded with zeros
    layout = RowLayout.of(padded, 10)
    assert layout.lengths.tolist() == [3, 4, 10] and layout.counts.tolist() == [2, 1]
    with pytest.raises(ValueError, match=r"row 1: .* they sum to 12"):
        RowLayout.of([[3], [8, 4]], 10)
    with pytest.raises(ValueError, match="row 0"):
        RowLayout.of([[-1, 3]], 10)


sources = st.builds(PieceSource, st.text(st.characters(blacklist_characters=":\n", blacklist_categories=("Cs",)), max_size=8),
                    st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=20),
                    st.integers(0, 10**9),
                    st.integers(1, 50), st.integers(1, 50), st.integers(0, 5))


@given(sources)
def test_doc_sources_round_trip(source: PieceSource) -> None:
    text = str(source)
    assert PieceSource.parse(text) == source
    assert subset_of(text) == source.subset
    parts = pc.extract_regex(pa.array([text]), SOURCE_PATTERN)[0].as_py()  # the pattern Arrow is given
    assert parts["subset"] == source.subset and int(parts["n"]) == source.n and parts["source"] == source.source
    document = pc.replace_substring_regex(pa.array([text]), *DOCUMENT_OF_PIECE)[0].as_py()
    other_piece = PieceSource(source.subset, source.source, source.line, 1, source.n + 1, source.copy)
    assert document == pc.replace_substring_regex(pa.array([str(other_piece)]), *DOCUMENT_OF_PIECE)[0].as_py()
    assert document.endswith(f":{source.line}" + (f"@{source.copy}" if source.copy else ""))


def test_the_written_form_is_the_documented_one() -> None:
    assert str(PieceSource("ja_wiki", "ja/ja_wiki/train_0.jsonl.gz", 12, 1, 3)) == "ja_wiki:ja/ja_wiki/train_0.jsonl.gz:12:1/3"
    assert str(PieceSource("kaken", "a:b.jsonl", 5, 2, 2, copy=1)) == "kaken:a:b.jsonl:5:2/2@1"
    assert PieceSource.parse("not a source") is None
