"""Benchmark of `wwm-prep export`: its throughput as a ratio to reading the same Arrow shards alone, and its peak
memory for inputs of 1x and 10x the size, for both formats.

The input is ja-sample (in ../shared; else the bundled sample) segmented with the small bundled dictionary
(the groups do not matter here) and packed into 8,192-token rows; the 10x input packs it again with every subset
weighted 10, so each document is there ten times. Each format is measured in the Python that has its library:
Megatron in this one, MDS in the isolated environment `make test-mds` creates (`--mds-python`; skipped with a
message where it is absent). In that process, the plain read (every record batch of every shard, each column's
values made NumPy arrays, as the exporters take them) and the export (`run_export`: reading, writing, hashing
the files, the record) are timed best of N on the same shards, so the ratio compares like with like. Peak
memory is each export's own high-water mark, run by the command line in a fresh process.

    python benchmarks/bench_export.py [--corpus DIR] [--tokenizer MODEL] [--repeats N] [--mds-python PATH]
        [--only-1x] [--no-memory] [--smoke]
"""

from __future__ import annotations

import argparse
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

from benchmarks.corpus_args import SMOKE, parse_with_smoke  # noqa: E402

# The child reports its own high-water mark (VmHWM starts afresh at exec; ru_maxrss would keep the parent's).
HIGH_WATER = "print(next(line for line in open('/proc/self/status') if line.startswith('VmHWM')).split()[1])\n"
RUN_CLI = "import sys\nfrom wwm_prep.cli import main\nmain(sys.argv[1:], standalone_mode=False)\n"
IMPORTS = {"megatron": "import warnings\nwarnings.simplefilter('ignore')\nimport wwm_prep.cli, wwm_prep.export.run\n"
                       "from wwm_prep.export.formats.megatron import require_megatron\nrequire_megatron()\n",
           "mds": "import wwm_prep.cli, wwm_prep.export.run\nfrom wwm_prep.export.formats.mds import require_streaming\n"
                  "require_streaming()\n"}


def time_in_child(seq_dir: Path, fmt: str, out: Path, repeats: int, options: dict) -> dict:
    """In this process (the one with the format's library): best-of-N seconds of the plain read and of the export,
    after one untimed pass of each (the library imported, the shards in the page cache)."""
    import warnings

    warnings.simplefilter("ignore")
    import pyarrow as pa

    from wwm_prep.export.run import run_export
    from wwm_prep.core.shards import ListColumn
    from wwm_prep.export.source import open_source

    source = open_source(seq_dir)
    numeric = [f.name for f in source.schema.arrow if not pa.types.is_string(f.type.value_type)]
    read, export = [], []
    for i in range(repeats + 1):
        start = time.perf_counter()
        for batch in source.batches():
            columns = [ListColumn.of(batch, name) for name in numeric]
            sources = batch.column("doc_sources").to_pylist()
        read.append(time.perf_counter() - start)
        del columns, sources
        target = out / f"{fmt}-{i}" / ("ja" if fmt == "megatron" else "")
        start = time.perf_counter()
        record = run_export(seq_dir, target, fmt, options)
        export.append(time.perf_counter() - start)
        size = sum(f["bytes"] for f in record.record.files.values())
        shutil.rmtree(out / f"{fmt}-{i}")
    return {"read": min(read[1:]), "export": min(export[1:]), "rows": record.record.rows, "tokens": record.record.tokens,
            "bytes": size}


def peak_rss_mib(python: str, code: str, *args: str) -> float:
    """Peak resident memory of `code` (with `args`) run by `python` in a process of its own."""
    proc = subprocess.run([python, "-W", "ignore", "-c", code + HIGH_WATER, *args], capture_output=True, text=True,
                          cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr}")
    return int(proc.stdout.split()[-1]) / 1024


def measure(python: str, fmt: str, inputs: dict[str, Path], root: Path, repeats: int, memory: bool = True) -> None:
    print(f"\n{fmt}  ({python})")
    runs = [(label, seq_dir, {}) for label, seq_dir in inputs.items()]
    if fmt == "mds":  # the default (zstd), and uncompressed at 1x
        runs = [(label, seq_dir, {"compression": "zstd", "shard_size": "64mb"}) for label, seq_dir, _ in runs]
        runs.append(("1x, --compression none", inputs["1x"], {"compression": "none", "shard_size": "64mb"}))
    for label, seq_dir, options in runs:
        proc = subprocess.run([python, "-W", "ignore", __file__, "--child", fmt, str(seq_dir), str(root),
                               "--repeats", str(repeats), "--options", json.dumps(options)],
                              capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            raise SystemExit(f"{fmt} {label} failed:\n{proc.stderr}")
        t = json.loads(proc.stdout.splitlines()[-1])
        read_rate, export_rate = t["tokens"] / t["read"], t["tokens"] / t["export"]
        if label.startswith("1x,"):
            print(f"  {label}: export {t['export']:6.3f} s ({export_rate / 1e6:6.1f} M tokens/s, "
                  f"{t['bytes'] / 2**20:7.1f} MiB)   ratio export/read {export_rate / read_rate:.3f}")
            continue
        print(f"  {label:<4} {t['rows']:>6,} rows {t['tokens'] / 1e6:7.1f} M tokens   read {t['read']:6.3f} s "
              f"({read_rate / 1e6:7.1f} M tokens/s)   export {t['export']:6.3f} s ({export_rate / 1e6:6.1f} M tokens/s, "
              f"{t['bytes'] / 2**20:7.1f} MiB)   ratio export/read {export_rate / read_rate:.3f}")
    if not memory:
        return
    print(f"  peak RSS, fresh process:  imports only {peak_rss_mib(python, IMPORTS[fmt]):7.1f} MiB")
    # MDS holds one shard in memory while it encodes and compresses it: at 1x the whole input is less than one
    # 64 MB shard, so its flatness shows once shards fill, with smaller ones.
    for more in ([], ["--shard-size", "8mb"]) if fmt == "mds" else ([],):
        for label, seq_dir in inputs.items():
            out = root / f"rss-{fmt}-{label}" / ("ja" if fmt == "megatron" else "")
            rss = peak_rss_mib(python, RUN_CLI, "export", str(seq_dir), "--format", fmt, "--out", str(out), *more)
            shutil.rmtree(root / f"rss-{fmt}-{label}")
            print(f"                            export {label:<4} {' '.join(more):<16} {rss:9.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_corpus = SHARED / "corpora" / "ja-sample"
    default_tokenizer = SHARED / "tokenizers" / "llm-jp-v3" / "llm-jp-tokenizer-100k.ver3.0b1.model"
    parser.add_argument("--corpus", type=Path, default=default_corpus if default_corpus.exists() else None)
    parser.add_argument("--tokenizer", type=Path, default=default_tokenizer if default_tokenizer.exists() else None)
    parser.add_argument("--repeats", type=int, default=2, help="best of N, after one untimed pass")
    parser.add_argument("--mds-python", default=str(REPO / "build" / "venv-mds" / "bin" / "python"),
                        help="a Python with mosaicml-streaming and wwm-prep (default: the one `make test-mds` makes)")
    parser.add_argument("--child", nargs=3, metavar=("FORMAT", "SEQ_DIR", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--only-1x", dest="tenfold", action="store_false", help="leave out the 10x input")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory runs")
    args = parse_with_smoke(parser, {**SMOKE, "tenfold": False, "memory": False})  # one megatron-core import, ~10 s
    if args.child:
        fmt, seq_dir, out = args.child
        print(json.dumps(time_in_child(Path(seq_dir), fmt, Path(out), args.repeats, json.loads(args.options))))
        return

    from wwm_prep.pipeline.pack import PackConfig, run_pack
    from wwm_prep.pipeline.segment import SegmentConfig, run_segment

    corpus = args.corpus or REPO / "sample" / "corpus"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        docs = run_segment([str(corpus)], root / "docs", SegmentConfig(
            dictionary="tiny-ja", tokenizer=str(args.tokenizer) if args.tokenizer else None), quiet=True)
        tenfold = {u["subset"]: 10.0 for u in docs.units.values()}
        inputs = {"1x": root / "seq-1x"}
        run_pack(root / "docs", inputs["1x"], PackConfig(seq_len=8192), quiet=True)
        if args.tenfold:
            inputs["10x"] = root / "seq-10x"
            run_pack(root / "docs", inputs["10x"], PackConfig(seq_len=8192, subset_weights=tenfold), quiet=True)
        print(f"corpus {corpus}, tokenizer {Path(docs.config.tokenizer.path).name}; 8,192-token rows; "
              "ratio = export tokens/s ÷ plain Arrow read tokens/s, same process, same shards (page cache warm)")
        measure(sys.executable, "megatron", inputs, root, args.repeats, args.memory)
        if Path(args.mds_python).exists():
            measure(args.mds_python, "mds", inputs, root, args.repeats, args.memory)
        else:
            print(f"\nmds: skipped ({args.mds_python} not found; `make test-mds` creates the environment that has "
                  "mosaicml-streaming)")


if __name__ == "__main__":
    main()
