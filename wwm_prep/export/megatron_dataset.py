"""A masked-LM dataset over a Megatron export, masked whole word by whole word by wwm-prep's collator.

Megatron-LM's own BERT dataset decides words by WordPiece's `##` prefix, which SentencePiece pieces do not
carry and Japanese text has no spaces to imply; this one reads the export's `word_starts` beside its
`input_ids` and masks with `WholeWordMaskCollator`, so the masks are exactly those the collator makes of the
same rows. Sample i is masked with the collator's stream of row i, `(seed, epoch, worker 0, row i)`: the same
whatever order, sampler or number of DataLoader workers reads it.

Samples are what Megatron's `pretrain_bert.py` takes from its BERT dataset, all int64, so a default collate
stacks them: `text` (ids with masks applied), `labels` (the original id where a token is predicted, else -1,
Megatron's convention), `loss_mask`, `padding_mask` (1 inside the row's pieces), `types` (zeros: one
segment) and `is_random` (0: there is no sentence-order or next-sentence task), plus `position_ids`
restarting at every packed piece.

Limits: a sample is one packed row as `pack` made it (no re-packing, no truncation, no sentence pairs, so
train with `--bert-no-binary-head`); pieces of one row attend to each other unless the model uses
`position_ids` or the pieces' bounds (`varlen_positions(dataset.row(i)["doc_lengths"], …)`); this is a plain
map-style dataset, not one of Megatron's `MegatronDataset`s built by `BlendedMegatronDatasetBuilder` (no
blending, splits or cached sample indices); `doc_sources` are not in a Megatron export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.export.formats.megatron import columns, require_megatron
from wwm_prep.train.collator import IGNORE_INDEX, WholeWordMaskCollator

MEGATRON_IGNORE = -1  # what Megatron's BERT dataset puts in `labels` where nothing is predicted


class WholeWordMaskedDataset(torch.utils.data.Dataset):
    """Masked-LM samples of the rows of a Megatron export `PREFIX` (`PREFIX_input_ids.bin/.idx`, …).

    `collator` masks them (default: one built from `collator_options`, e.g. the tokenizer's path, `seed`,
    `mlm_probability`); its own random state is not used, only its options and seed. `set_epoch` draws new masks.
    """

    def __init__(self, prefix: str | Path, collator: WholeWordMaskCollator | None = None, *, epoch: int = 0,
                 **collator_options: Any) -> None:
        indexed = require_megatron()
        self.prefix = str(prefix)
        self.columns = {}
        for name in columns():
            if not indexed.IndexedDataset.exists(f"{self.prefix}_{name}"):
                raise WwmPrepError(f"{self.prefix}_{name}.bin/.idx not found: give the prefix that `wwm-prep export "
                                   "--format megatron --out PREFIX` wrote")
            self.columns[name] = indexed.IndexedDataset(f"{self.prefix}_{name}")
        counts = {name: len(d) for name, d in self.columns.items()}
        if len(set(counts.values())) != 1:
            raise WwmPrepError(f"{self.prefix}: the datasets hold different numbers of rows ({counts})")
        ids, starts = self.columns["input_ids"], self.columns["word_starts"]
        if not np.array_equal(ids.sequence_lengths, starts.sequence_lengths):
            raise WwmPrepError(f"{self.prefix}: input_ids and word_starts rows differ in length")
        self.collator = collator if collator is not None else WholeWordMaskCollator(**collator_options)
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.columns["input_ids"])

    def set_epoch(self, epoch: int) -> None:
        """Mask with the streams of `epoch` (before the DataLoader's iterator, and so its workers, are made)."""
        self.epoch = int(epoch)

    def row(self, i: int) -> dict[str, np.ndarray]:
        """Row i as exported, unmasked: `input_ids`, `word_starts`, `doc_lengths`."""
        return {name: dataset[int(i)] for name, dataset in self.columns.items()}

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if not -len(self) <= int(i) < len(self):
            raise IndexError(f"row {i} of {len(self)}")
        i = int(i) % len(self)
        out = self.collator.collate([self.row(i)], epoch=self.epoch, worker=0, first_row=i, return_tensors="np")
        labels = out["labels"][0]
        predicted = labels != IGNORE_INDEX
        return {
            "text": out["input_ids"][0],
            "labels": np.where(predicted, labels, MEGATRON_IGNORE).astype(np.int64),
            "loss_mask": predicted.astype(np.int64),
            "padding_mask": out["attention_mask"][0].astype(np.int64),
            "types": np.zeros_like(labels, dtype=np.int64),
            "is_random": np.int64(0),
            "position_ids": out["position_ids"][0].astype(np.int64),
        }
