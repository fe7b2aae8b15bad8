"""Fixtures and helpers that several test directories share: the real llm-jp tokenizer and corpus in ../shared
(skipped cleanly where absent), ja-sample segmented and packed once per session, and the command line."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import settings

from wwm_prep.cli import main

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WWM_PREP_SHARED", REPO.parent / "shared"))
LLM_JP_V3 = SHARED / "tokenizers" / "llm-jp-v3" / "llm-jp-tokenizer-100k.ver3.0b1.model"
JA_SAMPLE = SHARED / "corpora" / "ja-sample"
SEQ_LENS = (8192, 512)  # the row lengths ja-sample is packed to once per session

# Property-based tests: the same examples on every run (derandomized: a fixed seed), a fixed budget, no database.
settings.register_profile("wwm-prep", derandomize=True, max_examples=200, deadline=None, database=None)
settings.load_profile("wwm-prep")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present (real data lives in ../shared)")
    return path


@pytest.fixture(scope="session")
def llm_jp_tokenizer_path() -> Path:
    return _need(LLM_JP_V3)


@pytest.fixture(scope="session")
def ja_sample() -> Path:
    return _need(JA_SAMPLE)


@pytest.fixture(scope="session")
def hf_tokenizers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A byte-level BPE, a WordPiece and a Unigram tokenizer.json (each in a directory with its configuration),
    trained once per session on the bundled sample corpus (tests/hf_tokenizers.py)."""
    from tests.hf_tokenizers import KINDS, train

    root = tmp_path_factory.mktemp("hf-tokenizers")
    return {kind: train(kind, root / kind) for kind in KINDS}


def corpus_texts(root: Path) -> Iterator[tuple[str, int, str]]:
    """(file, line, text) of every document under a corpus root, read plainly for tests."""
    for path in sorted(root.rglob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if line.strip():
                    yield str(path.relative_to(root)), line_no, json.loads(line)["text"]


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Dictionaries converted or fetched by tests go to a cache of the session, not the user's."""
    previous = os.environ.get("WWM_PREP_CACHE")
    os.environ["WWM_PREP_CACHE"] = str(tmp_path_factory.mktemp("wwm-prep-cache"))
    yield
    if previous is None:
        del os.environ["WWM_PREP_CACHE"]
    else:
        os.environ["WWM_PREP_CACHE"] = previous


def run(*args: str) -> tuple[int, str]:
    """`wwm-prep ARGS` in this process: exit status and output; an unexpected exception is raised."""
    result = CliRunner().invoke(main, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


# How long an awaited event may take before a test calls the wait vain: only a safety net for a stuck process,
# far above what a run takes on a machine whose cores are all busy with other work.
EVENT_DEADLINE = 600.0


def wait_until(done: Callable[[], bool], proc: subprocess.Popen | None = None,
               timeout: float = EVENT_DEADLINE) -> None:
    """Wait until `done()` (while `proc`, if given, is still at work): an event, looked for every 20 ms."""
    deadline = time.monotonic() + timeout
    while not done():
        assert proc is None or proc.poll() is None, "finished before it could be caught at work"
        assert time.monotonic() < deadline, "waited in vain"
        time.sleep(0.02)


def freeze_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = EVENT_DEADLINE) -> None:
    """Leave `proc` frozen (SIGSTOP) at a moment `ready()` holds, looked at while it is frozen, so the moment cannot
    pass between the look and what the test then does to it (SIGCONT lets it go on)."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, "finished before it could be caught at work"
        assert time.monotonic() < deadline
        proc.send_signal(signal.SIGSTOP)
        if ready():
            return
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.02)


def held_at_work(out: Path) -> set[str]:
    """The units a run on `out` holds a claim on and has not finished, once it has finished one (else none):
    between units a run may hold no claim, so only this says it is in the middle of one."""
    done = {p.stem for p in (out / "units").glob("*.json")}
    held = {p.stem for p in (out / "claims").glob("*.json")} - done
    return held if done else set()


def kill_at_work(proc: subprocess.Popen, out: Path, timeout: float = EVENT_DEADLINE) -> set[str]:
    """Kill `proc` at a moment it has finished a unit and holds a claim on one it has not. Returns the units it held."""
    freeze_when(proc, lambda: bool(held_at_work(out)), timeout)
    held = held_at_work(out)
    proc.kill()
    proc.communicate(timeout=60)
    return held


def big_corpus(root: Path, files: int = 6) -> Path:
    """Several copies of the bundled wiki file: enough work to be interrupted in the middle."""
    from wwm_prep.core.resources import resource

    lines = gzip.decompress(resource("sample", "corpus", "ja", "ja_wiki", "train_0.jsonl.gz").read_bytes())
    (root / "ja" / "ja_wiki").mkdir(parents=True)
    for i in range(files):
        with gzip.open(root / "ja" / "ja_wiki" / f"train_{i}.jsonl.gz", "wb") as f:
            f.write(lines * 8)
    return root


def corpus_with_reference(root: Path) -> tuple[Path, Path]:
    """A big corpus, and what one uninterrupted run makes of it, to compare other runs with."""
    corpus = big_corpus(root / "corpus")
    reference = root / "reference"
    assert run("segment", str(corpus), "--out", str(reference), "--dict", "tiny-ja", "--workers", "1")[0] == 0
    return corpus, reference


def start_command(*args: str, **popen: Any) -> subprocess.Popen:
    """`wwm-prep ARGS` in a process of its own, as a user starts it (its SIGINT handling included)."""
    return subprocess.Popen([sys.executable, "-m", "wwm_prep", *args], **{
        "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen})


def start_segment(corpus: Path, out: Path, *more: str, **popen: Any) -> subprocess.Popen:
    return start_command("segment", str(corpus), "--out", str(out), "--dict", "tiny-ja", "--workers", "1", *more,
                         **popen)


def tree(root: Path) -> dict[str, str]:
    """Every file under `root` (hidden ones too) by relative path, with its sha256: equal means byte for byte."""
    from wwm_prep.core.files import sha256_file

    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def units_done(out: Path) -> int:
    return len(list((out / "units").glob("*.json")))


def frozen_until_another_does_a_unit(first: subprocess.Popen, out: Path, start: Callable[[], subprocess.Popen]
                                     ) -> subprocess.Popen:
    """Freeze `first` (which has done a unit), start a second run with `start`, and let `first` go on once the
    second has done a unit of its own: the two then overlap whatever the machine's speed."""
    first.send_signal(signal.SIGSTOP)
    before = units_done(out)
    second = start()
    wait_until(lambda: units_done(out) > before, second)
    first.send_signal(signal.SIGCONT)
    return second


def write_jsonl_gz(path: Path, lines: list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    return path


def write_parquet(path: Path, texts: list[str | bytes | None], column: str = "text", rows_per_group: int = 5,
                  **more: list[Any]) -> Path:
    """`texts` as a Parquet file of string column `column` (bytes stand for text that is not valid UTF-8, which
    pyarrow's writer does not check), in row groups of `rows_per_group` rows; `more` are further columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    binary = pa.array([t.encode("utf-8") if isinstance(t, str) else t for t in texts], type=pa.binary())
    values = pa.Array.from_buffers(pa.string(), len(binary), binary.buffers(), binary.null_count)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({column: values, **more}), path, row_group_size=rows_per_group)
    return path


def parquet_texts(lines: list[bytes]) -> list[str | bytes | None]:
    """JSON lines as Parquet rows, one per line, so a row's number is its line's: a record's text, "" for a blank
    line, None for a null text, and a line that is no JSON as bytes that are no UTF-8 (both then rejects)."""
    texts: list[str | bytes | None] = []
    for line in lines:
        try:
            texts.append(json.loads(line)["text"] if line.strip() else "")
        except ValueError:
            texts.append(b"\xff" + line)
    return texts


@pytest.fixture(scope="session")
def ja_sequences(tmp_path_factory: pytest.TempPathFactory, ja_sample: Path, llm_jp_tokenizer_path: Path) -> dict[int, Path]:
    """ja-sample segmented once (unidic-lite, a real UniDic; llm-jp v3.0b1 tokenizer) and packed by
    `wwm-prep pack` into rows of each of SEQ_LENS tokens: {seq_len: sequence directory}."""
    from wwm_prep.pipeline.pack import PackConfig, run_pack
    from wwm_prep.pipeline.segment import SegmentConfig, run_segment

    root = tmp_path_factory.mktemp("collator-ja-sample")
    run_segment([str(ja_sample)], root / "documents", SegmentConfig(dictionary="unidic-lite", tokenizer=str(llm_jp_tokenizer_path)), quiet=True)
    dirs = {}
    for seq_len in SEQ_LENS:
        dirs[seq_len] = root / f"sequences-{seq_len}"
        run_pack(root / "documents", dirs[seq_len], PackConfig(seq_len=seq_len), quiet=True)
    return dirs


def load_packed(seq_dir: Path, cache_dir: Path):  # noqa: ANN201 (a datasets.Dataset)
    """The sequence shards of `seq_dir` as users open them: `datasets`, NumPy format."""
    import datasets

    ds = datasets.load_dataset("arrow", data_files=str(seq_dir / "*.arrow"), split="train", cache_dir=str(cache_dir))
    return ds.with_format("numpy")


@pytest.fixture(scope="session")
def real_rows_8192(ja_sequences: dict[int, Path], tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, np.ndarray]]:
    """Every 8,192-token row of packed ja-sample, as `datasets` hands rows to a collator."""
    return list(load_packed(ja_sequences[8192], tmp_path_factory.mktemp("hf-cache")))


@pytest.fixture(scope="session")
def real_rows_512(ja_sequences: dict[int, Path], tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, np.ndarray]]:
    """Every 512-token row of packed ja-sample, as `datasets` hands rows to a collator."""
    return list(load_packed(ja_sequences[512], tmp_path_factory.mktemp("hf-cache")))


@pytest.fixture(scope="session")
def ja_docs(tmp_path_factory: pytest.TempPathFactory, ja_sample: Path, llm_jp_tokenizer_path: Path) -> Path:
    """ja-sample segmented once with the real llm-jp tokenizer (the small bundled dictionary: pack does not care)."""
    from wwm_prep.pipeline.segment import SegmentConfig, run_segment

    out = tmp_path_factory.mktemp("ja-docs")
    run_segment([str(ja_sample)], out, SegmentConfig(dictionary="tiny-ja", tokenizer=str(llm_jp_tokenizer_path)), quiet=True)
    return out


@pytest.fixture(scope="session")
def ja_parquet(tmp_path_factory: pytest.TempPathFactory, ja_sample: Path) -> Path:
    """ja-sample written as Parquet in its own layout, a row per line (so rows and lines agree), the text in a
    column named `content`, in row groups of 400 rows: several per file."""
    root = tmp_path_factory.mktemp("ja-parquet")
    for path in sorted(ja_sample.rglob("*.jsonl.gz")):
        target = root / path.relative_to(ja_sample).as_posix().replace(".jsonl.gz", ".parquet")
        write_parquet(target, parquet_texts(gzip.decompress(path.read_bytes()).splitlines()), "content", 400)
    return root


@pytest.fixture(scope="session")
def ja_parquet_docs(tmp_path_factory: pytest.TempPathFactory, ja_parquet: Path, llm_jp_tokenizer_path: Path) -> Path:
    """ja-sample as Parquet segmented as `ja_docs` is, with --text-column content and chunks of 4 MiB."""
    from wwm_prep.pipeline.segment import SegmentConfig, run_segment

    out = tmp_path_factory.mktemp("ja-parquet-docs")
    config = SegmentConfig(dictionary="tiny-ja", tokenizer=str(llm_jp_tokenizer_path), text_column="content",
                           chunk_size=4 << 20)
    run_segment([str(ja_parquet)], out, config, quiet=True)
    return out


@pytest.fixture(scope="session")
def ja_pack(tmp_path_factory: pytest.TempPathFactory, ja_docs: Path) -> Callable[..., Path]:
    """Pack ja-sample with the given options, once per distinct set of options."""
    from wwm_prep.pipeline.pack import PackConfig, run_pack

    done: dict[tuple, Path] = {}

    def pack(seq_len: int, strategy: str = "best-fit", **options: object) -> Path:
        key = (seq_len, strategy, repr(sorted(options.items())))
        if key not in done:
            done[key] = tmp_path_factory.mktemp(f"ja-seq-{seq_len}-{strategy}")
            run_pack(ja_docs, done[key], PackConfig(seq_len=seq_len, strategy=strategy, **options), quiet=True)
        return done[key]

    return pack
