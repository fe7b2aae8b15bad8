"""Every benchmark's smoke run (`--smoke`: a tiny input, one pass) runs to its end and prints its result lines.

A benchmark is a script the suite does not otherwise run, so one that no longer fits the code it measures (as
bench_ray_memory.py did when SegmentStage.prepare changed) would fail only on the day its figures are wanted.
Each runs here as `make bench` runs it, a script in a process of its own, with ../shared hidden so that only the
repository's own sample is used. Its figures are not checked: they mean nothing on a tiny input.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
MDS_PYTHON = REPO / "build" / "venv-mds" / "bin" / "python"  # what bench_export.py runs the MDS part in
HELPERS = {"corpus_args.py"}  # what the benchmarks share; not a benchmark


@dataclass(frozen=True)
class Smoke:
    """A benchmark's smoke run: what its output must hold once it has run to its end (lines, and the keys of the
    JSON object on its last line), and the modules of optional extras it needs (it is skipped without them)."""

    expect: tuple[str, ...] = ()
    json_keys: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()


RUNS = {
    "bench_chunks.py": Smoke(expect=("shards identical: True", "RATIO throughput 2 workers / 1 worker",
                                     "index pass share of segment time", "peak memory 10x: ")),
    "bench_collator.py": Smoke(expect=("per-batch time, median (ms)", "| wwm-prep WholeWordMaskCollator span (np) |",
                                       "masking modes (mode time / word time")),
    "bench_contract.py": Smoke(json_keys=("documents", "characters", "differing_documents"),
                               needs=("fugashi", "ipadic")),  # the test extra's MeCab, for the reference
    "bench_export.py": Smoke(expect=("megatron  (", "  1x ", "ratio export/read",
                                     "\nmds  (" if MDS_PYTHON.exists() else "\nmds: skipped ("),
                             needs=("torch", "megatron.core")),
    "bench_memory.py": Smoke(expect=("where the long document's memory goes", "RATIO peak("),
                             json_keys=("long", "small", "big", "rss_ratio_big_small")),
    "bench_model.py": Smoke(expect=("tiny: ", "  mlm_loss (", "  forward to logits (")),
    "bench_parquet.py": Smoke(expect=("RATIO peak(10x Parquet) / peak(1x Parquet), one row group each: ",
                                      "RATIO throughput parquet / jsonl"),
                              json_keys=("rss_ratio_big_small", "throughput_ratio_parquet_jsonl")),
    "bench_pack.py": Smoke(expect=("ratio    pack / segment tokens per second", "--shard-rows 256",
                                   "  4096: best-fit", "tokens per second with ÷ without")),
    "bench_pack_workers.py": Smoke(expect=("ratio      pack --workers 2 / --workers 1 throughput",
                                           "ratio      pack / segment tokens per second per worker")),
    "bench_ray_memory.py": Smoke(expect=("before  ", "after   ", "RATIO after / before: peak PSS"), needs=("ray",)),
    "bench_segmentation_choices.py": Smoke(json_keys=("split_lines", "vibrato_defaults")),
    "scaling_table.py": Smoke(expect=("| cores | ideal | whole-file units (before) |", "| 4,096 | ")),
    "bench_workers.py": Smoke(expect=("2 worker(s): ", "shards identical: True", "RATIO throughput 2 workers")),
}
# bench_segment.py runs on the corpus tech_corpus.py generates, as `make bench` runs them both
SEGMENT_KEYS = ("segment_overhead_share", "segment_overhead_floor", "segment_ratio_wall", "rss_ratio_10x")


def smoke(script: str, *args: str, tmp_path: Path) -> str:
    """`python benchmarks/SCRIPT --smoke ARGS`, which must exit 0: its standard output."""
    env = {**os.environ, "WWM_PREP_SHARED": str(tmp_path / "no-shared")}
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke", *args], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=900)  # a hang fails, however slow the machine
    assert proc.returncode == 0, (f"{script} --smoke exited {proc.returncode}:\n"
                                  f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it (its parent package is)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is absent
        return False


def last_json(output: str) -> dict[str, Any]:
    return json.loads(output.strip().splitlines()[-1])


def test_every_benchmark_has_a_smoke_run() -> None:
    """A benchmark added without one would rot unseen."""
    scripts = {p.name for p in BENCHMARKS.glob("*.py")} - HELPERS
    assert scripts == {*RUNS, "bench_segment.py", "tech_corpus.py"}


@pytest.mark.parametrize("script", sorted(RUNS))
def test_smoke_run(script: str, tmp_path: Path) -> None:
    run = RUNS[script]
    missing = [name for name in run.needs if not installed(name)]
    if missing:
        pytest.skip(f"{script} needs {', '.join(missing)} (from an extra), not installed here")
    out = smoke(script, tmp_path=tmp_path)
    for line in run.expect:
        assert line in out, f"{script} --smoke did not print {line!r}:\n{out}"
    if run.json_keys:
        assert set(run.json_keys) <= last_json(out).keys(), out


def test_bench_segment_on_the_generated_technical_corpus(tmp_path: Path) -> None:
    out = smoke("tech_corpus.py", str(tmp_path / "tech"), tmp_path=tmp_path)
    assert "1 files, " in out and list((tmp_path / "tech" / "ja" / "tech_docs").glob("train_*.jsonl.gz")), out
    out = smoke("bench_segment.py", "--corpus", str(tmp_path / "tech"), tmp_path=tmp_path)
    assert "overhead share (1 - tools / pass, in the same pass)" in out and "memory, one worker:" in out, out
    assert set(SEGMENT_KEYS) <= last_json(out).keys(), out
