"""Whole-word groups from tokens' character offsets, for tokenizers whose tokens need not tile the text
(a `tokenizer.json`: byte-level BPE, WordPiece, any normalizer).

The rule (docs/design.md): token i > 0 of a document starts a group iff a word boundary lies in the closed
interval [end of token i-1, start of token i], in the tokenizer's character offsets. So tokens that share a
character (the byte-level tokens of one character, the tokens NFKC made of one ㍻) never split, and spaces a
WordPiece tokenizer leaves out between two tokens still separate their words. A group of whitespace only joins
the next one, as on the SentencePiece path (`align.group_starts`). Everything is array work over a whole batch.
"""

from __future__ import annotations

from itertools import chain

import numpy as np

from wwm_prep.core.arrays import offsets_of
from wwm_prep.pipeline.align import Aligned, group_starts

_SPACE_CODEPOINTS = np.array([c for c in range(0x3001) if chr(c).isspace()], dtype=np.uint32)


def codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def word_boundaries(points: np.ndarray, doc_chars: np.ndarray, surfaces: list[list[str]],
                    skipped: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """bool[n + 1] over the batch's characters: where a word starts or ends, or a document does; and which
    documents' surfaces did not tile their characters less the skipped ones (their words are left out).

    `skipped` is bool per code point (vibrato's space table): the characters vibrato drops between words."""
    skip = np.zeros(len(points), dtype=bool)
    inside = points < len(skipped)
    skip[inside] = skipped[points[inside]]
    kept = np.flatnonzero(~skip)
    doc_kept = np.searchsorted(kept, doc_chars)
    word_counts = np.fromiter(map(len, surfaces), dtype=np.int64, count=len(surfaces))
    lengths = np.fromiter(map(len, chain.from_iterable(surfaces)), dtype=np.int64, count=int(word_counts.sum()))
    ends = offsets_of(lengths)
    doc_words = offsets_of(word_counts)
    ok = np.diff(ends[doc_words]) == np.diff(doc_kept)
    base = np.repeat(doc_kept[:-1] - ends[doc_words[:-1]], word_counts)  # each document from its own start
    first, last = ends[:-1] + base, ends[1:] + base - 1
    keep = np.repeat(ok, word_counts) & (lengths > 0)
    boundary = np.zeros(len(points) + 1, dtype=bool)
    boundary[kept[first[keep]]] = True
    boundary[kept[last[keep]] + 1] = True
    boundary[doc_chars] = True
    return boundary, np.flatnonzero(~ok)


def span_groups(points: np.ndarray, boundary: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                doc_tokens: np.ndarray) -> np.ndarray:
    """`word_starts` (uint8) of tokens at character spans [starts, ends) of the batch, given word `boundary`."""
    n = len(points)
    starts = np.clip(starts, 0, n)
    ends = np.clip(ends, starts, n)
    seen = offsets_of(boundary)  # seen[k]: boundaries at positions < k
    prev_end = np.empty_like(ends)
    prev_end[0:1] = 0
    prev_end[1:] = ends[:-1]
    new = (prev_end <= starts) & (seen[starts + 1] > seen[np.minimum(prev_end, starts)])
    solid = offsets_of(~np.isin(points, _SPACE_CODEPOINTS))
    blank = solid[ends] == solid[starts]  # only whitespace, or no character at all
    return group_starts(new, blank, doc_tokens).view(np.uint8)


def align_spans(texts: list[str], ids: list[list[int]], surfaces: list[list[str]], char_starts: np.ndarray,
                char_ends: np.ndarray, skipped: np.ndarray) -> Aligned:
    """Whole-word groups of a batch from the tokens' character offsets (per document, end to end) and vibrato's
    surfaces. Documents whose surfaces do not tile their text are listed in `misaligned` (see `align_words`)."""
    points = codepoints("".join(texts))
    doc_chars = offsets_of(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
    token_counts = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    doc_tokens = offsets_of(token_counts)
    flat_ids = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=int(doc_tokens[-1]))
    boundary, misaligned = word_boundaries(points, doc_chars, surfaces, skipped)
    at = np.repeat(doc_chars[:-1], token_counts)
    word_starts = span_groups(points, boundary, char_starts + at, char_ends + at, doc_tokens)
    word_counts = np.fromiter(map(len, surfaces), dtype=np.int64, count=len(surfaces))
    return Aligned(flat_ids, word_starts, token_counts, word_counts, misaligned)


def align_words(text: str, char_starts: np.ndarray, char_ends: np.ndarray, word_spans: np.ndarray) -> np.ndarray:
    """The same for one text whose word character spans were asked of vibrato (the exact path)."""
    points = codepoints(text)
    boundary = np.zeros(len(points) + 1, dtype=bool)
    boundary[word_spans.reshape(-1)] = True
    boundary[[0, len(points)]] = True
    return span_groups(points, boundary, char_starts, char_ends, np.array([0, len(char_starts)]))
