"""The collator with PyTorch: tensors, a DataLoader with 2 workers, a few optimizer steps of a tiny model,
and (where transformers is installed) the Hugging Face Trainer, on hand-made rows and on real `wwm-prep pack`
shards read with `datasets`. Skipped cleanly where torch is absent."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.conftest import load_packed  # noqa: E402
from tests.train.conftest import N_SPECIAL, check_batch, make_packed_row  # noqa: E402
from wwm_prep import WholeWordMaskCollator  # noqa: E402
from wwm_prep.train.collator import IGNORE_INDEX  # noqa: E402

VOCAB = 300
SEQ = 128


def zipf_rows(n_rows: int, seed: int = 0) -> list[dict]:
    """Packed rows whose tokens follow a skewed distribution, so that a tiny model learns something fast."""
    rng = np.random.default_rng(seed)
    rows = []
    weights = 1.0 / np.arange(1, VOCAB - N_SPECIAL + 1)
    weights /= weights.sum()
    for _ in range(n_rows):
        row = make_packed_row(rng, SEQ, vocab=VOCAB)
        inner = row["input_ids"] >= N_SPECIAL
        row["input_ids"][inner] = N_SPECIAL + rng.choice(VOCAB - N_SPECIAL, int(inner.sum()), p=weights)
        rows.append(row)
    return rows


class TinyMLM(torch.nn.Module):
    def __init__(self, vocab: int = VOCAB, dim: int = 32, max_len: int = SEQ) -> None:
        super().__init__()
        self.tok = torch.nn.Embedding(vocab, dim)
        self.pos = torch.nn.Embedding(max_len, dim)
        self.layer = torch.nn.TransformerEncoderLayer(dim, 2, 64, dropout=0.0, batch_first=True)
        self.out = torch.nn.Linear(dim, vocab)

    def forward(self, input_ids, attention_mask, position_ids):  # noqa: ANN001
        x = self.tok(input_ids) + self.pos(position_ids)
        x = self.layer(x, src_key_padding_mask=attention_mask == 0)
        return self.out(x)


def test_pt_tensors_match_numpy():
    rows = zipf_rows(4)
    c = WholeWordMaskCollator(vocab_size=VOCAB, special_ids=range(N_SPECIAL), seed=3)
    a = c.collate(rows, return_tensors="pt")
    b = c.collate(rows, return_tensors="np")
    for k in ("input_ids", "labels", "attention_mask", "position_ids"):
        assert isinstance(a[k], torch.Tensor) and a[k].dtype == torch.int64
        assert np.array_equal(a[k].numpy(), b[k])
    assert a["cu_seqlens"].dtype == torch.int32 and isinstance(a["max_seqlen"], int)
    pt = WholeWordMaskCollator(vocab_size=VOCAB, special_ids=range(N_SPECIAL), seed=3, return_tensors="pt")
    assert isinstance(pt.collate(rows)["labels"], torch.Tensor)
    # torch tensors as input rows (datasets' "torch" format) are accepted too
    as_tensors = [{k: torch.as_tensor(v) for k, v in r.items()} for r in rows]
    assert np.array_equal(c.collate(as_tensors)["labels"], b["labels"])


def test_dataloader_two_workers_trains_a_tiny_model():
    torch.manual_seed(0)
    rows = zipf_rows(64)
    batch_size = 8
    collator = WholeWordMaskCollator(vocab_size=VOCAB, special_ids=range(N_SPECIAL), seed=17, return_tensors="pt")
    loader = torch.utils.data.DataLoader(rows, batch_size=batch_size, shuffle=False, num_workers=2, collate_fn=collator)

    def epoch_batches(epoch: int) -> list[dict]:
        collator.set_epoch(epoch)  # before the iterator is created: the workers copy the collator then
        return list(loader)

    e0 = epoch_batches(0)
    assert len(e0) == len(rows) // batch_size
    # batch k is made by worker k % 2, whose row counter stands at (k // 2) * batch_size
    for k, batch in enumerate(e0):
        expect = collator.collate(
            rows[k * batch_size : (k + 1) * batch_size], epoch=0, worker=k % 2, first_row=(k // 2) * batch_size
        )
        for key in ("input_ids", "labels"):
            assert np.array_equal(batch[key].numpy(), expect[key])
        check_batch(rows[k * batch_size : (k + 1) * batch_size], {k2: np.asarray(v) for k2, v in batch.items()}, collator)
    # the two workers draw different streams: the same rows under worker 0 and 1 differ
    w0 = collator.collate(rows[:8], epoch=0, worker=0, first_row=0)["labels"]
    w1 = collator.collate(rows[:8], epoch=0, worker=1, first_row=0)["labels"]
    assert not np.array_equal(w0, w1)
    # reproducible per epoch, different between epochs
    again = epoch_batches(0)
    assert all(torch.equal(a["labels"], b["labels"]) for a, b in zip(e0, again))
    e1 = epoch_batches(1)
    assert not all(torch.equal(a["labels"], b["labels"]) for a, b in zip(e0, e1))

    model = TinyMLM()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for epoch in range(3):
        collator.set_epoch(epoch)
        for batch in loader:
            logits = model(batch["input_ids"], batch["attention_mask"], batch["position_ids"])
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, VOCAB), batch["labels"].reshape(-1), ignore_index=IGNORE_INDEX
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.5, losses


def test_hugging_face_trainer(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # the Trainer needs it
    datasets = pytest.importorskip("datasets")
    rows = zipf_rows(32, seed=1)
    ds = datasets.Dataset.from_list(
        [{k: v.tolist() for k, v in r.items()} for r in rows]
    ).with_format("numpy")
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=SEQ,
        pad_token_id=4,
    )
    model = transformers.BertForMaskedLM(config)
    collator = WholeWordMaskCollator(vocab_size=VOCAB, special_ids=range(N_SPECIAL), seed=5, return_tensors="pt")
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=6,
        num_train_epochs=2,
        per_device_train_batch_size=8,
        learning_rate=5e-3,
        remove_unused_columns=False,  # keep word_starts and doc_lengths for the collator
        report_to=[],
        use_cpu=True,
        logging_steps=1,
        save_strategy="no",
        dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=ds, data_collator=collator, callbacks=[collator.trainer_callback()]
    )
    result = trainer.train()
    assert math.isfinite(result.training_loss)
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 6 and all(math.isfinite(x) for x in logged)
    assert collator.epoch == 1  # the callback moved the collator to the second epoch (4 batches per epoch)


@pytest.mark.shared
def test_hugging_face_trainer_on_packed_shards(ja_sequences, llm_jp_tokenizer_path, tmp_path):  # noqa: F811
    """docs/collator.md's recipe as written: real 512-token pack output opened with `datasets` (NumPy format,
    the doc_sources column included), the llm-jp tokenizer, remove_unused_columns=False, a tiny BERT."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    ds = load_packed(ja_sequences[512], tmp_path / "hf-cache").select(range(64))
    collator = WholeWordMaskCollator(llm_jp_tokenizer_path, seed=3, return_tensors="pt")
    seen: list[dict] = []

    def collate(rows):  # noqa: ANN001, ANN202
        out = collator(rows)
        seen.append({"rows": rows, "out": {k: np.asarray(v) for k, v in out.items()}})
        return out

    model = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=collator.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, pad_token_id=collator.pad_id))
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=2, learning_rate=1e-3,
        remove_unused_columns=False, report_to=[], use_cpu=True, logging_steps=1, save_strategy="no",
        dataloader_num_workers=0)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=ds, data_collator=collate,
                                   callbacks=[collator.trainer_callback()])
    assert math.isfinite(trainer.train().training_loss)
    assert len(seen) >= 3  # (the Trainer may fetch a batch ahead)
    for batch in seen:
        assert {"doc_lengths", "doc_sources"} <= set(batch["rows"][0])  # the Trainer kept the columns
        check_batch(batch["rows"], batch["out"], collator)
        assert batch["out"]["input_ids"].shape == (2, 512) and (batch["out"]["labels"] != IGNORE_INDEX).any()
