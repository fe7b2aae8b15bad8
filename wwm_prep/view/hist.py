"""Exact integer histograms: percentiles without keeping the values, memory bounded by the largest value.

Each batch adds `np.bincount` of its values, so a distribution over millions of documents costs an array as
long as the longest document, and its percentiles are exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PERCENTILES = (("min", 0), ("p10", 10), ("p25", 25), ("p50", 50), ("p75", 75), ("p90", 90), ("p99", 99),
               ("max", 100))


@dataclass
class Hist:
    """Exact distribution of non-negative integers: counts[v] = how many times v was seen."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.int64)
        if values.size:
            self.add_counts(np.bincount(values))

    def add_counts(self, counts: np.ndarray) -> None:
        if counts.size > self.counts.size:
            self.counts = np.pad(self.counts, (0, counts.size - self.counts.size))
        self.counts[: counts.size] += counts

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @property
    def total(self) -> int:
        return int(np.dot(self.counts, np.arange(self.counts.size, dtype=np.int64)))

    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    def percentile(self, q: float) -> int | None:
        """The smallest value v with at least q % of the values ≤ v (NumPy's `inverted_cdf`)."""
        if not self.n:
            return None
        cdf = np.cumsum(self.counts)
        if q <= 0:
            return int(np.flatnonzero(self.counts)[0])
        return int(np.searchsorted(cdf, q / 100 * self.n - 1e-9 * self.n, side="left"))

    def binned(self, edges: np.ndarray | tuple[int, ...]) -> np.ndarray:
        """Counts in [edges[i], edges[i+1]) and, for the last edge, [edges[-1], ∞)."""
        cdf = np.concatenate([[0], np.cumsum(self.counts)])
        at = np.minimum(np.asarray(edges, dtype=np.int64), self.counts.size)
        upto = np.append(cdf[at], cdf[-1])
        return np.diff(upto)[: len(edges)] if len(edges) else np.zeros(0, dtype=np.int64)

    def summary(self, digits: int = 2) -> dict[str, Any]:
        mean = self.mean()
        return {"n": self.n, "mean": None if mean is None else round(mean, digits),
                **{name: self.percentile(q) for name, q in PERCENTILES}}

    def table(self, edges: tuple[int, ...] | np.ndarray, unit_max: int | None = None) -> list[dict[str, Any]]:
        """The bins of `edges` as JSON rows; the last one runs to `unit_max` (None: open-ended)."""
        counts = self.binned(edges)
        n = max(self.n, 1)
        rows = []
        for i, lo in enumerate(edges):
            hi = int(edges[i + 1]) - 1 if i + 1 < len(edges) else unit_max
            rows.append({"from": int(lo), "to": hi, "count": int(counts[i]), "share": round(int(counts[i]) / n, 6)})
        return rows


def log2_edges(hist: Hist, most: int = 10) -> np.ndarray:
    """Power-of-two bin edges (1, 2^k, 2^(k+1), …) covering a histogram in at most `most` bins."""
    top = max(int(hist.counts.size) - 1, 1)
    hi = max(int(math.ceil(math.log2(top + 1))), 1)
    lo = max(hi - most + 1, 1)
    return np.array([1] + [2**i for i in range(lo, hi)], dtype=np.int64)
