"""The collator's options: token ids read from a tokenizer (or given), validated once, with the id tables that
masking looks up on every batch.

NumPy only: SentencePiece, transformers and the tokenizer module are imported only when a tokenizer is read.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.specials import LLMJP_V3_IDS, LLMJP_V3_VOCAB_SIZE
from wwm_prep.train.selection import check_rule
from wwm_prep.train.spans import check_masking, length_pmf, length_thresholds

#: Special ids of the llm-jp v3 tokenizer (v3.0b1 / v3.1: every id of its special pieces) and its vocabulary
#: size (v3.0b1), used when the collator is built without a tokenizer.
LLMJP_V3_SPECIALS: dict[str, Any] = {
    "mask_id": LLMJP_V3_IDS["mask"],
    "pad_id": LLMJP_V3_IDS["pad"],
    "special_ids": tuple(sorted(LLMJP_V3_IDS.values())),
    "vocab_size": LLMJP_V3_VOCAB_SIZE,
}


def token_ids(tokenizer: Any = None, **given: Any) -> dict[str, Any]:
    """mask_id, pad_id, special_ids and vocab_size: each as given, else the tokenizer's, else llm-jp v3's."""
    info = dict(LLMJP_V3_SPECIALS) if tokenizer is None else read_tokenizer(tokenizer)
    info.update({key: value for key, value in given.items() if value is not None})
    return info


def read_tokenizer(tokenizer: Any) -> dict[str, Any]:
    """mask_id, pad_id, special_ids and vocab_size from a SentencePiece model or a Hugging Face tokenizer."""
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = _open_named(os.fspath(tokenizer))
    if hasattr(tokenizer, "is_control") and hasattr(tokenizer, "get_piece_size"):  # SentencePieceProcessor
        return _sentencepiece_ids(tokenizer)
    if hasattr(tokenizer, "all_special_ids"):  # Hugging Face tokenizer
        specials = {int(i) for i in tokenizer.all_special_ids}
        if getattr(tokenizer, "unk_token_id", None) is not None:
            specials.add(int(tokenizer.unk_token_id))
        return {"mask_id": tokenizer.mask_token_id, "pad_id": tokenizer.pad_token_id,
                "special_ids": sorted(specials), "vocab_size": len(tokenizer)}
    raise TypeError(
        "tokenizer must be a path to a SentencePiece .model, a SentencePieceProcessor, "
        f"or a Hugging Face tokenizer, not {type(tokenizer).__name__}"
    )


# What the Hugging Face hub takes for a repository id: "name" or "owner/name" of letters, digits and -_. only.
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def _open_named(name: str) -> Any:
    """A tokenizer named by a string: a SentencePiece model file, a Hugging Face tokenizer directory, or a hub id
    (only a string of the hub's form that names no file or directory here)."""
    if os.path.isfile(name) and not name.endswith(".json"):
        from wwm_prep.text.tokenizer import open_tokenizer

        return open_tokenizer(Path(name)).sp
    if not (os.path.exists(name) or _HUB_NAME.fullmatch(name)) or name.endswith(".model"):
        raise FileNotFoundError(f"no tokenizer at {name}")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise WwmPrepError(f"{name} names a Hugging Face tokenizer, which needs transformers "
                           "(pip install 'wwm-prep[torch]'); or give a SentencePiece .model file") from None
    return AutoTokenizer.from_pretrained(name)


def _sentencepiece_ids(sp: Any) -> dict[str, Any]:
    """Mask and pad found by name; every control or unknown piece is special."""
    from wwm_prep.text.tokenizer import special_ids

    roles = special_ids(sp)
    n = int(sp.get_piece_size())
    specials = [i for i in range(n) if sp.is_control(i) or sp.is_unknown(i)]
    return {"mask_id": roles.get("mask"), "pad_id": roles.get("pad"), "special_ids": specials, "vocab_size": n}


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _option(default: Any = dataclasses.MISSING, convert: Callable[[Any], Any] | None = None) -> Any:
    """A collator keyword: its default (none: read from the tokenizer) and how it is normalised once checked."""
    return field(default=default, metadata={"convert": convert} if convert else {})


@dataclass(frozen=True)
class MaskingOptions:
    """Everything a collator is set up with except its random stream (seed, epoch, rows seen), checked once.

    The one definition of the collator's keywords: its signature, its attributes and its ``repr`` are made from
    these fields (:func:`keywords`), each default is written here only. ``special_ids`` always holds the mask and
    pad ids.
    """

    mask_id: int = _option(convert=int)
    pad_id: int = _option(convert=int)
    special_ids: tuple[int, ...] = _option()
    vocab_size: int = _option(convert=int)
    mlm_probability: float = _option(0.15, float)
    mask_replace_prob: float = _option(0.8, float)
    random_replace_prob: float = _option(0.1, float)
    per_document_budget: bool = _option(False, bool)
    rule: str = _option("skip")
    pad_to_multiple_of: int | None = _option(8, _optional_int)
    return_tensors: str = _option("np")
    return_varlen: bool = _option(True, bool)
    masking: str = _option("word")
    max_ngram: int = _option(3, int)
    span_p: float = _option(0.2, float)
    max_span: int = _option(10, int)
    block_attention: bool = _option(False, bool)
    return_document_ids: bool = _option(False, bool)
    #: With special ids 0..k-1 (llm-jp: 0..7), "maskable" is one comparison, ``id >= special_below``.
    special_below: int | None = field(init=False, repr=False, compare=False)
    special_array: np.ndarray = field(init=False, repr=False, compare=False)
    #: The ids random replacements are drawn from: the vocabulary minus the special ids.
    random_pool: np.ndarray = field(init=False, repr=False, compare=False)
    #: Cut points that turn uniform 64-bit draws into the mode's span lengths (``spans.length_thresholds``).
    span_thresholds: np.ndarray = field(init=False, repr=False, compare=False)

    @classmethod
    def of(cls, tokenizer: Any = None, **given: Any) -> MaskingOptions:
        """A collator's keywords checked; the token ids not given are read from `tokenizer` (none: llm-jp v3's)."""
        if unknown := sorted(set(given) - {f.name for f in keywords()}):
            raise TypeError(f"unexpected keyword argument(s): {', '.join(unknown)}")
        ids = token_ids(tokenizer, **{key: given.pop(key, None) for key in LLMJP_V3_SPECIALS})
        return cls(**ids, **given)

    def __post_init__(self) -> None:
        self._check()
        for option in keywords():
            if convert := option.metadata.get("convert"):
                object.__setattr__(self, option.name, convert(getattr(self, option.name)))
        specials = tuple(sorted({int(i) for i in self.special_ids} | {self.mask_id, self.pad_id}))
        object.__setattr__(self, "special_ids", specials)
        object.__setattr__(self, "special_below", len(specials) if specials == tuple(range(len(specials))) else None)
        special_array = np.asarray(specials, dtype=np.int64)
        object.__setattr__(self, "special_array", special_array)
        keep = np.ones(self.vocab_size, dtype=bool)
        keep[special_array[(special_array >= 0) & (special_array < self.vocab_size)]] = False
        object.__setattr__(self, "random_pool", np.flatnonzero(keep).astype(np.int64))
        if self.random_replace_prob > 0 and self.random_pool.size == 0:
            raise ValueError("no non-special token to draw random replacements from")
        object.__setattr__(self, "span_thresholds", length_thresholds(self.span_lengths()))

    def span_lengths(self) -> np.ndarray:
        """P(a span has n whole-word groups), n = 1, 2, …, for this mode and its parameters."""
        return length_pmf(self.masking, self.max_ngram, self.span_p, self.max_span)

    def _check(self) -> None:
        if self.mask_id is None:
            raise ValueError("no mask token id: pass mask_id=")
        if self.pad_id is None:
            raise ValueError("no pad token id: pass pad_id=")
        if not 0.0 <= self.mlm_probability <= 1.0:
            raise ValueError("mlm_probability must lie in [0, 1]")
        if not (0.0 <= self.mask_replace_prob <= 1.0 and 0.0 <= self.random_replace_prob <= 1.0):
            raise ValueError("mask_replace_prob and random_replace_prob must lie in [0, 1]")
        if self.mask_replace_prob + self.random_replace_prob > 1.0 + 1e-12:
            raise ValueError("mask_replace_prob + random_replace_prob must not exceed 1")
        check_return_tensors(self.return_tensors)
        check_rule(self.rule)
        check_masking(self.masking)
        if int(self.max_ngram) < 1 or int(self.max_span) < 1:
            raise ValueError("max_ngram and max_span must be positive integers")
        if not 0.0 < self.span_p <= 1.0:
            raise ValueError("span_p must lie in (0, 1]")
        if self.pad_to_multiple_of is not None and int(self.pad_to_multiple_of) < 1:
            raise ValueError("pad_to_multiple_of must be a positive integer or None")


def keywords() -> tuple[dataclasses.Field, ...]:
    """The collator's keywords, in order: the fields of :class:`MaskingOptions` that are set, not derived."""
    return tuple(f for f in dataclasses.fields(MaskingOptions) if f.init)


def check_return_tensors(return_tensors: str) -> str:
    if return_tensors not in ("np", "pt"):
        raise ValueError("return_tensors must be 'np' or 'pt'")
    return return_tensors
