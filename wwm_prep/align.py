"""Whole-word groups: where vibrato's word boundaries and SentencePiece's token boundaries coincide.

Everything is computed in UTF-8 byte offsets with array operations over a whole batch of documents
at once (no per-document, per-word or per-token Python work): token offsets come from a per-piece
byte-length table, word offsets from surface lengths and the dictionary's space table.

The contract (DESIGN.md §3): a group edge is placed exactly where a word boundary and a token
boundary coincide; a group made only of whitespace joins the group after it, and whitespace at the
end of a document joins the group before it, so no group is whitespace alone when there is a word.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np


@dataclass(frozen=True)
class Aligned:
    ids: np.ndarray  # int32, the batch's tokens end to end
    word_starts: np.ndarray  # uint8, 1 where a token starts a group
    token_counts: np.ndarray  # int64 per document
    word_counts: np.ndarray  # int64 per document
    misaligned: np.ndarray  # indices of documents the arithmetic could not align (their word_starts are void)


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _lengths(items: list) -> np.ndarray:
    return np.fromiter(map(len, items), dtype=np.int64, count=len(items))


def _surface_lengths(surfaces: list[list[str]], count: int, space: np.ndarray) -> np.ndarray:
    """Lengths of all surfaces, found by joining them with a space character (which no surface holds
    under ignore_space) and locating the joins: one C-level pass instead of a len() call per word."""
    spaces = np.flatnonzero(space)
    if count == 0 or not len(spaces):
        return np.fromiter(map(len, chain.from_iterable(surfaces)), dtype=np.int64, count=count)
    sep = int(spaces[0])
    joined = np.frombuffer(chr(sep).join(chain.from_iterable(surfaces)).encode("utf-32-le"), dtype="<u4")
    ends = np.flatnonzero(joined == sep)
    if len(ends) != count - 1:  # a surface held the separator: count the slow way
        return np.fromiter(map(len, chain.from_iterable(surfaces)), dtype=np.int64, count=count)
    ends = np.append(ends, len(joined)) - np.arange(count)
    return np.diff(ends, prepend=0)


def char_byte_offsets(codepoints: np.ndarray) -> np.ndarray:
    """Byte offset of each character boundary (length n + 1) from code points."""
    widths = 1 + (codepoints >= 0x80).astype(np.int64) + (codepoints >= 0x800) + (codepoints >= 0x10000)
    return _offsets(widths)


def group_starts(starts: np.ndarray, whitespace: np.ndarray, doc_tokens: np.ndarray) -> np.ndarray:
    """Group starts from `starts` (bool, in place: True where a token starts on a word boundary),
    with whitespace-only groups merged; `doc_tokens` are the documents' token offsets."""
    firsts = doc_tokens[:-1][doc_tokens[:-1] < doc_tokens[1:]]
    starts[firsts] = True
    if not len(starts):
        return starts
    first = np.flatnonzero(starts)
    group = np.cumsum(starts) - 1
    blank = np.bincount(group, weights=~whitespace, minlength=len(first)) == 0
    group_doc = np.searchsorted(doc_tokens, first, side="right") - 1
    # A blank group joins the next group of its document: that group loses its start.
    joins = blank[:-1] & (group_doc[1:] == group_doc[:-1])
    starts[first[1:][joins]] = False
    # Blank groups at the end of a document join its last group that has a word.
    solid = np.flatnonzero(~blank)
    docs = group_doc[np.flatnonzero(np.diff(group_doc, prepend=-1))]
    last_group = np.searchsorted(group_doc, docs, side="right") - 1
    k = np.searchsorted(group_doc[solid], docs, side="right") - 1
    last_solid = np.where(k >= 0, solid[np.maximum(k, 0)], -1)
    trailing = (last_solid >= 0) & (group_doc[np.maximum(last_solid, 0)] == docs) & (last_solid < last_group)
    starts[first[last_solid[trailing] + 1]] = False
    return starts


def align_batch(
    texts: list[str],
    ids: list[list[int]],
    surfaces: list[list[str]],
    piece_bytes: np.ndarray,
    piece_whitespace: np.ndarray,
    space: np.ndarray,
) -> Aligned:
    """Whole-word groups for a batch of documents from SentencePiece ids and vibrato surfaces alone.

    `space` (bool over all code points) marks what vibrato drops with ignore_space: the surfaces then
    tile each document's other characters in order. `piece_bytes` gives the UTF-8 length each piece
    stands for (the first piece of a document also holds the one-space dummy prefix).
    """
    n = len(texts)
    codepoints = np.frombuffer("".join(texts).encode("utf-32-le"), dtype="<u4")
    byte_at = char_byte_offsets(codepoints)
    doc_chars = _offsets(_lengths(texts))
    doc_bytes = byte_at[doc_chars]

    # Words: surfaces tile the non-space characters of their document.
    solid = np.flatnonzero(~space[codepoints])
    doc_solid = np.searchsorted(solid, doc_chars)
    word_counts = _lengths(surfaces)
    word_lengths = _surface_lengths(surfaces, int(word_counts.sum()), space)
    doc_words = _offsets(word_counts)
    word_ends = _offsets(word_lengths)
    words_ok = word_ends[doc_words[1:]] - word_ends[doc_words[:-1]] == np.diff(doc_solid)
    word_doc = np.repeat(np.arange(n), word_counts)
    # Index into `solid` of each word's first and last character, counted within its own document.
    first_solid = doc_solid[word_doc] + word_ends[:-1] - word_ends[doc_words[word_doc]]
    last_solid = first_solid + word_lengths - 1
    top = max(len(solid) - 1, 0)
    solid_at = np.append(solid, len(codepoints))
    word_bounds = np.concatenate([
        byte_at[solid_at[np.clip(first_solid, 0, top)]],
        byte_at[np.minimum(solid_at[np.clip(last_solid, 0, top)] + 1, len(codepoints))],
    ])

    # Tokens: each piece stands for a fixed number of bytes; each document starts with a dummy space.
    token_counts = _lengths(ids)
    flat_ids = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=int(token_counts.sum()))
    lengths = piece_bytes[flat_ids]
    doc_tokens = _offsets(token_counts)
    token_bytes = _offsets(lengths)
    unknown = _offsets(lengths < 0)
    tokens_ok = (token_bytes[doc_tokens[1:]] - token_bytes[doc_tokens[:-1]] == np.diff(doc_bytes) + 1) & (
        unknown[doc_tokens[1:]] == unknown[doc_tokens[:-1]]
    )
    token_doc = np.repeat(np.arange(n), token_counts)
    token_starts = doc_bytes[token_doc] + token_bytes[:-1] - token_bytes[doc_tokens[token_doc]] - 1
    token_starts = np.clip(np.maximum(token_starts, doc_bytes[token_doc]), 0, byte_at[-1])

    boundary = np.zeros(int(byte_at[-1]) + 1, dtype=bool)
    boundary[word_bounds] = True
    boundary[doc_bytes] = True
    starts = group_starts(boundary[token_starts], piece_whitespace[flat_ids], doc_tokens)
    return Aligned(flat_ids, starts.view(np.uint8), token_counts, word_counts, np.flatnonzero(~(words_ok & tokens_ok)))


def align_offsets(
    text: str,
    token_spans: np.ndarray,
    word_spans: np.ndarray,
    ids: np.ndarray,
    piece_whitespace: np.ndarray,
    piece_continuation: np.ndarray,
) -> np.ndarray:
    """The exact path for a text the arithmetic cannot take: token byte spans as SentencePiece reports
    them and word character spans as vibrato reports them. Returns `word_starts` (uint8)."""
    byte_at = char_byte_offsets(np.frombuffer(text.encode("utf-32-le"), dtype="<u4"))
    boundary = np.zeros(int(byte_at[-1]) + 1, dtype=bool)
    boundary[byte_at[word_spans.reshape(-1)]] = True
    boundary[0] = True
    # Byte pieces after the first of a character report the character's start; they do not start it.
    on_boundary = boundary[np.clip(token_spans[:, 0], 0, int(byte_at[-1]))] & ~piece_continuation[ids]
    return group_starts(on_boundary, piece_whitespace[ids], np.array([0, len(ids)])).view(np.uint8)
