"""The README's training examples run as written on freshly prepared shards (skipped without torch, or without
transformers for the Trainer example)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run
from wwm_prep.core.resources import resource


@pytest.fixture(scope="module")
def sequences(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample corpus prepared as the demo does, with the small dictionary and 256-token rows (quick)."""
    out = tmp_path_factory.mktemp("examples")
    assert run("prepare", str(resource("sample", "corpus")), "--out", str(out), "--dict", "tiny-ja",
               "--seq-len", "256", "--quiet")[0] == 0
    return out / "sequences"


def assert_learns(losses: list[float], steps: int) -> None:
    assert len(losses) == steps
    assert all(loss == loss and loss < 20 for loss in losses)  # finite
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3  # it learns


def test_train_tiny_example_learns(sequences: Path) -> None:
    pytest.importorskip("torch")
    result = subprocess.run([sys.executable, str(REPO / "examples" / "train_tiny.py"), str(sequences),
                             "--steps", "15"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert_learns([float(x) for x in re.findall(r"masked-LM loss ([\d.]+)", result.stdout)], 15)


def test_trainer_llama_encoder_example_learns(sequences: Path, tmp_path: Path) -> None:
    """The Trainer example, imported and run in this process (its tiny default config), for fewer steps."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # the Trainer needs it
    spec = importlib.util.spec_from_file_location("train_llama_encoder", REPO / "examples" / "train_llama_encoder.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert_learns(example.train(sequences, steps=10, out=tmp_path), 10)
