"""Which tokens of a batch may attend to which: each token's packed piece (``document_ids``) and the 4-D block
mask that transformers' eager and SDPA attention take in place of their own (causal or padding) mask.

NumPy only, like the rest of the collator.
"""

from __future__ import annotations

import numpy as np

from wwm_prep.core.rows import RowLayout

#: What the block mask adds to the score of a pair that may not attend: float32's most negative finite value,
#: as transformers' own masks do (-inf in a row with nothing allowed would make a NaN; here no row is such).
BLOCKED = np.finfo(np.float32).min


def document_ids(attention: np.ndarray, layout: RowLayout | None) -> np.ndarray:
    """int64[rows, length]: each token's piece, counted within its row from 0, and -1 for padding.

    ``attention`` is the 2-D padding mask (1 for content). A row that is not packed is one piece, piece 0.
    """
    if layout is None:
        return np.where(attention.astype(bool), 0, -1)
    return layout.piece_index().reshape(attention.shape)


def block_mask(documents: np.ndarray) -> np.ndarray:
    """float32[rows, 1, length, length], additive: 0 where query and key lie in the same piece, ``BLOCKED``
    elsewhere.

    Additive rather than boolean because transformers' eager attention adds the mask to the scores (a boolean
    mask there would add 1 and silently attend everywhere); SDPA takes the same floats. Padding tokens attend
    to the row's padding only: every query keeps at least one key (no NaN from an empty softmax), and no
    content token ever sees padding. One ``length × length`` plane per row: 4 bytes × rows × length².
    """
    same = documents[:, None, :, None] == documents[:, None, None, :]
    return np.where(same, np.float32(0), BLOCKED)
