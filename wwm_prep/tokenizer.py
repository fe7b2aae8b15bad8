"""The SentencePiece tokenizer and the per-piece tables that make alignment a matter of array lookups.

Token offsets are not asked of SentencePiece (its proto output is 5x slower than plain ids): with the
identity normalizer, each piece stands for a fixed number of UTF-8 bytes of the text, so a table of
byte lengths indexed by id gives every token's offsets from a cumulative sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm

from wwm_prep.errors import WwmPrepError
from wwm_prep.resources import resource
from wwm_prep.shards import sha256_file

DEFAULT_TOKENIZER = ("sample", "tokenizer", "wwm-prep-sample-unigram.model")
SPACE_MARK = "\u2581"
# Names of the special pieces in the SentencePiece model, and the Hugging Face form's names for them.
SPECIAL_PIECES = {
    "mask": ("<MASK>", "<MASK|LLM-jp>"),
    "pad": ("<PAD>", "<PAD|LLM-jp>"),
    "cls": ("<CLS>", "<CLS|LLM-jp>"),
    "sep": ("<SEP>", "<SEP|LLM-jp>"),
    "eod": ("<EOD>",),
}
_WHITESPACE_BYTES = frozenset(b" \t\n\r\x0b\x0c")


@dataclass(frozen=True)
class Tokenizer:
    path: Path
    sha256: str
    sp: spm.SentencePieceProcessor
    piece_bytes: np.ndarray  # int64[vocab]: UTF-8 bytes of text a piece stands for; -1 where unknown
    whitespace: np.ndarray  # bool[vocab]: the piece stands only for whitespace
    special: np.ndarray  # bool[vocab]: control and unknown pieces, never part of text
    continuation: np.ndarray  # bool[vocab]: byte pieces 0x80-0xBF, which continue a UTF-8 character
    special_ids: dict[str, int]

    @property
    def vocab_size(self) -> int:
        return int(self.sp.get_piece_size())


def _piece_tables(sp: spm.SentencePieceProcessor) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = sp.get_piece_size()
    piece_bytes = np.full(n, -1, dtype=np.int64)
    whitespace = np.zeros(n, dtype=bool)
    special = np.zeros(n, dtype=bool)
    continuation = np.zeros(n, dtype=bool)
    for i in range(n):
        if sp.is_control(i) or sp.is_unknown(i):
            special[i] = True
            continue
        piece = sp.id_to_piece(i)
        if sp.is_byte(i):
            value = int(piece[3:5], 16)
            piece_bytes[i] = 1
            whitespace[i] = value in _WHITESPACE_BYTES
            continuation[i] = value & 0xC0 == 0x80
        else:
            surface = piece.replace(SPACE_MARK, " ")
            piece_bytes[i] = len(surface.encode("utf-8"))
            whitespace[i] = surface.isspace()
    return piece_bytes, whitespace, special, continuation


def special_ids(sp: spm.SentencePieceProcessor) -> dict[str, int]:
    """Ids of the special pieces a packer and a collator need, found by name so any llm-jp-style model works."""
    ids = {"unk": sp.unk_id(), "bos": sp.bos_id(), "eos": sp.eos_id()}
    for role, names in SPECIAL_PIECES.items():
        found = [sp.piece_to_id(name) for name in names if sp.piece_to_id(name) != sp.unk_id()]
        if found:
            ids[role] = found[0]
    return ids


def load_sentencepiece(model: Path) -> spm.SentencePieceProcessor:
    """A SentencePiece model, or a one-line error naming the file."""
    if not model.is_file():
        raise WwmPrepError(f"tokenizer not found: {model} (give a SentencePiece .model file)")
    sp = spm.SentencePieceProcessor()
    try:
        sp.load(str(model))
    except (OSError, RuntimeError) as exc:
        raise WwmPrepError(f"{model}: not a SentencePiece model ({exc})") from exc
    return sp


def load_tokenizer(path: str | Path | None = None) -> Tokenizer:
    """Load a SentencePiece `.model` for alignment; None means the small tokenizer bundled for runs with
    no download."""
    model = Path(path) if path is not None else resource(*DEFAULT_TOKENIZER)
    sp = load_sentencepiece(model)
    piece_bytes, whitespace, special, continuation = _piece_tables(sp)
    if not _keeps_text(sp, piece_bytes):
        raise WwmPrepError(
            f"{model}: this model rewrites text as it tokenizes (a normalizer such as NFKC), so token offsets "
            "cannot be mapped back to the document; wwm-prep needs the identity normalizer, as llm-jp v3 has"
        )
    return Tokenizer(model, sha256_file(model), sp, piece_bytes, whitespace, special, continuation, special_ids(sp))



def _keeps_text(sp: spm.SentencePieceProcessor, piece_bytes: np.ndarray) -> bool:
    """Whether pieces stand for the raw text byte for byte, tried on characters that normalizers change."""
    probe = "ＡＢＣ１２３ｶﾞ㍻ ①\u3000x"
    ids = np.asarray(sp.encode(probe), dtype=np.int64)
    return bool(piece_bytes[ids].sum() == len(probe.encode("utf-8")) + 1 and sp.decode(ids.tolist()) == probe)
