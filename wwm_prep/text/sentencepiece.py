"""The SentencePiece backend: a `.model` file, read through the `sentencepiece` library.

Token offsets are not asked of SentencePiece (its proto output is 5x slower than plain ids): with the identity
normalizer, each piece stands for a fixed number of UTF-8 bytes of the text, so `tables.piece_bytes` gives every
token's offsets from a cumulative sum, less the dummy-prefix space it adds before every text (`prefix_bytes`).
Piece names (`▁`, `<0xNN>`) are read here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import sentencepiece as spm

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.specials import find_special_ids
from wwm_prep.text.base import Encoded, PieceBytes, Tokenizer

SPACE_MARK = "\u2581"


def spelled_piece(piece: str, is_byte: bool) -> bytes:
    """The bytes a piece name stands for: `<0xNN>` one byte, `▁` a space."""
    return bytes([int(piece[3:5], 16)]) if is_byte else piece.replace(SPACE_MARK, " ").encode("utf-8")


def special_ids(sp: spm.SentencePieceProcessor) -> dict[str, int]:
    """Ids of the special roles a SentencePiece model has (see `core.specials`); its own pad id wins if set."""
    ids = find_special_ids(sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.piece_to_id, sp.id_to_piece)
    if sp.pad_id() >= 0:
        ids["pad"] = sp.pad_id()
    return ids


def load_sentencepiece(model: Path) -> spm.SentencePieceProcessor:
    """A SentencePiece model, or a one-line error naming the file."""
    if not model.is_file():
        raise WwmPrepError(f"tokenizer not found: {model} (give a SentencePiece .model or a tokenizer.json)")
    sp = spm.SentencePieceProcessor()
    try:
        sp.load(str(model))
    except (OSError, RuntimeError) as exc:
        raise WwmPrepError(f"{model}: not a SentencePiece model ({exc})") from exc
    return sp


@dataclass(eq=False)
class SentencePieceTokenizer(Tokenizer):
    path: Path
    sha256: str
    sp: spm.SentencePieceProcessor
    special_ids: dict[str, int] = field(default_factory=dict)
    kind: str = "sentencepiece"
    markup: str = SPACE_MARK

    def __post_init__(self) -> None:
        if not self.special_ids:
            self.special_ids = special_ids(self.sp)

    @property
    def vocab_size(self) -> int:
        return int(self.sp.get_piece_size())

    def piece_bytes_source(self) -> PieceBytes:
        sp = self.sp
        n = sp.get_piece_size()
        special = np.zeros(n, dtype=bool)
        byte_piece = np.zeros(n, dtype=bool)
        spelled = []
        for i, piece in enumerate(sp.id_to_piece(list(range(n)))):
            special[i] = sp.is_control(i) or sp.is_unknown(i)
            byte_piece[i] = sp.is_byte(i)
            spelled.append(b"" if special[i] else spelled_piece(piece, bool(byte_piece[i])))
        return PieceBytes(spelled, byte_piece, special)

    def encode(self, texts: list[str]) -> Encoded:
        encode = self.sp.encode  # one text a call: its batch call starts threads of its own in every worker
        return Encoded([encode(text) for text in texts])

    def token_byte_spans(self, text: str, ids: np.ndarray) -> np.ndarray:
        pieces = self.sp.encode(text, return_type="proto").pieces
        if [p.id for p in pieces] != ids.tolist():
            raise AssertionError("SentencePiece gave different ids for the same text")
        return np.array([(p.begin, p.end) for p in pieces], dtype=np.int64).reshape(-1, 2)

    @cached_property
    def _continuing(self) -> spm.SentencePieceProcessor:
        """The same model without `add_dummy_prefix`, to tokenize text that continues a line."""
        from sentencepiece import sentencepiece_model_pb2

        proto = sentencepiece_model_pb2.ModelProto.FromString(self.sp.serialized_model_proto())
        proto.normalizer_spec.add_dummy_prefix = False
        return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())

    def encode_continuing(self, text: str) -> list[int]:
        return list(self._continuing.encode(text))

    def piece_name(self, token: int) -> str:
        return self.sp.id_to_piece(int(token))

    def keeps_text(self) -> bool:
        """Whether pieces stand for the raw text byte for byte, tried on characters that normalizers change."""
        probe = "ＡＢＣ１２３ｶﾞ㍻ ①\u3000x"
        ids = np.asarray(self.sp.encode(probe), dtype=np.int64)
        return bool(self.tables.piece_bytes[ids].sum() == len(probe.encode("utf-8")) + 1
                    and self.sp.decode(ids.tolist()) == probe)
