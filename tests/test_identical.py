"""Outputs stay byte for byte what they were when `tests/golden/ja-sample.json` was recorded.

The fingerprints are sha256 digests of every shard that segment and pack write on ja-sample, and of every
array the collator returns for its packed and unpacked rows. They were recorded before the package was
reorganised (set WWM_PREP_WRITE_GOLDEN=1 to record them again, on purpose, when a format changes).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

GOLDEN = Path(__file__).parent / "golden" / "ja-sample.json"


@pytest.fixture(scope="module")
def sample_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wwm_prep.core.resources import resource
    from wwm_prep.pipeline.segment import SegmentConfig, run_segment

    out = tmp_path_factory.mktemp("sample-docs")
    run_segment([str(resource("sample", "corpus"))], out, SegmentConfig(dictionary="tiny-ja"), quiet=True)
    return out


def shard_digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.suffix in (".arrow", ".jsonl") and not p.name.startswith(".")}


def batch_digest(batch: dict) -> str:
    digest = hashlib.sha256()
    for key in sorted(batch):
        value = np.asarray(batch[key])
        digest.update(f"{key}|{value.dtype}|{value.shape}|".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def rows_of(directory: Path, columns: tuple[str, ...]) -> list[dict[str, np.ndarray]]:
    rows = []
    for path in sorted(directory.glob("*.arrow")):
        with pa.OSFile(str(path), "rb") as source:
            table = pa.ipc.open_stream(source).read_all()
        lists = {c: table.column(c).to_pylist() for c in columns}
        rows += [{c: np.asarray(lists[c][i]) for c in columns} for i in range(table.num_rows)]
    return rows


def collator_digests(rows: list[dict[str, np.ndarray]], batch_size: int, **options: object) -> list[str]:
    from wwm_prep.train.collator import WholeWordMaskCollator

    collator = WholeWordMaskCollator(**options)
    return [batch_digest(collator(rows[at : at + batch_size])) for at in range(0, len(rows), batch_size)]


@pytest.mark.shared
def test_outputs_are_byte_identical(ja_sequences, ja_docs: Path, ja_pack, sample_docs: Path) -> None:
    packed = rows_of(ja_sequences[8192], ("input_ids", "word_starts", "doc_lengths"))
    documents = rows_of(ja_docs, ("input_ids", "word_starts"))[:256]
    found = {
        "segment unidic-lite": shard_digests(ja_sequences[8192].parent / "documents"),
        "segment tiny-ja": shard_digests(ja_docs),
        "segment bundled sample, default tokenizer": shard_digests(sample_docs),
        "pack 8192": shard_digests(ja_sequences[8192]),
        "pack 512": shard_digests(ja_sequences[512]),
        "pack 4096 greedy": shard_digests(ja_pack(4096, "greedy")),
        "pack 8192 weighted": shard_digests(ja_pack(8192, subset_weights={"ja_wiki": 2.0, "ja_cc": 0.5}, seed=7)),
        "collator packed": collator_digests(packed, 8),
        "collator packed per document, p=0.3": collator_digests(packed, 8, seed=3, per_document_budget=True,
                                                               mlm_probability=0.3),
        "collator unpacked": collator_digests(documents, 16, seed=5),
    }
    if os.environ.get("WWM_PREP_WRITE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert set(found) == set(expected)
    for name in expected:
        assert found[name] == expected[name], name
