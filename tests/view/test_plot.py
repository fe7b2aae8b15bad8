"""`wwm-prep stats --plot`: a PNG with something drawn on it, the same bytes every time, and a clear message
where matplotlib is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run


def test_plot(prepared: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    for kind in ("documents", "sequences"):
        png = tmp_path / f"{kind}.png"
        code, output = run("stats", str(prepared[kind]), "--plot", str(png))
        assert code == 0, output
        assert png.stat().st_size > 20_000
        image = imread(png)
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600
        colours = np.unique(image.reshape(-1, image.shape[2]).round(2), axis=0)
        assert len(colours) > 50  # not a blank canvas: bars in several colours, text, axes


def test_plot_is_reproducible(prepared: dict[str, Path], tmp_path: Path) -> None:
    """The same shards draw the same bytes, so a changed plot shows up as a changed file."""
    pytest.importorskip("matplotlib")
    from wwm_prep.view.plot import plot_stats
    from wwm_prep.view.stats import compute_stats

    for name in ("a.png", "b.png"):
        plot_stats(compute_stats(prepared["sequences"]), tmp_path / name)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_plot_without_matplotlib(prepared: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    code, output = run("stats", str(prepared["documents"]), "--plot", str(tmp_path / "x.png"))
    assert code == 2
    assert "needs matplotlib" in output and "wwm-prep[plot]" in output
    assert not (tmp_path / "x.png").exists()
