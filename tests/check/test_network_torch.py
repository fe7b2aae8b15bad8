"""The NumPy model against an independent implementation: transformers' Llama with the causal mask removed.

Optional: skipped where torch or transformers is absent. The bidirectional, per-piece attention is given to
transformers as a 4-D additive mask built here from the piece lengths (0 = may attend, dtype minimum =
may not), with `position_ids` restarting at each piece; transformers passes a 4-D mask through unchanged.
"""

import json

import numpy as np
import pytest

from wwm_prep.check import checkpoint as C
from wwm_prep.check import network as M

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOL = 1e-4

CONFIG = dict(
    vocab_size=320, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, rope_theta=20000.0, rms_norm_eps=1e-6,
    max_position_embeddings=8192, tie_word_embeddings=False,
)


def random_weights(config: M.ModelConfig, seed: int = 1) -> dict[str, np.ndarray]:
    """Larger than init scale, and norms not all ones, so every tensor visibly matters."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in M.parameter_shapes(config).items():
        if len(shape) == 1:
            out[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            out[name] = (rng.standard_normal(shape) * 0.08).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    cfg = M.get_config(CONFIG)
    C.save_safetensors(d / "model.safetensors", random_weights(cfg))
    (d / "config.json").write_text(json.dumps(cfg.to_hf_dict()))
    return d


@pytest.fixture(scope="module")
def models(checkpoint):
    ours = C.load_model(checkpoint)
    theirs = transformers.LlamaForCausalLM.from_pretrained(checkpoint, attn_implementation="eager")
    theirs = theirs.float().eval()
    return ours, theirs


def reference_inputs(pieces_per_row: list[list[int]], length: int, left_pad: bool = False):
    """Segment ids (-1 = pad), positions restarting per piece, and the additive 4-D mask, built independently."""
    rows = len(pieces_per_row)
    seg = np.full((rows, length), -1)
    pos = np.zeros((rows, length), dtype=np.int64)
    for r, pieces in enumerate(pieces_per_row):
        at = length - sum(pieces) if left_pad else 0
        for j, n in enumerate(pieces):
            seg[r, at : at + n] = j
            pos[r, at : at + n] = np.arange(n)
            at += n
    same = seg[:, :, None] == seg[:, None, :]
    real_key = (seg >= 0)[:, None, :]
    allowed = same & real_key
    allowed |= (seg < 0)[:, :, None]  # pad queries: anything (their outputs are not compared)
    mask = np.where(allowed, 0.0, torch.finfo(torch.float32).min).astype(np.float32)[:, None]
    return seg, pos, mask


def their_logits(theirs, ids, pos, mask) -> np.ndarray:
    with torch.no_grad():
        out = theirs(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            position_ids=torch.from_numpy(pos),
            use_cache=False,
        )
    return out.logits.numpy()


def max_diff(ours_logits, theirs_logits, seg) -> float:
    real = seg >= 0
    return float(np.abs(ours_logits[real] - theirs_logits[real]).max())


def test_packed_rows_match_transformers(models):
    ours, theirs = models
    pieces = [[37, 90, 1, 52], [180]]
    length = 180
    seg, pos, mask = reference_inputs(pieces, length)
    ids = np.random.default_rng(2).integers(0, CONFIG["vocab_size"], (2, length))
    ref = their_logits(theirs, ids, pos, mask)
    got_lengths = M.forward(ours, ids, doc_lengths=pieces)
    got_positions = M.forward(ours, ids, position_ids=pos, block=16)
    d1, d2 = max_diff(got_lengths, ref, seg), max_diff(got_positions, ref, seg)
    print(f"packed: max |diff| {d1:.2e} (doc_lengths), {d2:.2e} (position_ids); max |logit| {np.abs(ref).max():.2f}")
    assert d1 < TOL and d2 < TOL
    # And the mask matters: a plain causal or unmasked run would differ far more than the tolerance.
    assert np.abs(M.forward(ours, ids)[0] - ref[0]).max() > 100 * TOL


@pytest.mark.parametrize("left_pad", [False, True])
def test_padded_rows_match_transformers(models, left_pad):
    ours, theirs = models
    pieces = [[64], [41], [7]]
    length = 64
    seg, pos, mask = reference_inputs(pieces, length, left_pad=left_pad)
    ids = np.random.default_rng(3).integers(0, CONFIG["vocab_size"], (3, length))
    ids[seg < 0] = 4  # <PAD>
    ref = their_logits(theirs, ids, pos, mask)
    got = M.forward(ours, ids, attention_mask=(seg >= 0).astype(np.int64))
    d = max_diff(got, ref, seg)
    print(f"padded (left_pad={left_pad}): max |diff| {d:.2e}")
    assert d < TOL


def test_mlm_loss_matches_transformers(models):
    ours, theirs = models
    pieces = [[30, 50], [80]]
    seg, pos, mask = reference_inputs(pieces, 80)
    ids = np.random.default_rng(4).integers(0, CONFIG["vocab_size"], (2, 80))
    labels = np.full(ids.shape, M.IGNORE_INDEX)
    labels[:, ::5] = ids[:, ::5]
    ref = torch.from_numpy(their_logits(theirs, ids, pos, mask))
    ref_loss = torch.nn.functional.cross_entropy(ref.reshape(-1, ref.shape[-1]), torch.from_numpy(labels).reshape(-1))
    stats = M.mlm_loss(ours, ids, labels, doc_lengths=pieces)
    assert stats.count == int((labels != M.IGNORE_INDEX).sum())
    assert abs(stats.loss - float(ref_loss)) < TOL
