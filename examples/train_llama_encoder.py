"""Train a tiny Llama encoder, BERT-alpha's architecture, with the Hugging Face Trainer on packed shards.

    python examples/train_llama_encoder.py out/demo/sequences [--steps 20]

transformers' Llama with its causal mask replaced by the collator's block mask (``block_attention=True``): the
4-D mask goes to the attention as it is, so every token sees its whole packed piece, both ways, and nothing of
the other pieces of its row. The loss is the masked-LM loss on the collator's labels, not shifted as a causal
LM's would be. CPU is enough; it prints the loss of each step.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import datasets
import torch
import transformers

from wwm_prep import WholeWordMaskCollator
from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.manifest import SequenceManifest
from wwm_prep.text.tokenizer import locate_tokenizer


def masked_lm_loss(outputs, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:  # noqa: ANN001
    """Cross-entropy at the masked positions (labels -100 elsewhere), each token predicted in place."""
    logits = outputs["logits"].flatten(0, 1).float()
    loss = torch.nn.functional.cross_entropy(logits, labels.flatten(), ignore_index=-100, reduction="sum")
    return loss / (num_items_in_batch if num_items_in_batch is not None else (labels != -100).sum())


def train(sequences: Path, steps: int, out: Path, hidden_size: int = 64, layers: int = 2,
          batch_size: int = 4, learning_rate: float = 1e-2) -> list[float]:
    """Train for ``steps`` optimizer steps; the loss of each."""
    manifest = SequenceManifest.read(sequences)
    tokenizer = manifest.tokenizer  # the tokenizer the rows were made with
    model_file, _ = locate_tokenizer(tokenizer.path, tokenizer.sha256, None, made_with="these rows were made with")
    rows = datasets.load_dataset("arrow", data_files=str(sequences / "*.arrow"), split="train").with_format("numpy")
    collator = WholeWordMaskCollator(model_file, seed=0, block_attention=True, return_varlen=False,
                                     return_tensors="pt")
    config = transformers.LlamaConfig(
        vocab_size=collator.vocab_size, hidden_size=hidden_size, intermediate_size=4 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=manifest.config.seq_len, pad_token_id=collator.pad_id)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM._from_config(config, attn_implementation="sdpa")  # "eager" takes it too
    args = transformers.TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=learning_rate,
        remove_unused_columns=False,  # keep word_starts and doc_lengths for the collator
        report_to=[], use_cpu=True, logging_steps=1, save_strategy="no", dataloader_num_workers=0, seed=0,
        disable_tqdm=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=rows, data_collator=collator,
                                   compute_loss_func=masked_lm_loss, callbacks=[collator.trainer_callback()])
    trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sequences", type=Path, help="a directory written by `wwm-prep pack`")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        losses = train(args.sequences, args.steps, Path(out))
    for step, loss in enumerate(losses, start=1):
        print(f"step {step:3d}  masked-LM loss {loss:.3f}")


if __name__ == "__main__":
    try:
        main()
    except WwmPrepError as exc:  # e.g. the rows' tokenizer has moved: the message says which file to give
        raise SystemExit(f"train_llama_encoder.py: {exc}") from None
