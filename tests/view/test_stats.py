"""`wwm-prep stats` on a tiny corpus whose counts are known by construction: documents and characters from the
texts, tokens from SentencePiece directly, group sizes recounted here from the shards' word_starts with plain
Python, packing efficiency from the rows themselves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sentencepiece as spm

from tests.conftest import run
from tests.view.conftest import CORPUS, SAMPLE_MODEL, SEQ_LEN
from wwm_prep.core.shards import load_schema, read_batches

PAD = 4  # the bundled model's <PAD>
PERCENTILES = {"min": 0, "p10": 10, "p25": 25, "p50": 50, "p75": 75, "p90": 90, "p99": 99, "max": 100}


def stats_json(directory: Path, *extra: str) -> dict[str, Any]:
    code, output = run("stats", str(directory), "--json", *extra)
    assert code == 0, output
    return json.loads(output)


def expected_counts(sp: spm.SentencePieceProcessor) -> dict[str, dict[str, int]]:
    out = {}
    for subset, texts in [("all", [t for ts in CORPUS.values() for t in ts]), *CORPUS.items()]:
        texts = [t for t in texts if t]
        out[subset] = {
            "documents": len(texts),
            "characters": sum(len(t) for t in texts),
            "tokens": sum(len(sp.encode(t)) for t in texts),
            "cut_documents": sum(len(sp.encode(t)) > SEQ_LEN - 2 for t in texts),
        }
    return out


def document_word_starts(docs: Path) -> list[list[int]]:
    return [ws for shard in sorted(docs.glob("*.arrow")) for batch in read_batches(shard, load_schema("document"))
            for ws in batch.column("word_starts").to_pylist()]


def group_sizes(word_starts: list[list[int]]) -> list[int]:
    """Sizes of the word groups, recounted with plain Python: a group runs from a 1 to the next 1 (or the end)."""
    sizes = []
    for ws in word_starts:
        size = 0
        for i, start in enumerate(ws):
            if start and i > 0:
                sizes.append(size)
                size = 0
            size += 1
        if size:
            sizes.append(size)
    return sizes


def percentiles(values: list[int]) -> dict[str, int]:
    return {name: int(np.percentile(values, q, method="inverted_cdf")) for name, q in PERCENTILES.items()}


def test_document_stats_match_the_corpus(prepared: dict[str, Path], sp: spm.SentencePieceProcessor) -> None:
    s = stats_json(prepared["documents"])
    expected = expected_counts(sp)
    assert s["kind"] == "documents" and s["shards"] == 2
    t = s["totals"]
    for key in ("documents", "characters", "tokens"):
        assert t[key] == expected["all"][key], key
        for subset in CORPUS:
            assert s["subsets"][subset][key] == expected[subset][key], (subset, key)
    sizes = group_sizes(document_word_starts(prepared["documents"]))
    assert sum(sizes) == t["tokens"]
    assert t["groups"] == len(sizes)
    assert t["tokens_per_group"] == pytest.approx(t["tokens"] / len(sizes), abs=1e-4)
    chars_per_token = expected["all"]["characters"] / expected["all"]["tokens"]
    assert t["characters_per_token"] == pytest.approx(chars_per_token, abs=1e-4)
    assert 0 < t["words"] <= t["characters"]
    groups = s["distributions"]["group_tokens"]
    assert {k: groups[k] for k in PERCENTILES} == percentiles(sizes)
    assert groups["mean"] == pytest.approx(np.mean(sizes), abs=0.01)
    histogram = s["histograms"]["group_tokens"]
    assert sum(b["count"] for b in histogram) == len(sizes)
    assert histogram[0] == {"from": 1, "to": 1, "count": sizes.count(1), "share": round(sizes.count(1) / len(sizes), 6)}
    lengths = [len(sp.encode(t)) for ts in CORPUS.values() for t in ts if t]
    docs = s["distributions"]["document_tokens"]
    assert {k: docs[k] for k in PERCENTILES} == percentiles(lengths)
    assert sum(b["count"] for b in s["histograms"]["document_tokens"]) == len(lengths)
    assert s["manifest"]["found"] and s["manifest"]["mismatches"] == {}


def test_sequence_stats_match_the_rows(prepared: dict[str, Path], sp: spm.SentencePieceProcessor) -> None:
    s = stats_json(prepared["sequences"])
    expected = expected_counts(sp)
    assert s["kind"] == "sequences"
    t = s["totals"]
    assert expected["all"]["cut_documents"] == 2  # the corpus is built so; otherwise this test checks little
    for key in ("documents", "characters", "tokens", "cut_documents"):
        assert t[key] == expected["all"][key], key
        for subset in CORPUS:
            assert s["subsets"][subset][key] == expected[subset][key], (subset, key)
    assert t["words"] is None

    rows = [(ids, ws, lengths, sources) for shard in sorted(prepared["sequences"].glob("*.arrow"))
            for batch in read_batches(shard, load_schema("sequence"))
            for ids, ws, lengths, sources in zip(*(batch.column(c).to_pylist() for c in
                                                   ("input_ids", "word_starts", "doc_lengths", "doc_sources")))]
    cells = sum(len(ids) for ids, *_ in rows)
    non_pad = sum(sum(i != PAD for i in ids) for ids, *_ in rows)
    assert t["rows"] == len(rows) and t["seq_len"] == SEQ_LEN and cells == len(rows) * SEQ_LEN
    assert t["efficiency"] == pytest.approx(non_pad / cells, abs=1e-6)
    assert t["pad_tokens"] == cells - non_pad
    pieces = [len(lengths) for _, _, lengths, _ in rows]
    assert t["pieces"] == sum(pieces)
    assert t["pieces_per_row"] == pytest.approx(sum(pieces) / len(rows), abs=1e-4)
    assert s["distributions"]["pieces_per_row"]["max"] == max(pieces)
    cut_pieces = [src for *_, sources in rows for src in sources if not src.endswith("/1")]
    assert t["cut_pieces"] == len(cut_pieces)
    assert t["cuts"] == len(cut_pieces) - t["cut_documents"]
    assert t["groups"] == sum(sum(ws) for _, ws, _, _ in rows)
    assert t["group_splits"] == 0
    # documents put back together from their pieces have the lengths SentencePiece gives their texts
    lengths = [len(sp.encode(t)) for ts in CORPUS.values() for t in ts if t]
    docs = s["distributions"]["document_tokens"]
    assert {k: docs[k] for k in PERCENTILES} == percentiles(lengths)
    fill = [sum(lengths) for _, _, lengths, _ in rows]
    assert {k: s["distributions"]["row_fill"][k] for k in PERCENTILES} == percentiles(fill)
    assert s["manifest"]["mismatches"] == {}


def test_plain_summary(prepared: dict[str, Path], sp: spm.SentencePieceProcessor) -> None:
    expected = expected_counts(sp)["all"]
    code, output = run("stats", str(prepared["sequences"]))
    assert code == 0
    lines = output.splitlines()
    row = next(line for line in lines if line.startswith("documents "))
    assert row.split()[1] == f"{expected['documents']:,}"
    row = next(line for line in lines if line.startswith("characters "))
    assert row.split()[1] == f"{expected['characters']:,}"
    assert any(line.strip().startswith("efficiency (non-pad share)") for line in lines)
    assert "manifest totals agree with the shards" in output
    assert "tokens per group" in output and "row fill (tokens)" in output


def test_manifest_disagreement_is_reported(prepared: dict[str, Path], tmp_path: Path) -> None:
    docs = tmp_path / "documents"
    shutil.copytree(prepared["documents"], docs)
    manifest = json.loads((docs / "manifest.json").read_text(encoding="utf-8"))
    manifest["totals"]["documents"] += 1
    (docs / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    code, output = run("stats", str(docs), "--json")
    s = json.loads(output)
    assert code == 1 and s["manifest"]["mismatches"] == {
        "documents": {"shards": s["totals"]["documents"], "manifest": s["totals"]["documents"] + 1}}
    code, output = run("stats", str(docs))
    assert code == 1 and "MISMATCH documents" in output


def test_shards_the_manifest_does_not_list_are_named_and_exit_1(prepared: dict[str, Path], tmp_path: Path) -> None:
    """A shard left by another run beside a manifest that does not list it: the counts include it, so they
    disagree, and the file is named."""
    docs = tmp_path / "documents"
    shutil.copytree(prepared["documents"], docs)
    stray = next(docs.glob("*.arrow"))
    shutil.copy(stray, docs / "ja_cc--level9--stray.arrow")
    code, output = run("stats", str(docs))
    assert code == 1 and "MISMATCH shards the manifest does not list: ja_cc--level9--stray.arrow" in output
    s = json.loads(run("stats", str(docs), "--json")[1])
    assert s["manifest"]["unlisted"] == ["ja_cc--level9--stray.arrow"] and s["manifest"]["missing"] == []
    stray.unlink()
    code, output = run("stats", str(docs))
    assert code == 1 and f"MISMATCH shards listed but absent: {stray.name}" in output


def test_characters_of_sequences_need_the_tokenizer(prepared: dict[str, Path], tmp_path: Path,
                                                     sp: spm.SentencePieceProcessor) -> None:
    """The manifests record where the tokenizer was; when it has moved, --tokenizer gives it back."""
    docs, seqs = tmp_path / "documents", tmp_path / "sequences"
    shutil.copytree(prepared["documents"], docs)
    shutil.copytree(prepared["sequences"], seqs)
    manifest = json.loads((seqs / "manifest.json").read_text(encoding="utf-8"))
    manifest["documents"]["config"]["tokenizer"]["path"] = str(tmp_path / "moved.model")
    (seqs / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    s = stats_json(seqs)
    assert s["totals"]["characters"] is None and s["totals"]["tokens"] == expected_counts(sp)["all"]["tokens"]
    assert any("characters unknown" in note for note in s["notes"])
    moved = shutil.copy(SAMPLE_MODEL, tmp_path / "moved-here.model")
    characters = stats_json(seqs, "--tokenizer", str(moved))["totals"]["characters"]
    assert characters == expected_counts(sp)["all"]["characters"]
    other = tmp_path / "other.model"
    other.write_bytes(SAMPLE_MODEL.read_bytes() + b"\0")
    code, output = run("stats", str(seqs), "--tokenizer", str(other))
    assert code == 2 and "not the tokenizer these shards were made with" in output


def test_user_mistakes(prepared: dict[str, Path], tmp_path: Path) -> None:
    code, output = run("stats", str(tmp_path))
    assert code == 2 and "no shards" in output
    code, output = run("stats", str(prepared["root"]))
    assert code == 2 and "documents" in output and "sequences" in output
    mixed = tmp_path / "mixed"
    shutil.copytree(prepared["documents"], mixed)
    shutil.copy(next(prepared["sequences"].glob("*.arrow")), mixed)
    code, output = run("stats", str(mixed))
    assert code == 2 and "must all be document or all sequence shards" in output


def test_manifest_of_another_stage_or_unreadable(prepared: dict[str, Path], tmp_path: Path) -> None:
    """Another stage's manifest beside the shards is refused; one that cannot be read is as good as none."""
    docs = tmp_path / "documents"
    shutil.copytree(prepared["documents"], docs)
    shutil.copy(prepared["sequences"] / "manifest.json", docs)
    code, output = run("stats", str(docs))
    assert code == 2 and "is a 'sequences' manifest but the shards are documents" in output
    (docs / "manifest.json").write_text("{not json", encoding="utf-8")
    s = stats_json(docs)
    assert s["manifest"] == {"found": False, "mismatches": {}, "unlisted": [], "missing": []}
    assert s["totals"]["documents"] == stats_json(prepared["documents"])["totals"]["documents"]
