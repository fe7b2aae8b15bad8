"""Loading a dictionary by name or path, and the identity (sha256) a run records for it."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.resources import resource
from wwm_prep.text.dictionary import load_dictionary

TINY = resource("dictionaries", "tiny-ja")
# The order the files are hashed in: the lexicon(s), then the three definition files.
TINY_FILES = ("lex.csv", "matrix.def", "char.def", "unk.def")
TEXT = "東京都に行きました。"


def expected_sha256(directory: Path, names: tuple[str, ...] = TINY_FILES) -> str:
    """The dictionary identity, computed here from its definition: each file's name, a NUL, its bytes."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + (directory / name).read_bytes())
    return digest.hexdigest()


def surfaces(dictionary, text: str = TEXT) -> list[str]:
    return [t.surface() for t in dictionary.tagger.tokenize(text)]


@pytest.fixture
def tiny_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "tiny-copy"
    shutil.copytree(TINY, copy)
    return copy


def test_bundled_name_loads_the_bundled_text_dictionary() -> None:
    d = load_dictionary("tiny-ja")

    assert (d.name, d.format, d.source) == ("tiny-ja", "mecab-text", TINY.resolve())
    assert d.files == tuple(TINY.resolve() / n for n in TINY_FILES)
    assert d.sha256 == expected_sha256(TINY)
    assert d.describe() == {
        "name": "tiny-ja",
        "source": str(TINY.resolve()),
        "format": "mecab-text",
        "sha256": expected_sha256(TINY),
        "ignore_space": True,
        "max_grouping_len": 24,
    }
    words = surfaces(d)
    assert "".join(words) == TEXT and len(words) > 1
    assert d.space[ord(" ")] and d.space[ord("\t")]  # SPACE in its char.def
    assert not d.space[ord("\n")] and not d.space[ord("あ")]


@pytest.mark.parametrize("as_str", [True, False])
def test_a_path_loads_the_same_dictionary_under_its_own_name(tiny_copy: Path, as_str: bool) -> None:
    spec = str(tiny_copy) if as_str else tiny_copy
    d = load_dictionary(spec)
    bundled = load_dictionary("tiny-ja")

    assert d.name == str(tiny_copy) and d.source == tiny_copy.resolve()
    assert d.sha256 == bundled.sha256 == expected_sha256(tiny_copy)  # the same bytes: the same identity
    assert d.tagger is bundled.tagger  # compiled once per process, found again by its hash
    assert surfaces(d) == surfaces(bundled)


def test_changed_bytes_change_the_identity(tiny_copy: Path) -> None:
    with open(tiny_copy / "lex.csv", "a", encoding="utf-8") as f:
        f.write("東京都,1,1,100,名詞,固有名詞,*,*,*,*,東京都\n")
    d = load_dictionary(tiny_copy)

    assert d.sha256 == expected_sha256(tiny_copy) != expected_sha256(TINY)
    assert surfaces(d, "東京都") == ["東京都"]  # and it is really the edited dictionary that was compiled
    assert surfaces(load_dictionary("tiny-ja"), "東京都") == ["東京", "都"]


def test_several_lexicon_files_are_all_read_and_hashed(tiny_copy: Path) -> None:
    (tiny_copy / "extra.csv").write_text("東京都,1,1,100,名詞,固有名詞,*,*,*,*,東京都", encoding="utf-8")
    d = load_dictionary(tiny_copy)

    assert [p.name for p in d.files] == ["extra.csv", *TINY_FILES]
    assert d.sha256 == expected_sha256(tiny_copy, ("extra.csv", *TINY_FILES))
    assert surfaces(d, "東京都") == ["東京都"]  # a lexicon without a final newline still joins cleanly


def test_euc_jp_text_sources_load(tiny_copy: Path) -> None:
    """Debian's IPAdic ships EUC-JP; the same entries in either encoding segment alike."""
    lines = (TINY / "lex.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    kept = "".join(line for line in lines if _encodable(line, "euc_jp"))
    (tiny_copy / "lex.csv").write_text(kept, encoding="utf-8")
    utf8 = load_dictionary(tiny_copy)
    (tiny_copy / "lex.csv").write_bytes(kept.encode("euc_jp"))
    euc = load_dictionary(tiny_copy)

    assert euc.sha256 != utf8.sha256  # other bytes, so another identity
    assert surfaces(euc) == surfaces(utf8) and len(surfaces(euc)) > 1


def _encodable(text: str, codec: str) -> bool:
    try:
        text.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def test_text_in_neither_encoding_is_a_clear_error(tiny_copy: Path) -> None:
    (tiny_copy / "unk.def").write_bytes(b"DEFAULT,5,5,4769,\xff\xfe\n")
    with pytest.raises(WwmPrepError, match=r"unk\.def: neither UTF-8 nor EUC-JP text"):
        load_dictionary(tiny_copy)


def test_incomplete_text_dictionary_names_what_is_missing(tmp_path: Path) -> None:
    shutil.copy(TINY / "lex.csv", tmp_path / "lex.csv")
    with pytest.raises(WwmPrepError, match=r"not a MeCab text dictionary \(missing matrix\.def, char\.def, unk\.def\)"):
        load_dictionary(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WwmPrepError, match=r"missing matrix\.def, char\.def, unk\.def, \*\.csv lexicon"):
        load_dictionary(empty)


def test_a_file_that_is_not_a_vibrato_dictionary(tmp_path: Path) -> None:
    junk = tmp_path / "system.dic"
    junk.write_bytes(b"not a dictionary" * 8)
    with pytest.raises(WwmPrepError, match="not a vibrato system dictionary"):
        load_dictionary(junk)


def test_a_broken_binary_dictionary_is_a_clear_error(tmp_path: Path) -> None:
    binary = tmp_path / "dic"
    binary.mkdir()
    (binary / "sys.dic").write_bytes(b"\0" * 16)
    with pytest.raises(WwmPrepError, match=r"cannot read this MeCab binary dictionary: .*missing \["):
        load_dictionary(binary, tmp_path / "cache")


@pytest.mark.parametrize("spec", ["no-such-dictionary", "missing/dir"])
def test_unknown_names_and_missing_paths_list_the_known_dictionaries(spec: str, tmp_path: Path) -> None:
    with pytest.raises(WwmPrepError) as info:
        load_dictionary(str(tmp_path / spec) if "/" in spec else spec)
    message = str(info.value)
    assert "unknown dictionary" in message and spec in message
    assert "unidic-lite" in message  # the known names, so the user can pick one


def test_a_registered_dictionary_not_yet_fetched_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(WwmPrepError, match="wwm-prep dict fetch bccwj-suw\\+unidic-cwj-3_1_1"):
        load_dictionary("bccwj-suw+unidic-cwj-3_1_1", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # looking never creates the cache
