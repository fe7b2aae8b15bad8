"""Counter-based random streams for masking: each value is a hash of (seed, epoch, worker, row, position, purpose).

A value depends on nothing but its key, so a row is masked the same whichever rows share its batch, and the
global NumPy and torch RNGs play no part. The hash is SplitMix64's finaliser over a Weyl sequence.
"""

from __future__ import annotations

import numpy as np

# SplitMix64 constants.
_U64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_NP_M1 = np.uint64(_M1)
_NP_M2 = np.uint64(_M2)
_SH30, _SH27, _SH31 = np.uint64(30), np.uint64(27), np.uint64(31)

#: Purposes: one independent value per (row, position, purpose). SALT_SPAN draws the span lengths of the
#: "ngram" and "span" masking modes.
SALT_GROUP, SALT_ACTION, SALT_RANDOM_ID, SALT_SPAN = 0, 1, 2, 3
#: Positions are spaced by this many purposes, so the streams of a row never overlap.
_PURPOSES = 4


def _mix_int(z: int) -> int:
    """SplitMix64 finaliser on a Python int (64-bit wrap-around)."""
    z &= _U64
    z = ((z ^ (z >> 30)) * _M1) & _U64
    z = ((z ^ (z >> 27)) * _M2) & _U64
    return z ^ (z >> 31)


def mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser, in place on a uint64 array (wrap-around multiplication)."""
    z ^= z >> _SH30
    z *= _NP_M1
    z ^= z >> _SH27
    z *= _NP_M2
    z ^= z >> _SH31
    return z


def row_keys(seed: int, epoch: int, worker: int, row_indices: np.ndarray) -> np.ndarray:
    """The 64-bit key of each row's random stream, from (seed, epoch, worker, row index)."""
    k = _mix_int(int(seed) ^ 0x5757_4D2D_5052_4550)  # "WWM-PREP"
    k = _mix_int(k ^ _mix_int(int(epoch) + _GOLDEN))
    k = _mix_int(k ^ _mix_int(int(worker) + 2 * _GOLDEN))
    r = np.asarray(row_indices, dtype=np.int64).astype(np.uint64)
    r += np.uint64((3 * _GOLDEN) & _U64)
    mix(r)
    r ^= np.uint64(k)
    return mix(r)


def batch_keys(seed: int, epoch: int, worker: int, first_row: int, n_rows: int, length: int) -> np.ndarray:
    """Row keys shifted so that :func:`stream` takes positions in the flattened ``rows × length`` batch.

    Row i at column c then draws ``mix(key_i + (4 c + salt + 1) · GOLDEN)``, whatever its place in the batch.
    """
    keys = row_keys(seed, epoch, worker, first_row + np.arange(n_rows, dtype=np.int64))
    keys -= np.arange(n_rows, dtype=np.uint64) * np.uint64((_PURPOSES * length * _GOLDEN) & _U64)
    return keys


def stream(flat_pos: np.ndarray, keys: np.ndarray, salt: int) -> np.ndarray:
    """One uint64 per position: the ``salt`` stream of each position's row (``keys`` from :func:`batch_keys`)."""
    z = flat_pos.astype(np.uint64)
    z *= np.uint64((_PURPOSES * _GOLDEN) & _U64)
    z += keys
    z += np.uint64(((salt + 1) * _GOLDEN) & _U64)
    return mix(z)


def unit_interval(h: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) from the top 53 bits of uint64 draws (``h`` is consumed)."""
    h >>= np.uint64(11)
    u = h.astype(np.float64)
    u *= 1.0 / (1 << 53)
    return u
