"""Benchmark of `pack --workers`: throughput with 1 and 2 workers as a ratio, beside pack's and segment's
tokens per second per worker.

The corpus (../shared's ja-sample, else the bundled sample) is segmented once, with the dictionary and tokenizer
given; its document shards are then repeated under other names until there are --shards of them, and packed
into --partitions partitions (the plan is the same for any number of workers). Each partition holds several
shards, as real ones (~67 M tokens) hold many, so that a run's fixed costs (reading the manifest, the tokenizer
tables, writing the manifest) weigh as little as they do at scale. Both pack runs are whole `run_pack` calls,
timed in this process one after the other, best of --repeats; their shards must be byte-identical, and each
run's output is removed and the disk synced before the next, so that none pays for an earlier one's writeback. Segment's
rate per worker is its per-file work as the unit reports record it.

    python benchmarks/bench_pack_workers.py [--corpus DIR] [--dict NAME] [--tokenizer MODEL] [--repeats N]
                                            [--shards 32] [--partitions 8] [--smoke]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.corpus_args import SMOKE, corpus_parser, parse_with_smoke  # noqa: E402
from wwm_prep.core.files import sha256_file  # noqa: E402
from wwm_prep.pipeline.executor import LocalExecutor  # noqa: E402
from wwm_prep.pipeline.pack import PackConfig, run_pack  # noqa: E402
from wwm_prep.pipeline.segment import SegmentConfig, run_segment  # noqa: E402

def repeated(docs: Path, out: Path, shards: int) -> int:
    """`docs`' shards copied under other names until there are at least `shards`; returns how many."""
    out.mkdir()
    manifest = json.loads((docs / "manifest.json").read_text(encoding="utf-8"))
    copies = -(-shards // len(manifest["units"]))
    units = {}
    for name, unit in manifest["units"].items():
        for k in range(copies):
            (out / f"{name}-{k}.arrow").write_bytes((docs / unit["shard"]).read_bytes())
            units[f"{name}-{k}"] = {**unit, "shard": f"{name}-{k}.arrow", "source": f"{unit['source']}#{k}"}
    (out / "manifest.json").write_text(json.dumps({**manifest, "units": units}), encoding="utf-8")
    return len(units)


def main() -> None:
    parser = corpus_parser(__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--shards", type=int, default=32, help="document shards (at least 8)")
    parser.add_argument("--partitions", type=int, default=8)
    args = parse_with_smoke(parser, {**SMOKE, "shards": 8, "partitions": 2})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = SegmentConfig(dictionary=args.dict, tokenizer=str(args.tokenizer) if args.tokenizer else None)
        segmented = run_segment([str(args.corpus)], root / "docs", config, executor=LocalExecutor(1), quiet=True)
        seg_tokens = segmented.totals["tokens"]
        seg_rate = seg_tokens / sum(u["seconds"] for u in segmented.units.values())
        units = repeated(root / "docs", root / "many", max(args.shards, 8))
        pack = PackConfig(seq_len=args.seq_len, partitions=args.partitions)
        seconds: dict[int, list[float]] = {1: [], 2: []}
        digests: dict[int, dict[str, str]] = {}
        tokens = 0
        for i in range(args.repeats):
            for workers in (1, 2):
                out = root / f"seq-{workers}-{i}"
                started = time.perf_counter()
                manifest = run_pack(root / "many", out, pack, executor=LocalExecutor(workers), quiet=True)
                seconds[workers].append(time.perf_counter() - started)
                assert manifest is not None
                tokens = manifest.totals["tokens"]
                digests[workers] = {p.name: sha256_file(p) for p in sorted(out.glob("sequences-*.arrow"))}
                shutil.rmtree(out)  # and flushed, so no run pays for writing back an earlier one's output
                os.sync()
        if digests[1] != digests[2]:
            raise SystemExit("FAIL: --workers 1 and --workers 2 wrote different shards")
        rate = {w: tokens / min(s) for w, s in seconds.items()}
        print(f"corpus {args.corpus}: {seg_tokens:,} tokens segmented with {args.dict or 'the default dictionary'}; "
              f"packed as {units} document shards in {args.partitions} partitions into rows of {args.seq_len} tokens, "
              f"{tokens:,} tokens; best of {args.repeats}")
        print(f"segment    1 worker  {seg_rate / 1e6:7.2f} M tokens/s per worker (per-file work only)")
        for workers in (1, 2):
            print(f"pack       {workers} worker{'s' if workers > 1 else ' '} {min(seconds[workers]):7.3f} s  "
                  f"{rate[workers] / 1e6:7.2f} M tokens/s  ({rate[workers] / workers / 1e6:.2f} M per worker)")
        print(f"ratio      pack --workers 2 / --workers 1 throughput = {rate[2] / rate[1]:.2f}x (target >= 1.8x); "
              "shards byte-identical")
        print(f"ratio      pack / segment tokens per second per worker = {rate[1] / seg_rate:.1f}x")


if __name__ == "__main__":
    main()
