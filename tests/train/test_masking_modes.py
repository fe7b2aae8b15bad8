"""The masking modes ("word", "ngram", "span"): the contracts that hold for any rows (hypothesis, on hand-made
packed rows) and the statistics on every real 8,192-token row of packed ja-sample (llm-jp v3.0b1), at 15 % and
30 %: the masked share, the 80/10/10 split, spans of whole groups inside one piece, and span lengths.

A batch's tokens, groups and pieces are computed plainly here from its rows, not by the collator's code; the
collator's ``choice`` (its candidates and those it took) is checked against them and against its own output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.train.conftest import N_SPECIAL, PAD, make_packed_row, reference_groups
from wwm_prep.train.collator import IGNORE_INDEX, WholeWordMaskCollator
from wwm_prep.train.masking import Choice

MODES = ("word", "ngram", "span")
REAL = [(mode, p) for mode in MODES for p in (0.15, 0.30)]
ALPHA = 0.001  # the statistical tests' level: a fixed seed makes each a single, reproducible draw


@dataclass(frozen=True)
class Reference:
    """A batch of packed rows, flattened (rows × length, and one position more that is never maskable)."""

    length: int
    ids: np.ndarray
    maskable: np.ndarray
    group_start: np.ndarray
    piece: np.ndarray  # the piece of each position, numbered across the batch; -1 in padding

    @property
    def size(self) -> int:
        return self.ids.size - 1


def reference(rows: Sequence[dict], length: int) -> Reference:
    ids = np.full((len(rows), length), PAD, dtype=np.int64)
    ws = np.zeros((len(rows), length), dtype=bool)
    piece = np.full((len(rows), length), -1, dtype=np.int64)
    numbered = 0
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        ids[i, :n] = row["input_ids"]
        ws[i, :n] = np.asarray(row["word_starts"]).astype(bool)
        d = np.asarray(row["doc_lengths"], dtype=np.int64)
        piece[i, : d.sum()] = np.repeat(numbered + np.arange(d.size), d)
        numbered += d.size
    maskable = (ids >= N_SPECIAL) & (piece >= 0)
    after_same = np.zeros_like(maskable)  # the previous token is maskable and in the same piece
    after_same[:, 1:] = maskable[:, :-1] & (piece[:, 1:] == piece[:, :-1])
    group_start = maskable & (ws | ~after_same)
    return Reference(length, *(np.append(a.reshape(-1), fill) for a, fill in
                               ((ids, PAD), (maskable, False), (group_start, False), (piece, -1))))


def chi2_sf(stat: float, df: int) -> float:
    """P(X > stat) for X chi-square with df degrees of freedom (its closed forms; no SciPy here)."""
    h = stat / 2
    if df % 2 == 0:
        return math.exp(-h) * sum(h**i / math.factorial(i) for i in range(df // 2))
    return math.erfc(math.sqrt(h)) + math.exp(-h) * sum(h ** (i - 0.5) / math.gamma(i + 0.5)
                                                        for i in range(1, (df + 1) // 2))


def goodness_of_fit(observed: np.ndarray, pmf: np.ndarray) -> float:
    expected = pmf * observed.sum()
    return chi2_sf(float(((observed - expected) ** 2 / expected).sum()), observed.size - 1)


def homogeneity(a: np.ndarray, b: np.ndarray) -> float:
    """p-value of the chi-square test that two histograms over the same bins come from one distribution."""
    table = np.stack([a, b])[:, (a + b) > 0].astype(np.float64)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    return chi2_sf(float(((table - expected) ** 2 / expected).sum()), table.shape[1] - 1)


def check_choice(ref: Reference, out: dict, choice: Choice, collator: WholeWordMaskCollator) -> dict[str, object]:
    """Assert every contract on one batch; return its counts for the statistical checks."""
    n, length, options = ref.size, ref.length, collator.options
    c = choice.candidates
    starts, sizes = c.starts, c.sizes
    words = np.ones_like(starts) if c.words is None else c.words
    ends = starts + sizes
    # the candidates: in order and disjoint, each a run of whole groups inside one piece ...
    assert (sizes > 0).all() and (starts[1:] >= ends[:-1]).all()
    not_maskable = np.concatenate([[0], np.cumsum(~ref.maskable)])
    assert (not_maskable[ends] == not_maskable[starts]).all()  # no special token, no padding
    assert (ref.piece[starts] == ref.piece[ends - 1]).all()
    assert ref.group_start[starts].all()
    assert not (ref.maskable[ends] & ~ref.group_start[ends] & (ends % length != 0)).any()  # ends where a group ends
    groups_before = np.concatenate([[0], np.cumsum(ref.group_start)])
    assert (groups_before[ends] - groups_before[starts] == words).all()
    assert 1 <= words.min(initial=1) and words.max(initial=1) <= options.span_lengths().size
    assert words.sum() == ref.group_start.sum()  # ... together holding every group once
    # what was taken is exactly what the output masks, and nothing overlaps
    taken = choice.taken
    delta = np.zeros(n + 2, dtype=np.int64)
    np.add.at(delta, starts[taken], 1)
    np.add.at(delta, ends[taken], -1)
    covered = np.cumsum(delta)[:n]
    labels, new, orig = out["labels"].reshape(-1), out["input_ids"].reshape(-1), ref.ids[:n]
    chosen = labels != IGNORE_INDEX
    assert covered.max(initial=0) <= 1 and np.array_equal(chosen, covered == 1)
    assert ref.maskable[:n][chosen].all()
    assert (labels[chosen] == orig[chosen]).all() and (new[~chosen] == orig[~chosen]).all()
    became = new[chosen]
    is_mask, is_keep = became == options.mask_id, became == orig[chosen]
    is_random = ~is_mask & ~is_keep
    assert ((became[is_random] >= N_SPECIAL) & (became[is_random] < options.vocab_size)).all()
    masked_before = np.concatenate([[0], np.cumsum(chosen & (new == options.mask_id))])
    span_masks = masked_before[ends[taken]] - masked_before[starts[taken]]
    if options.masking == "span":  # the replacement is drawn once per span: a span is masked whole or not at all
        assert ((span_masks == 0) | (span_masks == sizes[taken])).all()
    # the budget of every unit (row or piece) is never exceeded, and the skip rule leaves a unit short only where
    # no candidate it did not take would fit in what is left
    unit = ref.piece[:n] if options.per_document_budget else np.arange(n) // length
    n_units = int(unit.max(initial=-1)) + 1
    maskable = np.bincount(unit[ref.maskable[:n]], minlength=n_units)
    budget = np.where(maskable > 0, np.maximum(np.rint(collator.mlm_probability * maskable), 1), 0)
    masked = np.bincount(unit[chosen], minlength=n_units)
    assert (masked <= budget).all()
    if options.rule == "skip":
        untaken = np.ones(starts.size, dtype=bool)
        untaken[taken] = False
        smallest = np.full(n_units, n + 1)
        np.minimum.at(smallest, unit[starts[untaken]], sizes[untaken])
        assert (smallest > budget - masked).all()
    bins = options.span_lengths().size + 1
    return {"maskable": int(maskable.sum()), "chosen": int(chosen.sum()), "mask": int(is_mask.sum()),
            "random": int(is_random.sum()), "keep": int(is_keep.sum()), "at_budget": int((masked == budget).sum()),
            "units": int((maskable > 0).sum()),
            "mixed spans": int(((span_masks > 0) & (span_masks < sizes[taken])).sum()),
            "taken lengths": np.bincount(words[taken], minlength=bins),
            "proposed lengths": np.bincount(proposed_lengths(choice), minlength=bins)}


def proposed_lengths(choice: Choice) -> np.ndarray:
    """The lengths drawn for the candidates each unit visited until its budget first overflowed (that one
    included): the spans it proposed in turn before skipping any. In expectation (Wald's identity, as the visiting
    order is independent of the lengths) their histogram is the mode's distribution; the spans taken after that
    are the small ones that still fit, which is how skipping biases the masked lengths."""
    c = choice.candidates
    if choice.order.size == 0:
        return np.zeros(0, dtype=np.int64)
    taken = np.zeros(c.starts.size, dtype=bool)
    taken[choice.taken] = True
    in_order = taken[choice.order]
    place = np.arange(choice.order.size)
    unit = np.repeat(np.arange(c.unit_counts.size), c.unit_counts)
    first_skipped = np.full(c.unit_counts.size, place.size)
    np.minimum.at(first_skipped, unit[~in_order], place[~in_order])
    drawn = np.ones_like(c.starts) if c.drawn is None else c.drawn
    return drawn[choice.order[place <= first_skipped[unit]]]


def plain_masked_lengths(ref: Reference, pmf: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """Lengths (in groups) of the spans that a plain transcription of docs/collator.md masks: every run of adjacent
    groups in a piece cut into spans of lengths drawn from ``pmf`` (the last cut short at the run's end), each
    row's spans visited in a random order and taken by BERT's skip loop."""
    first = np.flatnonzero(ref.group_start)
    group = np.cumsum(ref.group_start) - 1
    sizes = np.bincount(group[ref.maskable], minlength=first.size)
    new_run = np.ones(first.size, dtype=bool)
    new_run[1:] = (first[1:] != first[:-1] + sizes[:-1]) | (ref.piece[first[1:]] != ref.piece[first[:-1]])
    masked = []
    for row in range(ref.size // ref.length):
        in_row = (first >= row * ref.length) & (first < (row + 1) * ref.length)
        spans: list[tuple[int, int]] = []  # (groups, tokens)
        for run in np.split(sizes[in_row], np.flatnonzero(new_run[in_row])[1:]):
            ends = np.unique(np.minimum(np.cumsum(rng.choice(pmf.size, size=run.size, p=pmf) + 1), run.size))
            begins = np.concatenate([[0], ends[:-1]])
            tokens = np.concatenate([[0], np.cumsum(run)])
            spans += zip((ends - begins).tolist(), (tokens[ends] - tokens[begins]).tolist())
        n_maskable = int(ref.maskable[row * ref.length : (row + 1) * ref.length].sum())
        budget = max(1, int(np.rint(p * n_maskable))) if n_maskable else 0
        total = 0
        for i in rng.permutation(len(spans)):
            words, tokens = spans[i]
            if total >= budget:
                break
            if total + tokens > budget:
                continue
            total += tokens
            masked.append(words)
    return np.bincount(masked, minlength=pmf.size + 1)


# --------------------------------------------------------------------------------------------------
# Any rows (hand-made, no shared data needed)
# --------------------------------------------------------------------------------------------------


@given(seed=st.integers(0, 2**32 - 1), seq_len=st.integers(1, 160), n_rows=st.integers(1, 3),
       max_group=st.integers(1, 5), specials=st.floats(0.0, 0.3), bare=st.booleans(), p=st.floats(0.01, 0.99),
       masking=st.sampled_from(MODES), rule=st.sampled_from(["skip", "prefix"]), per_document=st.booleans(),
       max_ngram=st.integers(1, 4), span_p=st.floats(0.05, 1.0), max_span=st.integers(1, 12))
def test_contracts_hold_for_any_rows(seed, seq_len, n_rows, max_group, specials, bare, p, masking, rule,
                                     per_document, max_ngram, span_p, max_span):
    """In every mode: candidates are runs of whole groups inside one piece, between special tokens, disjoint; the
    taken ones are exactly the masked tokens; no unit exceeds its budget, and one falls short only where nothing
    left fits; a row's masks do not depend on the rows batched with it. ``bare`` rows hold no <CLS>, <SEP> or
    padding at all: their pieces and rows touch, and only doc_lengths tells them apart."""
    rng = np.random.default_rng(seed)
    rows = [make_packed_row(rng, seq_len, max_group=max_group) for _ in range(n_rows)]
    for row in rows if bare else []:
        if row["doc_lengths"].size:
            row["doc_lengths"][-1] += seq_len - row["doc_lengths"].sum()
        plain = row["input_ids"] < N_SPECIAL
        row["input_ids"][plain] = rng.integers(N_SPECIAL, 300, int(plain.sum()))
        row["word_starts"][plain] = 1
    for row in rows:  # <unk>, <s>, </s>, <MASK> and <EOD> inside documents too
        inner = np.flatnonzero((row["input_ids"] >= N_SPECIAL) & (rng.random(seq_len) < specials))
        row["input_ids"][inner] = rng.choice([0, 1, 2, 3, 7], inner.size)
    collator = WholeWordMaskCollator(vocab_size=300, special_ids=range(N_SPECIAL), seed=seed, mlm_probability=p,
                                     masking=masking, rule=rule, per_document_budget=per_document,
                                     max_ngram=max_ngram, span_p=span_p, max_span=max_span)
    out = collator.collate(rows, first_row=5)
    ref = reference(rows, out["input_ids"].shape[1])
    check_choice(ref, out, collator.choice(rows, first_row=5), collator)
    for i, row in enumerate(rows):
        assert np.array_equal(np.flatnonzero(ref.group_start[i * ref.length : (i + 1) * ref.length]),
                              reference_groups(row)[1])  # this file's groups are the collator tests' groups
        alone = collator.collate([row], first_row=5 + i)
        assert np.array_equal(alone["labels"][0], out["labels"][i])
        assert np.array_equal(alone["input_ids"][0], out["input_ids"][i])


@pytest.mark.parametrize("masking", ["ngram", "span"])
def test_modes_are_reproducible_and_differ_from_word(masking):
    rng = np.random.default_rng(4)
    rows = [make_packed_row(rng, 512) for _ in range(4)]

    def labels(**options: object) -> np.ndarray:
        return WholeWordMaskCollator(vocab_size=300, special_ids=range(N_SPECIAL), **options).collate(rows)["labels"]

    assert np.array_equal(labels(masking=masking, seed=1), labels(masking=masking, seed=1))
    assert not np.array_equal(labels(masking=masking, seed=1), labels(masking=masking, seed=2))
    assert not np.array_equal(labels(masking=masking, seed=1), labels(masking="word", seed=1))


# --------------------------------------------------------------------------------------------------
# Real packed rows (../shared)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_masking(real_rows_8192, llm_jp_tokenizer_path) -> Callable[[str, float], dict]:
    """Every 8,192-token row masked once per (mode, rate), batches of 8, each batch checked by check_choice;
    for spans, also the histogram of the plain transcription on the same rows. Computed once per (mode, rate)."""
    done: dict[tuple[str, float], dict] = {}

    def run(mode: str, p: float) -> dict:
        if (mode, p) not in done:
            c = WholeWordMaskCollator(llm_jp_tokenizer_path, seed=2025, masking=mode, mlm_probability=p)
            rng = np.random.default_rng(2025)
            total: dict = {}
            for b in range(0, len(real_rows_8192), 8):
                batch = real_rows_8192[b : b + 8]
                out = c.collate(batch, first_row=b)
                ref = reference(batch, out["input_ids"].shape[1])
                counts = check_choice(ref, out, c.choice(batch, first_row=b), c)
                if mode != "word":
                    counts["plain lengths"] = plain_masked_lengths(ref, c.options.span_lengths(), p, rng)
                for k, v in counts.items():
                    total[k] = total.get(k, 0) + v
            done[(mode, p)] = total
        return done[(mode, p)]

    return run


@pytest.mark.shared
@pytest.mark.parametrize("mode, p", REAL)
def test_real_rows_share_and_split(real_masking, mode, p):
    """p ± 0.2 points chosen and 80/10/10 ± 1 point, over ≈ 5.5 M maskable tokens; every span checked whole,
    inside its piece, free of special tokens (check_choice)."""
    s = real_masking(mode, p)
    print(f"\n{mode} p={p}: maskable {s['maskable']:,}, chosen {100 * s['chosen'] / s['maskable']:.3f} %, "
          f"<MASK> {100 * s['mask'] / s['chosen']:.2f} %, random {100 * s['random'] / s['chosen']:.2f} %, "
          f"kept {100 * s['keep'] / s['chosen']:.2f} %, rows at budget {s['at_budget']}/{s['units']}, "
          f"spans {int(s['taken lengths'].sum()):,}")
    assert s["maskable"] >= 1_000_000
    assert abs(s["chosen"] / s["maskable"] - p) <= 0.002
    for k, share in (("mask", 0.8), ("random", 0.1), ("keep", 0.1)):
        assert abs(s[k] / s["chosen"] - share) <= 0.01
    if mode == "ngram":  # per token, as Megatron: spans of several tokens are often partly <MASK>
        assert s["mixed spans"] > 0


@pytest.mark.shared
@pytest.mark.parametrize("mode, p", [c for c in REAL if c[0] != "word"])
def test_real_rows_proposed_span_lengths_follow_the_distribution(real_masking, mode, p):
    """Chi-square goodness of fit of the proposed lengths against 1/n (ngram) or the truncated geometric (span)."""
    pmf = WholeWordMaskCollator(masking=mode).options.span_lengths()
    proposed = real_masking(mode, p)["proposed lengths"][1:]
    print(f"\n{mode} p={p}: proposed {np.round(proposed / proposed.sum(), 4).tolist()}, "
          f"distribution {np.round(pmf, 4).tolist()}, p-value {goodness_of_fit(proposed, pmf):.3f}")
    assert proposed.sum() > 100_000
    assert goodness_of_fit(proposed, pmf) > ALPHA


@pytest.mark.shared
@pytest.mark.parametrize("mode, p", [c for c in REAL if c[0] != "word"])
def test_real_rows_masked_span_lengths_match_the_plain_transcription(real_masking, mode, p):
    """The lengths actually masked (skipping included) against those of plain_masked_lengths on the same rows."""
    s = real_masking(mode, p)
    taken, plain = s["taken lengths"][1:], s["plain lengths"][1:]
    pmf = WholeWordMaskCollator(masking=mode).options.span_lengths()
    print(f"\n{mode} p={p}: masked {np.round(taken / taken.sum(), 4).tolist()}, "
          f"plain {np.round(plain / plain.sum(), 4).tolist()}, p-value {homogeneity(taken, plain):.3f}; "
          f"against the distribution itself {goodness_of_fit(taken, pmf):.4f}")
    assert homogeneity(taken, plain) > ALPHA
