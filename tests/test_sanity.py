"""`init-model`, `sanity` and `fill-mask` end to end on the bundled sample (tiny-ja dictionary, 256-token rows) and
tiny models: an untrained model and each mismatch are red flags (exit 1); the mismatches are caught before the
forward. A trained model cannot be tested here (no checkpoint can be downloaded)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from wwm_prep import cli
from wwm_prep.check import network as M
from wwm_prep.check import sanity as S
from wwm_prep.train.collator import WholeWordMaskCollator
from wwm_prep.text.tokenizer import DEFAULT_TOKENIZER

REPO = Path(__file__).resolve().parents[1]
SAMPLE_MODEL = REPO.joinpath(*DEFAULT_TOKENIZER)
SUBSETS = {"ja_cc", "ja_warp_html", "ja_warp_pdf", "ja_wiki", "kaken"}
SEQ_LEN = 256


def run(*args: str):
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def ok(*args: str):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The bundled corpus segmented (tiny-ja, bundled tokenizer) and packed to 256 tokens, and a tiny model."""
    root = tmp_path_factory.mktemp("sanity")
    ok("segment", REPO / "sample" / "corpus", "--dict", "tiny-ja", "--out", root / "docs")
    ok("pack", root / "docs", "--seq-len", SEQ_LEN, "--out", root / "seq")
    ok("init-model", "--config", "tiny", "--tokenizer", SAMPLE_MODEL, "--out", root / "tiny")
    return root


def sanity_json(work: Path, model: Path, *extra: str):
    result = run("sanity", "--model", model, "--data", work / "seq", "--batches", 2, "--batch-size", 4, "--json",
                 *extra)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.output
    return result, json.loads(result.stdout)


def other_tokenizer(path: Path) -> Path:
    """A valid SentencePiece model that is not the bundled one (same pieces, another file)."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(SAMPLE_MODEL.read_bytes())
    proto.trainer_spec.model_prefix = "another-tokenizer"
    path.write_bytes(proto.SerializeToString())
    return path


# ---------------------------------------------------------------------------------------------- init-model


def test_init_model_declares_its_tokenizer_and_prints_the_parameter_count(work):
    config = json.loads((work / "tiny" / "config.json").read_text())
    assert config[S.TOKENIZER_SHA_KEY] == S.read_tokenizer_file(SAMPLE_MODEL).sha256
    assert Path(config[S.TOKENIZER_PATH_KEY]) == SAMPLE_MODEL.resolve()
    assert config["vocab_size"] == M.pad_vocab_size(4000) == 4096
    result = ok("init-model", "--config", "tiny", "--vocab-size", 300, "--out", work / "plain", "--seed", 3)
    assert f"{M.num_parameters(M.get_config('tiny', 300)):,}" in result.output
    assert "none declared" in result.output
    assert S.TOKENIZER_SHA_KEY not in json.loads((work / "plain" / "config.json").read_text())


def test_init_model_refuses_both_sizes_and_an_existing_checkpoint(work):
    result = run("init-model", "--config", "tiny", "--vocab-size", 300, "--tokenizer", SAMPLE_MODEL,
                 "--out", work / "both")
    assert result.exit_code == 2 and "not both" in result.output
    result = run("init-model", "--config", "tiny", "--tokenizer", SAMPLE_MODEL, "--out", work / "tiny")
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
    result = run("sanity", "--model", work / "tiny", "--data", work / "seq", "--batches", 1, "--batch-size", 4)
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

    monkeypatch.setattr(M, "load_model", refuse)
    monkeypatch.setattr(M, "encode", refuse)


def test_ids_beyond_the_vocabulary_are_caught_before_the_forward(work, no_forward):
    ok("init-model", "--config", "tiny", "--vocab-size", 1000, "--out", work / "small-vocab", "--overwrite")
    result, report = sanity_json(work, work / "small-vocab")
    assert result.exit_code == 1 and not report["ran_forward"]
    assert [f["code"] for f in report["red_flags"]] == ["ids_out_of_vocab"]
    assert "vocab_size is 1,000" in report["red_flags"][0]["message"]
    text = run("sanity", "--model", work / "small-vocab", "--data", work / "seq")
    assert text.exit_code == 1 and "ids do not fit the model" in text.stdout and "Traceback" not in text.output


def test_rows_longer_than_the_positions_are_caught_before_the_forward(work, tmp_path, no_forward):
    config = {**M.PRESETS["tiny"], "max_position_embeddings": 128}
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
    text = run("sanity", "--model", tmp_path / "other-model", "--data", work / "seq")
    assert text.exit_code == 1 and "tokenizer mismatch" in text.stdout and "Traceback" not in text.output


def test_tokenizer_option_stands_in_for_an_undeclared_one_and_may_not_contradict_a_declared_one(work, tmp_path,
                                                                                               no_forward):
    other = other_tokenizer(tmp_path / "other.model")
    ok("init-model", "--config", "tiny", "--vocab-size", 4096, "--out", tmp_path / "undeclared")
    result, report = sanity_json(work, tmp_path / "undeclared", "--tokenizer", other)
    assert result.exit_code == 1 and [f["code"] for f in report["red_flags"]] == ["tokenizer_mismatch"]
    assert "--tokenizer" in report["red_flags"][0]["message"]
    result = run("sanity", "--model", work / "tiny", "--data", work / "seq", "--tokenizer", other)
    assert result.exit_code == 2 and "not the tokenizer the model declares" in result.output


def test_undeclared_tokenizer_is_a_note_not_a_flag(work):
    ok("init-model", "--config", "tiny", "--vocab-size", 4096, "--out", work / "undeclared", "--overwrite")
    result, report = sanity_json(work, work / "undeclared", "--batches", 1)
    assert [f["code"] for f in report["red_flags"]] == ["untrained"]
    assert any("declares no tokenizer" in n for n in report["notes"])


def test_usage_errors_exit_2_without_a_traceback(work, tmp_path):
    result = run("sanity", "--model", tmp_path / "absent", "--data", work / "seq")
    assert result.exit_code == 2 and "does not exist" in result.output
    result = run("sanity", "--model", work / "tiny", "--data", work / "docs")
    assert result.exit_code == 2 and "not a sequence manifest" in result.output


def test_per_token_losses_add_up_to_the_model_mlm_loss(work):
    data = S.open_packed(work / "seq")
    rows = S.read_rows(data, 3)
    assert [len(r["input_ids"]) for r in rows] == [SEQ_LEN] * 3
    collator = WholeWordMaskCollator(mask_id=3, pad_id=4, special_ids=range(8), vocab_size=4000, seed=1)
    batch = collator.collate([{k: r[k] for k in ("input_ids", "word_starts", "doc_lengths")} for r in rows])
    model = M.load_model(work / "tiny")
    losses, correct, select = S.token_losses(model, batch)
    reference = M.evaluate_batch(model, batch)
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


# ---------------------------------------------------------------------------------------------- fill-mask


def test_fill_mask_prints_k_candidates_per_masked_position(work):
    word_tokens = len(S._no_dummy_prefix(SAMPLE_MODEL).encode("研究者"))
    assert word_tokens == 2  # 研究 + 者: a whole word of two tokens
    text = "東北大学の<MASK>{研究者}が<MASK>する"
    result = ok("fill-mask", "--model", work / "tiny", "--top-k", 3, "--json", text)
    masks = json.loads(result.stdout)["masks"]
    assert len(masks) == word_tokens + 1
    assert all(len(m["candidates"]) == 3 for m in masks)
    assert all(0 <= c["probability"] <= 1 for m in masks for c in m["candidates"])
    out = ok("fill-mask", "--model", work / "tiny", "--top-k", 4, text).stdout
    candidate_lines = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(candidate_lines) == 4 * (word_tokens + 1)
    assert "研究者, token 2 of 2" in out and out.startswith("input: <CLS>")


def test_fill_mask_needs_a_tokenizer_it_can_trust(work, tmp_path):
    ok("init-model", "--config", "tiny", "--vocab-size", 4096, "--out", tmp_path / "undeclared")
    result = run("fill-mask", "--model", tmp_path / "undeclared", "東京<MASK>")
    assert result.exit_code == 2 and "give --tokenizer" in result.output
    ok("fill-mask", "--model", tmp_path / "undeclared", "--tokenizer", SAMPLE_MODEL, "--top-k", 2, "東京<MASK>")
    other = other_tokenizer(tmp_path / "other.model")
    result = run("fill-mask", "--model", work / "tiny", "--tokenizer", other, "東京<MASK>")
    assert result.exit_code == 2 and "not the tokenizer the model declares" in result.output
    result = run("fill-mask", "--model", work / "tiny", "no mark here")
    assert result.exit_code == 2 and "no <MASK>" in result.output


def test_masked_text_is_tokenized_as_the_whole_text_would_be():
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(SAMPLE_MODEL))
    masked = S.encode_masked("東北大学で研究する<MASK>", SAMPLE_MODEL)
    assert masked.ids[0] == 5 and masked.ids[-1] == 6  # <CLS> … <SEP>, as in packed rows
    assert masked.ids[1:-2] == sp.encode("東北大学で研究する") and masked.ids[-2] == 3
    # Text after a mark continues the line: no dummy-prefix ▁ in front of it.
    after = S.encode_masked("<MASK>研究する", SAMPLE_MODEL)
    assert not sp.id_to_piece(after.ids[2]).startswith("\u2581")
    # <MASK>{word}: every token of the word, as the whole text would tokenize it.
    whole_word = S.encode_masked("東北大学の<MASK>{研究者}", SAMPLE_MODEL)
    unmasked = sp.encode("東北大学の研究者")
    assert len(whole_word.ids) == len(unmasked) + 2 and whole_word.positions == [len(unmasked) - 1, len(unmasked)]
    assert all(np.asarray(whole_word.ids)[whole_word.positions] == 3)
    assert [sp.id_to_piece(i) for i in unmasked[-2:]] == ["研究", "者"]
    assert whole_word.ids[1:-3] == unmasked[:-2]
