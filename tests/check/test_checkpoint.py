"""Checkpoints: the Hugging Face layout init_checkpoint writes, bf16 on disk, shards, and the errors that name
a bad tensor or file."""

import json

import numpy as np
import pytest

from tests.check.conftest import VOCAB, ids_for
from wwm_prep.check import checkpoint as C
from wwm_prep.check import network as N


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return C.init_checkpoint("tiny", tmp_path_factory.mktemp("tiny"), seed=0, vocab_size=VOCAB)


@pytest.fixture(scope="module")
def loaded(tiny_dir):
    return C.load_model(tiny_dir)


def test_init_checkpoint_writes_hf_layout(tiny_dir, loaded):
    assert sorted(p.name for p in tiny_dir.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and config["vocab_size"] == VOCAB
    header, start = C.read_safetensors_header(tiny_dir / "model.safetensors")
    assert start % 8 == 0
    assert {k: tuple(v["shape"]) for k, v in header.items()} == N.parameter_shapes(loaded.config)
    assert sum(w.size for w in loaded.weights.values()) == N.num_parameters(loaded.config)
    assert all(w.dtype == np.float32 for w in loaded.weights.values())


def test_init_is_deterministic_and_refuses_to_overwrite(tmp_path, loaded):
    C.init_checkpoint("tiny", tmp_path / "a", seed=0, vocab_size=VOCAB)
    again = C.load_model(tmp_path / "a")
    assert all(np.array_equal(again.weights[k], loaded.weights[k]) for k in loaded.weights)
    with pytest.raises(N.CheckpointError, match="overwrite"):
        C.init_checkpoint("tiny", tmp_path / "a", vocab_size=VOCAB)
    C.init_checkpoint("tiny", tmp_path / "a", seed=1, vocab_size=VOCAB, overwrite=True)
    other = C.load_model(tmp_path / "a")
    assert not np.array_equal(other.weights["lm_head.weight"], loaded.weights["lm_head.weight"])


def test_the_file_holds_the_initialised_weights_and_declared_keys(tiny, loaded, tmp_path):
    assert loaded.weights.keys() == tiny.weights.keys()
    assert all(np.array_equal(loaded.weights[k], w) for k, w in tiny.weights.items())
    C.init_checkpoint("tiny", tmp_path, vocab_size=VOCAB, declare={"pad_token_id": 0, "for_tokenizer": "x"})
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["pad_token_id"] == 0 and list(config)[-1] == "for_tokenizer"
    assert N.ModelConfig.from_dict(config) == loaded.config


def test_bfloat16_checkpoint_matches_float32_within_bf16_rounding(tmp_path, loaded):
    C.init_checkpoint("tiny", tmp_path, seed=0, dtype="bfloat16", vocab_size=VOCAB)
    assert (tmp_path / "model.safetensors").stat().st_size < 0.55 * sum(w.nbytes for w in loaded.weights.values())
    bf = C.load_model(tmp_path)
    for name, w in loaded.weights.items():
        # bf16 keeps 8 significant bits: rounding to nearest errs by at most half a unit, 2^-8 relative.
        assert np.all(np.abs(bf.weights[name] - w) <= np.abs(w) * 2.0**-8), name
        np.testing.assert_array_equal(bf.weights[name], C.bf16_to_f32(C.f32_to_bf16(w)))
    ids = ids_for((1, 64))
    a, b = N.forward(loaded, ids), N.forward(bf, ids)
    assert np.abs(a - b).max() < 0.02 * np.abs(a).max()


def test_bf16_conversion_rounds_to_nearest_even():
    x = np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, 1.0 + 2**-8 + 2**-20, -2.5, 0.0, np.inf], dtype=np.float32)
    back = C.bf16_to_f32(C.f32_to_bf16(x))
    np.testing.assert_array_equal(back, [1.0, 1.0, 1.0 + 4 * 2**-8, 1.0 + 2**-7, -2.5, 0.0, np.inf])
    assert np.isnan(C.bf16_to_f32(C.f32_to_bf16(np.array([np.nan], dtype=np.float32))))[0]


def _rewrite(src_dir, dst_dir, edit):
    """Copy a checkpoint with its tensors edited by `edit(dict)`."""
    dst_dir.mkdir()
    weights = C.load_safetensors(src_dir / "model.safetensors")
    edit(weights)
    C.save_safetensors(dst_dir / "model.safetensors", weights)
    (dst_dir / "config.json").write_text((src_dir / "config.json").read_text())
    return dst_dir


def test_missing_tensor_is_named(tiny_dir, tmp_path):
    d = _rewrite(tiny_dir, tmp_path / "c", lambda w: w.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(N.CheckpointError, match=r"missing tensors: model\.layers\.1\.mlp\.up_proj\.weight"):
        C.load_model(d)


def test_unexpected_tensor_is_named(tiny_dir, tmp_path):
    def add(w):
        w["model.layers.0.self_attn.q_proj.bias"] = np.zeros(64, np.float32)

    d = _rewrite(tiny_dir, tmp_path / "c", add)
    with pytest.raises(N.CheckpointError, match=r"unexpected tensors: model\.layers\.0\.self_attn\.q_proj\.bias"):
        C.load_model(d)


def test_wrong_shape_is_named_with_both_shapes(tiny_dir, tmp_path):
    def shrink(w):
        w["model.layers.0.self_attn.k_proj.weight"] = w["model.layers.0.self_attn.k_proj.weight"][:16]

    d = _rewrite(tiny_dir, tmp_path / "c", shrink)
    with pytest.raises(N.CheckpointError, match=r"k_proj\.weight has shape \[16, 64\], expected \[32, 64\]"):
        C.load_model(d)


def test_tied_config_without_lm_head_loads(tiny_dir, tmp_path):
    d = _rewrite(tiny_dir, tmp_path / "c", lambda w: w.pop("lm_head.weight"))
    config = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    m = C.load_model(d)
    assert m.output_weight is m.weights["model.embed_tokens.weight"]
    assert N.forward(m, ids_for((1, 8))).shape == (1, 8, VOCAB)


def test_sharded_checkpoint_loads_like_the_single_file(tiny_dir, loaded, tmp_path):
    weights = C.load_safetensors(tiny_dir / "model.safetensors")
    names = list(weights)
    shards = {"model-00001-of-00002.safetensors": names[:7], "model-00002-of-00002.safetensors": names[7:]}
    for file, part in shards.items():
        C.save_safetensors(tmp_path / file, {n: weights[n] for n in part}, dtype="bfloat16")
    weight_map = {n: file for file, part in shards.items() for n in part}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (tmp_path / "config.json").write_text((tiny_dir / "config.json").read_text())
    m = C.load_model(tmp_path)
    for n in names:
        assert np.allclose(m.weights[n], loaded.weights[n], rtol=2.0**-8, atol=0)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(N.CheckpointError, match="model-00002-of-00002.safetensors"):
        C.load_model(tmp_path)


def test_missing_files_are_clear(tmp_path):
    with pytest.raises(N.CheckpointError, match="does not exist"):
        C.load_model(tmp_path / "nowhere")
    with pytest.raises(N.CheckpointError, match="config.json"):
        C.load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(N.get_config("tiny").to_hf_dict()))
    with pytest.raises(N.CheckpointError, match="model.safetensors"):
        C.load_model(tmp_path)
