"""Masking rates that change during training: the setter, schedules, and the rate batches see when DataLoader
workers make them (torch) or when the Hugging Face Trainer drives the collator (transformers)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.train.conftest import N_SPECIAL, make_packed_row
from wwm_prep.train.collator import IGNORE_INDEX, WholeWordMaskCollator
from wwm_prep.train.schedule import RateSchedule

SCHEDULE = [(0, 0.40), (5, 0.20), (9, 0.05)]


def collator(**options: object) -> WholeWordMaskCollator:
    return WholeWordMaskCollator(vocab_size=300, special_ids=range(N_SPECIAL), seed=3, **options)


def rows(n: int, seq_len: int = 256) -> list[dict]:
    rng = np.random.default_rng(0)
    return [make_packed_row(rng, seq_len, max_group=2) for _ in range(n)]


def share(batch: dict) -> float:
    """The share of a batch's maskable tokens that it masks (a masked token is counted whatever it became)."""
    labels, ids = np.asarray(batch["labels"]), np.asarray(batch["input_ids"])
    chosen = labels != IGNORE_INDEX
    return chosen.sum() / (chosen | ((ids >= N_SPECIAL) & (np.asarray(batch["attention_mask"]) == 1))).sum()


def step_rate(step: int) -> float:
    """A schedule as a function (module level, so that it pickles for spawned workers)."""
    return 0.30 if step < 4 else 0.10


def test_rate_schedule():
    s = RateSchedule(SCHEDULE)
    assert [s(k) for k in (0, 4, 5, 8, 9, 10**9)] == [0.40, 0.40, 0.20, 0.20, 0.05, 0.05]
    assert RateSchedule(step_rate)(3) == 0.30 and RateSchedule(step_rate)(4) == 0.10
    for bad in ([], [(1, 0.3)], [(0, 0.3), (0, 0.2)], [(0, 0.3), (10, 1.5)]):
        with pytest.raises(ValueError):
            RateSchedule(bad)
    with pytest.raises(ValueError, match="rate"):
        RateSchedule(lambda step: 2.0)(0)


def test_set_mlm_probability_and_any_rate():
    data = rows(4, 512)
    c = collator()
    for p in (0.01, 0.15, 0.3, 0.55, 0.99):
        c.set_mlm_probability(p)
        assert abs(share(c.collate(data)) - p) < 0.01
    with pytest.raises(ValueError, match="mlm_probability"):
        c.set_mlm_probability(1.5)
    c.set_schedule(SCHEDULE)
    with pytest.raises(ValueError, match="schedule"):
        c.set_mlm_probability(0.2)
    with pytest.raises(ValueError, match="step"):
        c.collate(data)
    assert c.collate(data, step=9)["labels"].tolist() == collator(mlm_probability=0.05).collate(data)["labels"].tolist()


def test_a_schedule_without_workers_counts_its_own_batches():
    """Each call is a batch; with two batches per step (gradient accumulation) the step moves every second one,
    and an epoch started without a step goes on from the steps this object has counted."""
    data = rows(2, 512)
    c = collator()
    c.set_schedule(step_rate, batches_per_step=2)
    assert [round(share(c(data)), 2) for _ in range(10)] == [0.3] * 8 + [0.1] * 2
    c.set_epoch(1)
    assert c.first_step == 5 and round(share(c(data)), 2) == 0.1
    c.set_epoch(2, step=0)
    assert round(share(c(data)), 2) == 0.3


def test_a_schedule_reaches_dataloader_workers():
    """Through a DataLoader with 2 workers, batch k of an epoch starting at step s is masked at the rate of step
    s + k, exactly as collate(..., step=s + k) masks it, in every epoch."""
    torch = pytest.importorskip("torch")
    data = rows(40)
    batch_size, batches = 4, 10
    c = collator(return_tensors="pt")
    c.set_schedule(SCHEDULE)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, num_workers=2, collate_fn=c)
    for epoch in range(2):
        c.set_epoch(epoch, step=epoch * batches)  # before the iterator is made: the workers copy the collator then
        for k, batch in enumerate(loader):
            step = epoch * batches + k
            expect = c.collate(data[k * batch_size : (k + 1) * batch_size], epoch=epoch, worker=k % 2,
                               first_row=(k // 2) * batch_size, step=step)
            assert torch.equal(batch["labels"], expect["labels"])
            assert torch.equal(batch["input_ids"], expect["input_ids"])
            assert abs(share(batch) - RateSchedule(SCHEDULE)(step)) < 0.01, (epoch, k)


def test_a_plain_setter_reaches_workers_only_at_the_next_iterator():
    torch = pytest.importorskip("torch")
    data = rows(16)
    c = collator(mlm_probability=0.4)
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=2, collate_fn=c)
    batches = iter(loader)
    first = next(batches)
    c.set_mlm_probability(0.1)  # the workers hold copies made by iter(loader): they never see this
    assert [round(share(b), 1) for b in [first, *batches]] == [0.4] * 4
    assert [round(share(b), 1) for b in loader] == [0.1] * 4


def test_trainer_callback_follows_a_schedule_with_workers_and_accumulation(tmp_path):
    """HF Trainer, 2 DataLoader workers, 2 batches per optimizer step, 3 epochs: every batch the model sees is
    masked at the schedule's rate for the step it is used in."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([{k: v.tolist() for k, v in r.items()} for r in rows(16, 128)]).with_format("numpy")
    schedule = [(0, 0.40), (2, 0.20), (4, 0.05)]
    c = collator(return_tensors="pt")
    seen: list[tuple[int, float]] = []

    class Recording(transformers.Trainer):
        def compute_loss(self, model, inputs, *args, **kwargs):  # noqa: ANN001, ANN201
            seen.append((self.state.global_step, share(inputs)))
            return super().compute_loss(model, inputs, *args, **kwargs)

    model = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=300, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=128, pad_token_id=4))
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=5, per_device_train_batch_size=4, gradient_accumulation_steps=2,
        dataloader_num_workers=2, remove_unused_columns=False, report_to=[], use_cpu=True, logging_steps=1,
        save_strategy="no")
    trainer = Recording(model=model, args=args, train_dataset=ds, data_collator=c,
                        callbacks=[c.trainer_callback(schedule=schedule)])
    assert math.isfinite(trainer.train().training_loss)
    assert c.epoch == 2 and c.batches_per_step == 2  # 2 steps per epoch: the third epoch began at step 4
    assert [step for step, _ in seen] == [s for s in range(5) for _ in range(2)]
    for step, rate in seen:
        assert abs(rate - RateSchedule(schedule)(step)) < 0.01, seen
