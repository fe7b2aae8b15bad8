"""Pack at scale: partitions fixed by the inputs, so workers, Ray and array slices give the same bytes; reruns
skip what is done and redo what changed; runs sharing an output claim partitions and take over dead ones."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import (frozen_until_another_does_a_unit, kill_at_work, load_packed, run, start_command, units_done,
                            wait_until, write_jsonl_gz)
from wwm_prep.core.files import sha256_file
from wwm_prep.pipeline.pack import Source, deal
from wwm_prep.train.collator import WholeWordMaskCollator


def shard_files(out: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(out.glob("sequences-*.arrow"))}


def manifest_of(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def pack_args(docs: Path, out: Path, *more: str, partitions: int = 2) -> list[str]:
    return ["pack", str(docs), "--out", str(out), "--seq-len", "8192", "--partitions", str(partitions), *more]


def test_workers_ray_and_slices_give_identical_shards_on_real_text(ja_docs: Path, tmp_path: Path,
                                                                   llm_jp_tokenizer_path: Path) -> None:
    code, output = run(*pack_args(ja_docs, tmp_path / "w1", "--workers", "1"))
    assert code == 0, output
    reference = shard_files(tmp_path / "w1")
    manifest = manifest_of(tmp_path / "w1")
    assert manifest["config"]["partitions"] == 2 and {s["partition"] for s in manifest["shards"]} == {0, 1}
    assert manifest["totals"]["efficiency"] >= 0.99
    assert list(reference) == [s["file"] for s in manifest["shards"]]

    assert run(*pack_args(ja_docs, tmp_path / "w2", "--workers", "2"))[0] == 0
    assert shard_files(tmp_path / "w2") == reference

    sliced = tmp_path / "sliced"
    code, output = run(*pack_args(ja_docs, sliced, "--num-shards", "2", "--shard-index", "1"))
    assert code == 0 and "partitions are left to other array slices" in output
    assert not (sliced / "manifest.json").exists()
    code, output = run(*pack_args(ja_docs, sliced, "--num-shards", "2", "--shard-index", "0"))
    assert code == 0 and "efficiency" in output
    assert shard_files(sliced) == reference
    assert manifest_of(sliced)["totals"] == manifest["totals"]

    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code, output = run(*pack_args(ja_docs, tmp_path / "ray", "--executor", "ray", "--workers", "2"))
    finally:
        ray.shutdown()
    assert code == 0, output
    assert shard_files(tmp_path / "ray") == reference

    # What reads sequences reads the partitioned output unchanged.
    code, output = run("stats", str(tmp_path / "w2"))
    assert code == 0 and "mismatch" not in output.lower(), output
    rows = load_packed(tmp_path / "w2", tmp_path / "hf-cache")
    assert len(rows) == manifest["totals"]["rows"]
    collator = WholeWordMaskCollator(str(llm_jp_tokenizer_path))
    batch = collator([rows[i] for i in range(2)])
    assert batch["input_ids"].shape == (2, 8192) and (batch["labels"] != -100).any()


def test_a_rerun_skips_done_partitions_and_redoes_the_one_whose_documents_changed(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus" / "ja" / "ja_wiki"
    rng = random.Random(3)
    words = ["東北", "大学", "の", "研究", "者", "が", "言語", "モデル", "を", "作る", "。"]
    for i in range(3):
        docs = ["".join(rng.choice(words) for _ in range(rng.randint(20, 400))) for _ in range(40)]
        write_jsonl_gz(corpus / f"train_{i}.jsonl.gz", [json.dumps({"text": d}, ensure_ascii=False).encode() for d in docs])
    documents, out = tmp_path / "documents", tmp_path / "sequences"
    segment = ("segment", str(tmp_path / "corpus"), "--out", str(documents), "--dict", "tiny-ja", "--workers", "1")
    pack = ("pack", str(documents), "--out", str(out), "--seq-len", "512", "--partitions", "3", "--workers", "1")
    assert run(*segment)[0] == 0 and run(*pack)[0] == 0
    code, output = run(*pack)
    assert code == 0 and output.count("already done") == 3

    with open(corpus / "train_1.jsonl.gz", "ab") as f:  # a gzip member appended: one more document
        f.write(gzip.compress(json.dumps({"text": "追記された文書です。"}, ensure_ascii=False).encode() + b"\n"))
    assert "redo ja/ja_wiki/train_1.jsonl.gz" in run(*segment)[1]
    code, output = run(*pack)
    assert code == 0, output
    assert output.count("its document shards changed since it was packed") >= 1
    fresh = tmp_path / "fresh"
    assert run("pack", str(documents), "--out", str(fresh), "--seq-len", "512", "--partitions", "3")[0] == 0
    assert shard_files(out) == shard_files(fresh)
    assert manifest_of(out)["totals"]["documents"] == 121


def big_documents(tmp_path: Path, ja_docs: Path) -> Path:
    """ja-sample's two document shards, each eight times under other names: sixteen units of real text."""
    docs = tmp_path / "docs"
    docs.mkdir()
    manifest = manifest_of(ja_docs)
    units = {}
    for name, unit in manifest["units"].items():
        for k in range(8):
            (docs / f"{name}-{k}.arrow").write_bytes((ja_docs / unit["shard"]).read_bytes())
            units[f"{name}-{k}"] = {**unit, "shard": f"{name}-{k}.arrow", "source": f"{unit['source']}#{k}"}
    (docs / "manifest.json").write_text(json.dumps({**manifest, "units": units}), encoding="utf-8")
    return docs


def start_pack(docs: Path, out: Path) -> subprocess.Popen:
    return start_command(*pack_args(docs, out, "--workers", "1", partitions=16))


def test_overlapping_packs_share_the_work_and_a_killed_one_is_taken_over(ja_docs: Path, tmp_path: Path) -> None:
    docs = big_documents(tmp_path, ja_docs)
    reference = tmp_path / "reference"
    assert run(*pack_args(docs, reference, "--workers", "1", partitions=16))[0] == 0

    shared = tmp_path / "shared"
    first = start_pack(docs, shared)
    wait_until(lambda: units_done(shared) >= 1, first)
    second = frozen_until_another_does_a_unit(first, shared, lambda: start_pack(docs, shared))
    results = [proc.communicate(timeout=600) for proc in (first, second)]
    for proc, (_, stderr) in zip((first, second), results):
        assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    assert "done partition" in results[1][1]  # the second did partitions of its own
    assert shard_files(shared) == shard_files(reference)
    assert manifest_of(shared)["totals"] == manifest_of(reference)["totals"]

    killed = tmp_path / "killed"
    held = kill_at_work(start_pack(docs, killed), killed)
    assert held and not (killed / "manifest.json").exists()
    code, output = run(*pack_args(docs, killed, "--workers", "1", partitions=16))
    assert code == 0, output
    assert "taken over from the run of pid" in output
    assert shard_files(killed) == shard_files(reference)
    assert not list(killed.glob(".*.tmp-*")) and not list((killed / "claims").glob("*.json"))


def test_the_plan_depends_on_the_inputs_and_seed_alone_and_balances_tokens() -> None:
    rng = np.random.default_rng(0)
    sources = [Source(f"u{i}", "s", f"s/{i}", Path(f"u{i}.arrow"), "0" * 64, None, int(rng.integers(1, 10_000)), 0, 1.0)
               for i in range(50)]
    plan = deal(sources, 7, seed=1)
    assert deal(list(reversed(sources)), 7, seed=1) == plan
    assert sorted(s.unit for p in plan for s in p.sources) == sorted(s.unit for s in sources)
    loads = [sum(s.tokens for s in p.sources) for p in plan]
    assert max(loads) - min(loads) <= max(s.tokens for s in sources)
    with pytest.raises(Exception, match="more than the 50 passes"):
        deal(sources, 51, seed=1)
