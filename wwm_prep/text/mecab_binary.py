"""Read compiled MeCab dictionaries and write them back as MeCab text sources for vibrato.

vibrato can only compile MeCab's *text* form (`lex.csv`, `matrix.def`, `char.def`, `unk.def`),
but the dictionaries people actually have installed (PyPI `unidic-lite`, `ipadic`, a system
MeCab's `dicdir`) are MeCab *binaries*. :mod:`wwm_prep.text.mecab_decode` decodes the binaries
(formats in DESIGN.md §5) with NumPy; this module writes text that `vibrato.Vibrato.from_textdict(...,
ignore_space=True, max_grouping_len=24)` turns into a tokenizer that segments like MeCab, and caches it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from wwm_prep.core.files import sha256_file
from wwm_prep.text.mecab_decode import BINARY_FILES, Lexicon, read_binary_dictionary, require_binary_dictionary

__all__ = [
    "BINARY_FILES",
    "CONVERTER_VERSION",
    "TEXT_FILES",
    "convert",
    "converted_text_dictionary",
    "is_binary_dictionary",
]

#: Bump whenever the text written for the same binary changes, so caches are rebuilt.
CONVERTER_VERSION = 1
TEXT_FILES = ("lex.csv", "matrix.def", "char.def", "unk.def")

_MATRIX_ROWS_PER_CHUNK = 256
_LINES_PER_CHUNK = 1 << 16
_NEEDS_QUOTES = re.compile('[,"\r\n]').search


def is_binary_dictionary(path: Path) -> bool:
    """True if `path` is a compiled MeCab dictionary directory (the files MeCab's tagger opens)."""
    path = Path(path)
    return path.is_dir() and all((path / name).is_file() for name in BINARY_FILES)


def convert(binary_dir: Path, out_dir: Path) -> None:
    """Write the text form of the binary dictionary in `binary_dir` to `out_dir`, atomically.

    The files are built in a temporary sibling of `out_dir` and renamed into place, so a crash
    or a bad input never leaves a half-written dictionary; an existing `out_dir` is replaced.
    """
    binary_dir, out_dir = Path(binary_dir), Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        _write_text_dictionary(binary_dir, tmp)
        if out_dir.exists():
            _swap_in(tmp, out_dir, "old")
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_converted(binary_dir: Path, cache_root: Path) -> bool:
    """Whether the conversion is cached already: a run says "converted on first use" only when it is not."""
    require_binary_dictionary(Path(binary_dir))
    return _is_complete(_target(Path(cache_root), _digests(Path(binary_dir))))


def _digests(binary_dir: Path) -> dict[str, str]:
    return {name: sha256_file(binary_dir / name) for name in BINARY_FILES}


def _target(cache_root: Path, digests: dict[str, str]) -> Path:
    """The cache entry of the binary files with these SHA-256 digests, converted by this `CONVERTER_VERSION`."""
    key = hashlib.sha256(json.dumps({"converter": CONVERTER_VERSION, "files": digests}, sort_keys=True).encode())
    return cache_root / f"mecab-text-{key.hexdigest()[:32]}"


def converted_text_dictionary(binary_dir: Path, cache_root: Path) -> Path:
    """Directory holding the text form of `binary_dir`, converting it only the first time.

    The cache key is the SHA-256 of the four binary files and `CONVERTER_VERSION`, so an edited
    dictionary or a changed converter gets a fresh conversion. A cache entry appears by one atomic
    rename; if another process publishes the same entry first, its copy is used and ours dropped.
    """
    binary_dir, cache_root = Path(binary_dir), Path(cache_root)
    require_binary_dictionary(binary_dir)
    digests = _digests(binary_dir)
    target = _target(cache_root, digests)
    if _is_complete(target):
        return target
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=cache_root))
    try:
        _write_text_dictionary(binary_dir, tmp)
        source = {
            "converter_version": CONVERTER_VERSION,
            "source": str(binary_dir.resolve()),
            "sha256": digests,
        }
        (tmp / "SOURCE.json").write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
        _publish(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _publish(tmp: Path, target: Path) -> None:
    """Rename a finished conversion into the cache; if another process got there first, its copy
    stays and ours is dropped, unless that copy is damaged."""
    try:
        os.rename(tmp, target)
    except OSError:
        if not target.exists():
            raise  # failed for another reason than a winner or a damaged entry
        if not _is_complete(target):  # damaged by hand: move it aside, publish ours
            _swap_in(tmp, target, "bad")
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(new: Path, target: Path, tag: str) -> None:
    """Replace the directory `target` by `new` with two renames, parking the old one in a temporary
    sibling (named with `tag`) that is then deleted, so no reader ever sees a half-written directory."""
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.{tag}-", dir=target.parent))
    os.replace(target, aside / "d")
    os.replace(new, target)
    shutil.rmtree(aside, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Writing the text form


def _write_text_dictionary(binary_dir: Path, out: Path) -> None:
    """Decode every binary file first (so bad input fails before any output), then write."""
    dic = read_binary_dictionary(binary_dir)
    _write_lexicon(out / "lex.csv", dic.sys_dic)
    _write_lexicon(out / "unk.def", dic.unk_dic)
    char_def = _char_def(dic.char_names, dic.char_table, binary_dir / "char.bin")
    (out / "char.def").write_text(char_def, encoding="utf-8")
    _write_matrix(out / "matrix.def", dic.left_size, dic.right_size, dic.costs)


def _write_lexicon(path: Path, dic: Lexicon) -> None:
    """lex.csv / unk.def lines, entries of each surface in reverse order.

    MeCab keeps the first of equal-cost lattice candidates, vibrato the last; reversing the
    entries of each surface (each unknown-word category) makes vibrato choose as MeCab does.
    """
    count = dic.count
    ends = np.repeat(dic.first + count - 1, count)
    within = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    tok = ends - within
    surface_of = np.repeat(np.arange(len(count)), count)
    surfaces = [_csv_field(s) for s in dic.surfaces]
    features = dic.features
    t = dic.tokens[tok]
    columns = (surface_of, t["left"], t["right"], t["cost"], dic.feature_index[tok])
    with open(path, "w", encoding="utf-8", newline="") as out:
        for start in range(0, len(tok), _LINES_PER_CHUNK):
            out.write("".join([
                f"{surfaces[s]},{left},{right},{cost},{features[f]}\n"
                for s, left, right, cost, f in zip(
                    *(c[start:start + _LINES_PER_CHUNK].tolist() for c in columns), strict=True)
            ]))


def _csv_field(text: str) -> str:
    """Quote a surface that CSV would otherwise split (features are kept as MeCab stored them)."""
    if _NEEDS_QUOTES(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def _write_matrix(path: Path, left_size: int, right_size: int, costs: np.ndarray) -> None:
    """`l r cost` lines (l outer, r inner, one space apart), formatted a block of rows at a time.

    Each line is first a fixed-width record of NUL-padded ASCII fields taken from tables
    ("l ", "r ", and the cost with its newline, gathered as one uint64); one boolean mask then
    drops the padding.
    """
    width = len(str(max(left_size, right_size, 1))) + 1
    ids = _ascii_table(range(max(left_size, right_size, 1)), b" ", width).view(f"V{width}")
    cost_table = _ascii_table(range(-32768, 32768), b"\n", 8).view("<u8")  # "-32768" + LF: 7
    record = np.dtype([("l", f"V{width}"), ("r", f"V{width}"), ("cost", "<u8")])
    with open(path, "wb") as out:
        out.write(f"{left_size} {right_size}\n".encode())
        for start in range(0, left_size, _MATRIX_ROWS_PER_CHUNK):
            stop = min(start + _MATRIX_ROWS_PER_CHUNK, left_size)
            block = np.empty((stop - start, right_size), record)
            block["l"] = ids[start:stop, None]
            block["r"] = ids[None, :right_size]
            # int16 -> table row: flipping the sign bit of the raw uint16 adds 32768.
            block["cost"] = cost_table[costs[:, start:stop].T.view(np.uint16) ^ 0x8000]
            flat = block.reshape(-1).view(np.uint8)
            out.write(flat[flat != 0].tobytes())


def _ascii_table(numbers: range, end: bytes, width: int) -> np.ndarray:
    """Row i: the decimal digits of numbers[i] and `end`, left-aligned, NUL-padded to `width`."""
    return np.array([str(v).encode() + end for v in numbers], dtype=f"S{width}")


def _char_def(names: list[str], table: np.ndarray, path: Path) -> str:
    """char.def text: category lines (DEFAULT first), then runs of equal code points.

    Each char.bin entry packs type bits (0-17), the default category (18-25), LENGTH (26-29),
    GROUP (30) and INVOKE (31). A category's INVOKE/GROUP/LENGTH are read from a character whose
    default category it is; one that is nobody's default is never consulted, so it gets 0 0 0.
    Only U+0000..U+FFFE exist: above that both MeCab and vibrato use U+0000's entry.
    """
    types = table & 0x3FFFF
    default = (table >> 18) & 0xFF
    params = {}
    for cat in range(len(names)):
        hits = np.flatnonzero(default == cat)
        if hits.size:
            params[cat] = set(np.unique(table[hits] >> 26).tolist())
            if len(params[cat]) != 1:
                raise ValueError(f"{path}: corrupt: category {names[cat]} has several "
                                 "INVOKE/GROUP/LENGTH settings")
    lines = []
    for cat in sorted(range(len(names)), key=lambda c: names[c] != "DEFAULT"):
        p = next(iter(params.get(cat, {0})))
        lines.append(f"{names[cat]} {p >> 5 & 1} {p >> 4 & 1} {p & 0xF}")
    key = types.astype(np.uint64) | (default.astype(np.uint64) << 32)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(key)) + 1))
    stops = np.concatenate((starts[1:], [len(key)])) - 1
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        d, bits = int(default[start]), int(types[start])
        cats = [names[d]] + [names[c] for c in range(len(names)) if c != d and bits >> c & 1]
        span = f"0x{start:04X}" if start == stop else f"0x{start:04X}..0x{stop:04X}"
        lines.append(f"{span} {' '.join(cats)}")
    return "\n".join(lines) + "\n"


def _is_complete(target: Path) -> bool:
    """A cache entry is trusted only with all four text files; anything less is rebuilt."""
    return all((target / name).is_file() for name in TEXT_FILES)
