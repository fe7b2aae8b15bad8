"""One definition of a whole-word group: the collator masks by it, and stats, inspect and segment count by it,
also where a token that can never be masked (`<unk>`) lies inside a word."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from wwm_prep.core.groups import word_groups
from wwm_prep.core.specials import LLMJP_V3_IDS
from wwm_prep.train.collator import WholeWordMaskCollator
from wwm_prep.view.stats import Counter, Packing, _count_sequences

UNK, CLS, SEP, PAD = (LLMJP_V3_IDS[k] for k in ("unk", "cls", "sep", "pad"))
UNMASKABLE = np.array(sorted(LLMJP_V3_IDS.values()), dtype=np.int64)


def stats_groups(row: dict[str, np.ndarray]) -> int:
    """The groups `wwm-prep stats` counts in one packed row."""
    batch = pa.RecordBatch.from_pydict({
        "input_ids": [row["input_ids"].tolist()], "word_starts": [row["word_starts"].tolist()],
        "doc_lengths": [row["doc_lengths"].tolist()], "doc_sources": [list(row["doc_sources"])]})
    counter = Counter()
    _count_sequences(counter, Packing(), batch, Path("row"), None, PAD, UNMASKABLE)
    return int(counter.all.counts["groups"])


def collator_groups(collator: WholeWordMaskCollator, row: dict[str, np.ndarray]) -> int:
    return int(collator.choice([row]).candidates.row_counts[0])


def test_an_unmaskable_token_inside_a_word_ends_its_group_for_everyone() -> None:
    # <CLS> 東 北 <unk> 大 | 学 <SEP> <CLS> <unk> の | 研 究 <SEP> <PAD>: word starts at 東, 学, の, 研
    ids = np.array([CLS, 100, 101, UNK, 102, 103, SEP, CLS, UNK, 104, 105, 106, SEP, PAD], dtype=np.int32)
    starts = np.array([0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0], dtype=np.uint8)
    row = {"input_ids": ids, "word_starts": starts, "doc_lengths": np.array([7, 6], dtype=np.int32),
           "doc_sources": np.array(["ja_wiki:a:1:1/1", "ja_wiki:b:2:1/1"])}
    maskable = ~np.isin(ids, UNMASKABLE)
    first, sizes, _ = word_groups(maskable, starts, np.array([0, 7]))
    assert first.tolist() == [1, 4, 5, 9, 10] and sizes.tolist() == [2, 1, 1, 1, 2]  # 東北 | 大 | 学 | の | 研究
    collator = WholeWordMaskCollator(mask_id=LLMJP_V3_IDS["mask"], pad_id=PAD, special_ids=UNMASKABLE.tolist(),
                                     vocab_size=200)
    assert collator_groups(collator, row) == stats_groups(row) == 5


def test_stats_and_the_collator_agree_on_every_row_of_ja_sample(real_rows_8192: list[dict[str, np.ndarray]],
                                                                 llm_jp_tokenizer_path: Path) -> None:
    """Real rows, every third of them given `<unk>` ids at random places inside and between words."""
    collator = WholeWordMaskCollator(str(llm_jp_tokenizer_path))
    rng = np.random.default_rng(0)
    for i, real in enumerate(real_rows_8192):
        row = dict(real)
        if i % 3 == 0:
            ids = row["input_ids"].copy()
            content = np.flatnonzero(~np.isin(ids, UNMASKABLE))
            ids[rng.choice(content, size=min(8, content.size), replace=False)] = UNK
            row["input_ids"] = ids
        assert collator_groups(collator, row) == stats_groups(row), i
