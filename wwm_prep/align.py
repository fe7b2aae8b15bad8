"""Whole-word groups: where vibrato's word boundaries and SentencePiece's token boundaries coincide.

Everything is computed in UTF-8 byte offsets of the raw text with array operations: token offsets
from a per-piece byte-length table, word offsets from surface lengths and the dictionary's space
table. The contract (DESIGN.md §3): a group edge is placed exactly where a word boundary and a
token boundary coincide; a group made only of whitespace joins the group after it (trailing
whitespace joins the group before it, so no group is whitespace alone when there is a word).
"""

from __future__ import annotations

import numpy as np


class Misaligned(ValueError):
    """The fast offset arithmetic does not add up for this text (e.g. U+2581 in the text, or a space
    inside a dictionary word); the caller then asks the slow, exact sources for offsets."""


def char_byte_offsets(codepoints: np.ndarray) -> np.ndarray:
    """Byte offset of each character boundary (length n + 1) from code points."""
    widths = 1 + (codepoints >= 0x80).astype(np.int64) + (codepoints >= 0x800) + (codepoints >= 0x10000)
    offsets = np.zeros(len(codepoints) + 1, dtype=np.int64)
    np.cumsum(widths, out=offsets[1:])
    return offsets


def word_char_bounds(codepoints: np.ndarray, surface_lengths: np.ndarray, space: np.ndarray) -> np.ndarray:
    """Character offsets of every word start and end, from the lengths of vibrato's surfaces.

    With ignore_space vibrato drops space characters, so the surfaces tile the non-space characters
    in order: word k starts at the (sum of earlier lengths)-th non-space character.
    """
    bmp = codepoints < len(space)
    is_space = np.zeros(len(codepoints), dtype=bool)
    is_space[bmp] = space[codepoints[bmp]]
    solid = np.flatnonzero(~is_space)
    ends = np.cumsum(surface_lengths)
    if len(ends) and ends[-1] != len(solid) or not len(ends) and len(solid):
        raise Misaligned("surfaces do not tile the non-space characters")
    if not len(ends):
        return np.zeros(0, dtype=np.int64)
    starts = solid[ends - surface_lengths]
    return np.concatenate([starts, solid[ends - 1] + 1])


def token_byte_starts(ids: np.ndarray, piece_bytes: np.ndarray, text_bytes: int) -> np.ndarray:
    """Byte offset in the text where each token starts; the first token's dummy-prefix space maps to 0."""
    lengths = piece_bytes[ids]
    ends = np.cumsum(lengths) - 1  # the model added one space in front (add_dummy_prefix)
    if len(ids) == 0 or lengths.min() < 0 or ends[-1] != text_bytes:
        raise Misaligned("piece lengths do not add up to the text")
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1]
    return np.maximum(starts, 0)


def group_starts(token_starts: np.ndarray, boundaries: np.ndarray, whitespace_tokens: np.ndarray, text_bytes: int
                 ) -> np.ndarray:
    """`word_starts`: 1 where a token starts a group, given token starts and word boundaries in bytes."""
    is_boundary = np.zeros(text_bytes + 1, dtype=bool)
    is_boundary[boundaries] = True
    is_boundary[0] = True
    starts = is_boundary[token_starts]
    starts[0] = True
    _merge_whitespace_groups(starts, whitespace_tokens)
    return starts.astype(np.uint8)


def _merge_whitespace_groups(starts: np.ndarray, whitespace_tokens: np.ndarray) -> None:
    first = np.flatnonzero(starts)
    group = np.cumsum(starts) - 1
    solid_tokens = np.bincount(group, weights=~whitespace_tokens, minlength=len(first))
    blank = solid_tokens == 0
    # A blank group joins the next one: the next group loses its start.
    starts[first[1:][blank[:-1]]] = False
    # Trailing blank groups join the last group that has a word.
    if blank[-1]:
        solid = np.flatnonzero(~blank)
        if len(solid):
            starts[first[solid[-1] + 1]] = False


def word_starts(
    text: str,
    ids: np.ndarray,
    surface_lengths: np.ndarray,
    piece_bytes: np.ndarray,
    piece_whitespace: np.ndarray,
    space: np.ndarray,
) -> np.ndarray:
    """The fast path: word groups from ids and surface lengths alone. Raises Misaligned when it cannot."""
    codepoints = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    byte_at = char_byte_offsets(codepoints)
    token_starts = token_byte_starts(ids, piece_bytes, int(byte_at[-1]))
    bounds = byte_at[word_char_bounds(codepoints, surface_lengths, space)]
    return group_starts(token_starts, bounds, piece_whitespace[ids], int(byte_at[-1]))


def word_starts_from_offsets(
    text: str,
    token_spans: np.ndarray,
    word_spans: np.ndarray,
    ids: np.ndarray,
    piece_whitespace: np.ndarray,
) -> np.ndarray:
    """The exact path for texts the fast path cannot take: token byte spans as SentencePiece reports
    them and word character spans as vibrato reports them."""
    codepoints = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    byte_at = char_byte_offsets(codepoints)
    bounds = byte_at[word_spans.reshape(-1)]
    token_starts = np.clip(token_spans[:, 0], 0, int(byte_at[-1]))
    return group_starts(token_starts, bounds, piece_whitespace[ids], int(byte_at[-1]))
