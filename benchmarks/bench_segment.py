"""Benchmark of `segment`: its own overhead measured inside the pass, the ratio to the raw bound, and peak memory.

The raw bound is what no implementation can beat in one process: vibrato `tokenize_to_surfaces` plus
SentencePiece `encode` of the same documents. Everything else `segment` does (reading, JSON, alignment,
Arrow) is its own overhead. Two passes timed apart drift with the machine (vibrato's speed shifts between
them), so the steering figure is taken inside one pass: the Segmenter's tagger and SentencePiece processor are
wrapped in timing proxies (for this benchmark only; production code is untouched), and

    overhead share = 1 - (vibrato + SentencePiece time) / total time of the pass.

The old ratio (raw-bound pass over segment pass, interleaved) is printed beside it, and the floor: the share of a
pass that merely reading the tools' Python outputs once costs (joining the surfaces into one string, turning the
ids into one array, freeing both), which no caller of vibrato's and SentencePiece's list-returning APIs can go
under, and the share above it (share minus floor, round by round). Each figure is given over several passes as
median and spread (half the range).

    python benchmarks/bench_segment.py [--corpus DIR] [--dict NAME] [--tokenizer MODEL] [--repeats N] [--no-memory]
        [--smoke]
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from corpus_args import SMOKE, corpus_parser, corpus_texts, parse_with_smoke  # noqa: E402

from wwm_prep.pipeline.chunks import Chunk  # noqa: E402
from wwm_prep.pipeline.segment import BATCH_CHARS, Segmenter, segment_file  # noqa: E402
from wwm_prep.text.dictionary import load_dictionary  # noqa: E402
from wwm_prep.text.tokenizer import load_tokenizer  # noqa: E402


class Clock:
    """Wall and CPU seconds spent inside the proxied calls, summed over a pass."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0


class Timed:
    """Stands in for an object and adds the time of every method call on it to `clock`: the tools' own time,
    measured within the pass whose total it is a share of."""

    def __init__(self, target: Any, clock: Clock) -> None:
        self._target, self._clock = target, clock

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """The timed method, made once per name and kept, so that making it is not charged to segment each call."""
        method, clock = getattr(self._target, name), self._clock

        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return method(*args, **kwargs)
            finally:
                clock.wall += time.perf_counter() - wall
                clock.cpu += time.process_time() - cpu

        setattr(self, name, timed)
        return timed


def timed(work: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of one call; CPU time is what other jobs on a shared machine disturb least."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def raw_bound(texts: list[str], segmenter: Segmenter) -> tuple[float, float, float]:
    """Wall and CPU seconds of the tools alone on `texts`, and the wall seconds of the floor under any caller of
    their list-returning APIs, timed apart in the same loop: reading their outputs once (the surfaces joined
    into one string, the ids turned into one array) and freeing them, a batch at a time as `segment` does."""
    tagger, encode = segmenter.dictionary.tagger, backend_encode(segmenter.tokenizer)
    floor = 0.0

    def work() -> None:
        nonlocal floor
        for batch in batches(texts):
            outputs = list(zip([tagger.tokenize_to_surfaces(text) for text in batch], encode(batch)))
            started = time.perf_counter()
            "\0".join(map("\0".join, (surfaces for surfaces, _ in outputs)))
            np.fromiter(chain.from_iterable(ids for _, ids in outputs), dtype=np.int32)
            del outputs
            floor += time.perf_counter() - started

    wall, cpu = timed(work)
    return wall - floor, cpu, floor


def backend_encode(tokenizer: Any) -> Callable[[list[str]], list[list[int]]]:
    """The backend's own call for the ids of a batch, as the raw bound has it: SentencePiece one text a call,
    a tokenizer.json's batch call (benchmark only: production code never reaches a backend's object)."""
    if hasattr(tokenizer, "sp"):
        return lambda batch: [tokenizer.sp.encode(text) for text in batch]
    return lambda batch: [e.ids for e in tokenizer.tk.encode_batch(batch, add_special_tokens=False)]


def batches(texts: list[str]) -> Iterator[list[str]]:
    """The texts in batches of BATCH_CHARS characters, as `segment` aligns them."""
    batch, chars = [], 0
    for text in texts:
        batch.append(text)
        chars += len(text)
        if chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def timed_segmenter(segmenter: Segmenter, clock: Clock) -> Segmenter:
    """The same Segmenter, its vibrato and SentencePiece calls timed into `clock`."""
    dictionary = dataclasses.replace(segmenter.dictionary, tagger=Timed(segmenter.dictionary.tagger, clock))
    tok = segmenter.tokenizer
    backend = "sp" if hasattr(tok, "sp") else "tk"
    tokenizer = dataclasses.replace(tok, **{backend: Timed(getattr(tok, backend), clock)})
    tok.tables, tok.prefix_bytes  # noqa: B018 (the per-id tables, built once at load, are carried over)
    tokenizer.__dict__.update({k: v for k, v in tok.__dict__.items() if k in ("spelling", "tables", "prefix_bytes")})
    return Segmenter(dictionary, tokenizer, split_lines=segmenter.split_lines)


def full_segment(files: list, segmenter: Segmenter, out: Path) -> tuple[float, float]:
    return timed(lambda: [segment_file(Chunk.whole(unit), out, segmenter) for unit in files])


def spread(values: list[float], unit: str = "", scale: float = 1.0, digits: int = 3) -> str:
    """Median ± half the range, and the values themselves."""
    half = (max(values) - min(values)) / 2
    listed = ", ".join(f"{v * scale:.{digits}f}" for v in values)
    return f"{statistics.median(values) * scale:.{digits}f}{unit} ± {half * scale:.{digits}f} ({listed})"


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


def memory_ratio(files: list, tmp: Path, dictionary: str | None, tokenizer: Path | None) -> float:
    """Peak memory for inputs of 10x different size: the largest file, and it concatenated ten times."""
    big = tmp / "big" / "ja" / "ja_wiki"
    big.mkdir(parents=True)
    source = max((f.path for f in files), key=lambda p: p.stat().st_size)
    small = tmp / "small" / "ja" / "ja_wiki"
    small.mkdir(parents=True)
    shutil.copy(source, small / "train_0.jsonl.gz")
    with gzip.open(big / "train_0.jsonl.gz", "wb") as dst:
        for _ in range(10):
            with gzip.open(source, "rb") as src:
                shutil.copyfileobj(src, dst)
    one = child_memory(small.parent.parent, tmp / "o1", dictionary, tokenizer)
    ten = child_memory(big.parent.parent, tmp / "o10", dictionary, tokenizer)
    sizes = [p.stat().st_size / 1e6 for p in (small / "train_0.jsonl.gz", big / "train_0.jsonl.gz")]
    print(f"memory, one worker: {one['after_load']:.0f} MiB resident after loading the dictionary; peak while "
          f"segmenting {one['peak']:.0f} MiB on {sizes[0]:.1f} MB gz, {ten['peak']:.0f} MiB on {sizes[1]:.1f} MB gz "
          f"(10x the input): RATIO {ten['peak'] / one['peak']:.2f}")
    return ten["peak"] / one["peak"]


def main() -> None:
    parser = corpus_parser(__doc__.splitlines()[0])
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.set_defaults(repeats=5)
    args = parse_with_smoke(parser, SMOKE)
    corpus = args.corpus

    segmenter = Segmenter(load_dictionary(args.dict), load_tokenizer(args.tokenizer))
    clock = Clock()
    timed_seg = timed_segmenter(segmenter, clock)
    files, texts = corpus_texts(corpus)
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    print(f"corpus {corpus}: {len(files)} files, {len(texts)} documents, {megabytes:.1f} MB of text")
    print(f"dictionary {segmenter.dictionary.name} ({segmenter.dictionary.format}), "
          f"tokenizer {segmenter.tokenizer.path.name}")

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        full_segment(files, timed_seg, out)  # warm: first-use imports and caches are not segment's steady cost
        share_wall, share_cpu, ratio_wall, ratio_cpu, passes, floors = [], [], [], [], [], []
        for _ in range(args.repeats):
            clock.wall = clock.cpu = 0.0
            f, fc = full_segment(files, timed_seg, out)
            share_wall.append(1 - clock.wall / f)
            share_cpu.append(1 - clock.cpu / fc)
            passes.append((f, clock.wall))
            b, bc, floor = raw_bound(texts, segmenter)
            floors.append(floor / (b + floor))
            g, gc = full_segment(files, segmenter, out)
            ratio_wall.append(b / g)
            ratio_cpu.append(bc / gc)
        f, tools = min(passes)
        print(f"fastest timed pass: {f:.2f} s, of which vibrato + SentencePiece {tools:.2f} s, "
              f"segment's own {f - tools:.2f} s; {megabytes / f:.2f} MB/s")
        print(f"overhead share (1 - tools / pass, in the same pass), {args.repeats} passes: "
              f"{spread(share_wall, ' %', 100, 2)} by wall time, {spread(share_cpu, ' %', 100, 2)} by CPU time "
              "(target <= 5 %)")
        print(f"floor (reading the tools' Python outputs once and freeing them, as a share of tools + that), "
              f"{args.repeats} passes: {spread(floors, ' %', 100, 2)}")
        # round by round: each round's floor pass follows its share pass
        above = [share - floor for share, floor in zip(share_wall, floors)]
        print(f"above the floor (overhead share - floor, round by round), {args.repeats} passes: "
              f"{spread(above, ' points', 100, 2)} (target <= 4 points)")
        print(f"old RATIO segment / raw bound throughput (passes timed apart), {args.repeats} passes: "
              f"{spread(ratio_wall)} by wall time, {spread(ratio_cpu)} by CPU time")
        rss = None if args.no_memory else round(memory_ratio(files, Path(tmp), args.dict, args.tokenizer), 3)
        print(json.dumps({"segment_overhead_share": round(statistics.median(share_wall), 4),
                          "segment_overhead_share_spread": round((max(share_wall) - min(share_wall)) / 2, 4),
                          "segment_overhead_share_cpu": round(statistics.median(share_cpu), 4),
                          "segment_overhead_floor": round(statistics.median(floors), 4),
                          "segment_overhead_above_floor": round(statistics.median(above), 4),
                          "segment_overhead_above_floor_spread": round((max(above) - min(above)) / 2, 4),
                          "segment_ratio_wall": round(statistics.median(ratio_wall), 3),
                          "segment_ratio_cpu": round(statistics.median(ratio_cpu), 3),
                          "rss_ratio_10x": rss}))


if __name__ == "__main__":
    main()
