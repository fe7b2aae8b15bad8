"""An output is never silently mixed, replaced or orphaned, and what a run used is recorded so that it resolves
later (#26). Exit statuses are exact; a refused output is left byte for byte as it was."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import big_corpus, freeze_when, held_at_work, run, start_segment
from wwm_prep.core.resources import resource

SAMPLE = resource("sample", "corpus")
SAMPLE_MODEL = resource("sample", "tokenizer", "wwm-prep-sample-unigram.model")


def test_a_relative_tokenizer_is_recorded_so_readers_find_it_from_anywhere(tmp_path: Path) -> None:
    project = tmp_path / "m"
    (project / "tk").mkdir(parents=True)
    shutil.copy(SAMPLE_MODEL, project / "tk" / "sample.model")
    made = subprocess.run([sys.executable, "-m", "wwm_prep", "prepare", str(SAMPLE / "ja" / "kaken"), "--dict", "tiny-ja",
                           "--tokenizer", "tk/sample.model", "--out", "relrun", "--seq-len", "256", "--quiet"],
                          cwd=project, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    documents = json.loads((project / "relrun" / "documents" / "manifest.json").read_text())
    assert documents["config"]["tokenizer"]["path"] == str(project / "tk" / "sample.model")
    code, output = run("inspect", str(project / "relrun" / "sequences"), "--row", "0", "--mask")
    assert code == 0 and "|" in output

    (project / "tk" / "sample.model").rename(project / "tk" / "moved.model")
    code, output = run("inspect", str(project / "relrun" / "sequences"), "--row", "0")
    sha = documents["config"]["tokenizer"]["sha256"]
    assert code == 2 and f"the recorded tokenizer is not here ({project / 'tk' / 'sample.model'})" in output
    assert f"give the model whose sha256 is {sha} with --tokenizer" in output


def test_the_collator_says_no_tokenizer_at_a_path_that_does_not_exist(tmp_path: Path) -> None:
    from wwm_prep import WholeWordMaskCollator

    for missing in (tmp_path / "nope" / "x.model", "tk/llm-jp-tokenizer-100k.ver3.0b1.model", "./tokenizer"):
        with pytest.raises(FileNotFoundError, match=f"no tokenizer at {missing}"):
            WholeWordMaskCollator(str(missing))
    assert WholeWordMaskCollator(str(SAMPLE_MODEL)).options.vocab_size > 0


def test_the_summary_names_what_was_used_and_the_sample_tokenizer_is_only_quiet_on_the_sample(tmp_path: Path) -> None:
    code, output = run("segment", str(SAMPLE / "ja" / "kaken"), "--out", str(tmp_path / "a"), "--dict", "tiny-ja")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    dictionary, tokenizer = manifest["config"]["dictionary"], manifest["config"]["tokenizer"]
    assert code == 0 and "warning" not in output
    assert f"dictionary tiny-ja (sha256 {dictionary['sha256'][:12]}…)" in output
    assert f"tokenizer  {SAMPLE_MODEL} (sha256 {tokenizer['sha256'][:12]}…)" in output
    code, output = run("pack", str(tmp_path / "a"), "--out", str(tmp_path / "seq"), "--seq-len", "256")
    assert code == 0 and f"tokenizer  {SAMPLE_MODEL} (sha256 {tokenizer['sha256'][:12]}…)" in output

    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE / "ja" / "kaken", corpus / "ja" / "kaken")
    code, output = run("segment", str(corpus), "--out", str(tmp_path / "b"), "--dict", "tiny-ja")
    assert code == 0 and "warning: no --tokenizer given, so the bundled sample tokenizer" in output
    assert "--tokenizer llm-jp-tokenizer-100k.ver3.0b1.model" in output
    code, output = run("segment", str(corpus), "--out", str(tmp_path / "c"), "--dict", "tiny-ja",
                       "--tokenizer", str(SAMPLE_MODEL))
    assert code == 0 and "warning" not in output


def test_pack_on_documents_a_segment_run_is_still_writing_says_so(tmp_path: Path) -> None:
    corpus, docs = big_corpus(tmp_path / "corpus"), tmp_path / "docs"
    proc = start_segment(corpus, docs)
    try:
        freeze_when(proc, lambda: bool(held_at_work(docs)))
        code, output = run("pack", str(docs), "--out", str(tmp_path / "seq"), "--seq-len", "256")
        assert code == 2 and f"{docs} is still being written by the run of pid {proc.pid}" in output
    finally:
        proc.kill()
        proc.communicate(timeout=60)
