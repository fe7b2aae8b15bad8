"""Whole-word-masking collator: exact BERT-style whole-word masking, vectorised, framework-neutral.

``from wwm_prep import WholeWordMaskCollator`` needs NumPy only. torch is imported only when
``return_tensors="pt"`` is asked for (and looked up, never imported, to find the DataLoader worker id).

A row is a mapping with ``input_ids`` (ints), ``word_starts`` (1 where a token starts a whole-word
group) and, for packed rows, ``doc_lengths`` (the length of each packed piece, ``<CLS>`` and ``<SEP>``
included; what remains of the row is padding). NumPy arrays, lists and CPU tensors are all accepted.

This module stacks rows into a padded batch and keeps the random stream's place; the masking steps are in
``masking``, the budgeted choice in ``selection``, the counter-based random streams in ``randomness`` and the
checked options in ``options``. See ``docs/collator.md``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from wwm_prep.core.rows import RowLayout
from wwm_prep.train.masking import IGNORE_INDEX, mask_batch, varlen_bounds
from wwm_prep.train.options import LLMJP_V3_SPECIALS, MaskingOptions, check_return_tensors, token_ids
from wwm_prep.train.randomness import batch_keys
from wwm_prep.train.selection import select_groups

__all__ = ["WholeWordMaskCollator", "LLMJP_V3_SPECIALS", "IGNORE_INDEX", "MaskingOptions", "select_groups",
           "varlen_positions"]

_ROW_KEYS = ("input_ids", "word_starts", "doc_lengths")


def varlen_positions(doc_lengths: Any, seq_len: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``position_ids`` (rows × seq_len), ``cu_seqlens`` and ``max_seqlen`` of packed rows, from their ``doc_lengths``.

    The values the collator returns for the same rows, without masking anything: positions restart at every
    piece and at each row's padding tail, which is a segment of its own, so ``cu_seqlens`` covers the whole
    flattened batch (``cu_seqlens[-1] == rows * seq_len``) as FlashAttention's varlen kernels expect.
    ``doc_lengths`` is one sequence of piece lengths per row (lists, arrays, or a pyarrow list column).
    """
    layout = RowLayout.of(doc_lengths, seq_len)
    bounds, position_ids = layout.segments()
    cu_seqlens, max_seqlen = varlen_bounds(bounds)
    return position_ids.reshape(layout.rows, seq_len), cu_seqlens, max_seqlen


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


class _Option:
    """A collator attribute kept in its options: reading reads them, setting rebuilds them (checked again)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, collator: Any, owner: type | None = None) -> Any:
        return self if collator is None else getattr(collator.options, self.name)

    def __set__(self, collator: Any, value: Any) -> None:
        collator.options = dataclasses.replace(collator.options, **{self.name: value})


def _options_as_attributes(cls: type) -> type:
    """Every field of :class:`MaskingOptions` becomes an attribute of the collator, as before options existed."""
    for option in dataclasses.fields(MaskingOptions):
        if option.init:
            setattr(cls, option.name, _Option(option.name))
    return cls


@_options_as_attributes
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

    The settings, checked once, are ``options`` (:class:`MaskingOptions`); each is also an attribute of the
    same name, and setting one checks it again.
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
        self.options = MaskingOptions(
            **token_ids(tokenizer, mask_id=mask_id, pad_id=pad_id, special_ids=special_ids, vocab_size=vocab_size),
            mlm_probability=mlm_probability, mask_replace_prob=mask_replace_prob,
            random_replace_prob=random_replace_prob, per_document_budget=per_document_budget, rule=rule,
            pad_to_multiple_of=pad_to_multiple_of, return_tensors=return_tensors, return_varlen=return_varlen,
        )
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.rows_seen = 0

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
        rt = check_return_tensors(return_tensors or self.return_tensors)
        rows = _rows(features)
        id_rows, ws_rows = _columns(rows)
        ids, word_starts, lengths = self._pad(id_rows, ws_rows)
        layout = _layout(rows, id_rows, lengths, ids.shape[1], self.pad_id)
        keys = batch_keys(self.seed, self.epoch if epoch is None else epoch, worker, first_row, *ids.shape)
        out = mask_batch(self.options, ids, word_starts, lengths, layout, keys)
        if rt == "pt":
            import torch

            out = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in out.items()}
        return out

    # ------------------------------------------------------------------ collation

    def _pad(self, id_rows: list[np.ndarray], ws_rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows padded to the longest, rounded up to ``pad_to_multiple_of``; and the rows' own lengths."""
        lengths = np.fromiter((r.shape[0] for r in id_rows), dtype=np.int64, count=len(id_rows))
        length = max(int(lengths.max()), 1)
        m = self.pad_to_multiple_of
        if m:
            length = -(-length // m) * m
        ids = np.empty((len(id_rows), length), dtype=np.int64)
        ws = np.zeros((len(id_rows), length), dtype=bool)
        for i, (r, w) in enumerate(zip(id_rows, ws_rows)):
            n = r.shape[0]
            ids[i, :n] = r
            ids[i, n:] = self.pad_id
            ws[i, :n] = w
        return ids, ws, lengths


def _rows(features: Any) -> Sequence[Mapping[str, Any]]:
    """A batch as a list of rows; a mapping of batched columns (``dataset[i:j]``) is split into rows."""
    if isinstance(features, Mapping):
        n = len(features["input_ids"])
        features = [{k: features[k][i] for k in features if k in _ROW_KEYS} for i in range(n)]
    if len(features) == 0:
        raise ValueError("empty batch")
    return features


def _columns(rows: Sequence[Mapping[str, Any]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each row's ``input_ids`` and ``word_starts`` as arrays, with errors that say what a row needs."""
    try:
        id_rows = [_as_array(f["input_ids"]) for f in rows]
    except (KeyError, TypeError, IndexError) as e:
        raise KeyError("every row needs 'input_ids' (rows are mappings: input_ids, word_starts[, doc_lengths])") from e
    try:
        ws_rows = [_as_array(f["word_starts"]) for f in rows]
    except KeyError as e:
        raise KeyError(
            "rows need 'word_starts' (the whole-word group starts). With the Hugging Face Trainer, set "
            "TrainingArguments(remove_unused_columns=False), or the Trainer drops the column before the collator sees it."
        ) from e
    for r, w in zip(id_rows, ws_rows):
        if r.ndim != 1 or w.shape != r.shape:
            raise ValueError(f"input_ids and word_starts must be 1-D and of equal length, got {r.shape} and {w.shape}")
    return id_rows, ws_rows


def _layout(rows: Sequence[Mapping[str, Any]], id_rows: list[np.ndarray], lengths: np.ndarray, length: int,
            pad_id: int) -> RowLayout | None:
    """Where the pieces of packed rows lie (None if no row is packed); each row's pieces must fit in its own
    tokens, not only in the padded batch.

    A row without ``doc_lengths`` among packed ones is one piece, up to its trailing padding.
    """
    if all(f.get("doc_lengths") is None for f in rows):
        return None
    parts = [_as_array(_one_piece(r, pad_id) if f.get("doc_lengths") is None else f["doc_lengths"]).reshape(-1)
             for f, r in zip(rows, id_rows)]
    counts = np.fromiter((p.shape[0] for p in parts), dtype=np.int64, count=len(parts))
    flat = np.concatenate(parts).astype(np.int64) if counts.sum() else np.zeros(0, dtype=np.int64)
    layout = RowLayout(length, flat, counts)
    bad = layout.fill > lengths
    if (flat < 0).any():
        bad |= np.bincount(layout.row_of, weights=flat < 0, minlength=layout.rows) > 0
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ValueError(f"doc_lengths of row {r} are negative or do not fit in its {int(lengths[r])} tokens")
    return layout


def _one_piece(ids: np.ndarray, pad_id: int) -> list[int]:
    nonpad = np.flatnonzero(ids != pad_id)
    return [int(nonpad[-1]) + 1] if nonpad.size else []
