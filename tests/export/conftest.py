"""Helpers shared by the export tests: the Arrow rows an export must give back, and the masking checks of
`tests/train` applied to whatever yields masked rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pytest

from tests.train.conftest import check_batch
from wwm_prep.core.shards import open_shards
from wwm_prep.train.collator import WholeWordMaskCollator


@pytest.fixture(scope="session")
def arrow_rows(ja_sequences: dict[int, Path]) -> dict[str, list]:
    """Every 8,192-token row of packed ja-sample, column by column, read from the Arrow shards themselves."""
    out: dict[str, list] = {"input_ids": [], "word_starts": [], "doc_lengths": [], "doc_sources": []}
    for _, batch in open_shards(ja_sequences[8192]).batches():
        for name in out:
            column = batch.column(name)
            if name == "doc_sources":
                out[name] += column.to_pylist()
            else:
                offsets, values = column.offsets.to_numpy(), column.values.to_numpy()
                out[name] += [values[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    return out


def assert_rows_equal(got: Sequence[np.ndarray], want: Sequence[np.ndarray], name: str) -> None:
    """Row for row, value for value (types may differ: uint32 ids in MDS, int32 in Arrow)."""
    assert len(got) == len(want), f"{name}: {len(got)} rows, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert np.array_equal(np.asarray(g).astype(np.int64), np.asarray(w).astype(np.int64)), f"{name}: row {i}"


def masking_stats(batches: Iterable[tuple[Sequence[dict], dict]], collator: WholeWordMaskCollator) -> dict:
    """`check_batch` (every exactness property) over (rows, masked batch) pairs; the summed counts."""
    total: dict = {}
    for rows, out in batches:
        for k, v in check_batch(rows, out, collator).items():
            total[k] = total.get(k, 0) + v
    return total


def assert_bert_statistics(stats: dict) -> None:
    """The collator's tests' figures: 15 % ± 0.2 % of maskable tokens chosen, 80/10/10 ± 1 %, every row at budget."""
    assert stats["maskable"] >= 1_000_000
    assert abs(stats["chosen"] / stats["maskable"] - 0.15) <= 0.002
    for k, p in (("mask", 0.8), ("random", 0.1), ("keep", 0.1)):
        assert abs(stats[k] / stats["chosen"] - p) <= 0.01, (k, stats)
    assert stats["at_budget"] == stats["rows"]


@pytest.fixture(scope="session")
def sample_sequences(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The bundled sample segmented (tiny-ja) and packed into 256-token rows twice, with two seeds: small and quick,
    for the command's behaviour rather than its data."""
    from wwm_prep.core.resources import resource
    from wwm_prep.pipeline.pack import PackConfig, run_pack
    from wwm_prep.pipeline.segment import SegmentConfig, run_segment

    root = tmp_path_factory.mktemp("export-sample")
    run_segment([str(resource("sample", "corpus"))], root / "documents", SegmentConfig(dictionary="tiny-ja"), quiet=True)
    for seed in (0, 1):
        run_pack(root / "documents", root / f"sequences-{seed}", PackConfig(seq_len=256, seed=seed), quiet=True)
    return {"documents": root / "documents", "sequences": root / "sequences-0", "other": root / "sequences-1"}
