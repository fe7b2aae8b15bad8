"""The README's training examples run as written on freshly prepared shards (skipped without torch, or without
transformers for the Trainer example)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, run
from wwm_prep import WholeWordMaskCollator
from wwm_prep.core.manifest import SequenceManifest
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


def example(name: str):  # noqa: ANN201 (a module)
    """An example script imported as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_tiny_example_keeps_pieces_apart(sequences: Path) -> None:
    """Its encoder, given the collator's block mask, gives each packed piece what the piece alone gives."""
    torch = pytest.importorskip("torch")
    datasets = pytest.importorskip("datasets")
    rows = datasets.load_dataset("arrow", data_files=str(sequences / "*.arrow"), split="train").with_format("numpy")
    rows = [row for row in rows if len(row["doc_lengths"]) > 1][:2]
    collator = WholeWordMaskCollator(SequenceManifest.read(sequences).tokenizer.path, block_attention=True,
                                     return_tensors="pt")
    batch = collator(rows)
    torch.manual_seed(0)
    model = example("train_tiny").TinyEncoder(collator.vocab_size).eval()
    with torch.no_grad():
        together = model(batch["input_ids"], batch["position_ids"], batch["attention_mask"])
        for r, row in enumerate(rows):
            ends = np.cumsum(row["doc_lengths"])
            for a, b in zip(ends - row["doc_lengths"], ends):
                alone = model(batch["input_ids"][r : r + 1, a:b], torch.arange(b - a)[None],
                              torch.zeros(1, 1, b - a, b - a))
                assert float((together[r, a:b] - alone[0]).abs().max()) <= 1e-4


def test_trainer_llama_encoder_example_learns(sequences: Path, tmp_path: Path) -> None:
    """The Trainer example, imported and run in this process (its tiny default config), for fewer steps."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # the Trainer needs it
    assert_learns(example("train_llama_encoder").train(sequences, steps=10, out=tmp_path), 10)
