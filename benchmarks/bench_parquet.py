"""Benchmark of Parquet inputs: `segment`'s peak memory on a Parquet file 10× the size of another, each one huge
row group (the worst case: no row group boundary to cut at), and throughput against the same documents as JSON lines.

Issue 29 asks that memory stay flat whatever the size of a Parquet file, and for the figure. This script builds, in
a temporary directory, from the corpus's real documents repeated:

- `small`: ~`--small-mb` MB of text as one Parquet file of one row group, and the same documents as plain `.jsonl`;
- `big`:   ~10× that (`--factor`) as one Parquet file of one row group.

Each Parquet file and the JSON lines file is segmented with one worker in a fresh child process (bench_memory.py's:
it loads the dictionary and the tokenizer, resets the kernel's peak-RSS mark, runs `run_segment` and reads
VmHWM). Reading alone (no segmentation) is timed too, in this process, for both formats. Every ratio printed is
of figures measured in this one run.

    python benchmarks/bench_parquet.py [--corpus DIR] [--dict tiny-ja] [--tokenizer MODEL]
        [--small-mb 10] [--factor 10] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from benchmarks.bench_memory import CHILD, SHARED, run_child  # noqa: E402
from benchmarks.corpus_args import SMOKE, corpus_texts, parse_with_smoke  # noqa: E402
from wwm_prep.pipeline.corpus import Document, read_records  # noqa: E402


def repeated(texts: list[str], target_bytes: int) -> list[str]:
    """The texts repeated, in order, until they hold `target_bytes` bytes of UTF-8."""
    sizes = [len(t.encode("utf-8")) for t in texts]
    out, total = [], 0
    while total < target_bytes:
        for text, size in zip(texts, sizes):
            out.append(text)
            total += size
            if total >= target_bytes:
                break
    return out


def write_parquet(path: Path, texts: list[str]) -> int:
    """`texts` as one Parquet file of one row group (snappy, pyarrow's default): its size on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": texts}), path, row_group_size=len(texts))
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    return path.stat().st_size


def write_jsonl(path: Path, texts: list[str]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts)
    return path.stat().st_size


def read_seconds(path: Path) -> tuple[float, int]:
    """CPU seconds to read every record of a file, as segment does, and how many documents it held."""
    started = time.process_time()
    documents = sum(isinstance(r, Document) for r in read_records(path))
    return time.process_time() - started, documents


def measure(name: str, corpus: Path, out: Path, dictionary: str, tokenizer: str, text_bytes: int) -> dict[str, Any]:
    m = json.loads(run_child(CHILD, str(corpus), str(out), dictionary, tokenizer).strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    if m["failed"]:
        raise SystemExit(f"{name}: failed: {m['failed']}")
    m.update(name=name, growth=m["peak"] - m["after_load"], mb_per_cpu_s=text_bytes / 1e6 / m["cpu"])
    totals = m["totals"]
    print(f"{name}: {text_bytes / 1e6:.1f} MB of text, {totals['documents']:,} documents, "
          f"{totals['tokens'] / 1e6:.2f} M tokens")
    print(f"  resident with dictionary and tokenizer loaded {m['after_load']:.0f} MiB; peak while segmenting "
          f"{m['peak']:.0f} MiB (+{m['growth']:.0f} MiB); {m['wall']:.1f} s wall, {m['cpu']:.1f} s CPU, "
          f"{m['mb_per_cpu_s']:.2f} MB of text per CPU second", flush=True)
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_corpus = SHARED / "corpora" / "ja-sample"
    default_tokenizer = SHARED / "tokenizers" / "llm-jp-v3" / "llm-jp-tokenizer-100k.ver3.0b1.model"
    parser.add_argument("--corpus", type=Path,
                        default=default_corpus if default_corpus.exists() else REPO / "sample" / "corpus")
    parser.add_argument("--dict", default="tiny-ja", help="dictionary (default tiny-ja, so the big run takes minutes)")
    parser.add_argument("--tokenizer", type=Path, default=default_tokenizer if default_tokenizer.exists() else None)
    parser.add_argument("--small-mb", type=float, default=10.0)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--tmp", type=Path, default=None, help="where to make the temporary directory")
    args = parse_with_smoke(parser, {**SMOKE, "small_mb": 0.1})
    dictionary, tokenizer = args.dict, str(args.tokenizer or "")
    _, texts = corpus_texts(args.corpus)
    print(f"corpus {args.corpus}: {len(texts):,} documents; dictionary {dictionary}, tokenizer "
          f"{args.tokenizer or 'bundled sample'}; one worker per run", flush=True)

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench_parquet-", dir=args.tmp) as tmp:
        root = Path(tmp)
        small = repeated(texts, int(args.small_mb * 1e6))
        small_bytes = sum(len(t.encode("utf-8")) for t in small)
        files = {"small_jsonl": (root / "small-jsonl" / "train_0.jsonl", write_jsonl, small),
                 "small_parquet": (root / "small-parquet" / "train_0.parquet", write_parquet, small)}
        for name, (path, write, docs) in files.items():
            stored = write(path, docs)
            seconds, documents = read_seconds(path)
            results[name] = {"stored": stored, "read_cpu": seconds, "documents": documents}
            print(f"({name}: {stored / 1e6:.1f} MB on disk, read alone in {seconds:.2f} CPU s, "
                  f"{documents:,} documents)", flush=True)
        for name, (path, _, _) in files.items():
            results[name].update(measure(name, path.parent, root / "out", dictionary, tokenizer, small_bytes))
        big = small * args.factor
        big_bytes = small_bytes * args.factor
        path = root / "big-parquet" / "train_0.parquet"
        stored = write_parquet(path, big)
        del big
        print(f"(big_parquet: {args.factor}x, {stored / 1e6:.1f} MB on disk, one row group)", flush=True)
        results["big_parquet"] = {"stored": stored, **measure("big_parquet", path.parent, root / "out", dictionary,
                                                              tokenizer, big_bytes)}

    small_pq, big_pq, jsonl = results["small_parquet"], results["big_parquet"], results["small_jsonl"]
    peak_ratio = big_pq["peak"] / small_pq["peak"]
    growth = f"{big_pq['growth']:.0f} / {small_pq['growth']:.0f} MiB"
    print(f"RATIO peak({args.factor}x Parquet) / peak(1x Parquet), one row group each: {peak_ratio:.3f} "
          f"(growth over loaded: {growth})")
    throughput = small_pq["mb_per_cpu_s"] / jsonl["mb_per_cpu_s"]
    print(f"RATIO throughput parquet / jsonl, segment by CPU time: {throughput:.3f}")
    reading = jsonl["read_cpu"] / small_pq["read_cpu"]
    print(f"RATIO reading alone, parquet speed / jsonl speed (CPU time): {reading:.2f}")
    print(f"RATIO size on disk parquet / jsonl: {small_pq['stored'] / jsonl['stored']:.3f}")
    summary = {
        "dict": dictionary, "tokenizer": tokenizer or None, "small_text_mb": round(small_bytes / 1e6, 1),
        "factor": args.factor,
        **{name: {"peak_mib": round(m["peak"]), "growth_mib": round(m["growth"]), "cpu_seconds": round(m["cpu"], 1),
                  "mb_per_cpu_s": round(m["mb_per_cpu_s"], 2), "stored_mb": round(m["stored"] / 1e6, 1)}
           for name, m in results.items()},
        "rss_ratio_big_small": round(peak_ratio, 3), "throughput_ratio_parquet_jsonl": round(throughput, 3),
        "read_speed_ratio_parquet_jsonl": round(reading, 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
