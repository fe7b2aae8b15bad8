"""`wwm-prep stats`: what a directory of document or sequence shards holds, read from the shards themselves.

Every count comes from the rows (the manifest's totals are only compared with them), one Arrow record batch
at a time and with array operations over all the batch's tokens at once. Distributions are kept as exact
integer histograms (see `view.hist`), so percentiles are exact and memory is bounded by the longest document,
never by the number of documents.

Sequence rows do not store characters or words: characters are recovered from the tokens with a per-piece
table of the tokenizer (when the model is at hand); words are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.groups import word_groups
from wwm_prep.core.lengths import BANDS, token_shares
from wwm_prep.core.manifest import SequenceManifest
from wwm_prep.core.rows import DOCUMENT_OF_PIECE, SOURCE_PATTERN, RowLayout
from wwm_prep.core.shards import ListColumn, ShardSet, open_shards
from wwm_prep.view.hist import Hist, log2_edges
from wwm_prep.view.pieces import PieceTables, piece_tables, shard_tokenizer

GROUP_EDGES = (1, 2, 3, 4, 5, 6, 9, 17)  # histogram table bins of tokens per group: 1, 2, …, 6–8, 9–16, 17+
PIECE_EDGES = (1, 2, 3, 4, 5, 9, 17)
FILL_EDGES_PCT = (0, 50, 75, 90, 95, 99, 100)  # row fill bins in % of the row (the last is "exactly full")
COUNT_KEYS = ("documents", "characters", "words", "tokens", "groups", "pieces", "cut_documents", "cut_pieces", "cuts")


@dataclass
class Tally:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_KEYS, 0))
    document_tokens: Hist = field(default_factory=Hist)
    group_tokens: Hist = field(default_factory=Hist)


class Counter:
    """Adds up batches into overall and per-subset tallies."""

    def __init__(self) -> None:
        self.all = Tally()
        self.subsets: dict[str, Tally] = {}

    def subset_codes(self, column: pa.Array) -> tuple[np.ndarray, list[Tally]]:
        """Per-row index into the returned tallies, for a string column of subset names."""
        encoded = pc.dictionary_encode(column)
        names = encoded.dictionary.to_pylist()
        tallies = [self.subsets.setdefault(name, Tally()) for name in names]
        return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), tallies

    def count(self, name: str, codes: np.ndarray, tallies: list[Tally], values: np.ndarray | None = None) -> None:
        """Add `values` (or 1 per row) to counter `name`, overall and per subset."""
        sums = np.bincount(codes, weights=values, minlength=len(tallies)) if codes.size else np.zeros(len(tallies))
        self.all.counts[name] += int(round(float(sums.sum())))
        for tally, s in zip(tallies, sums):
            tally.counts[name] += int(round(float(s)))

    def distribution(self, name: str, codes: np.ndarray, tallies: list[Tally], values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.int64)
        if not values.size:
            return
        width = int(values.max()) + 1
        per = np.bincount(codes * width + values, minlength=len(tallies) * width).reshape(len(tallies), width)
        getattr(self.all, name).add_counts(per.sum(axis=0))
        for tally, counts in zip(tallies, per):
            getattr(tally, name).add_counts(counts)


def unmaskable(shards: ShardSet) -> np.ndarray:
    """The special ids the manifest records: tokens no group holds, as the collator never masks them."""
    record = shards.tokenizer_record()
    return np.array(sorted(set(record.special_ids.values())) if record else [], dtype=np.int64)


# ---------------------------------------------------------------------------------------------- documents


def _count_documents(counter: Counter, batch: pa.RecordBatch, unmaskable: np.ndarray) -> None:
    column = ListColumn.of(batch, "input_ids")
    ids, offsets, word_starts = column.values, column.offsets, ListColumn.of(batch, "word_starts").values
    lengths = np.diff(offsets)
    codes, tallies = counter.subset_codes(batch.column("subset"))
    counter.count("documents", codes, tallies)
    counter.count("characters", codes, tallies, batch.column("num_chars").to_numpy(zero_copy_only=False))
    counter.count("words", codes, tallies, batch.column("num_words").to_numpy(zero_copy_only=False))
    counter.count("tokens", codes, tallies, lengths)
    counter.count("pieces", codes, tallies)
    counter.distribution("document_tokens", codes, tallies, lengths)
    doc_starts = offsets[:-1][lengths > 0]
    group_at, sizes, _ = word_groups(~np.isin(ids, unmaskable), word_starts, doc_starts)
    group_codes = codes[np.searchsorted(offsets, group_at, side="right") - 1]
    counter.count("groups", group_codes, tallies)
    counter.distribution("group_tokens", group_codes, tallies, sizes)


# ---------------------------------------------------------------------------------------------- sequences


@dataclass
class Packing:
    seq_len: int | None = None
    rows: int = 0
    pad_tokens: int = 0  # positions after the row's pieces
    pad_ids: int = 0  # positions holding <PAD> (a cross-check of the above)
    row_fill: Hist = field(default_factory=Hist)
    piece_tokens: Hist = field(default_factory=Hist)  # tokens of each piece, without its <CLS>/<SEP>
    pieces_per_row: Hist = field(default_factory=Hist)
    cut: list[tuple[pa.Array, pa.Array, np.ndarray]] = field(default_factory=list)  # (doc key, subset, tokens)
    chars_known: bool = False


def _layout(packing: Packing, batch: pa.RecordBatch, row_lengths: np.ndarray, path: Path) -> RowLayout:
    """The batch's row layout; every row must be the pack's seq_len long and every piece hold its two specials."""
    seq_len = int(row_lengths[0])
    if (row_lengths != seq_len).any() or (packing.seq_len is not None and seq_len != packing.seq_len):
        raise WwmPrepError(f"{path}: rows of different lengths; sequence rows all have the pack's seq_len")
    packing.seq_len = seq_len
    doc_lengths = batch.column("doc_lengths")
    try:
        layout = RowLayout.of(doc_lengths, seq_len)
    except ValueError:
        layout = None
    # a piece of length 0 is dropped from the layout, so it shows as a piece missing
    if layout is None or layout.lengths.size != len(doc_lengths.flatten()) or (layout.lengths < 2).any():
        raise WwmPrepError(f"{path}: doc_lengths do not fit the rows; the shard is corrupt")
    return layout


def _count_pieces(counter: Counter, packing: Packing, sources: pa.Array, tokens: np.ndarray,
                  path: Path) -> tuple[np.ndarray, list[Tally], np.ndarray]:
    """Count the pieces by their provenance; returns each piece's subset code, the tallies, and its k."""
    parts = pc.extract_regex(sources, SOURCE_PATTERN)
    if parts.null_count:
        bad = sources.filter(pc.is_null(parts)).to_pylist()[0]
        raise WwmPrepError(f"{path}: doc_sources entry {bad!r} is not subset:source:line:k/n")
    k = pc.cast(parts.field("k"), pa.int64()).to_numpy()
    n = pc.cast(parts.field("n"), pa.int64()).to_numpy()
    subsets = parts.field("subset")
    codes, tallies = counter.subset_codes(subsets)
    counter.count("pieces", codes, tallies)
    counter.count("tokens", codes, tallies, tokens)
    counter.count("documents", codes, tallies, (k == 1).astype(np.float64))
    counter.count("cut_documents", codes, tallies, ((k == 1) & (n > 1)).astype(np.float64))
    counter.count("cut_pieces", codes, tallies, (n > 1).astype(np.float64))
    counter.count("cuts", codes, tallies, np.where(k == 1, n - 1, 0).astype(np.float64))
    whole = n == 1
    counter.distribution("document_tokens", codes[whole], tallies, tokens[whole])
    if (~whole).any():  # cut documents are put back together once every piece is counted
        keys = pc.replace_substring_regex(sources.filter(pa.array(~whole)), *DOCUMENT_OF_PIECE)
        packing.cut.append((keys, subsets.filter(pa.array(~whole)), tokens[~whole]))
    return codes, tallies, k


def _count_sequences(counter: Counter, packing: Packing, batch: pa.RecordBatch, path: Path,
                     tables: PieceTables | None, pad_id: int | None, unmaskable: np.ndarray) -> None:
    if not batch.num_rows:
        return
    column = ListColumn.of(batch, "input_ids")
    ids, row_offsets, word_starts = column.values, column.offsets, ListColumn.of(batch, "word_starts").values
    layout = _layout(packing, batch, np.diff(row_offsets), path)
    packing.rows += layout.rows
    packing.pad_tokens += int(layout.rows * layout.seq_len - layout.fill.sum())
    if pad_id is not None:
        packing.pad_ids += int(np.count_nonzero(ids == pad_id))
    packing.row_fill.add(layout.fill)
    packing.pieces_per_row.add(layout.counts)
    packing.piece_tokens.add(layout.lengths - 2)

    codes, tallies, k = _count_pieces(counter, packing, batch.column("doc_sources").flatten(), layout.lengths - 2,
                                      path)
    starts, content = layout.starts, layout.content()
    group_at, group_sizes, _ = word_groups(content & ~np.isin(ids, unmaskable), word_starts, starts + 1)
    group_piece = np.searchsorted(starts, group_at, side="right") - 1
    counter.count("groups", codes[group_piece], tallies)
    counter.distribution("group_tokens", codes[group_piece], tallies, group_sizes)
    if tables is not None:
        cs = np.concatenate([[0], np.cumsum(np.where(content, tables.chars[ids], 0))])
        chars = cs[layout.ends] - cs[starts + 1]
        chars -= tables.dummy_prefix * ((k == 1) & tables.space_start[ids[starts + 1]])
        counter.count("characters", codes, tallies, chars)


def _finish_cut_documents(counter: Counter, packing: Packing) -> None:
    """Lengths of the documents cut into pieces, their pieces added up wherever they landed."""
    if not packing.cut:
        return
    table = pa.table({
        "key": pa.concat_arrays([k for k, _, _ in packing.cut]),
        "subset": pa.concat_arrays([s.cast(pa.string()) for _, s, _ in packing.cut]),
        "tokens": pa.array(np.concatenate([t for _, _, t in packing.cut])),
    })
    docs = table.group_by(["key", "subset"]).aggregate([("tokens", "sum")])
    codes, tallies = counter.subset_codes(docs.column("subset").combine_chunks())
    counter.distribution("document_tokens", codes, tallies, docs.column("tokens_sum").to_numpy())
    packing.cut.clear()


def _count_all_sequences(shards: ShardSet, counter: Counter, tokenizer: Path | None,
                         notes: list[str]) -> tuple[Packing, str]:
    """Count every sequence batch; returns the packing and where the tokenizer came from."""
    packing = Packing()
    tok, tokenizer_line = shard_tokenizer(shards, tokenizer, required=False)
    tables = piece_tables(tok) if tok is not None else None
    record = shards.tokenizer_record()
    pad_id = (record.special_ids if record else {}).get("pad", tok.special_ids.get("pad") if tok else None)
    special = unmaskable(shards)
    for path, batch in shards.batches():
        _count_sequences(counter, packing, batch, path, tables, pad_id, special)
    _finish_cut_documents(counter, packing)
    packing.chars_known = tables is not None
    if not packing.chars_known:
        notes.append(f"characters unknown: {tokenizer_line} (sequence rows store no text; give --tokenizer)")
    words = (shards.manifest.documents.get("totals") or {}).get("words") if shards.manifest else None
    notes.append("words are not stored in sequence rows"
                 + (f" (the document manifest counts {words:,})" if isinstance(words, int) else ""))
    if pad_id is not None and packing.pad_ids != packing.pad_tokens:
        notes.append(f"{packing.pad_ids:,} <PAD> ids but {packing.pad_tokens:,} positions after the pieces")
    return packing, tokenizer_line


# ---------------------------------------------------------------------------------------------- summary


@dataclass
class Stats:
    """The JSON-ready summary, and the histograms behind it (for plots)."""

    summary: dict[str, Any]
    counter: Counter
    packing: Packing | None


def _ratio(a: float, b: float, digits: int = 4) -> float | None:
    return round(a / b, digits) if b else None


def _tally_summary(tally: Tally, kind: str, chars_known: bool) -> dict[str, Any]:
    c = tally.counts
    out: dict[str, Any] = {
        "documents": c["documents"],
        "characters": c["characters"] if chars_known else None,
        "words": c["words"] if kind == "documents" else None,
        "tokens": c["tokens"],
        "groups": c["groups"],
        "tokens_per_group": _ratio(c["tokens"], c["groups"]),
        "characters_per_token": _ratio(c["characters"], c["tokens"]) if chars_known else None,
    }
    if kind == "sequences":
        out.update(pieces=c["pieces"], cut_documents=c["cut_documents"], cut_pieces=c["cut_pieces"], cuts=c["cuts"])
    out["document_tokens"] = tally.document_tokens.summary()
    out["group_tokens"] = tally.group_tokens.summary()
    return out


def _cross_check(totals: dict[str, Any], shards: ShardSet) -> dict[str, Any]:
    """The manifest's totals against the counts, and its shard list against the files: any difference means the
    directory holds something the manifest does not vouch for (another run's shards, a half-copied output)."""
    manifest, kind = shards.manifest, shards.kind
    if manifest is None:
        return {"found": False, "mismatches": {}, "unlisted": [], "missing": []}
    recorded = manifest.totals
    names = (("documents", "characters", "words", "tokens", "groups") if kind == "documents" else
             ("documents", "pieces", "tokens", "cut_documents", "cuts", "rows", "pad_tokens"))
    mismatches = {}
    for name in names:
        if name in recorded and totals.get(name) is not None and recorded[name] != totals[name]:
            mismatches[name] = {"shards": totals[name], "manifest": recorded[name]}
    listed, present = set(manifest.shard_rows()), {p.name for p in shards.paths}
    return {"found": True, "compared": [n for n in names if n in recorded], "mismatches": mismatches,
            "unlisted": sorted(present - listed), "missing": sorted(listed - present)}


def disagrees(summary: dict[str, Any]) -> bool:
    """Whether the shards and their manifest disagree (`stats` then exits 1)."""
    check = summary["manifest"]
    return bool(check["mismatches"] or check["unlisted"] or check["missing"])


def _add_packing(summary: dict[str, Any], counter: Counter, packing: Packing,
                 manifest: SequenceManifest | None) -> None:
    """The packing's totals, distributions and histograms, beside the counts of the documents."""
    totals, notes = summary["totals"], summary["notes"]
    seq_len = packing.seq_len or 0
    cells = packing.rows * seq_len
    totals.update(
        rows=packing.rows, seq_len=packing.seq_len, pad_tokens=packing.pad_tokens,
        special_tokens=2 * counter.all.counts["pieces"],
        efficiency=_ratio(cells - packing.pad_tokens, cells, 6),
        token_share=_ratio(counter.all.counts["tokens"], cells, 6),
        pieces_per_row=_ratio(counter.all.counts["pieces"], packing.rows),
    )
    totals["group_splits"] = manifest.totals.get("group_splits") if manifest is not None else None
    if totals["group_splits"] is None:
        notes.append("split long groups unknown: no pack manifest")
    summary["distributions"]["row_fill"] = packing.row_fill.summary()
    summary["distributions"]["pieces_per_row"] = packing.pieces_per_row.summary()
    fill_edges = sorted({int(math.ceil(p / 100 * seq_len)) for p in FILL_EDGES_PCT})
    summary["histograms"]["row_fill"] = packing.row_fill.table(fill_edges, unit_max=seq_len)
    summary["histograms"]["pieces_per_row"] = packing.pieces_per_row.table(PIECE_EDGES)


def length_shares(counter: Counter, packing: Packing | None) -> dict[str, Any]:
    """The share of tokens by the length of the piece they sit in and by the length of their whole document
    (a cut document's pieces added up): they differ by what cutting at the row length does. Document shards
    hold whole documents, so there the two agree."""
    documents = counter.all.document_tokens
    pieces = packing.piece_tokens if packing is not None else documents
    return {"bands": list(BANDS),
            "by_piece": token_shares(np.arange(pieces.counts.size), pieces.counts),
            "by_document": token_shares(np.arange(documents.counts.size), documents.counts)}


def compute_stats(directory: Path, tokenizer: Path | None = None) -> Stats:
    """Statistics of the shards in `directory` (document or sequence shards)."""
    shards = open_shards(directory)
    counter, notes = Counter(), []
    packing: Packing | None = None
    tokenizer_line = None
    if shards.kind == "documents":
        special = unmaskable(shards)
        for _, batch in shards.batches():
            _count_documents(counter, batch, special)
    else:
        packing, tokenizer_line = _count_all_sequences(shards, counter, tokenizer, notes)
    chars_known = packing is None or packing.chars_known
    totals = _tally_summary(counter.all, shards.kind, chars_known)
    summary = {
        "dir": str(shards.dir),
        "kind": shards.kind,
        "schema": {"name": shards.schema.name, "version": shards.schema.version},
        "shards": len(shards.paths),
        "tokenizer": tokenizer_line,
        "totals": totals,
        "distributions": {"document_tokens": totals.pop("document_tokens"), "group_tokens": totals.pop("group_tokens")},
        "histograms": {
            "document_tokens": counter.all.document_tokens.table(log2_edges(counter.all.document_tokens)),
            "group_tokens": counter.all.group_tokens.table(GROUP_EDGES),
        },
        "length_shares": length_shares(counter, packing),
        "subsets": {name: _tally_summary(t, shards.kind, chars_known) for name, t in sorted(counter.subsets.items())},
        "manifest": None,  # below, once the packing's totals are in
        "notes": notes,
    }
    if packing is not None:
        _add_packing(summary, counter, packing, shards.manifest)
    summary["manifest"] = _cross_check(totals, shards)
    return Stats(summary, counter, packing)
