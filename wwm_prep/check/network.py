"""BERT-alpha's architecture in NumPy: enough of a model to sanity-check masked-LM data without torch.

BERT-alpha is Llama with the causal mask removed: token embeddings, then layers of
RMSNorm → grouped-query attention with RoPE → residual, RMSNorm → SwiGLU MLP → residual,
then a final RMSNorm and an untied output head. Everything here computes in float32.

Packed rows hold several document pieces. As in training, each piece is its own sequence:
RoPE positions restart at every piece and a token attends only to tokens of its own piece
(never to padding). Attention runs in blocks of queries against only the keys their pieces
can reach, so an 8,192-token row needs O(block × L) memory, not O(L²).

Checkpoints use the Hugging Face layout (`config.json` + `model.safetensors` or a sharded
index) and Llama tensor names, in float32, float16 or bfloat16. The safetensors format is
read and written here directly (it is an 8-byte header length, a JSON header, raw bytes),
because NumPy has no bfloat16 and we want to stream 2 GB files tensor by tensor.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wwm_prep.core.errors import WwmPrepError

IGNORE_INDEX = -100  # label value of tokens that are not predicted (Hugging Face convention)


class CheckpointError(WwmPrepError, ValueError):
    """A config or checkpoint that does not fit the model; the message names the culprit."""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ModelConfig:
    """The fields of a Llama-encoder `config.json` that define the computation."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 8192
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise CheckpointError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise CheckpointError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}"
            )
        if self.head_dim % 2:
            raise CheckpointError(f"head_dim {self.head_dim} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Read a Hugging Face config dict, refusing features this module does not implement."""
        required = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"]
        missing = [k for k in required if k not in d]
        if missing:
            raise CheckpointError(f"config is missing {', '.join(missing)}")
        if d.get("hidden_act", "silu") != "silu":
            raise CheckpointError(f"hidden_act {d['hidden_act']!r} is not supported (only 'silu', i.e. SwiGLU)")
        for flag in ("attention_bias", "mlp_bias"):
            if d.get(flag):
                raise CheckpointError(f"{flag}=true is not supported (BERT-alpha has no biases)")
        rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise CheckpointError(f"rope type {rope_type!r} is not supported (only plain RoPE)")
        head_dim = d.get("head_dim")
        if head_dim is not None and head_dim != d["hidden_size"] // d["num_attention_heads"]:
            raise CheckpointError(f"head_dim {head_dim} != hidden_size / num_attention_heads is not supported")
        return cls(
            vocab_size=int(d["vocab_size"]),
            hidden_size=int(d["hidden_size"]),
            intermediate_size=int(d["intermediate_size"]),
            num_hidden_layers=int(d["num_hidden_layers"]),
            num_attention_heads=int(d["num_attention_heads"]),
            num_key_value_heads=int(d.get("num_key_value_heads") or d["num_attention_heads"]),
            rope_theta=float(d.get("rope_theta", rope.get("rope_theta", 10000.0))),
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
            max_position_embeddings=int(d.get("max_position_embeddings", 8192)),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
        )

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> ModelConfig:
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"no config.json at {path}") from None
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path} is not valid JSON: {e}") from None
        return cls.from_dict(d)

    def to_hf_dict(self, dtype: str = "float32") -> dict[str, Any]:
        """A `config.json` that transformers' `LlamaConfig` also reads (ids are llm-jp v3's)."""
        return {
            "architectures": ["LlamaEncForMaskedLM"],
            "model_type": "llama",
            **asdict(self),
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "attention_bias": False,
            "mlp_bias": False,
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 4,
            "mask_token_id": 3,
            "use_cache": False,
            "torch_dtype": dtype,
        }


BERT_ALPHA_VOCAB_SIZE = 99_584

PRESETS: dict[str, dict[str, Any]] = {
    "bert-alpha-500m": dict(
        vocab_size=BERT_ALPHA_VOCAB_SIZE, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
        num_attention_heads=16, num_key_value_heads=8, rope_theta=20000.0, rms_norm_eps=1e-6,
        max_position_embeddings=8192, tie_word_embeddings=False,
    ),
    "tiny": dict(
        vocab_size=BERT_ALPHA_VOCAB_SIZE, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rope_theta=20000.0, rms_norm_eps=1e-6,
        max_position_embeddings=8192, tie_word_embeddings=False,
    ),
}


def pad_vocab_size(n: int, multiple: int = 128) -> int:
    """Round a tokenizer's size up as Megatron-style trainers do (llm-jp v3's 99,574 → 99,584)."""
    return -(-n // multiple) * multiple


def get_config(config: str | Mapping[str, Any] | ModelConfig, vocab_size: int | None = None) -> ModelConfig:
    """A preset name ("tiny", "bert-alpha-500m"), a config dict, or a ModelConfig; `vocab_size` overrides."""
    if isinstance(config, ModelConfig):
        d: dict[str, Any] = asdict(config)
    elif isinstance(config, str):
        if config not in PRESETS:
            raise CheckpointError(f"unknown model config {config!r}; choose one of {', '.join(PRESETS)}")
        d = dict(PRESETS[config])
    else:
        d = dict(config)
    if vocab_size is not None:
        d["vocab_size"] = int(vocab_size)
    return ModelConfig.from_dict(d)


# --------------------------------------------------------------------------- parameters


def parameter_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of the checkpoint with its shape, in file order (Linear weights are [out, in])."""
    c = config
    h, d, kv = c.hidden_size, c.head_dim, c.num_key_value_heads
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (c.vocab_size, h)}
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        shapes[p + "input_layernorm.weight"] = (h,)
        shapes[p + "self_attn.q_proj.weight"] = (c.num_attention_heads * d, h)
        shapes[p + "self_attn.k_proj.weight"] = (kv * d, h)
        shapes[p + "self_attn.v_proj.weight"] = (kv * d, h)
        shapes[p + "self_attn.o_proj.weight"] = (h, c.num_attention_heads * d)
        shapes[p + "post_attention_layernorm.weight"] = (h,)
        shapes[p + "mlp.gate_proj.weight"] = (c.intermediate_size, h)
        shapes[p + "mlp.up_proj.weight"] = (c.intermediate_size, h)
        shapes[p + "mlp.down_proj.weight"] = (h, c.intermediate_size)
    shapes["model.norm.weight"] = (h,)
    if not c.tie_word_embeddings:
        shapes["lm_head.weight"] = (c.vocab_size, h)
    return shapes


def num_parameters(config: ModelConfig) -> int:
    """Parameter count from shapes alone, so the 500M config can be checked without 2 GB of weights."""
    return sum(math.prod(s) for s in parameter_shapes(config).values())


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


def init_weights(config: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """All weights in memory (fine for small configs; `init_checkpoint` streams big ones to disk)."""
    return {name: init_tensor(name, shape, seed) for name, shape in parameter_shapes(config).items()}


# --------------------------------------------------------------------------- safetensors I/O

_DTYPES = {"F32": (np.float32, 4), "F16": (np.float16, 2), "BF16": (np.uint16, 2), "F64": (np.float64, 8)}
_SAVE_DTYPES = {"float32": "F32", "bfloat16": "BF16"}


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


@dataclass
class Model:
    """A configuration and its float32 weights, keyed by Llama tensor name."""

    config: ModelConfig
    weights: dict[str, np.ndarray]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Model:
        return load_model(path)

    @property
    def output_weight(self) -> np.ndarray:
        key = "model.embed_tokens.weight" if self.config.tie_word_embeddings else "lm_head.weight"
        return self.weights[key]


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


def load_model(path: str | os.PathLike[str]) -> Model:
    """Load a Hugging Face checkpoint directory; shapes and names are checked before any data is read."""
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    config = ModelConfig.from_json(directory / "config.json")
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
) -> Path:
    """Write a randomly initialised checkpoint (config.json + model.safetensors), so nothing needs a download.

    Tensors are generated and written one at a time: the 500M config in float32 (2.3 GB) needs
    only its largest tensor (the 400 MB embedding) in memory.
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
    (out / "config.json").write_text(json.dumps(cfg.to_hf_dict(dtype), indent=2) + "\n", encoding="utf-8")
    return out


# --------------------------------------------------------------------------- packed rows


def segments_and_positions(
    input_ids: np.ndarray,
    attention_mask: np.ndarray | None = None,
    position_ids: np.ndarray | None = None,
    doc_lengths: Sequence[Sequence[int]] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per token: which piece it belongs to (-1 = padding) and its RoPE position.

    Pieces come from `doc_lengths` (per row; tokens past their sum are padding), else from
    `position_ids` (a piece starts wherever the position does not follow the previous one, as
    in a collator's output), else the whole row is one piece. `attention_mask` == 0 marks
    padding in every case. Positions are `position_ids` if given, else restart at each piece.
    """
    b, n = input_ids.shape
    seg = np.zeros((b, n), dtype=np.int64)
    if doc_lengths is not None:
        if len(doc_lengths) != b:
            raise ValueError(f"doc_lengths has {len(doc_lengths)} rows, input_ids {b}")
        pos = np.zeros((b, n), dtype=np.int64)
        for r, lengths in enumerate(doc_lengths):
            lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
            if (lengths < 0).any():
                raise ValueError(f"row {r}: negative doc_lengths {lengths.tolist()}")
            lengths = lengths[lengths > 0]  # zeros pad ragged rows of a 2-D array
            total = int(lengths.sum())
            if total > n:
                raise ValueError(f"row {r}: doc_lengths sum to {total}, more than the row's {n} tokens")
            starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
            seg[r, :total] = np.repeat(np.arange(len(lengths)), lengths)
            seg[r, total:] = -1
            pos[r, :total] = np.arange(total) - starts
    elif position_ids is not None:
        pos = np.asarray(position_ids, dtype=np.int64).reshape(b, n)
        starts = np.ones((b, n), dtype=bool)
        starts[:, 1:] = pos[:, 1:] != pos[:, :-1] + 1
        seg = np.cumsum(starts, axis=1) - 1
    else:
        pos = np.broadcast_to(np.arange(n), (b, n)).copy()
    if attention_mask is not None:
        keep = np.asarray(attention_mask).reshape(b, n) != 0
        seg = np.where(keep, seg, -1)
        if position_ids is None and doc_lengths is None:  # left padding: count only real tokens
            pos = np.maximum(np.cumsum(keep, axis=1) - 1, 0)
    if position_ids is not None:
        pos = np.asarray(position_ids, dtype=np.int64).reshape(b, n)
    return seg, pos


# --------------------------------------------------------------------------- the network


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """Scale each vector to unit root-mean-square (no mean subtraction, no bias), then by `weight`."""
    ms = np.mean(np.square(x), axis=-1, keepdims=True)
    return x * (1.0 / np.sqrt(ms + np.float32(eps))) * weight


def rope_tables(positions: np.ndarray, head_dim: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of position × frequency, (tokens, head_dim / 2); angles in float64 for long rows."""
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    angles = positions.reshape(-1, 1).astype(np.float64) * inv_freq
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate (tokens, heads, head_dim) vectors, pairing dimension i with i + head_dim/2 (Llama's layout)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[:, None, :], sin[:, None, :]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, seg: np.ndarray, block: int = 512) -> np.ndarray:
    """Bidirectional grouped-query attention for one row, each token seeing only its own piece.

    q: (L, heads, d); k, v: (L, kv_heads, d); seg: (L,) piece ids, -1 for padding (padding
    sees only padding, so no row of scores is empty). Queries go `block` at a time, one
    key/value head at a time, against only the span of keys their pieces cover: scores take
    O(groups × block × L) memory in one reused buffer (fresh 100 MB arrays cost page faults),
    and packed rows of short pieces cost far less than L².
    """
    n, heads, d = q.shape
    kv_heads = k.shape[1]
    groups = heads // kv_heads
    # Query head h uses key/value head h // groups, as transformers' repeat_kv does.
    qg = (q * np.float32(1.0 / math.sqrt(d))).reshape(n, kv_heads, groups, d).transpose(1, 2, 0, 3)
    kt = np.ascontiguousarray(k.transpose(1, 2, 0))  # (kv, d, L)
    vt = np.ascontiguousarray(v.transpose(1, 0, 2))  # (kv, L, d)
    ids = seg + 1  # 0 = padding, so ids index arrays
    first = np.full(ids.max() + 1, n)
    last = np.full(ids.max() + 1, -1)
    np.minimum.at(first, ids, np.arange(n))
    np.maximum.at(last, ids, np.arange(n))
    ones = np.ones(n, dtype=np.float32)
    buf = np.empty(groups * min(block, n) * n, dtype=np.float32)
    out = np.empty((n, kv_heads, groups, d), dtype=np.float32)
    for s in range(0, n, block):
        e = min(s + block, n)
        qb_ids = ids[s:e]
        lo, hi = first[qb_ids].min(), last[qb_ids].max() + 1
        allowed = qb_ids[:, None] == ids[None, lo:hi]
        bias = None if allowed.all() else np.where(allowed, np.float32(0), np.float32(-np.inf))
        for h in range(kv_heads):
            scores = buf[: groups * (e - s) * (hi - lo)].reshape(groups, e - s, hi - lo)
            np.matmul(qg[h, :, s:e], kt[h, None, :, lo:hi], out=scores)
            if bias is not None:
                scores += bias
            scores = scores.reshape(groups * (e - s), hi - lo)
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            o = scores @ vt[h, lo:hi]
            o /= (scores @ ones[: hi - lo])[:, None]  # softmax denominators, by BLAS rather than .sum
            out[s:e, h] = o.reshape(groups, e - s, d).transpose(1, 0, 2)
    return out.reshape(n, heads, d)


def silu(x: np.ndarray) -> np.ndarray:
    """x · sigmoid(x), with sigmoid via tanh so large |x| cannot overflow exp."""
    return x * (0.5 + 0.5 * np.tanh(0.5 * x))


def mlp(x: np.ndarray, w: Mapping[str, np.ndarray], prefix: str) -> np.ndarray:
    """SwiGLU: down(silu(gate(x)) · up(x))."""
    h = silu(x @ w[prefix + "gate_proj.weight"].T)
    h *= x @ w[prefix + "up_proj.weight"].T
    return h @ w[prefix + "down_proj.weight"].T


def layer(
    x: np.ndarray, model: Model, i: int, seg: np.ndarray, cos: np.ndarray, sin: np.ndarray, block: int
) -> np.ndarray:
    """One pre-norm block on (rows, L, hidden): x + attn(norm(x)), then + mlp(norm(x))."""
    c, w, p = model.config, model.weights, f"model.layers.{i}."
    b, n, hidden = x.shape
    h = rms_norm(x, w[p + "input_layernorm.weight"], c.rms_norm_eps).reshape(b * n, hidden)
    q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(b, n, c.num_attention_heads, c.head_dim)
    k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(b, n, c.num_key_value_heads, c.head_dim)
    v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(b, n, c.num_key_value_heads, c.head_dim)
    att = np.empty_like(q)
    for r in range(b):
        cr, sr = cos[r * n : (r + 1) * n], sin[r * n : (r + 1) * n]
        att[r] = attention(apply_rope(q[r], cr, sr), apply_rope(k[r], cr, sr), v[r], seg[r], block)
    x = x + (att.reshape(b * n, hidden) @ w[p + "self_attn.o_proj.weight"].T).reshape(b, n, hidden)
    h = rms_norm(x, w[p + "post_attention_layernorm.weight"], c.rms_norm_eps)
    return x + mlp(h, w, p + "mlp.").reshape(b, n, hidden)


def _as_batch(input_ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(input_ids)
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"input_ids must be an integer array of shape (rows, length), got {ids.dtype} {ids.shape}")
    return ids


def encode(
    model: Model,
    input_ids: np.ndarray,
    attention_mask: np.ndarray | None = None,
    position_ids: np.ndarray | None = None,
    doc_lengths: Sequence[Sequence[int]] | np.ndarray | None = None,
    block: int = 512,
) -> np.ndarray:
    """Final hidden states (rows, L, hidden), after the last RMSNorm; see `segments_and_positions` for packing."""
    c, w = model.config, model.weights
    ids = _as_batch(input_ids)
    if ids.size and (ids.min() < 0 or ids.max() >= c.vocab_size):
        raise ValueError(f"input_ids must lie in [0, {c.vocab_size}), found {ids.min()}..{ids.max()}")
    seg, pos = segments_and_positions(ids, attention_mask, position_ids, doc_lengths)
    if pos.size and pos.max() >= c.max_position_embeddings:
        raise ValueError(f"position {pos.max()} is beyond max_position_embeddings {c.max_position_embeddings}")
    cos, sin = rope_tables(pos, c.head_dim, c.rope_theta)
    x = w["model.embed_tokens.weight"][ids]
    for i in range(c.num_hidden_layers):
        x = layer(x, model, i, seg, cos, sin, block)
    return rms_norm(x, w["model.norm.weight"], c.rms_norm_eps)


def forward(
    model: Model,
    input_ids: np.ndarray,
    attention_mask: np.ndarray | None = None,
    position_ids: np.ndarray | None = None,
    doc_lengths: Sequence[Sequence[int]] | np.ndarray | None = None,
    block: int = 512,
) -> np.ndarray:
    """Logits (rows, L, vocab). For an 8,192-row of BERT-alpha that is 3.3 GB: prefer `mlm_loss`/`top_k`."""
    h = encode(model, input_ids, attention_mask, position_ids, doc_lengths, block)
    return h @ model.output_weight.T


# --------------------------------------------------------------------------- masked-LM helpers


@dataclass
class MLMStats:
    """Sums over predicted tokens, so batches add up before dividing."""

    loss_sum: float = 0.0
    correct: int = 0
    count: int = 0

    @property
    def loss(self) -> float:
        return self.loss_sum / self.count if self.count else float("nan")

    @property
    def accuracy(self) -> float:
        return self.correct / self.count if self.count else float("nan")

    def __add__(self, other: MLMStats) -> MLMStats:
        return MLMStats(self.loss_sum + other.loss_sum, self.correct + other.correct, self.count + other.count)


def _head_chunks(model: Model, h: np.ndarray, chunk: int) -> Iterable[tuple[int, np.ndarray]]:
    """Logits for selected hidden states, `chunk` rows at a time (a row is 400 KB at vocab 99,584)."""
    w = model.output_weight
    for s in range(0, len(h), chunk):
        yield s, h[s : s + chunk] @ w.T


def mlm_loss(
    model: Model,
    input_ids: np.ndarray,
    labels: np.ndarray,
    attention_mask: np.ndarray | None = None,
    position_ids: np.ndarray | None = None,
    doc_lengths: Sequence[Sequence[int]] | np.ndarray | None = None,
    ignore_index: int = IGNORE_INDEX,
    chunk: int = 512,
) -> MLMStats:
    """Cross-entropy and accuracy at the tokens whose label is not `ignore_index` (a collator's output).

    The output head runs only on those tokens, so 15 % masking costs 15 % of the head.
    """
    ids = _as_batch(input_ids)
    lab = np.asarray(labels).reshape(ids.shape)
    h = encode(model, ids, attention_mask, position_ids, doc_lengths)
    select = lab != ignore_index
    h, target = h[select], lab[select]
    stats = MLMStats(count=int(select.sum()))
    for s, logits in _head_chunks(model, h, chunk):
        t = target[s : s + len(logits)]
        m = logits.max(axis=-1)
        lse = m + np.log(np.exp(logits - m[:, None]).sum(axis=-1))
        stats.loss_sum += float((lse - logits[np.arange(len(t)), t]).astype(np.float64).sum())
        stats.correct += int((logits.argmax(axis=-1) == t).sum())
    return stats


def evaluate_batch(model: Model, batch: Mapping[str, Any]) -> MLMStats:
    """`mlm_loss` on a collator's output (`input_ids`, `labels`, `attention_mask`, `position_ids` or
    `doc_lengths`; NumPy arrays or CPU tensors; other keys such as `cu_seqlens` are ignored)."""

    def get(key: str) -> np.ndarray | None:
        value = batch.get(key)
        return None if value is None else np.asarray(value)

    return mlm_loss(
        model, get("input_ids"), get("labels"), attention_mask=get("attention_mask"),
        position_ids=get("position_ids"), doc_lengths=batch.get("doc_lengths"),
    )


def top_k(
    model: Model,
    input_ids: np.ndarray,
    select: np.ndarray,
    k: int = 5,
    attention_mask: np.ndarray | None = None,
    position_ids: np.ndarray | None = None,
    doc_lengths: Sequence[Sequence[int]] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k likeliest tokens and their probabilities at the positions where `select` is true (fill-mask)."""
    ids = _as_batch(input_ids)
    h = encode(model, ids, attention_mask, position_ids, doc_lengths)[np.asarray(select).reshape(ids.shape)]
    top_ids, top_p = [], []
    for _, logits in _head_chunks(model, h, 512):
        p = np.exp(logits - logits.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        idx = np.argpartition(-p, min(k, p.shape[-1]) - 1, axis=-1)[:, :k]
        idx = np.take_along_axis(idx, np.argsort(-np.take_along_axis(p, idx, axis=-1), axis=-1), axis=-1)
        top_ids.append(idx)
        top_p.append(np.take_along_axis(p, idx, axis=-1))
    if not top_ids:
        return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
    return np.concatenate(top_ids), np.concatenate(top_p)
