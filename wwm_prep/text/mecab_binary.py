"""Read compiled MeCab dictionaries and write them back as MeCab text sources for vibrato.

vibrato can only compile MeCab's *text* form (`lex.csv`, `matrix.def`, `char.def`, `unk.def`),
but the dictionaries people actually have installed (PyPI `unidic-lite`, `ipadic`, a system
MeCab's `dicdir`) are MeCab *binaries*. This module decodes the binaries (formats in
DESIGN.md §5) with NumPy and writes text that `vibrato.Vibrato.from_textdict(...,
ignore_space=True, max_grouping_len=24)` turns into a tokenizer that segments like MeCab.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

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
BINARY_FILES = ("sys.dic", "unk.dic", "matrix.bin", "char.bin")
TEXT_FILES = ("lex.csv", "matrix.def", "char.def", "unk.def")

_DIC_MAGIC = 0xEF718F77
_DIC_VERSION = 102
_DIC_TYPES = {"sys.dic": 0, "unk.dic": 2}
_HEADER = np.dtype(
    [(name, "<u4") for name in
     ("magic", "version", "type", "lexsize", "lsize", "rsize", "dsize", "tsize", "fsize", "dummy")]
)
_HEADER_SIZE = _HEADER.itemsize + 32  # ten uint32 fields, then the charset name
_UNIT = np.dtype([("base", "<i4"), ("check", "<u4")])
_TOKEN = np.dtype(
    [("left", "<u2"), ("right", "<u2"), ("posid", "<u2"), ("cost", "<i2"),
     ("feature", "<u4"), ("compound", "<u4")]
)
_CHAR_TABLE = 0xFFFF  # char.bin covers U+0000..U+FFFE, as MeCab's CharProperty does
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
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / "d")
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def converted_text_dictionary(binary_dir: Path, cache_root: Path) -> Path:
    """Directory holding the text form of `binary_dir`, converting it only the first time.

    The cache key is the SHA-256 of the four binary files and `CONVERTER_VERSION`, so an edited
    dictionary or a changed converter gets a fresh conversion. A cache entry appears by one atomic
    rename; if another process publishes the same entry first, its copy is used and ours dropped.
    """
    binary_dir, cache_root = Path(binary_dir), Path(cache_root)
    _require_binary_dictionary(binary_dir)
    digests = {name: _sha256_file(binary_dir / name) for name in BINARY_FILES}
    key = hashlib.sha256(
        json.dumps({"converter": CONVERTER_VERSION, "files": digests}, sort_keys=True).encode()
    ).hexdigest()
    target = cache_root / f"mecab-text-{key[:32]}"
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
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.exists():
                raise  # failed for another reason than a winner or a damaged entry
            if not _is_complete(target):  # damaged by hand: move it aside, publish ours
                bad = Path(tempfile.mkdtemp(prefix=f".{target.name}.bad-", dir=cache_root))
                os.rename(target, bad / "d")
                os.rename(tmp, target)
                shutil.rmtree(bad, ignore_errors=True)
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# --------------------------------------------------------------------------------------------
# Conversion


def _write_text_dictionary(binary_dir: Path, out: Path) -> None:
    """Decode every binary file first (so bad input fails before any output), then write."""
    _require_binary_dictionary(binary_dir)
    sys_dic = _read_dic(binary_dir / "sys.dic")
    unk_dic = _read_dic(binary_dir / "unk.dic")
    left_size, right_size, costs = _read_matrix(binary_dir / "matrix.bin")
    names, table = _read_char(binary_dir / "char.bin")
    for dic in (sys_dic, unk_dic):
        # MeCab indexes matrix[right id of the left word + lsize * left id of the right word].
        if dic.tokens.size and (dic.tokens["right"].max() >= left_size
                                or dic.tokens["left"].max() >= right_size):
            raise ValueError(f"{dic.path}: context ids exceed the {left_size} x {right_size} "
                             f"matrix of {binary_dir / 'matrix.bin'}")
    unknown = sorted(set(unk_dic.surfaces) - set(names))
    if unknown:
        raise ValueError(f"{binary_dir / 'unk.dic'}: categories {unknown} are not in char.bin")

    _write_lexicon(out / "lex.csv", sys_dic)
    _write_lexicon(out / "unk.def", unk_dic)
    char_def = _char_def(names, table, binary_dir / "char.bin")
    (out / "char.def").write_text(char_def, encoding="utf-8")
    _write_matrix(out / "matrix.def", left_size, right_size, costs)


class _Dic:
    """A decoded sys.dic/unk.dic: surfaces, and for each one its run of tokens."""

    def __init__(self, path: Path, surfaces: list[str], first: np.ndarray, count: np.ndarray,
                 tokens: np.ndarray, features: list[str], feature_index: np.ndarray) -> None:
        self.path = path
        self.surfaces = surfaces  # ordered by first token, i.e. MeCab's own order
        self.first = first
        self.count = count
        self.tokens = tokens
        self.features = features
        self.feature_index = feature_index  # token -> index into features


def _read_dic(path: Path) -> _Dic:
    data = _read_bytes(path)
    if len(data) < _HEADER_SIZE:
        raise ValueError(f"{path}: truncated: {len(data)} bytes is shorter than the "
                         f"{_HEADER_SIZE}-byte MeCab dictionary header")
    h = np.frombuffer(data, _HEADER, count=1)[0]
    magic, version, kind = int(h["magic"]), int(h["version"]), int(h["type"])
    dsize, tsize, fsize, lexsize = (int(h[k]) for k in ("dsize", "tsize", "fsize", "lexsize"))
    declared = magic ^ _DIC_MAGIC
    body = _HEADER_SIZE + dsize + tsize + fsize
    if declared != len(data):
        if version == _DIC_VERSION and declared == body and declared > len(data):
            raise ValueError(f"{path}: truncated: the header promises {declared} bytes, "
                             f"the file has {len(data)}")
        raise ValueError(f"{path}: bad magic number {magic:#010x}: not a MeCab dictionary "
                         f"(or corrupted; it does not match the file size {len(data)})")
    if version != _DIC_VERSION:
        raise ValueError(f"{path}: unsupported MeCab dictionary version {version} "
                         f"(only {_DIC_VERSION} is known)")
    want = _DIC_TYPES.get(path.name)
    if want is not None and kind != want:
        raise ValueError(f"{path}: dictionary type {kind}, expected {want} for {path.name}")
    if body != len(data) or dsize % _UNIT.itemsize or tsize % _TOKEN.itemsize \
            or tsize // _TOKEN.itemsize != lexsize:
        raise ValueError(f"{path}: inconsistent section sizes in the header (double array "
                         f"{dsize}, tokens {tsize}, features {fsize}, {lexsize} entries, "
                         f"file {len(data)} bytes)")
    charset = _codec(path, bytes(data[_HEADER.itemsize:_HEADER_SIZE]))

    units = np.frombuffer(data, _UNIT, count=dsize // _UNIT.itemsize, offset=_HEADER_SIZE)
    tokens = np.frombuffer(data, _TOKEN, count=lexsize, offset=_HEADER_SIZE + dsize)
    blob = np.frombuffer(data, np.uint8, count=fsize, offset=_HEADER_SIZE + dsize + tsize)

    values, keys = _walk_double_array(path, units)
    order = np.argsort(values >> 8, kind="stable")
    values = values[order]
    first, count = values >> 8, values & 0xFF
    covered = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    token_ids = np.repeat(first, count) + covered
    if len(token_ids) != lexsize or not np.array_equal(token_ids, np.arange(lexsize)):
        raise ValueError(f"{path}: corrupt: the trie does not map its {lexsize} entries "
                         "exactly once each")
    surfaces = _decode_joined(path, [keys[i] for i in order.tolist()], charset, "surfaces")
    features, feature_index = _decode_features(path, blob, tokens["feature"], charset)
    return _Dic(path, surfaces, first, count, tokens, features, feature_index)


def _walk_double_array(path: Path, units: np.ndarray) -> tuple[np.ndarray, list[bytes]]:
    """Every (value, key) stored in a Darts double array, found one trie level at a time.

    Darts (as in MeCab): a node is known by its base b; the child for byte c sits at unit
    b + c + 1 with check == b; the end of a key is unit b itself with check == b and base < 0,
    value -base - 1. Unit 0 is the root (base = root's b, check 0); it is excluded from the
    candidates, since "check == position" would otherwise take it for an end-of-key marker.
    Children of a whole level are found at once with a sorted index of the units by check.
    """
    n = len(units)
    if n == 0:
        raise ValueError(f"{path}: corrupt: empty double array")
    base = units["base"].astype(np.int64)
    check = units["check"].astype(np.int64)
    label = np.arange(n, dtype=np.int64) - check - 1
    edges = np.flatnonzero((label >= 0) & (label <= 0xFF))
    edges = edges[edges > 0]
    edges = edges[np.argsort(check[edges], kind="stable")]
    edge_parent = check[edges]

    frontier = base[:1]
    parents: list[np.ndarray] = []  # per depth d >= 1: index of the parent at depth d - 1
    labels: list[np.ndarray] = []
    found: list[tuple[int, np.ndarray, np.ndarray]] = []  # (depth, index at depth, value)
    visited = 0
    while frontier.size:
        depth = len(parents)
        inside = (frontier > 0) & (frontier < n)
        b = np.where(inside, frontier, 0)
        is_end = inside & (check[b] == frontier) & (base[b] < 0)
        if is_end.any():
            at = np.flatnonzero(is_end)
            found.append((depth, at, -base[b[at]] - 1))
        lo = np.searchsorted(edge_parent, frontier, "left")
        hi = np.searchsorted(edge_parent, frontier, "right")
        width = hi - lo
        total = int(width.sum())
        visited += total
        if visited > len(edges):
            raise ValueError(f"{path}: corrupt double array: it is not a tree")
        parent = np.repeat(np.arange(len(frontier)), width)
        child = edges[np.arange(total) - np.repeat(np.cumsum(width) - width - lo, width)]
        parents.append(parent)
        labels.append(label[child].astype(np.uint8))
        frontier = base[child]

    values_out: list[np.ndarray] = []
    keys: list[bytes] = []
    for depth, at, value in found:
        if depth == 0:
            continue  # an empty key: neither MeCab nor vibrato can use it
        matrix = np.empty((len(at), depth), np.uint8)
        idx = at
        for d in range(depth, 0, -1):
            matrix[:, d - 1] = labels[d - 1][idx]
            idx = parents[d - 1][idx]
        raw = matrix.tobytes()
        keys.extend(raw[i:i + depth] for i in range(0, len(raw), depth))
        values_out.append(value)
    values = np.concatenate(values_out) if values_out else np.zeros(0, np.int64)
    return values, keys


def _decode_features(path: Path, blob: np.ndarray, offsets: np.ndarray,
                     charset: str) -> tuple[list[str], np.ndarray]:
    """Decode the NUL-terminated feature strings; returns the strings and token -> string index."""
    if offsets.size == 0:
        return [], np.zeros(0, np.intp)
    nul = np.flatnonzero(blob == 0)
    if nul.size == 0 or int(offsets.max()) > int(nul[-1]):
        raise ValueError(f"{path}: corrupt: a feature offset points past the last feature")
    starts = np.concatenate(([0], nul[:-1] + 1))
    index = np.searchsorted(starts, offsets)
    if np.array_equal(starts[np.minimum(index, len(starts) - 1)], offsets):
        # The usual layout: every offset starts a string, so decode the whole blob at once.
        try:
            text = str(blob[: int(nul[-1])], charset)  # decodes the buffer without a copy
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: features are not valid {charset}: {e}") from None
        features = text.split("\x00")
    else:  # offsets into the middle of strings (legal, though MeCab never writes them)
        unique, inverse = np.unique(offsets, return_inverse=True)
        ends = nul[np.searchsorted(nul, unique)]
        raw = blob.tobytes()
        pieces = [raw[s:e] for s, e in zip(unique.tolist(), ends.tolist(), strict=True)]
        features, index = _decode_joined(path, pieces, charset, "features"), inverse.reshape(-1)
        text = "\x00".join(features)
    if "\n" in text or "\r" in text:
        raise ValueError(f"{path}: corrupt: a feature contains a line break")
    return features, index


def _decode_joined(path: Path, pieces: list[bytes], charset: str, what: str) -> list[str]:
    """Decode many byte strings with one codec call (NUL never occurs inside them)."""
    if not pieces:
        return []
    try:
        return b"\x00".join(pieces).decode(charset).split("\x00")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: {what} are not valid {charset}: {e}") from None


def _write_lexicon(path: Path, dic: _Dic) -> None:
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


# --------------------------------------------------------------------------------------------
# matrix.bin / char.bin


def _read_matrix(path: Path) -> tuple[int, int, np.ndarray]:
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: truncated: {len(data)} bytes, no matrix header")
    left_size, right_size = (int(v) for v in np.frombuffer(data, "<u2", count=2))
    expected = 4 + 2 * left_size * right_size
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "corrupt"
        raise ValueError(f"{path}: {problem}: a {left_size} x {right_size} matrix needs "
                         f"{expected} bytes, the file has {len(data)}")
    costs = np.frombuffer(data, "<i2", offset=4).reshape(right_size, left_size)
    return left_size, right_size, costs  # costs[r, l] = cost[l + lsize * r]


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


def _read_char(path: Path) -> tuple[list[str], np.ndarray]:
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: truncated: {len(data)} bytes, no category count")
    n = int(np.frombuffer(data, "<u4", count=1)[0])
    expected = 4 + 32 * n + 4 * _CHAR_TABLE
    if n == 0 or n > 18 or len(data) != expected:  # the type bit field holds 18 categories
        problem = "truncated" if n <= 18 and len(data) < expected else "corrupt"
        raise ValueError(f"{path}: {problem}: {n} categories need {expected} bytes, "
                         f"the file has {len(data)}")
    names = []
    for i in range(n):
        raw = bytes(data[4 + 32 * i: 4 + 32 * (i + 1)]).split(b"\x00", 1)[0]
        try:
            names.append(raw.decode("ascii"))
        except UnicodeDecodeError:
            raise ValueError(f"{path}: corrupt category name {raw!r}") from None
    if "DEFAULT" not in names:
        raise ValueError(f"{path}: no DEFAULT category (MeCab and vibrato both require one)")
    table = np.frombuffer(data, "<u4", count=_CHAR_TABLE, offset=4 + 32 * n)
    if int(((table >> 18) & 0xFF).max()) >= n:
        raise ValueError(f"{path}: corrupt: a character's category is out of range")
    return names, table


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


# --------------------------------------------------------------------------------------------
# Helpers


def _require_binary_dictionary(path: Path) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such MeCab dictionary directory")
    missing = [name for name in BINARY_FILES if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: not a compiled MeCab dictionary, missing {missing}")


def _read_bytes(path: Path) -> memoryview:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return memoryview(path.read_bytes())


def _codec(path: Path, raw: bytes) -> str:
    """Python codec for the charset named in a dictionary header (utf8, EUC-JP, SHIFT-JIS, ...)."""
    name = raw.split(b"\x00", 1)[0].decode("ascii", "replace").strip()
    try:
        codec = codecs.lookup(name).name
        ascii_based = "\x00,a".encode(codec) == b"\x00,a"
    except LookupError:
        raise ValueError(f"{path}: unknown dictionary charset {name!r}") from None
    if not ascii_based:  # the NUL-joined decoding below relies on it
        raise ValueError(f"{path}: unsupported dictionary charset {name!r} (not ASCII-based)")
    return codec


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _is_complete(target: Path) -> bool:
    return all((target / name).is_file() for name in TEXT_FILES)
