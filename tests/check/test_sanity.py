"""`init-model` and `sanity` end to end on the bundled sample (tiny-ja dictionary, 256-token rows) and tiny models:
an untrained model and each mismatch are red flags (exit 1); the mismatches are caught before the forward. A
trained model cannot be tested here (no checkpoint can be downloaded)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.check.conftest import SAMPLE_MODEL, SEQ_LEN, invoke, ok, other_tokenizer
from wwm_prep import cli
from wwm_prep.check import checkpoint as C
from wwm_prep.check import network as N
from wwm_prep.check import sanity as S
from wwm_prep.text.tokenizer import open_tokenizer
from wwm_prep.train.collator import WholeWordMaskCollator

SUBSETS = {"ja_cc", "ja_warp_html", "ja_warp_pdf", "ja_wiki", "kaken"}


def sanity_json(work: Path, model: Path, *extra: str):
    result = invoke("sanity", "--model", model, "--data", work / "seq", "--batches", 2, "--batch-size", 4, "--json",
                    *extra)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.output
    return result, json.loads(result.stdout)


# ---------------------------------------------------------------------------------------------- init-model


def test_init_model_declares_its_tokenizer_and_prints_the_parameter_count(work):
    config = json.loads((work / "tiny" / "config.json").read_text())
    assert config[S.TOKENIZER_SHA_KEY] == open_tokenizer(SAMPLE_MODEL).sha256
    assert Path(config[S.TOKENIZER_PATH_KEY]) == SAMPLE_MODEL.resolve()
    assert config["vocab_size"] == N.pad_vocab_size(4000) == 4096
    result = ok("init-model", "--config", "tiny", "--vocab-size", 300, "--out", work / "plain", "--seed", 3)
    assert f"{N.num_parameters(N.get_config('tiny', 300)):,}" in result.output
    assert "none declared" in result.output
    assert S.TOKENIZER_SHA_KEY not in json.loads((work / "plain" / "config.json").read_text())


def test_init_model_refuses_both_sizes_and_an_existing_checkpoint(work):
    result = invoke("init-model", "--config", "tiny", "--vocab-size", 300, "--tokenizer", SAMPLE_MODEL,
                    "--out", work / "both")
    assert result.exit_code == 2 and "not both" in result.output
    result = invoke("init-model", "--config", "tiny", "--tokenizer", SAMPLE_MODEL, "--out", work / "tiny")
    assert result.exit_code == 2 and "already holds a checkpoint" in result.output


# ---------------------------------------------------------------------------------------------- sanity


def test_untrained_model_on_real_rows_scores_ln_v_and_is_a_red_flag(work):
    result, report = sanity_json(work, work / "tiny")
    assert result.exit_code == 1
    assert report["ran_forward"] and report["batches"] == 2 and report["tokens"] == 8 * SEQ_LEN
    overall = report["overall"]
    assert overall["masked_tokens"] > 0
    assert abs(overall["loss"] - math.log(4096)) < 0.02 * math.log(4096)
    assert overall["perplexity"] == pytest.approx(math.exp(overall["loss"]))
    assert set(report["subsets"]) <= SUBSETS and len(report["subsets"]) >= 3
    assert sum(s["masked_tokens"] for s in report["subsets"].values()) == overall["masked_tokens"]
    assert report["tokens_per_second"] > 0
    assert [f["code"] for f in report["red_flags"]] == ["untrained"]
    assert "looks untrained" in report["red_flags"][0]["message"]


def test_untrained_report_in_plain_words(work):
    result = invoke("sanity", "--model", work / "tiny", "--data", work / "seq", "--batches", 1, "--batch-size", 4)
    assert result.exit_code == 1
    out = result.stdout
    assert "looks untrained" in out and "RED FLAGS" in out and "tokens/s" in out and "ln V = 8.318" in out
    assert "the same as the data" in out
    assert any(line.split()[0] in SUBSETS for line in out.splitlines() if line.strip())


@pytest.fixture
def no_forward(monkeypatch):
    """Fail the test if weights are loaded: the mismatches must be caught from config.json and the manifest."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded although the mismatch is visible before the forward")

    monkeypatch.setattr(C, "load_model", refuse)
    monkeypatch.setattr(N, "encode", refuse)


def test_ids_beyond_the_vocabulary_are_caught_before_the_forward(work, no_forward):
    ok("init-model", "--config", "tiny", "--vocab-size", 1000, "--out", work / "small-vocab", "--overwrite")
    result, report = sanity_json(work, work / "small-vocab")
    assert result.exit_code == 1 and not report["ran_forward"]
    assert [f["code"] for f in report["red_flags"]] == ["ids_out_of_vocab"]
    assert "vocab_size is 1,000" in report["red_flags"][0]["message"]
    text = invoke("sanity", "--model", work / "small-vocab", "--data", work / "seq")
    assert text.exit_code == 1 and "ids do not fit the model" in text.stdout and "Traceback" not in text.output


def test_rows_longer_than_the_positions_are_caught_before_the_forward(work, tmp_path, no_forward):
    config = {**N.PRESETS["tiny"], "max_position_embeddings": 128}
    S.init_model(config, tmp_path / "short", tokenizer=SAMPLE_MODEL)
    result, report = sanity_json(work, tmp_path / "short")
    assert result.exit_code == 1 and not report["ran_forward"]
    assert [f["code"] for f in report["red_flags"]] == ["rows_too_long"]
    assert "256" in report["red_flags"][0]["message"] and "128" in report["red_flags"][0]["message"]


def test_a_tokenizer_other_than_the_declared_one_is_caught_before_the_forward(work, tmp_path, no_forward):
    other = other_tokenizer(tmp_path / "other.model")
    ok("init-model", "--config", "tiny", "--tokenizer", other, "--out", tmp_path / "other-model")
    result, report = sanity_json(work, tmp_path / "other-model")
    assert result.exit_code == 1 and not report["ran_forward"]
    assert [f["code"] for f in report["red_flags"]] == ["tokenizer_mismatch"]
    text = invoke("sanity", "--model", tmp_path / "other-model", "--data", work / "seq")
    assert text.exit_code == 1 and "tokenizer mismatch" in text.stdout and "Traceback" not in text.output


def test_tokenizer_option_stands_in_for_an_undeclared_one_and_may_not_contradict_a_declared_one(work, tmp_path,
                                                                                               no_forward):
    other = other_tokenizer(tmp_path / "other.model")
    ok("init-model", "--config", "tiny", "--vocab-size", 4096, "--out", tmp_path / "undeclared")
    result, report = sanity_json(work, tmp_path / "undeclared", "--tokenizer", other)
    assert result.exit_code == 1 and [f["code"] for f in report["red_flags"]] == ["tokenizer_mismatch"]
    assert "--tokenizer" in report["red_flags"][0]["message"]
    result = invoke("sanity", "--model", work / "tiny", "--data", work / "seq", "--tokenizer", other)
    assert result.exit_code == 2 and "not the tokenizer the model declares" in result.output


def test_undeclared_tokenizer_is_a_note_not_a_flag(work):
    ok("init-model", "--config", "tiny", "--vocab-size", 4096, "--out", work / "undeclared", "--overwrite")
    result, report = sanity_json(work, work / "undeclared", "--batches", 1)
    assert [f["code"] for f in report["red_flags"]] == ["untrained"]
    assert any("declares no tokenizer" in n for n in report["notes"])


def test_usage_errors_exit_2_without_a_traceback(work, tmp_path):
    result = invoke("sanity", "--model", tmp_path / "absent", "--data", work / "seq")
    assert result.exit_code == 2 and "does not exist" in result.output
    result = invoke("sanity", "--model", work / "tiny", "--data", work / "docs")
    assert result.exit_code == 2 and "holds document shards; sanity takes the sequence shards" in result.output


def test_per_token_losses_add_up_to_the_model_mlm_loss(work):
    data = S.open_packed(work / "seq")
    rows = S.read_rows(data, 3)
    assert [len(r["input_ids"]) for r in rows] == [SEQ_LEN] * 3
    collator = WholeWordMaskCollator(mask_id=3, pad_id=4, special_ids=range(8), vocab_size=4000, seed=1)
    batch = collator.collate([{k: r[k] for k in ("input_ids", "word_starts", "doc_lengths")} for r in rows])
    model = C.load_model(work / "tiny")
    losses, correct, select = S.token_losses(model, batch)
    reference = N.evaluate_batch(model, batch)
    assert select.sum() == reference.count == len(losses)
    assert losses.sum() == pytest.approx(reference.loss_sum, rel=1e-5)
    assert correct.sum() == reference.correct


def test_loss_flags_thresholds():
    ln_v = math.log(4096)
    assert [f.code for f in S.loss_flags(ln_v * 1.05, 4096)] == ["untrained"]
    assert [f.code for f in S.loss_flags(ln_v * 0.95, 4096)] == ["untrained"]
    assert [f.code for f in S.loss_flags(ln_v * 1.5, 4096)] == ["worse_than_uniform"]
    assert [f.code for f in S.loss_flags(float("nan"), 4096)] == ["loss_not_finite"]
    assert S.loss_flags(2.5, 4096) == []


def test_cli_defaults_match_the_module():
    params = {p.name: p.default for p in cli.sanity.params}
    assert (params["batches"], params["batch_size"]) == (S.DEFAULT_BATCHES, S.DEFAULT_BATCH_SIZE)
