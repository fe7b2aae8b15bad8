"""Checkpoints in the Hugging Face layout: `config.json` plus `model.safetensors` or a sharded index,
Llama tensor names, float32, float16 or bfloat16 on disk, float32 in memory.

The safetensors format (an 8-byte header length, a JSON header, raw little-endian bytes) is read and
written here by hand rather than with the `safetensors` library: NumPy has no bfloat16, so that library
cannot hand NumPy a BF16 tensor or write one, and its `save_file` needs every tensor in memory at once,
whereas a 500M checkpoint is written here one tensor at a time (peak memory: its largest tensor).
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wwm_prep.check.network import CheckpointError, Model, ModelConfig, get_config, parameter_shapes

_DTYPES = {"F32": (np.float32, 4), "F16": (np.float16, 2), "BF16": (np.uint16, 2), "F64": (np.float64, 8)}
_SAVE_DTYPES = {"float32": "F32", "bfloat16": "BF16"}


# --------------------------------------------------------------------------- safetensors I/O


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32: widen the raw uint16 bits by a 16-bit shift."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 bits (round to nearest, ties to even), as torch does."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        rounded[nan] = 0x7FC0
    return rounded


def read_safetensors_header(path: str | os.PathLike[str]) -> tuple[dict[str, Any], int]:
    """The JSON header (tensor name → dtype, shape, byte offsets) and where the data starts."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path} is not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000:
            raise CheckpointError(f"{path} is not a safetensors file (header length {n})")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path} is not a safetensors file: {e}") from None
    header.pop("__metadata__", None)
    return header, 8 + n


def load_safetensors(path: str | os.PathLike[str], names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Read tensors (all, or `names`) as float32, one at a time, without mapping the whole file."""
    header, start = read_safetensors_header(path)
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as f:
        for name in header if names is None else names:
            info = header[name]
            if info["dtype"] not in _DTYPES:
                raise CheckpointError(f"tensor {name} in {path} has unsupported dtype {info['dtype']}")
            np_dtype, size = _DTYPES[info["dtype"]]
            shape = tuple(info["shape"])
            begin, end = info["data_offsets"]
            if end - begin != math.prod(shape) * size:
                raise CheckpointError(f"tensor {name} in {path}: {end - begin} bytes do not hold shape {shape}")
            arr = np.empty(math.prod(shape), dtype=np_dtype)
            f.seek(start + begin)
            if f.readinto(memoryview(arr).cast("B")) != end - begin:
                raise CheckpointError(f"tensor {name} in {path} is truncated")
            arr = bf16_to_f32(arr) if info["dtype"] == "BF16" else arr.astype(np.float32, copy=False)
            out[name] = arr.reshape(shape)
    return out


def _write_safetensors(
    path: Path, shapes: Mapping[str, tuple[int, ...]], dtype: str, produce: Callable[[str], np.ndarray]
) -> None:
    """Write the header from shapes, then each tensor as `produce` makes it (peak memory: one tensor)."""
    code = _SAVE_DTYPES.get(dtype)
    if code is None:
        raise CheckpointError(f"dtype {dtype!r} is not supported; choose float32 or bfloat16")
    size = _DTYPES[code][1]
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes.items():
        nbytes = math.prod(shape) * size
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the data should start 8-byte aligned
    tmp = path.with_name(path.name + ".tmp")  # a crash leaves no half-written model.safetensors
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(blob)))
            f.write(blob)
            for name, shape in shapes.items():
                x = np.asarray(produce(name), dtype=np.float32)
                if x.shape != tuple(shape):
                    raise CheckpointError(f"tensor {name} has shape {x.shape}, expected {tuple(shape)}")
                f.write((f32_to_bf16(x) if code == "BF16" else np.ascontiguousarray(x)).tobytes())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_safetensors(path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray], dtype: str = "float32") -> None:
    """Write tensors (any float dtype in memory) as a float32 or bfloat16 safetensors file."""
    _write_safetensors(Path(path), {k: tuple(np.shape(v)) for k, v in tensors.items()}, dtype, tensors.__getitem__)



# --------------------------------------------------------------------------- checkpoints


def init_tensor(name: str, shape: tuple[int, ...], seed: int, std: float = 0.02) -> np.ndarray:
    """Llama's initialisation: N(0, std) for matrices, ones for norms.

    Each tensor has its own stream seeded by (seed, name), so a tensor does not change when
    others are added or the file is written in another dtype.
    """
    if len(shape) == 1:
        return np.ones(shape, dtype=np.float32)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    x = rng.standard_normal(shape, dtype=np.float32)
    x *= np.float32(std)
    return x


def check_weights(config: ModelConfig, weights: Mapping[str, np.ndarray | tuple[int, ...]]) -> None:
    """Refuse missing, unexpected or misshapen tensors, naming each one."""
    expected = parameter_shapes(config)
    ignorable = {"lm_head.weight"} if config.tie_word_embeddings else set()
    names = {n for n in weights if not n.endswith("rotary_emb.inv_freq")}  # buffers old Llama files carry
    problems = []
    missing = [n for n in expected if n not in names]
    if missing:
        problems.append(f"missing tensors: {', '.join(missing)}")
    unexpected = sorted(names - expected.keys() - ignorable)
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected)}")
    for n, shape in expected.items():
        if n in names:
            got = tuple(weights[n]) if isinstance(weights[n], tuple) else tuple(np.shape(weights[n]))
            if got != shape:
                problems.append(f"tensor {n} has shape {list(got)}, expected {list(shape)}")
    if problems:
        raise CheckpointError("checkpoint does not match its config: " + "; ".join(problems))


def _weight_files(directory: Path) -> dict[str, list[str]]:
    """File → tensor names to read from it, from `model.safetensors` or a sharded index."""
    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    if single.exists():
        header, _ = read_safetensors_header(single)
        return {single.name: list(header)}
    if index.exists():
        try:
            weight_map: dict[str, str] = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index} is not a safetensors index (no weight_map): {e!r}") from None
        files: dict[str, list[str]] = {}
        for name, file in weight_map.items():
            files.setdefault(file, []).append(name)
        return files
    raise CheckpointError(f"no model.safetensors or model.safetensors.index.json in {directory}")


def read_config_json(path: Path) -> dict[str, Any]:
    """A checkpoint's `config.json`, or a CheckpointError naming the file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"no config.json at {path}") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None


def load_model(path: str | os.PathLike[str]) -> Model:
    """Load a Hugging Face checkpoint directory; shapes and names are checked before any data is read."""
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    config = ModelConfig.from_dict(read_config_json(directory / "config.json"))
    files = _weight_files(directory)
    shapes: dict[str, tuple[int, ...]] = {}
    for file, names in files.items():
        if not (directory / file).exists():
            raise CheckpointError(f"shard {file} listed in the index is missing from {directory}")
        header, _ = read_safetensors_header(directory / file)
        absent = [n for n in names if n not in header]
        if absent:
            raise CheckpointError(f"tensors listed in the index are not in {file}: {', '.join(absent)}")
        shapes.update({n: tuple(header[n]["shape"]) for n in names})
    check_weights(config, shapes)
    wanted = parameter_shapes(config).keys()
    weights: dict[str, np.ndarray] = {}
    for file, names in files.items():
        weights.update(load_safetensors(directory / file, [n for n in names if n in wanted]))
    return Model(config, weights)


def init_checkpoint(
    config: str | Mapping[str, Any] | ModelConfig,
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    dtype: str = "float32",
    vocab_size: int | None = None,
    overwrite: bool = False,
    declare: Mapping[str, Any] | None = None,
) -> Path:
    """Write a randomly initialised checkpoint (config.json + model.safetensors), so nothing needs a download.

    Tensors are generated and written one at a time: the 500M config in float32 (2.3 GB) needs
    only its largest tensor (the 400 MB embedding) in memory. `declare` adds keys to config.json or
    overrides its own (Hugging Face keeps keys it does not know), e.g. the tokenizer the model is for.
    """
    cfg = get_config(config, vocab_size)
    if dtype not in _SAVE_DTYPES:
        raise CheckpointError(f"dtype {dtype!r} is not supported; choose float32 or bfloat16")
    out = Path(out_dir)
    targets = [out / "config.json", out / "model.safetensors"]
    if not overwrite and any(t.exists() for t in targets):
        raise CheckpointError(f"{out} already holds a checkpoint; pass overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    shapes = parameter_shapes(cfg)
    _write_safetensors(out / "model.safetensors", shapes, dtype, lambda n: init_tensor(n, shapes[n], seed))
    config_json = {**cfg.to_hf_dict(dtype), **(declare or {})}
    (out / "config.json").write_text(json.dumps(config_json, indent=2) + "\n", encoding="utf-8")
    return out

