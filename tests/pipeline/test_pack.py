"""Tests of the `pack` stage: conservation, efficiency and determinism on real data (../shared), the cutting,
weighting and packing rules on small hand-made document shards, and the command line."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from tests.conftest import tree
from wwm_prep import cli
from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.files import sha256_file
from wwm_prep.pipeline import strategies as strategy_package
from wwm_prep.pipeline.config import PackConfig, parse_subset_weights
from wwm_prep.pipeline.pack import run_pack
from wwm_prep.pipeline.packing import load_sentence_ends
from wwm_prep.pipeline.strategies.base import strategies
from wwm_prep.core.manifest import DocumentConfig, DocumentManifest, TokenizerRecord, schema_ref
from wwm_prep.core.shards import ShardWriter, load_schema, read_batches
from wwm_prep.text.tokenizer import DEFAULT_TOKENIZER, load_tokenizer

REPO = Path(__file__).resolve().parents[2]
SAMPLE_MODEL = REPO.joinpath(*DEFAULT_TOKENIZER)


# ---------------------------------------------------------------------------------------------- helpers


def read_documents(docs_dir: Path) -> dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]]:
    """(subset, source, line) → (ids, word_starts) of every document in a document directory."""
    docs = {}
    for shard in sorted(docs_dir.glob("*.arrow")):
        for batch in read_batches(shard, load_schema("document")):
            ids, ws = batch.column("input_ids"), batch.column("word_starts")
            off = ids.offsets.to_numpy() - ids.offsets[0].as_py()
            flat_ids, flat_ws = ids.flatten().to_numpy(), ws.flatten().to_numpy()
            for i, (subset, source, line) in enumerate(zip(batch.column("subset").to_pylist(),
                                                           batch.column("source").to_pylist(),
                                                           batch.column("line").to_pylist())):
                docs[(subset, source, line)] = (flat_ids[off[i] : off[i + 1]], flat_ws[off[i] : off[i + 1]])
    return docs


def read_rows(out_dir: Path) -> Iterator[tuple[np.ndarray, np.ndarray, list[int], list[str]]]:
    """(input_ids, word_starts, doc_lengths, doc_sources) of every row, shard by shard in name order."""
    for shard in sorted(out_dir.glob("*.arrow")):
        for batch in read_batches(shard, load_schema("sequence")):
            ids = batch.column("input_ids").flatten().to_numpy()
            ws = batch.column("word_starts").flatten().to_numpy()
            n = batch.num_rows
            ids, ws = ids.reshape(n, -1), ws.reshape(n, -1)
            yield from zip(ids, ws, batch.column("doc_lengths").to_pylist(), batch.column("doc_sources").to_pylist())


def parse_source(label: str) -> tuple[tuple[str, str, int, int], int, int]:
    """`subset:source:line:k/n[@copy]` → ((subset, source, line, copy), k, n)."""
    head, line, piece = label.rsplit(":", 2)
    subset, source = head.split(":", 1)
    piece, _, copy = piece.partition("@")
    k, n = piece.split("/")
    return (subset, source, int(line), int(copy or 0)), int(k), int(n)


def check_conservation(docs_dir: Path, out_dir: Path) -> dict[str, object]:
    """Every document token appears exactly once, in order within its piece, every row is exactly seq_len,
    specials and padding are where doc_lengths says, and pieces start at group starts. Returns the manifest."""
    manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    n, sp = manifest["config"]["seq_len"], manifest["config"]["tokenizer"]["special_ids"]
    pieces: dict[tuple[str, str, int, int], dict[int, tuple[np.ndarray, np.ndarray, int]]] = defaultdict(dict)
    rows = pads = 0
    for ids, ws, lengths, sources in read_rows(out_dir):
        rows += 1
        assert len(ids) == n and len(lengths) == len(sources) and all(length >= 3 for length in lengths)
        at = 0
        for length, label in zip(lengths, sources):
            assert ids[at] == sp["cls"] and ids[at + length - 1] == sp["sep"]
            assert ws[at] == 0 and ws[at + length - 1] == 0 and ws[at + 1] == 1
            key, k, of = parse_source(label)
            assert k not in pieces[key], f"piece {label} packed twice"
            pieces[key][k] = (ids[at + 1 : at + length - 1], ws[at + 1 : at + length - 1], of)
            at += length
        assert (ids[at:] == sp["pad"]).all() and (ws[at:] == 0).all()
        pads += n - at
    assert rows == manifest["totals"]["rows"] and pads == manifest["totals"]["pad_tokens"]

    docs = read_documents(docs_dir)
    seen = {key[:3] for key in pieces}
    assert seen == set(docs), "documents missing from, or foreign to, the packed output"
    splits = manifest["totals"]["group_splits"]
    for key, by_k in pieces.items():
        doc_ids, doc_ws = docs[key[:3]]
        of = next(iter(by_k.values()))[2]
        assert sorted(by_k) == list(range(1, of + 1))
        assert np.array_equal(np.concatenate([by_k[k][0] for k in sorted(by_k)]), doc_ids)
        starts = np.cumsum([0] + [len(by_k[k][0]) for k in sorted(by_k)])[:-1]
        if not splits:  # no word group crosses a piece boundary, so none crosses a row
            assert (doc_ws[starts] == 1).all()
            assert np.array_equal(np.concatenate([by_k[k][1] for k in sorted(by_k)]), doc_ws)
    return manifest


def efficiency_of(out_dir: Path) -> float:
    filled = total = 0
    for ids, _, lengths, _ in read_rows(out_dir):
        filled += sum(lengths)
        total += len(ids)
    return filled / total


def write_documents(root: Path, subsets: dict[str, list[tuple[list[int], list[int]]]], *,
                    tokenizer_path: str | None = None, special_ids: dict[str, int] | None = None) -> Path:
    """A document directory as `segment` leaves it, from hand-made ids and word starts (no vibrato needed)."""
    tok = load_tokenizer(SAMPLE_MODEL)
    root.mkdir(parents=True)
    units = {}
    for subset, docs in subsets.items():
        unit, source = f"{subset}--train_0", f"ja/{subset}/train_0.jsonl.gz"
        with ShardWriter(root / f"{unit}.arrow", load_schema("document")) as writer:
            writer.write({
                "input_ids": pa.array([d[0] for d in docs], type=pa.list_(pa.int32())),
                "word_starts": pa.array([d[1] for d in docs], type=pa.list_(pa.uint8())),
                "subset": pa.array([subset] * len(docs)),
                "source": pa.array([source] * len(docs)),
                "line": pa.array(range(1, len(docs) + 1), type=pa.int64()),
                "num_chars": pa.array([len(d[0]) for d in docs], type=pa.int32()),
                "num_words": pa.array([sum(d[1]) for d in docs], type=pa.int32()),
            })
            digest = writer.close()
        units[unit] = {"shard": f"{unit}.arrow", "sha256": digest, "subset": subset, "source": source,
                       "documents": len(docs), "tokens": sum(len(d[0]) for d in docs)}
    schema = load_schema("document")
    record = TokenizerRecord(tok.sha256, tok.special_ids if special_ids is None else special_ids,
                             tokenizer_path or str(SAMPLE_MODEL), tok.vocab_size)
    hand_made = {"name": "hand-made", "sha256": "0" * 64, "ignore_space": True, "max_grouping_len": 24}
    DocumentManifest(DocumentConfig(schema_ref(schema.name, schema.version), hand_made, record), inputs=[],
                     units=units, totals={}).write(root)
    return root


@pytest.fixture(scope="module")
def sentence_ends():
    return load_sentence_ends(SAMPLE_MODEL)


def test_sentence_end_tables_are_kept_by_the_model_s_checksum_and_remade_when_damaged(tmp_path: Path,
                                                                                     sentence_ends) -> None:
    made = load_sentence_ends(SAMPLE_MODEL, tmp_path)
    (kept,) = (tmp_path / "sentence-ends").glob("*.npz")
    assert kept.stem == sha256_file(SAMPLE_MODEL)
    again = load_sentence_ends(SAMPLE_MODEL, tmp_path)
    for tables in (made, again):
        assert np.array_equal(tables.ends, sentence_ends.ends) and np.array_equal(tables.newline, sentence_ends.newline)
    kept.write_bytes(b"not an npz")
    remade = load_sentence_ends(SAMPLE_MODEL, tmp_path)
    assert np.array_equal(remade.ends, sentence_ends.ends)
    assert np.load(kept)["ends"].shape == sentence_ends.ends.shape  # and written again whole


@pytest.fixture(scope="module")
def plain(sentence_ends) -> int:
    """An ordinary token: no sentence end, no newline."""
    ordinary = ~sentence_ends.ends & ~sentence_ends.newline
    return int(np.flatnonzero(ordinary[300:])[0]) + 300


def doc(n: int, plain: int, ws: list[int] | None = None) -> tuple[list[int], list[int]]:
    return [plain] * n, ws if ws is not None else [1] * n


# ---------------------------------------------------------------------------------------------- real data


@pytest.mark.shared
@pytest.mark.parametrize("seq_len,strategy", [(8192, "best-fit"), (4096, "best-fit"), (4096, "greedy")])
def test_every_token_once_in_order_no_group_split(ja_docs: Path, ja_pack, seq_len: int, strategy: str) -> None:
    manifest = check_conservation(ja_docs, ja_pack(seq_len, strategy))
    totals = manifest["totals"]
    assert totals["group_splits"] == 0 and totals["cut_documents"] > 0
    assert totals["cuts"] == totals["pieces"] - totals["documents"]
    assert totals["sentence_cuts"] > 0.9 * totals["cuts"]  # real text: a sentence end is nearly always close
    assert manifest["config"]["sentence_ends"]["used"]


@pytest.mark.shared
@pytest.mark.parametrize("seq_len", [8192, 4096])
def test_best_fit_fills_99_percent(ja_pack, seq_len: int) -> None:
    best, naive = ja_pack(seq_len), ja_pack(seq_len, "greedy")
    best_eff = json.loads((best / "manifest.json").read_text())["totals"]["efficiency"]
    greedy_eff = json.loads((naive / "manifest.json").read_text())["totals"]["efficiency"]
    print(f"\nseq_len {seq_len}: best-fit {best_eff:.4%}, greedy {greedy_eff:.4%}")
    assert best_eff >= 0.99
    assert best_eff > greedy_eff
    assert best_eff == pytest.approx(efficiency_of(best), abs=1e-6)


@pytest.mark.shared
def test_same_inputs_and_seed_give_identical_shards(ja_docs: Path, ja_pack, tmp_path: Path) -> None:
    first = ja_pack(4096, shard_rows=500)
    run_pack(ja_docs, tmp_path / "again", PackConfig(seq_len=4096, shard_rows=500), quiet=True)
    run_pack(ja_docs, tmp_path / "seed1", PackConfig(seq_len=4096, shard_rows=500, seed=1), quiet=True)
    names = sorted(p.name for p in first.glob("*.arrow"))
    assert len(names) == 3 and names == sorted(p.name for p in (tmp_path / "again").glob("*.arrow"))
    for name in names:
        assert (first / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    assert any((first / name).read_bytes() != (tmp_path / "seed1" / name).read_bytes() for name in names)


@pytest.mark.shared
def test_every_shard_mixes_subsets(ja_pack) -> None:
    out = ja_pack(4096, shard_rows=200)
    shards = sorted(out.glob("*.arrow"))
    assert len(shards) == 7
    for shard in shards:
        subsets = {label.split(":", 1)[0] for batch in read_batches(shard, load_schema("sequence"))
                   for labels in batch.column("doc_sources").to_pylist() for label in labels}
        assert subsets == {"ja_cc", "ja_wiki"}, shard.name


@pytest.mark.shared
def test_datasets_reads_the_shards(ja_pack, tmp_path: Path) -> None:
    """(The collator and `varlen_positions` on these rows are tested in tests/train/test_collator.py.)"""
    import datasets

    out = ja_pack(8192)
    ds = datasets.load_dataset("arrow", data_files=str(out / "*.arrow"), split="train", cache_dir=str(tmp_path))
    manifest = json.loads((out / "manifest.json").read_text())
    assert ds.num_rows == manifest["totals"]["rows"]
    assert list(ds.features) == ["input_ids", "word_starts", "doc_lengths", "doc_sources"]


# ---------------------------------------------------------------------------------------------- cutting


def pieces_of(out: Path) -> dict[tuple[str, str, int, int], list[int]]:
    """Content lengths of each document's pieces, in piece order."""
    found: dict[tuple, dict[int, int]] = defaultdict(dict)
    for _, _, lengths, sources in read_rows(out):
        for length, label in zip(lengths, sources):
            key, k, _ = parse_source(label)
            found[key][k] = length - 2
    return {key: [by_k[k] for k in sorted(by_k)] for key, by_k in found.items()}


def test_cut_prefers_a_close_sentence_end(tmp_path: Path, plain: int) -> None:
    sp = load_tokenizer(SAMPLE_MODEL).sp
    full_stop, newline = sp.piece_to_id("。"), sp.piece_to_id("<0x0A>")
    near, far, line = doc(1500, plain), doc(1500, plain), doc(1500, plain)
    near[0][999] = full_stop  # 23 tokens before the limit of 1022 (reach 1022 // 32 = 31): cut after it
    far[0][900] = full_stop  # 122 before: too far, cut at the limit
    line[0][1010] = newline  # a newline starts the group it joins (as segment makes it): cut before it
    line[1][1011] = 0
    docs = write_documents(tmp_path / "docs", {"ja_wiki": [near, far, line]})
    manifest = run_pack(docs, tmp_path / "out", PackConfig(seq_len=1024), quiet=True)
    source = "ja/ja_wiki/train_0.jsonl.gz"
    assert pieces_of(tmp_path / "out") == {
        ("ja_wiki", source, 1, 0): [1000, 500], ("ja_wiki", source, 2, 0): [1022, 478],
        ("ja_wiki", source, 3, 0): [1010, 490]}
    assert manifest.totals["sentence_cuts"] == 2 and manifest.totals["cut_documents"] == 3
    check_conservation(docs, tmp_path / "out")


def test_cut_only_at_group_starts(tmp_path: Path, plain: int) -> None:
    ws = [1 if i % 50 == 0 else 0 for i in range(300)]  # groups of 50 tokens
    docs = write_documents(tmp_path / "docs", {"kaken": [doc(300, plain, ws)]})
    run_pack(docs, tmp_path / "out", PackConfig(seq_len=128), quiet=True)
    assert list(pieces_of(tmp_path / "out").values()) == [[100, 100, 100]]
    check_conservation(docs, tmp_path / "out")


def test_a_group_longer_than_a_row_is_split_and_counted(tmp_path: Path, plain: int) -> None:
    docs = write_documents(tmp_path / "docs", {"ja_cc": [doc(150, plain, [1] + [0] * 149), doc(10, plain)]})
    manifest = run_pack(docs, tmp_path / "out", PackConfig(seq_len=64), quiet=True)
    assert manifest.totals["group_splits"] == 2
    assert sorted(pieces_of(tmp_path / "out").values()) == [[10], [62, 62, 26]]
    check_conservation(docs, tmp_path / "out")  # every piece still starts a group in its row


def test_without_the_tokenizer_model_cuts_at_group_edges_and_says_so(tmp_path: Path, plain: int,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    near = doc(1500, plain)
    near[0][999] = load_tokenizer(SAMPLE_MODEL).sp.piece_to_id("。")
    docs = write_documents(tmp_path / "docs", {"ja_wiki": [near]}, tokenizer_path=str(tmp_path / "moved.model"))
    manifest = run_pack(docs, tmp_path / "out", PackConfig(seq_len=1024), quiet=True)
    assert manifest.config.sentence_ends["used"] is False and "group edges only" in capsys.readouterr().err
    assert list(pieces_of(tmp_path / "out").values()) == [[1022, 478]]
    manifest = run_pack(docs, tmp_path / "out", PackConfig(seq_len=1024, tokenizer=SAMPLE_MODEL), quiet=True)
    assert manifest.config.sentence_ends["used"] is True
    assert list(pieces_of(tmp_path / "out").values()) == [[1000, 500]]
    other = tmp_path / "other.model"
    other.write_bytes(b"not the model")
    with pytest.raises(WwmPrepError, match="not the tokenizer the documents were segmented with"):
        run_pack(docs, tmp_path / "out", PackConfig(seq_len=1024, tokenizer=other), quiet=True)
    with pytest.raises(WwmPrepError, match="tokenizer not found"):
        run_pack(docs, tmp_path / "out", PackConfig(seq_len=1024, tokenizer=tmp_path / "nowhere.model"), quiet=True)


# ---------------------------------------------------------------------------------------------- packing


def test_subset_weights_repeat_and_subsample(tmp_path: Path, plain: int) -> None:
    docs = write_documents(tmp_path / "docs", {"ja_wiki": [doc(20 + i, plain) for i in range(40)],
                                               "kaken": [doc(30 + i, plain) for i in range(40)]})
    manifest = run_pack(docs, tmp_path / "out", PackConfig(seq_len=256, subset_weights={"ja_wiki": 2, "kaken": 0.5}), quiet=True)
    keys = list(pieces_of(tmp_path / "out"))
    wiki = sorted(k[2:] for k in keys if k[0] == "ja_wiki")
    assert wiki == sorted((line, copy) for line in range(1, 41) for copy in (0, 1))
    kaken = [k for k in keys if k[0] == "kaken"]
    assert all(k[3] == 0 for k in kaken) and 10 < len(kaken) < 30
    assert manifest.subsets["kaken"]["documents"] == len(kaken)
    assert manifest.totals["dropped_documents"] == 40 - len(kaken)
    assert manifest.config.subset_weights == {"ja_wiki": 2, "kaken": 0.5}
    again = run_pack(docs, tmp_path / "again", PackConfig(seq_len=256, subset_weights={"ja_wiki": 2, "kaken": 0.5}), quiet=True)
    assert [s["sha256"] for s in again.shards] == [s["sha256"] for s in manifest.shards]


def test_parse_subset_weights() -> None:
    assert parse_subset_weights("ja_wiki=2, kaken=0.5") == {"ja_wiki": 2.0, "kaken": 0.5}
    assert parse_subset_weights(None) == {}
    for bad in ("ja_wiki", "ja_wiki=-1", "ja_wiki=x", "=2", "ja_wiki=nan", "a=1,a=2"):
        with pytest.raises(WwmPrepError):
            parse_subset_weights(bad)


# ---------------------------------------------------------------------------------------------- bad input, output dir


def test_refuses_bad_input_clearly(tmp_path: Path, plain: int) -> None:
    docs = write_documents(tmp_path / "docs", {"kaken": [doc(10, plain)]})
    cases = [
        (dict(docs_dir=tmp_path / "none", seq_len=128), "none does not exist"),
        (dict(seq_len=63), "at least 64"),
        (dict(seq_len=128, strategy="first-fit"), "--strategy"),
        (dict(seq_len=128, subset_weights={"ja_cc": 1}), "documents hold kaken"),
        (dict(seq_len=128, subset_weights={"kaken": 0}), "no documents to pack"),
    ]
    for options, message in cases:
        docs_dir = options.pop("docs_dir", docs)
        with pytest.raises(WwmPrepError, match=message):
            run_pack(docs_dir, tmp_path / "out", PackConfig(**options), quiet=True)
    no_cls = write_documents(tmp_path / "no-cls", {"kaken": [doc(10, plain)]}, special_ids={"pad": 4, "sep": 6})
    with pytest.raises(WwmPrepError, match="<CLS>"):
        run_pack(no_cls, tmp_path / "out", PackConfig(seq_len=128), quiet=True)
    with open(docs / "kaken--train_0.arrow", "ab") as f:
        f.write(b"\0")
    with pytest.raises(WwmPrepError, match="has changed since"):
        run_pack(docs, tmp_path / "out", PackConfig(seq_len=128), quiet=True)


def test_another_pack_is_refused_and_overwrite_replaces_it_whole_but_never_a_foreign_directory(
        tmp_path: Path, plain: int) -> None:
    docs = write_documents(tmp_path / "docs", {"kaken": [doc(100, plain) for _ in range(10)]})
    out = tmp_path / "out"
    assert len(run_pack(docs, out, PackConfig(seq_len=128, shard_rows=1), quiet=True).shards) == 10
    before = tree(out)
    with pytest.raises(WwmPrepError, match="shard_rows: 1 → 2048"):
        run_pack(docs, out, PackConfig(seq_len=128), quiet=True)
    assert tree(out) == before
    manifest = run_pack(docs, out, PackConfig(seq_len=128), overwrite=True, quiet=True)
    assert sorted(p.name for p in out.iterdir()) == [".manifest.lock", "claims", "manifest.json", "output.json",
                                                     "sequences-00000-00000.arrow", "units"]
    assert sorted(p.name for p in (out / "units").iterdir()) == ["partition-00000.json"]
    assert not list((out / "claims").glob("*.json"))
    assert manifest.shards[0]["sha256"] == sha256_file(out / "sequences-00000-00000.arrow")
    assert manifest.documents["manifest_sha256"] == sha256_file(docs / "manifest.json")
    for foreign in (docs, tmp_path):
        with pytest.raises(WwmPrepError):
            run_pack(docs, foreign, PackConfig(seq_len=128), overwrite=True, quiet=True)
    (out / "notes.txt").write_text("mine")
    before = tree(out)
    with pytest.raises(WwmPrepError, match="notes.txt"):
        run_pack(docs, out, PackConfig(seq_len=128), overwrite=True, quiet=True)
    assert tree(out) == before


# ---------------------------------------------------------------------------------------------- command line


def test_cli_pack_prints_a_summary_and_exits_2_on_mistakes(tmp_path: Path, plain: int) -> None:
    docs = write_documents(tmp_path / "docs", {"kaken": [doc(100, plain) for _ in range(10)]})
    runner = CliRunner()
    result = runner.invoke(cli.main, ["pack", str(docs), "--out", str(tmp_path / "out"), "--seq-len", "256",
                                      "--strategy", "greedy", "--subset-weights", "kaken=2"])
    assert result.exit_code == 0, result.output
    assert "efficiency" in result.output and "greedy" in result.output
    result = runner.invoke(cli.main, ["pack", str(docs), "--out", str(tmp_path / "out"), "--seq-len", "32"])
    assert result.exit_code == 2 and "at least 64" in result.output and "Traceback" not in result.output


A_STRATEGY = """
from wwm_prep.pipeline.strategies.base import Strategy, StrategyOption
from wwm_prep.pipeline.strategies.greedy import greedy


def at_most(batches, seq_len, most):
    for row in greedy(batches, seq_len):
        yield from (row[at : at + most] for at in range(0, len(row), most))


STRATEGY = Strategy("at-most", "greedy, at most --most pieces a row", at_most,
                    (StrategyOption("most", "pieces a row at most", 3),))
"""


def test_a_strategy_is_one_module(tmp_path: Path, plain: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module with a STRATEGY in the package is a strategy: chosen by name, its options settled and checked,
    used to pack and recorded with each partition."""
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "at_most.py").write_text(A_STRATEGY)
    monkeypatch.setattr(strategy_package, "__path__", [*strategy_package.__path__, str(tmp_path / "modules")])
    strategies.cache_clear()
    try:
        assert list(strategies()) == ["at-most", "best-fit", "greedy"]
        assert PackConfig(seq_len=256, strategy="at-most", strategy_options={"window": 9}).strategy_options == {
            "most": 3}
        with pytest.raises(WwmPrepError, match="--most must be at least 1"):
            PackConfig(seq_len=256, strategy="at-most", strategy_options={"most": 0})
        docs = write_documents(tmp_path / "docs", {"kaken": [doc(10, plain) for _ in range(20)]})
        manifest = run_pack(docs, tmp_path / "out", PackConfig(seq_len=256, strategy="at-most",
                                                             strategy_options={"most": 2}), quiet=True)
        report = json.loads((tmp_path / "out" / "units" / "partition-00000.json").read_text())
    finally:
        strategies.cache_clear()
    assert manifest.totals["rows"] == 10 and manifest.config.strategy == "at-most"
    assert report["options"]["most"] == 2 and "window" not in report["options"]


def test_cli_prepare_segments_and_packs(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main, ["prepare", str(REPO / "sample" / "corpus"), "--out", str(tmp_path),
                                           "--dict", "tiny-ja", "--seq-len", "512"])
    assert result.exit_code == 0, result.output
    assert "segment →" in result.output and "pack →" in result.output
    check_conservation(tmp_path / "documents", tmp_path / "sequences")
