"""Loading a vibrato dictionary from whatever the user names, and the one table alignment needs from it.

vibrato cannot save a compiled dictionary and holds the GIL, so a dictionary is loaded once per
process (before workers fork, so they share it) and described by a hash of the files it came from.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import vibrato
import zstandard

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.files import feed_file
from wwm_prep.core.resources import resource

DEFAULT_DICTIONARY = "unidic-lite"
BUNDLED = {"tiny-ja": ("dictionaries", "tiny-ja")}
TEXT_PARTS = ("matrix.def", "char.def", "unk.def")


@dataclass(frozen=True)
class VibratoSettings:
    """How vibrato treats spaces and long runs of unknown characters: they change the words, so a run records them."""

    ignore_space: bool
    max_grouping_len: int


#: The default: with these, vibrato's words are exactly MeCab's.
MECAB_SETTINGS = VibratoSettings(ignore_space=True, max_grouping_len=24)
#: vibrato's own defaults, which its command-line tool uses unless told otherwise (`--vibrato-defaults`).
VIBRATO_DEFAULTS = VibratoSettings(ignore_space=False, max_grouping_len=0)


@dataclass(frozen=True)
class DictionaryFiles:
    """A dictionary found and hashed but not loaded: enough to check a run's configuration in well under a second,
    before the seconds (minutes, for a large UniDic) that compiling it takes."""

    name: str
    source: Path
    format: str  # "mecab-text" | "vibrato" | "mecab-binary"
    sha256: str
    files: tuple[Path, ...]  # what the dictionary was built from (and hashed)
    settings: VibratoSettings

    def load(self, cache: Path | None = None) -> Dictionary:
        """The dictionary compiled (or taken from this process's earlier compile of the same files)."""
        key = (self.sha256, self.settings)
        if key not in _LOADED:
            tagger = _compile(self.format, self.source, cache, self.settings)
            _LOADED[key] = (tagger, space_table(tagger))
        return Dictionary(self.name, self.source, self.format, self.sha256, self.files, self.settings, *_LOADED[key])

    def converts_first(self, cache: Path | None = None) -> bool:
        """Whether loading first converts a MeCab binary dictionary, which only its first use does."""
        if self.format != "mecab-binary":
            return False
        from wwm_prep.text import mecab_binary
        from wwm_prep.text import registry as dict_registry

        return not mecab_binary.is_converted(self.source, dict_registry.cache_dir(cache) / "converted")

    def describe(self) -> dict[str, object]:
        """What a manifest records: the hash and the settings decide the output, the rest says where from."""
        return {
            "name": self.name,
            "source": str(self.source),
            "format": self.format,
            "sha256": self.sha256,
            "ignore_space": self.settings.ignore_space,
            "max_grouping_len": self.settings.max_grouping_len,
        }


@dataclass(frozen=True)
class Dictionary(DictionaryFiles):
    """A loaded dictionary, with what it was built from so a run can record exactly which one it used."""

    tagger: vibrato.Vibrato
    space: np.ndarray  # bool[0x110000]: characters vibrato skips as spaces (none without ignore_space)


def _files_sha256(files: list[Path]) -> str:
    """One digest over the names and bytes of all `files`, streamed into a single hash.

    Not `core.files.sha256_file` per file: this value is the dictionary's identity in manifests and in
    the resume check, so it must stay what earlier versions wrote."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        feed_file(digest, path)
    return digest.hexdigest()


def _read_text(path: Path) -> str:
    """MeCab text sources come in UTF-8 or EUC-JP (Debian's IPAdic); vibrato wants str."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return data.decode("euc_jp")
        except UnicodeDecodeError as exc:
            raise WwmPrepError(f"{path}: neither UTF-8 nor EUC-JP text") from exc


def _text_dictionary_files(directory: Path) -> list[Path]:
    missing = [part for part in TEXT_PARTS if not (directory / part).is_file()]
    lexicon = sorted(directory.glob("*.csv"))
    if missing or not lexicon:
        what = ", ".join(missing + ([] if lexicon else ["*.csv lexicon"]))
        raise WwmPrepError(f"{directory}: not a MeCab text dictionary (missing {what})")
    return lexicon + [directory / part for part in TEXT_PARTS]


def _compile_text(directory: Path, settings: VibratoSettings) -> vibrato.Vibrato:
    lexicon_files = _text_dictionary_files(directory)[: -len(TEXT_PARTS)]
    lexicon = "".join(text if text.endswith("\n") else text + "\n" for text in map(_read_text, lexicon_files))
    matrix, char, unk = (_read_text(directory / part) for part in TEXT_PARTS)
    try:
        return vibrato.Vibrato.from_textdict(
            lexicon, matrix, char, unk, ignore_space=settings.ignore_space, max_grouping_len=settings.max_grouping_len
        )
    except ValueError as exc:
        raise WwmPrepError(f"{directory}: vibrato could not compile this dictionary: {exc}") from exc


def _load_compiled(path: Path, settings: VibratoSettings) -> vibrato.Vibrato:
    data = path.read_bytes()
    if path.suffix == ".zst":
        data = zstandard.ZstdDecompressor().stream_reader(data).read()
    try:
        return vibrato.Vibrato(data, ignore_space=settings.ignore_space, max_grouping_len=settings.max_grouping_len)
    except ValueError as exc:
        raise WwmPrepError(f"{path}: not a vibrato system dictionary: {exc}") from exc


def space_table(tagger: vibrato.Vibrato) -> np.ndarray:
    """Which BMP characters the dictionary treats as spaces, found by one tokenize call over all of them.

    With ignore_space, vibrato drops these from its output; knowing them lets word offsets be rebuilt
    from surface lengths alone (surfaces are ~30 % cheaper than tokens with offsets). Characters above
    U+FFFF take U+0000's category in vibrato, which is never SPACE.
    """
    codes = np.arange(1, 0x10000)
    codes = codes[(codes < 0xD800) | (codes > 0xDFFF)]
    probe = codes.astype("<u4").tobytes().decode("utf-32-le")
    covered = np.zeros(len(codes) + 1, dtype=np.int64)
    for token in tagger.tokenize(probe):
        covered[token.start()] += 1
        covered[token.end()] -= 1
    space = np.zeros(0x110000, dtype=bool)
    space[codes] = np.cumsum(covered)[:-1] == 0
    return space


def load_dictionary(spec: str | Path | None = None, cache: Path | None = None, *,
                    vibrato_defaults: bool = False) -> Dictionary:
    """Load a dictionary named by a registry name, a bundled name, or a path, with MeCab's settings (or,
    with `vibrato_defaults`, vibrato's own).

    A path may be a MeCab text dictionary directory, a MeCab binary dictionary directory (converted to
    text once and cached), or a vibrato `system.dic` / `system.dic.zst`.
    """
    return locate_dictionary(spec, cache, vibrato_defaults=vibrato_defaults).load(cache)


def locate_dictionary(spec: str | Path | None = None, cache: Path | None = None, *,
                      vibrato_defaults: bool = False) -> DictionaryFiles:
    """The dictionary `load_dictionary` would load, found (fetched, for a registry name) and hashed only."""
    name = str(spec) if spec is not None else DEFAULT_DICTIONARY
    if name in BUNDLED:
        path = resource(*BUNDLED[name])
    elif Path(name).exists():
        path = Path(name)
    else:
        from wwm_prep.text import registry as dict_registry

        known = [*BUNDLED, *(e.name for e in dict_registry.entries())]
        if name not in known:
            close = difflib.get_close_matches(name, known, n=2)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise WwmPrepError(f"unknown dictionary {name!r} (no such name, and no such path): {hint}known: "
                               f"{', '.join(known)}; or give a MeCab dictionary directory or a vibrato system.dic")
        try:
            path = dict_registry.resolve(name, dict_registry.cache_dir(cache))
        except dict_registry.DictionaryError as exc:
            raise WwmPrepError(str(exc)) from exc
    return _locate_path(name, path.resolve(), VIBRATO_DEFAULTS if vibrato_defaults else MECAB_SETTINGS)


def _locate_path(name: str, path: Path, settings: VibratoSettings) -> DictionaryFiles:
    if path.is_file():
        fmt, files = "vibrato", [path]
    elif (path / "sys.dic").is_file():
        fmt, files = "mecab-binary", sorted(p for p in path.iterdir() if p.suffix in (".dic", ".bin"))
    elif path.is_dir():
        fmt, files = "mecab-text", _text_dictionary_files(path)
    else:
        raise WwmPrepError(f"{path}: not a dictionary")
    return DictionaryFiles(name, path, fmt, _files_sha256(files), tuple(files), settings)


# Compiled dictionaries of this process by content hash and settings: compiling UniDic takes seconds and
# hundreds of MB, and a process (a test session, `prepare`) may ask for the same one more than once.
_LOADED: dict[tuple[str, VibratoSettings], tuple[vibrato.Vibrato, np.ndarray]] = {}


def _compile(fmt: str, path: Path, cache: Path | None, settings: VibratoSettings) -> vibrato.Vibrato:
    if fmt == "vibrato":
        return _load_compiled(path, settings)
    if fmt == "mecab-text":
        return _compile_text(path, settings)
    from wwm_prep.text import registry as dict_registry
    from wwm_prep.text import mecab_binary

    try:
        text_dir = mecab_binary.converted_text_dictionary(path, dict_registry.cache_dir(cache) / "converted")
    except (ValueError, FileNotFoundError) as exc:
        raise WwmPrepError(f"{path}: cannot read this MeCab binary dictionary: {exc}") from exc
    return _compile_text(text_dir, settings)
