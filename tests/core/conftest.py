"""What the core tests share: the bundled sample segmented and packed once, to read real manifests and shards."""

from __future__ import annotations

from pathlib import Path

import pytest

from wwm_prep.core.resources import resource
from wwm_prep.pipeline.pack import PackConfig, run_pack
from wwm_prep.pipeline.segment import SegmentConfig, run_segment


@pytest.fixture(scope="session")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("manifests")
    run_segment([str(resource("sample", "corpus"))], root / "documents", SegmentConfig(dictionary="tiny-ja"), quiet=True)
    run_pack(root / "documents", root / "sequences", PackConfig(seq_len=512), quiet=True)
    return {"documents": root / "documents", "sequences": root / "sequences"}
