"""Finding corpus files and streaming their records: names, subsets, compression, rejects and broken files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.shards import load_schema
from wwm_prep.pipeline.corpus import (
    Document,
    RecordReader,
    Reject,
    UnreadableFile,
    _parse_with_json,
    discover,
    parse_record,
)

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


BIG = 18446744073709551616  # 2**64: json reads it as an int, orjson as a float


@pytest.mark.parametrize(("raw", "expected"), [
    (b'{"text": "\\ud800"}', "'text' holds a lone surrogate (not valid Unicode)"),
    ('{"text": "a\udc80b"}'.encode("utf-8", "surrogatepass"), "'text' holds a lone surrogate (not valid Unicode)"),
    (b'{"text": "a", "text": "\\ud800"}', "'text' holds a lone surrogate (not valid Unicode)"),
    (b'{"text": "\\ud800", "text": "a"}', Document(7, "a")),
    (b'{"text": "\\ud83d\\ude00"}', Document(7, "\U0001f600")),
    (f'{{"text": {BIG}}}'.encode(), "'text' is int, not a string"),
    (f'{{"text": {-BIG}}}'.encode(), "'text' is int, not a string"),
    (f'{{"text": "ok", "id": {BIG}}}'.encode(), Document(7, "ok")),
    (f'[{BIG}]'.encode(), "not a JSON object but list"),
    (b'{"text": NaN}', "'text' is float, not a string"),
    (b'{"text": 1e400}', "'text' is float, not a string"),
    (b'{"text": "ok", "score": Infinity}', Document(7, "ok")),
    (b'\xef\xbb\xbf{"text": "ok"}', Document(7, "ok")),
    (b'{"text": "a\x01"}', "not JSON: Invalid control character at at column 12"),
    (b'{"text": "a"} {}', "not JSON: Extra data at column 15"),
])
def test_a_line_is_kept_or_rejected_as_json_alone_reads_it(raw: bytes, expected: Document | str) -> None:
    """orjson reads most lines; where it and `json` part (lone surrogates, integers above 64 bits, NaN, a BOM), the
    record is kept or rejected, with the same reason, as `json` alone decides."""
    got = parse_record(7, raw)
    assert got == (expected if isinstance(expected, Document) else Reject(7, expected, raw))


def _json_lines() -> st.SearchStrategy[bytes]:
    """Lines as corpora hold them and as they break: JSON of any text (lone surrogates too, escaped or as raw bytes),
    any numbers, other fields and shapes, then perhaps cut or with bytes inserted."""
    text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
    lone = st.builds("{}{}{}".format, text, st.sampled_from(["\ud800", "\udbff", "\udc80", "\udfff"]), text)
    value = st.one_of(text, lone, st.none(), st.integers(-(2**70), 2**70), st.floats(), st.booleans())
    others = {"id": value, "meta": st.lists(value, max_size=2)}
    record = st.one_of(st.fixed_dictionaries({"text": text | lone}, optional=others), st.dictionaries(
        st.sampled_from(["text", "id"]), value, max_size=2), st.lists(value, max_size=2), value)
    line = st.builds(lambda r, ascii_only: json.dumps(r, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"),
                     record, st.booleans())

    def broken(raw: bytes, cut: int, insert: bytes) -> bytes:
        at = cut % (len(raw) + 1)
        return raw[:at] + insert + raw[at:]

    return line | st.builds(broken, line, st.integers(0, 64), st.binary(max_size=3))


@given(_json_lines())
def test_orjson_never_changes_what_json_alone_decides(raw: bytes) -> None:
    assert parse_record(3, raw) == _parse_with_json(3, raw, "text")
