"""The `segment` command end to end: shards, manifest, rejects, failures, reruns."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import zstandard

from wwm_prep.core.resources import resource
from wwm_prep.core.files import sha256_file
from wwm_prep.core.shards import load_schema, read_batches

from tests.conftest import run, write_jsonl_gz

SAMPLE = resource("sample", "corpus")


def read_shard(path: Path) -> pa.Table:
    return pa.Table.from_batches(list(read_batches(path, load_schema("document"))))


def test_bundled_sample_all_subsets(tmp_path: Path) -> None:
    code, output = run("segment", str(SAMPLE), "--out", str(tmp_path))
    assert code == 0, output
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    subsets = {u["subset"] for u in manifest["units"].values()}
    assert subsets == {"ja_cc", "ja_warp_html", "ja_warp_pdf", "ja_wiki", "kaken"}
    table = pa.concat_tables(read_shard(tmp_path / u["shard"]) for u in manifest["units"].values())
    assert table.num_rows == manifest["totals"]["documents"] > 200
    lengths = pc.list_value_length(table["input_ids"])
    assert lengths.equals(pc.list_value_length(table["word_starts"]))
    assert manifest["totals"]["tokens"] == pc.sum(lengths).as_py()
    assert manifest["totals"]["groups"] == pc.sum(pc.list_flatten(table["word_starts"])).as_py()
    assert manifest["totals"]["characters"] == pc.sum(table["num_chars"]).as_py()
    for unit in manifest["units"].values():
        assert sha256_file(tmp_path / unit["shard"]) == unit["sha256"]
    assert manifest["config"]["tokenizer"]["sha256"] == sha256_file(resource("sample", "tokenizer",
                                                                            "wwm-prep-sample-unigram.model"))
    assert "documents" in output and "failed files" in output
    assert manifest["config"]["dictionary"]["name"] == "unidic-lite"  # a real UniDic by default
    assert manifest["config"]["dictionary"]["format"] == "mecab-binary"


def test_datasets_reads_the_shards(tmp_path: Path) -> None:
    import datasets

    run("segment", str(SAMPLE / "ja" / "kaken"), "--out", str(tmp_path))
    ds = datasets.load_dataset("arrow", data_files=str(tmp_path / "*.arrow"), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert ds.features["input_ids"].feature.dtype == "int32"
    assert ds.features["word_starts"].feature.dtype == "uint8"
    row = ds.with_format("numpy")[0]
    assert row["subset"] == "kaken" and row["line"] == 1
    assert len(row["input_ids"]) == len(row["word_starts"]) > 0


def test_bad_records_are_kept_with_reasons(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    good = json.dumps({"text": "東京の大学で研究する。", "meta": {}}, ensure_ascii=False).encode()
    write_jsonl_gz(corpus / "ja" / "kaken" / "train_0.jsonl.gz", [
        good,
        b"{not json",
        b'{"meta": {}}',
        b'{"text": null}',
        b'{"text": 42}',
        b'{"text": ["a"]}',
        b'{"text": ""}',
        b'{"text": " \\n\\t"}',
        b'{"text": "\xff\xfe broken"}',
        b'{"text": "\\ud800"}',
        b'["text"]',
        good,
    ])
    out = tmp_path / "out"
    code, output = run("segment", str(corpus), "--out", str(out))
    assert code == 0, output
    manifest = json.loads((out / "manifest.json").read_text())
    totals = manifest["totals"]
    assert (totals["documents"], totals["empty"], totals["rejects"]) == (2, 2, 8)
    rejects = [json.loads(line) for line in (out / "rejects" / "kaken--train_0.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [2, 3, 4, 5, 6, 9, 10, 11]
    reasons = [r["reason"] for r in rejects]
    assert reasons[0].startswith("not JSON")
    assert reasons[1:5] == ["no 'text' field", "'text' is null, not a string", "'text' is int, not a string",
                            "'text' is list, not a string"]
    assert reasons[5] == "invalid UTF-8" and rejects[5]["raw"] is None and rejects[5]["raw_base64"]
    assert "lone surrogate" in reasons[6]
    assert rejects[0]["raw"] == "{not json" and rejects[0]["source"] == "ja/kaken/train_0.jsonl.gz"
    assert read_shard(out / "kaken--train_0.arrow")["line"].to_pylist() == [1, 12]


def test_unreadable_files_are_named_and_the_others_complete(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus" / "ja" / "ja_cc" / "level0"
    good = json.dumps({"text": "短い文書です。"}, ensure_ascii=False).encode()
    write_jsonl_gz(corpus / "a.jsonl.gz", [good] * 3)
    whole = gzip.compress(b"\n".join([good] * 2000))
    (corpus / "b_truncated.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    (corpus / "c_not_gzip.jsonl.gz").write_bytes(good + b"\n")
    (corpus / "c_corrupt.jsonl.gz").write_bytes(whole[:20] + bytes(64) + whole[84:])  # the deflate data broken
    (corpus / "d.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(good + b"\n")[:-4])
    (corpus / "e.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(good + b"\n" + good + b"\n"))
    out = tmp_path / "out"
    code, output = run("segment", str(tmp_path / "corpus"), "--out", str(out))
    assert code == 1
    manifest = json.loads((out / "manifest.json").read_text())
    failed = {Path(f["path"]).name for f in manifest["failed"]}
    assert failed == {"b_truncated.jsonl.gz", "c_corrupt.jsonl.gz", "c_not_gzip.jsonl.gz", "d.jsonl.zst"}
    assert "FAILED" in output and "b_truncated.jsonl.gz" in output
    assert manifest["totals"]["documents"] == 5
    assert sorted(p.name for p in out.glob("*.arrow")) == ["ja_cc--level0--a.arrow", "ja_cc--level0--e.arrow"]
    assert not list(out.glob(".*tmp*")) and not list((out / "rejects").glob(".*"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_permission_denied_is_reported(tmp_path: Path) -> None:
    path = write_jsonl_gz(tmp_path / "c" / "x.jsonl.gz", [b'{"text": "a"}'])
    path.chmod(0)
    code, output = run("segment", str(tmp_path / "c"), "--out", str(tmp_path / "out"))
    assert code == 1 and "x.jsonl.gz" in output


def test_rerun_skips_completed_units_and_refuses_another_config(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run("segment", str(SAMPLE), "--out", str(out), "--dict", "tiny-ja")[0] == 0
    first = {p.name: sha256_file(p) for p in out.glob("*.arrow")}
    victim = out / "ja_wiki--train_0.arrow"
    victim.write_bytes(b"damaged")  # a unit whose shard no longer matches its report is redone
    code, output = run("segment", str(SAMPLE), "--out", str(out), "--dict", "tiny-ja")
    assert code == 0 and output.count("already done") == 4
    assert {p.name: sha256_file(p) for p in out.glob("*.arrow")} == first

    # The same dictionary named by path is the same configuration; a changed one is refused.
    tiny = resource("dictionaries", "tiny-ja")
    code, output = run("segment", str(SAMPLE), "--out", str(out), "--dict", str(tiny))
    assert code == 0 and output.count("already done") == 5
    changed = tmp_path / "changed-dict"
    changed.mkdir()
    for part in tiny.iterdir():
        (changed / part.name).write_bytes(part.read_bytes())
    with open(changed / "lex.csv", "a", encoding="utf-8") as lex:
        lex.write(lex_line_like(tiny / "lex.csv", "新語"))
    code, output = run("segment", str(SAMPLE), "--out", str(out), "--dict", str(changed))
    assert code == 2 and "another configuration" in output
    assert {p.name: sha256_file(p) for p in out.glob("*.arrow")} == first
    code, output = run("segment", str(SAMPLE), "--out", str(out), "--dict", str(changed), "--overwrite")
    assert code == 0 and "already done" not in output


def lex_line_like(lexicon: Path, surface: str) -> str:
    """A lexicon line for a new word, with the same connection ids and features as the first entry."""
    first = lexicon.read_text(encoding="utf-8").splitlines()[0]
    return surface + first[first.index(","):] + "\n"


def test_user_mistakes_get_one_line_errors(tmp_path: Path) -> None:
    code, output = run("segment", str(tmp_path / "missing"), "--out", str(tmp_path / "o"))
    assert code == 2 and "input not found" in output and "Traceback" not in output
    (tmp_path / "notes.txt").write_text("x")
    code, output = run("segment", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "o"))
    assert code == 2 and "not a corpus file" in output
    code, output = run("segment", str(SAMPLE), "--out", str(tmp_path / "o"), "--tokenizer", str(tmp_path / "notes.txt"))
    assert code == 2 and "not a SentencePiece model" in output
    code, output = run("segment", str(SAMPLE), "--out", str(tmp_path / "o"), "--dict", "no-such-dictionary")
    assert code == 2 and "no-such-dictionary" in output


@pytest.mark.shared
def test_real_tokenizer_on_real_corpus(tmp_path: Path, ja_sample: Path, llm_jp_tokenizer_path: Path) -> None:
    code, output = run("segment", str(ja_sample), "--out", str(tmp_path), "--tokenizer", str(llm_jp_tokenizer_path))
    assert code == 0, output
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["totals"]["documents"] == 4785 and manifest["totals"]["rejects"] == 0
    assert manifest["config"]["tokenizer"]["vocab_size"] == 99574
    assert manifest["config"]["tokenizer"]["special_ids"] == {
        "unk": 0, "bos": 1, "eos": 2, "mask": 3, "pad": 4, "cls": 5, "sep": 6, "eod": 7}


def test_very_long_documents_reach_vibrato_in_pieces() -> None:
    """vibrato's memory grows with the length of one call, so long texts are cut at line or sentence
    ends; the words hardly change and the contract still holds."""
    from wwm_prep.text.dictionary import load_dictionary
    from wwm_prep.pipeline.segment import VIBRATO_CHARS, Segmenter, _chunks
    from wwm_prep.text.tokenizer import load_tokenizer

    texts = [json.loads(line)["text"] for path in sorted(SAMPLE.rglob("*.jsonl.gz"))
             for line in gzip.open(path, "rt", encoding="utf-8")]
    long_text = "\n".join(texts * 3)
    assert len(long_text) > 3 * VIBRATO_CHARS
    spans = _chunks(long_text)
    assert spans[0][0] == 0 and spans[-1][1] == len(long_text)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert all(0 < end - start <= VIBRATO_CHARS for start, end in spans)
    assert all(long_text[end - 1] in "\n。" for _, end in spans[:-1])
    no_breaks = "あ" * (2 * VIBRATO_CHARS + 5)
    assert _chunks(no_breaks) == [(0, VIBRATO_CHARS), (VIBRATO_CHARS, 2 * VIBRATO_CHARS), (2 * VIBRATO_CHARS, len(no_breaks))]

    segmenter = Segmenter(load_dictionary("tiny-ja"), load_tokenizer())
    seg = segmenter([long_text])
    assert segmenter.tokenizer.sp.decode(seg.ids.tolist()) == long_text and seg.exact_path == 0
    whole = segmenter.dictionary.tagger.tokenize_to_surfaces(long_text)
    assert abs(int(seg.word_counts[0]) - len(whole)) <= 2 * len(spans)


def test_the_two_segmentation_choices_are_recorded_and_kept_apart(tmp_path: Path) -> None:
    """--split-lines and --vibrato-defaults change words, so the manifest says which was used, and a rerun
    into the same output with another choice is refused rather than mixed."""
    base = ("segment", str(SAMPLE), "--dict", "tiny-ja", "--workers", "1", "--quiet")
    for flags, split, ignore_space, grouping in [((), False, True, 24), (("--split-lines",), True, True, 24),
                                                 (("--vibrato-defaults",), False, False, 0)]:
        out = tmp_path / ("-".join(flags) or "default")
        code, output = run(*base, "--out", str(out), *flags)
        assert code == 0, output
        config = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["config"]
        assert config["split_lines"] is split
        assert (config["dictionary"]["ignore_space"], config["dictionary"]["max_grouping_len"]) == (ignore_space, grouping)
    code, output = run(*base, "--out", str(tmp_path / "default"), "--split-lines")
    assert code == 2 and "another configuration" in output
    code, output = run(*base, "--out", str(tmp_path / "--split-lines"), "--vibrato-defaults", "--split-lines")
    assert code == 2 and "another configuration" in output


def test_split_lines_gives_vibrato_each_line_with_its_newline() -> None:
    from wwm_prep.pipeline.segment import _lines

    for text in ["", "一行", "一行\n", "一\n二", "\n\n", "一\n二\n三"]:
        spans = _lines(text)
        assert "".join(text[a:b] for a, b in spans) == text
        assert all(text[a:b].count("\n") <= 1 and (b == len(text) or text[b - 1] == "\n") for a, b in spans)


def test_a_changed_input_is_redone_on_rerun_and_an_unchanged_one_skipped(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus" / "ja" / "ja_wiki"
    lines = [json.dumps({"text": t}, ensure_ascii=False).encode() for t in ("東北大学の研究者。", "言語モデルを学ぶ。")]
    write_jsonl_gz(corpus / "train_0.jsonl.gz", lines)
    write_jsonl_gz(corpus / "train_1.jsonl.gz", lines[:1])
    out = tmp_path / "out"
    args = ("segment", str(tmp_path / "corpus"), "--out", str(out), "--dict", "tiny-ja", "--workers", "1")
    assert run(*args)[0] == 0
    report = json.loads((out / "units" / "ja_wiki--train_0.json").read_text(encoding="utf-8"))
    assert report["input"]["size"] == (corpus / "train_0.jsonl.gz").stat().st_size

    write_jsonl_gz(corpus / "train_0.jsonl.gz", [*lines, json.dumps({"text": "追記された文書。"}).encode()])
    code, output = run(*args)
    assert code == 0 and "redo ja/ja_wiki/train_0.jsonl.gz: it has changed" in output
    assert "skip ja/ja_wiki/train_1.jsonl.gz: already done" in output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["units"]["ja_wiki--train_0"]["documents"] == 3 and manifest["totals"]["documents"] == 4
    assert read_shard(out / "ja_wiki--train_0.arrow").num_rows == 3


def test_verify_inputs_catches_an_edit_that_kept_size_and_modification_time(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus" / "ja" / "ja_wiki"
    path = corpus / "train_0.jsonl"
    corpus.mkdir(parents=True)
    path.write_text(json.dumps({"text": "東北大学の研究者。"}, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ("segment", str(tmp_path / "corpus"), "--out", str(out), "--dict", "tiny-ja", "--workers", "1")
    assert run(*args, "--verify-inputs")[0] == 0
    report = json.loads((out / "units" / "ja_wiki--train_0.json").read_text(encoding="utf-8"))
    assert report["input"]["sha256"] == sha256_file(path)

    stat = path.stat()
    path.write_text(json.dumps({"text": "東北大学の研究所。"}, ensure_ascii=False) + "\n", encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime: only the bytes tell
    code, output = run(*args)
    assert code == 0 and "already done" in output  # without the flag the stat is all there is to compare
    code, output = run(*args, "--verify-inputs")
    assert code == 0 and "redo ja/ja_wiki/train_0.jsonl: it has changed" in output
    assert json.loads((out / "units" / "ja_wiki--train_0.json").read_text())["input"]["sha256"] == sha256_file(path)
