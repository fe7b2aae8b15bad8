"""The special pieces: the one table of their roles, the names a tokenizer may give them, and llm-jp v3's ids.

Pure Python (no NumPy, no SentencePiece), so that the collator, the model and the pipeline can all ask it.
"""

from __future__ import annotations

from collections.abc import Callable

#: The names each role's piece goes by: the SentencePiece model's, the Hugging Face form's, then BERT's and
#: RoBERTa's (so that other tokenizers work with the collator).
PIECE_NAMES: dict[str, tuple[str, ...]] = {
    "mask": ("<MASK>", "<MASK|LLM-jp>", "[MASK]", "<mask>"),
    "pad": ("<PAD>", "<PAD|LLM-jp>", "[PAD]", "<pad>"),
    "cls": ("<CLS>", "<CLS|LLM-jp>"),
    "sep": ("<SEP>", "<SEP|LLM-jp>"),
    "eod": ("<EOD>",),
}

#: llm-jp v3's special ids (v3.0b1 and v3.1 agree), used where no tokenizer is at hand.
LLMJP_V3_IDS: dict[str, int] = {"unk": 0, "bos": 1, "eos": 2, "mask": 3, "pad": 4, "cls": 5, "sep": 6, "eod": 7}
#: llm-jp v3.0b1's vocabulary; BERT-alpha pads it to 99,584.
LLMJP_V3_VOCAB_SIZE = 99_574


def find_special_ids(unk: int, bos: int, eos: int, piece_to_id: Callable[[str], int],
                     id_to_piece: Callable[[int], str]) -> dict[str, int]:
    """Ids of the special roles a tokenizer has, found by name, so any llm-jp-style model works.

    A name counts only where the tokenizer maps it to a piece of exactly that name (an unknown name maps
    to `<unk>`). Roles the tokenizer lacks are left out.
    """
    ids = {"unk": unk, "bos": bos, "eos": eos}
    for role, names in PIECE_NAMES.items():
        found = [i for i in map(piece_to_id, names) if i != unk and id_to_piece(i) in names]
        if found:
            ids[role] = found[0]
    return ids

#: The label of every position that is not predicted (PyTorch's cross-entropy default, which Hugging Face follows).
IGNORE_INDEX = -100
