"""Real Hugging Face tokenizers, trained here with the `tokenizers` library on the bundled sample corpus, and the
group rule for tokens that need not tile the text, applied in plain Python as an independent reference.

Plain helpers (no tests here). The reference shares no code with wwm_prep.pipeline.offsets: it walks the tokens
one by one with the tokenizer's own offsets and MeCab's (or vibrato's) word spans.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from pathlib import Path

from tests.conftest import REPO, corpus_texts
from tests.pipeline.contract import groups_of, merge

SAMPLE_CORPUS = REPO / "sample" / "corpus"
KINDS = ("bytelevel-bpe", "wordpiece", "unigram")


def sample_texts(limit: int | None = None) -> list[str]:
    return [text for _, _, text in corpus_texts(SAMPLE_CORPUS)][:limit]


def train(kind: str, out: Path) -> Path:
    """A small tokenizer of `kind`, trained on the sample corpus, saved as `out`/tokenizer.json with the
    configuration files a model directory has; returns the directory.

    - bytelevel-bpe: GPT-2/ModernBERT style, 400 tokens, so most kana and kanji are split into bytes;
      RoBERTa-style roles <s> </s> <pad> <mask>, named in tokenizer_config.json.
    - wordpiece: BERT's normalizer (CJK characters spaced apart) and pre-tokenizer, [CLS] [SEP] [PAD] [MASK] [UNK],
      named in special_tokens_map.json.
    - unigram: NFKC and Metaspace (as SentencePiece-converted tokenizers have), llm-jp's own role names, found by
      name (no configuration files).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    texts = sample_texts()
    out.mkdir(parents=True, exist_ok=True)
    if kind == "bytelevel-bpe":
        tk = Tokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        tk.train_from_iterator(texts, trainers.BpeTrainer(
            vocab_size=400, special_tokens=["<s>", "</s>", "<pad>", "<mask>"], show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        config = {"bos_token": "<s>", "eos_token": "</s>", "cls_token": "<s>", "sep_token": "</s>",
                  "pad_token": "<pad>", "mask_token": {"content": "<mask>", "lstrip": True}}
        (out / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    elif kind == "wordpiece":
        tk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tk.normalizer = normalizers.BertNormalizer(lowercase=False)
        tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tk.decoder = decoders.WordPiece()
        tk.train_from_iterator(texts, trainers.WordPieceTrainer(
            vocab_size=1500, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False))
        roles = {f"{r}_token": f"[{r.upper()}]" for r in ("unk", "cls", "sep", "pad", "mask")}
        (out / "special_tokens_map.json").write_text(json.dumps(roles), encoding="utf-8")
    elif kind == "unigram":
        tk = Tokenizer(models.Unigram())
        tk.normalizer = normalizers.NFKC()
        tk.pre_tokenizer = pre_tokenizers.Metaspace()
        tk.decoder = decoders.Metaspace()
        tk.train_from_iterator(texts[:60], trainers.UnigramTrainer(
            vocab_size=1400, special_tokens=["<unk>", "<CLS>", "<SEP>", "<PAD>", "<MASK>"], unk_token="<unk>",
            show_progress=False))
    else:
        raise ValueError(kind)
    tk.save(str(out / "tokenizer.json"))
    return out


def convert_sentencepiece(model: Path, out: Path) -> Path:
    """A tokenizer.json of a SentencePiece unigram model with byte fallback (llm-jp v3): the same pieces and
    scores, the dummy prefix and ▁ for spaces as a normalizer, control pieces special."""
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

    proto = sentencepiece_model_pb2.ModelProto.FromString(model.read_bytes())
    vocab = [(p.piece, p.score) for p in proto.pieces]
    unk = next(i for i, p in enumerate(proto.pieces) if p.type == 2)
    tk = Tokenizer(models.Unigram(vocab, unk_id=unk, byte_fallback=True))
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tk.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    tk.add_special_tokens([AddedToken(p.piece, special=True, normalized=False) for p in proto.pieces if p.type == 3])
    out.mkdir(parents=True, exist_ok=True)
    tk.save(str(out / "tokenizer.json"))
    return out / "tokenizer.json"


def reference_word_starts(text: str, offsets: list[tuple[int, int]], words: list[tuple[int, int]]) -> list[int]:
    """The rule, token by token: token k > 0 starts a group iff a word boundary (a word's start or end, the text's
    start or end) lies in [end of token k-1, start of token k]; then whitespace-only groups (every character
    their tokens cover is whitespace, or they cover none) join the next group, or at the end the one before."""
    if not offsets:
        return []
    bounds = sorted({0, len(text), *(b for word in words for b in word)})
    starts = [1]
    for (_, previous_end), (start, _) in zip(offsets, offsets[1:]):
        at = bisect_left(bounds, previous_end)
        starts.append(int(previous_end <= start and at < len(bounds) and bounds[at] <= start))
    groups = groups_of(starts)
    blank = [all(text[i].isspace() for k in g for i in range(*offsets[k])) for g in groups]
    result = [0] * len(offsets)
    for group in merge(groups, blank):
        result[group[0]] = 1
    return result
