"""Does a model read this data? `init-model`, `sanity` and `fill-mask` behind the command line.

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
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wwm_prep.check import network as M
from wwm_prep.core.errors import WwmPrepError

TOKENIZER_SHA_KEY = "wwm_prep_tokenizer_sha256"
TOKENIZER_PATH_KEY = "wwm_prep_tokenizer_path"
TOKENIZER_PIECES_KEY = "wwm_prep_tokenizer_pieces"
UNTRAINED_TOLERANCE = 0.10  # loss within 10 % of ln V: the model predicts about as well as a uniform guess
HEAD_CHUNK = 512  # masked tokens per output-head matmul (a row of logits is 400 KB at BERT-alpha's vocab)
DEFAULT_BATCHES = 2
DEFAULT_BATCH_SIZE = 4
MASK_MARK = re.compile(r"<MASK(?:\|LLM-jp)?>(?:\{([^{}]*)\})?")


def _log_nothing(message: str) -> None:
    pass


# ---------------------------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class DeclaredModel:
    """What `config.json` says, read without touching the weights."""

    dir: Path
    config: M.ModelConfig
    tokenizer_sha256: str | None
    tokenizer_path: str | None


def read_model_config(model_dir: Path) -> DeclaredModel:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise WwmPrepError(f"model directory {model_dir} does not exist")
    config = M.ModelConfig.from_json(model_dir / "config.json")
    raw = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return DeclaredModel(model_dir, config, raw.get(TOKENIZER_SHA_KEY), raw.get(TOKENIZER_PATH_KEY))


@dataclass(frozen=True)
class TokenizerFile:
    path: Path
    sha256: str
    pieces: int
    special_ids: dict[str, int]


def read_tokenizer_file(path: Path) -> TokenizerFile:
    """A SentencePiece model's size, checksum and special ids (any normalizer: the model only reads ids)."""
    from wwm_prep.core.files import sha256_file
    from wwm_prep.text.tokenizer import load_sentencepiece, special_ids

    path = Path(path)
    sp = load_sentencepiece(path)
    return TokenizerFile(path.resolve(), sha256_file(path), int(sp.get_piece_size()), special_ids(sp))


def init_model(
    config: str | Mapping[str, Any],
    out: Path,
    *,
    vocab_size: int | None = None,
    tokenizer: Path | None = None,
    dtype: str = "float32",
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write a random checkpoint; with `tokenizer`, size the vocabulary from it and declare it in config.json."""
    if vocab_size is not None and tokenizer is not None:
        raise WwmPrepError("give --vocab-size or --tokenizer, not both (the tokenizer sets the vocabulary size)")
    if vocab_size is not None and vocab_size < 1:
        raise WwmPrepError(f"--vocab-size must be positive, not {vocab_size}")
    tok = read_tokenizer_file(tokenizer) if tokenizer is not None else None
    if tok is not None:
        vocab_size = M.pad_vocab_size(tok.pieces)
    cfg = M.get_config(config, vocab_size)
    out = Path(out)
    M.init_checkpoint(cfg, out, seed=seed, dtype=dtype, overwrite=overwrite)
    if tok is not None:
        path = out / "config.json"
        d = json.loads(path.read_text(encoding="utf-8"))
        d[TOKENIZER_SHA_KEY] = tok.sha256
        d[TOKENIZER_PATH_KEY] = str(tok.path)
        d[TOKENIZER_PIECES_KEY] = tok.pieces
        for key, role in (("bos_token_id", "bos"), ("eos_token_id", "eos"), ("pad_token_id", "pad"),
                          ("mask_token_id", "mask")):
            if role in tok.special_ids:
                d[key] = tok.special_ids[role]
        path.write_text(json.dumps(d, indent=2) + "\n", encoding="utf-8")
    return {
        "dir": str(out),
        "config": cfg,
        "parameters": M.num_parameters(cfg),
        "dtype": dtype,
        "seed": seed,
        "tokenizer": None if tok is None else {"path": str(tok.path), "sha256": tok.sha256, "pieces": tok.pieces},
        "bytes": sum(p.stat().st_size for p in out.iterdir() if p.is_file()),
    }


def _model_tokenizer(declared: DeclaredModel, tokenizer: Path | None) -> tuple[str | None, str]:
    """The sha256 of the model's tokenizer (None: unknown) and where that knowledge comes from."""
    if tokenizer is None:
        return declared.tokenizer_sha256, "declared in its config.json"
    from wwm_prep.core.files import sha256_file

    if not Path(tokenizer).is_file():
        raise WwmPrepError(f"tokenizer not found: {tokenizer}")
    sha = sha256_file(Path(tokenizer))
    if declared.tokenizer_sha256 and sha != declared.tokenizer_sha256:
        raise WwmPrepError(
            f"{tokenizer} is not the tokenizer the model declares (sha256 {sha[:16]}… ≠ "
            f"{declared.tokenizer_sha256[:16]}… in {declared.dir / 'config.json'}); leave out --tokenizer"
        )
    return sha, f"given by --tokenizer {tokenizer}"


# ---------------------------------------------------------------------------------------------- packed data


@dataclass
class PackedData:
    dir: Path
    seq_len: int
    tokenizer_sha256: str | None
    tokenizer_path: str | None
    tokenizer_pieces: int | None
    special_ids: dict[str, int]
    shards: list[Path]
    rows: int


def open_packed(data_dir: Path) -> PackedData:
    """The manifest of a `pack` output directory, with the tokenizer facts it inherited from `segment`."""
    data_dir = Path(data_dir)
    path = data_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WwmPrepError(f"{data_dir}: no manifest.json; give a directory written by `wwm-prep pack`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WwmPrepError(f"{path} cannot be read: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != "sequences":
        raise WwmPrepError(f"{path} is not a sequence manifest; give a directory written by `wwm-prep pack`")
    config = manifest.get("config", {})
    tok = config.get("tokenizer") or {}
    doc_tok = ((manifest.get("documents") or {}).get("config") or {}).get("tokenizer") or {}
    specials = {**doc_tok.get("special_ids", {}), **tok.get("special_ids", {})}
    missing = [role for role in ("mask", "pad") if role not in specials]
    if missing:
        raise WwmPrepError(f"{path} records no {' or '.join(missing)} id for the data's tokenizer; cannot mask its rows")
    shards = [data_dir / s["file"] for s in manifest.get("shards", [])]
    absent = [s for s in shards if not s.is_file()]
    if absent:
        raise WwmPrepError(f"{absent[0]} is listed in {path} but missing; rerun `wwm-prep pack`")
    return PackedData(
        dir=data_dir,
        seq_len=int(config["seq_len"]),
        tokenizer_sha256=tok.get("sha256") or doc_tok.get("sha256"),
        tokenizer_path=doc_tok.get("path"),
        tokenizer_pieces=doc_tok.get("vocab_size"),
        special_ids={k: int(v) for k, v in specials.items()},
        shards=shards,
        rows=int(manifest.get("totals", {}).get("rows", 0)),
    )


def read_rows(data: PackedData, n: int) -> list[dict[str, Any]]:
    """The first `n` rows in manifest order (pack shuffles within each shard, so these are a fair mix)."""
    from wwm_prep.core.shards import load_schema, read_batches

    rows: list[dict[str, Any]] = []
    schema = load_schema("sequence")
    for shard in data.shards:
        for batch in read_batches(shard, schema):
            take = min(batch.num_rows, n - len(rows))
            cols = {name: batch.column(name).slice(0, take).to_pylist()
                    for name in ("input_ids", "word_starts", "doc_lengths", "doc_sources")}
            for i in range(take):
                rows.append({
                    "input_ids": np.asarray(cols["input_ids"][i], dtype=np.int64),
                    "word_starts": np.asarray(cols["word_starts"][i], dtype=np.uint8),
                    "doc_lengths": np.asarray(cols["doc_lengths"][i], dtype=np.int64),
                    "doc_sources": cols["doc_sources"][i],
                })
            if len(rows) >= n:
                return rows
    return rows


def subset_of(source: str) -> str:
    """`ja_wiki:ja/ja_wiki/train_0.jsonl.gz:12:1/3@1` → `ja_wiki`."""
    return source.split(":", 1)[0]


# ---------------------------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Flag:
    code: str
    message: str


def preflight(declared: DeclaredModel, model_tokenizer_sha: str | None, data: PackedData,
              rows: Sequence[Mapping[str, Any]], origin: str = "declared in its config.json") -> list[Flag]:
    """Mismatches found from config.json, the manifest and the rows' ids alone: no weights, no forward."""
    cfg, flags = declared.config, []
    if model_tokenizer_sha and data.tokenizer_sha256 and model_tokenizer_sha != data.tokenizer_sha256:
        flags.append(Flag("tokenizer_mismatch", (
            f"tokenizer mismatch: the data was tokenized with sha256 {data.tokenizer_sha256[:16]}… "
            f"({data.tokenizer_path or 'path unknown'}), the model's tokenizer has sha256 {model_tokenizer_sha[:16]}… "
            f"({origin}); "
            "the model would read these ids as other tokens")))
    max_id = max((int(r["input_ids"].max()) for r in rows if r["input_ids"].size), default=-1)
    too_big = max_id >= cfg.vocab_size
    pieces_too_many = data.tokenizer_pieces is not None and data.tokenizer_pieces > cfg.vocab_size
    if too_big or pieces_too_many:
        what = []
        if pieces_too_many:
            what.append(f"the data's tokenizer has {data.tokenizer_pieces:,} pieces")
        if too_big:
            what.append(f"the rows read hold ids up to {max_id:,}")
        flags.append(Flag("ids_out_of_vocab", (
            f"ids do not fit the model: {' and '.join(what)}, but the model's vocab_size is {cfg.vocab_size:,} "
            "(ids must be below it): another tokenizer, or a model made for a smaller vocabulary")))
    longest = max((len(r["input_ids"]) for r in rows), default=data.seq_len)
    length = max(data.seq_len, longest)
    if length > cfg.max_position_embeddings:
        longest_piece = max((int(r["doc_lengths"].max()) for r in rows if r["doc_lengths"].size), default=0)
        flags.append(Flag("rows_too_long", (
            f"rows too long: the data's rows are {length:,} tokens (pack --seq-len), the model's "
            f"max_position_embeddings is {cfg.max_position_embeddings:,} (longest piece read: {longest_piece:,}); "
            "repack with a --seq-len the model takes, or use a model with more positions")))
    return flags


def loss_flags(loss: float, vocab_size: int) -> list[Flag]:
    ln_v = math.log(vocab_size)
    if not math.isfinite(loss):
        return [Flag("loss_not_finite", f"loss is {loss}: the weights or the data hold something broken (NaN/inf)")]
    if abs(loss - ln_v) <= UNTRAINED_TOLERANCE * ln_v:
        return [Flag("untrained", (
            f"loss {loss:.3f} ≈ ln V = {ln_v:.3f} (V = {vocab_size:,}, within {UNTRAINED_TOLERANCE:.0%}): the model "
            "cannot read this data — this model looks untrained (a random initialisation guesses uniformly), "
            "or it was trained with another tokenizer"))]
    if loss > ln_v:
        return [Flag("worse_than_uniform", (
            f"loss {loss:.3f} is above ln V = {ln_v:.3f} (V = {vocab_size:,}): the model predicts worse than a uniform "
            "guess — it cannot read this data, e.g. a tokenizer mismatch"))]
    return []


# ---------------------------------------------------------------------------------------------- evaluation


@dataclass
class SubsetStats:
    loss_sum: float = 0.0
    correct: int = 0
    count: int = 0

    def add(self, losses: np.ndarray, correct: np.ndarray) -> None:
        self.loss_sum += float(losses.astype(np.float64).sum())
        self.correct += int(correct.sum())
        self.count += int(losses.size)

    def summary(self) -> dict[str, Any]:
        loss = self.loss_sum / self.count if self.count else float("nan")
        return {
            "masked_tokens": self.count,
            "loss": loss,
            "accuracy": self.correct / self.count if self.count else float("nan"),
            "perplexity": math.exp(loss) if math.isfinite(loss) and loss < 700 else float("inf"),
        }


def token_losses(model: M.Model, batch: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per predicted token (labels ≠ -100): cross-entropy and whether the argmax is right, and where it is.

    The same computation as `model.mlm_loss`, kept per token so that losses can be split by subset.
    """
    ids, labels = np.asarray(batch["input_ids"]), np.asarray(batch["labels"])
    h = M.encode(model, ids, attention_mask=np.asarray(batch["attention_mask"]),
                 position_ids=np.asarray(batch["position_ids"]) if "position_ids" in batch else None)
    select = labels != M.IGNORE_INDEX
    h, target = h[select], labels[select]
    losses = np.empty(len(target), dtype=np.float64)
    correct = np.empty(len(target), dtype=bool)
    w = model.output_weight
    for s in range(0, len(target), HEAD_CHUNK):
        logits = h[s : s + HEAD_CHUNK] @ w.T
        t = target[s : s + HEAD_CHUNK]
        m = logits.max(axis=-1)
        lse = m + np.log(np.exp(logits - m[:, None]).sum(axis=-1))
        losses[s : s + len(t)] = lse - logits[np.arange(len(t)), t]
        correct[s : s + len(t)] = logits.argmax(axis=-1) == t
    return losses, correct, select


def _token_subsets(rows: Sequence[Mapping[str, Any]], width: int, names: dict[str, int]) -> np.ndarray:
    """(rows, width): the index of the subset of the piece each token lies in; -1 in padding."""
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for r, row in enumerate(rows):
        idx = [names.setdefault(subset_of(s), len(names)) for s in row["doc_sources"]]
        per_token = np.repeat(np.asarray(idx, dtype=np.int64), row["doc_lengths"])
        out[r, : len(per_token)] = per_token
    return out


def run_sanity(
    model_dir: Path,
    data_dir: Path,
    *,
    batches: int = DEFAULT_BATCHES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    tokenizer: Path | None = None,
    log: Callable[[str], None] = _log_nothing,
) -> dict[str, Any]:
    """Check a model against packed data; returns a report whose `red_flags` are empty when all is well."""
    from wwm_prep.train.collator import WholeWordMaskCollator

    if batches < 1 or batch_size < 1:
        raise WwmPrepError("--batches and --batch-size must be at least 1")
    declared = read_model_config(model_dir)
    data = open_packed(data_dir)
    model_sha, sha_origin = _model_tokenizer(declared, tokenizer)
    cfg = declared.config
    rows = read_rows(data, batches * batch_size)
    if not rows:
        raise WwmPrepError(f"{data_dir}: the shards hold no rows")
    report: dict[str, Any] = {
        "model": {"dir": str(declared.dir), "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
                  "num_hidden_layers": cfg.num_hidden_layers, "max_position_embeddings": cfg.max_position_embeddings,
                  "parameters": M.num_parameters(cfg), "tokenizer_sha256": model_sha,
                  "tokenizer_origin": sha_origin if model_sha else None},
        "data": {"dir": str(data.dir), "seq_len": data.seq_len, "rows": data.rows, "rows_read": len(rows),
                 "tokenizer_sha256": data.tokenizer_sha256, "tokenizer_path": data.tokenizer_path},
        "seed": seed,
        "ran_forward": False,
        "notes": [],
        "red_flags": [],
    }
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
    model = M.load_model(declared.dir)
    report["load_seconds"] = time.perf_counter() - started
    sp = data.special_ids
    collator = WholeWordMaskCollator(
        mask_id=sp["mask"], pad_id=sp["pad"], special_ids=sorted(set(sp.values())),
        vocab_size=min(data.tokenizer_pieces or cfg.vocab_size, cfg.vocab_size), seed=seed,
    )
    names: dict[str, int] = {}
    per_subset: dict[int, SubsetStats] = {}
    overall = SubsetStats()
    forward_seconds = collate_seconds = 0.0
    tokens = 0
    n_batches = -(-len(rows) // batch_size)
    for b in range(n_batches):
        chunk = rows[b * batch_size : (b + 1) * batch_size]
        started = time.perf_counter()
        batch = collator.collate([{k: r[k] for k in ("input_ids", "word_starts", "doc_lengths")} for r in chunk],
                                 epoch=0, first_row=b * batch_size)
        collate_seconds += time.perf_counter() - started
        subsets = _token_subsets(chunk, batch["input_ids"].shape[1], names)
        started = time.perf_counter()
        losses, correct, select = token_losses(model, batch)
        seconds = time.perf_counter() - started
        forward_seconds += seconds
        tokens += int(batch["input_ids"].size)
        overall.add(losses, correct)
        where = subsets[select]
        for i in np.unique(where):
            per_subset.setdefault(int(i), SubsetStats()).add(losses[where == i], correct[where == i])
        log(f"batch {b + 1}/{n_batches}: {len(chunk)} rows, {int(select.sum())} masked tokens, {seconds:.2f} s")
    by_index = {i: name for name, i in names.items()}
    report["ran_forward"] = True
    report["batches"] = n_batches
    report["batch_size"] = batch_size
    report["tokens"] = tokens
    report["overall"] = overall.summary()
    report["subsets"] = {by_index[i]: per_subset[i].summary()
                         for i in sorted((i for i in per_subset if i >= 0), key=by_index.__getitem__)}
    report["ln_vocab"] = math.log(cfg.vocab_size)
    report["forward_seconds"] = forward_seconds
    report["tokens_per_second"] = tokens / forward_seconds if forward_seconds > 0 else float("inf")
    report["collate_ms_per_batch"] = 1000 * collate_seconds / n_batches
    if overall.count == 0:
        flags.append(Flag("nothing_masked", "no token was masked: the rows hold no maskable tokens"))
    else:
        flags += loss_flags(report["overall"]["loss"], cfg.vocab_size)
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


def json_default(value: Any) -> Any:
    return str(value)


def report_json(report: Mapping[str, Any]) -> str:
    """JSON for machines; NaN and infinity become null."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, Mapping):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(report), ensure_ascii=False, indent=2, default=json_default)


# ---------------------------------------------------------------------------------------------- fill-mask


@dataclass
class MaskedText:
    """Token ids of a text with `<MASK>` marks, and what each masked position stands for."""

    ids: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # index in `ids` of each masked token
    labels: list[str] = field(default_factory=list)  # human description of each masked token


def _no_dummy_prefix(path: Path) -> Any:
    """The same SentencePiece model without `add_dummy_prefix`, to tokenize text that continues a line."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(Path(path).read_bytes())
    proto.normalizer_spec.add_dummy_prefix = False
    return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())


def encode_masked(text: str, tokenizer_path: Path) -> MaskedText:
    """Tokenize `text`, where `<MASK>` is one masked token and `<MASK>{word}` masks every token of `word`.

    The text between marks is tokenized as it stands; only the first part gets SentencePiece's dummy
    prefix (as a document's start does), so the ids are those of the whole text. `<MASK|LLM-jp>` (the
    Hugging Face name) is accepted for `<MASK>`. The ids are wrapped `<CLS> … <SEP>` as packed rows are.
    """
    import sentencepiece as spm

    from wwm_prep.text.tokenizer import special_ids

    first = spm.SentencePieceProcessor(model_file=str(tokenizer_path))
    rest = _no_dummy_prefix(tokenizer_path)
    specials = special_ids(first)
    if "mask" not in specials:
        raise WwmPrepError(f"{tokenizer_path} has no <MASK> piece")
    out = MaskedText()
    if "cls" in specials:
        out.ids.append(specials["cls"])
    started = False

    def encode(part: str) -> list[int]:
        nonlocal started
        if not part:
            return []
        ids = (rest if started else first).encode(part)
        started = True
        return list(ids)

    at = 0
    n_masks = 0
    for match in MASK_MARK.finditer(text):
        out.ids += encode(text[at : match.start()])
        at = match.end()
        word = match.group(1)
        if word is None:
            n_masks += 1
            out.positions.append(len(out.ids))
            out.labels.append(f"<MASK> {n_masks}")
            out.ids.append(specials["mask"])
            started = True
            continue
        if not word:
            raise WwmPrepError("an empty word: write <MASK>{word} with the word between the braces, or <MASK>")
        word_ids = encode(word)
        n_masks += 1
        for j, i in enumerate(word_ids):
            out.positions.append(len(out.ids))
            out.labels.append(f"<MASK> {n_masks} = {word}, token {j + 1} of {len(word_ids)} ({first.id_to_piece(i)})")
            out.ids.append(specials["mask"])
    out.ids += encode(text[at:])
    if "sep" in specials:
        out.ids.append(specials["sep"])
    if not out.positions:
        raise WwmPrepError('no <MASK> in the text: mark one token with <MASK>, or a whole word with <MASK>{word}')
    return out


def resolve_tokenizer(declared: DeclaredModel, tokenizer: Path | None) -> Path:
    """The tokenizer to read text with: `tokenizer` (checked against the declaration), else the declared one."""
    from wwm_prep.core.files import sha256_file

    if tokenizer is not None:
        _model_tokenizer(declared, tokenizer)  # raises if it contradicts the declaration
        return Path(tokenizer)
    path = Path(declared.tokenizer_path) if declared.tokenizer_path else None
    if path is None:
        raise WwmPrepError(f"the model in {declared.dir} declares no tokenizer path: give --tokenizer")
    if not path.is_file():
        raise WwmPrepError(f"the model's tokenizer {path} (recorded in its config.json) is not there: give --tokenizer")
    if declared.tokenizer_sha256 and sha256_file(path) != declared.tokenizer_sha256:
        raise WwmPrepError(f"{path} has changed since the model recorded it (sha256 differs): give --tokenizer")
    return path


def fill_mask(model_dir: Path, text: str, *, tokenizer: Path | None = None, k: int = 5) -> dict[str, Any]:
    """The top-k fillers of every masked position of `text` (see `encode_masked` for the syntax)."""
    import sentencepiece as spm

    if k < 1:
        raise WwmPrepError("--top-k must be at least 1")
    declared = read_model_config(model_dir)
    tok_path = resolve_tokenizer(declared, tokenizer)
    masked = encode_masked(text, tok_path)
    cfg = declared.config
    if max(masked.ids) >= cfg.vocab_size:
        raise WwmPrepError(f"the tokenizer's ids go up to {max(masked.ids):,}, beyond the model's vocab_size "
                           f"{cfg.vocab_size:,}: not this model's tokenizer")
    if len(masked.ids) > cfg.max_position_embeddings:
        raise WwmPrepError(f"the text is {len(masked.ids):,} tokens, more than the model's "
                           f"{cfg.max_position_embeddings:,} positions")
    model = M.load_model(declared.dir)
    ids = np.asarray([masked.ids], dtype=np.int64)
    select = np.zeros_like(ids, dtype=bool)
    select[0, masked.positions] = True
    top_ids, top_p = M.top_k(model, ids, select, k=min(k, cfg.vocab_size))
    sp = spm.SentencePieceProcessor(model_file=str(tok_path))
    n = sp.get_piece_size()

    def piece(i: int) -> str:
        return sp.id_to_piece(int(i)) if int(i) < n else f"[id {int(i)}]"  # padded rows of the head

    return {
        "tokenizer": str(tok_path),
        "tokens": [piece(i) for i in masked.ids],
        "masks": [
            {"label": label, "position": pos,
             "candidates": [{"id": int(i), "piece": piece(i), "probability": float(p)} for i, p in zip(ti, tp)]}
            for label, pos, ti, tp in zip(masked.labels, masked.positions, top_ids, top_p)
        ],
    }


def format_fill_mask(result: Mapping[str, Any]) -> str:
    lines = ["input: " + " ".join(result["tokens"])]
    for m in result["masks"]:
        lines.append(m["label"])
        lines += [f"  {r:>3}. {c['piece']:<16} {c['probability']:.3g}" for r, c in enumerate(m["candidates"], 1)]
    return "\n".join(lines)
