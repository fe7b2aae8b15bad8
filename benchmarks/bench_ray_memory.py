"""Benchmark of `segment --executor ray` memory: the node's total for 2 workers, one dictionary per worker
(before) against one per node (after).

- before: one Ray actor per worker, each loading the dictionary and running units itself (the layout
  `RayExecutor` had, defined here only to compare with);
- after: the package's `RayExecutor`, one actor per node that loads it once and forks its 2 workers.

Both segment the corpus (../shared's ja-sample, else the bundled sample), dealt round-robin into 8 files so
the units are of similar size, in one local Ray started here with 2 CPUs; the dictionary is converted (on
first use) and loaded in this process first, so neither run pays for that. A thread samples the actor
processes and their children every 20 ms and sums their proportional set size (PSS, `/proc/<pid>/smaps_rollup`:
a page shared copy-on-write is counted once across the processes sharing it) and their resident size (RSS,
which counts such a page once per process). The peaks are taken while both workers run units, and, for PSS,
also over the whole run, the loading included (compiling a text dictionary needs several times the memory of
the result). The driver, which holds the dictionary too in both layouts (for the output's configuration), is
left out.

    python benchmarks/bench_ray_memory.py [--corpus DIR] [--dict NAME] [--tokenizer MODEL] [--smoke]
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_workers import deal  # noqa: E402
from corpus_args import SMOKE, corpus_parser, parse_with_smoke  # noqa: E402
from wwm_prep.pipeline import segment as segment_module  # noqa: E402
from wwm_prep.pipeline.executor import RayExecutor, Stage  # noqa: E402
from wwm_prep.pipeline.segment import SegmentConfig, SegmentStage, run_segment  # noqa: E402
from wwm_prep.pipeline.units import UnitResult  # noqa: E402
from wwm_prep.text.dictionary import DEFAULT_DICTIONARY, DictionaryFiles, load_dictionary  # noqa: E402
from wwm_prep.text.tokenizer import Tokenizer  # noqa: E402

try:
    import ray
    from ray.util import ActorPool
except ImportError:
    ray = None

WORKERS = 2
AFTER_TITLE = "ray::NodeWorkers"  # the process title of `RayExecutor`'s actors (their class name)
BEFORE_TITLE = "ray::DictionaryPerWorker"


def marks_dir(out: Path) -> Path:
    return out.with_name(f"{out.name}-marks")


class MarkedStage(SegmentStage):
    """Leaves `load-<pid>` beside the output when a process loads the dictionary, `run-<pid>` when one runs a unit."""

    def prepare(self, located: tuple[DictionaryFiles, Tokenizer] | None = None) -> None:
        if self.segmenter is None:
            (marks_dir(self.out.local) / f"load-{os.getpid()}").touch()
        super().prepare(located)

    def run(self, unit: Any) -> UnitResult:
        (marks_dir(self.out.local) / f"run-{os.getpid()}").touch()
        return super().run(unit)


class DictionaryPerWorker:
    """The layout before: a Ray actor that loads the dictionary for itself and runs its units in its own process."""

    def __init__(self, stage: Stage):
        self.stage = stage
        stage.prepare()

    def run(self, unit: Any) -> UnitResult:
        return self.stage.run(unit)


@dataclass(frozen=True)
class PerWorkerExecutor:
    """`workers` DictionaryPerWorker actors, dealt the units as they finish."""

    workers: int
    shares_memory = False

    def run(self, stage: Stage, units: Sequence[Any]) -> Iterator[UnitResult]:
        actor = ray.remote(num_cpus=1)(DictionaryPerWorker)
        actors = [actor.remote(stage) for _ in range(min(self.workers, len(units)))]
        try:
            yield from ActorPool(actors).map_unordered(lambda a, unit: a.run.remote(unit), units)
        finally:
            for a in actors:
                ray.kill(a)


def kib(pid: int, name: str, key: str) -> int:
    with open(f"/proc/{pid}/{name}") as f:
        return int(next(line.split()[1] for line in f if line.startswith(key)))


def children(pid: int) -> list[int]:
    try:
        return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()]
    except OSError:
        return []  # gone meanwhile


def processes(actor_title: str) -> set[int]:
    """The actors (found by their process title) and all their descendants, in this process's own Ray (its raylet
    is a child of this process): on a shared machine, other people's Ray actors of the same class are not counted."""
    found: set[int] = set()
    todo = [(os.getpid(), False)]
    while todo:
        pid, counted = todo.pop()
        try:
            counted = counted or Path(f"/proc/{pid}/cmdline").read_bytes().startswith(actor_title.encode())
        except OSError:
            continue  # gone meanwhile
        if counted:
            found.add(pid)
        todo += [(child, counted) for child in children(pid)]
    return found


class Sampler(threading.Thread):
    """Until stopped, every 20 ms: the PSS and RSS totals (MB) of the processes under `actor_title`, their peaks
    while `WORKERS` processes have started units (`run-*` marks), the peak PSS over all samples, and the most
    processes seen."""

    def __init__(self, actor_title: str, marks: Path):
        super().__init__(daemon=True)
        self.actor_title, self.marks, self.stopped = actor_title, marks, threading.Event()
        self.pss = self.rss = self.pss_all = 0.0
        self.most = 0

    def run(self) -> None:
        while not self.stopped.wait(0.02):
            running = len(list(self.marks.glob("run-*"))) >= WORKERS
            pss = rss = 0
            pids = processes(self.actor_title)
            for pid in pids:
                try:
                    pss += kib(pid, "smaps_rollup", "Pss:")
                    rss += kib(pid, "status", "VmRSS:")
                except (OSError, StopIteration):
                    pass  # gone, or a zombie, meanwhile
            self.pss_all, self.most = max(self.pss_all, pss * 1024 / 1e6), max(self.most, len(pids))
            if running:
                self.pss, self.rss = max(self.pss, pss * 1024 / 1e6), max(self.rss, rss * 1024 / 1e6)


def measure(executor: Any, actor_title: str, corpus: Path, out: Path, config: SegmentConfig) -> dict[str, float]:
    """One segment run's memory peaks (MB), processes, dictionary loads outside this process, and seconds."""
    marks_dir(out).mkdir()
    sampler = Sampler(actor_title, marks_dir(out))
    sampler.start()
    start = time.perf_counter()
    try:
        manifest = run_segment([str(corpus)], out, config, executor=executor, quiet=True)
    finally:
        sampler.stopped.set()
        sampler.join()
    assert manifest.complete and not manifest.failed
    loads = [p for p in marks_dir(out).glob("load-*") if p.name != f"load-{os.getpid()}"]
    return {"pss": sampler.pss, "rss": sampler.rss, "pss_all": sampler.pss_all, "processes": sampler.most,
            "loads": len(loads), "seconds": time.perf_counter() - start}


def main() -> None:
    args = parse_with_smoke(corpus_parser(__doc__.splitlines()[0]), SMOKE)
    if ray is None:
        print("bench_ray_memory: Ray is not installed (pip install 'wwm-prep[ray]'); skipped")
        return
    segment_module.SegmentStage = MarkedStage  # type: ignore[misc]
    config = SegmentConfig(dictionary=args.dict, tokenizer=str(args.tokenizer) if args.tokenizer else None)
    load_dictionary(args.dict)
    cache = os.environ.get("WWM_PREP_CACHE")
    ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"WWM_PREP_CACHE": cache}} if cache else None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            corpus = Path(tmp) / "corpus"
            megabytes = deal(args.corpus, corpus, 8) / 1e6
            print(f"corpus: {megabytes:.1f} MB of JSON lines in 8 files; dictionary {args.dict or DEFAULT_DICTIONARY}; "
                  f"{WORKERS} workers on one local Ray node")
            rows = {name: measure(executor, title, corpus, Path(tmp) / name, config)
                    for name, executor, title in [("before", PerWorkerExecutor(WORKERS), BEFORE_TITLE),
                                                  ("after", RayExecutor(WORKERS), AFTER_TITLE)]}
    finally:
        ray.shutdown()
    print(f"{'layout':<7} {'peak PSS total MB':>17} {'peak RSS total MB':>17} {'dictionary loads':>16} "
          f"{'processes':>9} {'peak PSS incl. loading MB':>25} {'seconds':>7}")
    for name, r in rows.items():
        print(f"{name:<7} {r['pss']:>17.0f} {r['rss']:>17.0f} {r['loads']:>16} {r['processes']:>9} "
              f"{r['pss_all']:>25.0f} {r['seconds']:>7.1f}")
    # nan where no sample fell while both workers ran (a run too short to measure, such as --smoke's)
    ratio = {key: rows["after"][key] / rows["before"][key] if rows["before"][key] else float("nan")
             for key in ("pss", "rss", "pss_all")}
    print(f"RATIO after / before: peak PSS {ratio['pss']:.2f}, peak RSS {ratio['rss']:.2f}, "
          f"peak PSS incl. loading {ratio['pss_all']:.2f}")


if __name__ == "__main__":
    main()
