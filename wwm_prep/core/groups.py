"""Whole-word groups: the one definition the collator masks by and `segment`, `stats` and `inspect` count by.

`word_starts` marks where a word (as far as tokens allow) begins. A group is a run of maskable tokens: it starts
at a maskable token that begins a word, at a unit's first maskable token (a row, a packed piece, a document), and
at a maskable token after one that is not maskable. So a token that can never be masked (`<unk>`, `<CLS>`, any
special id) ends the group it falls in: the collator can neither mask it nor let a masked span run across it,
and every count of groups agrees with what the collator takes as one.
"""

from __future__ import annotations

import numpy as np


def group_starts(maskable: np.ndarray, word_starts: np.ndarray, unit_starts: np.ndarray) -> np.ndarray:
    """bool, flat: where groups start, given flat `maskable` and `word_starts` and the positions where units start
    (`unit_starts`, in any order, repeats allowed; position 0 is always a start)."""
    after_maskable = np.empty(maskable.shape[0], dtype=bool)
    if maskable.shape[0]:
        after_maskable[0] = False
        after_maskable[1:] = maskable[:-1]
        after_maskable[unit_starts] = False
    return maskable & (word_starts.astype(bool, copy=False) | ~after_maskable)


def word_groups(maskable: np.ndarray, word_starts: np.ndarray,
                unit_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The groups of flat arrays: each one's first position and size, and the start mask of `group_starts`."""
    starts_mask = group_starts(maskable, word_starts, unit_starts)
    continues = np.zeros(maskable.shape[0], dtype=bool)  # token j+1 continues the group of token j
    continues[:-1] = maskable[1:] & ~starts_mask[1:]
    starts = np.flatnonzero(starts_mask)
    sizes = np.flatnonzero(maskable & ~continues)  # each group's last token, made its size in place
    sizes -= starts
    sizes += 1
    return starts, sizes, starts_mask


def count_groups(maskable: np.ndarray, word_starts: np.ndarray, unit_starts: np.ndarray) -> int:
    return int(np.count_nonzero(group_starts(maskable, word_starts, unit_starts)))
