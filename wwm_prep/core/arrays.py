"""Small NumPy helpers that several stages share (NumPy only: the collator imports this)."""

from __future__ import annotations

import numpy as np


def offsets_of(counts: np.ndarray) -> np.ndarray:
    """int64[n + 1]: where each of n runs of `counts` items starts, end to end from 0, and where the last ends."""
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out
