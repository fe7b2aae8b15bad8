"""Document lengths in tokens: the weights `pack --length-weights` gives them, and the length bands in which
`stats` and `pack --plan` report shares of tokens.

A length is a document's tokens as segment stored them (`input_ids`, without `<CLS>`/`<SEP>`); a piece's is the
tokens of the part of it one row holds. Both owners of these numbers (pack choosing documents, stats counting
rows) ask this module, so a band means the same in the plan, the manifest and the stats. Light to import (NumPy
only where arrays are weighed): the command line's configuration holds a `LengthWeights`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wwm_prep.core.errors import WwmPrepError

if TYPE_CHECKING:
    import numpy as np

#: Lower bounds of the length bands reported: < 512, 512–2k, 2k–4k, 4k–8k, ≥ 8k tokens (a 4,096 or 8,192 row
#: holds a document up to its bound whole, less its two specials).
BANDS = (0, 512, 2048, 4096, 8192)


@dataclass(frozen=True)
class LengthWeights:
    """Weights by document length: each document takes the weight of the largest bound it reaches; one shorter
    than every bound keeps weight 1, as a subset named in no `--subset-weights` does. Empty: no length weights."""

    bounds: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if len(self.bounds) != len(self.weights) or list(self.bounds) != sorted(set(self.bounds)):
            raise WwmPrepError(f"length weights: bounds {list(self.bounds)} must be distinct and one per weight")
        if any(b < 0 for b in self.bounds) or not all(math.isfinite(w) and w >= 0 for w in self.weights):
            raise WwmPrepError("length weights: bounds and weights must be ≥ 0 (e.g. 0:0.5,4096:3)")

    def __bool__(self) -> bool:
        return bool(self.bounds)

    @classmethod
    def parse(cls, text: str | None) -> LengthWeights:
        """`0:0.5,4096:3` (pairs of lower bound in tokens and weight, in any order; `4k` means 4,096)."""
        pairs: dict[int, float] = {}
        for item in filter(None, (s.strip() for s in (text or "").split(","))):
            bound, sep, value = (part.strip() for part in item.partition(":"))
            try:
                low = int(bound[:-1]) * 1024 if bound.lower().endswith("k") else int(bound)
                weight = float(value)
            except ValueError:
                low, weight = -1, math.nan
            if not sep or low < 0 or not (math.isfinite(weight) and weight >= 0):
                raise WwmPrepError(f"length weights: {item!r} is not TOKENS:WEIGHT with both ≥ 0 "
                                   "(e.g. 0:0.5,4096:3)")
            if low in pairs:
                raise WwmPrepError(f"length weights: the bound {low} is given twice")
            pairs[low] = weight
        ordered = sorted(pairs.items())
        return cls(tuple(b for b, _ in ordered), tuple(w for _, w in ordered))

    def of(self, lengths: np.ndarray) -> np.ndarray:
        """float64[documents]: each document's weight by its length."""
        import numpy as np

        table = np.array((1.0, *self.weights))
        return table[np.searchsorted(np.array(self.bounds, dtype=np.int64), lengths, side="right")]

    def record(self) -> list[list[Any]]:
        """As the manifest records them: [[bound, weight], …] by bound."""
        return [[b, w] for b, w in zip(self.bounds, self.weights)]

    @classmethod
    def from_record(cls, record: list[list[Any]] | None) -> LengthWeights:
        return cls(tuple(int(b) for b, _ in record or ()), tuple(float(w) for _, w in record or ()))

    def __str__(self) -> str:
        return ",".join(f"{b}:{w:g}" for b, w in zip(self.bounds, self.weights)) or "none"


def token_shares(lengths: np.ndarray, counts: np.ndarray | None = None,
                 bands: tuple[int, ...] = BANDS) -> list[dict[str, Any]]:
    """Tokens by the band of the length they sit in, as JSON rows ({from, to, tokens, share}; the last band is
    open, `to` null): `lengths` of pieces or documents, each seen `counts` times (default once)."""
    import numpy as np

    lengths = np.asarray(lengths, dtype=np.int64)
    counts = np.ones_like(lengths) if counts is None else np.asarray(counts, dtype=np.int64)
    tokens = np.bincount(np.searchsorted(np.array(bands), lengths, side="right") - 1, weights=lengths * counts,
                         minlength=len(bands)).astype(np.int64) if lengths.size else np.zeros(len(bands), np.int64)
    total = max(int(tokens.sum()), 1)
    return [{"from": lo, "to": bands[i + 1] - 1 if i + 1 < len(bands) else None, "tokens": int(tokens[i]),
             "share": round(int(tokens[i]) / total, 6)} for i, lo in enumerate(bands)]


def band_label(row: dict[str, Any]) -> str:
    """`< 512`, `512–2k`, `≥ 8k`: a band for a table or a plot."""
    def short(n: int) -> str:
        return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else f"{n:,}"
    if row["to"] is None:
        return f"≥ {short(row['from'])}"
    if row["from"] == 0:
        return f"< {short(row['to'] + 1)}"
    return f"{short(row['from'])}–{short(row['to'] + 1)}"
