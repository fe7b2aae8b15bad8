"""Tests of the whole-word-masking collator (NumPy path; torch tests live in test_collator_torch.py).

Hand-made rows need nothing but NumPy. The statistical tests run on real packed rows: the ja-sample corpus
of ../shared through `wwm-prep segment` (UniDic, llm-jp v3.0b1 tokenizer) and `wwm-prep pack`, read back
with `datasets` as a trainer reads them; they are skipped cleanly where ../shared is absent.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import numpy as np
import pytest

from tests.conftest import REPO
from tests.train.conftest import CLS, MASK, N_SPECIAL, PAD, SEP, check_batch, make_packed_row, reference_groups
from wwm_prep.train.collator import IGNORE_INDEX, WholeWordMaskCollator


def run_all(rows: Sequence[dict], collator: WholeWordMaskCollator, batch_size: int, per_document: bool = False) -> dict:
    total: dict = {}
    for b in range(0, len(rows), batch_size):
        batch = rows[b : b + batch_size]
        s = check_batch(batch, collator(batch), collator, per_document)
        for k, v in s.items():
            total[k] = total.get(k, 0) + v
    return total


# --------------------------------------------------------------------------------------------------
# Hand-made rows (no shared data needed)
# --------------------------------------------------------------------------------------------------


def test_import_needs_numpy_only():
    code = (
        "import sys; import wwm_prep; C = wwm_prep.WholeWordMaskCollator; "
        "c = C(); import numpy as np; "
        "c([{'input_ids': np.array([5, 10, 11, 6]), 'word_starts': np.array([0, 1, 0, 0])}]); "
        "bad = [m for m in ('torch', 'transformers', 'sentencepiece', 'pyarrow', 'datasets', 'vibrato') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_output_structure_packed(small_collator):
    rng = np.random.default_rng(0)
    rows = [make_packed_row(rng, 64) for _ in range(3)]
    out = small_collator(rows)
    assert set(out) == {"input_ids", "labels", "attention_mask", "position_ids", "cu_seqlens", "max_seqlen"}
    for k in ("input_ids", "labels", "attention_mask", "position_ids"):
        assert out[k].shape == (3, 64) and out[k].dtype == np.int64
    assert out["cu_seqlens"].dtype == np.int32
    # position ids restart at every piece; cu_seqlens are the piece bounds of the flattened batch
    cu = out["cu_seqlens"]
    flat_pos = out["position_ids"].reshape(-1)
    assert cu[0] == 0 and cu[-1] == 3 * 64
    assert (flat_pos[cu[:-1]] == 0).all()
    assert out["max_seqlen"] == int(np.diff(cu).max())
    for i, row in enumerate(rows):
        d = row["doc_lengths"]
        expect = np.concatenate([np.arange(n) for n in d] + [np.arange(64 - d.sum())])
        assert (out["position_ids"][i] == expect).all()
        assert (out["attention_mask"][i] == (np.arange(64) < d.sum())).all()
    # pieces and each row's padding tail are segments
    starts = []
    for i, row in enumerate(rows):
        d = row["doc_lengths"].astype(int)
        b = list(i * 64 + np.cumsum(d) - d)
        if d.sum() < 64:
            b.append(i * 64 + int(d.sum()))
        starts += b
    assert cu[:-1].tolist() == starts


def test_exactness_on_hand_made_rows(small_collator):
    rng = np.random.default_rng(1)
    rows = [make_packed_row(rng, 256, max_group=6) for _ in range(40)]
    stats = run_all(rows, small_collator, batch_size=8)
    assert stats["chosen"] > 0
    # the skip rule fills the budget exactly in (almost) every row
    assert stats["at_budget"] >= 0.9 * stats["rows"]


def test_budget_exact_with_single_token_groups():
    c = WholeWordMaskCollator(vocab_size=300, special_ids=range(N_SPECIAL), seed=3)
    rng = np.random.default_rng(2)
    for n in (1, 2, 3, 7, 10, 33, 100, 1000):
        ids = rng.integers(N_SPECIAL, 300, n)
        row = {"input_ids": ids, "word_starts": np.ones(n, np.uint8)}
        out = c([row])
        expect = max(1, int(np.rint(0.15 * n)))
        assert int((out["labels"] != IGNORE_INDEX).sum()) == expect


def test_never_chooses_special_or_pad_and_groups_whole(small_collator):
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(16):
        r = make_packed_row(rng, 128, max_group=5)
        # sprinkle special ids inside documents too (<unk>, <EOD>, <MASK>): never chosen
        inner = np.flatnonzero(r["input_ids"] >= N_SPECIAL)
        hit = rng.choice(inner, 5, replace=False)
        r["input_ids"][hit] = rng.choice([0, 1, 2, 3, 7], 5)
        rows.append(r)
    for seed in range(5):
        c = WholeWordMaskCollator(vocab_size=300, special_ids=range(N_SPECIAL), seed=seed, mlm_probability=0.4)
        run_all(rows, c, batch_size=4)


def test_unpacked_rows_of_different_lengths_are_padded():
    c = WholeWordMaskCollator(vocab_size=300, special_ids=range(N_SPECIAL), pad_to_multiple_of=16)
    rng = np.random.default_rng(4)
    rows = []
    for n in (5, 17, 30):
        ids = np.concatenate([[CLS], rng.integers(N_SPECIAL, 300, n - 2), [SEP]])
        ws = np.concatenate([[0], (rng.random(n - 2) < 0.5).astype(np.uint8), [0]])
        rows.append({"input_ids": ids.tolist(), "word_starts": ws.tolist()})  # lists, as datasets' python format
    out = c(rows)
    assert set(out) == {"input_ids", "labels", "attention_mask"}
    assert out["input_ids"].shape == (3, 32)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        assert (out["attention_mask"][i] == (np.arange(32) < n)).all()
        assert (out["input_ids"][i, n:] == PAD).all()
    check_batch(rows, out, c)
    assert WholeWordMaskCollator(pad_to_multiple_of=None)(rows)["input_ids"].shape == (3, 30)


def test_lists_and_arrays_give_the_same_result(small_collator):
    rng = np.random.default_rng(5)
    rows = [make_packed_row(rng, 96) for _ in range(4)]
    as_lists = [{k: v.tolist() for k, v in r.items()} for r in rows]
    a = small_collator.collate(rows, first_row=0)
    b = small_collator.collate(as_lists, first_row=0)
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    c = small_collator.collate(columns, first_row=0)
    for k in a:
        assert np.array_equal(a[k], b[k]) and np.array_equal(a[k], c[k])


def test_determinism_and_streams():
    rng = np.random.default_rng(6)
    rows = [make_packed_row(rng, 200) for _ in range(4)]

    def labels(c, batch):
        return c(batch)["labels"]

    c1 = WholeWordMaskCollator(vocab_size=300, special_ids=range(N_SPECIAL), seed=11)
    c2 = WholeWordMaskCollator(vocab_size=300, special_ids=range(N_SPECIAL), seed=11)
    first1, second1 = c1(rows), c1(rows)
    first2, second2 = c2(rows), c2(rows)
    for k in first1:  # same seed, epoch and batch sequence: same masks and replacements
        assert np.array_equal(first1[k], first2[k]) and np.array_equal(second1[k], second2[k])
    # consecutive batches are different rows of the stream, hence different masks
    assert not np.array_equal(first1["labels"], second1["labels"])
    # set_epoch restarts the stream of that epoch
    c1.set_epoch(0)
    assert np.array_equal(labels(c1, rows), first1["labels"])
    c1.set_epoch(1)
    e1 = labels(c1, rows)
    assert not np.array_equal(e1, first1["labels"])
    c1.set_epoch(1)
    assert np.array_equal(labels(c1, rows), e1)
    c3 = WholeWordMaskCollator(vocab_size=300, special_ids=range(N_SPECIAL), seed=11, epoch=1)
    assert np.array_equal(labels(c3, rows), e1)
    # other seeds and other workers give other streams
    c4 = WholeWordMaskCollator(vocab_size=300, special_ids=range(N_SPECIAL), seed=12)
    assert not np.array_equal(labels(c4, rows), first1["labels"])
    w0 = c2.collate(rows, epoch=0, worker=0, first_row=0)["labels"]
    w1 = c2.collate(rows, epoch=0, worker=1, first_row=0)["labels"]
    assert np.array_equal(w0, first1["labels"]) and not np.array_equal(w0, w1)
    # the global RNG plays no part
    np.random.seed(123)
    a = c2.collate(rows, first_row=0)["labels"]
    np.random.seed(456)
    assert np.array_equal(a, c2.collate(rows, first_row=0)["labels"])


def test_row_masks_do_not_depend_on_batch_mates(small_collator):
    rng = np.random.default_rng(7)
    rows = [make_packed_row(rng, 128) for _ in range(3)]
    whole = small_collator.collate(rows, first_row=10)
    for i, r in enumerate(rows):
        alone = small_collator.collate([r], first_row=10 + i)
        assert np.array_equal(alone["input_ids"][0], whole["input_ids"][i])
        assert np.array_equal(alone["labels"][0], whole["labels"][i])


def test_per_document_budget_masks_every_document():
    rng = np.random.default_rng(8)
    rows = [make_packed_row(rng, 512, max_group=2) for _ in range(8)]
    c = WholeWordMaskCollator(vocab_size=300, special_ids=range(N_SPECIAL), per_document_budget=True)
    out = c(rows)
    check_batch(rows, out, c, per_document=True)
    for i, row in enumerate(rows):
        d = row["doc_lengths"].astype(int)
        for b, n in zip(np.cumsum(d) - d, d):
            assert (out["labels"][i, b : b + n] != IGNORE_INDEX).any()  # groups of <= 2 tokens always fit
    # the row budget, by contrast, can leave short documents unmasked
    plain = WholeWordMaskCollator(vocab_size=300, special_ids=range(N_SPECIAL))
    check_batch(rows, plain(rows), plain)


def test_mixed_packed_and_unpacked_rows(small_collator):
    rng = np.random.default_rng(9)
    packed = make_packed_row(rng, 64)
    plain = {"input_ids": np.array([CLS, 10, 11, 12, SEP, PAD, PAD]), "word_starts": np.array([0, 1, 0, 1, 0, 0, 0])}
    out = small_collator([packed, plain])
    assert out["position_ids"][1, :5].tolist() == [0, 1, 2, 3, 4]
    assert out["attention_mask"][1].tolist() == [1] * 5 + [0] * 59


def test_probabilities_and_replacements():
    rng = np.random.default_rng(10)
    rows = [make_packed_row(rng, 2048, vocab=50, max_group=1) for _ in range(8)]
    only_random = WholeWordMaskCollator(vocab_size=50, special_ids=range(N_SPECIAL), mask_replace_prob=0.0, random_replace_prob=1.0)
    out = only_random(rows)
    chosen = out["labels"] != IGNORE_INDEX
    assert (out["input_ids"][chosen] >= N_SPECIAL).all() and (out["input_ids"][chosen] < 50).all()
    assert np.unique(out["input_ids"][chosen]).size == 50 - N_SPECIAL  # uniform over the ordinary ids
    only_mask = WholeWordMaskCollator(vocab_size=50, special_ids=range(N_SPECIAL), mask_replace_prob=1.0, random_replace_prob=0.0)
    out = only_mask(rows)
    assert (out["input_ids"][out["labels"] != IGNORE_INDEX] == MASK).all()
    none = WholeWordMaskCollator(vocab_size=50, special_ids=range(N_SPECIAL), mlm_probability=0.0)
    assert (none(rows)["labels"] == IGNORE_INDEX).all()
    with pytest.raises(ValueError):
        WholeWordMaskCollator(mask_replace_prob=0.9, random_replace_prob=0.2)
    with pytest.raises(ValueError):
        WholeWordMaskCollator(return_tensors="tf")


def test_noncontiguous_special_ids():
    c = WholeWordMaskCollator(mask_id=103, pad_id=0, special_ids=[0, 100, 101, 102, 103], vocab_size=1000, seed=1)
    ids = np.array([101, 5, 6, 100, 7, 8, 9, 102, 0, 0])
    row = {"input_ids": ids, "word_starts": np.array([0, 1, 0, 1, 1, 1, 0, 0, 0, 0])}
    for seed in range(20):
        c.seed = seed
        out = c([row])
        chosen = out["labels"][0, :10] != IGNORE_INDEX
        assert not chosen[[0, 3, 7, 8, 9]].any()
        assert chosen[1] == chosen[2] and chosen[5] == chosen[6]
        assert (out["attention_mask"][0] == np.r_[np.ones(8), np.zeros(8)]).all()


def test_missing_word_starts_explains_remove_unused_columns():
    with pytest.raises(KeyError, match="remove_unused_columns"):
        WholeWordMaskCollator()([{"input_ids": [5, 10, 6]}])


def test_collator_pickles(small_collator):
    import pickle

    c = pickle.loads(pickle.dumps(small_collator))
    rng = np.random.default_rng(11)
    rows = [make_packed_row(rng, 64)]
    assert np.array_equal(c.collate(rows)["labels"], small_collator.collate(rows)["labels"])


def test_datasets_arrow_numpy_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(12)
    rows = [make_packed_row(rng, 128) for _ in range(6)]
    table = pa.table(
        {
            "input_ids": pa.array([r["input_ids"] for r in rows], type=pa.list_(pa.int32())),
            "word_starts": pa.array([r["word_starts"] for r in rows], type=pa.list_(pa.uint8())),
            "doc_lengths": pa.array([r["doc_lengths"] for r in rows], type=pa.list_(pa.int32())),
        }
    )
    path = tmp_path / "shard.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    ds = datasets.load_dataset("arrow", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache"))
    ds = ds.with_format("numpy")
    c = WholeWordMaskCollator(vocab_size=300, special_ids=range(N_SPECIAL), seed=5)
    from_rows = c.collate([ds[i] for i in range(len(ds))])
    from_slice = c.collate(ds[0 : len(ds)])
    expected = c.collate(rows)
    for k in expected:
        assert np.array_equal(from_rows[k], expected[k]) and np.array_equal(from_slice[k], expected[k])
    check_batch(rows, from_rows, c)


# --------------------------------------------------------------------------------------------------
# Real packed rows (../shared)
# --------------------------------------------------------------------------------------------------


def test_reads_special_ids_from_sentencepiece(llm_jp_tokenizer_path):
    c = WholeWordMaskCollator(llm_jp_tokenizer_path)
    assert (c.mask_id, c.pad_id, c.vocab_size) == (MASK, PAD, 99_574)
    assert c.special_ids == tuple(range(N_SPECIAL))
    import sentencepiece as spm

    c2 = WholeWordMaskCollator(spm.SentencePieceProcessor(model_file=str(llm_jp_tokenizer_path)))
    assert (c2.mask_id, c2.pad_id, c2.special_ids, c2.vocab_size) == (c.mask_id, c.pad_id, c.special_ids, c.vocab_size)


def _report(name: str, s: dict) -> None:
    print(
        f"\n{name}: rows {s['rows']}, maskable {s['maskable']:,}, chosen {s['chosen']:,} "
        f"({100 * s['chosen'] / s['maskable']:.3f} %), <MASK> {100 * s['mask'] / s['chosen']:.2f} %, "
        f"random {100 * s['random'] / s['chosen']:.2f} %, kept {100 * s['keep'] / s['chosen']:.2f} %, "
        f"groups chosen {s['groups']:,} all whole, rows at budget {s['at_budget']}/{s['rows']}"
    )


@pytest.mark.shared
@pytest.mark.parametrize("rule", ["skip", "prefix"])
def test_real_rows_8192_statistics(real_rows_8192, llm_jp_tokenizer_path, rule):
    """15 % ± 0.2 % chosen and 80/10/10 ± 1 % over every 8,192-token row of packed ja-sample, masked once.

    The rows hold about 5.5 M maskable tokens, so the issue's "≥ 1 M maskable tokens" needs no repeated epoch.
    """
    c = WholeWordMaskCollator(llm_jp_tokenizer_path, seed=2024, rule=rule)
    stats = run_all(real_rows_8192, c, batch_size=8)
    _report(f"8192 ({rule})", stats)
    assert stats["maskable"] >= 1_000_000
    share = stats["chosen"] / stats["maskable"]
    assert abs(share - 0.15) <= 0.002
    assert abs(stats["mask"] / stats["chosen"] - 0.8) <= 0.01
    assert abs(stats["random"] / stats["chosen"] - 0.1) <= 0.01
    assert abs(stats["keep"] / stats["chosen"] - 0.1) <= 0.01
    if rule == "skip":
        assert stats["at_budget"] == stats["rows"]


@pytest.mark.shared
def test_real_rows_512_statistics(real_rows_512, llm_jp_tokenizer_path):
    """The same checks over every 512-token row of packed ja-sample (the same ≈ 5.5 M maskable tokens)."""
    c = WholeWordMaskCollator(llm_jp_tokenizer_path, seed=99)
    stats = run_all(real_rows_512, c, batch_size=32)
    _report("512 (skip)", stats)
    assert stats["maskable"] >= 1_000_000
    assert abs(stats["chosen"] / stats["maskable"] - 0.15) <= 0.002
    for k, p in (("mask", 0.8), ("random", 0.1), ("keep", 0.1)):
        assert abs(stats[k] / stats["chosen"] - p) <= 0.01
    assert stats["at_budget"] == stats["rows"]


@pytest.mark.shared
def test_real_rows_per_document_budget(real_rows_8192, llm_jp_tokenizer_path):
    c = WholeWordMaskCollator(llm_jp_tokenizer_path, seed=5, per_document_budget=True)
    rows = real_rows_8192[:40]
    stats = run_all(rows, c, batch_size=8, per_document=True)
    assert abs(stats["chosen"] / stats["maskable"] - 0.15) <= 0.003
    unmasked = 0
    for b in range(0, len(rows), 8):
        out = c.collate(rows[b : b + 8], first_row=b)
        for i, row in enumerate(rows[b : b + 8]):
            d = row["doc_lengths"].astype(int)
            for s, n in zip(np.cumsum(d) - d, d):
                unmasked += not (out["labels"][i, s : s + n] != IGNORE_INDEX).any()
    assert unmasked == 0


@pytest.mark.shared
def test_real_rows_reproducible(real_rows_8192, llm_jp_tokenizer_path):
    rows = real_rows_8192[:16]
    a = WholeWordMaskCollator(llm_jp_tokenizer_path, seed=1)
    b = WholeWordMaskCollator(llm_jp_tokenizer_path, seed=1)
    for _ in range(2):
        for s in range(0, 16, 8):
            x, y = a(rows[s : s + 8]), b(rows[s : s + 8])
            for k in x:
                assert np.array_equal(x[k], y[k])
    a.set_epoch(1)
    b.set_epoch(2)
    assert not np.array_equal(a(rows[:8])["labels"], b(rows[:8])["labels"])


@pytest.mark.shared
def test_real_rows_masking_is_uniform_over_positions_and_group_sizes(real_rows_8192, llm_jp_tokenizer_path):
    """Every part of a row and every group size is masked at the same rate (no positional or size bias)."""
    c = WholeWordMaskCollator(llm_jp_tokenizer_path, seed=77)
    chosen_at = np.zeros(8192)
    maskable_at = np.zeros(8192)
    by_size: dict[int, list[int]] = {}
    for b in range(0, len(real_rows_8192), 8):
        batch = real_rows_8192[b : b + 8]
        out = c(batch)
        for i, row in enumerate(batch):
            maskable, starts, sizes = reference_groups(row)
            chosen = out["labels"][i] != IGNORE_INDEX
            chosen_at += chosen
            maskable_at += maskable
            for s in (1, 2, 3, 4):
                sel = sizes == s
                acc = by_size.setdefault(s, [0, 0])
                acc[0] += int(chosen[starts[sel]].sum())
                acc[1] += int(sel.sum())
    deciles = [chosen_at[k::10].sum() / maskable_at[k::10].sum() for k in range(10)]  # interleaved buckets
    halves = [chosen_at[:4096].sum() / maskable_at[:4096].sum(), chosen_at[4096:].sum() / maskable_at[4096:].sum()]
    assert all(abs(x - 0.15) < 0.01 for x in deciles + halves), (deciles, halves)
    rates = {s: a / n for s, (a, n) in by_size.items() if n > 5000}
    assert all(abs(r - 0.15) < 0.01 for r in rates.values()), rates
