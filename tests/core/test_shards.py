"""Arrow shards: schemas read from `schemas/`, written whole or not at all, and refused under another schema."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.files import read_json, sha256_file
from wwm_prep.core.resources import resource
from wwm_prep.core.manifest import DocumentManifest, SequenceManifest
from wwm_prep.core.shards import SCHEMA_KEY, VERSION_KEY, ShardWriter, load_schema, open_shards, read_batches


def document_columns(n: int) -> dict[str, pa.Array]:
    return {
        "input_ids": pa.array([[5, 6, 7]] * n, type=pa.list_(pa.int32())),
        "word_starts": pa.array([[1, 0, 1]] * n, type=pa.list_(pa.uint8())),
        "subset": pa.array(["ja_wiki"] * n),
        "source": pa.array(["ja/ja_wiki/train_0.jsonl.gz"] * n),
        "line": pa.array(range(1, n + 1), type=pa.int64()),
        "num_chars": pa.array([3] * n, type=pa.int32()),
        "num_words": pa.array([2] * n, type=pa.int32()),
    }


def test_every_schema_file_builds_and_tags_its_shards() -> None:
    for name in ("document", "sequence", "reject"):
        schema = load_schema(name)
        spec = read_json(resource("schemas", f"{name}.json"))
        assert schema.name == name and schema.columns == [f["name"] for f in spec["fields"]]
        assert schema.arrow.metadata[SCHEMA_KEY] == name.encode()
        assert schema.arrow.metadata[VERSION_KEY] == str(schema.version).encode()


def test_a_shard_round_trips_and_its_checksum_is_the_file_s(tmp_path: Path) -> None:
    schema = load_schema("document")
    with ShardWriter(tmp_path / "a.arrow", schema) as writer:
        writer.write(document_columns(3))
        writer.write(document_columns(2))
        digest = writer.close()
    assert digest == sha256_file(tmp_path / "a.arrow")
    table = pa.Table.from_batches(list(read_batches(tmp_path / "a.arrow", schema)))
    assert table.num_rows == 5 and table.column("line").to_pylist() == [1, 2, 3, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["a.arrow"]


def test_a_failed_write_leaves_no_shard_and_no_temporary_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), ShardWriter(tmp_path / "a.arrow", load_schema("document")) as writer:
        writer.write(document_columns(2))
        raise RuntimeError("the unit failed half-way")
    assert list(tmp_path.iterdir()) == []


def test_a_shard_of_another_schema_is_refused(tmp_path: Path) -> None:
    with ShardWriter(tmp_path / "a.arrow", load_schema("document")) as writer:
        writer.write(document_columns(1))
        writer.close()
    with pytest.raises(WwmPrepError, match="expected 'sequence' version 1; re-create it"):
        list(read_batches(tmp_path / "a.arrow", load_schema("sequence")))


def test_a_directory_of_shards_opens_with_its_kind_and_manifest(made: dict[str, Path]) -> None:
    documents, sequences = open_shards(made["documents"]), open_shards(made["sequences"])
    assert documents.kind == "documents" and sequences.kind == "sequences"
    assert isinstance(documents.manifest, DocumentManifest) and isinstance(sequences.manifest, SequenceManifest)
    assert sum(b.num_rows for _, b in documents.batches()) == documents.manifest.totals["documents"]
    assert sequences.shard_rows() == {p.name: n for p, n in zip(sequences.paths, [s["rows"] for s in
                                                                               sequences.manifest.shards])}
    doc_tokenizer, seq_tokenizer = documents.tokenizer_record(), sequences.tokenizer_record()
    assert (seq_tokenizer.path, seq_tokenizer.sha256) == (doc_tokenizer.path, doc_tokenizer.sha256)
    assert seq_tokenizer.special_ids == doc_tokenizer.special_ids  # pack's <CLS>/<SEP>/<PAD> are segment's


def test_mixed_or_missing_shards_are_refused_with_a_hint(made: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(WwmPrepError, match=r"no shards \(\*\.arrow\) here; try .*documents or .*sequences"):
        open_shards(made["documents"].parent)
    mixed = tmp_path / "mixed"
    shutil.copytree(made["documents"], mixed)
    shutil.copy(next(made["sequences"].glob("*.arrow")), mixed / "zz.arrow")
    with pytest.raises(WwmPrepError, match="must all be document or all sequence shards"):
        open_shards(mixed)
    wrong = tmp_path / "wrong"
    shutil.copytree(made["sequences"], wrong)
    shutil.copy(made["documents"] / "manifest.json", wrong / "manifest.json")
    with pytest.raises(WwmPrepError, match="the directory mixes outputs"):
        open_shards(wrong)
    (wrong / "manifest.json").write_text("{", encoding="utf-8")
    assert open_shards(wrong).manifest is None  # unreadable: counted as none
