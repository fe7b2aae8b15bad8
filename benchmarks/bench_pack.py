"""Benchmark of `pack`: its token throughput as a ratio to `segment`'s, peak memory against input size, and
packing efficiency of both strategies, and what `--length-weights 0:0.5,4096:3` costs and gives beside no
weights (pack's throughput, `--plan`'s time, the share of tokens by document length).

Both stages run here, in this run, on the same corpus: segment's time is the sum of its per-file work as its
unit reports record it (dictionary and tokenizer loading left out, which flatters segment), pack's time is
the whole `run_pack` call (manifest, checksums, tokenizer tables, reading, cutting, packing, writing). Peak
memory is measured in a fresh process per run, at 1x and 10x the input (subset weights of 10 repeat every
document ten times, through the same interleave and window).

    python benchmarks/bench_pack.py [--corpus DIR] [--dict NAME] [--tokenizer MODEL] [--repeats N]
                                    [--shard-rows 2048,256] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WWM_PREP_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))

from benchmarks.corpus_args import SMOKE, parse_with_smoke  # noqa: E402
from wwm_prep.core.lengths import LengthWeights, band_label  # noqa: E402
from wwm_prep.pipeline.pack import PackConfig, plan_pack, run_pack  # noqa: E402
from wwm_prep.pipeline.segment import SegmentConfig, run_segment  # noqa: E402


# The child reports its own high-water mark: VmHWM starts afresh at exec, whereas ru_maxrss (getrusage,
# wait4) keeps the resident size of the forked parent from before the exec, i.e. this benchmark's.
HIGH_WATER = "print(next(line for line in open('/proc/self/status') if line.startswith('VmHWM')).split()[1])\n"
RUN_CLI = "import sys\nfrom wwm_prep.cli import main\nmain(sys.argv[1:], standalone_mode=False)\n"
IMPORTS_ONLY = "import wwm_prep.cli, wwm_prep.pipeline.pack\n"


def peak_rss_mib(code: str, *args: str) -> float:
    """Peak resident memory of `code` (with `args`) run in a Python process of its own."""
    proc = subprocess.run([sys.executable, "-c", code + HIGH_WATER, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr}")
    return int(proc.stdout.split()[-1]) / 1024


LENGTH_WEIGHTS = "0:0.5,4096:3"


def length_weights(docs: Path, root: Path, repeats: int) -> None:
    """Pack with and without the length weights, alternated in one run; and the plan's time beside pack's."""
    configs = {"none": PackConfig(seq_len=8192),
               LENGTH_WEIGHTS: PackConfig(seq_len=8192, length_weights=LengthWeights.parse(LENGTH_WEIGHTS))}
    seconds: dict[str, list[float]] = {name: [] for name in configs}
    plans: list[float] = []
    totals: dict[str, dict] = {}
    for i in range(repeats):
        for name, config in configs.items():
            start = time.perf_counter()
            totals[name] = run_pack(docs, root / f"lw-{i}-{name}", config, quiet=True).totals
            seconds[name].append(time.perf_counter() - start)
        start = time.perf_counter()
        plan = plan_pack(docs, configs[LENGTH_WEIGHTS])
        plans.append(time.perf_counter() - start)
    print(f"\nlength weights {LENGTH_WEIGHTS} (8192, best-fit), best of {repeats}:")
    rates = {}
    for name in configs:
        rates[name] = totals[name]["tokens"] / min(seconds[name])
        print(f"  {name:<14} pack {min(seconds[name]):7.3f} s  {totals[name]['tokens']:>11,} tokens  "
              f"{rates[name] / 1e6:6.2f} M tokens/s  efficiency {100 * totals[name]['efficiency']:.2f} %")
    print(f"  ratio          tokens per second with ÷ without = {rates[LENGTH_WEIGHTS] / rates['none']:.2f}x")
    print(f"  --plan         {min(plans):7.3f} s  ({min(plans) / min(seconds[LENGTH_WEIGHTS]):.2f}x pack's time)")
    print(f"  {'tokens by document length':<26}{'as segmented':>14}{'packed':>10}")
    for before, after in zip(plan["segmented"]["all"]["by_document_length"], plan["packed"]["all"]["by_document_length"]):
        print(f"    {band_label(before):<24}{100 * before['share']:>13.1f}%{100 * after['share']:>9.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_corpus = SHARED / "corpora" / "ja-sample"
    default_tokenizer = SHARED / "tokenizers" / "llm-jp-v3" / "llm-jp-tokenizer-100k.ver3.0b1.model"
    parser.add_argument("--corpus", type=Path, default=default_corpus if default_corpus.exists() else None)
    parser.add_argument("--dict", default="tiny-ja", help="dictionary for segment (default: the small bundled one, "
                        "the fastest segment and so the hardest ratio for pack)")
    parser.add_argument("--tokenizer", type=Path, default=default_tokenizer if default_tokenizer.exists() else None)
    parser.add_argument("--repeats", type=int, default=2, help="best of N for both stages")
    parser.add_argument("--shard-rows", default="2048,256", help="the --shard-rows values peak memory is measured at")
    args = parse_with_smoke(parser, {**SMOKE, "shard_rows": "256"})
    corpus = args.corpus or REPO / "sample" / "corpus"

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        segment_seconds = []
        for i in range(args.repeats):
            manifest = run_segment([str(corpus)], root / f"docs{i}", SegmentConfig(dictionary=args.dict, tokenizer=str(args.tokenizer) if args.tokenizer else None), quiet=True)
            segment_seconds.append(sum(u["seconds"] for u in manifest.units.values()))
        docs = root / "docs0"
        tokens = manifest.totals["tokens"]
        print(f"corpus {corpus}: {manifest.totals['documents']:,} documents, {tokens:,} tokens; "
              f"dictionary {args.dict}, tokenizer {Path(manifest.config.tokenizer.path).name}")

        pack_seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run_pack(docs, root / f"seq{len(pack_seconds)}", PackConfig(seq_len=8192), quiet=True)  # a new --out: a rerun would skip
            pack_seconds.append(time.perf_counter() - start)
        seg_rate, pack_rate = tokens / min(segment_seconds), tokens / min(pack_seconds)
        print(f"segment  {min(segment_seconds):7.3f} s  {seg_rate / 1e6:7.2f} M tokens/s  (per-file work only)")
        print(f"pack     {min(pack_seconds):7.3f} s  {pack_rate / 1e6:7.2f} M tokens/s  (whole run, 8192, best-fit)")
        print(f"ratio    pack / segment tokens per second = {pack_rate / seg_rate:.1f}x")

        print("\npeak RSS of `wwm-prep pack --seq-len 8192` in a fresh process; memory holds the window of pieces "
              "and one shard of rows (5 bytes a token), so it is flat once a shard fills:")
        print(f"  imports only                          {peak_rss_mib(IMPORTS_ONLY):7.1f} MiB")
        tenfold = ",".join(f"{s}=10" for s in sorted({u["subset"] for u in manifest.units.values()}))
        for shard_rows in map(int, args.shard_rows.split(",")):
            for label, weights in (("1x input", []), ("10x input", ["--subset-weights", tenfold])):
                out = root / f"rss-{shard_rows}-{label.split()[0]}"
                start = time.perf_counter()
                rss = peak_rss_mib(RUN_CLI, "pack", str(docs), "--out", str(out), "--seq-len", "8192",
                                   "--shard-rows", str(shard_rows), *weights)
                seconds = time.perf_counter() - start
                packed = json.loads((out / "manifest.json").read_text())["totals"]
                print(f"  {label:<9} --shard-rows {shard_rows:<5}  {rss:10.1f} MiB   {packed['tokens']:>11,} tokens, "
                      f"{packed['rows']:>6,} rows in {seconds:4.1f} s with process start")

        print("\nefficiency (share of non-pad tokens):")
        for seq_len in (8192, 4096):
            figures = []
            for strategy in ("best-fit", "greedy"):
                totals = run_pack(docs, root / f"eff-{seq_len}-{strategy}", PackConfig(seq_len=seq_len, strategy=strategy), quiet=True).totals
                figures.append(f"{strategy} {100 * totals['efficiency']:.2f} % ({totals['rows']:,} rows)")
            print(f"  {seq_len}: " + ", ".join(figures) + f"; {totals['pieces']:,} pieces, "
                  f"{totals['cut_documents']:,} documents cut, {totals['group_splits']} groups split")

        length_weights(docs, root, args.repeats)


if __name__ == "__main__":
    main()
