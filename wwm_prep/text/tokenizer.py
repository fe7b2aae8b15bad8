"""Opening a tokenizer, whatever its backend, and checking it against a recorded sha256.

`load_tokenizer(path)` chooses the backend by what `path` names: a `tokenizer.json` or a directory holding one
(`text/hf.py`), else a SentencePiece `.model` (`text/sentencepiece.py`). Both give the `text.base.Tokenizer`
interface, which is all the rest of wwm-prep sees.
"""

from __future__ import annotations

from pathlib import Path

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.files import sha256_file
from wwm_prep.core.resources import resource
from wwm_prep.core.storage import is_url, local_copy, location, recorded
from wwm_prep.text.base import Tokenizer
from wwm_prep.text.hf import directory_sha256, is_hf, load_hf
from wwm_prep.text.sentencepiece import SPACE_MARK, SentencePieceTokenizer, load_sentencepiece, special_ids

DEFAULT_TOKENIZER = ("sample", "tokenizer", "wwm-prep-sample-unigram.model")
__all__ = ["DEFAULT_TOKENIZER", "SPACE_MARK", "Tokenizer", "is_hf", "load_sentencepiece", "load_tokenizer", "locate_tokenizer",
           "open_tokenizer", "recorded_location", "special_ids", "tokenizer_sha256"]


def open_tokenizer(path: str | Path) -> Tokenizer:
    """A tokenizer as a reader of ids needs it (any normalizer): a tokenizer.json, a directory holding one, or
    else a SentencePiece `.model`."""
    path = Path(path)
    if is_hf(path):
        return load_hf(path)
    sp = load_sentencepiece(path)
    return SentencePieceTokenizer(path, sha256_file(path), sp, special_ids(sp))


def tokenizer_sha256(path: Path) -> str:
    """The checksum a record keeps of a tokenizer: a file's sha256, or a tokenizer directory's (see `hf`)."""
    return directory_sha256(path)


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
    if path is None or not (path.is_file() or path.is_dir() and is_hf(path)):
        if override is not None:
            raise WwmPrepError(f"tokenizer not found: {override}")
        wanted = f"the model whose sha256 is {recorded_sha256}" if recorded_sha256 else "the tokenizer"
        why = (f"the recorded tokenizer is not here ({recorded_path})" if recorded_path else
               "no tokenizer is recorded")
        if required:
            raise WwmPrepError(f"{why}; give {wanted} with --tokenizer")
        return None, why
    digest = tokenizer_sha256(path)
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
    """A tokenizer for alignment (see `open_tokenizer`); None means the small SentencePiece model bundled for runs
    with no download. A SentencePiece model must keep the text as it is: its pieces' lengths are its offsets."""
    tokenizer = open_tokenizer(Path(path) if path is not None else resource(*DEFAULT_TOKENIZER))
    if isinstance(tokenizer, SentencePieceTokenizer) and not tokenizer.keeps_text():
        raise WwmPrepError(
            f"{tokenizer.path}: this model rewrites text as it tokenizes (a normalizer such as NFKC), so token "
            "offsets cannot be mapped back to the document; wwm-prep needs the identity normalizer, as llm-jp v3 "
            "has (or give the tokenizer as a tokenizer.json, whose offsets are asked of it)"
        )
    tokenizer.tables, tokenizer.prefix_bytes  # noqa: B018 (built now, before workers fork, not in each of them)
    return tokenizer
