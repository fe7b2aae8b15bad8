"""Benchmark of `segment`'s memory per worker: peak resident memory on a 700,000-character document and on a
~1 GB file, against the same documents in a ~10 MB file.

Issue 7 asks that peak RSS per worker stay bounded (dictionary + a few hundred MB) whatever the file size and
the document length. This script builds, in a temporary directory:

- `long`:  one 700,000-character Japanese document (real sentences from the corpus joined end to end, not a
  repeated character) between a few hundred normal documents, as `.jsonl`;
- `small`: ~10 MB of `.jsonl`, real documents repeated, with the long document in the middle;
- `big`:   ~1 GB of `.jsonl` made the same way (`--big-mb`), and with `--gzip` the same file as `.jsonl.gz`
  (gzip level 1).

Each is segmented with one worker in a fresh child process, which loads the dictionary and the tokenizer,
resets the kernel's peak-RSS mark (`/proc/self/clear_refs` "5", Linux >= 4.0), runs `run_segment`, and reads
VmHWM: the peak while segmenting, with the one-off cost of compiling the dictionary left out (it is reported
separately as "resident after loading the dictionary"). With `--breakdown` (the default), the long document
is also put through each step of segmentation alone, each in its own child, to show where its memory goes.

    python benchmarks/bench_memory.py [--dict tiny-ja] [--tokenizer MODEL] [--corpus DIR]
        [--big-mb 1000] [--small-mb 10] [--long-chars 700000] [--gzip] [--cases long,small,big] [--smoke]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WWM_PREP_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))

from benchmarks.corpus_args import SMOKE, parse_with_smoke  # noqa: E402
from wwm_prep.pipeline.corpus import discover, open_binary  # noqa: E402

NORMAL_AROUND_LONG = 200  # normal documents before and after the long one in the `long` file

# The worker: a fresh process that loads what `segment` loads before it forks, resets its peak mark, then
# segments. The tokenizer is loaded here too and handed to run_segment, so that the peak is segmentation's.
CHILD = r"""
import json, sys, threading, time
from pathlib import Path
from wwm_prep.pipeline import segment
from wwm_prep.text.dictionary import load_dictionary
from wwm_prep.text.tokenizer import load_tokenizer

corpus, out, dic, tok = sys.argv[1:5]

def status(key):
    with open("/proc/self/status") as f:
        return int(next(l.split()[1] for l in f if l.startswith(key))) / 1024

load_dictionary(dic or None)
after_dict = status("VmRSS:")
tokenizer = load_tokenizer(tok or None)
segment.load_tokenizer = lambda path=None: tokenizer
after_load, load_peak = status("VmRSS:"), status("VmHWM:")

samples = []  # (seconds, resident MiB); vibrato holds the GIL, so none are taken inside one long call
stop = threading.Event()
def sample(start):
    while not stop.wait(0.5):
        samples.append((time.perf_counter() - start, status("VmRSS:")))

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
wall, cpu = time.perf_counter(), time.process_time()
sampler = threading.Thread(target=sample, args=(wall,), daemon=True)
sampler.start()
manifest = segment.run_segment([corpus], Path(out), segment.SegmentConfig(dictionary=dic or None, tokenizer=tok or None),
                               quiet=True)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
stop.set()
sampler.join()
peak = status("VmHWM:")
trace = [max((r for t, r in samples if t <= wall * q / 10), default=None) for q in range(1, 11)]
print(json.dumps({"after_dict": after_dict, "after_load": after_load, "load_peak": load_peak, "peak": peak,
                  "end": status("VmRSS:"), "wall": wall, "cpu": cpu, "trace": trace,
                  "totals": manifest.totals, "failed": manifest.failed}))
"""

# One step of segmentation on the long document alone, in a fresh process: the resident memory it adds.
STEP = r"""
import sys
import numpy as np
from wwm_prep.text.dictionary import load_dictionary
from wwm_prep.pipeline.segment import Segmenter
from wwm_prep.text.tokenizer import load_tokenizer
from wwm_prep.pipeline.align import align_batch

text_path, dic, tok, step = sys.argv[1:5]
text = open(text_path, encoding="utf-8").read()
seg = Segmenter(load_dictionary(dic or None), load_tokenizer(tok or None))
tagger, sp = seg.dictionary.tagger, seg.tokenizer.sp
pre = {}
if step in ("align", "exact"):
    pre["ids"] = sp.encode(text)
if step == "align":
    pre["surfaces"] = tagger.tokenize_to_surfaces(text)

def status(key):
    with open("/proc/self/status") as f:
        return int(next(l.split()[1] for l in f if l.startswith(key))) / 1024

before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
if step == "vibrato_surfaces":
    out = tagger.tokenize_to_surfaces(text)
elif step == "vibrato_tokens":
    out = [(w.start(), w.end()) for w in tagger.tokenize(text)]
elif step == "sentencepiece":
    out = sp.encode(text)
elif step == "align":
    t = seg.tokenizer
    out = align_batch([text], [pre["ids"]], [pre["surfaces"]], t.piece_bytes, t.whitespace, seg.spaces)
elif step == "exact":
    out = seg._exact(text, np.asarray(pre["ids"], dtype=np.int32))
elif step == "segmenter":
    out = seg([text])
print(before, status("VmHWM:"))
"""
STEPS = {
    "vibrato_surfaces": "vibrato tokenize_to_surfaces",
    "sentencepiece": "SentencePiece encode (ids)",
    "align": "align_batch (arrays)",
    "segmenter": "Segmenter([doc]), all of the above",
    "vibrato_tokens": "vibrato tokenize with offsets (exact path)",
    "exact": "Segmenter._exact (exact path: proto encode + tokenize)",
}


def documents(corpus: Path) -> list[bytes]:
    """The corpus's JSON lines as stored, each ending in a newline."""
    lines = []
    for f in discover([str(corpus)]):
        with open_binary(f.path) as stream:
            lines.extend(line.rstrip(b"\r\n") + b"\n" for line in stream if line.strip())
    if not lines:
        raise SystemExit(f"no documents in {corpus}")
    return lines


def long_document(lines: list[bytes], chars: int) -> str:
    """Real sentences of the corpus joined end to end into one document of exactly `chars` characters."""
    texts = [json.loads(line)["text"] for line in lines]
    pieces, total = [], 0
    while total < chars:
        for text in texts:
            for sentence in re.split(r"(?<=[。！？\n])", text):
                if sentence.strip():
                    pieces.append(sentence)
                    total += len(sentence)
                    if total >= chars:
                        break
            if total >= chars:
                break
    return "".join(pieces)[:chars]


def write_corpus(path: Path, lines: list[bytes], long_line: bytes, target_bytes: int) -> dict[str, int]:
    """`lines` repeated until `target_bytes`, with `long_line` once, where half the target is reached."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = docs = 0
    placed = False
    with open(path, "wb", buffering=1 << 22) as f:
        while written < target_bytes or not placed:
            for line in lines:
                if not placed and written + len(long_line) // 2 >= target_bytes // 2:
                    f.write(long_line)
                    written, docs, placed = written + len(long_line), docs + 1, True
                if written >= target_bytes and placed:
                    break
                f.write(line)
                written, docs = written + len(line), docs + 1
    return {"bytes": written, "documents": docs}


def write_long_file(path: Path, lines: list[bytes], long_line: bytes) -> dict[str, int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    around = (lines * (1 + 2 * NORMAL_AROUND_LONG // len(lines)))[: 2 * NORMAL_AROUND_LONG]
    with open(path, "wb") as f:
        f.writelines(around[:NORMAL_AROUND_LONG] + [long_line] + around[NORMAL_AROUND_LONG:])
    return {"bytes": path.stat().st_size, "documents": len(around) + 1}


def run_child(code: str, *args: str) -> str:
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"child failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


def measure(name: str, corpus: Path, out: Path, dictionary: str, tokenizer: str, uncompressed: int) -> dict[str, Any]:
    m = json.loads(run_child(CHILD, str(corpus), str(out), dictionary, tokenizer).strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    stored = sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file())
    m.update(name=name, input_bytes=stored, uncompressed_bytes=uncompressed,
             mb_per_s=uncompressed / 1e6 / m["wall"], mb_per_cpu_s=uncompressed / 1e6 / m["cpu"],
             growth=m["peak"] - m["after_load"])
    totals = m["totals"]
    print(f"{name}: input {stored / 1e6:.1f} MB on disk ({uncompressed / 1e6:.1f} MB JSON lines), "
          f"{totals['documents']:,} documents, {totals['characters'] / 1e6:.1f} M characters, "
          f"{totals['tokens'] / 1e6:.1f} M tokens, exact path {totals['exact_path']}, failed {len(m['failed'])}")
    trace = ", ".join("-" if r is None else f"{r:.0f}" for r in m["trace"])
    print(f"  resident after loading the dictionary {m['after_dict']:.0f} MiB, with the tokenizer "
          f"{m['after_load']:.0f} MiB (peak while loading {m['load_peak']:.0f} MiB)")
    print(f"  peak resident while segmenting {m['peak']:.0f} MiB (+{m['growth']:.0f} MiB over loaded), "
          f"resident at the end {m['end']:.0f} MiB")
    print(f"  resident by tenths of the run (max of 0.5 s samples, MiB): {trace}")
    print(f"  {m['wall']:.1f} s wall, {m['cpu']:.1f} s CPU; {m['mb_per_s']:.2f} MB/s of JSON lines by wall time, "
          f"{m['mb_per_cpu_s']:.2f} by CPU time (on a busy machine CPU time is the steadier figure)", flush=True)
    return m


def breakdown(text_path: Path, dictionary: str, tokenizer: str, steps: list[str]) -> dict[str, float]:
    print("where the long document's memory goes (each step alone, in a fresh process):")
    growth = {}
    for step in steps:
        before, peak = map(float, run_child(STEP, str(text_path), dictionary, tokenizer, step).split())
        growth[step] = peak - before
        print(f"  {STEPS[step]:<58} +{growth[step]:.0f} MiB (peak {peak:.0f} MiB)", flush=True)
    return growth


def summarize(results: dict[str, Any], dictionary: str, tokenizer: str, long_chars: int) -> dict[str, Any]:
    """The runs' figures as one JSON object; prints the big ÷ small ratio where both ran."""
    summary: dict[str, Any] = {"dict": dictionary, "tokenizer": tokenizer or None, "long_chars": long_chars}
    for name, m in results.items():
        summary[name] = {
            "input_mb": round(m["input_bytes"] / 1e6, 1),
            "uncompressed_mb": round(m["uncompressed_bytes"] / 1e6, 1),
            "after_dict_mib": round(m["after_dict"]),
            "after_load_mib": round(m["after_load"]),
            "peak_mib": round(m["peak"]),
            "growth_mib": round(m["growth"]),
            "seconds": round(m["wall"], 1),
            "cpu_seconds": round(m["cpu"], 1),
            "mb_per_s": round(m["mb_per_s"], 2),
            "mb_per_cpu_s": round(m["mb_per_cpu_s"], 2),
            **({"breakdown_mib": {k: round(v) for k, v in m["breakdown"].items()}} if "breakdown" in m else {}),
        }
    if "small" in results and "big" in results:
        small, big = results["small"], results["big"]
        ratio = big["peak"] / small["peak"]
        growth_ratio = big["growth"] / small["growth"] if small["growth"] > 0 else None
        sizes = f"peak({big['uncompressed_bytes'] / 1e6:.0f} MB) / peak({small['uncompressed_bytes'] / 1e6:.0f} MB)"
        print(f"RATIO {sizes}: {ratio:.3f} (growth over loaded: {big['growth']:.0f} / {small['growth']:.0f} MiB"
              + (f" = {growth_ratio:.2f})" if growth_ratio is not None else ")"))
        summary["rss_ratio_big_small"] = round(ratio, 3)
        summary["growth_ratio_big_small"] = None if growth_ratio is None else round(growth_ratio, 3)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_corpus = SHARED / "corpora" / "ja-sample"
    default_tokenizer = SHARED / "tokenizers" / "llm-jp-v3" / "llm-jp-tokenizer-100k.ver3.0b1.model"
    parser.add_argument("--corpus", type=Path,
                        default=default_corpus if default_corpus.exists() else REPO / "sample" / "corpus")
    parser.add_argument("--dict", default="tiny-ja", help="dictionary (default tiny-ja, so the big run takes minutes)")
    parser.add_argument("--tokenizer", type=Path, default=default_tokenizer if default_tokenizer.exists() else None)
    parser.add_argument("--big-mb", type=float, default=1000.0)
    parser.add_argument("--small-mb", type=float, default=10.0)
    parser.add_argument("--long-chars", type=int, default=700_000)
    parser.add_argument("--gzip", action="store_true", help="also segment the big file as .jsonl.gz (gzip level 1)")
    parser.add_argument("--cases", default="long,small,big", help="comma-separated, of long, small, big")
    parser.add_argument("--no-breakdown", dest="breakdown", action="store_false")
    parser.add_argument("--tmp", type=Path, default=None, help="where to make the temporary directory")
    args = parse_with_smoke(parser, {**SMOKE, "big_mb": 1.0, "small_mb": 0.1, "long_chars": 20_000})
    cases = [c for c in args.cases.split(",") if c]
    dictionary, tokenizer = args.dict, str(args.tokenizer or "")

    lines = documents(args.corpus)
    text = long_document(lines, args.long_chars)
    long_line = json.dumps({"text": text, "meta": {"bench": "long"}}, ensure_ascii=False).encode("utf-8") + b"\n"
    print(f"corpus {args.corpus}: {len(lines):,} documents, {sum(map(len, lines)) / 1e6:.1f} MB of JSON lines; "
          f"long document {len(text):,} characters, {len(text.encode('utf-8')) / 1e6:.2f} MB UTF-8, "
          f"{text.count(chr(0x2581))} U+2581")
    print(f"dictionary {dictionary}, tokenizer {args.tokenizer or 'bundled sample'}; one worker per run", flush=True)

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench_memory-", dir=args.tmp) as tmp:
        root = Path(tmp)
        text_path = root / "long.txt"
        text_path.write_text(text, encoding="utf-8")
        if "long" in cases:
            made = write_long_file(root / "long" / "ja" / "ja_wiki" / "train_0.jsonl", lines, long_line)
            results["long"] = measure("long", root / "long", root / "out", dictionary, tokenizer, made["bytes"])
            if args.breakdown:
                steps = ["vibrato_surfaces", "sentencepiece", "align", "segmenter", "vibrato_tokens", "exact"]
                results["long"]["breakdown"] = breakdown(text_path, dictionary, tokenizer, steps)
        for case, megabytes in (("small", args.small_mb), ("big", args.big_mb)):
            if case not in cases:
                continue
            path = root / case / "ja" / "ja_wiki" / "train_0.jsonl"
            started = time.perf_counter()
            made = write_corpus(path, lines, long_line, int(megabytes * 1e6))
            print(f"({case}: wrote {made['bytes'] / 1e6:.1f} MB, {made['documents']:,} documents "
                  f"in {time.perf_counter() - started:.0f} s)", flush=True)
            results[case] = measure(case, root / case, root / "out", dictionary, tokenizer, made["bytes"])
            if case == "big" and args.gzip:
                gz = root / "big-gz" / "ja" / "ja_wiki" / "train_0.jsonl.gz"
                gz.parent.mkdir(parents=True)
                started = time.perf_counter()
                with open(path, "rb") as src, gzip.open(gz, "wb", compresslevel=1) as dst:
                    shutil.copyfileobj(src, dst, 1 << 22)
                print(f"(big-gz: compressed to {gz.stat().st_size / 1e6:.1f} MB in "
                      f"{time.perf_counter() - started:.0f} s)", flush=True)
                path.unlink()
                results["big_gz"] = measure("big_gz", root / "big-gz", root / "out", dictionary, tokenizer,
                                            made["bytes"])
            path.unlink(missing_ok=True)

    print(json.dumps(summarize(results, dictionary, tokenizer, len(text))))


if __name__ == "__main__":
    main()
