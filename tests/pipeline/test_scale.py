"""Scale and reliability: workers, array slices and Ray give the same bytes; kills and interrupts resume;
every kind of bad input has an exact outcome."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import (corpus_with_reference, freeze_when, frozen_until_another_does_a_unit, held_at_work,
                            kill_at_work, run, start_segment, units_done, wait_until, write_jsonl_gz)
from wwm_prep.cli import main
from wwm_prep.core.files import sha256_file
from wwm_prep.core.resources import resource
from wwm_prep.core.shards import load_schema, read_batches

SAMPLE = resource("sample", "corpus")


def shard_digests(out: Path) -> dict[str, str]:
    manifest = json.loads((out / "manifest.json").read_text())
    return {name: unit["sha256"] for name, unit in manifest["units"].items()}


def test_workers_and_array_slices_give_identical_bytes(tmp_path: Path) -> None:
    base = ["segment", str(SAMPLE), "--dict", "tiny-ja"]
    assert run(*base, "--out", str(tmp_path / "w1"), "--workers", "1")[0] == 0
    assert run(*base, "--out", str(tmp_path / "w2"), "--workers", "2")[0] == 0
    one, two = shard_digests(tmp_path / "w1"), shard_digests(tmp_path / "w2")
    assert len(one) == 5 and one == two
    for name in one:
        assert (tmp_path / "w1" / f"{name}.arrow").read_bytes() == (tmp_path / "w2" / f"{name}.arrow").read_bytes()

    sliced = tmp_path / "sliced"
    code, _ = run(*base, "--out", str(sliced), "--num-shards", "3", "--shard-index", "0")
    assert code == 0
    manifest = json.loads((sliced / "manifest.json").read_text())
    assert not manifest["complete"] and len(manifest["missing"]) == 3
    refused = CliRunner().invoke(main, ["pack", str(sliced), "--out", str(tmp_path / "p"), "--seq-len", "256"])
    assert refused.exit_code == 2 and "incomplete" in refused.output  # the next stage checks every slice
    for index in (2, 1):
        assert run(*base, "--out", str(sliced), "--num-shards", "3", "--shard-index", str(index))[0] == 0
    manifest = json.loads((sliced / "manifest.json").read_text())
    assert manifest["complete"] and shard_digests(sliced) == one
    assert run(*base, "--out", str(sliced), "--num-shards", "3", "--shard-index", "3")[0] == 2


def test_ray_gives_identical_bytes(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    base = ["segment", str(SAMPLE), "--dict", "tiny-ja"]
    assert run(*base, "--out", str(tmp_path / "local"), "--workers", "1")[0] == 0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"WWM_PREP_CACHE": os.environ["WWM_PREP_CACHE"]}})
    try:
        code, output = run(*base, "--out", str(tmp_path / "ray"), "--executor", "ray", "--workers", "2")
    finally:
        ray.shutdown()
    assert code == 0, output
    assert shard_digests(tmp_path / "ray") == shard_digests(tmp_path / "local")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_run_resumes_to_the_same_output(tmp_path: Path, sig: signal.Signals) -> None:
    corpus, reference = corpus_with_reference(tmp_path)

    out = tmp_path / "out"
    proc = start_segment(corpus, out)
    freeze_when(proc, lambda: units_done(out) >= 2 and bool(held_at_work(out)))  # in the middle of a unit
    proc.send_signal(sig)
    proc.send_signal(signal.SIGCONT)
    _, stderr = proc.communicate(timeout=60)
    done_before = len(list((out / "units").glob("*.json")))
    assert 2 <= done_before < 6
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "rerun the same command to resume" in stderr
        assert "Traceback" not in stderr
        assert not list(out.glob(".*.tmp-*"))
    code, output = run("segment", str(corpus), "--out", str(out), "--dict", "tiny-ja", "--workers", "1")
    assert code == 0 and output.count("already done") == done_before
    assert shard_digests(out) == shard_digests(reference)
    assert sorted(p.name for p in out.glob("*.arrow")) == sorted(p.name for p in reference.glob("*.arrow"))
    assert not list(out.glob(".*.tmp-*"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["totals"] == json.loads((reference / "manifest.json").read_text())["totals"]


def test_every_kind_of_bad_input_has_an_exact_outcome(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus" / "ja" / "ja_cc" / "level0"

    def doc(text: str) -> bytes:
        return json.dumps({"text": text}).encode()

    long_text = "長い文書の一部です。" * 1_000_000  # a 10 MB single line
    write_jsonl_gz(corpus / "a_records.jsonl.gz", [
        doc("前\x00後の\x07制御\x92文字"),  # NUL and other control characters: kept as text
        doc("هذا نص عربي بالكامل دون أي يابانية"),  # another script entirely
        doc(long_text),
        b'{"text": "\\ud800"}',
    ])
    (corpus / "b_empty.jsonl.gz").write_bytes(b"")  # zero bytes: a file with no documents
    (corpus / "c_plain.jsonl").write_bytes(doc("圧縮なし") + b"\n")
    out = tmp_path / "out"
    code, output = run("segment", str(tmp_path / "corpus"), "--out", str(out), "--dict", "tiny-ja",
                       "--tokenizer", str(resource("sample", "tokenizer", "wwm-prep-sample-unigram.model")))
    assert code == 0, output
    manifest = json.loads((out / "manifest.json").read_text())
    units = manifest["units"]
    assert units["ja_cc--level0--a_records"]["documents"] == 3 and units["ja_cc--level0--a_records"]["rejects"] == 1
    assert units["ja_cc--level0--b_empty"]["documents"] == 0 and units["ja_cc--level0--c_plain"]["documents"] == 1
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(resource("sample", "tokenizer", "wwm-prep-sample-unigram.model")))
    rows = [r for b in read_batches(out / "ja_cc--level0--a_records.arrow", load_schema("document"))
            for r in b.to_pylist()]
    texts = ["前\x00後の\x07制御\x92文字", "هذا نص عربي بالكامل دون أي يابانية", long_text]
    assert [sp.decode(r["input_ids"]) for r in rows] == texts
    assert rows[2]["num_chars"] == 10_000_000
    assert manifest["totals"]["characters"] == sum(map(len, texts)) + len("圧縮なし")


def test_output_errors_are_clear(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, output = run("segment", str(SAMPLE / "ja" / "kaken"), "--out", str(blocker / "out"), "--dict", "tiny-ja")
    assert code == 2 and "cannot write to" in output and "Traceback" not in output

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small file system here to fill it")
    try:
        code, output = run("segment", str(SAMPLE), "--out", str(small / "out"), "--dict", "tiny-ja",
                           "--workers", "1")
        assert code == 2 and "No space left on device" in output
        assert not list((small / "out").glob(".*.tmp-*"))
    finally:
        subprocess.run(["umount", str(small)], check=True)
    shutil.rmtree(small)


def test_two_overlapping_runs_on_one_output_both_finish_with_one_run_s_bytes(tmp_path: Path) -> None:
    """A mistyped array job, or two people: the second run starts while the first is writing. Neither takes the
    other's temporary files for leftovers, both exit 0, and the last to finish writes the complete manifest."""
    corpus, reference = corpus_with_reference(tmp_path)
    out = tmp_path / "shared-out"
    first = start_segment(corpus, out)
    wait_until(lambda: units_done(out) >= 1, first)
    second = frozen_until_another_does_a_unit(first, out, lambda: start_segment(corpus, out))
    results = [proc.communicate(timeout=300) for proc in (first, second)]
    for proc, (stdout, stderr) in zip((first, second), results):
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr
    assert "done ja/ja_wiki" in results[1][1]  # the second run did work of its own while the first ran
    for stdout, _ in results:  # so each summary tells its own share from the output's totals
        assert "this run did" in stdout and "the rest were done by earlier or overlapping runs" in stdout
    assert shard_digests(out) == shard_digests(reference)
    assert {p.name: sha256_file(p) for p in out.glob("*.arrow")} == {p.name: sha256_file(p) for p in reference.glob("*.arrow")}
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["complete"] and sorted(manifest["units"]) == sorted(p.stem for p in reference.glob("*.arrow"))
    assert not list(out.glob(".*.tmp-*")) and not list((out / "rejects").glob(".*.tmp-*"))


def test_a_killed_run_s_claim_is_taken_over_by_the_next_run(tmp_path: Path) -> None:
    corpus, reference = corpus_with_reference(tmp_path)
    out = tmp_path / "out"
    held = kill_at_work(start_segment(corpus, out), out)  # killed mid-unit: it holds a claim
    code, output = run("segment", str(corpus), "--out", str(out), "--dict", "tiny-ja", "--workers", "1")
    assert code == 0, output
    for unit in held:
        assert f"ja/ja_wiki/{unit.split('--')[-1]}.jsonl.gz" in output
    assert "taken over from the run of pid" in output
    assert shard_digests(out) == shard_digests(reference)
    assert not list((out / "claims").glob("*.json")) and not list(out.glob(".*.tmp-*"))


def test_a_claim_held_on_another_host_is_left_to_it_until_its_heartbeat_stops(tmp_path: Path) -> None:
    from tests.core.test_claims import write_claim
    from wwm_prep.core.claims import Holder

    out = tmp_path / "out"
    base = ["segment", str(SAMPLE), "--out", str(out), "--dict", "tiny-ja", "--workers", "1"]
    elsewhere = Holder("node-b", 4242, 4240, time.time() - 60)
    write_claim(out, "ja_wiki--train_0", elsewhere)
    code, output = run(*base)
    assert code == 0 and "skip ja/ja_wiki/train_0.jsonl.gz: being done by the run of pid 4240 on node-b" in output
    assert "1 input file(s) are left to other array slices or to the runs that hold them" in output
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and manifest["missing"] == ["ja_wiki--train_0"]

    code, output = run(*base, "--overwrite")
    assert code == 2 and "--overwrite would remove" in output and "from under the run of pid 4240 on node-b" in output

    write_claim(out, "ja_wiki--train_0", elsewhere, age=30)
    code, output = run(*base, "--claim-timeout", "10")
    assert code == 0 and "taken over from the run of pid 4240 on node-b" in output
    assert json.loads((out / "manifest.json").read_text())["complete"]
