"""Benchmark of `segment`: throughput as a ratio to the raw bound, and peak memory against input size.

The raw bound is what no implementation can beat in one process: vibrato `tokenize_to_surfaces` plus
SentencePiece `encode` of the same documents. Everything else `segment` does (reading, JSON, alignment,
Arrow) shows as the gap between the two. Both are measured in this run, in this process, interleaved,
best of several repeats, so the ratio holds on a noisy shared machine.

    python benchmarks/bench_segment.py [--corpus DIR] [--dict NAME] [--tokenizer MODEL]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WWM_PREP_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))

from wwm_prep.corpus import Document, discover, read_records  # noqa: E402
from wwm_prep.dictionary import load_dictionary  # noqa: E402
from wwm_prep.segment import Segmenter, segment_file  # noqa: E402
from wwm_prep.tokenizer import load_tokenizer  # noqa: E402


def timed(work) -> tuple[float, float]:
    """Wall and CPU seconds of one call; CPU time is what other jobs on a shared machine disturb least."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def raw_bound(texts: list[str], segmenter: Segmenter) -> tuple[float, float]:
    tagger, sp = segmenter.dictionary.tagger, segmenter.tokenizer.sp

    def work() -> None:
        for text in texts:
            tagger.tokenize_to_surfaces(text)
            sp.encode(text)

    return timed(work)


def full_segment(files: list, segmenter: Segmenter, out: Path) -> tuple[float, float]:
    return timed(lambda: [segment_file(unit, out, segmenter) for unit in files])


def peak_rss_mib(args: list[str]) -> float:
    """Peak resident memory of a command run in its own process."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"command failed: {' '.join(args)}")
    return usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_corpus = SHARED / "corpora" / "ja-sample"
    default_tokenizer = SHARED / "tokenizers" / "llm-jp-v3" / "llm-jp-tokenizer-100k.ver3.0b1.model"
    parser.add_argument("--corpus", type=Path, default=default_corpus if default_corpus.exists() else None)
    parser.add_argument("--dict", default=None, help="dictionary (default: the tool's default)")
    parser.add_argument("--tokenizer", type=Path, default=default_tokenizer if default_tokenizer.exists() else None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    corpus = args.corpus or REPO / "sample" / "corpus"

    segmenter = Segmenter(load_dictionary(args.dict), load_tokenizer(args.tokenizer))
    files = discover([str(corpus)])
    texts = [r.text for f in files for r in read_records(f.path) if isinstance(r, Document) and r.text.strip()]
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    print(f"corpus {corpus}: {len(files)} files, {len(texts)} documents, {megabytes:.1f} MB of text")
    print(f"dictionary {segmenter.dictionary.name} ({segmenter.dictionary.format}), "
          f"tokenizer {segmenter.tokenizer.path.name}")

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        bound, full = [], []
        for _ in range(args.repeats):
            bound.append(raw_bound(texts, segmenter))
            full.append(full_segment(files, segmenter, out))
        (b, bc), (f, fc) = min(bound), min(full)
        print(f"raw bound (vibrato surfaces + SentencePiece ids): {b:.2f} s wall, {bc:.2f} s CPU, "
              f"{megabytes / b:.2f} MB/s")
        print(f"segment (read, JSON, segment, align, write Arrow): {f:.2f} s wall, {fc:.2f} s CPU, "
              f"{megabytes / f:.2f} MB/s")
        print(f"RATIO segment / raw bound throughput: {b / f:.3f} by wall time, {bc / fc:.3f} by CPU time "
              "(target >= 0.85)")

        # Peak memory for inputs of 10x different size: the same file, concatenated ten times.
        big = Path(tmp) / "big" / "ja" / "ja_wiki"
        big.mkdir(parents=True)
        source = max((f.path for f in files), key=lambda p: p.stat().st_size)
        small = Path(tmp) / "small" / "ja" / "ja_wiki"
        small.mkdir(parents=True)
        shutil.copy(source, small / "train_0.jsonl.gz")
        with gzip.open(big / "train_0.jsonl.gz", "wb") as dst:
            for _ in range(10):
                with gzip.open(source, "rb") as src:
                    shutil.copyfileobj(src, dst)
        command = [sys.executable, "-m", "wwm_prep.cli", "segment", "--overwrite"]
        if args.dict:
            command += ["--dict", args.dict]
        if args.tokenizer:
            command += ["--tokenizer", str(args.tokenizer)]
        rss_small = peak_rss_mib(command + [str(small.parent.parent), "--out", str(Path(tmp) / "o1")])
        rss_big = peak_rss_mib(command + [str(big.parent.parent), "--out", str(Path(tmp) / "o10")])
        sizes = [p.stat().st_size / 1e6 for p in (small / "train_0.jsonl.gz", big / "train_0.jsonl.gz")]
        print(f"peak RSS, one worker: {rss_small:.0f} MiB on {sizes[0]:.1f} MB gz; {rss_big:.0f} MiB on "
              f"{sizes[1]:.1f} MB gz; RATIO {rss_big / rss_small:.2f} for 10x the input")
        print(json.dumps({"segment_ratio_wall": round(b / f, 3), "segment_ratio_cpu": round(bc / fc, 3),
                          "rss_ratio_10x": round(rss_big / rss_small, 3)}))


if __name__ == "__main__":
    main()
