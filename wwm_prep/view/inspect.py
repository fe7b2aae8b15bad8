"""`wwm-prep inspect`: one row of a document or sequence shard, shown as text with its word groups marked.

Each whole-word group is decoded on its own (its pieces' bytes joined, so the byte pieces of one character stay
together) and groups are separated by `|`: `東北|大学|の|研究|者`. Whitespace is made visible. Sequence rows are
shown piece by piece, each between its `<CLS>` and `<SEP>` with its provenance. With `--mask`, the collator
masks the row and what it chose is shown in brackets (and coloured in a terminal), with what each of the tokens
became: whole-word groups, or with `--masking ngram|span` spans of them (`[東北|大学]`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
import pyarrow as pa

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.groups import count_groups
from wwm_prep.core.rows import PieceSource, RowLayout
from wwm_prep.core.shards import ListColumn, ShardSet, open_shards, read_batches
from wwm_prep.core.specials import PIECE_NAMES
from wwm_prep.text.tokenizer import SPACE_MARK, Tokenizer
from wwm_prep.view.pieces import piece_tables, shard_tokenizer

DEFAULT_MAX_TOKENS = 1024
SEPARATOR = "|"
# How characters that would be invisible (or read as markup) are shown.
VISIBLE = {" ": "␣", "\u3000": "⎵", "\t": "⇥", "\n": "⏎\n", "\r": "␍", SEPARATOR: "¦"}
LEGEND = ("word groups are separated by |; ␣ space, ⎵ ideographic space (U+3000), ⏎ newline, ⇥ tab, "
          "␍ carriage return; a | of the text shows as ¦")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u2028\u2029\ufeff]")
CLS, SEP, PAD, MASK = (PIECE_NAMES[role][0] for role in ("cls", "sep", "pad", "mask"))  # how specials are shown

STYLE_SEPARATOR = {"dim": True}
STYLE_MARK = {"fg": "bright_black"}
STYLE_SPECIAL = {"fg": "cyan"}
STYLE_MASKED = {"fg": "black", "bg": "yellow", "bold": True}
STYLE_HEADER = {"bold": True}


@dataclass(frozen=True)
class Row:
    """One row of a shard, and where it lies."""

    kind: str
    index: int
    total: int | None
    shard: Path
    shard_row: int
    input_ids: np.ndarray
    word_starts: np.ndarray
    columns: dict[str, Any]  # the row's other columns, as Python values

    def layout(self) -> RowLayout:
        """Where a sequence row's pieces lie."""
        try:
            return RowLayout.of([self.columns["doc_lengths"]], len(self.input_ids))
        except ValueError as exc:
            raise WwmPrepError(f"{self.shard}, row {self.shard_row:,}: doc_lengths {self.columns['doc_lengths']} do "
                               "not fit the row; the shard is corrupt") from exc


def read_row(shards: ShardSet, index: int) -> Row:
    """Row `index`, counting across the shards in file-name order (the order `datasets` and `stats` read them)."""
    if index < 0:
        raise WwmPrepError(f"--row must be ≥ 0, not {index}")
    known = shards.shard_rows() or {}
    total = sum(known[p.name] for p in shards.paths) if all(p.name in known for p in shards.paths) else None
    if total is not None and index >= total:
        raise WwmPrepError(f"--row {index} is out of range: {shards.dir} holds {total:,} rows (0–{total - 1:,})")
    at = index
    seen = 0
    for path in shards.paths:
        if path.name in known and at >= known[path.name]:  # skip the shard without reading it
            at -= known[path.name]
            seen += known[path.name]
            continue
        for batch in read_batches(path, shards.schema):
            if at < batch.num_rows:
                return _row(shards.kind, index, total, path, batch, at, index - seen - at)
            at -= batch.num_rows
            seen += batch.num_rows
    raise WwmPrepError(f"--row {index} is out of range: {shards.dir} holds {seen:,} rows (0–{seen - 1:,})")


def _row(kind: str, index: int, total: int | None, path: Path, batch: pa.RecordBatch, i: int, before: int) -> Row:
    one = batch.slice(i, 1)
    ids, ws = ListColumn.of(one, "input_ids", np.int64).values, ListColumn.of(one, "word_starts", np.uint8).values
    columns = {name: one.column(name)[0].as_py() for name in one.schema.names
               if name not in ("input_ids", "word_starts")}
    return Row(kind, index, total, path, before + i, ids, ws, columns)


# ---------------------------------------------------------------------------------------------- decoding


class Decoder:
    """Text of runs of tokens, from the pieces' bytes (byte pieces joined before UTF-8 decoding)."""

    def __init__(self, tok: Tokenizer):
        self.tok = tok
        self.sp = tok.sp
        self.dummy_prefix = piece_tables(tok).dummy_prefix

    def token_bytes(self, ids: Sequence[int]) -> list[bytes]:
        out = []
        for i, piece in zip(ids, self.sp.id_to_piece([int(i) for i in ids])):
            if self.sp.is_byte(int(i)):
                out.append(bytes([int(piece[3:5], 16)]))
            else:
                out.append(piece.replace(SPACE_MARK, " ").encode("utf-8"))
        return out

    def text(self, parts: Sequence[bytes]) -> str:
        return b"".join(parts).decode("utf-8", errors="backslashreplace")

    def piece(self, token: int) -> str:
        """A token as a piece name, for tables: byte pieces as <0xE3>, spaces visible."""
        piece = self.sp.id_to_piece(int(token))
        return piece if self.sp.is_byte(int(token)) else visible(piece.replace(SPACE_MARK, " "), breaks=False)


def visible(text: str, style: bool = False, breaks: bool = True) -> str:
    """Whitespace and control characters made visible (optionally styled, for text outside a masked group);
    a newline shows as ⏎ followed by a line break, or without one (`breaks=False`, for one-line tables)."""
    out = []
    for ch in text:
        mark = VISIBLE.get(ch)
        if mark is not None and not breaks:
            mark = mark.rstrip("\n")
        if mark is None and _CONTROL.match(ch):
            mark = f"<U+{ord(ch):04X}>"
        if mark is None:
            out.append(ch)
        elif style and ch != SEPARATOR:
            out.append(click.style(mark.rstrip("\n"), **STYLE_MARK) + ("\n" if mark.endswith("\n") else ""))
        else:
            out.append(mark)
    return "".join(out)


# ---------------------------------------------------------------------------------------------- masking


@dataclass(frozen=True)
class Masking:
    seed: int
    mode: str  # the collator's masking mode
    mode_text: str  # the mode and its parameters, in words
    chosen: np.ndarray  # bool[row length]: positions the collator picked (labels != -100)
    became: np.ndarray  # int64[row length]: the ids after masking
    spans: list[tuple[int, int]]  # [start, end) of each chosen group or span, by position
    groups: int  # the whole-word groups in them
    mask_id: int
    maskable: int
    mlm_probability: float

    def edges(self) -> np.ndarray:
        """bool[row length + 1]: the positions where a chosen group or span starts or ends."""
        edges = np.zeros(len(self.chosen) + 1, dtype=bool)
        edges[[p for span in self.spans for p in span]] = True
        return edges


def describe_mode(collator: Any) -> str:
    """The collator's masking mode and its parameters, for the masking header: which paper's masking this is."""
    if collator.masking == "ngram":
        return f"ngram (Megatron-LM: 1–{collator.max_ngram} whole words, weights 1/n)"
    if collator.masking == "span":
        return (f"span (SpanBERT: geometric lengths in whole words, p {collator.span_p}, at most {collator.max_span}; "
                "80/10/10 per span)")
    return "word (BERT: whole words)"


def mask_row(row: Row, tok: Tokenizer, seed: int, masking: str = "word") -> Masking:
    """What the collator does to this row: seed `seed`, epoch 0, worker 0, and the row's index as its place in
    the stream (as in an unshuffled first epoch read by one worker)."""
    from wwm_prep.train.collator import IGNORE_INDEX, WholeWordMaskCollator

    collator = WholeWordMaskCollator(tok.sp, seed=seed, pad_to_multiple_of=None, masking=masking)
    features: dict[str, Any] = {"input_ids": row.input_ids, "word_starts": row.word_starts}
    if row.kind == "sequences":
        features["doc_lengths"] = np.asarray(row.columns["doc_lengths"], dtype=np.int64)
    stream = {"epoch": 0, "worker": 0, "first_row": row.index}
    out = collator.collate([features], **stream)
    choice = collator.choice([features], **stream)
    taken = np.sort(choice.taken)  # candidates are in position order
    starts = choice.candidates.starts[taken]
    words = choice.candidates.words
    n = len(row.input_ids)
    labels = out["labels"][0, :n]
    content = row.layout().content() if row.kind == "sequences" else np.ones(n, dtype=bool)
    maskable = int(np.count_nonzero(content & ~np.isin(row.input_ids, collator.special_ids)))
    return Masking(seed, collator.masking, describe_mode(collator), labels != IGNORE_INDEX,
                   out["input_ids"][0, :n].copy(),
                   list(zip(starts.tolist(), (starts + choice.candidates.sizes[taken]).tolist())),
                   len(taken) if words is None else int(words[taken].sum()), collator.mask_id, maskable,
                   collator.mlm_probability)


# ---------------------------------------------------------------------------------------------- rendering


@dataclass
class Span:
    """A chosen group or span as it is rendered."""

    start: int  # position in the row
    end: int = -1  # one past its last token, once rendered
    parts: list[str] = field(default_factory=list)  # its text in each of the shown groups, raw (not made visible)


class Renderer:
    def __init__(self, row: Row, decoder: Decoder, masking: Masking | None, max_tokens: int):
        self.row = row
        self.decoder = decoder
        self.masking = masking
        self.edges = None if masking is None else masking.edges()
        self.limit = max_tokens if max_tokens > 0 else len(row.input_ids)
        self.shown = 0  # tokens rendered so far
        self.masked: list[Span] = []  # the chosen spans rendered whole
        self.open: Span | None = None  # the chosen span being rendered

    def span(self, start: int, end: int, document_start: bool) -> tuple[str, bool]:
        """Text of the content tokens [start, end) with its groups marked; False if cut short by --max-tokens."""
        ids = self.row.input_ids[start:end]
        parts = self.decoder.token_bytes(ids.tolist())
        if document_start and self.decoder.dummy_prefix and parts and parts[0].startswith(b" "):
            parts[0] = parts[0][1:]  # the space SentencePiece puts before every text
        starts = np.flatnonzero(self.row.word_starts[start:end])
        starts = np.union1d(starts, [0]) if end > start else starts
        bounds = np.append(starts, end - start)
        out: list[str] = []
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            if self.shown >= self.limit:
                if self.open is not None:  # cut short: closed, not listed
                    out.append(click.style("]", **STYLE_MASKED))
                    self.open = None
                return "".join(out), False
            out.append(self.group(start, a, b, parts))
            self.shown += b - a
        return "".join(out), True

    def group(self, offset: int, a: int, b: int, parts: list[bytes]) -> str:
        """One shown group; a chosen span may start, end or go on in it (a span of several groups keeps their
        `|` inside its brackets)."""
        sep = click.style(SEPARATOR, **(STYLE_MASKED if self.open else STYLE_SEPARATOR)) if a > 0 else ""
        if self.masking is None:
            return sep + visible(self.decoder.text(parts[a:b]), style=True)
        chosen = self.masking.chosen
        # runs between the edges of chosen spans (a collator group is chosen whole; several can share a shown
        # group only around a special token such as <unk>)
        cuts = (np.flatnonzero(self.edges[offset + a + 1 : offset + b]) + 1).tolist()
        out = [sep]
        for x, y in zip([0, *cuts], [*cuts, b - a]):
            text = self.decoder.text(parts[a + x : a + y])
            at = offset + a + x
            if not chosen[at]:
                out.append(visible(text, style=True))
                continue
            if self.open is None:
                self.open = Span(at)
                out.append(click.style("[", **STYLE_MASKED))
            self.open.parts.append(text)
            out.append(click.style(visible(text), **STYLE_MASKED))
            if self.edges[offset + a + y]:
                self.open.end = offset + a + y
                self.masked.append(self.open)
                self.open = None
                out.append(click.style("]", **STYLE_MASKED))
        return "".join(out)


def _special(name: str) -> str:
    return click.style(name, **STYLE_SPECIAL)


def _piece_label(source: str) -> str:
    piece = PieceSource.parse(source)
    if piece is None:
        return source
    what = "whole document" if piece.n == 1 else f"part {piece.k} of {piece.n} of a cut document"
    copy = f", repeat {piece.copy} (subset weight)" if piece.copy else ""
    return f"{source}  ({what}{copy})"


def _document_lines(row: Row, r: Renderer, tokenizer_line: str) -> list[str]:
    c, n = row.columns, len(row.input_ids)
    groups = count_groups(~r.decoder.tok.special[row.input_ids], row.word_starts, np.zeros(1, dtype=np.int64))
    lines = [
        f"document   {c['subset']}  {c['source']}, line {c['line']:,}",
        f"size       {n:,} tokens · {groups:,} word groups · {c['num_chars']:,} characters · "
        f"{c['num_words']:,} words",
        f"tokenizer  {tokenizer_line}",
        LEGEND,
        "",
    ]
    text, complete = r.span(0, n, document_start=True)
    lines.append(text)
    if not complete:
        lines.append(f"… {n - r.shown:,} more tokens not shown (--max-tokens; 0 shows all)")
    return lines


def _sequence_lines(row: Row, r: Renderer, tokenizer_line: str) -> list[str]:
    """The row piece by piece, each with its positions and provenance; pieces past --max-tokens only listed."""
    n, layout = len(row.input_ids), row.layout()
    sizes, fill = layout.lengths.tolist(), int(layout.fill[0])
    pad = n - fill
    lines = [
        f"size       {n:,} tokens: {len(sizes)} piece{'s' * (len(sizes) != 1)}, {fill - 2 * len(sizes):,} document "
        f"tokens, {2 * len(sizes)} {CLS}/{SEP}, {pad:,} {PAD} ({100 * fill / max(n, 1):.1f} % not padding)",
        f"tokenizer  {tokenizer_line}",
        LEGEND,
    ]
    hidden = []
    for k, (first, size, source) in enumerate(zip(layout.starts.tolist(), sizes, row.columns["doc_sources"]), start=1):
        header = (f"piece {k} of {len(sizes)} · positions {first:,}–{first + size - 1:,} · "
                  f"{size - 2:,} tokens · {_piece_label(source)}")
        if r.shown >= r.limit:
            hidden.append(header)
        else:
            piece = PieceSource.parse(source)
            text, complete = r.span(first + 1, first + size - 1, document_start=piece is None or piece.k == 1)
            lines += ["", click.style(header, **STYLE_HEADER),
                      _special(CLS) + text + (_special(SEP) if complete else " …")]
    if hidden:
        lines += ["", f"… not shown (--max-tokens; 0 shows all): {len(hidden)} more piece(s)"]
        lines += [f"  {h}" for h in hidden]
    if pad:
        lines += ["", _special(f"{PAD} × {pad:,}") + f"  (positions {fill:,}–{n - 1:,})"]
    return lines


def render(row: Row, tok: Tokenizer, tokenizer_line: str, *, masking: Masking | None = None,
           max_tokens: int = DEFAULT_MAX_TOKENS) -> str:
    """The row as text (styled with click.style: `click.echo` strips the styles where they do not belong)."""
    decoder = Decoder(tok)
    r = Renderer(row, decoder, masking, max_tokens)
    where = f"row {row.index:,}" + (f" of {row.total:,}" if row.total is not None else "")
    lines = [click.style(f"{where} · {row.kind} · {row.shard.name}, row {row.shard_row:,}", **STYLE_HEADER)]
    lines += (_document_lines if row.kind == "documents" else _sequence_lines)(row, r, tokenizer_line)
    if masking is not None:
        lines += ["", *_mask_table(row, decoder, masking, r)]
    return "\n".join(lines)


def _mask_table(row: Row, decoder: Decoder, masking: Masking, r: Renderer) -> list[str]:
    chosen = np.flatnonzero(masking.chosen)
    became = masking.became[chosen]
    labels = row.input_ids[chosen]
    n_mask = int(np.count_nonzero(became == masking.mask_id))
    n_kept = int(np.count_nonzero(became == labels))
    n_random = len(chosen) - n_mask - n_kept
    unit = "group" if masking.mode == "word" else "span"
    where = (f"{masking.groups:,} groups" if masking.mode == "word" else
             f"{len(masking.spans):,} spans of {masking.groups:,} groups")
    lines = [
        click.style(f"masking: {masking.mode_text}; the collator with seed {masking.seed}, epoch 0, this row as row "
                    f"{row.index:,} of the stream (an unshuffled first epoch, one worker)", **STYLE_HEADER),
        f"  {len(chosen):,} of {masking.maskable:,} maskable tokens chosen "
        f"({100 * len(chosen) / max(masking.maskable, 1):.1f} %; mlm_probability {masking.mlm_probability}) in "
        f"{where}: {n_mask:,} → {MASK}, {n_random:,} → a random token, {n_kept:,} kept",
        f"  positions  {unit}  →  each token: label piece → what it became",
    ]
    for g in r.masked:
        outcomes = []
        for pos in range(g.start, g.end):
            label, new = int(row.input_ids[pos]), int(masking.became[pos])
            if new == masking.mask_id:
                what = click.style(MASK, **STYLE_SPECIAL)
            elif new == label:
                what = "kept"
            else:
                what = f"random {decoder.piece(new)}"
            outcomes.append(f"{decoder.piece(label)}→{what}")
        span = f"{g.start}" if g.end - g.start == 1 else f"{g.start}–{g.end - 1}"
        text = SEPARATOR.join(visible(part, breaks=False) for part in g.parts)
        lines.append(f"  {span:>9}  {click.style('[' + text + ']', **STYLE_MASKED)}  {'  '.join(outcomes)}")
    hidden = len(masking.spans) - len(r.masked)
    if hidden > 0:
        lines.append(f"  … {hidden:,} more masked {unit}(s) beyond --max-tokens")
    return lines


def inspect_row(directory: Path, row: int = 0, *, tokenizer: Path | None = None, mask: bool = False, seed: int = 0,
                max_tokens: int = DEFAULT_MAX_TOKENS, masking: str = "word") -> str:
    shards = open_shards(directory)
    tok, line = shard_tokenizer(shards, tokenizer, required=True)
    assert tok is not None
    the_row = read_row(shards, row)
    shown = mask_row(the_row, tok, seed, masking) if mask else None
    return render(the_row, tok, line, masking=shown, max_tokens=max_tokens)
