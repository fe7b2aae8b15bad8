"""`wwm-prep export --format mds` on packed ja-sample, read back with mosaicml-streaming's own `StreamingDataset`,
and the collator fed those rows as they come. mosaicml-streaming pins numpy<2.2 and transformers<5, so these
run in an environment of their own (`make test-mds`) and are skipped where it is absent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

streaming = pytest.importorskip("streaming")

from tests.conftest import run  # noqa: E402
from tests.export.conftest import assert_bert_statistics, assert_rows_equal, masking_stats  # noqa: E402
from wwm_prep.core.files import sha256_file  # noqa: E402
from wwm_prep.train.collator import WholeWordMaskCollator  # noqa: E402

pytestmark = [pytest.mark.shared, pytest.mark.mds]


@pytest.fixture(scope="module")
def mds_dir(ja_sequences: dict[int, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mds") / "ja"
    code, output = run("export", str(ja_sequences[8192]), "--format", "mds", "--out", str(out), "--shard-size", "4mb")
    assert code == 0, output
    return out


@pytest.fixture(scope="module")
def samples(mds_dir: Path) -> list[dict]:
    """Every sample as StreamingDataset gives it, read from the local directory alone."""
    dataset = streaming.StreamingDataset(local=str(mds_dir), batch_size=8)
    return [dataset[i] for i in range(dataset.num_samples)]


def test_streaming_dataset_gives_back_every_row(mds_dir: Path, samples: list[dict], arrow_rows: dict) -> None:
    index = json.loads((mds_dir / "index.json").read_text())
    assert len(index["shards"]) > 1 and all(s["compression"] == "zstd" for s in index["shards"])
    for name in ("input_ids", "word_starts", "doc_lengths"):
        assert_rows_equal([s[name] for s in samples], arrow_rows[name], name)
    assert [s["doc_sources"] for s in samples] == arrow_rows["doc_sources"]
    assert samples[0]["input_ids"].dtype == np.uint32 and samples[0]["word_starts"].dtype == np.uint8


def test_the_record_says_what_was_made_and_from_what(mds_dir: Path, ja_sequences: dict[int, Path],
                                                     arrow_rows: dict) -> None:
    record = json.loads((mds_dir / "export.json").read_text())
    assert record["format"] == "mds" and record["options"] == {"compression": "zstd", "shard_size": "4mb"}
    assert record["source"]["manifest_sha256"] == sha256_file(ja_sequences[8192] / "manifest.json")
    assert record["rows"] == len(arrow_rows["input_ids"])
    assert record["columns"] == {"input_ids": "ndarray:uint32", "word_starts": "ndarray:uint8",
                                 "doc_lengths": "ndarray:int32", "doc_sources": "json"}
    assert "index.json" in record["files"]
    for name, info in record["files"].items():
        assert sha256_file(mds_dir / name) == info["sha256"]


def test_the_collator_masks_streamed_rows_as_they_are(samples: list[dict], llm_jp_tokenizer_path: Path) -> None:
    collator = WholeWordMaskCollator(llm_jp_tokenizer_path, seed=2024)
    batches = ((samples[b : b + 8], collator(samples[b : b + 8])) for b in range(0, len(samples), 8))
    assert_bert_statistics(masking_stats(batches, collator))


def test_a_dataloader_over_the_streaming_dataset_takes_the_collator(mds_dir: Path, llm_jp_tokenizer_path: Path,
                                                                    tmp_path: Path) -> None:
    import torch

    collator = WholeWordMaskCollator(llm_jp_tokenizer_path, seed=0, return_tensors="pt")
    dataset = streaming.StreamingDataset(local=str(mds_dir), batch_size=4, shuffle=True, shuffle_seed=1)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=collator)))
    assert batch["input_ids"].shape == (4, 8192) and (batch["labels"] != -100).any()


def test_uncompressed_shards_and_a_rerun(ja_sequences: dict[int, Path], tmp_path: Path) -> None:
    out = tmp_path / "plain"
    args = ("export", str(ja_sequences[512]), "--format", "mds", "--out", str(out), "--compression", "none")
    assert run(*args)[0] == 0
    assert {s["compression"] for s in json.loads((out / "index.json").read_text())["shards"]} == {None}
    code, output = run(*args)
    assert code == 0 and "already complete" in output
    code, output = run("export", str(ja_sequences[512]), "--format", "mds", "--out", str(out))
    assert code == 2 and "compression: none → zstd" in output
