"""Real models keep the collator's packed pieces apart: transformers' Llama (BERT-alpha's architecture, a random
tiny config) run on real packed rows, with the batch's ``attention_mask`` (``block_attention=True``) and
``position_ids`` as they are, gives every piece the logits of that piece run alone with full bidirectional
attention; so does torch's ``flex_attention`` with a ``mask_mod`` over ``document_ids``. Skipped cleanly without
torch, transformers or ../shared.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.train.conftest import pieces_and_padding  # noqa: E402
from wwm_prep.train.collator import WholeWordMaskCollator  # noqa: E402

pytestmark = pytest.mark.shared
TOL = 1e-4


@pytest.fixture(scope="module")
def real_batch(real_rows_512, llm_jp_tokenizer_path) -> tuple[list[dict], dict]:
    """Two real 512-token rows (one with two pieces, one ending in padding) and their masked batch."""
    rows = pieces_and_padding(real_rows_512, 2)
    collator = WholeWordMaskCollator(llm_jp_tokenizer_path, seed=0, block_attention=True, return_document_ids=True,
                                     return_varlen=False, return_tensors="pt")
    return rows, collator(rows)


@pytest.fixture(scope="module")
def model(llm_jp_tokenizer_path) -> transformers.LlamaForCausalLM:
    """A random tiny Llama over the llm-jp vocabulary; weights larger than the default init, so that attending
    across pieces would show."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=WholeWordMaskCollator(llm_jp_tokenizer_path).vocab_size, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        initializer_range=0.2)
    return transformers.LlamaForCausalLM(config).eval()


def run(model: transformers.LlamaForCausalLM, implementation: str, input_ids, attention_mask, position_ids):  # noqa: ANN001, ANN201
    model.set_attn_implementation(implementation)
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits


def pieces(rows: list[dict]) -> list[tuple[int, int, int]]:
    """(row, first position, end) of every piece, from the rows' own doc_lengths."""
    out = []
    for r, row in enumerate(rows):
        ends = np.cumsum(np.asarray(row["doc_lengths"], dtype=np.int64))
        out += [(r, int(a), int(b)) for a, b in zip(ends - np.asarray(row["doc_lengths"]), ends)]
    return out


@pytest.fixture(scope="module")
def alone(real_batch, model) -> dict[tuple[int, int, int], torch.Tensor]:
    """Each piece's logits with the piece run alone: full bidirectional attention (a 4-D mask of zeros), positions
    from 0."""
    rows, batch = real_batch
    out = {}
    for r, a, b in pieces(rows):
        n = b - a
        out[r, a, b] = run(model, "eager", batch["input_ids"][r : r + 1, a:b], torch.zeros(1, 1, n, n),
                           torch.arange(n)[None])[0]
    return out


def worst(logits: torch.Tensor, alone: dict) -> float:
    assert not torch.isnan(logits).any()  # padding rows included
    return max(float((logits[r, a:b] - want).abs().max()) for (r, a, b), want in alone.items())


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_llama_logits_equal_each_piece_alone(real_batch, model, alone, implementation):
    rows, batch = real_batch
    assert batch["attention_mask"].shape == (2, 1, 512, 512) and batch["attention_mask"].dtype == torch.float32
    assert len(alone) == 3  # a row of two pieces, a row of one piece and padding
    logits = run(model, implementation, batch["input_ids"], batch["attention_mask"], batch["position_ids"])
    assert worst(logits, alone) <= TOL
    # the comparison can fail: the same rows with every piece of a row attending to the others are far off
    content = batch["document_ids"] >= 0
    across = torch.where(content[:, None, :, None] & content[:, None, None, :], 0.0, torch.finfo(torch.float32).min)
    leaked = run(model, implementation, batch["input_ids"], across, batch["position_ids"])
    assert worst(leaked, alone) > 100 * TOL


def flex_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):  # noqa: ANN001, ANN201
    """transformers' attention interface around torch's flex_attention, uncompiled (transformers' own
    "flex_attention" compiles it, about 20 s on this CPU); ``attention_mask`` is the BlockMask."""
    from torch.nn.attention.flex_attention import flex_attention

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*without torch.compile.*")
        out = flex_attention(query, key, value, block_mask=attention_mask, scale=scaling, enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


def test_flex_attention_with_document_ids(real_batch, model, alone):
    flex = pytest.importorskip("torch.nn.attention.flex_attention",
                               reason="this torch has no flex_attention (torch >= 2.5 has)")
    rows, batch = real_batch
    documents = batch["document_ids"]

    def same_piece(b, h, q, kv):  # noqa: ANN001, ANN202
        return documents[b, q] == documents[b, kv]

    block = flex.create_block_mask(same_piece, documents.shape[0], None, documents.shape[1], documents.shape[1],
                                   device="cpu")
    transformers.AttentionInterface.register("wwm_prep_flex", flex_forward)
    logits = run(model, "wwm_prep_flex", batch["input_ids"], block, batch["position_ids"])
    assert worst(logits, alone) <= TOL


def test_dataloader_with_workers(real_rows_512, llm_jp_tokenizer_path):
    """Batches from a DataLoader with two workers carry the block mask, as collate() makes it for each worker."""
    rows = pieces_and_padding(real_rows_512, 8)
    collator = WholeWordMaskCollator(llm_jp_tokenizer_path, seed=4, block_attention=True, return_tensors="pt")
    loader = torch.utils.data.DataLoader(rows, batch_size=2, num_workers=2, collate_fn=collator)
    for k, batch in enumerate(loader):
        expect = collator.collate(rows[2 * k : 2 * k + 2], worker=k % 2, first_row=(k // 2) * 2, return_tensors="np")
        assert batch["attention_mask"].dtype == torch.float32 and batch["attention_mask"].shape == (2, 1, 512, 512)
        for key in ("input_ids", "labels", "attention_mask", "position_ids"):
            assert np.array_equal(batch[key].numpy(), expect[key]), key
