"""The NumPy network: configs, packing semantics, masked-LM helpers (on a tiny model held in memory)."""

import json

import numpy as np
import pytest

from tests.check.conftest import VOCAB, ids_for
from wwm_prep.check import network as M
from wwm_prep.core.errors import WwmPrepError


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
    assert (d["bos_token_id"], d["eos_token_id"], d["pad_token_id"], d["mask_token_id"]) == (1, 2, 4, 3)  # llm-jp v3
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


def test_doc_lengths_as_a_zero_padded_array_skip_empty_pieces():
    ids = np.zeros((2, 6), dtype=np.int64)
    seg, pos = M.segments_and_positions(ids, doc_lengths=np.array([[2, 0, 3], [6, 0, 0]]))
    assert seg.tolist() == [[0, 0, 1, 1, 1, -1], [0] * 6]
    assert pos.tolist() == [[0, 1, 0, 1, 2, 0], list(range(6))]
    with pytest.raises(ValueError, match="row 1"):
        M.segments_and_positions(ids, doc_lengths=[[6], [2, -1]])
    with pytest.raises(ValueError, match="2 rows"):
        M.segments_and_positions(ids[:1], doc_lengths=[[6], [6]])


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
