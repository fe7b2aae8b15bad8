"""The dictionary registry: its entries, the cache locations, and where each kind of dictionary is found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wwm_prep.text import registry as reg
from wwm_prep.text.fetch import fetch
from wwm_prep.text.registry import DictionaryError, Entry


# ------------------------------------------------------------------------------------ resolve and status


def test_resolve_missing_release_gives_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(DictionaryError) as info:
        reg.resolve("bccwj-suw+unidic-cwj-3_1_1", tmp_path)
    assert "wwm-prep dict fetch bccwj-suw+unidic-cwj-3_1_1" in str(info.value)
    assert reg.status("bccwj-suw+unidic-cwj-3_1_1", tmp_path).startswith("not fetched")
    assert not reg.is_ready("bccwj-suw+unidic-cwj-3_1_1", tmp_path)


def test_pypi_entries(tmp_path: Path) -> None:
    unidic_lite = pytest.importorskip("unidic_lite")
    assert reg.resolve("unidic-lite", tmp_path) == Path(unidic_lite.DICDIR)
    assert fetch("unidic-lite", tmp_path) == Path(unidic_lite.DICDIR)  # installed: a no-op
    assert reg.status("unidic-lite", tmp_path).startswith("installed: ")

    missing = Entry(name="nopkg", format="mecab-binary-pypi", package="no-such-dic-pkg",
                    module="no_such_dic_pkg_xyz", required_files=("sys.dic",))
    for call in (reg.resolve, fetch):
        with pytest.raises(DictionaryError, match="pip install no-such-dic-pkg"):
            call(missing, tmp_path)
    assert not tmp_path.joinpath("dictionaries").exists()


def test_local_text_source(tmp_path: Path) -> None:
    files = ("lex_3_1.csv", "matrix.def", "char.def", "unk.def")
    src = tmp_path / "usr/share/mecab/dic/unidic"
    e = Entry(name="local-unidic", format="mecab-text-local", path=str(src), apt_package="unidic-mecab",
              apt_version="3.1.1", required_files=files)
    cache = tmp_path / "cache"
    for call in (reg.resolve, fetch):
        with pytest.raises(DictionaryError) as info:
            call(e, cache)
        assert "apt-get download unidic-mecab && dpkg -x" in str(info.value)
    assert reg.status(e, cache).startswith("absent")

    src.mkdir(parents=True)
    for f in files:
        (src / f).write_text("x")
    assert reg.resolve(e, cache) == src == fetch(e, cache)
    assert reg.status(e, cache) == f"present: {src}"

    # `dpkg -x unidic-mecab_*.deb <cache>/dictionaries/<name>` also counts.
    bundled = reg.entry("unidic-cwj-3_1_1-debian")
    unpacked = reg.dictionary_dir(bundled, cache) / "usr/share/mecab/dic/unidic"
    unpacked.mkdir(parents=True)
    for f in bundled.required_files:
        (unpacked / f).write_text("x")
    if not Path(bundled.path).is_dir():
        assert reg.resolve(bundled, cache) == unpacked


# --------------------------------------------------------------------------------- registry and cache


def test_bundled_registry_carries_the_recorded_facts() -> None:
    by_name = {e.name: e for e in reg.entries()}
    assert list(by_name) == ["bccwj-suw+unidic-cwj-3_1_1", "unidic-cwj-3_1_1+compact", "ipadic-mecab-2_7_0",
                             "unidic-lite", "ipadic", "unidic-cwj-3_1_1-debian"]
    base = "https://github.com/daac-tools/vibrato/releases/download/v0.5.0/"
    recipe = by_name["bccwj-suw+unidic-cwj-3_1_1"]
    assert recipe.recipe and recipe.verified and recipe.format == "vibrato-release"
    assert recipe.url == base + "bccwj-suw+unidic-cwj-3_1_1.tar.xz"
    assert recipe.sha256 == "668aa982b64dfc719f8a4cedfef18f09108b27afe0599eb2fe1351d4790529bb"
    assert recipe.inner == "bccwj-suw+unidic-cwj-3_1_1/system.dic.zst"
    assert recipe.inner_sha256 == "71d77e3a4d4d029e1edc34da2941a947667a89cac951cfdf6bccd34dce4c160f"
    compact = by_name["unidic-cwj-3_1_1+compact"]
    assert compact.url == base + "unidic-cwj-3_1_1+compact.tar.xz" and compact.verified
    assert compact.sha256 == "9bd032f29424daaf90a92d2835961b2f3a3c0a4cf15e2092c63cd356c2e9b4d2"
    assert compact.inner_sha256 == "487ca64b39a31af2f054d905d333a82d0ec0872530d3610342b3c56b0b4b4ad0"
    ipa = by_name["ipadic-mecab-2_7_0"]
    assert ipa.url == base + "ipadic-mecab-2_7_0.tar.xz"
    assert not ipa.verified and ipa.sha256 is None and ipa.inner_sha256 is None
    assert by_name["unidic-lite"].module == "unidic_lite" and by_name["unidic-lite"].attribute == "DICDIR"
    assert by_name["ipadic"].package == "ipadic"
    deb = by_name["unidic-cwj-3_1_1-debian"]
    assert deb.format == "mecab-text-local" and deb.path == "/usr/share/mecab/dic/unidic"
    assert deb.apt_package == "unidic-mecab"
    for e in by_name.values():
        assert e.license and e.word_unit and e.description and e.approx_size


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(DictionaryError) as info:
        reg.entry("no-such-dictionary")
    assert "bccwj-suw+unidic-cwj-3_1_1" in str(info.value) and "unidic-lite" in str(info.value)


def test_invalid_entries_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DictionaryError, match="verified: true needs"):
        Entry(name="x", format="vibrato-release", url="http://h/x.tar.xz", verified=True)
    with pytest.raises(DictionaryError, match="name must be"):
        Entry(name="../x", format="vibrato-release", url="http://h/x.tar.xz")
    with pytest.raises(DictionaryError, match="inner path"):
        Entry(name="x", format="vibrato-release", url="http://h/x.tar.xz", inner="../system.dic.zst")
    with pytest.raises(DictionaryError, match="format"):
        Entry(name="x", format="zip")
    dupes = tmp_path / "r.json"
    dupes.write_text(json.dumps([{"name": "a", "format": "mecab-text-local", "path": "/a"}] * 2))
    with pytest.raises(DictionaryError, match="more than once"):
        reg.entries(dupes)


def test_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(reg.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert reg.cache_dir() == tmp_path / "home/.cache/wwm-prep"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert reg.cache_dir() == tmp_path / "xdg/wwm-prep"
    monkeypatch.setenv(reg.CACHE_ENV, str(tmp_path / "env"))
    assert reg.cache_dir() == tmp_path / "env"
    assert reg.cache_dir(tmp_path / "opt") == tmp_path / "opt"
    assert reg.dictionary_dir("bccwj-suw+unidic-cwj-3_1_1") == tmp_path / "env/dictionaries/bccwj-suw+unidic-cwj-3_1_1"
    assert not (tmp_path / "env").exists()  # looking never creates
