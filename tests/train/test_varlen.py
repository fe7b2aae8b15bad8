"""varlen_positions: the collator's position_ids / cu_seqlens / max_seqlen without masking, from doc_lengths alone
(lists, arrays, or a shard's Arrow column)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.train.conftest import PAD, make_packed_row
from wwm_prep.train.collator import WholeWordMaskCollator, varlen_positions


def test_varlen_positions_restart_per_piece_and_padding():
    positions, cu_seqlens, max_seqlen = varlen_positions([[3, 4], [10], []], 10)
    assert positions.tolist() == [[0, 1, 2, 0, 1, 2, 3, 0, 1, 2], list(range(10)), list(range(10))]
    assert cu_seqlens.tolist() == [0, 3, 7, 10, 20, 30] and cu_seqlens.dtype == np.int32 and max_seqlen == 10
    with pytest.raises(ValueError):
        varlen_positions([[8, 3]], 10)
    with pytest.raises(ValueError):
        varlen_positions([[-1, 3]], 10)


def test_varlen_positions_matches_collator_on_hand_made_rows(small_collator):
    rng = np.random.default_rng(13)
    for seq_len in (17, 64, 200):
        rows = [make_packed_row(rng, seq_len) for _ in range(5)]
        rows.append({"input_ids": np.full(seq_len, PAD), "word_starts": np.zeros(seq_len), "doc_lengths": np.zeros(0)})
        out = small_collator.collate(rows)
        width = out["input_ids"].shape[1]  # seq_len rounded up to a multiple of 8
        for doc_lengths in ([r["doc_lengths"] for r in rows], [r["doc_lengths"].tolist() for r in rows]):
            positions, cu_seqlens, max_seqlen = varlen_positions(doc_lengths, width)
            assert np.array_equal(positions, out["position_ids"])
            assert np.array_equal(cu_seqlens, out["cu_seqlens"]) and cu_seqlens.dtype == out["cu_seqlens"].dtype
            assert max_seqlen == out["max_seqlen"]


@pytest.mark.shared
def test_varlen_positions_matches_collator_on_packed_shards(ja_sequences, real_rows_8192):
    """On every 8,192-token row, from lists and from the shards' own Arrow column (pyarrow, never imported by
    the collator module), varlen_positions gives exactly the collator's varlen outputs."""
    import pyarrow as pa

    from wwm_prep.core.shards import load_schema, read_batches

    shards = sorted(ja_sequences[8192].glob("*.arrow"))  # the order `datasets` reads them in
    column = pa.Table.from_batches(
        [b for shard in shards for b in read_batches(shard, load_schema("sequence"))]
    ).column("doc_lengths")
    assert len(column) == len(real_rows_8192)
    collator = WholeWordMaskCollator(return_varlen=True)
    for b in range(0, len(real_rows_8192), 8):
        rows = real_rows_8192[b : b + 8]
        out = collator.collate(rows)
        for source in ([r["doc_lengths"] for r in rows], column.slice(b, 8)):
            positions, cu_seqlens, max_seqlen = varlen_positions(source, 8192)
            assert np.array_equal(positions, out["position_ids"])
            assert np.array_equal(cu_seqlens, out["cu_seqlens"])
            assert max_seqlen == out["max_seqlen"]
