"""The Hugging Face backend: a `tokenizer.json` (Unigram, BPE, byte-level BPE, WordPiece), read through the Rust
`tokenizers` library, with `tokenizer_config.json` / `special_tokens_map.json` beside it where present.

Unlike SentencePiece's pieces, these tokens need not tile the text: a byte-level token may hold part of a
character, WordPiece leaves spaces out, and a normalizer (NFKC, lowercasing) rewrites text before it is split.
So alignment asks this backend for every token's character offsets in the original text (the batch call, which
runs in Rust outside the GIL) instead of adding up per-piece lengths.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.files import sha256_file
from wwm_prep.core.specials import PIECE_NAMES
from wwm_prep.text.base import Encoded, PieceBytes, Tokenizer
from wwm_prep.text.sentencepiece import SPACE_MARK, spelled_piece

TOKENIZER_JSON = "tokenizer.json"
#: The files of a tokenizer directory that decide its ids and roles, in the order they are hashed.
CONFIG_FILES = (TOKENIZER_JSON, "tokenizer_config.json", "special_tokens_map.json")
ROLES = ("unk", "bos", "eos", "mask", "pad", "cls", "sep")


def is_hf(path: Path) -> bool:
    """Whether `path` names a tokenizer.json or a directory holding one."""
    return path.suffix == ".json" or (path.is_dir() and (path / TOKENIZER_JSON).is_file())


def json_file(path: Path) -> Path:
    return path / TOKENIZER_JSON if path.is_dir() else path


def directory_sha256(path: Path) -> str:
    """One digest of what decides the tokenizer: each of CONFIG_FILES present, by name and sha256 (a file alone:
    its own sha256, as for a SentencePiece model)."""
    if not path.is_dir():
        return sha256_file(path)
    digest = hashlib.sha256()
    for name in CONFIG_FILES:
        if (path / name).is_file():
            digest.update(f"{name}\0{sha256_file(path / name)}\n".encode())
    return digest.hexdigest()


def _bytes_of_unicode() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: the printable character that stands for each byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    shifted = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + shifted)] = b
            shifted += 1
    return table


def _components(spec: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A normalizer, pre-tokenizer or decoder spec and, for a Sequence, its members."""
    if not spec:
        return []
    members = spec.get("pretokenizers") or spec.get("decoders") or spec.get("normalizers") or []
    return [spec, *(m for member in members for m in _components(member))]


def _types(spec: dict[str, Any] | None) -> set[str]:
    return {c.get("type", "") for c in _components(spec)}


def _role_names(directory: Path | None) -> dict[str, str]:
    """The tokens that tokenizer_config.json and special_tokens_map.json name for each role (the latter wins)."""
    names: dict[str, str] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if directory is None or not (directory / name).is_file():
            continue
        try:
            config = json.loads((directory / name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise WwmPrepError(f"{directory / name}: not a JSON file ({exc})") from exc
        for role in ROLES:
            value = config.get(f"{role}_token")
            value = value.get("content") if isinstance(value, dict) else value
            if isinstance(value, str):
                names[role] = value
    return names


@dataclass(eq=False)
class HFTokenizer(Tokenizer):
    path: Path
    sha256: str
    tk: Any  # tokenizers.Tokenizer
    spec: dict[str, Any]  # tokenizer.json as parsed
    special_ids: dict[str, int] = field(default_factory=dict)
    kind: str = "tokenizer.json"
    markup: str = ""

    @property
    def vocab_size(self) -> int:
        return int(self.tk.get_vocab_size(with_added_tokens=True))

    def _scheme(self) -> str:
        """How token strings spell bytes: byte-level, WordPiece's ##, SentencePiece's ▁ and <0xNN>, or plain."""
        kinds = _types(self.spec.get("pre_tokenizer")) | _types(self.spec.get("decoder"))
        model = self.spec.get("model", {})
        if "ByteLevel" in kinds:
            return "bytelevel"
        if model.get("type") == "WordPiece":
            return "wordpiece"
        if "Metaspace" in kinds or model.get("byte_fallback") or SPACE_MARK in json.dumps(self.spec.get("normalizer")):
            return "metaspace"
        return "plain"

    def piece_bytes_source(self) -> PieceBytes:
        n = self.vocab_size
        special = np.zeros(n, dtype=bool)
        byte_piece = np.zeros(n, dtype=bool)
        for i, token in self.tk.get_added_tokens_decoder().items():
            special[i] = token.special
        if "unk" in self.special_ids:
            special[self.special_ids["unk"]] = True
        scheme = self._scheme()
        prefix = self.spec.get("model", {}).get("continuing_subword_prefix") or "##"
        byte_fallback = bool(self.spec.get("model", {}).get("byte_fallback"))
        inverse = _bytes_of_unicode() if scheme == "bytelevel" else {}
        spelled: list[bytes] = []
        for i in range(n):
            token = self.tk.id_to_token(i) or ""
            if special[i]:
                spelled.append(b"")
            elif scheme == "bytelevel" and all(c in inverse for c in token):
                raw = bytes(inverse[c] for c in token)
                spelled.append(raw)
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    byte_piece[i] = True  # part of a character: the text decides what it is
            elif scheme == "wordpiece":
                spelled.append(token.removeprefix(prefix).encode("utf-8"))
            elif scheme == "metaspace":
                is_byte = byte_fallback and len(token) == 6 and token.startswith("<0x") and token.endswith(">")
                byte_piece[i] = is_byte
                spelled.append(spelled_piece(token, is_byte))
            else:
                spelled.append(token.encode("utf-8"))
        return PieceBytes(spelled, byte_piece, special)

    def encode(self, texts: list[str]) -> Encoded:
        if len(texts) == 1:  # not the thread pool: a process that forks workers after a probe must not start it
            encodings = [self.tk.encode(texts[0], add_special_tokens=False)]
        else:
            encodings = self.tk.encode_batch(texts, add_special_tokens=False)
        ids = [e.ids for e in encodings]
        count = sum(map(len, ids))
        flat = chain.from_iterable(chain.from_iterable(e.offsets for e in encodings))  # iterated in C, not per token
        spans = np.fromiter(flat, dtype=np.int64, count=2 * count).reshape(-1, 2)
        return Encoded(ids, spans[:, 0].copy(), spans[:, 1].copy())

    def token_byte_spans(self, text: str, ids: np.ndarray) -> np.ndarray:
        encoding = self.tk.encode(text, add_special_tokens=False)
        if encoding.ids != ids.tolist():
            raise AssertionError("the tokenizer gave different ids for the same text")
        chars = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
        widths = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        at = np.zeros(len(text) + 1, dtype=np.int64)
        np.cumsum(1 + (widths >= 0x80) + (widths >= 0x800) + (widths >= 0x10000), out=at[1:])
        return at[chars]

    def encode_continuing(self, text: str) -> list[int]:
        return list(self.tk.encode(text, add_special_tokens=False).ids)

    def piece_name(self, token: int) -> str:
        return self.tk.id_to_token(int(token)) or f"[id {int(token)}]"


def load_hf(path: Path) -> HFTokenizer:
    """A tokenizer.json (or a directory holding one, with its configuration files), or a one-line error."""
    try:
        from tokenizers import Tokenizer as RustTokenizer
    except ImportError:  # a dependency, but an environment may lack it
        raise WwmPrepError(f"{path} is a Hugging Face tokenizer, which needs the `tokenizers` library "
                           "(pip install tokenizers)") from None
    file = json_file(path)
    if not file.is_file():
        raise WwmPrepError(f"tokenizer not found: {file} (give a SentencePiece .model, a tokenizer.json, "
                           "or a directory holding one)")
    try:
        text = file.read_text(encoding="utf-8")
        tk, spec = RustTokenizer.from_str(text), json.loads(text)
    except Exception as exc:  # OSError, bad JSON, or the plain Exception tokenizers raises on a malformed file
        raise WwmPrepError(f"{file}: not a Hugging Face tokenizer.json ({exc})") from exc
    tk.no_padding()
    tk.no_truncation()
    tokenizer = HFTokenizer(path, directory_sha256(path), tk, spec)
    tokenizer.special_ids = _special_ids(tk, spec, path if path.is_dir() else None)  # a file alone: its own tokens
    tokenizer.markup = SPACE_MARK if tokenizer._scheme() == "metaspace" else ""
    return tokenizer


def _special_ids(tk: Any, spec: dict[str, Any], directory: Path | None) -> dict[str, int]:
    """Each role's id: the token the configuration names for it, else a token of one of the role's usual names
    (`core.specials.PIECE_NAMES`) that the tokenizer has as an added special token, else the model's unk."""
    ids: dict[str, int] = {}
    added = {t.content: i for i, t in tk.get_added_tokens_decoder().items()}
    for role, name in _role_names(directory).items():
        found = tk.token_to_id(name)
        if found is None:
            raise WwmPrepError(f"{directory}: the {role} token {name!r} named in its configuration is not in "
                               f"{TOKENIZER_JSON}")
        ids[role] = int(found)
    for role, names in PIECE_NAMES.items():
        if role not in ids:
            found = [added[name] for name in names if name in added]
            if found:
                ids[role] = int(found[0])
    unk = spec.get("model", {}).get("unk_token")
    unk_id = spec.get("model", {}).get("unk_id")
    if "unk" not in ids:
        if isinstance(unk, str) and tk.token_to_id(unk) is not None:
            ids["unk"] = int(tk.token_to_id(unk))
        elif isinstance(unk_id, int):
            ids["unk"] = unk_id
    return ids


def thread_budget(workers: int) -> None:
    """Let the Rust thread pool of each of `workers` processes use its share of the cores, not all of them (read
    once, at the pool's first use; a value already set in the environment wins)."""
    os.environ.setdefault("RAYON_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(workers, 1))))
