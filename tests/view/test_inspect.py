"""`wwm-prep inspect` on rows whose text is known: the groups it prints give back the text, its `|` marks fall
where word_starts says (checked against SentencePiece's own surfaces), and `--mask` marks exactly the positions
the collator chooses for that seed."""

from __future__ import annotations

import json
import re
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sentencepiece as spm

from tests.conftest import run
from tests.view.conftest import CORPUS, SAMPLE_MODEL, SEQ_LEN
from wwm_prep.core.shards import load_schema, read_batches
from wwm_prep.train.collator import IGNORE_INDEX, WholeWordMaskCollator

VISIBLE = {" ": "␣", "\u3000": "⎵", "\n": "⏎\n", "|": "¦"}
MASK_ID = 3  # the bundled model's <MASK>
_TABLE_LINE = re.compile(r"^\s+(\d+)(?:–(\d+))?\s+\[(.*?)\]\s+(.*)$")


def shown(text: str) -> str:
    return "".join(VISIBLE.get(ch, ch) for ch in text)


def unshown(text: str) -> str:
    for ch, mark in VISIBLE.items():
        text = text.replace(mark, ch)
    return text


def rows(directory: Path, schema: str) -> list[dict[str, Any]]:
    return [row for shard in sorted(directory.glob("*.arrow")) for batch in read_batches(shard, load_schema(schema))
            for row in batch.to_pylist()]


def inspect(*args: Any) -> str:
    code, output = run("inspect", *map(str, args))
    assert code == 0, output
    return output


def body(output: str) -> str:
    """What follows the header (up to the masking table, if any)."""
    text = output.split("\n\n", 1)[1]
    return text.split("\n\nmasking:", 1)[0].rstrip("\n")


def text_of(subset: str, line: int) -> str:
    return CORPUS[subset][line - 1]


def expected_groups(sp: spm.SentencePieceProcessor, text: str, word_starts: list[int]) -> list[str]:
    """The text cut before every token that starts a group, at SentencePiece's own surface offsets."""
    pieces = sp.encode(text, return_type="proto").pieces
    assert len(pieces) == len(word_starts)
    groups: list[str] = []
    for piece, start in zip(pieces, word_starts):
        if start or not groups:
            groups.append("")
        groups[-1] += piece.surface
    return groups


def test_document_row_shows_its_groups(prepared: dict[str, Path], sp: spm.SentencePieceProcessor) -> None:
    docs = rows(prepared["documents"], "document")
    # the document with byte-fallback characters, spaces, an ideographic space and a literal |
    index = next(i for i, r in enumerate(docs) if r["subset"] == "wiki" and r["line"] == 1)
    text = text_of("wiki", 1)
    output = inspect(prepared["documents"], "--row", index, "--max-tokens", 0)
    assert f"row {index} of {len(docs)}" in output and "wiki  ja/wiki/part_0.jsonl, line 1" in output
    groups = expected_groups(sp, text, docs[index]["word_starts"])
    assert body(output) == "|".join(shown(g) for g in groups)
    assert [unshown(g) for g in body(output).split("|")] == groups
    assert "".join(groups) == text
    assert "龘" in body(output) and "😀" in body(output)  # their byte pieces decoded together
    assert body(output).count("|") == sum(docs[index]["word_starts"]) - 1


def test_every_document_decodes_back(prepared: dict[str, Path], sp: spm.SentencePieceProcessor) -> None:
    for index, row in enumerate(rows(prepared["documents"], "document")):
        text = text_of(row["subset"], row["line"])
        out = body(inspect(prepared["documents"], "--row", index, "--max-tokens", 0))
        assert out == "|".join(shown(g) for g in expected_groups(sp, text, row["word_starts"])).rstrip("\n")


def test_sequence_rows_show_pieces_with_provenance(prepared: dict[str, Path]) -> None:
    seqs = rows(prepared["sequences"], "sequence")
    pieces: dict[str, dict[int, str]] = defaultdict(dict)
    for index, row in enumerate(seqs):
        output = inspect(prepared["sequences"], "--row", index, "--max-tokens", 0)
        blocks = output.split("\n\n")[1:]
        piece_blocks = [b for b in blocks if b.startswith("piece ")]
        assert len(piece_blocks) == len(row["doc_lengths"])
        first = 0
        for block, size, source in zip(piece_blocks, row["doc_lengths"], row["doc_sources"]):
            header, text = block.rstrip("\n").split("\n", 1)
            assert source in header and f"positions {first}–{first + size - 1}" in header
            assert text.startswith("<CLS>") and text.endswith("<SEP>")
            content = text[len("<CLS>") : -len("<SEP>")]
            ws = row["word_starts"][first + 1 : first + size - 1]
            assert content.count("|") == sum(ws) - 1
            head, k_n = source.rsplit(":", 1)
            pieces[head][int(k_n.split("/")[0])] = unshown(content.replace("|", ""))
            first += size
        pad = SEQ_LEN - sum(row["doc_lengths"])
        assert (f"<PAD> × {pad}" in output) == (pad > 0)
    # each document's pieces, wherever they were packed, add up to its text
    assert any(len(p) > 1 for p in pieces.values())
    for head, parts in pieces.items():
        subset, _, line = head.split(":")
        assert "".join(parts[k] for k in sorted(parts)) == text_of(subset, int(line))


@pytest.mark.parametrize("masking", ["word", "ngram", "span"])
@pytest.mark.parametrize("kind", ["documents", "sequences"])
def test_mask_marks_the_collators_choice(prepared: dict[str, Path], kind: str, masking: str) -> None:
    schema = "document" if kind == "documents" else "sequence"
    all_rows = rows(prepared[kind], schema)
    index = int(np.argmax([len(r["input_ids"]) * (r.get("doc_lengths") is None or len(r["doc_lengths"]) > 1)
                           for r in all_rows]))
    row = all_rows[index]
    seed = 7
    collator = WholeWordMaskCollator(str(SAMPLE_MODEL), seed=seed, pad_to_multiple_of=None, masking=masking)
    features = {k: np.asarray(row[k]) for k in ("input_ids", "word_starts", "doc_lengths") if k in row}
    out = collator.collate([features], epoch=0, worker=0, first_row=index)
    chosen = np.flatnonzero(out["labels"][0] != IGNORE_INDEX)
    became = out["input_ids"][0]
    assert chosen.size > 0
    choice = collator.choice([features], epoch=0, worker=0, first_row=index)
    taken = np.sort(choice.taken)
    spans = list(zip(choice.candidates.starts[taken].tolist(),
                     (choice.candidates.starts + choice.candidates.sizes)[taken].tolist()))

    output = inspect(prepared[kind], "--row", index, "--mask", "--seed", seed, "--masking", masking, "--max-tokens", 0)
    table = output.split("\n\nmasking:", 1)[1].splitlines()[3:]
    listed, outcomes, table_texts = [], [], []
    for line in table:
        m = _TABLE_LINE.match(line)
        assert m, line
        lo, hi = int(m[1]), int(m[2] or m[1])
        listed.append((lo, hi + 1))
        table_texts.append(m[3])
        outcomes += m[4].split("  ")
    assert listed == spans  # one line per chosen group or span
    assert [p for lo, hi in listed for p in range(lo, hi)] == chosen.tolist()
    if masking == "span":  # one outcome for the whole span
        assert all(len({o.endswith("→<MASK>") for o in line.split("  ")}) == 1 for line in
                   (_TABLE_LINE.match(t)[4] for t in table))
    assert [o.endswith("→<MASK>") for o in outcomes] == (became[chosen] == MASK_ID).tolist()
    kept = became[chosen] == np.asarray(row["input_ids"])[chosen]
    assert [o.endswith("→kept") for o in outcomes] == kept.tolist()
    # the row shows the same groups in brackets, and only those
    bracketed = re.findall(r"\[(.*?)\]", body(output), flags=re.S)
    assert [b.replace("⏎\n", "⏎") for b in bracketed] == table_texts
    assert re.sub(r"\[|\]", "", body(output)) == body(inspect(prepared[kind], "--row", index, "--max-tokens", 0))
    assert f"{chosen.size} of " in output
    other = inspect(prepared[kind], "--row", index, "--mask", "--seed", seed + 1, "--masking", masking,
                    "--max-tokens", 0)
    assert other != output


def test_color(prepared: dict[str, Path]) -> None:
    args = (prepared["sequences"], "--mask", "--max-tokens", 40)
    assert "\x1b[" in inspect(*args, "--color")
    assert "\x1b[" not in inspect(*args, "--no-color")
    assert "\x1b[" not in inspect(*args)  # not a terminal


def test_max_tokens(prepared: dict[str, Path]) -> None:
    docs = rows(prepared["documents"], "document")
    index = int(np.argmax([len(r["input_ids"]) for r in docs]))
    output = inspect(prepared["documents"], "--row", index, "--max-tokens", 5)
    groups = body(output).split("\n…")[0].split("|")
    starts = np.flatnonzero(docs[index]["word_starts"])  # whole groups are shown until 5 tokens are reached
    assert starts[len(groups) - 1] < 5 <= starts[len(groups)]
    assert "more tokens not shown" in output
    seqs = rows(prepared["sequences"], "sequence")
    index = next(i for i, r in enumerate(seqs) if len(r["doc_lengths"]) > 1)
    output = inspect(prepared["sequences"], "--row", index, "--max-tokens", 3)
    assert "more piece(s)" in output and seqs[index]["doc_sources"][-1] in output


def test_user_mistakes(prepared: dict[str, Path], tmp_path: Path) -> None:
    n = len(rows(prepared["sequences"], "sequence"))
    code, output = run("inspect", str(prepared["sequences"]), "--row", str(n))
    assert code == 2 and "out of range" in output and f"holds {n} rows" in output
    docs = tmp_path / "documents"
    shutil.copytree(prepared["documents"], docs)
    manifest = json.loads((docs / "manifest.json").read_text(encoding="utf-8"))
    manifest["config"]["tokenizer"]["path"] = str(tmp_path / "gone.model")
    (docs / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    code, output = run("inspect", str(docs))
    assert code == 2 and "--tokenizer" in output
    assert inspect(docs, "--tokenizer", SAMPLE_MODEL).startswith("row 0 of")
    other = tmp_path / "other.model"
    other.write_bytes(SAMPLE_MODEL.read_bytes() + b"\0")
    code, output = run("inspect", str(docs), "--tokenizer", str(other))
    assert code == 2 and "not the tokenizer" in output
