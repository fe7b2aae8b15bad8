"""Train a tiny masked-LM a few steps on packed shards with the whole-word-masking collator.

    python examples/train_tiny.py out/demo/sequences [--steps 20]

Plain PyTorch: a DataLoader with two workers feeds rows from `datasets` to WholeWordMaskCollator, and a
two-layer Transformer encoder learns to fill the masked words. It prints the loss of each step.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import datasets
import torch
from torch.utils.data import DataLoader

from wwm_prep import WholeWordMaskCollator
from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.manifest import SequenceManifest
from wwm_prep.text.tokenizer import locate_tokenizer


class TinyEncoder(torch.nn.Module):
    def __init__(self, vocab_size: int, dim: int = 64, max_len: int = 8192):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, dim)
        self.position = torch.nn.Embedding(max_len, dim)
        layer = torch.nn.TransformerEncoderLayer(dim, nhead=4, dim_feedforward=4 * dim, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, num_layers=2)
        self.head = torch.nn.Linear(dim, vocab_size)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids) + self.position(position_ids)
        return self.head(self.encoder(x, src_key_padding_mask=attention_mask == 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sequences", type=Path, help="a directory written by `wwm-prep pack`")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    tokenizer = SequenceManifest.read(args.sequences).tokenizer  # the tokenizer the rows were made with
    model_file, _ = locate_tokenizer(tokenizer.path, tokenizer.sha256, None, made_with="these rows were made with")
    rows = datasets.load_dataset("arrow", data_files=str(args.sequences / "*.arrow"), split="train")
    collator = WholeWordMaskCollator(model_file, seed=0, return_tensors="pt")
    loader = DataLoader(rows.with_format("numpy"), batch_size=4, shuffle=True, num_workers=2,
                        collate_fn=collator, generator=torch.Generator().manual_seed(0))

    torch.manual_seed(0)
    model = TinyEncoder(tokenizer.vocab_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    step = 0
    for epoch in range(1000):
        collator.set_epoch(epoch)  # new masks each epoch, reproducible from the seed
        for batch in loader:
            logits = model(batch["input_ids"], batch["position_ids"], batch["attention_mask"])
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            print(f"step {step:3d}  masked-LM loss {loss.item():.3f}", flush=True)
            if step == args.steps:
                return


if __name__ == "__main__":
    try:
        main()
    except WwmPrepError as exc:  # e.g. the rows' tokenizer has moved: the message says which file to give
        raise SystemExit(f"train_tiny.py: {exc}") from None
