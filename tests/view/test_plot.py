"""`wwm-prep stats --plot`: a PNG with something drawn on it, the same bytes every time, and a clear message
where matplotlib is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import run
from wwm_prep.view.report import compact


def test_plot(prepared: dict[str, Path], tmp_path: Path) -> None:
    """What the panels say agrees with the counts: every document, group and row is in a bar, and the axes are
    labelled; the command writes the figure where asked."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from wwm_prep.view.plot import draw_stats
    from wwm_prep.view.stats import compute_stats

    for kind in ("documents", "sequences"):
        stats = compute_stats(prepared[kind])
        t = stats.summary["totals"]
        fig = draw_stats(stats)
        assert len(fig.axes) == (3 if kind == "documents" else 5)
        assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
        by_label = {ax.get_xlabel().split(":")[0].split(" (")[0]: ax for ax in fig.axes}
        axes = [by_label[label] for label in ("tokens per document", "tokens per whole-word group", "row fill",
                                              "document pieces packed into a row", "length in tokens")
                if label in by_label]

        def heights(ax: object) -> float:
            return sum(bar.get_height() for bar in ax.patches)  # type: ignore[attr-defined]

        assert heights(axes[0]) == stats.counter.all.document_tokens.n  # stacked by subset, each document once
        assert f"{compact(t['documents'])} documents" in axes[0].get_title()
        assert heights(axes[1]) == pytest.approx(1.0)  # shares of the groups, the tail folded into the last bar
        assert f"{compact(t['groups'])} groups" in axes[1].get_title()
        shares = stats.summary["length_shares"]
        assert [bar.get_height() for bar in axes[-1].patches] == [  # tokens by piece length, then by document length
            row["share"] for key in ("by_piece", "by_document") for row in shares[key]]
        if kind == "sequences":
            assert heights(axes[2]) == heights(axes[3]) == t["rows"]  # row fill and pieces per row: every row
            lo, hi = axes[2].get_xlim()
            assert lo < 100 * min(stats.packing.row_fill.percentile(1), t["seq_len"]) / t["seq_len"] and hi >= 100
        plt.close(fig)
        png = tmp_path / f"{kind}.png"
        code, output = run("stats", str(prepared[kind]), "--plot", str(png))
        assert code == 0 and png.stat().st_size > 0, output


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
