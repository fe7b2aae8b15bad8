"""The README's training example runs as written on freshly prepared shards (skipped without torch)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run
from wwm_prep.core.resources import resource


def test_train_tiny_example_learns(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    assert run("prepare", str(resource("sample", "corpus")), "--out", str(tmp_path), "--dict", "tiny-ja",
               "--seq-len", "256", "--quiet")[0] == 0
    result = subprocess.run([sys.executable, str(REPO / "examples" / "train_tiny.py"), str(tmp_path / "sequences"),
                             "--steps", "15"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    losses = [float(x) for x in re.findall(r"masked-LM loss ([\d.]+)", result.stdout)]
    assert len(losses) == 15
    assert all(loss == loss and loss < 20 for loss in losses)  # finite
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3  # it learns
