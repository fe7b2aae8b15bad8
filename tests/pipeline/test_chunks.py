"""Chunks: one large input file cut into units of bounded size gives the same bytes however it is run, the same
documents as the file taken whole, exact provenance, and a rerun redoes only what an interruption or a change
left undone. Each test runs on a .jsonl.gz, a .jsonl.zst of several frames, a plain .jsonl and (but the killed run,
which resumes as the others do) a .parquet of small row groups, its rows the lines, so that line numbers agree."""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import pytest
import zstandard

from tests.conftest import kill_at_work, parquet_texts, run, start_segment, write_parquet
from wwm_prep.core.resources import resource
from wwm_prep.core.shards import load_schema, read_batches

SAMPLE_FILE = resource("sample", "corpus", "ja", "ja_wiki", "train_0.jsonl.gz")
CHUNK = 32 << 10  # bytes of text per chunk in these tests
FORMATS = ("jsonl.gz", "jsonl.zst", "jsonl", "parquet")
COLUMNS = ("input_ids", "word_starts", "source", "line")


def text_of(copies: int) -> bytes:
    """Copies of the bundled wiki file's lines, with an empty line and two records that are rejected among them."""
    lines = gzip.decompress(SAMPLE_FILE.read_bytes()).splitlines()
    lines = lines * copies
    lines[7:7] = [b"", b'{"text": null}']
    lines[60:60] = [b"not json"]
    return b"\n".join(lines) + b"\n"


def write(path: Path, text: bytes) -> Path:
    """`text` as the file `path`, compressed as its name says: zstd in frames of 20,000 bytes of text; Parquet in
    row groups of 4 rows, a line each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".parquet"):
        write_parquet(path, parquet_texts(text.splitlines()), rows_per_group=4)
    elif path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text, mtime=0))
    elif path.name.endswith(".zst"):
        zstd = zstandard.ZstdCompressor()
        path.write_bytes(b"".join(zstd.compress(text[at : at + 20_000]) for at in range(0, len(text), 20_000)))
    else:
        path.write_bytes(text)
    return path


def corpus(root: Path, suffix: str, copies: int = 3) -> Path:
    write(root / "ja" / "ja_wiki" / f"big.{suffix}", text_of(copies))
    return root


def segment(corpus_root: Path, out: Path, *args: str, chunk: int = CHUNK) -> str:
    code, output = run("segment", str(corpus_root), "--out", str(out), "--dict", "tiny-ja", "--chunk-size",
                       str(chunk), *args)
    assert code == 0, output
    return output


def shards(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.arrow"))}


def rows(out: Path) -> list[tuple]:
    """Every document of the output, shard by shard in unit order, as the columns that matter."""
    found = []
    for path in sorted(out.glob("*.arrow")):
        for batch in read_batches(path, load_schema("document")):
            columns = [batch.column(c).to_pylist() for c in COLUMNS]
            found += [tuple(map(lambda v: tuple(v) if isinstance(v, list) else v, row)) for row in zip(*columns)]
    return found


def rejects(out: Path) -> list[dict]:
    return [json.loads(line) for p in sorted((out / "rejects").glob("*.jsonl")) for line in p.read_text().splitlines()]


@pytest.mark.parametrize("suffix", FORMATS)
def test_chunks_give_the_same_bytes_however_run_and_the_documents_of_the_whole_file(tmp_path: Path, suffix: str
                                                                                   ) -> None:
    root = corpus(tmp_path / "corpus", suffix)
    whole = tmp_path / "whole"
    segment(root, whole, "--workers", "1", chunk=1 << 30)
    assert list(shards(whole)) == ["ja_wiki--big.arrow"]  # a file within one chunk keeps its name

    one, two = tmp_path / "w1", tmp_path / "w2"
    output = segment(root, one, "--workers", "1")
    segment(root, two, "--workers", "2")
    names = list(shards(one))
    assert len(names) >= 8 and names == [f"ja_wiki--big~{k:05d}.arrow" for k in range(len(names))]
    assert f"done ja/ja_wiki/big.{suffix} chunk 1/{len(names)}" in output
    assert re.search(rf"files done +1\n +chunks done +{len(names)}\n", output)  # the summary counts both
    assert shards(two) == shards(one)
    sliced = tmp_path / "sliced"
    segment(root, sliced, "--num-shards", "2", "--shard-index", "1")
    assert not json.loads((sliced / "manifest.json").read_text())["complete"]
    segment(root, sliced, "--num-shards", "2", "--shard-index", "0")
    assert json.loads((sliced / "manifest.json").read_text())["complete"] and shards(sliced) == shards(one)

    assert rows(one) == rows(whole)  # the same documents, numbered by the file's own lines
    assert rejects(one) == rejects(whole) and [r["line"] for r in rejects(one)] == [9, 61]
    totals = [json.loads((out / "manifest.json").read_text())["totals"] for out in (one, whole)]
    assert totals[0] == totals[1]


def test_a_local_ray_gives_the_bytes_of_one_worker(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    roots = {suffix: corpus(tmp_path / suffix, suffix) for suffix in FORMATS}
    for suffix, root in roots.items():
        segment(root, tmp_path / f"local-{suffix}", "--workers", "1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"WWM_PREP_CACHE": os.environ["WWM_PREP_CACHE"]}})
    try:
        for suffix, root in roots.items():
            segment(root, tmp_path / f"ray-{suffix}", "--executor", "ray", "--workers", "2")
    finally:
        ray.shutdown()
    for suffix in FORMATS:
        local = shards(tmp_path / f"local-{suffix}")
        assert len(local) >= 8 and shards(tmp_path / f"ray-{suffix}") == local


@pytest.mark.parametrize("suffix", FORMATS[:3])  # resuming is the same for Parquet's chunks: spare the time
def test_a_run_killed_mid_file_is_completed_by_a_rerun_that_redoes_only_the_chunks_left(tmp_path: Path, suffix: str
                                                                                        ) -> None:
    root = corpus(tmp_path / "corpus", suffix, copies=6)
    reference = tmp_path / "reference"
    segment(root, reference, "--workers", "1")
    out = tmp_path / "out"
    held = kill_at_work(start_segment(root, out, "--chunk-size", str(CHUNK)), out)
    done = sorted(p.stem for p in (out / "units").glob("*.json"))
    assert done and held and len(done) < len(shards(reference))
    output = segment(root, out, "--workers", "1")
    left = [name for name in (p.removesuffix(".arrow") for p in shards(reference)) if name not in done]
    assert output.count("already done") == len(done)
    assert output.count(f"done ja/ja_wiki/big.{suffix} chunk") == len(left)
    numbers = ", ".join(str(int(name.split("~")[1]) + 1) for name in left)
    assert f"redo ja/ja_wiki/big.{suffix}: chunk(s) {numbers} of {len(shards(reference))}" in output
    assert shards(out) == shards(reference)
    assert not list(out.glob(".*.tmp-*")) and not list((out / "claims").glob("*.json"))


@pytest.mark.parametrize("suffix", FORMATS)
def test_an_appended_or_changed_file_is_redone(tmp_path: Path, suffix: str) -> None:
    root = corpus(tmp_path / "corpus", suffix)
    out = tmp_path / "out"
    segment(root, out, "--workers", "1")
    before = len(shards(out))
    path = root / "ja" / "ja_wiki" / f"big.{suffix}"
    write(path, text_of(3) + text_of(1))  # appended: more chunks
    output = segment(root, out, "--workers", "1")
    assert "already done" not in output and f"redo ja/ja_wiki/big.{suffix} chunk 1/" in output
    fresh = tmp_path / "fresh"
    segment(root, fresh, "--workers", "1")
    assert len(shards(out)) > before and shards(out) == shards(fresh)

    write(path, text_of(1))  # changed: fewer chunks; those it no longer has go
    segment(root, out, "--workers", "1")
    fresh = tmp_path / "fresh-2"
    segment(root, fresh, "--workers", "1")
    assert shards(out) == shards(fresh) and len(list((out / "units").glob("*.json"))) == len(shards(fresh))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and sorted(manifest["units"]) == [name.removesuffix(".arrow") for name in shards(out)]


def test_a_zstd_file_of_one_frame_is_one_unit_and_the_run_says_why(tmp_path: Path) -> None:
    path = tmp_path / "corpus" / "ja" / "ja_wiki" / "one.jsonl.zst"
    path.parent.mkdir(parents=True)
    path.write_bytes(zstandard.ZstdCompressor().compress(text_of(3)))
    output = segment(tmp_path / "corpus", tmp_path / "out", "--workers", "1")
    assert list(shards(tmp_path / "out")) == ["ja_wiki--one.arrow"] and "one zstd frame" in output


def test_a_chunk_size_that_is_no_size_is_a_one_line_mistake(tmp_path: Path) -> None:
    code, output = run("segment", str(corpus(tmp_path / "corpus", "jsonl")), "--out", str(tmp_path / "out"),
                       "--chunk-size", "lots")
    assert code == 2 and "is not a size" in output and "Traceback" not in output

