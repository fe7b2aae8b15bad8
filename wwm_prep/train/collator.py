"""Whole-word-masking collator: exact BERT-style whole-word masking (or n-grams and spans of whole words),
vectorised, framework-neutral.

``from wwm_prep import WholeWordMaskCollator`` needs NumPy only. torch is imported only when
``return_tensors="pt"`` is asked for (and looked up, never imported, to find the DataLoader worker id).

A row is a mapping with ``input_ids`` (ints), ``word_starts`` (1 where a token starts a whole-word
group) and, for packed rows, ``doc_lengths`` (the length of each packed piece, ``<CLS>`` and ``<SEP>``
included; what remains of the row is padding). NumPy arrays, lists and CPU tensors are all accepted.

This module stacks rows into a padded batch and keeps the random stream's place (and the step a rate schedule is
read at); the masking steps are in ``masking``, the spans of the n-gram and span modes in ``spans``, the budgeted
choice in ``selection``, the counter-based random streams in ``randomness``, the schedules in ``schedule``, the
per-piece attention (``document_ids``, the 4-D block mask) in ``attention`` and the checked options in ``options``.
See ``docs/collator.md``.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from wwm_prep.core.rows import RowLayout
from wwm_prep.train.masking import IGNORE_INDEX, Choice, choose, content, mask_batch, varlen_bounds
from wwm_prep.train.options import LLMJP_V3_SPECIALS, MaskingOptions, check_return_tensors, keywords
from wwm_prep.train.randomness import batch_keys
from wwm_prep.train.schedule import RateSchedule, Schedule
from wwm_prep.train.selection import select_groups

__all__ = ["WholeWordMaskCollator", "LLMJP_V3_SPECIALS", "IGNORE_INDEX", "MaskingOptions", "RateSchedule",
           "select_groups", "varlen_positions"]

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


def _current_worker() -> tuple[int, int]:
    """The PyTorch DataLoader worker id and the number of workers, or (0, 1) outside a worker. Never imports torch."""
    torch = sys.modules.get("torch")
    if torch is None:
        return 0, 1
    try:
        info = torch.utils.data.get_worker_info()
    except Exception:  # torch half-imported or without torch.utils.data
        return 0, 1
    return (0, 1) if info is None else (int(info.id), int(info.num_workers))


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
    """Every keyword of :class:`MaskingOptions` becomes an attribute of the collator, as before options existed,
    and a keyword of its signature (what ``help()`` and editors show), with its default."""
    for option in keywords():
        setattr(cls, option.name, _Option(option.name))
    keyword = inspect.Parameter.KEYWORD_ONLY
    given = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
             inspect.Parameter("tokenizer", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)]
    given += [inspect.Parameter(o.name, keyword, default=None if o.default is dataclasses.MISSING else o.default,
                                annotation=o.type) for o in keywords()]
    given += [inspect.Parameter(name, keyword, default=0, annotation="int") for name in ("seed", "epoch")]
    cls.__init__.__signature__ = inspect.Signature(given, return_annotation="None")  # type: ignore[attr-defined]
    return cls


@_options_as_attributes
class WholeWordMaskCollator:
    """Exact BERT-style whole-word masking for rows with ``word_starts`` (packed or not), or masking of n-grams
    or spans of whole words.

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
        into a random token (the rest stay as they are). 0.15 / 0.8 / 0.1 as in BERT and the recipe. The rate can
        change between steps: :meth:`set_mlm_probability`, or a schedule (:meth:`set_schedule`).
    masking:
        What a choice takes: ``"word"`` one whole-word group (BERT, the default); ``"ngram"`` 1 to ``max_ngram``
        consecutive groups with probability ∝ 1/n (Megatron-LM); ``"span"`` a span of groups whose length is
        geometric with ``span_p``, truncated at ``max_span`` (SpanBERT). Spans stay inside a packed piece and
        between special tokens; the budget is exact in every mode. The 80/10/10 replacement is drawn per token
        in "word" and "ngram" mode, once per span in "span" mode, as the papers' code does.
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
    block_attention:
        Return ``attention_mask`` as the 4-D mask transformers' eager and SDPA attention take (float32, rows × 1
        × L × L, 0 where a token may attend, float32's minimum elsewhere): each token attends within its own
        packed piece only, padding within the padding. It replaces the model's own causal or padding mask.
        Costs 4 bytes × rows × L² per batch; see ``docs/collator.md`` for when ``cu_seqlens`` is better.
    return_document_ids:
        Also return ``document_ids`` (rows × L): each token's piece within its row from 0, -1 for padding (for
        FlexAttention's ``mask_mod``, or a mask of your own). On request, so that batches without it stay as
        they were and models whose ``forward`` rejects unknown keywords are not handed one more.

    The settings, checked once, are ``options`` (:class:`MaskingOptions`); each is also an attribute of the
    same name, and setting one checks it again.
    """

    def __init__(self, tokenizer: Any = None, *, seed: int = 0, epoch: int = 0, **options: Any) -> None:
        self.options = MaskingOptions.of(tokenizer, **options)
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.rows_seen = 0
        self.batches_seen = 0
        self.schedule: RateSchedule | None = None
        self.first_step = 0  # the step the current epoch's first batch is used for
        self.batches_per_step = 1  # gradient accumulation

    # ------------------------------------------------------------------ state

    def set_epoch(self, epoch: int, step: int | None = None) -> None:
        """Start the random streams of ``epoch`` (and restart the row counter).

        ``step`` is the optimizer step the epoch's first batch is used for, where a schedule is read. None counts
        on from the batches this object has masked itself, which is right only when no DataLoader worker makes
        them: workers' counts never come back to the main process, so loops with workers pass the step.
        """
        if step is None:
            step = self.first_step + -(-self.batches_seen // self.batches_per_step)
        self.epoch = int(epoch)
        self.first_step = int(step)
        self.rows_seen = 0
        self.batches_seen = 0

    def set_mlm_probability(self, mlm_probability: float) -> None:
        """Mask this share from the next batch on (checked).

        A plain setter: it changes this object only. DataLoader workers hold copies made when an iterator is
        created (every epoch, unless ``persistent_workers=True``: never again), so a change reaches them at the
        next ``iter(loader)`` at the earliest. To change the rate within an epoch, set a schedule.
        """
        if self.schedule is not None:
            raise ValueError("this collator follows a schedule: set_schedule(None) first")
        self.mlm_probability = mlm_probability

    def set_schedule(self, schedule: Schedule | None, batches_per_step: int = 1) -> None:
        """Follow a rate schedule: ``[(0, 0.30), (100_000, 0.15)]`` or a function from step to rate (None: stop).

        Each batch's step is worked out where the batch is made: the step its epoch started at
        (:meth:`set_epoch`) plus the batches made since, divided by ``batches_per_step`` (gradient
        accumulation). In a DataLoader worker, worker ``w`` of ``n`` makes batches ``w``, ``w + n``, … of the
        epoch, so it knows each batch's number without being told; the rate, like the masks, is a function of
        the batch's place in the stream. The schedule must be set before the DataLoader's iterator is created.
        """
        self.schedule = None if schedule is None else RateSchedule(schedule)
        self.batches_per_step = int(batches_per_step)
        if self.batches_per_step < 1:
            raise ValueError("batches_per_step must be a positive integer")

    def mlm_probability_at(self, step: int | None) -> float:
        """The rate of a batch used for optimizer step ``step``: the schedule's, or ``mlm_probability``."""
        if self.schedule is None:
            return self.mlm_probability
        if step is None:
            raise ValueError("this collator follows a schedule: pass the batch's step")
        return self.schedule(step)

    def trainer_callback(self, schedule: Schedule | None = None) -> Any:
        """A ``transformers.TrainerCallback`` that calls :meth:`set_epoch` at the start of every epoch with the
        Trainer's global step, before the epoch's DataLoader iterator (and its workers) is created.

        With ``schedule`` (see :meth:`set_schedule`), the collator follows it at every batch's own step, through
        the Trainer's gradient accumulation and in DataLoader workers too.
        """
        import math

        from transformers import TrainerCallback

        collator = self
        if schedule is not None:
            self.set_schedule(schedule)

        class _FollowTrainer(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
                collator.batches_per_step = int(args.gradient_accumulation_steps)

            def on_epoch_begin(self, args, state, control, **kwargs):  # noqa: ANN001
                collator.set_epoch(int(math.floor((state.epoch or 0.0) + 1e-6)), step=state.global_step)

        return _FollowTrainer()

    def __repr__(self) -> str:
        shown = [(o.name, getattr(self, o.name)) for o in keywords()]
        shown += [("seed", self.seed), ("epoch", self.epoch), ("schedule", self.schedule)]
        return f"{type(self).__name__}({', '.join(f'{name}={value!r}' for name, value in shown)})"

    # ------------------------------------------------------------------ entry points

    def __call__(self, features: Any, return_tensors: str | None = None) -> dict[str, Any]:
        """Collate and mask a batch: a list of rows (mappings), or a mapping of batched columns."""
        n_rows = len(features["input_ids"]) if isinstance(features, Mapping) else len(features)
        first_row = self.rows_seen
        worker, n_workers = _current_worker()
        step = self.first_step + (self.batches_seen * n_workers + worker) // self.batches_per_step
        self.rows_seen += n_rows
        self.batches_seen += 1
        return self.collate(features, epoch=self.epoch, worker=worker, first_row=first_row, step=step,
                            return_tensors=return_tensors)

    def collate(
        self,
        features: Any,
        *,
        epoch: int | None = None,
        worker: int = 0,
        first_row: int = 0,
        step: int | None = None,
        return_tensors: str | None = None,
    ) -> dict[str, Any]:
        """Like ``__call__`` with the random stream given explicitly; keeps no state.

        Row ``i`` of the batch uses the stream of ``(seed, epoch, worker, first_row + i)``; with a schedule, the
        batch is masked at the rate of ``step``.
        """
        rt = check_return_tensors(return_tensors or self.return_tensors)
        ids, word_starts, lengths, layout, keys = self._stream_batch(features, epoch, worker, first_row)
        out = mask_batch(self.options, ids, word_starts, lengths, layout, keys, self.mlm_probability_at(step))
        if rt == "pt":
            import torch

            out = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in out.items()}
        return out

    def choice(self, features: Any, *, epoch: int | None = None, worker: int = 0, first_row: int = 0,
               step: int | None = None) -> Choice:
        """What :meth:`collate` with the same arguments chooses: the candidates (whole-word groups, or spans of
        them), the order they were visited in and those taken; for inspecting and testing a masking mode."""
        ids, word_starts, lengths, layout, keys = self._stream_batch(features, epoch, worker, first_row)
        valid, segments = content(lengths, layout, ids.shape[1])
        return choose(self.options, ids, word_starts, valid, segments, keys, self.mlm_probability_at(step))

    # ------------------------------------------------------------------ collation

    def _stream_batch(self, features: Any, epoch: int | None, worker: int,
                      first_row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, RowLayout | None, np.ndarray]:
        """The padded ids and word starts, the rows' lengths, their layout and their random streams."""
        rows = _rows(features)
        id_rows, ws_rows = _columns(rows)
        ids, word_starts, lengths = self._pad(id_rows, ws_rows)
        layout = _layout(rows, id_rows, lengths, ids.shape[1], self.pad_id)
        keys = batch_keys(self.seed, self.epoch if epoch is None else epoch, worker, first_row, *ids.shape)
        return ids, word_starts, lengths, layout, keys

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
    parts = [_one_piece(r, pad_id) if f.get("doc_lengths") is None else f["doc_lengths"] for f, r in zip(rows, id_rows)]
    return RowLayout.of(parts, length, room=lengths)


def _one_piece(ids: np.ndarray, pad_id: int) -> list[int]:
    nonpad = np.flatnonzero(ids != pad_id)
    return [int(nonpad[-1]) + 1] if nonpad.size else []
