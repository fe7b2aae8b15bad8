"""`fill-mask` behind the command line: the model's top-k fillers of the masks in a text.

`<MASK>` stands for one token and `<MASK>{word}` for every token of a word, so whole-word masking can
be tried by hand. The text is read with the tokenizer the model declares (see `check.sanity`), or the
one given, checked against that declaration.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wwm_prep.check import checkpoint, network
from wwm_prep.check.sanity import DeclaredModel, read_model_config
from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.specials import PIECE_NAMES
from wwm_prep.text.tokenizer import Tokenizer, locate_tokenizer, open_tokenizer

#: A mask in the text: the SentencePiece name or the Hugging Face one, then `{word}` to mask a whole word.
MASK_MARK = re.compile("(?:" + "|".join(map(re.escape, PIECE_NAMES["mask"][:2])) + r")(?:\{([^{}]*)\})?")


@dataclass
class MaskedText:
    """Token ids of a text with `<MASK>` marks, and what each masked position stands for."""

    ids: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # index in `ids` of each masked token
    labels: list[str] = field(default_factory=list)  # human description of each masked token

    def mask(self, mask_id: int, label: str) -> None:
        self.positions.append(len(self.ids))
        self.labels.append(label)
        self.ids.append(mask_id)


class _Parts:
    """Encodes the stretches of a text one after another: only the first is read as a text's start (with
    SentencePiece's dummy prefix, as a document's start has it), so together they are tokenized as the whole
    text is."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.started = False

    def encode(self, part: str) -> list[int]:
        if not part:
            return []
        tok = self.tokenizer
        ids = tok.encode_continuing(part) if self.started else tok.encode([part]).ids[0]
        self.started = True
        return list(ids)


def encode_masked(text: str, tokenizer_path: Path) -> MaskedText:
    """Tokenize `text`, where `<MASK>` is one masked token and `<MASK>{word}` masks every token of `word`.

    The text between marks is tokenized as it stands, and the ids are those of the whole text. `<MASK|LLM-jp>`
    (the Hugging Face name) is accepted for `<MASK>`. The ids are wrapped `<CLS> … <SEP>` as packed rows are.
    """
    tokenizer = open_tokenizer(tokenizer_path)
    specials = tokenizer.special_ids
    if "mask" not in specials:
        raise WwmPrepError(f"{tokenizer_path} has no <MASK> piece")
    parts = _Parts(tokenizer)
    out = MaskedText(ids=[specials["cls"]] if "cls" in specials else [])
    at = 0
    for n_masks, match in enumerate(MASK_MARK.finditer(text), start=1):
        out.ids += parts.encode(text[at : match.start()])
        at = match.end()
        word = match.group(1)
        if word is None:
            out.mask(specials["mask"], f"<MASK> {n_masks}")
            parts.started = True
            continue
        if not word:
            raise WwmPrepError("an empty word: write <MASK>{word} with the word between the braces, or <MASK>")
        word_ids = parts.encode(word)
        for j, i in enumerate(word_ids):
            piece = tokenizer.piece_name(i)
            out.mask(specials["mask"], f"<MASK> {n_masks} = {word}, token {j + 1} of {len(word_ids)} ({piece})")
    out.ids += parts.encode(text[at:])
    if "sep" in specials:
        out.ids.append(specials["sep"])
    if not out.positions:
        raise WwmPrepError('no <MASK> in the text: mark one token with <MASK>, or a whole word with <MASK>{word}')
    return out


def resolve_tokenizer(declared: DeclaredModel, tokenizer: Path | None) -> Path:
    """The tokenizer to read text with: `tokenizer` (checked against the declaration), else the declared one."""
    path, why = locate_tokenizer(declared.tokenizer_path, declared.tokenizer_sha256, tokenizer,
                                 made_with="the model declares", required=False)
    if path is None:
        raise WwmPrepError(f"the model in {declared.dir}: {why}; give --tokenizer")
    return path


def _check_fits(masked: MaskedText, cfg: network.ModelConfig) -> None:
    if max(masked.ids) >= cfg.vocab_size:
        raise WwmPrepError(f"the tokenizer's ids go up to {max(masked.ids):,}, beyond the model's vocab_size "
                           f"{cfg.vocab_size:,}: not this model's tokenizer")
    if len(masked.ids) > cfg.max_position_embeddings:
        raise WwmPrepError(f"the text is {len(masked.ids):,} tokens, more than the model's "
                           f"{cfg.max_position_embeddings:,} positions")


def fill_mask(model_dir: Path, text: str, *, tokenizer: Path | None = None, k: int = 5) -> dict[str, Any]:
    """The top-k fillers of every masked position of `text` (see `encode_masked` for the syntax)."""
    if k < 1:
        raise WwmPrepError("--top-k must be at least 1")
    declared = read_model_config(model_dir)
    tok_path = resolve_tokenizer(declared, tokenizer)
    masked = encode_masked(text, tok_path)
    cfg = declared.config
    _check_fits(masked, cfg)
    model = checkpoint.load_model(declared.dir)
    ids = np.asarray([masked.ids], dtype=np.int64)
    select = np.zeros_like(ids, dtype=bool)
    select[0, masked.positions] = True
    top_ids, top_p = network.top_k(model, ids, select, k=min(k, cfg.vocab_size))
    tok = open_tokenizer(tok_path)
    n = tok.vocab_size

    def piece(i: int) -> str:
        return tok.piece_name(int(i)) if int(i) < n else f"[id {int(i)}]"  # padded rows of the head

    return {
        "tokenizer": str(tok_path),
        "tokens": [piece(i) for i in masked.ids],
        "masks": [
            {"label": label, "position": pos,
             "candidates": [{"id": int(i), "piece": piece(i), "probability": float(p)} for i, p in zip(ti, tp)]}
            for label, pos, ti, tp in zip(masked.labels, masked.positions, top_ids, top_p)
        ],
    }


def _pad(text: str, width: int) -> str:
    """`text` padded to `width` terminal columns: a wide (CJK) character takes two, so str.ljust misaligns."""
    columns = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(width - columns, 0)


def format_fill_mask(result: Mapping[str, Any]) -> str:
    lines = ["input: " + " ".join(result["tokens"])]
    for m in result["masks"]:
        lines.append(m["label"])
        lines += [f"  {r:>3}. {_pad(c['piece'], 16)} {c['probability']:.3g}" for r, c in enumerate(m["candidates"], 1)]
    return "\n".join(lines)
