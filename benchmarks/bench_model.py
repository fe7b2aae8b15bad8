"""Forward time and peak memory of the NumPy model on one 8,192-token row.

    python benchmarks/bench_model.py                 # tiny, then bert-alpha-500m (writes a 1.2 GB bf16 checkpoint)
    python benchmarks/bench_model.py --skip-500m     # tiny only
    python benchmarks/bench_model.py --pieces 12     # a packed row of 12 equal pieces instead of one document
    python benchmarks/bench_model.py --smoke         # tiny only, on a 256-token row, mlm_loss too: runs to its end

The 500M checkpoint is randomly initialised (no download) in a temporary directory and loaded back,
so the figures include the safetensors reader. Peak memory is the process's ru_maxrss, which
includes the ~2.3 GB of float32 weights and, for `forward`, the 3.3 GB of full-vocabulary logits;
`mlm_loss` runs the output head only on the 15 % of tokens that carry a label. Each measurement runs
in its own process so that each peak is its own.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from benchmarks.corpus_args import parse_with_smoke  # noqa: E402
from wwm_prep.check import checkpoint as C  # noqa: E402
from wwm_prep.check import network as M  # noqa: E402


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def row(length: int, pieces: int, vocab: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(8, vocab, (1, length))
    base = length // pieces
    lengths = [base] * (pieces - 1) + [length - base * (pieces - 1)]
    labels = np.full(ids.shape, M.IGNORE_INDEX)
    picked = rng.random(ids.shape) < 0.15
    labels[picked] = ids[picked]
    return ids, [lengths], labels


def measure(checkpoint: str, mode: str, length: int, pieces: int, block: int) -> None:
    """One measurement in this (fresh) process, so ru_maxrss is this measurement's peak alone."""
    t = time.perf_counter()
    model = C.load_model(checkpoint)
    load = time.perf_counter() - t
    ids, lengths, labels = row(length, pieces, model.config.vocab_size)
    t = time.perf_counter()
    if mode == "mlm":
        stats = M.mlm_loss(model, ids, labels, doc_lengths=lengths)
        what = f"mlm_loss ({stats.count} labelled, loss {stats.loss:.3f})"
    else:
        logits = M.forward(model, ids, doc_lengths=lengths, block=block)
        what = f"forward to logits {logits.shape}"
    dt = time.perf_counter() - t
    print(f"  {what}: {dt:.2f} s ({length / dt:,.0f} tokens/s) for 1 x {length} tokens in {pieces} piece(s), "
          f"block {block}; load {load:.1f} s; peak RSS {rss_gib():.2f} GiB", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--length", type=int, default=8192)
    p.add_argument("--pieces", type=int, default=1, help="document pieces packed into the row")
    p.add_argument("--block", type=int, default=512, help="queries per attention block")
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"], help="500M checkpoint on disk")
    p.add_argument("--skip-500m", action="store_true")
    p.add_argument("--mlm", action="store_true", help="also time mlm_loss (head on labelled tokens only)")
    p.add_argument("--measure", nargs=2, metavar=("CHECKPOINT", "MODE"), help=argparse.SUPPRESS)
    args = parse_with_smoke(p, {"length": 256, "skip_500m": True, "mlm": True})
    if args.measure:
        measure(args.measure[0], args.measure[1], args.length, args.pieces, args.block)
        return
    configs = [("tiny", "float32")] + ([] if args.skip_500m else [("bert-alpha-500m", args.dtype)])
    modes = (["mlm"] if args.mlm else []) + ["forward"]
    with tempfile.TemporaryDirectory(prefix="bench_model.") as tmp:
        for name, dtype in configs:
            t = time.perf_counter()
            path = C.init_checkpoint(name, Path(tmp) / name, seed=0, dtype=dtype)
            n_params = M.num_parameters(M.get_config(name))
            print(f"{name}: {n_params:,} parameters; init+write ({dtype}) {time.perf_counter() - t:.1f} s", flush=True)
            for mode in modes:
                flags = ["--length", str(args.length), "--pieces", str(args.pieces), "--block", str(args.block)]
                cmd = [sys.executable, __file__, "--measure", str(path), mode, *flags]
                subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
