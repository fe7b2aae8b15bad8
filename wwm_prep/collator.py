"""The collator's import path from before the package had sub-packages (`from wwm_prep.collator import …`)."""

from wwm_prep.train.collator import *  # noqa: F401,F403
from wwm_prep.train.collator import __all__  # noqa: F401
