"""An output is never silently mixed, replaced or orphaned, and what a run used is recorded so that it resolves
later (#26). Exit statuses are exact; a refused output is left byte for byte as it was."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import big_corpus, freeze_when, held_at_work, run, start_segment, tree
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


# ------------------------------------------------------------------ one output, one run: resume, refuse, overwrite


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The bundled sample segmented (tiny-ja) and packed into 256-token rows, and its kaken subset alone as a second
    corpus: outputs that each test copies before it tries a mistake on them."""
    root = tmp_path_factory.mktemp("outputs")
    other = root / "c1"
    shutil.copytree(SAMPLE / "ja" / "kaken", other / "ja" / "kaken")
    assert run("segment", str(SAMPLE), "--out", str(root / "docs"), "--dict", "tiny-ja")[0] == 0
    assert run("pack", str(root / "docs"), "--out", str(root / "seq"), "--seq-len", "256")[0] == 0
    return {"docs": root / "docs", "seq": root / "seq", "c1": other}


def copy(made: dict[str, Path], name: str, to: Path) -> Path:
    shutil.copytree(made[name], to)
    return to


def refused(args: tuple[str, ...], out: Path, *said: str) -> str:
    """Run `wwm-prep ARGS`: it must exit 2 with one line that says each of `said`, and leave `out` as it was."""
    before = tree(out)
    code, output = run(*args)
    assert code == 2 and "Traceback" not in output and all(s in output for s in said), output
    assert tree(out) == before
    return output


def unlisted(out: Path) -> set[str]:
    """Shards in `out` that its manifest does not list."""
    manifest = json.loads((out / "manifest.json").read_text())
    listed = ({u["shard"] for u in manifest["units"].values()} if manifest["kind"] == "documents"
              else {s["file"] for s in manifest["shards"]})
    return {p.name for p in out.glob("*.arrow")} - listed


def test_1_segment_into_a_pack_output_or_a_foreign_directory_is_refused(made: dict[str, Path], tmp_path: Path) -> None:
    seq = copy(made, "seq", tmp_path / "o_seq")
    segment = ("segment", str(SAMPLE), "--dict", "tiny-ja", "--out", str(seq))
    refused(segment, seq, "holds the output of `wwm-prep pack`", "stage: pack → segment", "--overwrite")
    code, output = run(*segment, "--overwrite")  # replaced whole: nothing of the pack is left beside it
    assert code == 0 and "--overwrite: removed" in output
    assert not list(seq.glob("sequences-*")) and not unlisted(seq)
    assert json.loads((seq / "manifest.json").read_text())["kind"] == "documents"

    mydata = tmp_path / "mydata"
    mydata.mkdir()
    (mydata / "manifest.json").write_text('{"my": "own"}')
    for more in ((), ("--overwrite",)):
        refused(("segment", str(SAMPLE), "--dict", "tiny-ja", "--out", str(mydata), *more), mydata,
                "holds files wwm-prep did not write (manifest.json)")
    (mydata / "manifest.json").unlink()
    (mydata / "notes.txt").write_text("mine")
    output = refused(("segment", str(SAMPLE), "--dict", "tiny-ja", "--out", str(mydata), "--overwrite"), mydata,
                     "notes.txt")
    assert "--overwrite never empties a directory wwm-prep did not write" in output


def test_2_segment_of_another_corpus_is_refused_and_overwrite_leaves_no_stale_shard(made: dict[str, Path],
                                                                                     tmp_path: Path) -> None:
    docs = copy(made, "docs", tmp_path / "o_docs")
    c1 = ("segment", str(made["c1"]), "--dict", "tiny-ja", "--out", str(docs))
    refused(c1, docs, "was made from other inputs", f"not among this run's: {SAMPLE}")
    refused((*c1, "--vibrato-defaults"), docs, "from other inputs and with another configuration",
            "ignore_space: True → False")
    code, output = run(*c1, "--vibrato-defaults", "--overwrite")
    assert code == 0 and "--overwrite: removed" in output
    manifest = json.loads((docs / "manifest.json").read_text())
    assert sorted(u["source"] for u in manifest["units"].values()) == ["ja/kaken/train_0.jsonl.gz"]
    assert not unlisted(docs) and sorted(p.name for p in docs.glob("*.arrow")) == ["kaken--train_0.arrow"]
    assert run("stats", str(docs))[0] == 0


def test_2_adding_subsets_is_supported_and_dropping_one_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "docs"
    some = ("segment", str(SAMPLE), "--dict", "tiny-ja", "--out", str(out), "--subsets")
    assert run(*some, "ja_wiki")[0] == 0
    code, output = run(*some, "ja_wiki,kaken")
    assert code == 0 and "skip ja/ja_wiki/train_0.jsonl.gz: already done" in output
    assert "adding 1 input file(s)" in output
    manifest = json.loads((out / "manifest.json").read_text())
    assert {u["subset"] for u in manifest["units"].values()} == {"ja_wiki", "kaken"} and manifest["complete"]
    refused((*some, "ja_wiki"), out, "not among this run's:", "kaken", "--overwrite")


def test_3_pack_of_other_documents_or_options_is_refused_and_overwrite_replaces_it(made: dict[str, Path],
                                                                                   tmp_path: Path) -> None:
    seq = copy(made, "seq", tmp_path / "seqX")
    other_docs = tmp_path / "c1.docs"
    assert run("segment", str(made["c1"]), "--dict", "tiny-ja", "--out", str(other_docs))[0] == 0
    refused(("pack", str(other_docs), "--out", str(seq), "--seq-len", "256"), seq, "from other inputs",
            f"{made['docs']} → {other_docs}")
    refused(("pack", str(made["docs"]), "--out", str(seq), "--seq-len", "128"), seq, "another configuration",
            "seq_len: 256 → 128", "--overwrite")
    code, output = run("pack", str(made["docs"]), "--out", str(seq), "--seq-len", "256")
    assert code == 0 and "already done" in output  # the same pack resumes
    code, output = run("pack", str(other_docs), "--out", str(seq), "--seq-len", "128", "--overwrite")
    assert code == 0 and not unlisted(seq)
    assert json.loads((seq / "manifest.json").read_text())["config"]["seq_len"] == 128


def test_5_errors_create_no_output_directory(made: dict[str, Path], tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    for args in (("segment", str(SAMPLE), "--tokenizer", str(notes)), ("segment", str(tmp_path / "missing")),
                 ("segment", str(SAMPLE), "--dict", "no-such-dictionary"),
                 ("pack", str(tmp_path / "missing"), "--seq-len", "256"),
                 ("pack", str(made["docs"]), "--seq-len", "256", "--subset-weights", "nosuch=2")):
        code, output = run(*args, "--out", str(tmp_path / "out"))
        assert code == 2 and not (tmp_path / "out").exists(), output


def test_5_a_resumed_run_s_summary_says_what_it_did_itself(made: dict[str, Path], tmp_path: Path) -> None:
    docs = copy(made, "docs", tmp_path / "docs")
    manifest = json.loads((docs / "manifest.json").read_text())
    (docs / "kaken--train_0.arrow").unlink()
    code, output = run("segment", str(SAMPLE), "--dict", "tiny-ja", "--out", str(docs))
    kaken = manifest["units"]["kaken--train_0"]
    assert code == 0 and (f"this run did 1 of the 5 chunks above: {kaken['documents']:,} documents, "
                          f"{kaken['tokens']:,} tokens") in output


def test_an_output_written_before_output_json_is_judged_by_its_manifest(made: dict[str, Path], tmp_path: Path) -> None:
    docs = copy(made, "docs", tmp_path / "docs")
    (docs / "output.json").unlink()  # as an earlier version left it
    refused(("segment", str(SAMPLE), "--dict", "tiny-ja", "--out", str(docs), "--vibrato-defaults"), docs,
            "with another configuration", "ignore_space: True → False")
    code, output = run("segment", str(SAMPLE), "--dict", "tiny-ja", "--out", str(docs))
    assert code == 0 and output.count("already done") == 5
    assert json.loads((docs / "output.json").read_text())["stage"] == "segment"
    seq = copy(made, "seq", tmp_path / "seq")
    (seq / "output.json").unlink()
    refused(("segment", str(SAMPLE), "--dict", "tiny-ja", "--out", str(seq)), seq, "stage: pack → segment")
