"""What every tokenizer backend gives the rest of wwm-prep: ids of a batch, offsets where they must be asked,
per-id tables, the special ids by role and a sha256. Nothing outside `text/` sees a backend's own objects.

A backend says what each of its pieces spells as bytes (`PieceBytes`); the tables that alignment, pack and the
views read (bytes per piece, whitespace, sentence ends, characters, display names) are derived from that here,
once, for every backend alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

#: Sentence ends that a cut in `pack` prefers (a piece's text ending with one of them).
SENTENCE_ENDS = ("。", "！", "？", "\n")


@dataclass(frozen=True)
class PieceBytes:
    """What each id spells: its bytes (empty for a special id), and whether it is one raw byte of the text
    (a byte-fallback piece, or a byte-level token that is not a whole character)."""

    spelled: list[bytes]
    byte_piece: np.ndarray  # bool[vocab]: a piece of one raw byte, whose character the text decides
    special: np.ndarray  # bool[vocab]: control and unknown pieces, never part of text


@dataclass(frozen=True)
class PieceTables:
    """Per-id tables, all indexed by id, derived from `PieceBytes`."""

    piece_bytes: np.ndarray  # int64: UTF-8 bytes of text a piece stands for; -1 for a special piece
    whitespace: np.ndarray  # int8: 1 whitespace only, 0 other text, -1 a byte piece (its character decides)
    continuation: np.ndarray  # bool: a byte piece 0x80-0xBF, which continues a UTF-8 character
    chars: np.ndarray  # int64: characters a piece starts (bytes that are not UTF-8 continuation bytes)
    space_start: np.ndarray  # bool: the piece's text begins with a space
    sentence_end: np.ndarray  # bool: the piece's text ends with 。！？ or a newline
    newline: np.ndarray  # bool: the piece's text starts with a newline


def piece_tables(pieces: PieceBytes) -> PieceTables:
    """The tables of every backend, from the bytes each piece spells (one pass over the vocabulary, at load)."""
    spelled, byte_piece, special = pieces.spelled, pieces.byte_piece, pieces.special
    n = len(spelled)
    lengths = np.fromiter(map(len, spelled), dtype=np.int64, count=n)
    flat = np.frombuffer(b"".join(spelled), dtype=np.uint8)
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    nonempty = lengths > 0
    first = np.zeros(n, dtype=np.int64)
    last = np.zeros(n, dtype=np.int64)
    first[nonempty] = flat[starts[:-1][nonempty]]
    last[nonempty] = flat[starts[1:][nonempty] - 1]
    lead = np.zeros(len(flat) + 1, dtype=np.int64)
    np.cumsum((flat & 0xC0) != 0x80, out=lead[1:])
    chars = lead[starts[1:]] - lead[starts[:-1]]
    texts = [b.decode("utf-8", errors="replace") for b in spelled]
    whitespace = np.fromiter((t.isspace() for t in texts), dtype=np.int8, count=n)
    whitespace[byte_piece] = -1
    ends = np.fromiter((t.endswith(SENTENCE_ENDS) for t in texts), dtype=bool, count=n)
    piece_bytes = np.where(special, -1, lengths)
    return PieceTables(
        piece_bytes=piece_bytes,
        whitespace=np.where(special, 0, whitespace).astype(np.int8),
        continuation=byte_piece & nonempty & (first & 0xC0 == 0x80),
        chars=np.where(special, 0, chars),
        space_start=~special & nonempty & (first == 0x20),
        sentence_end=~special & (ends | (byte_piece & (last == 0x0A))),
        newline=~special & nonempty & (first == 0x0A),
    )


@dataclass(frozen=True)
class Encoded:
    """Ids of a batch of texts and, where the backend reports them, each token's character offsets in the
    original text (flat, the batch's tokens end to end; a token may share characters with its neighbours)."""

    ids: list[list[int]]
    char_starts: np.ndarray | None = None  # int64
    char_ends: np.ndarray | None = None  # int64


class Tokenizer(ABC):
    """A tokenizer as wwm-prep uses it. A backend sets these attributes and implements the methods below."""

    path: Path  # the file (or directory) it was loaded from
    sha256: str  # of what was loaded: what a record checks
    special_ids: dict[str, int]  # role → id (unk, bos, eos, mask, pad, cls, sep, eod: those it has)
    kind: str  # "sentencepiece" or "tokenizer.json"
    #: characters a text may hold that the tokenizer reads as markup (SentencePiece's ▁), so such a text may
    #: not be given back exactly by decoding its ids
    markup: str = ""

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def piece_bytes_source(self) -> PieceBytes:
        """What each id spells (the one place a backend's piece names are read)."""

    @abstractmethod
    def encode(self, texts: list[str]) -> Encoded:
        """Ids of each text, as the model will see it (no special tokens added)."""

    @abstractmethod
    def token_byte_spans(self, text: str, ids: np.ndarray) -> np.ndarray:
        """int64[n, 2]: each token's byte span in `text`, asked of the tokenizer (the slow, exact path)."""

    @abstractmethod
    def encode_continuing(self, text: str) -> list[int]:
        """Ids of `text` read as the continuation of a text already begun (no dummy prefix)."""

    @abstractmethod
    def piece_name(self, token: int) -> str:
        """The tokenizer's own name of a piece (`▁の`, `<0xE3>`, `##の`, `Ġ`), for tables and errors."""

    @cached_property
    def prefix_bytes(self) -> int:
        """Bytes the tokenizer adds before every text (SentencePiece's dummy-prefix space, a Metaspace ▁), which
        `tables.piece_bytes` count: what a one-letter text's tokens spell beyond the letter."""
        spelled = self.tables.piece_bytes[np.asarray(self.encode(["x"]).ids[0], dtype=np.int64)]
        return max(int(spelled.sum()) - 1, 0) if (spelled >= 0).all() else 0

    @cached_property
    def tables(self) -> PieceTables:
        return piece_tables(self.spelling)

    @cached_property
    def spelling(self) -> PieceBytes:
        return self.piece_bytes_source()

    @property
    def special(self) -> np.ndarray:
        """bool[vocab]: ids that are never text (control and unknown pieces, added special tokens)."""
        return self.spelling.special

    def token_bytes(self, ids: np.ndarray | list[int]) -> list[bytes]:
        """The bytes each token spells (a byte piece: its one byte; a special one: its name), to join and decode
        for display."""
        spelled, special = self.spelling.spelled, self.special
        return [self.piece_name(i).encode("utf-8") if special[i] else spelled[i] for i in map(int, ids)]

    def display(self, token: int) -> str:
        """A piece for tables: its text where it is whole characters, else its bytes as <0xNN>; specials by name."""
        token = int(token)
        if self.special[token]:
            return self.piece_name(token)
        raw = self.spelling.spelled[token]
        if not self.spelling.byte_piece[token]:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return "".join(f"<0x{b:02X}>" for b in raw)
