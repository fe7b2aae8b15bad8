"""Corpora and shards on object storage: segment and pack from s3:// to s3:// against a local S3 server (moto,
started here on 127.0.0.1) give the bytes of the same run on local paths, resume after a kill, and name a
missing bucket or key in one line."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import freeze_when, run, start_command
from wwm_prep.core.files import sha256_file

s3fs = pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

BUCKET = "corpus-bucket"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory, ja_sample: Path) -> Iterator[s3fs.S3FileSystem]:
    """A local S3 server holding ja-sample under s3://corpus-bucket/corpus, and the environment that points
    every AWS client (this process's and the runs it starts) at it."""
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(endpoint_url=env["AWS_ENDPOINT_URL"])
    fs.mkdir(BUCKET)
    fs.put(str(ja_sample), f"{BUCKET}/corpus", recursive=True)
    try:
        yield fs
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        s3fs.S3FileSystem.clear_instance_cache()


def segment_args(source: str, out: str, tokenizer: Path | str) -> list[str]:
    return ["segment", source, "--out", out, "--dict", "tiny-ja", "--tokenizer", str(tokenizer), "--workers", "2"]


def digests(fs: s3fs.S3FileSystem, prefix: str) -> dict[str, str]:
    """sha256 of every shard under an S3 prefix, by file name."""
    import hashlib

    fs.invalidate_cache()
    return {key.rsplit("/", 1)[-1]: hashlib.sha256(fs.cat_file(key)).hexdigest()
            for key in sorted(fs.glob(f"{prefix}/*.arrow"))}


def local_digests(directory: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(directory.glob("*.arrow"))}


def without_paths(manifest: dict) -> dict:
    """A manifest with what names a place (paths, seconds, input stamps) left out, to compare local and S3 runs."""
    text = json.dumps(manifest)
    data = json.loads(text)
    for unit in data.get("units", {}).values():
        for key in ("path", "seconds", "input"):
            unit.pop(key, None)
    data.get("config", {}).get("tokenizer", {}).pop("path", None)  # a URL's model is read from a local copy
    data.get("documents", {}).get("config", {}).get("tokenizer", {}).pop("path", None)
    data.get("documents", {}).pop("dir", None)
    data.get("documents", {}).pop("manifest_sha256", None)
    data.pop("inputs", None)
    return data


def test_segment_and_pack_on_s3_give_the_bytes_of_a_local_run(s3: s3fs.S3FileSystem, ja_sample: Path,
                                                               llm_jp_tokenizer_path: Path, tmp_path: Path) -> None:
    local_docs, local_seq = tmp_path / "docs", tmp_path / "seq"
    assert run(*segment_args(str(ja_sample), str(local_docs), llm_jp_tokenizer_path))[0] == 0
    assert run("pack", str(local_docs), "--out", str(local_seq), "--seq-len", "8192", "--partitions", "2")[0] == 0

    s3.put(str(llm_jp_tokenizer_path), f"{BUCKET}/models/{llm_jp_tokenizer_path.name}")
    remote_tokenizer = f"s3://{BUCKET}/models/{llm_jp_tokenizer_path.name}"
    code, output = run(*segment_args(f"s3://{BUCKET}/corpus", f"s3://{BUCKET}/docs", remote_tokenizer))
    assert code == 0, output
    code, output = run("pack", f"s3://{BUCKET}/docs", "--out", f"s3://{BUCKET}/seq", "--seq-len", "8192",
                       "--partitions", "2", "--tokenizer", str(llm_jp_tokenizer_path))
    assert code == 0, output
    assert digests(s3, f"{BUCKET}/docs") == local_digests(local_docs)
    assert digests(s3, f"{BUCKET}/seq") == local_digests(local_seq)
    for prefix, local in (("docs", local_docs), ("seq", local_seq)):
        remote = json.loads(s3.cat_file(f"{BUCKET}/{prefix}/manifest.json"))
        assert without_paths(remote) == without_paths(json.loads((local / "manifest.json").read_text()))

    import datasets

    rows = datasets.load_dataset("arrow", data_files=f"s3://{BUCKET}/seq/*.arrow", split="train",
                                 storage_options={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]},
                                 cache_dir=str(tmp_path / "hf"))
    assert len(rows) == json.loads(s3.cat_file(f"{BUCKET}/seq/manifest.json"))["totals"]["rows"]
    assert len(rows[0]["input_ids"]) == 8192

    code, output = run("stats", f"s3://{BUCKET}/seq")
    assert code == 0, output
    code, output = run("inspect", f"s3://{BUCKET}/seq", "--row", "1", "--mask")
    assert code == 0 and "|" in output, output
    local = run("inspect", str(local_seq), "--row", "1", "--mask")[1]
    def body(text: str) -> list[str]:  # the same row, masked the same; the header lines name places
        return [line for line in text.splitlines() if not line.startswith(("tokenizer", "shard", "file", "row "))]

    assert body(output) == body(local)


def test_a_killed_s3_run_is_completed_by_a_rerun(s3: s3fs.S3FileSystem, ja_sample: Path,
                                                 llm_jp_tokenizer_path: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    assert run(*segment_args(str(ja_sample), str(reference), llm_jp_tokenizer_path))[0] == 0
    out = f"s3://{BUCKET}/killed"
    args = segment_args(f"s3://{BUCKET}/corpus", out, llm_jp_tokenizer_path)[:-2] + ["--workers", "1"]
    proc = start_command(*args)

    def one_unit_uploaded() -> bool:
        s3.invalidate_cache()
        return bool(s3.glob(f"{BUCKET}/killed/units/*.json"))

    freeze_when(proc, one_unit_uploaded, timeout=300)
    proc.kill()
    proc.communicate(timeout=60)
    s3.invalidate_cache()
    assert not s3.exists(f"{BUCKET}/killed/manifest.json")
    code, output = run(*args)
    assert code == 0 and "already done" in output, output
    assert digests(s3, f"{BUCKET}/killed") == local_digests(reference)
    assert json.loads(s3.cat_file(f"{BUCKET}/killed/manifest.json"))["complete"]


def test_a_missing_bucket_or_key_is_one_line_and_exit_2(s3: s3fs.S3FileSystem, llm_jp_tokenizer_path: Path) -> None:
    cases = [
        (segment_args("s3://no-such-bucket/corpus", f"s3://{BUCKET}/x", llm_jp_tokenizer_path), "no-such-bucket"),
        (segment_args(f"s3://{BUCKET}/no/such/key", f"s3://{BUCKET}/x", llm_jp_tokenizer_path), "no/such/key"),
        (segment_args(f"s3://{BUCKET}/corpus", "s3://no-such-bucket/out", llm_jp_tokenizer_path), "no-such-bucket"),
        (["pack", f"s3://{BUCKET}/no-docs", "--out", f"s3://{BUCKET}/y", "--seq-len", "512"], "no-docs"),
    ]
    for args, named in cases:
        code, output = run(*args)
        assert code == 2, (args, output)
        assert named in output and "Traceback" not in output
        assert len(output.strip().splitlines()) <= 2, output  # the message, maybe the dictionary's loading line


def test_chunks_on_s3_give_the_bytes_of_a_local_run(s3: s3fs.S3FileSystem, tmp_path: Path) -> None:
    """A gzip file cut into chunks: its seek points are kept at the output and fetched by the workers."""
    from tests.pipeline.test_chunks import CHUNK, corpus

    root = corpus(tmp_path / "corpus", "jsonl.gz")
    s3.put(str(root), f"{BUCKET}/chunked", recursive=True)
    args = ["--dict", "tiny-ja", "--chunk-size", str(CHUNK), "--workers", "2"]
    assert run("segment", str(root), "--out", str(tmp_path / "local"), *args)[0] == 0
    code, output = run("segment", f"s3://{BUCKET}/chunked", "--out", f"s3://{BUCKET}/chunked-docs", *args)
    assert code == 0, output
    assert len(local_digests(tmp_path / "local")) >= 8
    assert digests(s3, f"{BUCKET}/chunked-docs") == local_digests(tmp_path / "local")
    assert any(name.endswith(".gzidx") for name in s3.ls(f"{BUCKET}/chunked-docs/index"))




def test_a_parquet_corpus_on_s3_gives_the_bytes_of_the_local_one(s3: s3fs.S3FileSystem, tmp_path: Path) -> None:
    """The bundled sample as Parquet, several row groups a file, cut into chunks: each worker reads the footer and
    its row groups' text column from S3 in ranged reads. (Outputs on S3 are the other tests' concern.)"""
    from tests.pipeline.test_parquet import sample_as_parquet

    root = sample_as_parquet(tmp_path / "corpus", "content")
    s3.put(str(root), f"{BUCKET}/parquet", recursive=True)
    args = ["--dict", "tiny-ja", "--text-column", "content", "--chunk-size", "16KiB", "--workers", "2",
            "--subsets", "ja_wiki,kaken"]
    assert run("segment", str(root), "--out", str(tmp_path / "local"), *args)[0] == 0
    code, output = run("segment", f"s3://{BUCKET}/parquet", "--out", str(tmp_path / "remote"), *args)
    assert code == 0, output
    local = local_digests(tmp_path / "local")
    assert len(local) > 5 and local_digests(tmp_path / "remote") == local
