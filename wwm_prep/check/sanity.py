"""Does a model read this data? `init-model` and `sanity` behind the command line.

A checkpoint *declares* its tokenizer by two extra keys in its `config.json` (Hugging Face keeps unknown
keys): `wwm_prep_tokenizer_sha256` (what is compared) and `wwm_prep_tokenizer_path` (where `fill-mask`
finds the model by default). `init-model --tokenizer` writes them; a checkpoint made elsewhere has
none, and `--tokenizer` on `sanity` / `fill-mask` says which tokenizer it was trained with.

`sanity` checks the cheap things first, from `config.json` and the packed manifest, before any weight
is read or any forward runs: the data's tokenizer against the model's, ids against the vocabulary,
row length against the positions. Then it masks real packed rows with the WholeWordMaskCollator
exactly as a trainer would and reports masked-LM loss, accuracy and perplexity, overall and per
subset. A loss near ln V (V = the model's vocabulary) is what a model that knows nothing scores: an
untrained one, or one fed another tokenizer's ids.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wwm_prep.check import checkpoint, network
from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.manifest import SequenceManifest, TokenizerRecord
from wwm_prep.core.rows import RowLayout, subset_of
from wwm_prep.core.specials import IGNORE_INDEX
from wwm_prep.text.tokenizer import locate_tokenizer, open_tokenizer, tokenizer_sha256

TOKENIZER_SHA_KEY = "wwm_prep_tokenizer_sha256"
TOKENIZER_PATH_KEY = "wwm_prep_tokenizer_path"
TOKENIZER_PIECES_KEY = "wwm_prep_tokenizer_pieces"
UNTRAINED_TOLERANCE = 0.10  # loss within 10 % of ln V: the model predicts about as well as a uniform guess
HEAD_CHUNK = 512  # masked tokens per output-head matmul (a row of logits is 400 KB at BERT-alpha's vocab)
DEFAULT_BATCHES = 2
DEFAULT_BATCH_SIZE = 4
ROW_COLUMNS = ("input_ids", "word_starts", "doc_lengths")  # what the collator reads of a row


def _log_nothing(message: str) -> None:
    pass


# ---------------------------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class DeclaredModel:
    """What `config.json` says, read without touching the weights."""

    dir: Path
    config: network.ModelConfig
    tokenizer_sha256: str | None
    tokenizer_path: str | None


def read_model_config(model_dir: Path) -> DeclaredModel:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise WwmPrepError(f"model directory {model_dir} does not exist")
    raw = checkpoint.read_config_json(model_dir / "config.json")
    config = network.ModelConfig.from_dict(raw)
    return DeclaredModel(model_dir, config, raw.get(TOKENIZER_SHA_KEY), raw.get(TOKENIZER_PATH_KEY))


def init_model(config: str | Mapping[str, Any], out: Path, *, vocab_size: int | None = None,
               tokenizer: Path | None = None, dtype: str = "float32", seed: int = 0,
               overwrite: bool = False) -> dict[str, Any]:
    """Write a random checkpoint; with `tokenizer`, size the vocabulary from it and declare it in config.json."""
    if vocab_size is not None and tokenizer is not None:
        raise WwmPrepError("give --vocab-size or --tokenizer, not both (the tokenizer sets the vocabulary size)")
    if vocab_size is not None and vocab_size < 1:
        raise WwmPrepError(f"--vocab-size must be positive, not {vocab_size}")
    tok = open_tokenizer(tokenizer) if tokenizer is not None else None
    declare: dict[str, Any] = {}
    if tok is not None:
        vocab_size = network.pad_vocab_size(tok.vocab_size)
        declare = {TOKENIZER_SHA_KEY: tok.sha256, TOKENIZER_PATH_KEY: str(tok.path.resolve()),
                   TOKENIZER_PIECES_KEY: tok.vocab_size}
        declare |= {f"{role}_token_id": tok.special_ids[role] for role in ("bos", "eos", "pad", "mask")
                    if role in tok.special_ids}
    cfg = network.get_config(config, vocab_size)
    out = Path(out)
    checkpoint.init_checkpoint(cfg, out, seed=seed, dtype=dtype, overwrite=overwrite, declare=declare)
    return {
        "dir": str(out),
        "config": cfg,
        "parameters": network.num_parameters(cfg),
        "dtype": dtype,
        "seed": seed,
        "tokenizer": None if tok is None else {"path": declare[TOKENIZER_PATH_KEY], "sha256": tok.sha256,
                                               "pieces": tok.vocab_size},
        "bytes": sum(p.stat().st_size for p in out.iterdir() if p.is_file()),
    }


def _model_tokenizer(declared: DeclaredModel, tokenizer: Path | None) -> tuple[str | None, str]:
    """The sha256 of the model's tokenizer (None: unknown) and where that knowledge comes from; a `tokenizer`
    given for the model must be the one it declares, if it declares one."""
    if tokenizer is None:
        return declared.tokenizer_sha256, "declared in its config.json"
    path, _ = locate_tokenizer(declared.tokenizer_path, declared.tokenizer_sha256, tokenizer,
                               made_with="the model declares")
    return declared.tokenizer_sha256 or tokenizer_sha256(path), f"given by --tokenizer {tokenizer}"


# ---------------------------------------------------------------------------------------------- packed data


@dataclass
class PackedData:
    dir: Path
    seq_len: int
    tokenizer: TokenizerRecord  # what segment and pack recorded of the data's tokenizer
    shards: list[Path]
    rows: int


def open_packed(data_dir: Path) -> PackedData:
    """The manifest of a `pack` output directory, with the tokenizer facts it inherited from `segment`."""
    from wwm_prep.core.shards import open_sequences

    opened = open_sequences(data_dir, "sanity")
    data_dir, manifest = opened.dir, opened.manifest
    assert isinstance(manifest, SequenceManifest)
    tokenizer = manifest.tokenizer
    missing = [role for role in ("mask", "pad") if role not in tokenizer.special_ids]
    if missing:
        raise WwmPrepError(f"{data_dir / 'manifest.json'} records no {' or '.join(missing)} id for the data's "
                           "tokenizer; cannot mask its rows")
    shards = [data_dir / s["file"] for s in manifest.shards]  # in the manifest's order
    return PackedData(data_dir, manifest.config.seq_len, tokenizer, shards, int(manifest.totals.get("rows", 0)))


def read_rows(data: PackedData, n: int) -> list[dict[str, Any]]:
    """The first `n` rows in manifest order (pack shuffles within each shard, so these are a fair mix)."""
    from wwm_prep.core.shards import ListColumn, load_schema, read_batches

    rows: list[dict[str, Any]] = []
    schema = load_schema("sequence")
    for shard in data.shards:
        for batch in read_batches(shard, schema):
            take = min(batch.num_rows, n - len(rows))
            cols = {name: ListColumn.of(batch.column(name).slice(0, take), dtype=dtype).split()
                    for name, dtype in (("input_ids", np.int64), ("word_starts", np.uint8), ("doc_lengths", np.int64))}
            sources = batch.column("doc_sources").slice(0, take).to_pylist()
            rows += [{**{name: cols[name][i] for name in ROW_COLUMNS}, "doc_sources": sources[i]} for i in range(take)]
            if len(rows) >= n:
                return rows
    return rows


# ---------------------------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Flag:
    code: str
    message: str


def _tokenizer_flags(model_tokenizer_sha: str | None, data: PackedData, origin: str) -> list[Flag]:
    data_sha = data.tokenizer.sha256
    if not (model_tokenizer_sha and data_sha and model_tokenizer_sha != data_sha):
        return []
    return [Flag("tokenizer_mismatch", (
        f"tokenizer mismatch: the data was tokenized with sha256 {data_sha[:16]}… "
        f"({data.tokenizer.path or 'path unknown'}), the model's tokenizer has sha256 {model_tokenizer_sha[:16]}… "
        f"({origin}); "
        "the model would read these ids as other tokens"))]


def _vocabulary_flags(cfg: network.ModelConfig, data: PackedData, rows: Sequence[Mapping[str, Any]]) -> list[Flag]:
    pieces = data.tokenizer.vocab_size
    max_id = max((int(r["input_ids"].max()) for r in rows if r["input_ids"].size), default=-1)
    what = []
    if pieces is not None and pieces > cfg.vocab_size:
        what.append(f"the data's tokenizer has {pieces:,} pieces")
    if max_id >= cfg.vocab_size:
        what.append(f"the rows read hold ids up to {max_id:,}")
    if not what:
        return []
    return [Flag("ids_out_of_vocab", (
        f"ids do not fit the model: {' and '.join(what)}, but the model's vocab_size is {cfg.vocab_size:,} "
        "(ids must be below it): another tokenizer, or a model made for a smaller vocabulary"))]


def _length_flags(cfg: network.ModelConfig, data: PackedData, rows: Sequence[Mapping[str, Any]]) -> list[Flag]:
    length = max(data.seq_len, max((len(r["input_ids"]) for r in rows), default=data.seq_len))
    if length <= cfg.max_position_embeddings:
        return []
    longest_piece = max((int(r["doc_lengths"].max()) for r in rows if r["doc_lengths"].size), default=0)
    return [Flag("rows_too_long", (
        f"rows too long: the data's rows are {length:,} tokens (pack --seq-len), the model's "
        f"max_position_embeddings is {cfg.max_position_embeddings:,} (longest piece read: {longest_piece:,}); "
        "repack with a --seq-len the model takes, or use a model with more positions"))]


def preflight(declared: DeclaredModel, model_tokenizer_sha: str | None, data: PackedData,
              rows: Sequence[Mapping[str, Any]], origin: str = "declared in its config.json") -> list[Flag]:
    """Mismatches found from config.json, the manifest and the rows' ids alone: no weights, no forward."""
    return (_tokenizer_flags(model_tokenizer_sha, data, origin) + _vocabulary_flags(declared.config, data, rows)
            + _length_flags(declared.config, data, rows))


def loss_flags(loss: float, vocab_size: int, same_tokenizer: bool = False) -> list[Flag]:
    """Red flags of the masked-LM loss; a tokenizer known to be the data's is not offered as a cause."""
    ln_v = math.log(vocab_size)
    if not math.isfinite(loss):
        return [Flag("loss_not_finite", f"loss is {loss}: the weights or the data hold something broken (NaN/inf)")]
    if abs(loss - ln_v) <= UNTRAINED_TOLERANCE * ln_v:
        return [Flag("untrained", (
            f"loss {loss:.3f} ≈ ln V = {ln_v:.3f} (V = {vocab_size:,}, within {UNTRAINED_TOLERANCE:.0%}): the model "
            "cannot read this data — this model looks untrained (a random initialisation guesses uniformly)"
            + ("" if same_tokenizer else ", or it was trained with another tokenizer")))]
    if loss > ln_v:
        return [Flag("worse_than_uniform", (
            f"loss {loss:.3f} is above ln V = {ln_v:.3f} (V = {vocab_size:,}): the model predicts worse than a uniform "
            "guess — it cannot read this data, e.g. a tokenizer mismatch"))]
    return []


# ---------------------------------------------------------------------------------------------- evaluation


def _stats(losses: np.ndarray, correct: np.ndarray) -> network.MLMStats:
    return network.MLMStats(float(losses.astype(np.float64).sum()), int(correct.sum()), int(losses.size))


def _summary(stats: network.MLMStats) -> dict[str, Any]:
    loss = stats.loss
    return {"masked_tokens": stats.count, "loss": loss, "accuracy": stats.accuracy,
            "perplexity": math.exp(loss) if math.isfinite(loss) and loss < 700 else float("inf")}


def token_losses(model: network.Model, batch: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per predicted token (labels ≠ -100): cross-entropy and whether the argmax is right, and where it is.

    The same computation as `network.mlm_loss`, kept per token so that losses can be split by subset.
    """
    ids, labels = np.asarray(batch["input_ids"]), np.asarray(batch["labels"])
    h = network.encode(model, ids, attention_mask=np.asarray(batch["attention_mask"]),
                       position_ids=np.asarray(batch["position_ids"]) if "position_ids" in batch else None)
    select = labels != IGNORE_INDEX
    target = labels[select]
    losses = np.empty(len(target), dtype=np.float64)
    correct = np.empty(len(target), dtype=bool)
    for s, chunk_losses, chunk_correct in network.head_losses(model, h[select], target, HEAD_CHUNK):
        losses[s : s + len(chunk_losses)] = chunk_losses
        correct[s : s + len(chunk_losses)] = chunk_correct
    return losses, correct, select


def _token_subsets(rows: Sequence[Mapping[str, Any]], width: int, names: dict[str, int]) -> np.ndarray:
    """(rows, width): the index of the subset of the piece each token lies in; -1 in padding."""
    lengths = [np.asarray(r["doc_lengths"], dtype=np.int64) for r in rows]
    pieces = np.asarray([names.setdefault(subset_of(s), len(names)) for r in rows for s in r["doc_sources"]],
                        dtype=np.int64)
    out = np.full(len(rows) * width, -1, dtype=np.int64)
    out[RowLayout.of(lengths, width).filled()] = np.repeat(pieces, np.concatenate(lengths))
    return out.reshape(len(rows), width)


@dataclass
class _Tally:
    """What the batches add up to: masked-LM sums overall and per subset index, seconds, tokens."""

    overall: network.MLMStats = field(default_factory=network.MLMStats)
    per_subset: dict[int, network.MLMStats] = field(default_factory=dict)
    names: dict[str, int] = field(default_factory=dict)  # subset name → index
    collate_seconds: float = 0.0
    forward_seconds: float = 0.0
    tokens: int = 0

    def add(self, losses: np.ndarray, correct: np.ndarray, where: np.ndarray) -> None:
        self.overall += _stats(losses, correct)
        for i in map(int, np.unique(where)):
            here = where == i
            self.per_subset[i] = self.per_subset.get(i, network.MLMStats()) + _stats(losses[here], correct[here])

    def subsets(self) -> dict[str, dict[str, Any]]:
        """Summaries by subset name, in name order."""
        by_index = {i: name for name, i in self.names.items()}
        return {by_index[i]: _summary(self.per_subset[i])
                for i in sorted((i for i in self.per_subset if i >= 0), key=by_index.__getitem__)}


def _masking_collator(data: PackedData, cfg: network.ModelConfig, seed: int) -> Any:
    """The collator a trainer would use on this data: its special ids, replacements within both vocabularies."""
    from wwm_prep.train.collator import WholeWordMaskCollator

    sp = data.tokenizer.special_ids
    return WholeWordMaskCollator(
        mask_id=sp["mask"], pad_id=sp["pad"], special_ids=sorted(set(sp.values())),
        vocab_size=min(data.tokenizer.vocab_size or cfg.vocab_size, cfg.vocab_size), seed=seed,
    )


def _evaluate(model: network.Model, collator: Any, rows: Sequence[Mapping[str, Any]], batch_size: int,
              log: Callable[[str], None]) -> tuple[_Tally, int]:
    """Mask the rows batch by batch as a trainer would and score the model on each; the tally and batch count."""
    tally = _Tally()
    n_batches = -(-len(rows) // batch_size)
    for b in range(n_batches):
        chunk = rows[b * batch_size : (b + 1) * batch_size]
        started = time.perf_counter()
        batch = collator.collate([{k: r[k] for k in ROW_COLUMNS} for r in chunk], epoch=0, first_row=b * batch_size)
        tally.collate_seconds += time.perf_counter() - started
        subsets = _token_subsets(chunk, batch["input_ids"].shape[1], tally.names)
        started = time.perf_counter()
        losses, correct, select = token_losses(model, batch)
        seconds = time.perf_counter() - started
        tally.forward_seconds += seconds
        tally.tokens += int(batch["input_ids"].size)
        tally.add(losses, correct, subsets[select])
        log(f"batch {b + 1}/{n_batches}: {len(chunk)} rows, {int(select.sum())} masked tokens, {seconds:.2f} s")
    return tally, n_batches


def _describe(declared: DeclaredModel, data: PackedData, rows_read: int, model_sha: str | None, origin: str,
              seed: int) -> dict[str, Any]:
    """The report's head: what was compared with what, before anything ran."""
    cfg = declared.config
    return {
        "model": {"dir": str(declared.dir), "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
                  "num_hidden_layers": cfg.num_hidden_layers, "max_position_embeddings": cfg.max_position_embeddings,
                  "parameters": network.num_parameters(cfg), "tokenizer_sha256": model_sha,
                  "tokenizer_origin": origin if model_sha else None},
        "data": {"dir": str(data.dir), "seq_len": data.seq_len, "rows": data.rows, "rows_read": rows_read,
                 "tokenizer_sha256": data.tokenizer.sha256, "tokenizer_path": data.tokenizer.path},
        "seed": seed,
        "ran_forward": False,
        "notes": [],
        "red_flags": [],
    }


def _results(tally: _Tally, n_batches: int, batch_size: int, vocab_size: int) -> dict[str, Any]:
    """The report's measured part, in the order it is printed."""
    seconds = tally.forward_seconds
    return {
        "ran_forward": True, "batches": n_batches, "batch_size": batch_size, "tokens": tally.tokens,
        "overall": _summary(tally.overall), "subsets": tally.subsets(), "ln_vocab": math.log(vocab_size),
        "forward_seconds": seconds, "tokens_per_second": tally.tokens / seconds if seconds > 0 else float("inf"),
        "collate_ms_per_batch": 1000 * tally.collate_seconds / n_batches,
    }


def run_sanity(model_dir: Path, data_dir: Path, *, batches: int = DEFAULT_BATCHES,
               batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0, tokenizer: Path | None = None,
               log: Callable[[str], None] = _log_nothing) -> dict[str, Any]:
    """Check a model against packed data; returns a report whose `red_flags` are empty when all is well."""
    if batches < 1 or batch_size < 1:
        raise WwmPrepError("--batches and --batch-size must be at least 1")
    declared = read_model_config(model_dir)
    data = open_packed(data_dir)
    model_sha, sha_origin = _model_tokenizer(declared, tokenizer)
    rows = read_rows(data, batches * batch_size)
    if not rows:
        raise WwmPrepError(f"{data_dir}: the shards hold no rows")
    report = _describe(declared, data, len(rows), model_sha, sha_origin, seed)
    if len(rows) < batches * batch_size:
        report["notes"].append(f"the data holds only {len(rows)} rows; all of them were used")
    if model_sha is None:
        report["notes"].append("the model declares no tokenizer, so it could not be checked against the data's; "
                               "give the one it was trained with by --tokenizer")
    flags = preflight(declared, model_sha, data, rows, sha_origin)
    if flags:
        report["red_flags"] = [vars(f) for f in flags]
        report["notes"].append("the forward was not run: fix the red flags first")
        return report

    log(f"loading {declared.dir} ({report['model']['parameters']:,} parameters)")
    started = time.perf_counter()
    model = checkpoint.load_model(declared.dir)
    report["load_seconds"] = time.perf_counter() - started
    collator = _masking_collator(data, declared.config, seed)
    tally, n_batches = _evaluate(model, collator, rows, batch_size, log)
    report |= _results(tally, n_batches, batch_size, declared.config.vocab_size)
    if tally.overall.count == 0:
        flags.append(Flag("nothing_masked", "no token was masked: the rows hold no maskable tokens"))
    else:
        same = report["model"]["tokenizer_sha256"] == report["data"]["tokenizer_sha256"]
        flags += loss_flags(report["overall"]["loss"], declared.config.vocab_size, same_tokenizer=same)
    report["red_flags"] = [vars(f) for f in flags]
    return report


def format_report(report: Mapping[str, Any]) -> str:
    """The report in plain words, for people."""
    m, d = report["model"], report["data"]
    lines = [
        f"sanity: model {m['dir']} ({m['parameters']:,} parameters, vocab {m['vocab_size']:,}, "
        f"{m['max_position_embeddings']:,} positions)",
        f"        data  {d['dir']} ({d['rows']:,} rows of {d['seq_len']:,} tokens)",
    ]
    if m["tokenizer_sha256"]:
        same = m["tokenizer_sha256"] == d["tokenizer_sha256"]
        lines.append(f"  tokenizer  {'the same as the data’s' if same else 'differs from the data’s'} "
                     f"(sha256 {m['tokenizer_sha256'][:16]}…, {m['tokenizer_origin']})")
    if report["ran_forward"]:
        lines.append(f"  {report['batches']} batch(es) × {report['batch_size']} rows, {report['tokens']:,} tokens, "
                     f"seed {report['seed']}; ln V = {report['ln_vocab']:.3f}")
        lines.append(f"  {'subset':<14} {'masked':>8} {'loss':>8} {'accuracy':>9} {'perplexity':>12}")
        for name, s in [("all", report["overall"]), *report["subsets"].items()]:
            lines.append(f"  {name:<14} {s['masked_tokens']:>8,} {s['loss']:>8.3f} {100 * s['accuracy']:>8.2f}% "
                         f"{s['perplexity']:>12,.1f}")
        lines.append(f"  speed          {report['tokens_per_second']:,.0f} tokens/s in the forward "
                     f"({report['forward_seconds']:.2f} s), collator {report['collate_ms_per_batch']:.1f} ms/batch")
    for note in report["notes"]:
        lines.append(f"  note: {note}")
    if report["red_flags"]:
        lines.append("RED FLAGS:")
        lines += [f"  - {f['message']}" for f in report["red_flags"]]
    else:
        lines.append("no red flags")
    return "\n".join(lines)


def report_json(report: Mapping[str, Any]) -> str:
    """JSON for machines (the `sanity` report and the `fill-mask` result alike); NaN and infinity become null."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, Mapping):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(report), ensure_ascii=False, indent=2, default=str)
