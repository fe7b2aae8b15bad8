"""segment → pack → collator, stats and inspect with tokenizer.json files trained here (byte-level BPE, WordPiece
with BERT's pre-tokenizer, Unigram with NFKC): ids as the `tokenizers` library gives them, and groups equal to
the rule applied in plain Python to the tokenizer's own offsets and MeCab's words (tests/hf_tokenizers.py)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

from tests.conftest import corpus_texts, run
from tests.hf_tokenizers import KINDS, SAMPLE_CORPUS, reference_word_starts, sample_texts
from tests.pipeline.contract import document, documents, mecab_words, vibrato_words
from wwm_prep.core.groups import word_groups
from wwm_prep.pipeline.offsets import align_words
from wwm_prep.pipeline.segment import Segmenter
from wwm_prep.text.dictionary import load_dictionary
from wwm_prep.text.tokenizer import load_tokenizer
from wwm_prep.train.collator import IGNORE_INDEX, WholeWordMaskCollator


@cache
def _segmenter(path: Path) -> Segmenter:
    return Segmenter(load_dictionary("unidic-lite"), load_tokenizer(path))


def _offsets(seg: Segmenter, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    encoding = seg.tokenizer.tk.encode(text, add_special_tokens=False)  # the library itself, not the backend
    return encoding.ids, encoding.offsets


@pytest.mark.parametrize("kind", KINDS)
def test_ids_and_groups_on_the_sample_corpus_equal_the_reference(kind: str, hf_tokenizers: dict[str, Path]) -> None:
    """Every document of the bundled corpus, segmented as one batch: its ids are the tokenizer's own, and its
    groups are those of the rule over MeCab's words of the whole document."""
    import unidic_lite

    seg = _segmenter(hf_tokenizers[kind])
    texts = sample_texts()
    batch = seg(texts)
    assert batch.exact_path == 0
    shared = 0
    for i, text in enumerate(texts):
        ids, word_starts = document(batch, i)
        expected_ids, offsets = _offsets(seg, text)
        assert ids.tolist() == expected_ids
        assert word_starts.tolist() == reference_word_starts(text, offsets, mecab_words(text, unidic_lite.DICDIR))
        shared += sum(b[0] < a[1] for a, b in zip(offsets, offsets[1:]))
    if kind == "bytelevel-bpe":  # the case the rule is for: tokens holding parts of one character
        assert shared > 1000


@pytest.mark.parametrize("kind", KINDS)
def test_groups_follow_the_rule_on_adversarial_documents(kind: str, hf_tokenizers: dict[str, Path]) -> None:
    """Any mix of scripts, whitespace, U+2581, combining marks, astral and control characters; and the exact
    path (vibrato's word spans asked one by one) agrees with the batch arithmetic."""
    seg = _segmenter(hf_tokenizers[kind])

    @settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(documents(max_size=400))
    def check(text: str) -> None:
        batch = seg([text])
        ids, word_starts = document(batch, 0)
        expected_ids, offsets = _offsets(seg, text)
        assert ids.tolist() == expected_ids
        words = vibrato_words(text, seg)
        assert word_starts.tolist() == reference_word_starts(text, offsets, words)
        starts, ends = np.array(offsets, dtype=np.int64).reshape(-1, 2).T
        assert align_words(text, starts, ends, seg._word_spans(text)).tolist() == word_starts.tolist()

    check()


@pytest.fixture(scope="module")
def packed(hf_tokenizers: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The bundled wiki and kaken files segmented with each tokenizer (by its directory, in two forked workers) and
    packed into 128-token rows."""
    root = tmp_path_factory.mktemp("hf-packed")
    for subset in ("ja_wiki", "kaken"):
        (root / "corpus" / "ja" / subset).mkdir(parents=True)
        source = SAMPLE_CORPUS / "ja" / subset / "train_0.jsonl.gz"
        (root / "corpus" / "ja" / subset / source.name).write_bytes(source.read_bytes())
    out = {}
    for kind, path in hf_tokenizers.items():
        docs, seqs = root / kind / "documents", root / kind / "sequences"
        code, output = run("segment", str(root / "corpus"), "--out", str(docs), "--tokenizer", str(path),
                           "--dict", "tiny-ja", "--workers", "2")
        assert code == 0, output
        code, output = run("pack", str(docs), "--out", str(seqs), "--seq-len", "128")
        assert code == 0, output
        out[kind] = seqs
    out["corpus"] = root / "corpus"
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_pack_collator_stats_and_inspect_work_on_each(kind: str, packed: dict[str, Path],
                                                       hf_tokenizers: dict[str, Path]) -> None:
    seqs = packed[kind]
    tok = load_tokenizer(hf_tokenizers[kind])
    # The workers' document shards hold what this process makes of the same texts.
    docs = pa.concat_tables(pa.ipc.open_stream(p).read_all() for p in sorted((seqs.parent / "documents").glob("*.arrow")))
    texts = [text for source in sorted({str(s) for s in docs.column("source").to_pylist()})
             for f, _, text in corpus_texts(packed["corpus"]) if f.endswith(source)]
    here = Segmenter(load_dictionary("tiny-ja"), tok)(texts)
    assert docs.column("input_ids").combine_chunks().flatten().to_numpy().tolist() == here.ids.tolist()
    assert docs.column("word_starts").combine_chunks().flatten().to_numpy().tolist() == here.word_starts.tolist()
    table = pa.concat_tables(pa.ipc.open_stream(p).read_all() for p in sorted(seqs.glob("*.arrow")))
    rows = table.to_pylist()
    first = rows[0]
    assert first["input_ids"][0] == tok.special_ids["cls"] and len(first["input_ids"]) == 128
    ids = np.asarray([r["input_ids"] for r in rows]).reshape(-1)
    unit_starts = np.concatenate([np.cumsum([0, *r["doc_lengths"][:-1]]) + 128 * i for i, r in enumerate(rows)])
    starts, sizes, _ = word_groups(~tok.special[ids], np.asarray([r["word_starts"] for r in rows]).reshape(-1),
                                   unit_starts)
    for mode in ("word", "ngram", "span"):
        collator = WholeWordMaskCollator(hf_tokenizers[kind], seed=1, masking=mode, mlm_probability=0.3,
                                         pad_to_multiple_of=None)
        batch = collator([{k: r[k] for k in ("input_ids", "word_starts", "doc_lengths")} for r in rows])
        masked = np.asarray(batch["labels"]).reshape(-1) != IGNORE_INDEX
        assert masked.any() and not tok.special[ids[masked]].any()
        taken = np.add.reduceat(masked, starts)  # masked tokens of each group, and no masked token outside one
        assert taken.sum() == masked.sum() and (taken[taken > 0] == sizes[taken > 0]).all(), f"{mode}: part of a group"
    code, output = run("stats", str(seqs), "--json")
    assert code == 0, output
    totals = json.loads(output)["totals"]
    assert totals["rows"] == len(rows) and totals["groups"] == len(starts)
    if kind == "bytelevel-bpe":  # characters counted from the ids alone, however the bytes were cut
        assert totals["characters"] == sum(len(t) for f, _, t in corpus_texts(SAMPLE_CORPUS)
                                           if f.startswith(("ja/ja_wiki", "ja/kaken")))
    code, output = run("inspect", str(seqs), "--row", "0", "--mask", "--no-color")
    assert code == 0 and "[" in output and "|" in output, output


def test_a_tokenizer_without_cls_names_the_role_and_how_to_set_it(hf_tokenizers: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    """A GPT-style byte-level BPE names no <CLS>: segment works, and pack says what to name."""
    corpus = tmp_path / "corpus" / "ja" / "kaken"
    corpus.mkdir(parents=True)
    (corpus / "part.jsonl").write_text(json.dumps({"text": "東北大学の研究者です。"}, ensure_ascii=False) + "\n")
    docs = tmp_path / "docs"
    bare = hf_tokenizers["bytelevel-bpe"] / "tokenizer.json"  # the file alone: tokenizer_config.json is not read
    assert run("segment", str(tmp_path / "corpus"), "--out", str(docs), "--tokenizer", str(bare), "--dict",
               "tiny-ja")[0] == 0
    code, output = run("pack", str(docs), "--out", str(tmp_path / "seqs"), "--seq-len", "64")
    assert code != 0 and "<CLS>/<SEP>" in output and "cls_token and sep_token in a tokenizer_config.json" in output


@pytest.mark.shared
def test_llm_jp_as_a_tokenizer_json_groups_as_sentencepiece_does(llm_jp_tokenizer_path: Path, ja_sample: Path,
                                                                  tmp_path: Path) -> None:
    """llm-jp v3.0b1 converted to a tokenizer.json (tests/hf_tokenizers.py) takes the offsets path, SentencePiece
    the arithmetic one: on every document of (the start of) ja-sample where both give the same ids, the same groups."""
    from tests.hf_tokenizers import convert_sentencepiece

    dictionary = load_dictionary("unidic-lite")
    converted = load_tokenizer(convert_sentencepiece(llm_jp_tokenizer_path, tmp_path))
    by_sp, by_hf = Segmenter(dictionary, load_tokenizer(llm_jp_tokenizer_path)), Segmenter(dictionary, converted)
    texts = [text for _, _, text in corpus_texts(ja_sample)][:300]
    a, b = by_sp(texts), by_hf(texts)
    same = 0
    for i in range(len(texts)):
        (ids_a, starts_a), (ids_b, starts_b) = document(a, i), document(b, i)
        if ids_a.tolist() == ids_b.tolist():
            same += 1
            assert starts_a.tolist() == starts_b.tolist(), f"document {i}"
    assert same > len(texts) // 2
    assert {r: converted.special_ids[r] for r in ("mask", "pad", "cls", "sep")} == {
        r: by_sp.tokenizer.special_ids[r] for r in ("mask", "pad", "cls", "sep")}

