"""Fixtures and helpers of the check/ tests: tiny models, and the bundled sample packed for `sanity` and `fill-mask`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from tests.conftest import REPO
from wwm_prep import cli
from wwm_prep.check import network as N
from wwm_prep.check.checkpoint import init_tensor
from wwm_prep.text.tokenizer import DEFAULT_TOKENIZER

VOCAB = 300  # the tiny model's vocabulary in the network and checkpoint tests
SAMPLE_MODEL = REPO.joinpath(*DEFAULT_TOKENIZER)
SEQ_LEN = 256  # the row length the bundled corpus is packed to for `sanity`


def ids_for(shape: int | tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, shape)


def init_weights(config: N.ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """All weights in memory, as `init_checkpoint` writes them, for tests that need no file."""
    return {name: init_tensor(name, shape, seed) for name, shape in N.parameter_shapes(config).items()}


@pytest.fixture(scope="module")
def tiny() -> N.Model:
    """The tiny preset at VOCAB tokens, randomly initialised in memory."""
    config = N.get_config("tiny", vocab_size=VOCAB)
    return N.Model(config, init_weights(config))


def invoke(*args: object) -> Result:
    """`wwm-prep ARGS` in this process, with stdout and the log (stderr) kept apart."""
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def ok(*args: object) -> Result:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def other_tokenizer(path: Path) -> Path:
    """A valid SentencePiece model that is not the bundled one (same pieces, another file)."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(SAMPLE_MODEL.read_bytes())
    proto.trainer_spec.model_prefix = "another-tokenizer"
    path.write_bytes(proto.SerializeToString())
    return path


@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled corpus segmented (tiny-ja, bundled tokenizer) and packed to 256 tokens, and a tiny model
    that declares the bundled tokenizer."""
    root = tmp_path_factory.mktemp("sanity")
    ok("segment", REPO / "sample" / "corpus", "--dict", "tiny-ja", "--out", root / "docs")
    ok("pack", root / "docs", "--seq-len", SEQ_LEN, "--out", root / "seq")
    ok("init-model", "--config", "tiny", "--tokenizer", SAMPLE_MODEL, "--out", root / "tiny")
    return root
