"""The NumPy model: configs, checkpoints (errors, bf16, shards), packing semantics, masked-LM helpers."""

import json

import numpy as np
import pytest

from wwm_prep.check import network as M
from wwm_prep.core.errors import WwmPrepError

VOCAB = 300


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return M.init_checkpoint("tiny", tmp_path_factory.mktemp("tiny"), seed=0, vocab_size=VOCAB)


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return M.load_model(tiny_dir)


def ids_for(shape, seed=0):
    return np.random.default_rng(seed).integers(0, VOCAB, shape)


# --------------------------------------------------------------------------- configs


def test_bert_alpha_500m_has_the_published_parameter_count():
    cfg = M.get_config("bert-alpha-500m")
    assert M.num_parameters(cfg) == 581_485_568
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers) == (1024, 4096, 24)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (16, 8, 64)
    assert (cfg.rope_theta, cfg.rms_norm_eps, cfg.max_position_embeddings) == (20000.0, 1e-6, 8192)
    assert cfg.vocab_size == 99_584 and not cfg.tie_word_embeddings
    assert "lm_head.weight" in M.parameter_shapes(cfg)


def test_tiny_defaults_to_bert_alpha_vocab_and_vocab_can_follow_a_tokenizer():
    assert M.get_config("tiny").vocab_size == 99_584
    assert M.pad_vocab_size(99_574) == 99_584  # llm-jp v3.0's pieces → BERT-alpha's vocab
    assert M.get_config("tiny", vocab_size=M.pad_vocab_size(98_452)).vocab_size == 98_560


def test_config_round_trips_through_hf_json_and_reads_rope_parameters():
    cfg = M.get_config("bert-alpha-500m")
    d = cfg.to_hf_dict("bfloat16")
    assert d["model_type"] == "llama" and d["architectures"] and d["torch_dtype"] == "bfloat16"
    assert M.ModelConfig.from_dict(json.loads(json.dumps(d))) == cfg
    v5 = {k: v for k, v in d.items() if k != "rope_theta"}
    v5["rope_parameters"] = {"rope_type": "default", "rope_theta": 20000.0}
    assert M.ModelConfig.from_dict(v5).rope_theta == 20000.0


@pytest.mark.parametrize(
    "change, words",
    [
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"attention_bias": True}, "attention_bias"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 2.0}}, "yarn"),
        ({"num_key_value_heads": 3}, "num_key_value_heads"),
    ],
)
def test_unsupported_configs_are_refused_by_name(change, words):
    d = {**M.PRESETS["tiny"], **change}
    with pytest.raises(M.CheckpointError, match=words):
        M.ModelConfig.from_dict(d)


def test_config_missing_a_field_names_it():
    d = dict(M.PRESETS["tiny"])
    del d["intermediate_size"]
    with pytest.raises(M.CheckpointError, match="intermediate_size"):
        M.ModelConfig.from_dict(d)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(WwmPrepError, match="bert-alpha-500m"):
        M.get_config("huge")


# --------------------------------------------------------------------------- checkpoints


def test_init_checkpoint_writes_hf_layout(tiny_dir, tiny):
    assert sorted(p.name for p in tiny_dir.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and config["vocab_size"] == VOCAB
    header, start = M.read_safetensors_header(tiny_dir / "model.safetensors")
    assert start % 8 == 0
    assert {k: tuple(v["shape"]) for k, v in header.items()} == M.parameter_shapes(tiny.config)
    assert sum(w.size for w in tiny.weights.values()) == M.num_parameters(tiny.config)
    assert all(w.dtype == np.float32 for w in tiny.weights.values())


def test_init_is_deterministic_and_refuses_to_overwrite(tmp_path, tiny):
    M.init_checkpoint("tiny", tmp_path / "a", seed=0, vocab_size=VOCAB)
    again = M.load_model(tmp_path / "a")
    assert all(np.array_equal(again.weights[k], tiny.weights[k]) for k in tiny.weights)
    with pytest.raises(M.CheckpointError, match="overwrite"):
        M.init_checkpoint("tiny", tmp_path / "a", vocab_size=VOCAB)
    M.init_checkpoint("tiny", tmp_path / "a", seed=1, vocab_size=VOCAB, overwrite=True)
    other = M.load_model(tmp_path / "a")
    assert not np.array_equal(other.weights["lm_head.weight"], tiny.weights["lm_head.weight"])


def test_bfloat16_checkpoint_matches_float32_within_bf16_rounding(tmp_path, tiny):
    M.init_checkpoint("tiny", tmp_path, seed=0, dtype="bfloat16", vocab_size=VOCAB)
    assert (tmp_path / "model.safetensors").stat().st_size < 0.55 * sum(w.nbytes for w in tiny.weights.values())
    bf = M.load_model(tmp_path)
    for name, w in tiny.weights.items():
        # bf16 keeps 8 significant bits: rounding to nearest errs by at most half a unit, 2^-8 relative.
        assert np.all(np.abs(bf.weights[name] - w) <= np.abs(w) * 2.0**-8), name
        np.testing.assert_array_equal(bf.weights[name], M.bf16_to_f32(M.f32_to_bf16(w)))
    ids = ids_for((1, 64))
    a, b = M.forward(tiny, ids), M.forward(bf, ids)
    assert np.abs(a - b).max() < 0.02 * np.abs(a).max()


def test_bf16_conversion_rounds_to_nearest_even():
    x = np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, 1.0 + 2**-8 + 2**-20, -2.5, 0.0, np.inf], dtype=np.float32)
    back = M.bf16_to_f32(M.f32_to_bf16(x))
    np.testing.assert_array_equal(back, [1.0, 1.0, 1.0 + 4 * 2**-8, 1.0 + 2**-7, -2.5, 0.0, np.inf])
    assert np.isnan(M.bf16_to_f32(M.f32_to_bf16(np.array([np.nan], dtype=np.float32))))[0]


def _rewrite(src_dir, dst_dir, edit):
    """Copy a checkpoint with its tensors edited by `edit(dict)`."""
    dst_dir.mkdir()
    weights = M.load_safetensors(src_dir / "model.safetensors")
    edit(weights)
    M.save_safetensors(dst_dir / "model.safetensors", weights)
    (dst_dir / "config.json").write_text((src_dir / "config.json").read_text())
    return dst_dir


def test_missing_tensor_is_named(tiny_dir, tmp_path):
    d = _rewrite(tiny_dir, tmp_path / "c", lambda w: w.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(M.CheckpointError, match=r"missing tensors: model\.layers\.1\.mlp\.up_proj\.weight"):
        M.load_model(d)


def test_unexpected_tensor_is_named(tiny_dir, tmp_path):
    def add(w):
        w["model.layers.0.self_attn.q_proj.bias"] = np.zeros(64, np.float32)

    d = _rewrite(tiny_dir, tmp_path / "c", add)
    with pytest.raises(M.CheckpointError, match=r"unexpected tensors: model\.layers\.0\.self_attn\.q_proj\.bias"):
        M.load_model(d)


def test_wrong_shape_is_named_with_both_shapes(tiny_dir, tmp_path):
    def shrink(w):
        w["model.layers.0.self_attn.k_proj.weight"] = w["model.layers.0.self_attn.k_proj.weight"][:16]

    d = _rewrite(tiny_dir, tmp_path / "c", shrink)
    with pytest.raises(M.CheckpointError, match=r"k_proj\.weight has shape \[16, 64\], expected \[32, 64\]"):
        M.load_model(d)


def test_tied_config_without_lm_head_loads(tiny_dir, tmp_path):
    d = _rewrite(tiny_dir, tmp_path / "c", lambda w: w.pop("lm_head.weight"))
    config = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    m = M.load_model(d)
    assert m.output_weight is m.weights["model.embed_tokens.weight"]
    assert M.forward(m, ids_for((1, 8))).shape == (1, 8, VOCAB)


def test_sharded_checkpoint_loads_like_the_single_file(tiny_dir, tiny, tmp_path):
    weights = M.load_safetensors(tiny_dir / "model.safetensors")
    names = list(weights)
    shards = {"model-00001-of-00002.safetensors": names[:7], "model-00002-of-00002.safetensors": names[7:]}
    for file, part in shards.items():
        M.save_safetensors(tmp_path / file, {n: weights[n] for n in part}, dtype="bfloat16")
    weight_map = {n: file for file, part in shards.items() for n in part}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (tmp_path / "config.json").write_text((tiny_dir / "config.json").read_text())
    m = M.load_model(tmp_path)
    for n in names:
        assert np.allclose(m.weights[n], tiny.weights[n], rtol=2.0**-8, atol=0)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(M.CheckpointError, match="model-00002-of-00002.safetensors"):
        M.load_model(tmp_path)


def test_missing_files_are_clear(tmp_path):
    with pytest.raises(M.CheckpointError, match="does not exist"):
        M.load_model(tmp_path / "nowhere")
    with pytest.raises(M.CheckpointError, match="config.json"):
        M.load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(M.get_config("tiny").to_hf_dict()))
    with pytest.raises(M.CheckpointError, match="model.safetensors"):
        M.load_model(tmp_path)


# --------------------------------------------------------------------------- packing semantics


def test_segments_and_positions_from_lengths_positions_and_mask():
    ids = np.zeros((1, 8), dtype=np.int64)
    seg, pos = M.segments_and_positions(ids, doc_lengths=[[3, 4]])
    assert seg.tolist() == [[0, 0, 0, 1, 1, 1, 1, -1]] and pos.tolist() == [[0, 1, 2, 0, 1, 2, 3, 0]]
    seg2, pos2 = M.segments_and_positions(ids, position_ids=pos, attention_mask=(seg >= 0))
    assert seg2.tolist() == seg.tolist() and pos2.tolist() == pos.tolist()
    seg3, pos3 = M.segments_and_positions(ids, attention_mask=[[0, 0, 1, 1, 1, 1, 1, 1]])
    assert seg3.tolist() == [[-1, -1, 0, 0, 0, 0, 0, 0]] and pos3[0, 2:].tolist() == list(range(6))
    with pytest.raises(ValueError, match="sum to 9"):
        M.segments_and_positions(ids, doc_lengths=[[4, 5]])


def test_each_packed_piece_is_computed_as_if_alone(tiny):
    pieces = [70, 1, 130, 55]
    ids = ids_for((1, 256), seed=5)
    packed = M.forward(tiny, ids, doc_lengths=[pieces])
    at = 0
    for n in pieces:
        alone = M.forward(tiny, ids[:, at : at + n])
        np.testing.assert_allclose(packed[0, at : at + n], alone[0], atol=1e-5)
        at += n


def test_block_size_does_not_change_the_result(tiny):
    ids = ids_for((2, 200), seed=6)
    lengths = [[33, 120, 47], [200]]
    ref = M.forward(tiny, ids, doc_lengths=lengths, block=512)
    for block in (1, 7, 64):
        np.testing.assert_allclose(M.forward(tiny, ids, doc_lengths=lengths, block=block), ref, atol=1e-5)


def test_padding_changes_nothing_for_real_tokens(tiny):
    ids = ids_for((1, 40), seed=7)
    alone = M.forward(tiny, ids)[0]
    right = np.concatenate([ids, np.full((1, 24), 4)], axis=1)
    left = np.concatenate([np.full((1, 24), 4), ids], axis=1)
    mask = np.r_[np.ones(40), np.zeros(24)].astype(np.int64)[None]
    np.testing.assert_allclose(M.forward(tiny, right, attention_mask=mask)[0, :40], alone, atol=1e-5)
    np.testing.assert_allclose(M.forward(tiny, left, attention_mask=mask[:, ::-1])[0, 24:], alone, atol=1e-5)
    np.testing.assert_allclose(M.forward(tiny, right, doc_lengths=[[40]])[0, :40], alone, atol=1e-5)
    assert np.isfinite(M.forward(tiny, right, attention_mask=mask)).all()


def test_attention_is_bidirectional(tiny):
    ids = ids_for((1, 30), seed=8)
    changed = ids.copy()
    changed[0, -1] = (changed[0, -1] + 1) % VOCAB
    # Changing the last token changes the first token's output: no causal mask.
    assert np.abs(M.forward(tiny, ids)[0, 0] - M.forward(tiny, changed)[0, 0]).max() > 1e-6


def test_one_dimensional_input_is_one_row(tiny):
    ids = ids_for(16, seed=9)
    np.testing.assert_array_equal(M.forward(tiny, ids), M.forward(tiny, ids[None]))


def test_bad_inputs_are_refused(tiny):
    with pytest.raises(ValueError, match=r"\[0, 300\)"):
        M.forward(tiny, np.array([[1, 2, VOCAB]]))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        M.forward(tiny, np.array([[1, 2]]), position_ids=np.array([[0, 8192]]))
    with pytest.raises(ValueError, match="integer"):
        M.forward(tiny, np.array([[1.0, 2.0]]))


# --------------------------------------------------------------------------- masked-LM helpers


def test_mlm_loss_agrees_with_full_logits(tiny):
    ids = ids_for((2, 96), seed=10)
    lengths = [[40, 56], [90]]
    labels = np.full(ids.shape, M.IGNORE_INDEX)
    labels[:, 3::6] = ids[:, 3::6]
    labels[1, 90:] = M.IGNORE_INDEX
    logits = M.forward(tiny, ids, doc_lengths=lengths).astype(np.float64)
    sel = labels != M.IGNORE_INDEX
    lg, t = logits[sel], labels[sel]
    lse = np.log(np.exp(lg - lg.max(-1, keepdims=True)).sum(-1)) + lg.max(-1)
    expected = float(np.mean(lse - lg[np.arange(len(t)), t]))
    stats = M.mlm_loss(tiny, ids, labels, doc_lengths=lengths, chunk=5)
    assert stats.count == sel.sum()
    assert stats.loss == pytest.approx(expected, abs=1e-5)
    assert stats.correct == int((lg.argmax(-1) == t).sum())
    total = stats + M.MLMStats(loss_sum=0.0, correct=0, count=0)
    assert total.loss == stats.loss and 0.0 <= total.accuracy <= 1.0
    assert np.isnan(M.MLMStats().loss)


def test_top_k_agrees_with_full_logits(tiny):
    ids = ids_for((1, 50), seed=11)
    select = np.zeros(ids.shape, dtype=bool)
    select[0, [3, 20, 49]] = True
    top_ids, top_p = M.top_k(tiny, ids, select, k=4)
    logits = M.forward(tiny, ids)[select]
    assert top_ids.tolist() == np.argsort(-logits, axis=-1)[:, :4].tolist()
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(top_p, np.take_along_axis(p, top_ids, -1), rtol=1e-5)
    assert np.all(np.diff(top_p, axis=-1) <= 0)


def test_evaluate_batch_takes_the_collators_output(tiny):
    collator = pytest.importorskip("wwm_prep.train.collator")
    rng = np.random.default_rng(12)
    rows = []
    for lengths in ([20, 35, 9], [64]):
        ids = rng.integers(8, VOCAB, 64)
        starts = (rng.random(64) < 0.6).astype(np.uint8)
        rows.append({"input_ids": ids, "word_starts": starts, "doc_lengths": lengths})
    batch = collator.WholeWordMaskCollator(vocab_size=VOCAB, seed=3)(rows)
    assert (batch["labels"] != M.IGNORE_INDEX).any()
    stats = M.evaluate_batch(tiny, batch)
    direct = M.mlm_loss(tiny, batch["input_ids"], batch["labels"], doc_lengths=[[20, 35, 9], [64]])
    assert stats.count == direct.count and stats.correct == direct.correct
    assert stats.loss == pytest.approx(direct.loss, abs=1e-6)
