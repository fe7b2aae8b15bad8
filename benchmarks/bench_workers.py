"""Benchmark of `segment --workers`: throughput with 1 and 2 workers as a ratio, and resident memory
of the parent and of each worker.

The corpus (../shared's ja-sample, else the bundled sample) is dealt round-robin into 8 files so the
units are of similar size. The dictionary is loaded once, before the runs, as `segment` does before it
forks; both runs are timed in this process, one after the other.

    python benchmarks/bench_workers.py [--corpus DIR] [--dict NAME] [--tokenizer MODEL] [--smoke]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WWM_PREP_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))

from corpus_args import SMOKE, parse_with_smoke  # noqa: E402
from wwm_prep.pipeline import segment as segment_module  # noqa: E402
from wwm_prep.pipeline.corpus import discover, open_binary  # noqa: E402
from wwm_prep.text.dictionary import load_dictionary  # noqa: E402
from wwm_prep.pipeline.executor import LocalExecutor  # noqa: E402
from wwm_prep.pipeline.segment import SegmentConfig, SegmentStage, run_segment  # noqa: E402
from wwm_prep.pipeline.units import UnitResult  # noqa: E402


def status_mib(key: str, path: str = "/proc/self/status") -> float:
    with open(path) as f:
        return int(next(line.split()[1] for line in f if line.startswith(key))) / 1024


class MeasuredStage(SegmentStage):
    """Adds each worker's process id, peak resident memory, and proportional set size (shared pages
    such as the dictionary counted once across the processes sharing them) to its unit reports."""

    def run(self, unit: Any) -> UnitResult:
        result = super().run(unit)
        if result.report is None:
            return result
        return replace(result, report={**result.report, "pid": os.getpid(), "peak_mib": status_mib("VmHWM:"),
                                       "pss_mib": status_mib("Pss:", "/proc/self/smaps_rollup")})


def deal(corpus: Path, out: Path, files: int) -> int:
    lines = [line for f in discover([str(corpus)]) for line in open_binary(f.path) if line.strip()]
    (out / "ja" / "ja_wiki").mkdir(parents=True)
    for i in range(files):
        with gzip.open(out / "ja" / "ja_wiki" / f"part_{i}.jsonl.gz", "wb") as f:
            f.writelines(lines[i::files])
    return sum(map(len, lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_corpus = SHARED / "corpora" / "ja-sample"
    default_tokenizer = SHARED / "tokenizers" / "llm-jp-v3" / "llm-jp-tokenizer-100k.ver3.0b1.model"
    parser.add_argument("--corpus", type=Path, default=default_corpus if default_corpus.exists() else REPO / "sample" / "corpus")
    parser.add_argument("--dict", default=None)
    parser.add_argument("--tokenizer", type=Path, default=default_tokenizer if default_tokenizer.exists() else None)
    args = parse_with_smoke(parser, SMOKE)

    segment_module.SegmentStage = MeasuredStage  # type: ignore[misc]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        megabytes = deal(args.corpus, corpus, 8) / 1e6
        load_dictionary(args.dict)
        print(f"corpus: {megabytes:.1f} MB of JSON lines in 8 files; dictionary loaded, "
              f"parent resident {status_mib('VmRSS:'):.0f} MiB")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # peak marks from here on, not from compiling the dictionary
        seconds = {}
        for workers in (1, 2):
            start = time.perf_counter()
            manifest = run_segment([str(corpus)], Path(tmp) / f"out{workers}", SegmentConfig(dictionary=args.dict, tokenizer=str(args.tokenizer) if args.tokenizer else None), executor=LocalExecutor(workers), quiet=True)
            seconds[workers] = time.perf_counter() - start
            peaks: dict[int, float] = {}
            pss: dict[int, float] = {}
            for unit in manifest.units.values():
                peaks[unit["pid"]] = max(peaks.get(unit["pid"], 0.0), unit["peak_mib"])
                pss[unit["pid"]] = max(pss.get(unit["pid"], 0.0), unit["pss_mib"])
            print(f"{workers} worker(s): {seconds[workers]:.2f} s, {megabytes / seconds[workers]:.2f} MB/s; "
                  f"per worker peak resident {', '.join(f'{v:.0f}' for v in peaks.values())} MiB, "
                  f"proportional share {', '.join(f'{v:.0f}' for v in pss.values())} MiB")
        digests = [json.loads((Path(tmp) / f"out{w}" / "manifest.json").read_text())["units"] for w in (1, 2)]
        same = all(digests[0][u]["sha256"] == digests[1][u]["sha256"] for u in digests[0])
        print(f"parent peak resident while running: {status_mib('VmHWM:'):.0f} MiB; shards identical: {same}")
        print(f"RATIO throughput 2 workers / 1 worker: {seconds[1] / seconds[2]:.2f}  (target >= 1.8 on 2 cores)")


if __name__ == "__main__":
    main()
