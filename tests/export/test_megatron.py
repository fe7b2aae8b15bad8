"""`wwm-prep export --format megatron` on packed ja-sample, read back with megatron-core's own `IndexedDataset`,
and the masked-LM dataset over it checked as the collator is. Skipped where megatron-core is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

indexed = pytest.importorskip("megatron.core.datasets.indexed_dataset")
torch = pytest.importorskip("torch")

from tests.conftest import run  # noqa: E402
from tests.export.conftest import assert_bert_statistics, assert_rows_equal, masking_stats  # noqa: E402
from wwm_prep.export.megatron_dataset import MEGATRON_IGNORE, WholeWordMaskedDataset  # noqa: E402
from wwm_prep.train.collator import IGNORE_INDEX, WholeWordMaskCollator  # noqa: E402

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def megatron_prefix(ja_sequences: dict[int, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    prefix = tmp_path_factory.mktemp("megatron") / "ja"
    code, output = run("export", str(ja_sequences[8192]), "--format", "megatron", "--out", str(prefix))
    assert code == 0, output
    return prefix


def test_indexed_datasets_give_back_every_row(megatron_prefix: Path, arrow_rows: dict) -> None:
    for name in ("input_ids", "word_starts", "doc_lengths"):
        dataset = indexed.IndexedDataset(f"{megatron_prefix}_{name}")
        assert_rows_equal([dataset[i] for i in range(len(dataset))], arrow_rows[name], name)
        assert dataset.document_indices.tolist() == list(range(len(dataset) + 1))  # one document per row
    ids = indexed.IndexedDataset(f"{megatron_prefix}_input_ids")
    assert ids[0].dtype == np.int32 and indexed.IndexedDataset(f"{megatron_prefix}_word_starts")[0].dtype == np.uint8
    assert (ids.sequence_lengths == 8192).all()


def test_the_record_says_what_was_made_and_from_what(megatron_prefix: Path, ja_sequences: dict[int, Path],
                                                     arrow_rows: dict) -> None:
    import json

    from wwm_prep.core.files import sha256_file

    record = json.loads(Path(f"{megatron_prefix}_export.json").read_text())
    assert record["source"]["manifest_sha256"] == sha256_file(ja_sequences[8192] / "manifest.json")
    assert record["rows"] == len(arrow_rows["input_ids"]) and record["tokens"] == record["rows"] * 8192
    assert record["content_tokens"] == sum(int(d.sum()) for d in arrow_rows["doc_lengths"])
    assert record["columns"] == {"input_ids": "int32", "word_starts": "uint8", "doc_lengths": "int32"}
    for name, info in record["files"].items():
        assert sha256_file(Path(f"{megatron_prefix}_{name}")) == info["sha256"]


def _samples_as_batches(dataset: WholeWordMaskedDataset, batch_size: int):  # noqa: ANN202
    """(unmasked rows, the masked batch in the collator's terms) for each batch a DataLoader makes."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    for b, batch in enumerate(loader):
        rows = [dataset.row(i) for i in range(b * batch_size, b * batch_size + len(batch["text"]))]
        assert set(batch) == {"text", "labels", "loss_mask", "padding_mask", "types", "is_random", "position_ids"}
        assert all(v.dtype == torch.int64 for v in batch.values())
        loss_mask = batch["loss_mask"].numpy().astype(bool)
        assert (batch["labels"].numpy()[~loss_mask] == MEGATRON_IGNORE).all()
        yield rows, {"input_ids": batch["text"].numpy(),
                     "labels": np.where(loss_mask, batch["labels"].numpy(), IGNORE_INDEX)}


def test_the_masked_lm_dataset_passes_the_collators_checks(megatron_prefix: Path, llm_jp_tokenizer_path: Path) -> None:
    dataset = WholeWordMaskedDataset(megatron_prefix, tokenizer=llm_jp_tokenizer_path, seed=2024)
    stats = masking_stats(_samples_as_batches(dataset, 8), dataset.collator)
    assert stats["rows"] == len(dataset)
    assert_bert_statistics(stats)


def test_samples_are_the_collators_masks_of_the_same_rows(megatron_prefix: Path, llm_jp_tokenizer_path: Path) -> None:
    collator = WholeWordMaskCollator(llm_jp_tokenizer_path, seed=5)
    dataset = WholeWordMaskedDataset(megatron_prefix, collator, epoch=1)
    rows = [dataset.row(i) for i in range(8, 16)]
    want = collator.collate(rows, epoch=1, first_row=8)
    got = [dataset[i] for i in range(8, 16)]
    assert np.array_equal(np.stack([g["text"] for g in got]), want["input_ids"])
    assert np.array_equal(np.stack([g["position_ids"] for g in got]), want["position_ids"])
    assert np.array_equal(np.stack([g["padding_mask"] for g in got]), want["attention_mask"])
    dataset.set_epoch(2)
    assert not np.array_equal(dataset[8]["text"], got[0]["text"])  # a new epoch, new masks
    assert np.array_equal(dataset[-len(dataset) + 8]["text"], dataset[8]["text"])


def test_a_wrong_prefix_is_one_line(tmp_path: Path) -> None:
    from wwm_prep.core.errors import WwmPrepError

    with pytest.raises(WwmPrepError, match="not found: give the prefix"):
        WholeWordMaskedDataset(tmp_path / "nothing")
