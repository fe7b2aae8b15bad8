"""Typed manifests: what segment and pack write reads back as the same object, and a bad one is refused early."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.files import read_json
from wwm_prep.core.manifest import DocumentConfig, DocumentManifest, SequenceManifest, TokenizerRecord


def edited(made: dict[str, Path], kind: str, tmp_path: Path, edit) -> Path:  # noqa: ANN001 (a callable on a dict)
    out = tmp_path / kind
    shutil.copytree(made[kind], out)
    data = read_json(out / "manifest.json")
    edit(data)
    (out / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    return out


def test_what_the_stages_write_reads_back_unchanged(made: dict[str, Path]) -> None:
    documents = DocumentManifest.read(made["documents"])
    sequences = SequenceManifest.read(made["sequences"])
    assert documents.to_dict() == read_json(made["documents"] / "manifest.json")
    assert sequences.to_dict() == read_json(made["sequences"] / "manifest.json")
    assert documents.complete and documents.config.dictionary["name"] == "tiny-ja"
    assert sum(documents.shard_rows().values()) == documents.totals["documents"]
    assert sum(sequences.shard_rows().values()) == sequences.totals["rows"]


def test_the_sequence_tokenizer_merges_what_both_stages_recorded(made: dict[str, Path]) -> None:
    sequences = SequenceManifest.read(made["sequences"])
    documents = DocumentManifest.read(made["documents"])
    merged = sequences.tokenizer
    assert merged.path == documents.config.tokenizer.path and merged.vocab_size == documents.config.tokenizer.vocab_size
    assert merged.sha256 == documents.config.tokenizer.sha256
    assert {"mask", "pad", "cls", "sep"} <= merged.special_ids.keys()
    assert sequences.document_config == documents.config


def test_missing_wrong_kind_and_malformed_manifests_are_refused(made: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(WwmPrepError, match=r"no manifest\.json here; give a directory written by `wwm-prep segment`"):
        DocumentManifest.read(tmp_path)
    with pytest.raises(WwmPrepError, match="is not a sequence manifest; give a directory written by `wwm-prep pack`"):
        SequenceManifest.read(made["documents"])
    no_sha = edited(made, "documents", tmp_path, lambda d: d["config"]["tokenizer"].pop("sha256"))
    with pytest.raises(WwmPrepError, match=r"lacks config\.tokenizer\.sha256 \(missing\)"):
        DocumentManifest.read(no_sha)
    assert DocumentManifest.read_if_any(no_sha) is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(WwmPrepError, match="cannot be read as JSON"):
        DocumentManifest.read(tmp_path / "bad")


def test_nested_records_are_checked_too(made: dict[str, Path], tmp_path: Path) -> None:
    def drop_a_shard_name(d: dict) -> None:
        del next(iter(d["units"].values()))["shard"]

    with pytest.raises(WwmPrepError, match=r"lacks units\..*\.shard \(missing\)"):
        DocumentManifest.read(edited(made, "documents", tmp_path, drop_a_shard_name))
    wrong_type = edited(made, "sequences", tmp_path, lambda d: d["config"].update(seq_len="512"))
    with pytest.raises(WwmPrepError, match=r"config\.seq_len \(not integer\)"):
        SequenceManifest.read(wrong_type)
    docs_config = edited(made, "sequences", tmp_path / "2",
                         lambda d: d["documents"]["config"]["dictionary"].pop("sha256"))
    with pytest.raises(WwmPrepError, match=r"documents\.config\.dictionary\.sha256"):
        SequenceManifest.read(docs_config)


def test_same_output_depends_on_the_hashes_not_on_paths() -> None:
    dictionary = {"name": "d", "source": "/a", "sha256": "1" * 64, "ignore_space": True, "max_grouping_len": 24}
    config = DocumentConfig({"name": "document", "version": 1}, dictionary,
                            TokenizerRecord("2" * 64, {"pad": 4}, "/a/t.model", 10))
    moved = DocumentConfig(config.schema, {**dictionary, "source": "/b"},
                           TokenizerRecord("2" * 64, {"pad": 4}, "/b/t.model", 10))
    other_tokenizer = DocumentConfig(config.schema, dictionary, TokenizerRecord("3" * 64, {"pad": 4}, "/a/t.model", 10))
    assert config.same_output(moved)
    assert not config.same_output(other_tokenizer)
    assert not config.same_output(DocumentConfig(config.schema, {**dictionary, "max_grouping_len": 0}, config.tokenizer))
    assert DocumentConfig.from_dict(config.to_dict()) == config
    assert config.differences(other_tokenizer) == ["tokenizer: t.model (sha256 222222222222…) → t.model (sha256 "
                                                   "333333333333…)"]
    assert config.differences(moved) == []
