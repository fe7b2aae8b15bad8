"""What a first-time user trips over (#17): each mistake gets a clear answer with exact exit codes, no traceback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run, write_jsonl_gz
from wwm_prep.core.resources import resource

SAMPLE = resource("sample", "corpus")


def test_a_misspelled_or_absent_subset_is_an_error_that_lists_the_subsets_there(tmp_path: Path) -> None:
    code, output = run("segment", str(SAMPLE), "--out", str(tmp_path / "a"), "--dict", "tiny-ja",
                       "--subsets", "ja-wiki,ja_cc")
    assert code == 2 and "--subsets names ja-wiki" in output and "ja_wiki" in output and "Traceback" not in output
    assert not (tmp_path / "a").exists()  # answered before anything was written
    code, output = run("segment", str(SAMPLE / "ja" / "ja_wiki"), "--out", str(tmp_path / "b"), "--dict", "tiny-ja",
                       "--subsets", "kaken")
    assert code == 2 and "the subsets there are: " in output and "kaken" in output
    code, output = run("segment", str(SAMPLE), "--out", str(tmp_path / "c"), "--dict", "tiny-ja",
                       "--subsets", "ja_wiki, kaken,")  # a trailing comma, a space: the two subsets
    assert code == 0 and json.loads((tmp_path / "c" / "manifest.json").read_text())["complete"]
    assert {u.split("--")[0] for u in json.loads((tmp_path / "c" / "manifest.json").read_text())["units"]} == {
        "ja_wiki", "kaken"}
    code, output = run("segment", str(SAMPLE), "--out", str(tmp_path / "d"), "--dict", "tiny-ja", "--subsets", ",")
    assert code == 2 and "names no subset" in output and not (tmp_path / "d").exists()


def test_a_run_that_rejects_every_record_exits_1_and_says_why(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus" / "ja" / "ja_wiki"
    write_jsonl_gz(corpus / "train_0.jsonl.gz", [json.dumps({"content": t}, ensure_ascii=False).encode()
                                                 for t in ("本文の欄の名前が違う。", "二つ目の記録。")])
    docs = tmp_path / "docs"
    code, output = run("segment", str(tmp_path / "corpus"), "--out", str(docs), "--dict", "tiny-ja")
    assert code == 1 and "Traceback" not in output
    assert "rejected records: no 'text' field (2)" in output
    assert "every one of the 2 records was rejected (most often: no 'text' field)" in output
    assert "next:" not in output
    code, output = run("pack", str(docs), "--out", str(tmp_path / "seq"), "--seq-len", "256")
    assert code == 2 and "segment rejected all 2 records" in output


def test_a_finished_run_says_what_to_run_next_unless_quiet(tmp_path: Path) -> None:
    docs, seq = tmp_path / "docs", tmp_path / "seq"
    code, output = run("segment", str(SAMPLE / "ja" / "kaken"), "--out", str(docs), "--dict", "tiny-ja")
    assert code == 0 and f"wwm-prep pack {docs} --out SEQUENCES --seq-len 8192" in output
    code, output = run("pack", str(docs), "--out", str(seq), "--seq-len", "256")
    assert code == 0 and f"wwm-prep inspect {seq} --row 0 --mask" in output
    code, output = run("pack", str(docs), "--out", str(seq), "--seq-len", "256", "--quiet")
    assert code == 0 and "next:" not in output


def test_mistaken_options_are_answered_before_the_dictionary_loads(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from wwm_prep.text import dictionary

    kaken = str(SAMPLE / "ja" / "kaken")
    made = tmp_path / "made"
    assert run("segment", kaken, "--out", str(made), "--dict", "tiny-ja")[0] == 0

    def never(*args: object) -> None:
        raise AssertionError("the dictionary loader was called")

    monkeypatch.setattr(dictionary, "_compile", never)
    monkeypatch.setattr(dictionary, "_LOADED", {})
    not_a_model = tmp_path / "tokenizer.model"
    not_a_model.write_text("not a SentencePiece model")
    other_model = str(resource("sample", "tokenizer", "wwm-prep-sample-unigram.model"))
    cases = [
        (["--tokenizer", str(not_a_model), "--dict", "tiny-ja"], "tokenizer.model"),
        (["--tokenizer", str(tmp_path / "absent.model"), "--dict", "tiny-ja"], "absent.model"),
        (["--dict", "unidic-lit"], "did you mean unidic-lite"),
        (["--dict", "tiny-ja", "--subsets", "kaken,ja_wikii"], "ja_wikii"),
    ]
    for args, named in cases:
        code, output = run("segment", kaken, "--out", str(tmp_path / "new"), *args)  # `never` was not called
        assert code == 2 and named in output and "Traceback" not in output, (args, output)
    # the same tokenizer named by its path is the same configuration; a changed setting is named, old → new
    code, output = run("segment", kaken, "--out", str(made), "--dict", "tiny-ja", "--tokenizer", other_model,
                       "--split-lines")
    assert code == 2 and "(split_lines: False → True)" in output and "another configuration" in output


def test_plot_paths_are_checked_before_counting_and_the_real_path_is_printed(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    docs = tmp_path / "docs"
    assert run("segment", str(SAMPLE / "ja" / "kaken"), "--out", str(docs), "--dict", "tiny-ja")[0] == 0
    code, output = run("stats", str(docs), "--plot", str(tmp_path / "out.txt"))
    assert code == 2 and ".png, .svg, .pdf" in output and "Traceback" not in output
    (tmp_path / "file").write_text("x")
    code, output = run("stats", str(docs), "--plot", str(tmp_path / "file" / "x.png"))
    assert code == 2 and "is a file, not a directory" in output and "Traceback" not in output
    code, output = run("stats", str(docs), "--plot", str(tmp_path / "myplot"))
    assert code == 0 and f"plot → {tmp_path / 'myplot.png'}" in output and (tmp_path / "myplot.png").is_file()


def test_not_found_says_not_found_and_a_raw_corpus_points_to_segment(tmp_path: Path) -> None:
    code, output = run("stats", str(tmp_path / "sequnces"))
    assert code == 2 and "does not exist" in output
    code, output = run("pack", str(tmp_path / "documets"), "--out", str(tmp_path / "o"), "--seq-len", "256")
    assert code == 2 and "does not exist" in output
    code, output = run("pack", str(SAMPLE), "--out", str(tmp_path / "o"), "--seq-len", "256")
    assert code == 2 and "holds corpus files, not shards" in output and "wwm-prep prepare" in output


def test_a_file_named_zst_that_is_not_zstd_is_named_once_as_such(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus" / "ja" / "ja_wiki"
    corpus.mkdir(parents=True)
    (corpus / "train_0.jsonl.zst").write_bytes(b'{"text": "plain"}\n')
    code, output = run("segment", str(tmp_path / "corpus"), "--out", str(tmp_path / "docs"), "--dict", "tiny-ja")
    assert code == 1 and output.count("not a zstd file, although named .zst") == 1 and "Traceback" not in output


def test_waits_say_what_they_wait_for(tmp_path: Path) -> None:
    import io

    from wwm_prep.pipeline.progress import Elapsed

    stream = io.StringIO()
    with Elapsed("loading dictionary tiny-ja (mecab-text)", stream=stream):
        pass
    assert re.fullmatch(r"loading dictionary tiny-ja \(mecab-text\)… done in \d+\.\d s\n", stream.getvalue())
    code, output = run("segment", str(SAMPLE / "ja" / "kaken"), "--out", str(tmp_path / "d"), "--dict", "tiny-ja")
    assert code == 0 and "loading dictionary tiny-ja (mecab-text)… done in" in output
    code, output = run("dict", "info", "tiny-ja")
    assert code == 0 and output.startswith("loading tiny-ja to measure its load time and memory…")


def test_fill_mask_columns_align_with_wide_characters_and_sanity_names_only_possible_causes() -> None:
    from wwm_prep.check.fill_mask import format_fill_mask
    from wwm_prep.check.sanity import loss_flags

    result = {"tokens": ["東北", "<MASK>"], "masks": [{"label": "mask 1", "candidates": [
        {"piece": "大学", "probability": 0.5}, {"piece": "ab", "probability": 0.25}]}]}
    first, second = format_fill_mask(result).splitlines()[2:]
    assert first.index("0.5") + 2 == second.index("0.25")  # the same column in display cells: 大学 takes four
    import math

    untrained = math.log(4096)
    assert "another tokenizer" in loss_flags(untrained, 4096)[0].message
    assert "another tokenizer" not in loss_flags(untrained, 4096, same_tokenizer=True)[0].message


def test_the_row_fill_axis_spans_the_bulk_of_rows_and_the_few_emptiest_are_counted_in_its_first_bar() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from wwm_prep.view.hist import Hist
    from wwm_prep.view.plot import _fill_panel
    from wwm_prep.view.stats import Packing

    seq_len = 8192
    fills = np.concatenate([np.random.default_rng(0).integers(int(0.99 * seq_len), seq_len + 1, 679), [7526]])
    packing = Packing(seq_len=seq_len, rows=len(fills), row_fill=Hist())
    packing.row_fill.add_counts(np.bincount(fills, minlength=seq_len + 1))
    fig, ax = plt.subplots()
    _fill_panel(ax, {"totals": {"efficiency": fills.sum() / (len(fills) * seq_len)}}, packing, seq_len)
    assert ax.get_xlim()[0] > 98.5  # the one 91.9 % row no longer stretches the axis down to 92 %
    assert sum(bar.get_height() for bar in ax.patches) == len(fills)  # every row is in a bar
    (note,) = [t.get_text() for t in ax.texts]
    assert "the first bar holds the 1 row below" in note and "the emptiest: 91.9 %" in note
    plt.close(fig)
