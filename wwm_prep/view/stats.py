"""`wwm-prep stats`: what a directory of document or sequence shards holds, read from the shards themselves.

Every count comes from the rows (the manifest's totals are only compared with them), one Arrow record batch
at a time and with array operations over all the batch's tokens at once. Distributions are kept as exact
integer histograms (`np.bincount` per batch, added up), so percentiles are exact and memory is bounded by the
longest document, never by the number of documents.

Sequence rows do not store characters or words: characters are recovered from the tokens with a per-piece
table of the tokenizer (when the model is at hand); words are left out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.files import sha256_file
from wwm_prep.core.shards import SCHEMA_KEY, Schema, load_schema, read_batches
from wwm_prep.text.tokenizer import SPACE_MARK, Tokenizer, load_tokenizer

KINDS = {"document": "documents", "sequence": "sequences"}  # schema name → manifest kind
PERCENTILES = (("min", 0), ("p10", 10), ("p25", 25), ("p50", 50), ("p75", 75), ("p90", 90), ("p99", 99),
               ("max", 100))
GROUP_EDGES = (1, 2, 3, 4, 5, 6, 9, 17)  # histogram table bins of tokens per group: 1, 2, …, 6–8, 9–16, 17+
PIECE_EDGES = (1, 2, 3, 4, 5, 9, 17)
FILL_EDGES_PCT = (0, 50, 75, 90, 95, 99, 100)  # row fill bins in % of the row (the last is "exactly full")
# doc_sources entries: subset:source:line:k/n[@copy]
_SOURCE = r"^(?P<subset>[^:]*):.*:(?P<k>\d+)/(?P<n>\d+)(?:@\d+)?$"
_SOURCE_PIECE = (r":\d+/\d+(@\d+)?$", r"\1")  # drop k/n, keep @copy: the document a piece belongs to


# ---------------------------------------------------------------------------------------------- shards


@dataclass(frozen=True)
class ShardSet:
    """The shards of a directory, their kind, and the manifest beside them (if any)."""

    dir: Path
    kind: str  # "documents" or "sequences"
    schema: Schema
    paths: list[Path]
    manifest: dict[str, Any] | None

    def batches(self) -> Iterator[tuple[Path, pa.RecordBatch]]:
        for path in self.paths:
            for batch in read_batches(path, self.schema):
                yield path, batch

    def shard_rows(self) -> dict[str, int] | None:
        """Rows of each shard by file name, as the manifest records them (None without a manifest)."""
        m = self.manifest
        if m is None:
            return None
        try:
            if self.kind == "sequences":
                return {s["file"]: int(s["rows"]) for s in m["shards"]}
            return {u["shard"]: int(u["documents"]) for u in m["units"].values()}
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def tokenizer_record(self) -> tuple[str | None, str | None]:
        """(path, sha256) of the tokenizer the shards were made with, as the manifest records them."""
        m = self.manifest or {}
        config = m.get("config") if isinstance(m.get("config"), dict) else {}
        if self.kind == "sequences":
            docs = m.get("documents") if isinstance(m.get("documents"), dict) else {}
            doc_tok = (docs.get("config") or {}).get("tokenizer") or {}
            sha = (config.get("tokenizer") or {}).get("sha256") or doc_tok.get("sha256")
            return doc_tok.get("path"), sha
        tok = config.get("tokenizer") or {}
        return tok.get("path"), tok.get("sha256")


def _shard_schema_name(path: Path) -> str:
    try:
        with pa.OSFile(str(path), "rb") as source:
            meta = pa.ipc.open_stream(source).schema.metadata or {}
    except (OSError, pa.ArrowInvalid) as exc:
        raise WwmPrepError(f"{path}: not an Arrow shard ({exc})") from exc
    return meta.get(SCHEMA_KEY, b"?").decode()


def open_shards(directory: Path) -> ShardSet:
    """The shards of `directory` (`*.arrow`, in file-name order), told apart by the schema in their metadata."""
    directory = Path(directory)
    if not directory.is_dir():
        raise WwmPrepError(f"{directory}: not a directory (give one written by `wwm-prep segment` or `pack`)")
    paths = sorted(p for p in directory.glob("*.arrow") if not p.name.startswith("."))
    if not paths:
        hint = [d.name for d in (directory / "documents", directory / "sequences") if d.is_dir()]
        more = f"; try {' or '.join(str(directory / h) for h in hint)}" if hint else ""
        raise WwmPrepError(f"{directory}: no shards (*.arrow) here{more}")
    names = {p.name: _shard_schema_name(p) for p in paths}
    kinds = {KINDS.get(n) for n in names.values()}
    if None in kinds or len(kinds) != 1:
        found = ", ".join(sorted({f"{n!r} ({f})" for f, n in names.items()}))
        raise WwmPrepError(f"{directory}: shards must all be document or all sequence shards; found schemas {found}")
    kind = kinds.pop()
    manifest = None
    manifest_path = directory / "manifest.json"
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            manifest = None
        if not isinstance(manifest, dict):
            manifest = None
        elif manifest.get("kind") != kind:
            raise WwmPrepError(
                f"{manifest_path} is a {manifest.get('kind')!r} manifest but the shards are {kind}: "
                "the directory mixes outputs"
            )
    schema_name = next(n for n, k in KINDS.items() if k == kind)
    return ShardSet(directory, kind, load_schema(schema_name), paths, manifest)


def resolve_tokenizer(shards: ShardSet, override: Path | None, *, required: bool) -> tuple[Tokenizer | None, str]:
    """The tokenizer the shards were made with: `override`, else the manifest's recorded path, checked against
    the recorded sha256. Returns it with a line saying where it came from (or why there is none)."""
    recorded_path, recorded_sha = shards.tokenizer_record()
    path = Path(override) if override is not None else (Path(recorded_path) if recorded_path else None)
    if path is None or not path.is_file():
        if override is not None:
            raise WwmPrepError(f"tokenizer not found: {override}")
        why = (f"the tokenizer recorded in the manifest is not here ({recorded_path})" if recorded_path
               else "no manifest records the tokenizer")
        if required:
            raise WwmPrepError(f"{why}; give the SentencePiece model with --tokenizer")
        return None, why
    digest = sha256_file(path)
    if recorded_sha and digest != recorded_sha:
        raise WwmPrepError(
            f"{path} is not the tokenizer these shards were made with (its sha256 differs from "
            f"{recorded_sha[:16]}… in the manifest); give that model with --tokenizer"
        )
    tok = load_tokenizer(path)
    check = "sha256 matches the manifest" if recorded_sha else "not checked: no sha256 recorded"
    return tok, f"{path} ({check})"


@dataclass(frozen=True)
class PieceTables:
    """Per-id tables for reading text back from ids without decoding."""

    chars: np.ndarray  # int64[vocab]: characters a piece stands for (a byte piece: 1 if it starts a character)
    space_start: np.ndarray  # bool[vocab]: the piece's text begins with a space
    dummy_prefix: int  # 1 if SentencePiece adds a space before every text (add_dummy_prefix), else 0


def piece_tables(tok: Tokenizer) -> PieceTables:
    sp = tok.sp
    n = sp.get_piece_size()
    texts = pa.array(sp.id_to_piece(list(range(n))), type=pa.string())
    is_byte = pc.match_substring_regex(texts, r"^<0x[0-9A-Fa-f]{2}>$").to_numpy(zero_copy_only=False)
    is_byte &= tok.piece_bytes == 1
    chars = pc.utf8_length(texts).to_numpy(zero_copy_only=False).astype(np.int64)
    chars[is_byte] = (~tok.continuation[is_byte]).astype(np.int64)
    chars[tok.special] = 0
    space_start = pc.or_(pc.starts_with(texts, SPACE_MARK), pc.equal(texts, "<0x20>")).to_numpy(zero_copy_only=False)
    probe = "x"
    dummy = int(tok.piece_bytes[np.asarray(sp.encode(probe), dtype=np.int64)].sum()) - len(probe)
    return PieceTables(chars, space_start & ~tok.special, max(dummy, 0))


# ---------------------------------------------------------------------------------------------- histograms


@dataclass
class Hist:
    """Exact distribution of non-negative integers: counts[v] = how many times v was seen."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.int64)
        if values.size:
            self.add_counts(np.bincount(values))

    def add_counts(self, counts: np.ndarray) -> None:
        if counts.size > self.counts.size:
            self.counts = np.pad(self.counts, (0, counts.size - self.counts.size))
        self.counts[: counts.size] += counts

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @property
    def total(self) -> int:
        return int(np.dot(self.counts, np.arange(self.counts.size, dtype=np.int64)))

    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    def percentile(self, q: float) -> int | None:
        """The smallest value v with at least q % of the values ≤ v (NumPy's `inverted_cdf`)."""
        if not self.n:
            return None
        cdf = np.cumsum(self.counts)
        if q <= 0:
            return int(np.flatnonzero(self.counts)[0])
        return int(np.searchsorted(cdf, q / 100 * self.n - 1e-9 * self.n, side="left"))

    def binned(self, edges: np.ndarray | tuple[int, ...]) -> np.ndarray:
        """Counts in [edges[i], edges[i+1]) and, for the last edge, [edges[-1], ∞)."""
        cdf = np.concatenate([[0], np.cumsum(self.counts)])
        at = np.minimum(np.asarray(edges, dtype=np.int64), self.counts.size)
        upto = np.append(cdf[at], cdf[-1])
        return np.diff(upto)[: len(edges)] if len(edges) else np.zeros(0, dtype=np.int64)

    def summary(self, digits: int = 2) -> dict[str, Any]:
        mean = self.mean()
        return {"n": self.n, "mean": None if mean is None else round(mean, digits),
                **{name: self.percentile(q) for name, q in PERCENTILES}}

    def table(self, edges: tuple[int, ...] | np.ndarray, unit_max: int | None = None) -> list[dict[str, Any]]:
        counts = self.binned(edges)
        n = max(self.n, 1)
        rows = []
        for i, lo in enumerate(edges):
            hi = int(edges[i + 1]) - 1 if i + 1 < len(edges) else unit_max
            rows.append({"from": int(lo), "to": hi, "count": int(counts[i]), "share": round(int(counts[i]) / n, 6)})
        return rows


def log2_edges(hist: Hist, most: int = 10) -> np.ndarray:
    """Power-of-two bin edges (1, 2^k, 2^(k+1), …) covering a histogram in at most `most` bins."""
    top = max(int(hist.counts.size) - 1, 1)
    hi = max(int(math.ceil(math.log2(top + 1))), 1)
    lo = max(hi - most + 1, 1)
    return np.array([1] + [2**i for i in range(lo, hi)], dtype=np.int64)


# ---------------------------------------------------------------------------------------------- counting


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


def _flat(column: pa.ListArray) -> tuple[np.ndarray, np.ndarray]:
    offsets = column.offsets.to_numpy()
    return column.flatten().to_numpy(zero_copy_only=False), (offsets - offsets[0]).astype(np.int64)


def _groups(word_starts: np.ndarray, content: np.ndarray, unit_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start positions and sizes of the word groups among the `content` positions of a flat batch.

    A group starts where word_starts is 1 and at every unit (document, piece) start; it runs over the
    following content tokens up to the next group start."""
    starts = word_starts.astype(bool) & content
    starts[unit_starts] = content[unit_starts]
    positions = np.flatnonzero(content)
    first = np.flatnonzero(starts[positions])
    sizes = np.diff(np.append(first, positions.size))
    return positions[first], sizes


def _count_documents(counter: Counter, batch: pa.RecordBatch) -> None:
    ids, offsets = _flat(batch.column("input_ids"))
    word_starts, _ = _flat(batch.column("word_starts"))
    lengths = np.diff(offsets)
    codes, tallies = counter.subset_codes(batch.column("subset"))
    counter.count("documents", codes, tallies)
    counter.count("characters", codes, tallies, batch.column("num_chars").to_numpy(zero_copy_only=False))
    counter.count("words", codes, tallies, batch.column("num_words").to_numpy(zero_copy_only=False))
    counter.count("tokens", codes, tallies, lengths)
    counter.count("pieces", codes, tallies)
    counter.distribution("document_tokens", codes, tallies, lengths)
    content = np.ones(ids.size, dtype=bool)
    doc_starts = offsets[:-1][lengths > 0]
    group_at, sizes = _groups(word_starts, content, doc_starts)
    group_codes = codes[np.searchsorted(offsets, group_at, side="right") - 1]
    counter.count("groups", group_codes, tallies)
    counter.distribution("group_tokens", group_codes, tallies, sizes)


@dataclass
class Packing:
    seq_len: int | None = None
    rows: int = 0
    pad_tokens: int = 0  # positions after the row's pieces
    pad_ids: int = 0  # positions holding <PAD> (a cross-check of the above)
    row_fill: Hist = field(default_factory=Hist)
    pieces_per_row: Hist = field(default_factory=Hist)
    cut: list[tuple[pa.Array, pa.Array, np.ndarray]] = field(default_factory=list)  # (doc key, subset, tokens)
    chars_known: bool = False


def _count_sequences(counter: Counter, packing: Packing, batch: pa.RecordBatch, path: Path,
                     tables: PieceTables | None, pad_id: int | None) -> None:
    ids, row_offsets = _flat(batch.column("input_ids"))
    word_starts, _ = _flat(batch.column("word_starts"))
    n_rows = batch.num_rows
    if not n_rows:
        return
    row_lengths = np.diff(row_offsets)
    seq_len = int(row_lengths[0])
    if (row_lengths != seq_len).any() or (packing.seq_len is not None and seq_len != packing.seq_len):
        raise WwmPrepError(f"{path}: rows of different lengths; sequence rows all have the pack's seq_len")
    packing.seq_len = seq_len
    sizes, piece_offsets = _flat(batch.column("doc_lengths"))
    sizes = sizes.astype(np.int64)
    per_row = np.diff(piece_offsets)
    row_of = np.repeat(np.arange(n_rows), per_row)
    fill = np.bincount(row_of, weights=sizes, minlength=n_rows).astype(np.int64)
    if (sizes < 2).any() or (fill > seq_len).any():
        raise WwmPrepError(f"{path}: doc_lengths do not fit the rows; the shard is corrupt")
    packing.rows += n_rows
    packing.pad_tokens += int(n_rows * seq_len - fill.sum())
    if pad_id is not None:
        packing.pad_ids += int(np.count_nonzero(ids == pad_id))
    packing.row_fill.add(fill)
    packing.pieces_per_row.add(per_row)

    first = np.cumsum(sizes) - sizes - (np.cumsum(fill) - fill)[row_of] + row_of * seq_len  # each piece's <CLS>
    edges = np.zeros(ids.size + 1, dtype=np.int64)
    np.add.at(edges, first + 1, 1)
    np.add.at(edges, first + sizes - 1, -1)
    content = np.cumsum(edges[:-1]) > 0

    sources = batch.column("doc_sources").flatten()
    parts = pc.extract_regex(sources, _SOURCE)
    if parts.null_count:
        bad = sources.filter(pc.is_null(parts)).to_pylist()[0]
        raise WwmPrepError(f"{path}: doc_sources entry {bad!r} is not subset:source:line:k/n")
    k = pc.cast(parts.field("k"), pa.int64()).to_numpy()
    n = pc.cast(parts.field("n"), pa.int64()).to_numpy()
    codes, tallies = counter.subset_codes(parts.field("subset"))
    tokens = sizes - 2
    counter.count("pieces", codes, tallies)
    counter.count("tokens", codes, tallies, tokens)
    counter.count("documents", codes, tallies, (k == 1).astype(np.float64))
    counter.count("cut_documents", codes, tallies, ((k == 1) & (n > 1)).astype(np.float64))
    counter.count("cut_pieces", codes, tallies, (n > 1).astype(np.float64))
    counter.count("cuts", codes, tallies, np.where(k == 1, n - 1, 0).astype(np.float64))
    whole = n == 1
    counter.distribution("document_tokens", codes[whole], tallies, tokens[whole])
    if (~whole).any():
        keys = pc.replace_substring_regex(sources.filter(pa.array(~whole)), *_SOURCE_PIECE)
        packing.cut.append((keys, parts.field("subset").filter(pa.array(~whole)), tokens[~whole]))

    group_at, group_sizes = _groups(word_starts, content, first + 1)
    group_piece = np.searchsorted(first, group_at, side="right") - 1
    counter.count("groups", codes[group_piece], tallies)
    counter.distribution("group_tokens", codes[group_piece], tallies, group_sizes)
    if tables is not None:
        per_token = np.where(content, tables.chars[ids], 0)
        cs = np.concatenate([[0], np.cumsum(per_token)])
        chars = cs[first + sizes - 1] - cs[first + 1]
        chars -= tables.dummy_prefix * ((k == 1) & tables.space_start[ids[first + 1]])
        counter.count("characters", codes, tallies, chars)
        packing.chars_known = True


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


# ---------------------------------------------------------------------------------------------- report


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


def _cross_check(totals: Mapping[str, Any], manifest: Mapping[str, Any] | None, kind: str) -> dict[str, Any]:
    if manifest is None:
        return {"found": False, "mismatches": {}}
    recorded = manifest.get("totals") or {}
    names = (("documents", "characters", "words", "tokens", "groups") if kind == "documents" else
             ("documents", "pieces", "tokens", "cut_documents", "cuts", "rows", "pad_tokens"))
    mismatches = {}
    for name in names:
        if name in recorded and totals.get(name) is not None and recorded[name] != totals[name]:
            mismatches[name] = {"shards": totals[name], "manifest": recorded[name]}
    return {"found": True, "compared": [n for n in names if n in recorded], "mismatches": mismatches}


def compute_stats(directory: Path, tokenizer: Path | None = None) -> Stats:
    """Statistics of the shards in `directory` (document or sequence shards)."""
    shards = open_shards(directory)
    counter, notes = Counter(), []
    packing: Packing | None = None
    tokenizer_line = None
    if shards.kind == "documents":
        for _, batch in shards.batches():
            _count_documents(counter, batch)
        chars_known = True
    else:
        packing = Packing()
        tok, tokenizer_line = resolve_tokenizer(shards, tokenizer, required=False)
        tables = piece_tables(tok) if tok is not None else None
        special = ((shards.manifest or {}).get("config") or {}).get("tokenizer", {}).get("special_ids", {})
        pad_id = special.get("pad", tok.special_ids.get("pad") if tok is not None else None)
        for path, batch in shards.batches():
            _count_sequences(counter, packing, batch, path, tables, pad_id)
        _finish_cut_documents(counter, packing)
        chars_known = tables is not None
        if not chars_known:
            notes.append(f"characters unknown: {tokenizer_line} (sequence rows store no text; give --tokenizer)")
        doc_totals = ((shards.manifest or {}).get("documents") or {}).get("totals") or {}
        words = doc_totals.get("words")
        notes.append("words are not stored in sequence rows"
                     + (f" (the document manifest counts {words:,})" if isinstance(words, int) else ""))
        if pad_id is not None and packing.pad_ids != packing.pad_tokens:
            notes.append(f"{packing.pad_ids:,} <PAD> ids but {packing.pad_tokens:,} positions after the pieces")

    totals = _tally_summary(counter.all, shards.kind, chars_known)
    distributions = {"document_tokens": totals.pop("document_tokens"), "group_tokens": totals.pop("group_tokens")}
    histograms = {
        "document_tokens": counter.all.document_tokens.table(log2_edges(counter.all.document_tokens)),
        "group_tokens": counter.all.group_tokens.table(GROUP_EDGES),
    }
    if packing is not None:
        seq_len = packing.seq_len or 0
        cells = packing.rows * seq_len
        totals.update(
            rows=packing.rows, seq_len=packing.seq_len, pad_tokens=packing.pad_tokens,
            special_tokens=2 * counter.all.counts["pieces"],
            efficiency=_ratio(cells - packing.pad_tokens, cells, 6),
            token_share=_ratio(counter.all.counts["tokens"], cells, 6),
            pieces_per_row=_ratio(counter.all.counts["pieces"], packing.rows),
        )
        recorded = (shards.manifest or {}).get("totals") or {}
        totals["group_splits"] = recorded.get("group_splits")
        if totals["group_splits"] is None:
            notes.append("split long groups unknown: no pack manifest")
        distributions["row_fill"] = packing.row_fill.summary()
        distributions["pieces_per_row"] = packing.pieces_per_row.summary()
        fill_edges = sorted({int(math.ceil(p / 100 * seq_len)) for p in FILL_EDGES_PCT})
        histograms["row_fill"] = packing.row_fill.table(fill_edges, unit_max=seq_len)
        histograms["pieces_per_row"] = packing.pieces_per_row.table(PIECE_EDGES)
    summary = {
        "dir": str(shards.dir),
        "kind": shards.kind,
        "schema": {"name": shards.schema.name, "version": shards.schema.version},
        "shards": len(shards.paths),
        "tokenizer": tokenizer_line,
        "totals": totals,
        "distributions": distributions,
        "histograms": histograms,
        "subsets": {name: _tally_summary(t, shards.kind, chars_known) for name, t in sorted(counter.subsets.items())},
        "manifest": _cross_check(totals, shards.manifest, shards.kind),
        "notes": notes,
    }
    return Stats(summary, counter, packing)


# ---------------------------------------------------------------------------------------------- text


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _compact(n: int | None) -> str:
    """12,345 or 4.70 M or 1.23 B: numbers that fit a plot title."""
    if n is None:
        return "—"
    for size, unit in ((10**9, "B"), (10**6, "M")):
        if abs(n) >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n:,}"


def _bar(share: float, width: int = 24) -> str:
    full = share * width
    return "█" * int(full) + ("▌" if full - int(full) >= 0.5 else "")


def format_stats(summary: Mapping[str, Any]) -> str:
    """The plain summary tables a person reads."""
    t, kind = summary["totals"], summary["kind"]
    lines = []
    head = f"{summary['dir']}: {kind}, {summary['shards']} shard{'s' * (summary['shards'] != 1)}"
    if kind == "sequences":
        head += f", {t['rows']:,} rows × {_fmt(t['seq_len'])} tokens"
    lines += [head, ""]

    # per subset, metrics as rows
    subsets = summary["subsets"]
    columns = [("all", t)] + list(subsets.items()) if len(subsets) > 1 else [("all", t)]
    metrics = [("documents", "documents"), ("characters", "characters"), ("words", "words"), ("tokens", "tokens"),
               ("word groups", "groups"), ("tokens per group", "tokens_per_group"),
               ("characters per token", "characters_per_token")]
    if kind == "sequences":
        metrics += [("pieces", "pieces"), ("cut documents", "cut_documents")]
    width = max(12, *(len(name) + 1 for name, _ in columns))
    lines.append(f"{'':<22}" + "".join(f"{name:>{width}}" for name, _ in columns))
    for label, key in metrics:
        lines.append(f"{label:<22}" + "".join(f"{_fmt(col.get(key)):>{width}}" for _, col in columns))

    if kind == "sequences":
        lines += ["", "packing"]
        rows = [
            ("rows", _fmt(t["rows"]) + f" × {_fmt(t['seq_len'])} tokens"),
            ("efficiency (non-pad share)", f"{100 * (t['efficiency'] or 0):.2f} %"),
            ("document-token share", f"{100 * (t['token_share'] or 0):.2f} %  (without <CLS>/<SEP>)"),
            ("pad tokens", _fmt(t["pad_tokens"])),
            ("pieces", f"{_fmt(t['pieces'])}  ({_fmt(t['pieces_per_row'])} per row)"),
            ("cut documents", f"{_fmt(t['cut_documents'])}  (into {_fmt(t['cut_pieces'])} pieces; "
                              f"{_fmt(t['cuts'])} cuts)"),
            ("split long groups", f"{_fmt(t['group_splits'])}  (from the pack manifest)"),
        ]
        lines += [f"  {name:<28}{value}" for name, value in rows]

    lines += ["", f"{'distribution':<22}{'mean':>9}" + "".join(f"{name:>8}" for name, _ in PERCENTILES)]
    labels = {"document_tokens": "tokens per document", "group_tokens": "tokens per group",
              "row_fill": "row fill (tokens)", "pieces_per_row": "pieces per row"}
    for key, dist in summary["distributions"].items():
        lines.append(f"{labels[key]:<22}{_fmt(dist['mean']):>9}"
                     + "".join(f"{_fmt(dist[name]):>8}" for name, _ in PERCENTILES))

    titles = {"document_tokens": ("tokens per document", "documents"), "group_tokens": ("tokens per group", "groups"),
              "row_fill": ("row fill (tokens)", "rows"), "pieces_per_row": ("pieces per row", "rows")}
    for key, bins in summary["histograms"].items():
        what, unit = titles[key]
        lines += ["", f"{what:<26}{unit:>12}{'share':>9}"]
        for b in bins:
            if b["to"] is None:
                span = f"{b['from']:,}+"
            elif b["to"] == b["from"]:
                span = f"{b['from']:,}"
            else:
                span = f"{b['from']:,}–{b['to']:,}"
            if key == "row_fill" and t.get("seq_len"):
                to = b["to"] if b["to"] is not None else b["from"]
                lo, hi = 100 * b["from"] / t["seq_len"], 100 * to / t["seq_len"]
                span += f" ({lo:.0f} %)" if b["to"] == b["from"] else f" ({lo:.0f}–{hi:.0f} %)"
            lines.append(f"  {span:<24}{b['count']:>12,}{100 * b['share']:>8.1f}%  {_bar(b['share'])}")

    check = summary["manifest"]
    lines.append("")
    if not check["found"]:
        lines.append("manifest: none here, nothing to cross-check")
    elif check["mismatches"]:
        for name, m in check["mismatches"].items():
            lines.append(f"MISMATCH {name}: shards {m['shards']:,}, manifest {m['manifest']:,}")
    else:
        lines.append(f"manifest totals agree with the shards ({', '.join(check['compared'])})")
    if summary.get("tokenizer"):
        lines.append(f"tokenizer: {summary['tokenizer']}")
    lines += [f"note: {n}" for n in summary["notes"]]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- plot


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise WwmPrepError(
            "--plot needs matplotlib, which is not installed: pip install 'wwm-prep[plot]' (or matplotlib>=3.7)"
        ) from exc


def plot_stats(stats: Stats, path: Path) -> None:
    """Histograms a person reads without the code: titled, axes labelled with units."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    summary, counter, packing = stats.summary, stats.counter, stats.packing
    t = summary["totals"]
    panels = 4 if packing is not None else 2
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5)) if panels == 4 else plt.subplots(1, 2, figsize=(11, 4.2))
    axes = np.asarray(axes).reshape(-1)
    thousands = FuncFormatter(lambda v, _: f"{v:,.0f}")

    # 1. document length: log-spaced bins, stacked by subset
    ax = axes[0]
    doc = counter.all.document_tokens
    top = max(doc.counts.size, 2)
    edges = np.unique(np.round(np.logspace(0, math.log10(top), 36)).astype(np.int64))
    if edges[-1] < top:
        edges = np.append(edges, top)
    names = sorted(counter.subsets) if len(counter.subsets) > 1 else []
    series = [(name, counter.subsets[name].document_tokens) for name in names] or [("all", doc)]
    bottom = np.zeros(len(edges) - 1)
    for name, hist in series:
        counts = hist.binned(edges)[: len(edges) - 1].astype(float)
        ax.bar(edges[:-1], counts, width=np.diff(edges), bottom=bottom, align="edge", label=name,
               edgecolor="white", linewidth=0.3)
        bottom += counts
    ax.set_xscale("log")
    nonzero = np.flatnonzero(doc.counts)
    if nonzero.size:
        ax.set_xlim(max(1, int(nonzero[0]) / 1.5), max(int(nonzero[-1]) * 1.5, 2))
    ax.set_title(f"Document length ({_compact(t['documents'])} documents)", fontsize=10)
    ax.set_xlabel("tokens per document (log scale)")
    ax.set_ylabel("documents")
    if packing is not None and packing.seq_len:
        cap = packing.seq_len - 2
        ax.axvline(cap, color="black", linestyle="--", linewidth=1)
        ax.text(cap, ax.get_ylim()[1] * 0.97, f" row capacity {cap:,}\n (longer ones are cut)", va="top", fontsize=8)
    median = summary["distributions"]["document_tokens"]["p50"]
    if median:
        ax.axvline(median, color="grey", linestyle=":", linewidth=1)
        ax.text(median, ax.get_ylim()[1] * 0.99, f"median {median:,} ", fontsize=8, color="dimgrey", va="top",
                ha="right")
    if names:
        ax.legend(title="subset", fontsize=8, title_fontsize=8)
    ax.xaxis.set_major_formatter(thousands)

    # 2. group length: one bar per size, the tail folded into the last
    ax = axes[1]
    groups = counter.all.group_tokens
    last = int(min(max(8, summary["distributions"]["group_tokens"]["p99"] or 1) + 1, max(groups.counts.size - 1, 1)))
    sizes = np.arange(1, last + 1)
    counts = groups.binned(sizes).astype(float)
    share = counts / max(groups.n, 1)
    bars = ax.bar(sizes, share, color="tab:green", edgecolor="white")
    ax.bar_label(bars, labels=[f"{100 * v:.1f}%" if v >= 0.001 else f"{100 * v:.2f}%" for v in share], fontsize=7)
    ax.set_xticks(sizes, [str(s) if s < last or groups.counts.size <= last + 1 else f"{s}+" for s in sizes])
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_title(f"Word-group length ({_compact(t['groups'])} groups, mean {_fmt(t['tokens_per_group'])} tokens)",
                 fontsize=10)
    ax.set_xlabel("tokens per whole-word group")
    ax.set_ylabel("share of groups")

    if packing is not None and packing.seq_len:
        seq_len = packing.seq_len
        # 3. row fill in % of the row: ~40 bins from the emptiest row to a full one
        ax = axes[2]
        fill = packing.row_fill
        nonzero = np.flatnonzero(fill.counts)
        lowest = int(nonzero[0]) if nonzero.size else 0
        span = seq_len + 1 - lowest
        step = max(1, math.ceil(span / 40))
        token_edges = np.arange(seq_len + 1 - step * math.ceil(span / step), seq_len + 2, step)
        counts = fill.binned(token_edges)[:-1]
        ax.bar(token_edges[:-1] / seq_len * 100, counts, width=step / seq_len * 100, align="edge",
               color="tab:purple", edgecolor="white", linewidth=0.3)
        pad = 0.02 * (token_edges[-1] - token_edges[0]) / seq_len * 100
        ax.set_xlim(token_edges[0] / seq_len * 100 - pad, token_edges[-1] / seq_len * 100 + pad)
        span_pct = span / seq_len * 100
        decimals = 0 if span_pct >= 8 else 1 if span_pct >= 0.8 else 2
        ax.xaxis.set_major_formatter(PercentFormatter(100, decimals=decimals))
        full = int(fill.counts[seq_len]) if fill.counts.size > seq_len else 0
        ax.text(0.02, 0.97, f"{full:,} of {packing.rows:,} rows exactly full\nbars {step:,} token{'s' * (step > 1)} "
                "wide; the last one ends at 100 %", transform=ax.transAxes, va="top", fontsize=8)
        ax.set_title(f"Row fill (efficiency {100 * t['efficiency']:.2f} %, rows of {seq_len:,} tokens)", fontsize=10)
        ax.set_xlabel(f"row fill: % of the {seq_len:,} tokens that are not padding")
        ax.set_ylabel("rows")
        # 4. pieces per row
        ax = axes[3]
        ppr = packing.pieces_per_row
        ks = np.arange(1, max(ppr.counts.size, 2))
        bars = ax.bar(ks, ppr.counts[1:].astype(float) if ppr.counts.size > 1 else [0], color="tab:orange",
                      edgecolor="white")
        if ks.size <= 30:
            ax.bar_label(bars, labels=[f"{int(v):,}" if v else "" for v in bars.datavalues], fontsize=7)
        step = max(1, int(math.ceil(ks.size / 20)))
        ax.set_xticks(ks[::step])
        ax.set_title(f"Pieces per row (mean {_fmt(t['pieces_per_row'])}; {_compact(t['cut_documents'])} documents cut)",
                     fontsize=10)
        ax.set_xlabel("document pieces packed into a row (<CLS> … <SEP> each)")
        ax.set_ylabel("rows")
    for i, ax in enumerate(axes):
        if i != 1:  # the group panel shows shares
            ax.yaxis.set_major_formatter(thousands)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    title = f"wwm-prep stats — {summary['dir']} ({summary['kind']}: {_compact(t['tokens'])} tokens"
    title += f" in {_compact(t['rows'])} rows)" if packing is not None else f" in {_compact(t['documents'])} documents)"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
