"""Whole-word groups: where vibrato's word boundaries and SentencePiece's token boundaries coincide.

Everything is computed in UTF-8 byte offsets with array operations over a whole batch of documents
at once (no per-document, per-word or per-token Python work): token offsets come from a per-piece
byte-length table, word offsets from surface lengths and the dictionary's space table.

The contract (docs/design.md): a group edge is placed exactly where a word boundary and a token
boundary coincide; a group made only of whitespace joins the group after it, and whitespace at the
end of a document joins the group before it, so no group is whitespace alone when there is a word.
Whitespace is what `str.isspace()` says, decided per character from the UTF-8 bytes, whatever pieces
encode the character (a byte-fallback U+2029 is as blank as a U+3000 piece).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain

import numpy as np

from wwm_prep.core.arrays import offsets_of


@dataclass(frozen=True)
class Aligned:
    """A batch of documents, tokens end to end, with their whole-word groups: what `align_batch` makes and, once the
    misaligned documents' groups are filled in by `align_offsets`, what segment writes."""

    ids: np.ndarray  # int32, the batch's tokens end to end
    word_starts: np.ndarray  # uint8, 1 where a token starts a group
    token_counts: np.ndarray  # int64 per document
    word_counts: np.ndarray  # int64 per document
    misaligned: np.ndarray  # documents the arithmetic could not align: void word_starts until asked of both tools

    @property
    def exact_path(self) -> int:
        """Documents whose offsets had to be asked of both tools."""
        return len(self.misaligned)


def _lengths(items: list) -> np.ndarray:
    return np.fromiter(map(len, items), dtype=np.int64, count=len(items))


def absent_char(text: str) -> str:
    """A character that does not occur in `text` (NUL nearly always), to join its substrings with."""
    return next(c for c in map(chr, chain(range(0xD800), range(0xE000, 0x110000))) if c not in text)


def string_ends(nested: list[list[str]], sep: str) -> np.ndarray:
    """int64[n + 1]: where each of the n strings of `nested` (end to end) ends, in UTF-8 bytes, from 0; `sep`
    occurs in none of them. They are joined once with `sep` and the separators found in one vectorised search,
    not measured one Python call each."""
    count = sum(map(len, nested))
    raw = np.frombuffer(sep.join(map(sep.join, filter(None, nested))).encode("utf-8"), dtype=np.uint8)
    ends = np.zeros(count + 1, dtype=np.int64)
    if count:
        ends[1:-1] = _starts_of(raw, sep)
        ends[-1] = len(raw)
        ends[1:] -= np.arange(count) * len(sep.encode("utf-8"))
    return ends


# Unicode White_Space as `str.isspace()` has it (no code point above U+3000 is one): the ASCII ones as a byte
# table, the others (two or three bytes in UTF-8) to look for as byte sequences.
_SPACE_CHARS = [chr(c) for c in range(0x3001) if chr(c).isspace()]
_ASCII_SPACE = np.zeros(256, dtype=bool)
_ASCII_SPACE[[ord(c) for c in _SPACE_CHARS if ord(c) < 0x80]] = True
_WIDE_SPACES = tuple(c for c in _SPACE_CHARS if ord(c) >= 0x80)


def _starts_of(raw: np.ndarray, char: str) -> np.ndarray:
    """Byte offsets in `raw` where the UTF-8 bytes of `char` start (UTF-8 never matches mid-character)."""
    seq = np.frombuffer(char.encode("utf-8"), dtype=np.uint8)
    hit = raw[: len(raw) - len(seq) + 1] == seq[0]
    for i in range(1, len(seq)):
        hit &= raw[i : len(raw) - len(seq) + 1 + i] == seq[i]
    return np.flatnonzero(hit)


def present(text: str, chars: Iterable[str]) -> list[str]:
    """The non-ASCII `chars` that occur in `text`: one C-speed scan each, none at all for an ASCII text."""
    return [] if text.isascii() else [c for c in chars if c in text]


def bytes_of(raw: np.ndarray, low: np.ndarray, ascii_table: np.ndarray, chars: Iterable[str]) -> list[np.ndarray]:
    """Offsets of the bytes of `raw` that belong to a character in `ascii_table` (looked up only at the few
    offsets `low`, which hold every byte the table can match) or among `chars` (non-ASCII, all present in
    `raw`): one sorted array for the ASCII ones and one for each of `chars`."""
    parts = [low[ascii_table[raw[low]]]]
    for char in chars:
        width = len(char.encode("utf-8"))
        parts.append((_starts_of(raw, char)[:, None] + np.arange(width)).reshape(-1))
    return parts


def space_bytes(text: str, raw: np.ndarray) -> np.ndarray:
    """bool[len(raw)]: the bytes of `raw` (the UTF-8 of `text`) that belong to a whitespace character."""
    space = np.zeros(len(raw), dtype=bool)
    for at in bytes_of(raw, np.flatnonzero(raw <= 0x20), _ASCII_SPACE, present(text, _WIDE_SPACES)):
        space[at] = True
    return space


# The UTF-8 of every whitespace character as one number (up to three bytes, lead byte highest).
_SPACE_KEYS = np.array(sorted(int.from_bytes(c.encode("utf-8").ljust(3, b"\0"), "big") for c in _SPACE_CHARS))


def in_space_char(raw: np.ndarray, at: np.ndarray) -> np.ndarray:
    """bool per byte offset `at` of `raw` (valid UTF-8): whether the character it is part of is whitespace."""
    lead = at.copy()
    for _ in range(3):  # back to the character's lead byte
        lead -= (lead > 0) & (raw[lead] & 0xC0 == 0x80)
    first = raw[lead].astype(np.int64)
    width = 1 + (first >= 0xC0) + (first >= 0xE0) + (first >= 0xF0)
    key = first << 16
    for i in (1, 2):
        key |= np.where(width > i, raw[np.minimum(lead + i, len(raw) - 1)], 0).astype(np.int64) << (16 - 8 * i)
    return np.isin(key, _SPACE_KEYS)


def _member(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """bool per value: whether it is one of `edges` (sorted, not empty)."""
    return edges[np.minimum(np.searchsorted(edges, values), len(edges) - 1)] == values


def run_firsts(at: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """bool per offset of `at` (sorted, distinct): whether it begins a run of consecutive offsets; a run
    also begins at each of `edges` (document starts), so no run crosses into the next document."""
    first = np.ones(len(at), dtype=bool)
    if len(at):
        first[1:] = at[1:] != at[:-1] + 1
        i = np.minimum(np.searchsorted(at, edges), len(at) - 1)  # edges are few: look each up, not each offset
        first[i[at[i] == edges]] = True
    return first


def blank_tokens(space: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Which tokens, covering bytes [starts, ends), cover only whitespace (or nothing, like the dummy prefix).

    Only a token whose first two bytes are whitespace (or that is one byte long) can be blank, and such tokens
    are few, so only their bytes are looked at (a count over every byte of the batch would cost more than all
    the rest of alignment). The second byte rules out the many "▁word" pieces of text with spaces."""
    blank = ends <= starts
    if not len(space):
        return blank
    last = len(space) - 1
    candidates = np.flatnonzero(~blank & space[np.minimum(starts, last)])
    second = starts[candidates] + 1
    candidates = candidates[(second >= ends[candidates]) | space[np.minimum(second, last)]]
    lengths = ends[candidates] - starts[candidates]
    at = np.repeat(starts[candidates] - offsets_of(lengths)[:-1], lengths) + np.arange(int(lengths.sum()))
    solid = np.bincount(np.repeat(np.arange(len(candidates)), lengths), weights=~space[at], minlength=len(candidates))
    blank[candidates] = solid == 0
    return blank


@dataclass(frozen=True)
class Spaces:
    """The characters vibrato drops with ignore_space, in the form a UTF-8 byte scan needs: a table of the
    ASCII ones, and the few others (NBSP, ideographic space, …) to look for as byte sequences."""

    ascii: np.ndarray  # bool[256]: an ASCII space
    top: int  # the highest ASCII space (0 if none): only bytes up to it are looked up
    others: tuple[str, ...]  # the non-ASCII spaces

    @classmethod
    def from_table(cls, space: np.ndarray) -> Spaces:
        ascii_space = np.zeros(256, dtype=bool)
        ascii_space[:128] = space[:128]
        top = int(np.flatnonzero(ascii_space).max(initial=0))
        return cls(ascii_space, top, tuple(chr(c) for c in np.flatnonzero(space[128:]) + 128))


def char_byte_offsets(codepoints: np.ndarray) -> np.ndarray:
    """Byte offset of each character boundary (length n + 1) from code points."""
    widths = 1 + (codepoints >= 0x80).astype(np.int64) + (codepoints >= 0x800) + (codepoints >= 0x10000)
    return offsets_of(widths)


def group_starts(starts: np.ndarray, whitespace: np.ndarray, doc_tokens: np.ndarray) -> np.ndarray:
    """Group starts from `starts` (bool, in place: True where a token starts on a word boundary),
    with whitespace-only groups merged; `doc_tokens` are the documents' token offsets.

    A blank group lies within a run of whitespace tokens, and those are few: only they are looked at."""
    n = len(starts)
    starts[doc_tokens[:-1][doc_tokens[:-1] < doc_tokens[1:]]] = True
    blank = np.flatnonzero(whitespace)
    if not len(blank):
        return starts
    first = run_firsts(blank, doc_tokens)
    run = np.cumsum(first) - 1
    after = np.append(blank[np.flatnonzero(first)[1:] - 1], blank[-1]) + 1  # the token after each run
    at = np.flatnonzero(starts[blank])  # the blank tokens that start a group
    runs = run[at]
    last = np.ones(len(at), dtype=bool)
    last[:-1] = runs[1:] != runs[:-1]
    nexts = np.append(blank[at[1:]], n)  # where each such group ends: the next start in its run,
    nexts[last] = after[runs[last]]  # or past the run, if the group stops there
    ends_run = np.append(starts, True)[nexts]
    group_blank = ~last | ends_run
    ends_doc = _member(nexts, doc_tokens)
    firsts = blank[at[np.searchsorted(runs, runs[group_blank & ends_doc])]]  # first blank group of a doc's tail
    # A blank group joins the next group of its document: that group loses its start.
    starts[nexts[group_blank & ~ends_doc]] = False
    # Blank groups at the end of a document join its last group that has a word: the first of them loses its start.
    starts[firsts[~_member(firsts, doc_tokens)]] = False
    return starts


def align_batch(
    texts: list[str],
    ids: list[list[int]],
    surfaces: list[list[str]],
    piece_bytes: np.ndarray,
    piece_whitespace: np.ndarray,
    spaces: Spaces,
) -> Aligned:
    """Whole-word groups for a batch of documents from SentencePiece ids and vibrato surfaces alone.

    Works on the UTF-8 bytes of the batch end to end. Vibrato's surfaces tile each document's
    non-space characters in order; each SentencePiece piece stands for `piece_bytes[id]` bytes, and
    the first piece of a document also holds the one-space dummy prefix. Documents for which these
    sums do not add up are listed in `misaligned`. Where they add up, the pieces spell the text, so
    `piece_whitespace[id]` says whether a token is blank (a byte piece: the character it is part of).
    """
    joined = "".join(texts)
    encoded = list(map(str.encode, texts))
    raw = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    doc_bytes = offsets_of(_lengths(encoded))

    # Words: vibrato's surfaces tile the batch's bytes less the runs of spaces it skips.
    parts = bytes_of(raw, np.flatnonzero(raw <= spaces.top), spaces.ascii, present(joined, spaces.others))
    skipped = np.sort(np.concatenate(parts), kind="stable") if len(parts) > 1 else parts[0]  # merges sorted runs
    first = run_firsts(skipped, doc_bytes)
    run_starts = skipped[first]
    skipped_before = offsets_of(np.diff(np.append(np.flatnonzero(first), len(skipped))))
    run_at = run_starts - skipped_before[:-1]  # where each run lies among the kept bytes
    doc_kept = doc_bytes - skipped_before[np.searchsorted(run_starts, doc_bytes)]
    word_counts = _lengths(surfaces)
    doc_words = offsets_of(word_counts)
    word_ends = string_ends(surfaces, absent_char(joined))
    words_ok = np.diff(word_ends[doc_words]) == np.diff(doc_kept)
    word_starts = word_ends[:-1]
    if not words_ok.all():  # count each document from its own start; leave out those that do not add up
        word_starts = word_starts + np.repeat(doc_kept[:-1] - word_ends[doc_words[:-1]], word_counts)
        word_starts = word_starts[np.repeat(words_ok, word_counts)]
    # Each run of skipped spaces moves every word from the first one at or after it on by its length.
    moved = np.diff(np.searchsorted(word_starts, run_at), prepend=0, append=len(word_starts))
    word_starts = word_starts + np.repeat(skipped_before, moved)

    # Tokens: piece k starts where the bytes of the pieces before it end (less each document's dummy prefix).
    token_counts = _lengths(ids)
    doc_tokens = offsets_of(token_counts)
    flat_ids = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=int(doc_tokens[-1]))
    lengths = piece_bytes[flat_ids]
    nonempty = token_counts > 0
    lengths[doc_tokens[:-1][nonempty]] -= 1
    token_bytes = offsets_of(lengths)
    tokens_ok = np.diff(token_bytes[doc_tokens]) == np.diff(doc_bytes)
    if lengths.min(initial=0) < 0:  # a piece of unknown length (<unk>): those documents take the exact path
        tokens_ok &= np.diff(offsets_of(lengths < 0)[doc_tokens]) == 0
    token_starts, token_ends = token_bytes[:-1], token_bytes[1:]
    if not tokens_ok.all():  # count each document from its own start, every offset in range
        per_token = np.repeat(token_bytes[doc_tokens[:-1]] - doc_bytes[:-1], token_counts)
        token_starts = np.clip(token_starts - per_token, 0, len(raw))
        token_ends = np.clip(token_ends - per_token, token_starts, len(raw))

    # A word ends where the next one starts, where skipped spaces start, or where its document ends.
    boundary = np.zeros(len(raw) + 1, dtype=bool)
    boundary[word_starts] = True
    boundary[run_starts] = True
    boundary[doc_bytes] = True
    kind = piece_whitespace[flat_ids]
    blank = kind == 1
    byte = np.flatnonzero(kind < 0)
    blank[byte] = in_space_char(raw, np.minimum(token_starts[byte], len(raw) - 1)) if len(raw) else False
    starts = group_starts(boundary[token_starts], blank, doc_tokens)
    return Aligned(flat_ids, starts.view(np.uint8), token_counts, word_counts, np.flatnonzero(~(words_ok & tokens_ok)))


def align_offsets(
    text: str,
    token_spans: np.ndarray,
    word_spans: np.ndarray,
    ids: np.ndarray,
    piece_continuation: np.ndarray,
) -> np.ndarray:
    """The exact path for a text the arithmetic cannot take: token byte spans as SentencePiece reports
    them and word character spans as vibrato reports them. Returns `word_starts` (uint8)."""
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    byte_at = char_byte_offsets(np.frombuffer(text.encode("utf-32-le"), dtype="<u4"))
    boundary = np.zeros(len(raw) + 1, dtype=bool)
    boundary[byte_at[word_spans.reshape(-1)]] = True
    boundary[0] = True
    spans = np.clip(token_spans, 0, len(raw))
    # Byte pieces after the first of a character report the character's start; they do not start it.
    on_boundary = boundary[spans[:, 0]] & ~piece_continuation[ids]
    blank = blank_tokens(space_bytes(text, raw), spans[:, 0], np.maximum(spans[:, 1], spans[:, 0]))
    return group_starts(on_boundary, blank, np.array([0, len(ids)])).view(np.uint8)
