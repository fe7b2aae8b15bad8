"""Shared fixtures: the real llm-jp tokenizer and corpus in ../shared (skipped cleanly where absent)."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WWM_PREP_SHARED", REPO.parent / "shared"))
LLM_JP_V3 = SHARED / "tokenizers" / "llm-jp-v3" / "llm-jp-tokenizer-100k.ver3.0b1.model"
JA_SAMPLE = SHARED / "corpora" / "ja-sample"


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
