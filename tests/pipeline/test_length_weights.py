"""`pack --length-weights` on real text (ja-sample's Wikipedia articles are long): what every document gets,
read back through `doc_sources`; the same under 1 and 2 workers and partitions; `--plan` and `stats` agree
with what was packed."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run
from tests.pipeline.test_pack import write_documents
from wwm_prep.core.files import sha256_file
from wwm_prep.core.lengths import BANDS, LengthWeights
from wwm_prep.core.rows import PieceSource
from wwm_prep.core.shards import load_schema, read_batches
from wwm_prep.pipeline.executor import LocalExecutor
from wwm_prep.pipeline.pack import PackConfig, plan_pack, run_pack

SPEC = "0:0.5,4096:3"
CONFIG = PackConfig(seq_len=8192, length_weights=LengthWeights.parse(SPEC), seed=3)


def document_lengths(docs_dir: Path) -> dict[tuple[str, str, int], int]:
    """(subset, source, line) → tokens of every non-empty document segment made."""
    found = {}
    for shard in sorted(docs_dir.glob("*.arrow")):
        for batch in read_batches(shard, load_schema("document")):
            lengths = np.diff(batch.column("input_ids").offsets.to_numpy()).tolist()
            keys = zip(batch.column("subset").to_pylist(), batch.column("source").to_pylist(),
                       batch.column("line").to_pylist())
            found.update((key, n) for key, n in zip(keys, lengths) if n)
    return found


def packed_pieces(out: Path) -> dict[tuple[str, str, int, int], dict[int, int]]:
    """(subset, source, line, copy) → {k: tokens of piece k}: every piece the rows hold, by its `doc_sources`."""
    found: dict[tuple[str, str, int, int], dict[int, int]] = defaultdict(dict)
    for shard in sorted(out.glob("sequences-*.arrow")):
        for batch in read_batches(shard, load_schema("sequence")):
            for lengths, sources in zip(batch.column("doc_lengths").to_pylist(), batch.column("doc_sources").to_pylist()):
                for length, entry in zip(lengths, sources):
                    p = PieceSource.parse(entry)
                    assert p is not None and p.k not in found[(p.subset, p.source, p.line, p.copy)]
                    found[(p.subset, p.source, p.line, p.copy)][p.k] = length - 2
    return found


@pytest.fixture(scope="module")
def weighted(ja_docs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ja-sample packed with the length weights: 1 partition; 2 partitions by 1 worker and by 2."""
    root = tmp_path_factory.mktemp("length-weights")
    outs = {"p1": root / "p1", "p2w1": root / "p2w1", "p2w2": root / "p2w2"}
    for name, partitions, workers in (("p1", 1, 1), ("p2w1", 2, 1), ("p2w2", 2, 2)):
        config = replace(CONFIG, partitions=partitions)
        run_pack(ja_docs, outs[name], config, executor=LocalExecutor(workers), quiet=True)
    return outs


@pytest.mark.shared
def test_long_documents_are_packed_three_times_and_about_half_the_others_once(ja_docs: Path,
                                                                              weighted: dict[str, Path]) -> None:
    lengths = document_lengths(ja_docs)
    long = {key for key, n in lengths.items() if n >= 4096}
    assert len(long) >= 100 and len(lengths) - len(long) >= 1000  # the sample has both, in numbers
    pieces = packed_pieces(weighted["p1"])
    copies: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    for (subset, source, line, copy), by_k in pieces.items():
        copies[(subset, source, line)].append(copy)
        n = lengths[(subset, source, line)]
        assert sorted(by_k) == list(range(1, len(by_k) + 1)) and sum(by_k.values()) == n  # the whole document
    assert all(sorted(copies[key]) == [0, 1, 2] for key in long)
    short = set(lengths) - long
    taken = {key for key in short if key in copies}
    assert all(copies[key] == [0] for key in taken)
    for subset in ("ja_cc", "ja_wiki"):  # a seeded half of each subset's short documents: binomial, ±4 σ
        of_subset = [key for key in short if key[0] == subset]
        kept = sum(key in taken for key in of_subset)
        assert abs(kept - len(of_subset) / 2) <= 4 * (len(of_subset) / 4) ** 0.5, (subset, kept, len(of_subset))
    manifest = json.loads((weighted["p1"] / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["config"]["length_weights"] == [[0, 0.5], [4096, 3.0]]
    assert manifest["totals"]["documents"] == 3 * len(long) + len(taken)
    assert manifest["totals"]["dropped_documents"] == len(short) - len(taken)


@pytest.mark.shared
def test_workers_and_partitions_give_the_same_documents_and_bytes(weighted: dict[str, Path]) -> None:
    """The draws belong to each pass over a shard, so the partition count moves documents between rows, never
    which are packed; and where the partitioning is the same, the shards are byte-identical."""
    def digests(out: Path) -> dict[str, str]:
        return {p.name: sha256_file(p) for p in sorted(out.glob("sequences-*.arrow"))}

    assert digests(weighted["p2w1"]) == digests(weighted["p2w2"]) and len(digests(weighted["p2w1"])) >= 2
    one, two = packed_pieces(weighted["p1"]), packed_pieces(weighted["p2w1"])
    assert {key: sum(v.values()) for key, v in one.items()} == {key: sum(v.values()) for key, v in two.items()}
    assert digests(weighted["p1"]) != digests(weighted["p2w1"])


@pytest.mark.shared
def test_the_plan_is_what_pack_then_makes_and_stats_counts(ja_docs: Path, weighted: dict[str, Path],
                                                            tmp_path: Path) -> None:
    plan = plan_pack(ja_docs, CONFIG)
    manifest = json.loads((weighted["p1"] / "manifest.json").read_text(encoding="utf-8"))
    assert plan["packed"]["all"]["tokens"] == manifest["totals"]["tokens"]
    assert plan["packed"]["all"]["documents"] == manifest["totals"]["documents"]
    for subset, counts in manifest["subsets"].items():
        assert plan["packed"][subset]["tokens"] == counts["tokens"]
    code, output = run("stats", str(weighted["p1"]), "--json")
    assert code == 0, output
    shares = json.loads(output)["length_shares"]
    assert shares["by_document"] == plan["packed"]["all"]["by_document_length"]
    code, output = run("pack", str(ja_docs), "--out", str(tmp_path / "unused"), "--seq-len", "8192", "--length-weights", SPEC,
                       "--seed", "3", "--plan")
    assert code == 0 and f"{manifest['totals']['tokens']:,} tokens" in output, output
    assert not (tmp_path / "unused").exists()  # the plan packs and writes nothing


@pytest.mark.shared
def test_stats_length_shares_add_up_and_agree_with_the_rows(weighted: dict[str, Path]) -> None:
    code, output = run("stats", str(weighted["p2w1"]), "--json")
    assert code == 0, output
    shares = json.loads(output)["length_shares"]
    pieces = packed_pieces(weighted["p2w1"])
    piece_tokens = np.array([n for by_k in pieces.values() for n in by_k.values()])
    document_tokens = np.array([sum(by_k.values()) for by_k in pieces.values() for _ in by_k])  # of each piece
    for key, lengths in (("by_piece", piece_tokens), ("by_document", document_tokens)):
        table = shares[key]
        assert sum(row["share"] for row in table) == pytest.approx(1, abs=1e-5)
        counted = np.bincount(np.digitize(lengths, BANDS) - 1, weights=piece_tokens, minlength=len(BANDS))
        assert [row["tokens"] for row in table] == counted.astype(int).tolist()
    # documents of 8,192 tokens and more are cut to fit the rows: their tokens move down a band, or more
    assert shares["by_document"][-1]["tokens"] > 0 and shares["by_piece"][-1]["tokens"] == 0


def test_length_weights_multiply_subset_weights(tmp_path: Path) -> None:
    """ja_wiki=2 with 300:1.5: its long documents 3 times, its short twice; kaken's long ones once and a seeded
    half again, its short once; and the plan says so before."""
    short, long = [([300] * n, [1] * n) for n in range(20, 60)], [([300] * n, [1] * n) for n in range(300, 340)]
    docs = write_documents(tmp_path / "docs", {"ja_wiki": short + long, "kaken": short + long})
    config = PackConfig(seq_len=1024, subset_weights={"ja_wiki": 2}, length_weights=LengthWeights.parse("300:1.5"))
    run_pack(docs, tmp_path / "out", config, quiet=True)
    copies: dict[tuple[str, int], list[int]] = defaultdict(list)
    for (subset, _, line, copy), by_k in packed_pieces(tmp_path / "out").items():
        copies[(subset, sum(by_k.values()))].append(copy)
    lengths = [n for n in range(20, 60)] + [n for n in range(300, 340)]
    assert all(sorted(copies[("ja_wiki", n)]) == ([0, 1, 2] if n >= 300 else [0, 1]) for n in lengths)
    assert all(copies[("kaken", n)] == [0] for n in range(20, 60))
    again = [n for n in range(300, 340) if sorted(copies[("kaken", n)]) == [0, 1]]
    assert all(sorted(copies[("kaken", n)]) in ([0], [0, 1]) for n in range(300, 340)) and 8 <= len(again) <= 32
    plan = plan_pack(docs, config)
    assert plan["packed"]["kaken"]["documents"] == 80 + len(again) and plan["packed"]["ja_wiki"]["documents"] == 200


def test_a_mistaken_spec_is_one_line_and_exit_2(tmp_path: Path) -> None:
    docs = write_documents(tmp_path / "docs", {"kaken": [([300] * 50, [1] * 50)]})
    for spec in ("4096", "0:0.5,0:3", "0:-1"):
        code, output = run("pack", str(docs), "--out", str(tmp_path / "out"), "--seq-len", "256",
                           "--length-weights", spec)
        assert code == 2 and "length weights" in output and "Traceback" not in output, output
        assert not (tmp_path / "out").exists()
