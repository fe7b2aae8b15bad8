"""The group contract, checked from outside: adversarial texts and an independent reference.

Plain helpers (no tests here): shared by tests/pipeline/test_contract.py and benchmarks/bench_contract.py.

- `adversarial_text` / `documents()`: texts that mix, in runs, Japanese scripts, ASCII, full- and half-width
  forms, every Unicode whitespace character, U+2581, combining marks, astral characters and control
  characters (never U+0000, which stops MeCab, nor lone surrogates).
- `reference_word_starts`: the contract applied token by token in plain Python, from SentencePiece's proto
  offsets and word spans given in characters; blankness is decided per character with `str.isspace()`,
  whatever pieces spell the character. It shares no code with wwm_prep.pipeline.align.
- `mecab_words` (MeCab through fugashi) and `vibrato_words` (a Segmenter's own tagger): word spans.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import numpy as np

# --- the character classes -------------------------------------------------------------------------


def _span(first: int, last: int) -> list[str]:
    return [chr(c) for c in range(first, last + 1)]


WHITESPACE = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and chr(c).isspace()]
# What the old per-piece rule counted as whitespace when a byte piece spelled it.
ASCII_WHITESPACE = frozenset(" \t\n\r\x0b\x0c")

_CONTROLS = [chr(c) for c in [*range(0x01, 0x09), *range(0x0E, 0x1C), *range(0x7F, 0xA0)] if not chr(c).isspace()]
_EXT_B = [chr(c) for c in range(0x20000, 0x2A6E0, 37)]  # a sample of CJK Extension B

CLASSES: dict[str, list[str]] = {
    "hiragana": _span(0x3041, 0x3096) + ["ー"],
    "katakana": _span(0x30A1, 0x30FA) + ["ー", "・"],
    "kanji": _span(0x4E00, 0x9FA5),
    "halfwidth-katakana": _span(0xFF61, 0xFF9F),
    "ascii": [chr(c) for c in range(0x21, 0x7F)],
    "ascii-words": list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789  "),
    "fullwidth": _span(0xFF01, 0xFF5E),
    "whitespace": WHITESPACE,
    "space-mark": ["\u2581"],
    "combining": _span(0x0300, 0x036F) + ["\u3099", "\u309A"],
    "emoji": _span(0x1F600, 0x1F64F),
    "cjk-ext-b": _EXT_B,
    "control": _CONTROLS,
}
CLASS_NAMES = tuple(CLASSES)
# How often adversarial_text picks each class for a run. U+2581 sends a document down the exact path (SentencePiece
# reads it as a space), so it is rarer: about half of ~1,900-character documents hold one, and both paths are
# exercised.
WEIGHTS = np.array([0.1 if name == "space-mark" else 1.0 for name in CLASS_NAMES])
WEIGHTS /= WEIGHTS.sum()
_POOLS = {name: np.array(chars) for name, chars in CLASSES.items()}
MAX_RUN = 40

assert "\x00" not in "".join(map("".join, CLASSES.values()))
assert not any(0xD800 <= ord(c) <= 0xDFFF for chars in CLASSES.values() for c in chars)


def _spaces(rng: np.random.Generator) -> str:
    pool = _POOLS["whitespace"] if rng.random() < 0.5 else np.array([" "])
    return "".join(rng.choice(pool, size=int(rng.integers(1, 4))))


def adversarial_text(rng: np.random.Generator, n_chars: int) -> str:
    """A document of exactly `n_chars` characters: runs (1..MAX_RUN characters) of one class each, the
    class chosen at random (by WEIGHTS); about one document in four starts, and one in four ends, with spaces (ASCII
    or any whitespace). The same generator state gives the same text."""
    lead = _spaces(rng) if rng.random() < 0.25 else ""
    tail = _spaces(rng) if rng.random() < 0.25 else ""
    tail = tail[: n_chars // 2]
    parts, size = [lead], len(lead)
    while size < n_chars - len(tail):
        pool = _POOLS[CLASS_NAMES[int(rng.choice(len(CLASS_NAMES), p=WEIGHTS))]]
        run = "".join(rng.choice(pool, size=int(rng.integers(1, MAX_RUN + 1))))
        parts.append(run)
        size += len(run)
    return "".join(parts)[: n_chars - len(tail)] + tail


def documents(max_size: int = 3000) -> Any:
    """A hypothesis strategy for documents of 1..max_size characters built from CLASSES: runs of one
    class, sometimes spaces (or other whitespace) before and after, sometimes U+2581 (a class of its own)."""
    from hypothesis import strategies as st

    def runs_of(chars: list[str]) -> Any:
        alphabet = st.sampled_from(chars)
        return st.integers(1, MAX_RUN).flatmap(lambda n: st.text(alphabet, min_size=n, max_size=n))

    run = st.one_of(*(runs_of(CLASSES[name]) for name in CLASS_NAMES))
    # The number of runs is drawn first, so documents reach max_size (a plain list stays short).
    body = st.integers(1, max(1, max_size // 20)).flatmap(lambda n: st.lists(run, min_size=n, max_size=n)).map("".join)
    edge = st.one_of(st.just(""), st.just(" "), st.text(st.sampled_from(WHITESPACE), min_size=1, max_size=3),
                     st.just("\u2581"))
    return st.tuples(edge, body, edge).map(lambda parts: "".join(parts)[:max_size])


# --- word spans ---------------------------------------------------------------------------------------


@cache
def _mecab(dicdir: str) -> Any:
    import fugashi

    return fugashi.GenericTagger(f'-r /dev/null -d "{dicdir}"')


def mecab_words(text: str, dicdir: str) -> list[tuple[int, int]]:
    """Character spans of MeCab's words over the whole document (the spaces it skips are not in them)."""
    spans = []
    position = 0
    for node in _mecab(str(dicdir))(text):
        position += len(node.white_space)
        start = position
        position += len(node.surface)
        spans.append((start, position))
    if position > len(text):
        raise AssertionError(f"MeCab's words run past the text: {position} of {len(text)} characters")
    return spans


def lines(text: str) -> list[tuple[int, int]]:
    """Spans of the lines of a text, each with its trailing "\\n" (only "\\n" ends a line)."""
    return [m.span() for m in re.finditer(r"[^\n]*\n|[^\n]+", text)]


def vibrato_words(text: str, segmenter: Any, split_lines: bool = False) -> list[tuple[int, int]]:
    """Character spans of the words of the segmenter's own vibrato tagger, over the whole text or (as
    Segmenter(split_lines=True) feeds it) one line at a time."""
    tagger = segmenter.dictionary.tagger
    spans = lines(text) if split_lines else [(0, len(text))]
    return [(start + w.start(), start + w.end()) for start, end in spans for w in tagger.tokenize(text[start:end])]


# --- the reference --------------------------------------------------------------------------------------


def char_at_byte(text: str) -> dict[int, int]:
    """Character index at each UTF-8 character boundary of `text` (byte offset -> character offset)."""
    at, position = {}, 0
    for index, char in enumerate(text):
        at[position] = index
        position += len(char.encode("utf-8"))
    at[position] = len(text)
    return at


def token_char_spans(text: str, pieces: Any) -> list[tuple[int, int]]:
    """Character span (begin, end) of each proto piece; the leading byte pieces of a character are empty."""
    at = char_at_byte(text)
    return [(at[p.begin], at[p.end]) for p in pieces]


def candidate_starts(text: str, pieces: Any, words: list[tuple[int, int]]) -> list[int]:
    """1 where a token starts on a word boundary (a word's start or end, or 0) and does not continue a
    character (a piece whose begin is its predecessor's: the byte pieces after a character's first, or
    the first piece after a bare dummy prefix); token 0 always."""
    at = char_at_byte(text)
    bounds = {0}
    for start, end in words:
        bounds.add(start)
        bounds.add(end)
    starts = []
    for k, piece in enumerate(pieces):
        continues = k > 0 and piece.begin == pieces[k - 1].begin
        starts.append(1 if k == 0 or (at[piece.begin] in bounds and not continues) else 0)
    return starts


def groups_of(starts: list[int]) -> list[list[int]]:
    groups: list[list[int]] = []
    for k, start in enumerate(starts):
        if start or not groups:
            groups.append([])
        groups[-1].append(k)
    return groups


def group_text(text: str, pieces: Any, group: list[int], at: dict[int, int] | None = None) -> str:
    """The characters a group covers: from its first piece's begin to its last piece's end."""
    at = char_at_byte(text) if at is None else at
    return text[at[pieces[group[0]].begin] : at[pieces[group[-1]].end]]


def _piece_is_whitespace(sp: Any, piece: Any) -> bool:
    """The old per-piece rule (for diagnostics only): a byte piece of an ASCII space, or a piece whose text
    ("▁" read as a space) is whitespace."""
    if sp.is_byte(piece.id):
        return chr(int(sp.id_to_piece(piece.id)[3:5], 16)) in ASCII_WHITESPACE
    return sp.id_to_piece(piece.id).replace("\u2581", " ").isspace()


def blank_groups(text: str, pieces: Any, groups: list[list[int]]) -> list[bool]:
    """Per group: every character it covers is whitespace (str.isspace, per character)."""
    at = char_at_byte(text)
    return [all(c.isspace() for c in group_text(text, pieces, g, at)) for g in groups]


def merge(groups: list[list[int]], blank: list[bool]) -> list[list[int]]:
    """Blank groups join the group after them; blank groups at the end join the last non-blank one."""
    merged: list[list[int]] = []
    pending: list[int] = []
    for group, is_blank in zip(groups, blank):
        pending += group
        if not is_blank:
            merged.append(pending)
            pending = []
    if pending:
        if merged:
            merged[-1] += pending
        else:
            merged.append(pending)
    return merged


def reference_word_starts(text: str, sp: Any, words: list[tuple[int, int]], *, per_piece: bool = False
                          ) -> list[int]:
    """The contract's word_starts for `text`, from SentencePiece's proto offsets and word spans (characters).

    `per_piece=True` applies the old rule (a group is blank when all its pieces are whitespace pieces),
    only to tell the bug apart in diagnostics."""
    pieces = sp.encode(text, return_type="proto").pieces
    if not len(pieces):
        return []
    groups = groups_of(candidate_starts(text, pieces, words))
    if per_piece:
        blank = [all(_piece_is_whitespace(sp, pieces[k]) for k in g) for g in groups]
    else:
        blank = blank_groups(text, pieces, groups)
    result = [0] * len(pieces)
    for group in merge(groups, blank):
        result[group[0]] = 1
    return result


def document(batch: Any, i: int) -> tuple[np.ndarray, np.ndarray]:
    """The ids and word starts of document i of a segmented batch (an `Aligned`)."""
    start = int(batch.token_counts[:i].sum())
    end = start + int(batch.token_counts[i])
    return batch.ids[start:end], batch.word_starts[start:end]
