"""Decode compiled MeCab dictionaries (sys.dic, unk.dic, matrix.bin, char.bin) into NumPy arrays.

The binaries are checked as they are read (formats in DESIGN.md §5), so a truncated or corrupt file is a
clear ValueError naming it, before :mod:`wwm_prep.text.mecab_binary` writes any text from them.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["BINARY_FILES", "BinaryDictionary", "Lexicon", "read_binary_dictionary", "require_binary_dictionary"]

BINARY_FILES = ("sys.dic", "unk.dic", "matrix.bin", "char.bin")

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


@dataclass(eq=False)
class Lexicon:
    """A decoded sys.dic/unk.dic: surfaces, and for each one its run of tokens."""

    path: Path
    surfaces: list[str]  # ordered by first token, i.e. MeCab's own order
    first: np.ndarray
    count: np.ndarray
    tokens: np.ndarray
    features: list[str]
    feature_index: np.ndarray  # token -> index into features


@dataclass(eq=False)
class BinaryDictionary:
    """All four binary files of a MeCab dictionary, decoded and checked against each other."""

    sys_dic: Lexicon
    unk_dic: Lexicon
    left_size: int
    right_size: int
    costs: np.ndarray  # costs[r, l] = cost[l + lsize * r]
    char_names: list[str]
    char_table: np.ndarray


def read_binary_dictionary(binary_dir: Path) -> BinaryDictionary:
    """Decode every binary file of `binary_dir` (so bad input fails before any output is written)."""
    require_binary_dictionary(binary_dir)
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
    return BinaryDictionary(sys_dic, unk_dic, left_size, right_size, costs, names, table)


def require_binary_dictionary(path: Path) -> None:
    """A FileNotFoundError naming what is missing, rather than a failure deep inside decoding."""
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such MeCab dictionary directory")
    missing = [name for name in BINARY_FILES if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: not a compiled MeCab dictionary, missing {missing}")


def _read_dic(path: Path) -> Lexicon:
    """One sys.dic/unk.dic: header checked against the file, trie walked, strings decoded."""
    data = _read_bytes(path)
    dsize, tsize, fsize, lexsize, charset = _read_header(path, data)
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
    return Lexicon(path, surfaces, first, count, tokens, features, feature_index)


def _read_header(path: Path, data: memoryview) -> tuple[int, int, int, int, str]:
    """Section sizes (double array, tokens, features), entry count and codec, each checked against the
    file: MeCab's magic number is the file size, so a cut or foreign file is told apart from a corrupt one."""
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
    return dsize, tsize, fsize, lexsize, charset


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


def _read_matrix(path: Path) -> tuple[int, int, np.ndarray]:
    """matrix.bin: the two context-id counts, then an int16 cost for every pair."""
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


def _read_char(path: Path) -> tuple[list[str], np.ndarray]:
    """char.bin: category names, then one packed uint32 per BMP code point."""
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


def _read_bytes(path: Path) -> memoryview:
    """The whole file, as a view NumPy can map arrays onto without copying."""
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
