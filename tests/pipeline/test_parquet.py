"""Parquet inputs: the same documents as the JSON lines they were written from (ja-sample from ../shared, and the
bundled sample), rejects with reasons for texts that are null, no string or no UTF-8, a clear error for a file
without the text column, one huge row group read in bounded slices, mixed inputs, changed files redone, and
hf:// URLs (against a local stand-in for the Hub: there is no network here)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import parquet_texts, run, write_parquet
from wwm_prep.core.resources import resource
from wwm_prep.core.shards import load_schema, read_batches
from wwm_prep.pipeline import parquet
from wwm_prep.pipeline.corpus import Document, Reject, discover, parse_record
from wwm_prep.pipeline.parquet import ParquetReader

SAMPLE = resource("sample", "corpus")


def lines_of(path: Path) -> list[bytes]:
    return gzip.decompress(path.read_bytes()).splitlines()


def sample_as_parquet(root: Path, column: str = "text", rows_per_group: int = 5) -> Path:
    """The bundled sample corpus as Parquet, in the same layout, a row per line."""
    for path in SAMPLE.rglob("*.jsonl.gz"):
        target = root / path.relative_to(SAMPLE).as_posix().replace(".jsonl.gz", ".parquet")
        write_parquet(target, parquet_texts(lines_of(path)), column, rows_per_group)
    return root


def documents(out: Path) -> dict[tuple[str, int], tuple[tuple[int, ...], tuple[int, ...]]]:
    """(subset, line) → (input_ids, word_starts) of every document of an output."""
    found = {}
    for path in sorted(out.glob("*.arrow")):
        for batch in read_batches(path, load_schema("document")):
            columns = [batch.column(c).to_pylist() for c in ("subset", "line", "input_ids", "word_starts")]
            found.update(((s, n), (tuple(i), tuple(w))) for s, n, i, w in zip(*columns))
    return found


def document_table(out: Path) -> pa.Table:
    """Every document of an output as (subset, line, input_ids, word_starts), in that order: a table to compare
    whole, however the output was cut into shards."""
    columns = ["subset", "line", "input_ids", "word_starts"]
    batches = [b.select(columns) for p in sorted(out.glob("*.arrow")) for b in read_batches(p, load_schema("document"))]
    return pa.Table.from_batches(batches).sort_by([("subset", "ascending"), ("line", "ascending")]).combine_chunks()


def segment(*args: str) -> str:
    code, output = run("segment", *args, "--dict", "tiny-ja", "--workers", "1")
    assert code == 0, output
    return output


def test_a_parquet_corpus_gives_the_documents_of_its_json_lines(tmp_path: Path) -> None:
    corpus = sample_as_parquet(tmp_path / "corpus", "content")
    segment(str(SAMPLE), "--out", str(tmp_path / "jsonl"), "--subsets", "ja_wiki,kaken")
    output = segment(str(corpus), "--out", str(tmp_path / "parquet"), "--text-column", "content",
                     "--chunk-size", "8KiB", "--subsets", "ja_wiki,kaken")
    expected = documents(tmp_path / "jsonl")
    assert expected and documents(tmp_path / "parquet") == expected
    assert "chunk 2/" in output  # several row groups make several units
    manifest = json.loads((tmp_path / "parquet" / "manifest.json").read_text())
    assert manifest["config"]["text_column"] == "content"
    assert "text_column" not in json.loads((tmp_path / "jsonl" / "manifest.json").read_text())["config"]

    code, output = run("segment", str(corpus), "--out", str(tmp_path / "parquet"), "--dict", "tiny-ja",
                       "--subsets", "ja_wiki,kaken")
    assert code == 2 and "text_column: content → text" in output  # another column is another output


@pytest.mark.shared
def test_ja_sample_as_parquet_gives_the_documents_of_ja_sample(ja_parquet_docs: Path, ja_docs: Path) -> None:
    """The Done-when of issue 29: ja-sample written as Parquet (same layout, several row groups per file, the text
    in `content`) and segmented with --text-column content gives the documents of the JSON lines corpus."""
    made, expected = document_table(ja_parquet_docs), document_table(ja_docs)
    assert expected.num_rows > 1000 and made.equals(expected)
    units = json.loads((ja_parquet_docs / "manifest.json").read_text())["units"]
    assert len(units) > len({u["source"] for u in units.values()})  # files were cut at row groups


def test_null_non_string_and_invalid_texts_are_rejects_with_reasons(tmp_path: Path) -> None:
    good = [json.loads(line)["text"] for line in lines_of(SAMPLE / "ja" / "ja_wiki" / "train_0.jsonl.gz")[:4]]
    root = tmp_path / "corpus"
    write_parquet(root / "ja" / "ja_wiki" / "texts.parquet", [good[0], None, b"\xff\xfe broken", good[1]], "body",
                  rows_per_group=2, id=[10, 11, 12, 13])
    for subset in ("ja_cc", "kaken"):
        (root / "ja" / subset).mkdir(parents=True)
    pq.write_table(pa.table({"body": [1, 2]}), root / "ja" / "ja_cc" / "numbers.parquet")
    pq.write_table(pa.table({"body": pa.array([good[2].encode(), good[3].encode()], type=pa.binary())}),
                   root / "ja" / "kaken" / "bytes.parquet")  # text stored as bytes without the UTF-8 mark
    output = segment(str(root), "--out", str(tmp_path / "out"), "--text-column", "body")
    rejects = [json.loads(line) for path in sorted((tmp_path / "out" / "rejects").glob("*.jsonl"))
               for line in path.read_text().splitlines()]
    assert [(r["source"], r["line"], r["reason"]) for r in rejects] == [
        ("ja/ja_cc/numbers.parquet", 1, "'body' is int64, not a string"),
        ("ja/ja_cc/numbers.parquet", 2, "'body' is int64, not a string"),
        ("ja/ja_wiki/texts.parquet", 2, "'body' is null, not a string"),
        ("ja/ja_wiki/texts.parquet", 3, "invalid UTF-8"),
    ]
    assert json.loads(rejects[0]["raw"]) == {"body": 1} and json.loads(rejects[2]["raw"]) == {"body": None}
    assert rejects[3]["raw"] is None and rejects[3]["raw_base64"]  # the bytes as they were, in base64
    assert "rejected records                4" in output
    lines = sorted(documents(tmp_path / "out"))
    assert lines == [("ja_wiki", 1), ("ja_wiki", 4), ("kaken", 1), ("kaken", 2)]


def test_a_file_without_the_column_is_an_error_that_names_its_columns(tmp_path: Path) -> None:
    write_parquet(tmp_path / "corpus" / "a.parquet", ["本文です。"], "text", url=["https://example.jp/"])
    code, output = run("segment", str(tmp_path / "corpus"), "--out", str(tmp_path / "out"), "--dict", "tiny-ja",
                       "--text-column", "content")
    assert code == 1
    assert "no column 'content' to take the text from (--text-column); its columns are: text, url" in output
    failed = json.loads((tmp_path / "out" / "manifest.json").read_text())["failed"]
    assert [f["source"] for f in failed] == ["a.parquet"]


def test_one_huge_row_group_is_read_in_slices_of_bounded_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    texts = [t for t in parquet_texts(lines_of(SAMPLE / "ja" / "ja_wiki" / "train_0.jsonl.gz")) if t] * 4
    path = write_parquet(tmp_path / "corpus" / "one.parquet", texts, rows_per_group=len(texts))
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    whole = [r for r in ParquetReader(path)]
    limit = 16 << 10
    monkeypatch.setattr(parquet, "SLICE_BYTES", limit)
    reader = ParquetReader(path)
    slices = list(reader.slices())
    sizes = [sum(len(t.encode()) for t in values.to_pylist()) for _, values in slices]
    biggest = max(len(t.encode()) for t in texts)
    assert len(slices) > 4 and max(sizes) <= 2 * limit + biggest  # ~limit each, whatever the row group's size
    assert [first for first, _ in slices] == [1 + sum(len(v) for _, v in slices[:k]) for k in range(len(slices))]
    assert list(ParquetReader(path)) == whole and [d.line for d in whole] == list(range(1, len(texts) + 1))
    assert all(isinstance(d, Document) for d in whole)
    assert reader.consumed == sum(parquet.group_sizes(pq.ParquetFile(path).metadata, "text"))

    output = segment(str(tmp_path / "corpus"), "--out", str(tmp_path / "out"), "--chunk-size", "16KiB")
    assert "one row group" in output and sorted(p.name for p in (tmp_path / "out").glob("*.arrow")) == ["one.arrow"]


def test_chunks_start_at_row_groups_and_json_lines_and_parquet_mix(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    wiki = SAMPLE / "ja" / "ja_wiki" / "train_0.jsonl.gz"
    (root / "jsonl").mkdir(parents=True)
    (root / "jsonl" / "wiki.jsonl.gz").write_bytes(wiki.read_bytes())
    write_parquet(root / "parquet" / "wiki_rows.parquet", parquet_texts(lines_of(wiki)), rows_per_group=3)
    assert [f.source for f in discover([f"{root}/*/wiki*"])] == ["wiki.jsonl.gz", "wiki_rows.parquet"]
    output = segment(f"{root}/*/wiki*", "--out", str(tmp_path / "out"), "--chunk-size", "10KiB")
    made = documents(tmp_path / "out")
    by_file: dict[str, dict[int, tuple]] = {"jsonl": {}, "parquet": {}}
    for (subset, line), doc in made.items():
        by_file[subset][line] = doc
    assert by_file["jsonl"] and by_file["parquet"] == by_file["jsonl"]
    firsts = [json.loads(p.read_text())["chunk"]["line"] for p in (tmp_path / "out" / "units").glob("wiki_rows~*")]
    assert len(firsts) > 1 and all((first - 1) % 3 == 0 for first in firsts), firsts  # whole row groups
    assert "wiki_rows.parquet chunk 1/" in output


def test_a_changed_parquet_file_is_redone_and_verify_inputs_catches_an_edit_that_keeps_size_and_time(
        tmp_path: Path) -> None:
    texts = [t for t in parquet_texts(lines_of(SAMPLE / "ja" / "kaken" / "train_0.jsonl.gz")) if t]
    path = tmp_path / "corpus" / "ja" / "kaken" / "k.parquet"
    pq.write_table(pa.table({"text": texts}), path.parent.mkdir(parents=True) or path, compression="none")
    out = str(tmp_path / "out")
    segment(str(tmp_path / "corpus"), "--out", out, "--verify-inputs")
    assert "already done" in segment(str(tmp_path / "corpus"), "--out", out, "--verify-inputs")
    report = json.loads((tmp_path / "out" / "units" / "kaken--k.json").read_text())
    assert len(report["input"]["sha256"]) == 64

    stat, data = path.stat(), path.read_bytes()
    at = data.index(texts[0][:8].encode())  # the first text's first character, as stored (uncompressed)
    other = ("〇" if texts[0][0] != "〇" else "一").encode()
    assert len(other) == len(texts[0][0].encode())
    path.write_bytes(data[:at] + other + data[at + len(other):])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the same size and time: only its sha256 tells
    assert pq.read_table(path).column("text")[0].as_py() != texts[0]
    assert "already done" in segment(str(tmp_path / "corpus"), "--out", out)
    output = segment(str(tmp_path / "corpus"), "--out", out, "--verify-inputs")
    assert "already done" not in output and "done ja/kaken/k.parquet" in output

    pq.write_table(pa.table({"text": texts[:3]}), path)  # changed outright: redone on its size and time
    assert "already done" not in segment(str(tmp_path / "corpus"), "--out", out)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["totals"]["documents"] == 3


def local_hub(root: Path) -> type:
    """A stand-in for `hf://` (huggingface_hub's HfFileSystem) over a local directory: `datasets/ORG/NAME/…` is
    `root/ORG/NAME/…`. It checks wwm-prep's handling of hf:// URLs, not the Hub's API."""
    from fsspec.implementations.dirfs import DirFileSystem
    from fsspec.implementations.local import LocalFileSystem

    class LocalHub(DirFileSystem):
        protocol = "hf"
        sep = "/"  # a class attribute, as universal_pathlib reads it (DirFileSystem makes it a property)

        def __init__(self, **options: object) -> None:
            super().__init__(path=str(root), fs=LocalFileSystem(), **options)

        @classmethod
        def _strip_protocol(cls, path: str) -> str:
            return path.removeprefix("hf://").removeprefix("datasets/").rstrip("/")

        def info(self, path: str, **kwargs: object) -> dict:
            """As the Hub's: no modification time, a blob id that changes with the content."""
            found = super().info(path, **kwargs)
            found.pop("mtime", None)
            if found["type"] == "file":
                found["blob_id"] = hashlib.sha1(self.cat_file(path)).hexdigest()
            return found

    return LocalHub


def test_hf_dataset_urls_are_read_as_local_paths_are(tmp_path: Path) -> None:
    import fsspec
    from fsspec.registry import _registry

    repo = tmp_path / "hub" / "llm-jp" / "corpus-parquet"
    sample_as_parquet(repo / "data", rows_per_group=7)
    previous = _registry.get("hf")
    fsspec.register_implementation("hf", local_hub(tmp_path / "hub"), clobber=True)
    try:
        url = "hf://datasets/llm-jp/corpus-parquet/data"
        assert [f.source for f in discover([f"{url}/ja/*/train_0.parquet"])] == ["ja/ja_wiki/train_0.parquet",
                                                                                 "ja/kaken/train_0.parquet"]
        assert len(discover([url])) == len(list((repo / "data").rglob("*.parquet"))) > 2
        segment(f"{url}/ja/*/train_0.parquet", "--out", str(tmp_path / "remote"), "--chunk-size", "8KiB")
    finally:
        if previous is None:
            _registry.pop("hf", None)
        else:
            fsspec.register_implementation("hf", previous, clobber=True)
    segment(f"{repo}/data/ja/*/train_0.parquet", "--out", str(tmp_path / "local"), "--chunk-size", "8KiB")
    local = {p.name: p.read_bytes() for p in (tmp_path / "local").glob("*.arrow")}
    assert len(local) > 5 and {p.name: p.read_bytes() for p in (tmp_path / "remote").glob("*.arrow")} == local
    units = json.loads((tmp_path / "remote" / "manifest.json").read_text())["units"].values()
    assert all(len(u["input"]["blob_id"]) == 40 for u in units)  # what says a file on the Hub has changed


def test_reader_numbers_rows_from_one_across_row_groups(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "a.parquet", ["一", None, "三"], rows_per_group=1)
    records = list(ParquetReader(path))
    assert [type(r) for r in records] == [Document, Reject, Document] and [r.line for r in records] == [1, 2, 3]


def test_text_column_names_the_field_of_json_lines_too() -> None:
    assert parse_record(3, '{"content": "本文", "text": 1}'.encode(), "content") == Document(3, "本文")
    assert parse_record(3, b'{"content": null}', "content").reason == "'content' is null, not a string"
    assert parse_record(3, '{"content": "本文"}'.encode()).reason == "no 'text' field"
