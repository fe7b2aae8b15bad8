"""BERT-alpha's architecture in NumPy: enough of a model to sanity-check masked-LM data without torch.

BERT-alpha is Llama with the causal mask removed: token embeddings, then layers of
RMSNorm → grouped-query attention with RoPE → residual, RMSNorm → SwiGLU MLP → residual,
then a final RMSNorm and an untied output head. Everything here computes in float32.

Packed rows hold several document pieces. As in training, each piece is its own sequence:
RoPE positions restart at every piece and a token attends only to tokens of its own piece
(never to padding). Attention runs in blocks of queries against only the keys their pieces
can reach, so an 8,192-token row needs O(block × L) memory, not O(L²).

Top to bottom: configuration, blocks, model, masked-LM heads; `check.checkpoint` reads and writes the
weights. Shapes in comments: B rows, L tokens a row, H hidden, nh query heads, nkv key/value heads,
g = nh / nkv, hs head size, V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.rows import DocLengths, segments_and_positions
from wwm_prep.core.specials import IGNORE_INDEX, LLMJP_V3_IDS



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
        h, nh, nkv = self.hidden_size, self.num_attention_heads, self.num_key_value_heads
        if h % nh:
            raise CheckpointError(f"hidden_size {h} is not a multiple of num_attention_heads {nh}")
        if nh % nkv:
            raise CheckpointError(f"num_attention_heads {nh} is not a multiple of num_key_value_heads {nkv}")
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
            **{k: int(d[k]) for k in required},
            num_key_value_heads=int(d.get("num_key_value_heads") or d["num_attention_heads"]),
            rope_theta=float(d.get("rope_theta", rope.get("rope_theta", 10000.0))),
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
            max_position_embeddings=int(d.get("max_position_embeddings", 8192)),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
        )

    def to_hf_dict(self, dtype: str = "float32") -> dict[str, Any]:
        """A `config.json` that transformers' `LlamaConfig` also reads (ids are llm-jp v3's)."""
        return {
            "architectures": ["LlamaEncForMaskedLM"], "model_type": "llama", **asdict(self),
            "head_dim": self.head_dim, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
            "attention_dropout": 0.0, "initializer_range": 0.02,
            **{f"{role}_token_id": LLMJP_V3_IDS[role] for role in ("bos", "eos", "pad", "mask")},
            "use_cache": False, "torch_dtype": dtype,
        }


BERT_ALPHA_VOCAB_SIZE = 99_584  # llm-jp v3's pieces padded to a multiple of 128, as BERT-alpha was trained

_BERT_ALPHA_500M = dict(
    vocab_size=BERT_ALPHA_VOCAB_SIZE, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
    num_attention_heads=16, num_key_value_heads=8, rope_theta=20000.0, rms_norm_eps=1e-6,
    max_position_embeddings=8192, tie_word_embeddings=False,
)
PRESETS: dict[str, dict[str, Any]] = {
    "bert-alpha-500m": _BERT_ALPHA_500M,
    # BERT-alpha in miniature (same vocabulary, RoPE and grouped-query attention), for tests and trials
    "tiny": {**_BERT_ALPHA_500M, "hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2},
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


# A block's tensors, named for what they do, and the checkpoint's (Llama's) name of each under model.layers.N.
BLOCK_TENSORS = {"attn_norm": "input_layernorm", "q": "self_attn.q_proj", "k": "self_attn.k_proj",
                 "v": "self_attn.v_proj", "o": "self_attn.o_proj", "mlp_norm": "post_attention_layernorm",
                 "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}


def parameter_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of the checkpoint with its shape, in file order (Linear weights are [out, in])."""
    c = config
    h, d, kv, heads, inner = c.hidden_size, c.head_dim, c.num_key_value_heads, c.num_attention_heads, c.intermediate_size
    block = {"attn_norm": (h,), "q": (heads * d, h), "k": (kv * d, h), "v": (kv * d, h), "o": (h, heads * d),
             "mlp_norm": (h,), "gate": (inner, h), "up": (inner, h), "down": (h, inner)}
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (c.vocab_size, h)}
    for i in range(c.num_hidden_layers):
        shapes.update({f"model.layers.{i}.{name}.weight": block[part] for part, name in BLOCK_TENSORS.items()})
    shapes["model.norm.weight"] = (h,)
    if not c.tie_word_embeddings:
        shapes["lm_head.weight"] = (c.vocab_size, h)
    return shapes


def num_parameters(config: ModelConfig) -> int:
    """Parameter count from shapes alone, so the 500M config can be checked without 2 GB of weights."""
    return sum(math.prod(s) for s in parameter_shapes(config).values())


@dataclass(frozen=True)
class Block:
    """One layer's weights (Linear weights are [out, in])."""

    attn_norm: np.ndarray
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    o: np.ndarray
    mlp_norm: np.ndarray
    gate: np.ndarray
    up: np.ndarray
    down: np.ndarray


@dataclass
class Model:
    """A configuration and its float32 weights, keyed by Llama tensor name (`checkpoint.load_model` makes one).

    The names are mapped once, here, to the embedding, the blocks, the final norm and the output matrix that the
    math below uses (views of the same arrays, not copies)."""

    config: ModelConfig
    weights: dict[str, np.ndarray]
    embed: np.ndarray = field(init=False, repr=False)
    blocks: list[Block] = field(init=False, repr=False)
    norm: np.ndarray = field(init=False, repr=False)
    output_weight: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        w = self.weights
        self.embed, self.norm = w["model.embed_tokens.weight"], w["model.norm.weight"]
        self.blocks = [Block(**{part: w[f"model.layers.{i}.{name}.weight"] for part, name in BLOCK_TENSORS.items()})
                       for i in range(self.config.num_hidden_layers)]
        self.output_weight = self.embed if self.config.tie_word_embeddings else w["lm_head.weight"]


# --------------------------------------------------------------------------- blocks


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """Scale each vector to unit root-mean-square (no mean subtraction, no bias), then by `weight`."""
    ms = np.mean(np.square(x), axis=-1, keepdims=True)
    return x * (1.0 / np.sqrt(ms + np.float32(eps))) * weight


def rope_tables(positions: np.ndarray, head_dim: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of position × frequency, (tokens, head_dim / 2); angles in float64 for long rows."""
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    angles = positions.reshape(-1, 1).astype(np.float64) * inv_freq  # (B·L, hs/2)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate (tokens, heads, head_dim) vectors, pairing dimension i with i + head_dim/2 (Llama's layout)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[:, None, :], sin[:, None, :]  # (L, 1, hs/2): one rotation for every head
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
    qg = (q * np.float32(1.0 / math.sqrt(d))).reshape(n, kv_heads, groups, d).transpose(1, 2, 0, 3)  # (nkv, g, L, hs)
    kt = np.ascontiguousarray(k.transpose(1, 2, 0))  # (nkv, hs, L)
    vt = np.ascontiguousarray(v.transpose(1, 0, 2))  # (nkv, L, hs)
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
            scores = buf[: groups * (e - s) * (hi - lo)].reshape(groups, e - s, hi - lo)  # (g, block, keys)
            np.matmul(qg[h, :, s:e], kt[h, None, :, lo:hi], out=scores)
            if bias is not None:
                scores += bias
            scores = scores.reshape(groups * (e - s), hi - lo)  # (g·block, keys)
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            o = scores @ vt[h, lo:hi]
            o /= (scores @ ones[: hi - lo])[:, None]  # softmax denominators, by BLAS rather than .sum
            out[s:e, h] = o.reshape(groups, e - s, d).transpose(1, 0, 2)  # (block, g, hs)
    return out.reshape(n, heads, d)  # (L, nh, hs)


def silu(x: np.ndarray) -> np.ndarray:
    """x · sigmoid(x), with sigmoid via tanh so large |x| cannot overflow exp."""
    return x * (0.5 + 0.5 * np.tanh(0.5 * x))


def mlp(x: np.ndarray, block: Block) -> np.ndarray:
    """SwiGLU: down(silu(gate(x)) · up(x))."""
    h = silu(x @ block.gate.T)
    h *= x @ block.up.T
    return h @ block.down.T


def layer(x: np.ndarray, model: Model, i: int, seg: np.ndarray, cos: np.ndarray, sin: np.ndarray,
          block: int) -> np.ndarray:
    """One pre-norm block on (rows, L, hidden): x + attn(norm(x)), then + mlp(norm(x))."""
    c, w = model.config, model.blocks[i]
    b, n, hidden = x.shape
    h = rms_norm(x, w.attn_norm, c.rms_norm_eps).reshape(b * n, hidden)  # (B·L, H)
    q = (h @ w.q.T).reshape(b, n, c.num_attention_heads, c.head_dim)  # (B, L, nh, hs)
    k = (h @ w.k.T).reshape(b, n, c.num_key_value_heads, c.head_dim)  # (B, L, nkv, hs)
    v = (h @ w.v.T).reshape(b, n, c.num_key_value_heads, c.head_dim)  # (B, L, nkv, hs)
    att = np.empty_like(q)
    for r in range(b):
        cr, sr = cos[r * n : (r + 1) * n], sin[r * n : (r + 1) * n]
        att[r] = attention(apply_rope(q[r], cr, sr), apply_rope(k[r], cr, sr), v[r], seg[r], block)
    x = x + (att.reshape(b * n, hidden) @ w.o.T).reshape(b, n, hidden)  # (B, L, H)
    h = rms_norm(x, w.mlp_norm, c.rms_norm_eps)
    return x + mlp(h, w).reshape(b, n, hidden)


# --------------------------------------------------------------------------- the model (pieces, positions: core.rows)


def _as_batch(input_ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(input_ids)
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"input_ids must be an integer array of shape (rows, length), got {ids.dtype} {ids.shape}")
    return ids


def encode(model: Model, input_ids: np.ndarray, attention_mask: np.ndarray | None = None,
           position_ids: np.ndarray | None = None, doc_lengths: DocLengths = None, block: int = 512) -> np.ndarray:
    """Final hidden states (rows, L, hidden), after the last RMSNorm; see `segments_and_positions` for packing."""
    c = model.config
    ids = _as_batch(input_ids)
    if ids.size and (ids.min() < 0 or ids.max() >= c.vocab_size):
        raise ValueError(f"input_ids must lie in [0, {c.vocab_size}), found {ids.min()}..{ids.max()}")
    seg, pos = segments_and_positions(ids, attention_mask, position_ids, doc_lengths)
    if pos.size and pos.max() >= c.max_position_embeddings:
        raise ValueError(f"position {pos.max()} is beyond max_position_embeddings {c.max_position_embeddings}")
    cos, sin = rope_tables(pos, c.head_dim, c.rope_theta)
    x = model.embed[ids]  # (B, L, H)
    for i in range(c.num_hidden_layers):
        x = layer(x, model, i, seg, cos, sin, block)
    return rms_norm(x, model.norm, c.rms_norm_eps)


def forward(model: Model, input_ids: np.ndarray, attention_mask: np.ndarray | None = None,
            position_ids: np.ndarray | None = None, doc_lengths: DocLengths = None, block: int = 512) -> np.ndarray:
    """Logits (rows, L, vocab). For an 8,192-row of BERT-alpha that is 3.3 GB: prefer `mlm_loss`/`top_k`."""
    h = encode(model, input_ids, attention_mask, position_ids, doc_lengths, block)
    return h @ model.output_weight.T  # (B, L, V)


# --------------------------------------------------------------------------- masked-LM heads


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
        yield s, h[s : s + chunk] @ w.T  # (chunk, V)


def head_losses(model: Model, h: np.ndarray, target: np.ndarray,
                chunk: int = 512) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Per chunk of selected hidden states: where it starts, each token's cross-entropy, and whether the
    argmax is its target; per chunk so that callers can sum or keep them without holding every logit."""
    for s, logits in _head_chunks(model, h, chunk):
        t = target[s : s + len(logits)]
        m = logits.max(axis=-1)
        lse = m + np.log(np.exp(logits - m[:, None]).sum(axis=-1))
        yield s, lse - logits[np.arange(len(t)), t], logits.argmax(axis=-1) == t


def mlm_loss(model: Model, input_ids: np.ndarray, labels: np.ndarray, attention_mask: np.ndarray | None = None,
             position_ids: np.ndarray | None = None, doc_lengths: DocLengths = None,
             ignore_index: int = IGNORE_INDEX, chunk: int = 512) -> MLMStats:
    """Cross-entropy and accuracy at the tokens whose label is not `ignore_index` (a collator's output).

    The output head runs only on those tokens, so 15 % masking costs 15 % of the head.
    """
    ids = _as_batch(input_ids)
    lab = np.asarray(labels).reshape(ids.shape)
    h = encode(model, ids, attention_mask, position_ids, doc_lengths)
    select = lab != ignore_index
    stats = MLMStats(count=int(select.sum()))
    for _, losses, correct in head_losses(model, h[select], lab[select], chunk):
        stats.loss_sum += float(losses.astype(np.float64).sum())
        stats.correct += int(correct.sum())
    return stats


def evaluate_batch(model: Model, batch: Mapping[str, Any]) -> MLMStats:
    """`mlm_loss` on a collator's output (`input_ids`, `labels`, `attention_mask`, `position_ids` or
    `doc_lengths`; NumPy arrays or CPU tensors; other keys such as `cu_seqlens` are ignored)."""

    def get(key: str) -> np.ndarray | None:
        value = batch.get(key)
        return None if value is None else np.asarray(value)

    return mlm_loss(model, get("input_ids"), get("labels"), attention_mask=get("attention_mask"),
                    position_ids=get("position_ids"), doc_lengths=batch.get("doc_lengths"))


def top_k(model: Model, input_ids: np.ndarray, select: np.ndarray, k: int = 5,
          attention_mask: np.ndarray | None = None, position_ids: np.ndarray | None = None,
          doc_lengths: DocLengths = None) -> tuple[np.ndarray, np.ndarray]:
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
