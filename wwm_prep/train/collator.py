"""Whole-word-masking collator: exact BERT-style whole-word masking, vectorised, framework-neutral.

``from wwm_prep import WholeWordMaskCollator`` needs NumPy only. torch is imported only when
``return_tensors="pt"`` is asked for (and looked up, never imported, to find the DataLoader worker id).

A row is a mapping with ``input_ids`` (ints), ``word_starts`` (1 where a token starts a whole-word
group) and, for packed rows, ``doc_lengths`` (the length of each packed piece, ``<CLS>`` and ``<SEP>``
included; what remains of the row is padding). NumPy arrays, lists and CPU tensors are all accepted.

Masking, per row (or per packed document with ``per_document_budget=True``):

1. *maskable* tokens are the non-special tokens inside the row's content (never ``<CLS>``, ``<SEP>``,
   ``<PAD>``, ``<unk>`` ... nor anything in the padding);
2. maskable tokens form *groups*: a group starts where ``word_starts`` is 1, or after a non-maskable token,
   or at the start of a packed piece, and runs over the following maskable tokens with ``word_starts`` 0;
3. the budget is ``round(p * number of maskable tokens)`` (at least 1 if there is a maskable token and
   p > 0, as in BERT);
4. groups are visited in a random order and each is taken if it still fits in the budget (BERT's rule:
   a group that would overshoot is skipped and the following ones are still tried). Chosen groups are
   masked completely; the total never exceeds the budget;
5. each chosen token independently becomes ``<MASK>`` (80 %), a random non-special token (10 %) or stays (10 %).

All randomness comes from a counter-based hash (SplitMix64) keyed by ``(seed, epoch, worker, row index,
position)``, so a row's masks depend on nothing else: not on the global RNG, not on other rows of the batch.
See ``docs/collator.md``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["WholeWordMaskCollator", "LLMJP_V3_SPECIALS", "varlen_positions"]

#: Special ids of the llm-jp v3 tokenizer (v3.0b1 / v3.1) and its vocabulary size (v3.0b1), used when the
#: collator is built without a tokenizer: 0 <unk>, 1 <s>, 2 </s>, 3 <MASK>, 4 <PAD>, 5 <CLS>, 6 <SEP>, 7 <EOD>.
LLMJP_V3_SPECIALS: dict[str, Any] = {
    "mask_id": 3,
    "pad_id": 4,
    "special_ids": tuple(range(8)),
    "vocab_size": 99_574,
}

IGNORE_INDEX = -100

_MASK_NAMES = ("<MASK>", "<MASK|LLM-jp>", "[MASK]", "<mask>")
_PAD_NAMES = ("<PAD>", "<PAD|LLM-jp>", "[PAD]", "<pad>")

# SplitMix64 constants.
_U64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_NP_M1 = np.uint64(_M1)
_NP_M2 = np.uint64(_M2)
_SH30, _SH27, _SH31 = np.uint64(30), np.uint64(27), np.uint64(31)

# Stream salts: one independent random value per (row, position, purpose).
_SALT_GROUP, _SALT_ACTION, _SALT_RANDOM_ID = 0, 1, 2


def _mix_int(z: int) -> int:
    """SplitMix64 finaliser on a Python int (64-bit wrap-around)."""
    z &= _U64
    z = ((z ^ (z >> 30)) * _M1) & _U64
    z = ((z ^ (z >> 27)) * _M2) & _U64
    return z ^ (z >> 31)


def _mix(z: np.ndarray) -> np.ndarray:
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
    _mix(r)
    r ^= np.uint64(k)
    return _mix(r)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``range(s, s + c)`` for each (s, c), without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    return np.repeat(starts - offsets, counts) + np.arange(total, dtype=np.int64)


def _select_sorted(sizes: np.ndarray, counts: np.ndarray, budget: np.ndarray, rule: str = "skip") -> np.ndarray:
    """Greedy budgeted choice of groups; returns the (sorted-order) indices of the groups taken.

    ``sizes`` lists the groups in the order they are visited, unit by unit; ``counts[u]`` is the number
    of groups of unit u, ``budget[u]`` its budget in tokens.

    ``rule="prefix"``: take groups while the running total fits, stop at the first that does not.
    ``rule="skip"`` (BERT's ``create_pretraining_data`` loop): a group that does not fit is skipped and
    the later ones are still tried, so the budget is filled as far as the remaining groups allow.

    Both are computed exactly and without a loop over groups. The prefix is one cumulative sum and one
    binary search per unit. The skip rule continues after the first overflowing group with a small remaining
    capacity c (below the largest group size). That tail is a scan whose only state is c; it is run on windows
    of the following groups of all units at once (window widths 32, 128, 512, ...), and inside a window in
    rounds: a round takes, per unit, the longest run of still-eligible groups (size <= c) whose sum fits,
    then drops the group that overflowed (it can never fit again, as c only decreases). Every round takes a
    group in every unit still in play, so rounds are few (at most c); windows are almost always one.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    budget = np.asarray(budget, dtype=np.int64)
    n = sizes.shape[0]
    ustart = np.cumsum(counts) - counts
    uend = ustart + counts
    cs = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=cs[1:])  # cs[i] = total size of the groups before i (in visiting order)
    base = cs[ustart]
    # Prefix: the groups of unit u before the first whose running total exceeds the budget.
    stop = np.minimum(np.searchsorted(cs, base + budget, side="right") - 1, uend)
    stop = np.maximum(stop, ustart)
    taken = [_ranges(ustart, stop - ustart)]
    if rule == "prefix":
        return taken[0]
    cap = budget - (cs[stop] - base)
    ptr = stop + 1  # the group at `stop` overflowed: skipped for good
    width = 32
    while True:
        act = np.flatnonzero((cap > 0) & (ptr < uend))
        if act.size == 0:
            break
        r = ptr[act, None] + np.arange(width, dtype=np.int64)[None, :]
        valid = r < uend[act, None]
        s = sizes[np.minimum(r, n - 1)]
        c = cap[act]
        live = valid & (s <= c[:, None])
        tk = np.zeros(r.shape, dtype=bool)
        while live.any():
            se = np.where(live, s, 0)
            fits = live & (np.cumsum(se, axis=1) <= c[:, None])
            tk |= fits
            c = c - np.where(fits, s, 0).sum(axis=1)
            over = live & ~fits
            first_over = over & (np.cumsum(over, axis=1) == 1)
            live = over & ~first_over & (s <= c[:, None])
        taken.append(r[tk])
        cap[act] = c
        ptr[act] += width
        width *= 4
    return np.concatenate(taken) if len(taken) > 1 else taken[0]


def select_groups(sizes: np.ndarray, units: np.ndarray, budget: np.ndarray, rule: str = "skip") -> np.ndarray:
    """Boolean form of the greedy choice: ``units`` (non-decreasing) names each group's unit.

    ``sizes``/``units`` list the groups in visiting order, the groups of a unit contiguous; ``budget[u]`` is
    unit u's budget. Returns which groups are taken (see :func:`_select_sorted`).
    """
    if rule not in ("skip", "prefix"):
        raise ValueError(f"rule must be 'skip' or 'prefix', not {rule!r}")
    budget = np.asarray(budget, dtype=np.int64)
    counts = np.bincount(np.asarray(units, dtype=np.int64), minlength=budget.shape[0])
    take = np.zeros(len(sizes), dtype=bool)
    take[_select_sorted(sizes, counts, budget, rule)] = True
    return take


def _segments(lengths: np.ndarray, counts: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segments of packed rows in the flattened ``rows × seq_len`` batch: each row's pieces, then its padding tail.

    ``lengths`` are the pieces' lengths, row after row, ``counts[r]`` how many belong to row r. Returns the
    segment bounds (int64 [S + 1], ``bounds[-1] == rows * seq_len``; empty pieces and empty tails are no
    segments), the ``position_ids`` of the flattened batch (restarting at every segment) and each row's fill.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    n_rows = counts.shape[0]
    fill = np.bincount(np.repeat(np.arange(n_rows), counts), weights=lengths, minlength=n_rows).astype(np.int64)
    segments = np.empty(lengths.shape[0] + n_rows, dtype=np.int64)
    tails = np.cumsum(counts) + np.arange(n_rows)
    is_tail = np.zeros(segments.shape[0], dtype=bool)
    is_tail[tails] = True
    segments[tails] = seq_len - fill
    segments[~is_tail] = lengths
    segments = segments[segments > 0]
    bounds = np.zeros(segments.shape[0] + 1, dtype=np.int64)
    np.cumsum(segments, out=bounds[1:])
    position_ids = np.arange(n_rows * seq_len, dtype=np.int64)
    position_ids -= np.repeat(bounds[:-1], segments)
    return bounds, position_ids, fill


def varlen_positions(doc_lengths: Any, seq_len: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``position_ids`` (rows × seq_len), ``cu_seqlens`` and ``max_seqlen`` of packed rows, from their ``doc_lengths``.

    The values the collator returns for the same rows, without masking anything: positions restart at every
    piece and at each row's padding tail, which is a segment of its own, so ``cu_seqlens`` covers the whole
    flattened batch (``cu_seqlens[-1] == rows * seq_len``) as FlashAttention's varlen kernels expect.
    ``doc_lengths`` is one sequence of piece lengths per row (lists, arrays, or a pyarrow list column).
    """
    if hasattr(doc_lengths, "combine_chunks"):  # a pyarrow ChunkedArray (duck-typed: pyarrow is never imported)
        doc_lengths = doc_lengths.combine_chunks()
    if hasattr(doc_lengths, "offsets") and hasattr(doc_lengths, "flatten"):  # a pyarrow ListArray
        offsets = np.asarray(doc_lengths.offsets.to_numpy(), dtype=np.int64)
        lengths = np.asarray(doc_lengths.flatten().to_numpy(zero_copy_only=False), dtype=np.int64)
        counts = np.diff(offsets)
    else:
        parts = [_as_array(d).reshape(-1).astype(np.int64) for d in doc_lengths]
        counts = np.fromiter((p.shape[0] for p in parts), dtype=np.int64, count=len(parts))
        lengths = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    n_rows = counts.shape[0]
    fill = np.bincount(np.repeat(np.arange(n_rows), counts), weights=lengths, minlength=n_rows)
    if (lengths < 0).any() or (fill > seq_len).any():
        raise ValueError(f"doc_lengths must be >= 0 and sum to at most seq_len ({seq_len}) in every row")
    bounds, position_ids, _ = _segments(lengths, counts, seq_len)
    return position_ids.reshape(n_rows, seq_len), bounds.astype(np.int32), int(np.diff(bounds).max(initial=0))


def _current_worker() -> int:
    """The PyTorch DataLoader worker id, or 0 outside a worker. Never imports torch."""
    torch = sys.modules.get("torch")
    if torch is None:
        return 0
    try:
        info = torch.utils.data.get_worker_info()
    except Exception:  # torch half-imported or without torch.utils.data
        return 0
    return 0 if info is None else int(info.id)


def _as_array(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):  # torch tensor
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _read_tokenizer(tokenizer: Any) -> dict[str, Any]:
    """mask_id, pad_id, special_ids and vocab_size from a SentencePiece model or a Hugging Face tokenizer."""
    if isinstance(tokenizer, (str, os.PathLike)):
        path = os.fspath(tokenizer)
        if path.endswith(".model") and os.path.isfile(path):
            import sentencepiece as spm

            tokenizer = spm.SentencePieceProcessor(model_file=path)
        else:
            from transformers import AutoTokenizer  # a Hugging Face tokenizer directory or hub name

            tokenizer = AutoTokenizer.from_pretrained(path)
    if hasattr(tokenizer, "is_control") and hasattr(tokenizer, "get_piece_size"):  # SentencePieceProcessor
        sp = tokenizer
        n = int(sp.get_piece_size())
        specials = [i for i in range(n) if sp.is_control(i) or sp.is_unknown(i)]

        def find(names: Sequence[str]) -> int | None:
            for name in names:
                i = sp.piece_to_id(name)
                if 0 <= i < n and sp.id_to_piece(i) == name:
                    return int(i)
            return None

        pad = sp.pad_id() if sp.pad_id() >= 0 else find(_PAD_NAMES)
        return {"mask_id": find(_MASK_NAMES), "pad_id": pad, "special_ids": specials, "vocab_size": n}
    if hasattr(tokenizer, "all_special_ids"):  # Hugging Face tokenizer
        specials = set(int(i) for i in tokenizer.all_special_ids)
        if getattr(tokenizer, "unk_token_id", None) is not None:
            specials.add(int(tokenizer.unk_token_id))
        return {
            "mask_id": tokenizer.mask_token_id,
            "pad_id": tokenizer.pad_token_id,
            "special_ids": sorted(specials),
            "vocab_size": len(tokenizer),
        }
    raise TypeError(
        "tokenizer must be a path to a SentencePiece .model, a SentencePieceProcessor, "
        f"or a Hugging Face tokenizer, not {type(tokenizer).__name__}"
    )


class WholeWordMaskCollator:
    """Exact BERT-style whole-word masking for rows with ``word_starts`` (packed or not).

    Parameters
    ----------
    tokenizer:
        Optional: a path to a SentencePiece ``.model`` (or a Hugging Face tokenizer name/directory), a
        ``SentencePieceProcessor`` or a Hugging Face tokenizer. The mask and pad ids, the special ids
        (SentencePiece: control and unknown pieces) and the vocabulary size are read from it. Without a
        tokenizer, the llm-jp v3 values are used (``LLMJP_V3_SPECIALS``). Explicit ``mask_id``, ``pad_id``,
        ``special_ids`` and ``vocab_size`` override either.
    special_ids:
        Ids never chosen for masking and never drawn as random replacements (mask and pad are always added).
    vocab_size:
        Random replacements are drawn uniformly from ``range(vocab_size)`` minus ``special_ids``.
    mlm_probability, mask_replace_prob, random_replace_prob:
        The share of maskable tokens chosen, and of the chosen ones the share turned into the mask token and
        into a random token (the rest stay as they are). 0.15 / 0.8 / 0.1 as in BERT and the recipe.
    seed, epoch:
        The random stream of a row is derived from ``(seed, epoch, worker id, row index)``; the row index
        counts the rows this collator (in this process) has masked since the last ``set_epoch``.
    per_document_budget:
        For packed rows, give every packed piece its own budget (so no document of a row goes unmasked)
        instead of one budget per row.
    rule:
        ``"skip"`` (BERT's rule, default) or ``"prefix"``; see :func:`select_groups` and ``docs/collator.md``.
    pad_to_multiple_of:
        Rows of different lengths are padded to the longest, rounded up to a multiple of this (None: no rounding).
    return_tensors:
        ``"np"`` (NumPy arrays) or ``"pt"`` (torch tensors, imported only then).
    return_varlen:
        For packed rows, also return ``cu_seqlens`` and ``max_seqlen`` (for varlen attention kernels).
    """

    def __init__(
        self,
        tokenizer: Any = None,
        *,
        mask_id: int | None = None,
        pad_id: int | None = None,
        special_ids: Iterable[int] | None = None,
        vocab_size: int | None = None,
        mlm_probability: float = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        seed: int = 0,
        epoch: int = 0,
        per_document_budget: bool = False,
        rule: str = "skip",
        pad_to_multiple_of: int | None = 8,
        return_tensors: str = "np",
        return_varlen: bool = True,
    ) -> None:
        info = dict(LLMJP_V3_SPECIALS) if tokenizer is None else _read_tokenizer(tokenizer)
        for key, value in (
            ("mask_id", mask_id),
            ("pad_id", pad_id),
            ("special_ids", special_ids),
            ("vocab_size", vocab_size),
        ):
            if value is not None:
                info[key] = value
        if info["mask_id"] is None:
            raise ValueError("no mask token id: pass mask_id=")
        if info["pad_id"] is None:
            raise ValueError("no pad token id: pass pad_id=")
        if not 0.0 <= mlm_probability <= 1.0:
            raise ValueError("mlm_probability must lie in [0, 1]")
        if not (0.0 <= mask_replace_prob <= 1.0 and 0.0 <= random_replace_prob <= 1.0):
            raise ValueError("mask_replace_prob and random_replace_prob must lie in [0, 1]")
        if mask_replace_prob + random_replace_prob > 1.0 + 1e-12:
            raise ValueError("mask_replace_prob + random_replace_prob must not exceed 1")
        if return_tensors not in ("np", "pt"):
            raise ValueError("return_tensors must be 'np' or 'pt'")
        if rule not in ("skip", "prefix"):
            raise ValueError("rule must be 'skip' or 'prefix'")
        if pad_to_multiple_of is not None and int(pad_to_multiple_of) < 1:
            raise ValueError("pad_to_multiple_of must be a positive integer or None")

        self.mask_id = int(info["mask_id"])
        self.pad_id = int(info["pad_id"])
        self.vocab_size = int(info["vocab_size"])
        specials = {int(i) for i in info["special_ids"]} | {self.mask_id, self.pad_id}
        self.special_ids = tuple(sorted(specials))
        self.mlm_probability = float(mlm_probability)
        self.mask_replace_prob = float(mask_replace_prob)
        self.random_replace_prob = float(random_replace_prob)
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.per_document_budget = bool(per_document_budget)
        self.rule = rule
        self.pad_to_multiple_of = None if pad_to_multiple_of is None else int(pad_to_multiple_of)
        self.return_tensors = return_tensors
        self.return_varlen = bool(return_varlen)
        self.rows_seen = 0

        special_arr = np.asarray(self.special_ids, dtype=np.int64)
        # The common case (llm-jp: 0..7) is a prefix of the vocabulary: "maskable" is then one comparison.
        self._special_below = (
            len(self.special_ids) if self.special_ids == tuple(range(len(self.special_ids))) else None
        )
        self._special_arr = special_arr
        keep = np.ones(self.vocab_size, dtype=bool)
        keep[special_arr[(special_arr >= 0) & (special_arr < self.vocab_size)]] = False
        self._random_pool = np.flatnonzero(keep).astype(np.int64)
        if self.random_replace_prob > 0 and self._random_pool.size == 0:
            raise ValueError("no non-special token to draw random replacements from")

    # ------------------------------------------------------------------ state

    def set_epoch(self, epoch: int) -> None:
        """Start the random streams of ``epoch`` (and restart the row counter)."""
        self.epoch = int(epoch)
        self.rows_seen = 0

    def trainer_callback(self) -> Any:
        """A ``transformers.TrainerCallback`` that calls :meth:`set_epoch` at the start of every epoch."""
        import math

        from transformers import TrainerCallback

        collator = self

        class _SetCollatorEpoch(TrainerCallback):
            def on_epoch_begin(self, args, state, control, **kwargs):  # noqa: ANN001
                collator.set_epoch(int(math.floor((state.epoch or 0.0) + 1e-6)))

        return _SetCollatorEpoch()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(mask_id={self.mask_id}, pad_id={self.pad_id}, "
            f"special_ids={list(self.special_ids)}, vocab_size={self.vocab_size}, "
            f"mlm_probability={self.mlm_probability}, mask_replace_prob={self.mask_replace_prob}, "
            f"random_replace_prob={self.random_replace_prob}, seed={self.seed}, epoch={self.epoch}, "
            f"per_document_budget={self.per_document_budget}, rule={self.rule!r}, "
            f"pad_to_multiple_of={self.pad_to_multiple_of}, return_tensors={self.return_tensors!r})"
        )

    # ------------------------------------------------------------------ entry points

    def __call__(self, features: Any, return_tensors: str | None = None) -> dict[str, Any]:
        """Collate and mask a batch: a list of rows (mappings), or a mapping of batched columns."""
        n_rows = len(features["input_ids"]) if isinstance(features, Mapping) else len(features)
        first_row = self.rows_seen
        self.rows_seen += n_rows
        return self.collate(
            features, epoch=self.epoch, worker=_current_worker(), first_row=first_row, return_tensors=return_tensors
        )

    def collate(
        self,
        features: Any,
        *,
        epoch: int | None = None,
        worker: int = 0,
        first_row: int = 0,
        return_tensors: str | None = None,
    ) -> dict[str, Any]:
        """Like ``__call__`` with the random stream given explicitly; keeps no state.

        Row ``i`` of the batch uses the stream of ``(seed, epoch, worker, first_row + i)``.
        """
        rt = return_tensors or self.return_tensors
        if rt not in ("np", "pt"):
            raise ValueError("return_tensors must be 'np' or 'pt'")
        ids, word_starts, lengths, doc_lengths = self._stack(features)
        out = self._mask(ids, word_starts, lengths, doc_lengths, self.epoch if epoch is None else epoch, worker, first_row)
        if rt == "pt":
            import torch

            out = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in out.items()}
        return out

    # ------------------------------------------------------------------ collation

    def _stack(self, features: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        if isinstance(features, Mapping):  # batched columns, e.g. dataset[i:j]
            cols = features
            n = len(cols["input_ids"])
            features = [{k: cols[k][i] for k in cols if k in ("input_ids", "word_starts", "doc_lengths")} for i in range(n)]
        if len(features) == 0:
            raise ValueError("empty batch")
        try:
            id_rows = [_as_array(f["input_ids"]) for f in features]
        except (KeyError, TypeError, IndexError) as e:
            raise KeyError("every row needs 'input_ids' (rows are mappings: input_ids, word_starts[, doc_lengths])") from e
        try:
            ws_rows = [_as_array(f["word_starts"]) for f in features]
        except KeyError as e:
            raise KeyError(
                "rows need 'word_starts' (the whole-word group starts). With the Hugging Face Trainer, set "
                "TrainingArguments(remove_unused_columns=False), or the Trainer drops the column before the collator sees it."
            ) from e
        lengths = np.fromiter((r.shape[0] for r in id_rows), dtype=np.int64, count=len(id_rows))
        for r, w in zip(id_rows, ws_rows):
            if r.ndim != 1 or w.shape != r.shape:
                raise ValueError(f"input_ids and word_starts must be 1-D and of equal length, got {r.shape} and {w.shape}")
        length = max(int(lengths.max()), 1)
        m = self.pad_to_multiple_of
        if m:
            length = -(-length // m) * m
        n_rows = len(id_rows)
        ids = np.empty((n_rows, length), dtype=np.int64)
        ws = np.zeros((n_rows, length), dtype=bool)
        for i, (r, w) in enumerate(zip(id_rows, ws_rows)):
            n = r.shape[0]
            ids[i, :n] = r
            ids[i, n:] = self.pad_id
            ws[i, :n] = w
        doc_lengths = None
        if any(f.get("doc_lengths") is not None for f in features):
            parts = []
            for f, r in zip(features, id_rows):
                d = f.get("doc_lengths")
                if d is None:  # a non-packed row among packed ones: one piece, up to its trailing padding
                    nonpad = np.flatnonzero(r != self.pad_id)
                    d = [int(nonpad[-1]) + 1] if nonpad.size else []
                parts.append(_as_array(d).reshape(-1))
            counts = np.fromiter((p.shape[0] for p in parts), dtype=np.int64, count=n_rows)
            flat = np.concatenate(parts).astype(np.int64) if counts.sum() else np.zeros(0, dtype=np.int64)
            row_of = np.repeat(np.arange(n_rows), counts)
            sums = np.bincount(row_of, weights=flat, minlength=n_rows) if flat.size else np.zeros(n_rows)
            if (flat < 0).any() or (sums > lengths).any():
                bad = int(np.flatnonzero(sums > lengths)[0]) if (sums > lengths).any() else 0
                raise ValueError(f"doc_lengths of row {bad} are negative or do not fit in its {int(lengths[bad])} tokens")
            doc_lengths = (flat, counts)
        return ids, ws, lengths, doc_lengths

    # ------------------------------------------------------------------ masking

    def _mask(
        self,
        ids: np.ndarray,
        word_starts: np.ndarray,
        lengths: np.ndarray,
        doc_lengths: tuple[np.ndarray, np.ndarray] | None,
        epoch: int,
        worker: int,
        first_row: int,
    ) -> dict[str, Any]:
        n_rows, length = ids.shape
        total = n_rows * length
        packed = doc_lengths is not None

        # Content (attention) and segments (packed pieces, then each row's padding tail).
        if packed:
            # doc_lengths: (piece lengths, number of pieces of each row), pieces in row order.
            bounds, position_ids, content = _segments(*doc_lengths, length)
            seg_starts = bounds[:-1]
        else:
            content = lengths
        valid = np.arange(length)[None, :] < content[:, None]

        # Maskable tokens and group starts/ends, on the flattened batch.
        if self._special_below is not None:
            maskable = ids >= self._special_below
        else:
            maskable = ~np.isin(ids, self._special_arr)
        maskable &= valid
        mf = maskable.reshape(-1)
        prev = np.empty(total, dtype=bool)
        prev[0] = False
        prev[1:] = mf[:-1]
        prev[::length] = False
        gstart = mf & (word_starts.reshape(-1) | ~prev)
        if packed:
            gstart[seg_starts] = mf[seg_starts]
        cont = np.zeros(total, dtype=bool)  # token j+1 continues the group of token j
        cont[:-1] = mf[1:] & ~gstart[1:]
        cont[length - 1 :: length] = False
        starts = np.flatnonzero(gstart)
        ends = np.flatnonzero(mf & ~cont)
        sizes = ends
        sizes -= starts
        sizes += 1
        n_groups = starts.shape[0]

        # Units (rows, or packed pieces) own contiguous runs of groups, in flat order.
        row_groups = np.count_nonzero(gstart.reshape(n_rows, length), axis=1)
        if packed and self.per_document_budget:
            unit_groups = np.add.reduceat(gstart, seg_starts, dtype=np.int64)
            n_maskable = np.add.reduceat(mf, seg_starts, dtype=np.int64)
        else:
            unit_groups = row_groups
            n_maskable = np.count_nonzero(maskable, axis=1)
        n_units = unit_groups.shape[0]

        # Stream of row i at flat position p = i*length + col: mix(key_i + (4*col + salt + 1) * GOLDEN).
        keys = row_keys(self.seed, epoch, worker, first_row + np.arange(n_rows, dtype=np.int64))
        keys -= np.arange(n_rows, dtype=np.uint64) * np.uint64((4 * length * _GOLDEN) & _U64)

        def stream(flat_pos: np.ndarray, row_key: np.ndarray, salt: int) -> np.ndarray:
            z = flat_pos.astype(np.uint64)
            z *= np.uint64((4 * _GOLDEN) & _U64)
            z += row_key
            z += np.uint64(((salt + 1) * _GOLDEN) & _U64)
            return _mix(z)

        labels = np.full(total, IGNORE_INDEX, dtype=np.int64)
        flat_ids = ids.reshape(-1)
        if n_groups and self.mlm_probability > 0:
            budget = np.rint(self.mlm_probability * n_maskable).astype(np.int64)
            budget = np.where(n_maskable > 0, np.maximum(budget, 1), 0)

            # Random order of groups within each unit: sort (unit | random key | group index) packed in 64 bits.
            h = stream(starts, np.repeat(keys, row_groups), _SALT_GROUP)
            index_bits = max(1, int(n_groups - 1).bit_length())
            unit_bits = max(1, int(n_units - 1).bit_length())
            key_bits = 64 - index_bits - unit_bits
            if key_bits >= 32:
                h >>= np.uint64(64 - key_bits)
                h <<= np.uint64(index_bits)
                h |= np.arange(n_groups, dtype=np.uint64)
                h |= np.repeat(np.arange(n_units, dtype=np.uint64) << np.uint64(64 - unit_bits), unit_groups)
                h.sort()
                h &= np.uint64((1 << index_bits) - 1)
                order = h.view(np.int64)
            else:  # batches of many millions of groups: a (slower) lexicographic sort on the full keys
                order = np.lexsort((h, np.repeat(np.arange(n_units), unit_groups)))
            sorted_sizes = sizes[order]
            ranks = _select_sorted(sorted_sizes, unit_groups, budget, self.rule)
            pos = _ranges(starts[order[ranks]], sorted_sizes[ranks])  # the chosen tokens
            if pos.size:
                labels[pos] = flat_ids[pos]
                pos_keys = keys[pos // length]
                u = stream(pos, pos_keys, _SALT_ACTION)
                u >>= np.uint64(11)
                uf = u.astype(np.float64)
                uf *= 1.0 / (1 << 53)
                to_mask = uf < self.mask_replace_prob
                to_random = ~to_mask & (uf < self.mask_replace_prob + self.random_replace_prob)
                flat_ids[pos[to_mask]] = self.mask_id
                rp = pos[to_random]
                if rp.size:
                    hr = stream(rp, pos_keys[to_random], _SALT_RANDOM_ID)
                    hr %= np.uint64(self._random_pool.shape[0])
                    flat_ids[rp] = self._random_pool[hr.view(np.int64)]

        if packed:
            attention = valid
        else:
            attention = valid & (ids != self.pad_id)
        out: dict[str, Any] = {
            "input_ids": ids,
            "labels": labels.reshape(n_rows, length),
            "attention_mask": attention.astype(np.int64),
        }
        if packed:
            out["position_ids"] = position_ids.reshape(n_rows, length)
            if self.return_varlen:
                out["cu_seqlens"] = bounds.astype(np.int32)
                out["max_seqlen"] = int(np.diff(bounds).max())
        return out
