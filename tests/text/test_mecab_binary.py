"""MeCab binary dictionaries -> MeCab text form -> vibrato, checked against MeCab itself."""

from __future__ import annotations

import gzip
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from wwm_prep.text import mecab_binary, mecab_decode
from wwm_prep.text.mecab_binary import (
    BINARY_FILES,
    TEXT_FILES,
    convert,
    converted_text_dictionary,
    is_binary_dictionary,
    is_converted,
)

SHARED = Path(os.environ.get("WWM_PREP_SHARED")
              or Path(__file__).resolve().parents[2].parent / "shared")
CORPUS = SHARED / "corpora" / "ja-sample"
DICTIONARIES = ("unidic_lite", "ipadic")  # PyPI packages shipping MeCab binaries in DICDIR
MAGIC = 0xEF718F77


def _binary_dir(package: str) -> Path:
    return Path(pytest.importorskip(package).DICDIR)


@pytest.fixture(scope="session")
def text_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One conversion cache for the whole session: each dictionary is converted once."""
    return tmp_path_factory.mktemp("mecab-text-cache")


@pytest.fixture(scope="session", params=DICTIONARIES)
def tokenizers(request: pytest.FixtureRequest, text_cache: Path):
    """(name, vibrato tokenizer on the converted text, MeCab tagger on the binary)."""
    vibrato = pytest.importorskip("vibrato")
    fugashi = pytest.importorskip("fugashi")
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    binary = _binary_dir(request.param)
    text = converted_text_dictionary(binary, text_cache)
    contents = [(text / name).read_text(encoding="utf-8") for name in TEXT_FILES]
    tokenizer = vibrato.Vibrato.from_textdict(*contents, ignore_space=True, max_grouping_len=24)
    del contents
    tagger = fugashi.GenericTagger(f'-d "{binary}" -r /dev/null')
    return request.param, tokenizer, tagger


def _corpus_lines() -> Iterator[str]:
    """Non-empty lines ("\\n"-split documents) of every gzip JSON-lines file of the corpus."""
    for path in sorted(CORPUS.rglob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for row in f:
                yield from (line for line in json.loads(row)["text"].split("\n") if line)


@pytest.mark.shared
def test_same_words_and_features_as_mecab(tokenizers) -> None:
    name, tokenizer, tagger = tokenizers
    lines = same_surfaces = same_features = 0
    examples = []
    for line in _corpus_lines():
        lines += 1
        mecab = [(node.surface, node.feature_raw) for node in tagger(line)]
        ours = [(token.surface(), token.feature()) for token in tokenizer.tokenize(line)]
        if [s for s, _ in mecab] == [s for s, _ in ours]:
            same_surfaces += 1
            same_features += mecab == ours
        elif len(examples) < 5:
            examples.append((line[:80], [s for s, _ in mecab][:20], [s for s, _ in ours][:20]))
    print(f"{name}: {lines} lines, identical surfaces {same_surfaces / lines:.4%}, "
          f"identical features {same_features / lines:.4%}")
    assert lines > 100_000
    assert same_surfaces >= 0.999 * lines, examples
    assert same_features >= 0.999 * lines


def test_cache_converts_once_and_again_when_the_binary_changes(
        text_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = _binary_dir("ipadic")
    first = converted_text_dictionary(original, text_cache)
    assert sorted(p.name for p in first.iterdir()) == sorted([*TEXT_FILES, "SOURCE.json"])

    copy = tmp_path / "dic"
    copy.mkdir()
    for name in BINARY_FILES:
        (copy / name).write_bytes((original / name).read_bytes())
    calls = []
    real = mecab_binary._write_text_dictionary
    monkeypatch.setattr(mecab_binary, "_write_text_dictionary",
                        lambda *args: calls.append(args) or real(*args))

    assert converted_text_dictionary(copy, text_cache) == first  # same bytes, same entry
    assert calls == []

    matrix = bytearray((copy / "matrix.bin").read_bytes())
    matrix[4:6] = struct.pack("<h", 1234)  # cost of (right id 0, left id 0)
    (copy / "matrix.bin").write_bytes(matrix)
    assert not is_converted(copy, text_cache)  # what makes segment say "converted for vibrato on first use"
    second = converted_text_dictionary(copy, text_cache)
    assert len(calls) == 1 and second != first and is_converted(copy, text_cache)
    with open(second / "matrix.def", encoding="utf-8") as f:
        assert [f.readline(), f.readline()] == ["1316 1316\n", "0 0 1234\n"]
    assert converted_text_dictionary(copy, text_cache) == second and len(calls) == 1

    (second / "lex.csv").unlink()  # a damaged entry is rebuilt, not trusted
    assert converted_text_dictionary(copy, text_cache) == second and len(calls) == 2
    assert (second / "lex.csv").read_bytes() == (first / "lex.csv").read_bytes()
    assert not [p for p in text_cache.iterdir() if p.name.startswith(".")]  # no temporaries


def test_concurrent_processes_share_one_cache_entry(text_cache: Path, tmp_path: Path) -> None:
    """Two processes converting into an empty cache at once: one rename wins, both use it."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    binary = _binary_dir("ipadic")
    cache = tmp_path / "cache"
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(converted_text_dictionary, [binary, binary], [cache, cache]))
    assert results[0] == results[1]
    assert [p.name for p in cache.iterdir()] == [results[0].name]  # no temporaries left
    reference = converted_text_dictionary(binary, text_cache)
    for name in TEXT_FILES:
        assert (results[0] / name).read_bytes() == (reference / name).read_bytes()


def test_convert_replaces_an_existing_directory(text_cache: Path, tmp_path: Path) -> None:
    """convert() publishes by rename, over an older result if there is one."""
    binary = _binary_dir("ipadic")
    out = tmp_path / "text"
    out.mkdir()
    (out / "stale").write_text("old")
    convert(binary, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(TEXT_FILES)
    cached = converted_text_dictionary(binary, text_cache)
    for name in TEXT_FILES:
        assert (out / name).read_bytes() == (cached / name).read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["text"]


def _fake_dictionary(directory: Path, sys_dic: bytes) -> Path:
    directory.mkdir()
    (directory / "sys.dic").write_bytes(sys_dic)
    for name in ("unk.dic", "matrix.bin", "char.bin"):
        (directory / name).write_bytes(b"\0" * 8)
    return directory


def _header(size: int, version: int = 102, dsize: int = 8, tsize: int = 16,
            fsize: int = 2) -> bytes:
    fields = (size ^ MAGIC, version, 0, tsize // 16, 1, 1, dsize, tsize, fsize, 0)
    return struct.pack("<10I", *fields) + b"utf8".ljust(32, b"\0")


def test_truncated_sys_dic_is_a_clear_error(tmp_path: Path) -> None:
    full = 72 + 8 + 16 + 2
    binary = _fake_dictionary(tmp_path / "dic", _header(full) + b"\0" * 10)  # 16 bytes short
    with pytest.raises(ValueError, match=r"sys\.dic: truncated.*98 bytes.*82"):
        convert(binary, tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["dic"]  # nothing half-written


def test_too_short_for_a_header_is_a_clear_error(tmp_path: Path) -> None:
    binary = _fake_dictionary(tmp_path / "dic", b"\x77\x8f")
    with pytest.raises(ValueError, match=r"sys\.dic: truncated"):
        convert(binary, tmp_path / "out")


def test_bad_magic_is_a_clear_error(tmp_path: Path) -> None:
    binary = _fake_dictionary(tmp_path / "dic", b"this is not a MeCab dictionary" * 4)
    with pytest.raises(ValueError, match=r"sys\.dic: bad magic number"):
        convert(binary, tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["dic"]


def test_wrong_version_is_a_clear_error(tmp_path: Path) -> None:
    size = 72 + 8 + 16 + 2
    binary = _fake_dictionary(tmp_path / "dic", _header(size, version=101) + b"\0" * 26)
    with pytest.raises(ValueError, match=r"sys\.dic: unsupported MeCab dictionary version 101"):
        convert(binary, tmp_path / "out")


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such MeCab dictionary directory"):
        converted_text_dictionary(tmp_path / "absent", tmp_path / "cache")
    binary = _fake_dictionary(tmp_path / "dic", b"")
    (binary / "char.bin").unlink()
    assert not is_binary_dictionary(binary)
    with pytest.raises(FileNotFoundError, match=r"missing \['char\.bin'\]"):
        convert(binary, tmp_path / "out")


def test_is_binary_dictionary(tmp_path: Path) -> None:
    assert is_binary_dictionary(_binary_dir("ipadic"))
    assert not is_binary_dictionary(tmp_path)
    assert not is_binary_dictionary(tmp_path / "absent")


def _double_array(keys: dict[bytes, int]) -> bytes:
    """A Darts double array as MeCab builds it (first-fit bases, distinct per node)."""
    base = [0] * 1024
    check = [0] * 1024
    used_bases = {0}

    def place(prefix: bytes) -> int:
        codes = sorted({key[len(prefix)] + 1 for key in keys
                        if key.startswith(prefix) and len(key) > len(prefix)})
        if prefix in keys:
            codes.insert(0, 0)  # the end-of-key marker sits at the node's base itself
        b = 1
        while b in used_bases or any(check[b + c] or b + c == 0 for c in codes):
            b += 1
        used_bases.add(b)
        for c in codes:
            check[b + c] = b
        for c in codes:
            if c == 0:
                base[b] = -keys[prefix] - 1
            else:
                base[b + c] = place(prefix + bytes([c - 1]))
        return b

    base[0] = place(b"")
    size = max(i for i in range(len(check)) if check[i] or i == 0) + 1
    return b"".join(struct.pack("<iI", base[i], check[i]) for i in range(size))


def _mecab_dic(entries: list[tuple[str, int, int, int, str]], kind: int, charset: str) -> bytes:
    """sys.dic/unk.dic bytes for (surface, left id, right id, cost, feature) entries."""
    by_surface: dict[bytes, list] = {}
    for surface, *rest in entries:  # MeCab: stable sort by key bytes
        by_surface.setdefault(surface.encode(charset), []).append(rest)
    tokens, features, keys = b"", b"", {}
    for key in sorted(by_surface):
        keys[key] = (len(tokens) // 16) << 8 | len(by_surface[key])
        for left, right, cost, feature in by_surface[key]:
            tokens += struct.pack("<HHHhII", left, right, 0, cost, len(features), 0)
            features += feature.encode(charset) + b"\0"
    da = _double_array(keys)
    size = 72 + len(da) + len(tokens) + len(features)
    header = struct.pack("<10I", size ^ MAGIC, 102, kind, len(tokens) // 16, 2, 2,
                         len(da), len(tokens), len(features), 0)
    return header + charset.encode().ljust(32, b"\0") + da + tokens + features


def _char_bin(categories: list[tuple[str, int, int, int]], ranges: dict[int, list[str]]) -> bytes:
    """char.bin for (name, invoke, group, length) categories and code point -> categories."""
    ids = {name: i for i, (name, *_) in enumerate(categories)}

    def entry(names: list[str]) -> int:
        invoke, group, length = categories[ids[names[0]]][1:]
        types = sum(1 << ids[n] for n in names)
        return types | ids[names[0]] << 18 | length << 26 | group << 30 | invoke << 31

    table = [entry(["DEFAULT"])] * 0xFFFF
    for code, names in ranges.items():
        table[code] = entry(names)
    names = b"".join(name.encode().ljust(32, b"\0") for name, *_ in categories)
    return struct.pack("<I", len(categories)) + names + struct.pack(f"<{0xFFFF}I", *table)


@pytest.mark.parametrize("charset", ["EUC-JP", "utf8"])
def test_small_dictionary_round_trip(tmp_path: Path, charset: str) -> None:
    """A hand-built binary in any charset becomes UTF-8 text that vibrato reads; ties as MeCab."""
    vibrato = pytest.importorskip("vibrato")
    binary = tmp_path / "dic"
    binary.mkdir()
    (binary / "sys.dic").write_bytes(_mecab_dic([
        ("東京", 1, 1, 100, "名詞,固有名詞,東京"),
        ("都", 1, 1, 100, "名詞,接尾,都,first"),  # equal costs: MeCab keeps this first entry
        ("都", 1, 1, 100, "名詞,接尾,都,second"),
        ("東京都", 1, 1, 500, "名詞,固有名詞,東京都"),
        ("a,b", 1, 1, 10, '記号,"1,0",*'),  # a surface that needs CSV quoting
    ], 0, charset))
    (binary / "unk.dic").write_bytes(_mecab_dic([
        ("DEFAULT", 1, 1, 1000, "記号,一般"),
        ("KANJI", 1, 1, 1000, "名詞,一般"),
        ("SPACE", 1, 1, 1000, "空白"),
    ], 2, charset))
    (binary / "matrix.bin").write_bytes(struct.pack("<HH4h", 2, 2, 0, 0, 0, 0))
    (binary / "char.bin").write_bytes(_char_bin(
        [("DEFAULT", 0, 1, 0), ("SPACE", 0, 1, 0), ("KANJI", 0, 0, 2)],
        {0x20: ["SPACE"], **{ord(c): ["KANJI"] for c in "東京都"}},
    ))
    out = tmp_path / "text"
    convert(binary, out)
    lex = (out / "lex.csv").read_text(encoding="utf-8")
    assert '"a,b",1,1,10,記号,"1,0",*\n' in lex
    assert lex.index("都,first") > lex.index("都,second")  # reversed for vibrato's ties
    assert (out / "matrix.def").read_text() == "2 2\n0 0 0\n0 1 0\n1 0 0\n1 1 0\n"
    tokenizer = vibrato.Vibrato.from_textdict(
        *[(out / name).read_text(encoding="utf-8") for name in TEXT_FILES],
        ignore_space=True, max_grouping_len=24)
    tokens = [(t.surface(), t.feature()) for t in tokenizer.tokenize("東京都 a,b")]
    assert tokens == [("東京", "名詞,固有名詞,東京"), ("都", "名詞,接尾,都,first"),
                      ("a,b", '記号,"1,0",*')]


def test_double_array_walk_skips_the_root() -> None:
    """Keys "a" -> 5 and "ab" -> 7, laid out as Darts (MeCab) does; unit 0 is the root."""
    units = np.zeros(301, mecab_decode._UNIT)
    units[0] = (1, 0)  # root: base 1, check 0 (looks like an end marker at position 0)
    units[1 + ord("a") + 1] = (200, 1)
    units[200] = (-5 - 1, 200)  # end of "a"
    units[200 + ord("b") + 1] = (300, 200)
    units[300] = (-7 - 1, 300)  # end of "ab"
    values, keys = mecab_decode._walk_double_array(Path("test"), units)
    assert sorted(zip(keys, values.tolist(), strict=True)) == [(b"a", 5), (b"ab", 7)]


def test_corrupt_double_array_is_a_value_error() -> None:
    units = np.zeros(4, mecab_decode._UNIT)
    units[0] = (1, 0)
    units[2] = (1, 1)  # a child of the root whose base is the root's: a cycle
    with pytest.raises(ValueError, match="corrupt double array"):
        mecab_decode._walk_double_array(Path("test"), units)
