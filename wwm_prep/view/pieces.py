"""The tokenizer a directory of shards was made with, and the per-piece tables that read text back from ids.

Sequence rows store ids only; characters and the space SentencePiece puts before every text are recovered
from these tables by lookups, without decoding a single row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from wwm_prep.core.shards import ShardSet
from wwm_prep.text.tokenizer import SPACE_MARK, Tokenizer, load_tokenizer, locate_tokenizer


def shard_tokenizer(shards: ShardSet, override: Path | None, *, required: bool) -> tuple[Tokenizer | None, str]:
    """The tokenizer the shards were made with (`override`, else the manifest's), checked by sha256, with a
    line saying where it came from (or why there is none)."""
    record = shards.tokenizer_record()
    path, line = locate_tokenizer(record.path if record else None, record.sha256 if record else None, override,
                                  made_with="these shards were made with", required=required)
    return (load_tokenizer(path) if path is not None else None), line


@dataclass(frozen=True)
class PieceTables:
    """Per-id tables for reading text back from ids without decoding."""

    chars: np.ndarray  # int64[vocab]: characters a piece stands for (a byte piece: 1 if it starts a character)
    space_start: np.ndarray  # bool[vocab]: the piece's text begins with a space
    dummy_prefix: int  # 1 if SentencePiece adds a space before every text (add_dummy_prefix), else 0


def piece_tables(tok: Tokenizer) -> PieceTables:
    sp = tok.sp
    texts = pa.array(sp.id_to_piece(list(range(sp.get_piece_size()))), type=pa.string())
    is_byte = pc.match_substring_regex(texts, r"^<0x[0-9A-Fa-f]{2}>$").to_numpy(zero_copy_only=False)
    is_byte &= tok.piece_bytes == 1
    chars = pc.utf8_length(texts).to_numpy(zero_copy_only=False).astype(np.int64)
    chars[is_byte] = (~tok.continuation[is_byte]).astype(np.int64)
    chars[tok.special] = 0
    space_start = pc.or_(pc.starts_with(texts, SPACE_MARK), pc.equal(texts, "<0x20>")).to_numpy(zero_copy_only=False)
    probe = "x"
    dummy = int(tok.piece_bytes[np.asarray(sp.encode(probe), dtype=np.int64)].sum()) - len(probe)
    return PieceTables(chars, space_start & ~tok.special, max(dummy, 0))
