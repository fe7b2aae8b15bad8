"""Benchmark of `segment`: throughput as a ratio to the raw bound, and peak memory against input size.

The raw bound is what no implementation can beat in one process: vibrato `tokenize_to_surfaces` plus
SentencePiece `encode` of the same documents. Everything else `segment` does (reading, JSON, alignment,
Arrow) shows as the gap between the two. Both are measured in this run, in this process, interleaved,
best of several repeats, so the ratio holds on a noisy shared machine.

    python benchmarks/bench_segment.py [--corpus DIR] [--dict NAME] [--tokenizer MODEL]
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from corpus_args import corpus_parser, corpus_texts  # noqa: E402
from wwm_prep.text.dictionary import load_dictionary  # noqa: E402
from wwm_prep.pipeline.segment import Segmenter, segment_file  # noqa: E402
from wwm_prep.text.tokenizer import load_tokenizer  # noqa: E402


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


# Run in a child process: load the dictionary, reset the kernel's peak-RSS mark (Linux >= 4.0), segment,
# and report the resident memory after loading and the peak while segmenting, so the one-off cost of
# compiling the dictionary does not hide how segmentation itself scales.
CHILD = """
import json, sys
from pathlib import Path
from wwm_prep.text.dictionary import load_dictionary
from wwm_prep.pipeline.segment import SegmentConfig, run_segment
corpus, out, dic, tok = sys.argv[1:5]
load_dictionary(dic or None)
def status(key):
    return int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith(key))) / 1024
loaded = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")
run_segment([corpus], Path(out), SegmentConfig(dictionary=dic or None, tokenizer=tok or None), quiet=True)
print(json.dumps({"after_load": loaded, "peak": status("VmHWM:")}))
"""


def child_memory(corpus: Path, out: Path, dictionary: str | None, tokenizer: Path | None) -> dict[str, float]:
    result = subprocess.run([sys.executable, "-c", CHILD, str(corpus), str(out), dictionary or "",
                             str(tokenizer or "")], capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(result.stdout)


def main() -> None:
    args = corpus_parser(__doc__.splitlines()[0]).parse_args()
    corpus = args.corpus

    segmenter = Segmenter(load_dictionary(args.dict), load_tokenizer(args.tokenizer))
    files, texts = corpus_texts(corpus)
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
        one = child_memory(small.parent.parent, Path(tmp) / "o1", args.dict, args.tokenizer)
        ten = child_memory(big.parent.parent, Path(tmp) / "o10", args.dict, args.tokenizer)
        sizes = [p.stat().st_size / 1e6 for p in (small / "train_0.jsonl.gz", big / "train_0.jsonl.gz")]
        print(f"memory, one worker: {one['after_load']:.0f} MiB resident after loading the dictionary; peak while "
              f"segmenting {one['peak']:.0f} MiB on {sizes[0]:.1f} MB gz, {ten['peak']:.0f} MiB on {sizes[1]:.1f} MB gz "
              f"(10x the input): RATIO {ten['peak'] / one['peak']:.2f}")
        rss_small, rss_big = one["peak"], ten["peak"]
        print(json.dumps({"segment_ratio_wall": round(b / f, 3), "segment_ratio_cpu": round(bc / fc, 3),
                          "rss_ratio_10x": round(rss_big / rss_small, 3)}))


if __name__ == "__main__":
    main()
