"""wwm-prep: whole-word-masked MLM corpora for Japanese encoders.

Importing the package stays light (NumPy at most) so trainers can take the collator
without pulling in vibrato, SentencePiece or Arrow.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["WholeWordMaskCollator", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "WholeWordMaskCollator":
        from wwm_prep.train.collator import WholeWordMaskCollator

        return WholeWordMaskCollator
    raise AttributeError(f"module 'wwm_prep' has no attribute {name!r}")
