"""Arrow shards: schemas read from `schemas/`, written whole or not at all, and refused under another schema."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.files import read_json, sha256_file
from wwm_prep.core.resources import resource
from wwm_prep.core.shards import SCHEMA_KEY, VERSION_KEY, ShardWriter, load_schema, read_batches


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
