"""Finding corpus files and streaming their records: names, subsets, compression, rejects and broken files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import zstandard

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.shards import load_schema
from wwm_prep.pipeline.corpus import Document, RecordReader, Reject, UnreadableFile, discover

LINES = [json.dumps({"text": t, "meta": {}}, ensure_ascii=False).encode() for t in ("東北大学", "研究者", " ")]


def corpus(root: Path) -> Path:
    """A small llm-jp-corpus-v3 layout: two subsets, the three compressions."""
    (root / "ja" / "ja_wiki").mkdir(parents=True)
    (root / "ja" / "ja_cc" / "level0").mkdir(parents=True)
    with gzip.open(root / "ja" / "ja_wiki" / "train_0.jsonl.gz", "wb") as f:
        f.write(b"\n".join(LINES) + b"\n")
    (root / "ja" / "ja_wiki" / "train_1.jsonl").write_bytes(b"\n".join(LINES))
    (root / "ja" / "ja_cc" / "level0" / "cc_0.jsonl.zst").write_bytes(zstandard.compress(b"\n".join(LINES)))
    (root / "ja" / "ja_cc" / "level0" / "notes.txt").write_text("not a corpus file")
    return root


def test_files_are_named_by_their_place_under_ja_however_they_are_given(tmp_path: Path) -> None:
    root = corpus(tmp_path / "llm-jp-corpus")
    found = discover([str(root)])
    assert [(f.source, f.subset, f.unit) for f in found] == [
        ("ja/ja_cc/level0/cc_0.jsonl.zst", "ja_cc", "ja_cc--level0--cc_0"),
        ("ja/ja_wiki/train_0.jsonl.gz", "ja_wiki", "ja_wiki--train_0"),
        ("ja/ja_wiki/train_1.jsonl", "ja_wiki", "ja_wiki--train_1"),
    ]
    one = discover([str(root / "ja" / "ja_wiki" / "train_0.jsonl.gz")])
    by_glob = discover([str(root / "ja" / "*" / "train_*.jsonl*")])
    assert one[0].unit == "ja_wiki--train_0" and [f.unit for f in by_glob] == ["ja_wiki--train_0", "ja_wiki--train_1"]
    assert [f.subset for f in discover([str(root)], subsets=["ja_cc"])] == ["ja_cc"]


def test_user_mistakes_are_named(tmp_path: Path) -> None:
    root = corpus(tmp_path / "c")
    with pytest.raises(WwmPrepError, match="input not found"):
        discover([str(tmp_path / "nowhere")])
    with pytest.raises(WwmPrepError, match="not a corpus file"):
        discover([str(root / "ja" / "ja_cc" / "level0" / "notes.txt")])
    with pytest.raises(WwmPrepError, match="--subsets names kaken, which .* does not hold; the subsets there are: "
                                           "ja_cc, ja_wiki"):
        discover([str(root)], subsets=["kaken"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(WwmPrepError, match="no input files found in .*empty"):
        discover([str(tmp_path / "empty")])
    (tmp_path / "other" / "ja" / "ja_wiki").mkdir(parents=True)
    (tmp_path / "other" / "ja" / "ja_wiki" / "train_0.jsonl").write_bytes(LINES[0])
    with pytest.raises(WwmPrepError, match="would write the same shard 'ja_wiki--train_0'"):
        discover([str(root), str(tmp_path / "other")])


@pytest.mark.parametrize("name", ["ja/ja_wiki/train_0.jsonl.gz", "ja/ja_wiki/train_1.jsonl", "ja/ja_cc/level0/cc_0.jsonl.zst"])
def test_every_compression_streams_the_same_records(tmp_path: Path, name: str) -> None:
    records = list(RecordReader(corpus(tmp_path) / name))
    assert records == [Document(1, "東北大学"), Document(2, "研究者"), Document(3, " ")]


def test_bad_records_become_rejects_in_the_schema_s_fields(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"text": "ok"}\nnot json\n[1]\n{"content": "x"}\n{"text": null}\n"\xff"\n{"text": "\\ud800"}\n')
    records = list(RecordReader(path))
    assert records[0] == Document(1, "ok")
    rejects = records[1:]
    assert all(isinstance(r, Reject) for r in rejects)
    assert [r.reason.split(":")[0] for r in rejects] == [
        "not JSON", "not a JSON object but list", "no 'text' field", "'text' is null, not a string", "invalid UTF-8",
        "'text' holds a lone surrogate (not valid Unicode)"]
    columns = load_schema("reject").columns
    for reject in rejects:
        record = reject.record("x.jsonl")
        assert list(record) == columns and record["source"] == "x.jsonl" and record["line"] == reject.line
    binary = rejects[4].record("x.jsonl")
    assert binary["raw"] is None and binary["raw_base64"] == "Iv8i"


@pytest.mark.parametrize("kind", ["gz", "zst"])
def test_a_truncated_file_is_unreadable_not_half_read(tmp_path: Path, kind: str) -> None:
    data = b"\n".join([LINES[0]] * 5000)
    whole = gzip.compress(data) if kind == "gz" else zstandard.compress(data)
    path = tmp_path / f"t.jsonl.{kind}"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UnreadableFile):
        list(RecordReader(path))
