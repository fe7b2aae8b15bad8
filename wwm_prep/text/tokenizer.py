"""The SentencePiece tokenizer and the per-piece tables that make alignment a matter of array lookups.

Token offsets are not asked of SentencePiece (its proto output is 5x slower than plain ids): with the
identity normalizer, each piece stands for a fixed number of UTF-8 bytes of the text, so a table of
byte lengths indexed by id gives every token's offsets from a cumulative sum, and a table of which pieces
are whitespace only tells the blank tokens apart without looking at the text (but for byte pieces).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.files import sha256_file
from wwm_prep.core.resources import resource
from wwm_prep.core.storage import is_url, local_copy, location, recorded
from wwm_prep.core.specials import find_special_ids

DEFAULT_TOKENIZER = ("sample", "tokenizer", "wwm-prep-sample-unigram.model")
SPACE_MARK = "\u2581"


@dataclass(frozen=True)
class Tokenizer:
    path: Path
    sha256: str
    sp: spm.SentencePieceProcessor
    piece_bytes: np.ndarray  # int64[vocab]: UTF-8 bytes of text a piece stands for; -1 where unknown
    special: np.ndarray  # bool[vocab]: control and unknown pieces, never part of text
    continuation: np.ndarray  # bool[vocab]: byte pieces 0x80-0xBF, which continue a UTF-8 character
    whitespace: np.ndarray  # int8[vocab]: 1 a piece of whitespace only, 0 one with other text, -1 a byte piece
    special_ids: dict[str, int]

    @property
    def vocab_size(self) -> int:
        return int(self.sp.get_piece_size())


def _piece_tables(sp: spm.SentencePieceProcessor) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per piece: bytes of text, special, a continuation byte, whitespace (a byte piece: its character decides)."""
    n = sp.get_piece_size()
    piece_bytes = np.full(n, -1, dtype=np.int64)
    special = np.zeros(n, dtype=bool)
    continuation = np.zeros(n, dtype=bool)
    whitespace = np.zeros(n, dtype=np.int8)
    for i in range(n):
        if sp.is_control(i) or sp.is_unknown(i):
            special[i] = True
            continue
        piece = sp.id_to_piece(i)
        if sp.is_byte(i):
            value = int(piece[3:5], 16)
            piece_bytes[i] = 1
            continuation[i] = value & 0xC0 == 0x80
            whitespace[i] = -1
        else:
            text = piece.replace(SPACE_MARK, " ")
            piece_bytes[i] = len(text.encode("utf-8"))
            whitespace[i] = text.isspace()
    return piece_bytes, special, continuation, whitespace


def special_ids(sp: spm.SentencePieceProcessor) -> dict[str, int]:
    """Ids of the special roles a SentencePiece model has (see `core.specials`); its own pad id wins if set."""
    ids = find_special_ids(sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.piece_to_id, sp.id_to_piece)
    if sp.pad_id() >= 0:
        ids["pad"] = sp.pad_id()
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


@dataclass(frozen=True)
class TokenizerFile:
    """A SentencePiece model as a reader of ids needs it (any normalizer): its checksum, size and special ids."""

    path: Path
    sha256: str
    sp: spm.SentencePieceProcessor
    special_ids: dict[str, int]

    @property
    def pieces(self) -> int:
        return int(self.sp.get_piece_size())


def open_tokenizer(path: Path) -> TokenizerFile:
    path = Path(path)
    sp = load_sentencepiece(path)
    return TokenizerFile(path, sha256_file(path), sp, special_ids(sp))


def recorded_location(given: str | None, loaded: Path) -> str:
    """How a run records its tokenizer so that a reader finds it from any working directory: a URL as given,
    a local file as an absolute path."""
    return given if given is not None and is_url(given) else recorded(loaded)


def locate_tokenizer(recorded_path: str | None, recorded_sha256: str | None, override: Path | None, *,
                     made_with: str, required: bool = True) -> tuple[Path | None, str]:
    """The tokenizer model a record names: `override`, else the recorded path or URL (fetched once into the cache),
    checked against the recorded sha256. Returns its local path and a line saying where it came from; where it
    is not at hand, a WwmPrepError (`override` given, or `required`), else None and the reason.

    `made_with` completes "… is not the tokenizer …" in the error, e.g. "these shards were made with".
    """
    path = Path(override) if override is not None else _recorded(recorded_path)
    if path is None or not path.is_file():
        if override is not None:
            raise WwmPrepError(f"tokenizer not found: {override}")
        wanted = f"the model whose sha256 is {recorded_sha256}" if recorded_sha256 else "the SentencePiece model"
        why = (f"the recorded tokenizer is not here ({recorded_path})" if recorded_path else
               "no tokenizer is recorded")
        if required:
            raise WwmPrepError(f"{why}; give {wanted} with --tokenizer")
        return None, why
    digest = sha256_file(path)
    if recorded_sha256 and digest != recorded_sha256:
        raise WwmPrepError(
            f"{path} is not the tokenizer {made_with} (its sha256 {digest[:16]}… differs from the recorded "
            f"{recorded_sha256[:16]}…); give that model with --tokenizer"
        )
    return path, f"{path} ({'sha256 matches the record' if recorded_sha256 else 'not checked: no sha256 recorded'})"


def _recorded(recorded_path: str | None) -> Path | None:
    """The local file a record names; a URL is fetched into the cache, or None where it cannot be."""
    if not recorded_path:
        return None
    if not is_url(recorded_path):
        return Path(recorded_path)
    from wwm_prep.text.registry import cache_dir

    try:
        return local_copy(location(recorded_path), cache_dir(None))
    except WwmPrepError:
        return None


def load_tokenizer(path: str | Path | None = None) -> Tokenizer:
    """Load a SentencePiece `.model` for alignment; None means the small tokenizer bundled for runs with
    no download."""
    opened = open_tokenizer(Path(path) if path is not None else resource(*DEFAULT_TOKENIZER))
    model, sp = opened.path, opened.sp
    piece_bytes, special, continuation, whitespace = _piece_tables(sp)
    if not _keeps_text(sp, piece_bytes):
        raise WwmPrepError(
            f"{model}: this model rewrites text as it tokenizes (a normalizer such as NFKC), so token offsets "
            "cannot be mapped back to the document; wwm-prep needs the identity normalizer, as llm-jp v3 has"
        )
    return Tokenizer(model, opened.sha256, sp, piece_bytes, special, continuation, whitespace, opened.special_ids)


def _keeps_text(sp: spm.SentencePieceProcessor, piece_bytes: np.ndarray) -> bool:
    """Whether pieces stand for the raw text byte for byte, tried on characters that normalizers change."""
    probe = "ＡＢＣ１２３ｶﾞ㍻ ①\u3000x"
    ids = np.asarray(sp.encode(probe), dtype=np.int64)
    return bool(piece_bytes[ids].sum() == len(probe.encode("utf-8")) + 1 and sp.decode(ids.tolist()) == probe)
