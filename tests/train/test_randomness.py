"""Counter-based streams: a row's values depend on its key and position only."""

from __future__ import annotations

import numpy as np

from wwm_prep.train.randomness import SALT_ACTION, SALT_GROUP, batch_keys, row_keys, stream, unit_interval


def test_row_keys_depend_on_every_part():
    base = row_keys(1, 2, 3, np.arange(4))
    assert np.unique(base).size == 4
    for other in (row_keys(9, 2, 3, np.arange(4)), row_keys(1, 9, 3, np.arange(4)), row_keys(1, 2, 9, np.arange(4))):
        assert not np.isin(other, base).any()
    assert np.array_equal(row_keys(1, 2, 3, np.arange(4)), base)


def test_a_rows_stream_does_not_depend_on_its_place_in_the_batch():
    length = 16
    batch = batch_keys(5, 0, 0, first_row=10, n_rows=3, length=length)
    cols = np.arange(length, dtype=np.int64)
    for i in range(3):
        alone = batch_keys(5, 0, 0, first_row=10 + i, n_rows=1, length=length)
        in_batch = stream(i * length + cols, np.repeat(batch[i], length), SALT_GROUP)
        assert np.array_equal(in_batch, stream(cols, np.repeat(alone[0], length), SALT_GROUP))
    other_purpose = stream(cols, np.repeat(batch[0], length), SALT_ACTION)
    assert not np.isin(other_purpose, stream(cols, np.repeat(batch[0], length), SALT_GROUP)).any()


def test_unit_interval():
    u = unit_interval(np.array([0, 2**64 - 1, 2**63], dtype=np.uint64))
    assert u.tolist() == [0.0, 1.0 - 2.0**-53, 0.5]
