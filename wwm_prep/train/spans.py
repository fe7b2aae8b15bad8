"""Spans of whole-word groups for the "ngram" (Megatron) and "span" (SpanBERT) masking modes.

A mode is a distribution of span lengths, counted in whole-word groups. Each run of consecutive groups (a packed
piece's words, up to a special token) is cut into spans of lengths drawn one after another from it, so the spans
of a row never overlap and never leave their run; the masking steps then budget and choose spans as they do
words. A span that reaches its run's end is cut short there. NumPy only, no loop over groups or spans.
"""

from __future__ import annotations

import numpy as np

#: The masking modes: "word" masks single whole-word groups (BERT), the others spans of them.
MODES = ("word", "ngram", "span")
#: Modes whose 80/10/10 replacement is drawn once per span, as in SpanBERT; the others draw it per token, as BERT
#: and Megatron do.
REPLACED_PER_SPAN = frozenset({"span"})


def check_masking(masking: str) -> str:
    if masking not in MODES:
        raise ValueError(f"masking must be {', '.join(map(repr, MODES))}, not {masking!r}")
    return masking


def length_pmf(masking: str, max_ngram: int, span_p: float, max_span: int) -> np.ndarray:
    """P(length = n) for n = 1, 2, …: Megatron's weights 1/n up to ``max_ngram``; SpanBERT's geometric with
    ``span_p`` truncated at ``max_span`` and renormalised (mean 3.8 groups at 0.2 and 10); one group for "word"."""
    if masking == "ngram":
        weights = 1.0 / np.arange(1, max_ngram + 1)
    elif masking == "span":
        weights = span_p * (1.0 - span_p) ** np.arange(max_span)
    else:
        weights = np.ones(1)
    return weights / weights.sum()


def length_thresholds(pmf: np.ndarray) -> np.ndarray:
    """uint64 cut points of the cumulative distribution: a uniform 64-bit draw h has length
    ``1 + searchsorted(thresholds, h, "right")``."""
    cdf = np.cumsum(pmf)[:-1]
    return np.minimum(np.floor(cdf * 2.0**64), 2.0**64 - 2048).astype(np.uint64)


def draw_lengths(h: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Span lengths (int64) from uniform uint64 draws."""
    return np.searchsorted(thresholds, h, side="right").astype(np.int64) + 1


def tile_runs(run_start: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut every run of groups into consecutive spans.

    ``run_start`` marks each run's first group (the first group always starts one); ``lengths[g]`` is the length
    of the k-th span of g's run, k being g's place in it (a run of m groups never needs more than m spans).
    Returns each span's first group, its groups (the drawn length, or less at the run's end) and the drawn length.
    """
    n = lengths.shape[0]
    first = np.flatnonzero(run_start)
    run = np.cumsum(run_start) - 1
    end = np.append(first[1:], n)[run]  # one past the last group of each group's run
    before = np.cumsum(lengths) - lengths  # groups covered by the spans drawn before, counted from the batch start
    start = first[run] + before - before[first][run]
    keep = start < end
    start = start[keep]
    drawn = lengths[keep]
    return start, np.minimum(drawn, end[keep] - start), drawn
