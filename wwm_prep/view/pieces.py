"""The tokenizer a directory of shards was made with, and the per-piece tables that read text back from ids.

Sequence rows store ids only; characters and the space a tokenizer puts before every text (SentencePiece's
dummy prefix) are recovered from these tables by lookups, without decoding a single row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wwm_prep.core.shards import ShardSet
from wwm_prep.text.tokenizer import Tokenizer, load_tokenizer, locate_tokenizer


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
    dummy_prefix: int  # bytes the tokenizer adds before every text (SentencePiece's add_dummy_prefix: 1), else 0


def piece_tables(tok: Tokenizer) -> PieceTables:
    tables = tok.tables
    return PieceTables(tables.chars, tables.space_start, tok.prefix_bytes)
