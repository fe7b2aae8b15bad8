"""`wwm-prep stats --plot`: the histograms behind the summary, drawn for a person who does not read the code.

One panel per distribution: document length, word-group length and the share of tokens by piece and document
length for any shards, row fill and pieces per row for sequence shards. matplotlib is optional (`wwm-prep[plot]`) and imported only here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.lengths import band_label
from wwm_prep.view.report import compact, fmt
from wwm_prep.view.stats import Counter, Packing, Stats


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise WwmPrepError(
            "--plot needs matplotlib, which is not installed: pip install 'wwm-prep[plot]' (or matplotlib>=3.7)"
        ) from exc


def _document_panel(ax: Any, summary: dict[str, Any], counter: Counter, packing: Packing | None) -> None:
    """Document length: log-spaced bins, stacked by subset, with the row capacity and the median marked."""
    doc = counter.all.document_tokens
    top = max(doc.counts.size, 2)
    edges = np.unique(np.round(np.logspace(0, math.log10(top), 36)).astype(np.int64))
    if edges[-1] < top:
        edges = np.append(edges, top)
    names = sorted(counter.subsets) if len(counter.subsets) > 1 else []
    series = [(name, counter.subsets[name].document_tokens) for name in names] or [("all", doc)]
    bottom = np.zeros(len(edges) - 1)
    for name, hist in series:
        counts = hist.binned(edges)[: len(edges) - 1].astype(float)
        ax.bar(edges[:-1], counts, width=np.diff(edges), bottom=bottom, align="edge", label=name,
               edgecolor="white", linewidth=0.3)
        bottom += counts
    ax.set_xscale("log")
    nonzero = np.flatnonzero(doc.counts)
    if nonzero.size:
        ax.set_xlim(max(1, int(nonzero[0]) / 1.5), max(int(nonzero[-1]) * 1.5, 2))
    ax.set_title(f"Document length ({compact(summary['totals']['documents'])} documents)", fontsize=10)
    ax.set_xlabel("tokens per document (log scale)")
    ax.set_ylabel("documents")
    if packing is not None and packing.seq_len:
        cap = packing.seq_len - 2
        ax.axvline(cap, color="black", linestyle="--", linewidth=1)
        ax.text(cap, ax.get_ylim()[1] * 0.97, f" row capacity {cap:,}\n (longer ones are cut)", va="top", fontsize=8)
    median = summary["distributions"]["document_tokens"]["p50"]
    if median:
        ax.axvline(median, color="grey", linestyle=":", linewidth=1)
        ax.text(median, ax.get_ylim()[1] * 0.99, f"median {median:,} ", fontsize=8, color="dimgrey", va="top",
                ha="right")
    if names:
        ax.legend(title="subset", fontsize=8, title_fontsize=8)


def _group_panel(ax: Any, summary: dict[str, Any], counter: Counter) -> None:
    """Word-group length: one bar per size as a share of the groups, the tail folded into the last."""
    from matplotlib.ticker import PercentFormatter

    groups = counter.all.group_tokens
    last = int(min(max(8, summary["distributions"]["group_tokens"]["p99"] or 1) + 1, max(groups.counts.size - 1, 1)))
    sizes = np.arange(1, last + 1)
    share = groups.binned(sizes).astype(float) / max(groups.n, 1)
    bars = ax.bar(sizes, share, color="tab:green", edgecolor="white")
    ax.bar_label(bars, labels=[f"{100 * v:.1f}%" if v >= 0.001 else f"{100 * v:.2f}%" for v in share], fontsize=7)
    ax.set_xticks(sizes, [str(s) if s < last or groups.counts.size <= last + 1 else f"{s}+" for s in sizes])
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    t = summary["totals"]
    ax.set_title(f"Word-group length ({compact(t['groups'])} groups, mean {fmt(t['tokens_per_group'])} tokens)",
                 fontsize=10)
    ax.set_xlabel("tokens per whole-word group")
    ax.set_ylabel("share of groups")


def _length_panel(ax: Any, summary: dict[str, Any]) -> None:
    """Share of tokens by length band: of the piece they sit in beside that of their whole document."""
    from matplotlib.ticker import PercentFormatter

    shares = summary["length_shares"]
    at = np.arange(len(shares["bands"]))
    for offset, key, label, colour in ((-0.2, "by_piece", "piece (as the row holds it)", "tab:blue"),
                                       (0.2, "by_document", "whole document", "tab:red")):
        values = [row["share"] for row in shares[key]]
        bars = ax.bar(at + offset, values, width=0.4, label=label, color=colour, edgecolor="white")
        ax.bar_label(bars, labels=[f"{100 * v:.0f}%" if v else "" for v in values], fontsize=7)
    ax.set_xticks(at, [band_label(row) for row in shares["by_piece"]])
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_title("Tokens by length (cut documents count whole on the right)", fontsize=10)
    ax.set_xlabel("length in tokens")
    ax.set_ylabel("share of tokens")
    ax.legend(fontsize=8)


FILL_AXIS_FROM = 1  # percentile: the fill axis starts at this row's, so that a few short rows (a partition's
# last) do not squeeze the other 99 % into one bar; the rows below it go into the first bar, and the panel says so


def _fill_panel(ax: Any, summary: dict[str, Any], packing: Packing, seq_len: int) -> None:
    """Row fill in % of the row: about 40 bins from the 1st-percentile row to a full one."""
    from matplotlib.ticker import PercentFormatter

    fill = packing.row_fill
    lowest = fill.percentile(FILL_AXIS_FROM) or 0
    span = seq_len + 1 - lowest
    step = max(1, math.ceil(span / 40))
    token_edges = np.arange(seq_len + 1 - step * math.ceil(span / step), seq_len + 2, step)
    counts = fill.binned(token_edges)[:-1]
    below = int(fill.binned([0, token_edges[0]])[0])
    counts[0] += below
    ax.bar(token_edges[:-1] / seq_len * 100, counts, width=step / seq_len * 100, align="edge",
           color="tab:purple", edgecolor="white", linewidth=0.3)
    pad = 0.02 * (token_edges[-1] - token_edges[0]) / seq_len * 100
    ax.set_xlim(token_edges[0] / seq_len * 100 - pad, token_edges[-1] / seq_len * 100 + pad)
    span_pct = span / seq_len * 100
    decimals = 0 if span_pct >= 8 else 1 if span_pct >= 0.8 else 2
    ax.xaxis.set_major_formatter(PercentFormatter(100, decimals=decimals))
    full = int(fill.counts[seq_len]) if fill.counts.size > seq_len else 0
    note = f"{full:,} of {packing.rows:,} rows exactly full\nbars {step:,} token{'s' * (step > 1)} wide; the last one ends at 100 %"
    if below:
        emptiest = fill.percentile(0) / seq_len * 100
        note += (f"\nthe first bar holds the {below:,} row{'s' * (below > 1)} below "
                 f"{token_edges[0] / seq_len * 100:.{decimals + 1}f} % (the emptiest: {emptiest:.1f} %)")
    ax.text(0.02, 0.97, note, transform=ax.transAxes, va="top", fontsize=8)
    ax.set_title(f"Row fill (efficiency {100 * summary['totals']['efficiency']:.2f} %, rows of {seq_len:,} tokens)",
                 fontsize=10)
    ax.set_xlabel(f"row fill: % of the {seq_len:,} tokens that are not padding")
    ax.set_ylabel("rows")


def _pieces_panel(ax: Any, summary: dict[str, Any], packing: Packing) -> None:
    """Pieces per row, each bar labelled with its rows where there are few bars."""
    ppr = packing.pieces_per_row
    ks = np.arange(1, max(ppr.counts.size, 2))
    bars = ax.bar(ks, ppr.counts[1:].astype(float) if ppr.counts.size > 1 else [0], color="tab:orange",
                  edgecolor="white")
    if ks.size <= 30:
        ax.bar_label(bars, labels=[f"{int(v):,}" if v else "" for v in bars.datavalues], fontsize=7)
    step = max(1, int(math.ceil(ks.size / 20)))
    ax.set_xticks(ks[::step])
    t = summary["totals"]
    ax.set_title(f"Pieces per row (mean {fmt(t['pieces_per_row'])}; {compact(t['cut_documents'])} documents cut)",
                 fontsize=10)
    ax.set_xlabel("document pieces packed into a row (<CLS> … <SEP> each)")
    ax.set_ylabel("rows")


PLOT_FORMATS = (".png", ".svg", ".pdf")


def plot_path(path: Path) -> Path:
    """Where a plot will really be written, checked before any counting: a known image format (a bare name gets
    .png, as matplotlib would add it) in a directory that is one, or can be made."""
    if not path.suffix:
        path = path.with_suffix(".png")
    if path.suffix.lower() not in PLOT_FORMATS:
        raise WwmPrepError(f"--plot {path}: write a {', '.join(PLOT_FORMATS)} file (the format follows the name)")
    blocker = next((p for p in [path.parent, *path.parent.parents] if p.exists()), None)
    if path.is_dir() or (blocker is not None and not blocker.is_dir()):
        raise WwmPrepError(f"--plot {path}: {blocker if not path.is_dir() else path} is "
                           f"{'a directory' if path.is_dir() else 'a file, not a directory'}")
    return path


def plot_stats(stats: Stats, path: Path) -> None:
    """The histograms of `draw_stats`, written to `path` (PNG, SVG or PDF, by its suffix)."""
    import matplotlib.pyplot as plt

    fig = draw_stats(stats)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw_stats(stats: Stats) -> Any:
    """Histograms a person reads without the code, titled, axes labelled with units: a matplotlib Figure."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    summary, counter, packing = stats.summary, stats.counter, stats.packing
    t = summary["totals"]
    top = ["doc"] * 2 + ["group"] * 2 + ["length"] * 2
    if packing is not None:
        fig, axes = plt.subplot_mosaic([top, ["fill"] * 3 + ["pieces"] * 3], figsize=(16, 7.5))
    else:
        fig, axes = plt.subplot_mosaic([top], figsize=(16, 4.2))
    thousands = FuncFormatter(lambda v, _: f"{v:,.0f}")
    _document_panel(axes["doc"], summary, counter, packing)
    axes["doc"].xaxis.set_major_formatter(thousands)
    _group_panel(axes["group"], summary, counter)
    _length_panel(axes["length"], summary)
    if packing is not None and packing.seq_len:
        _fill_panel(axes["fill"], summary, packing, packing.seq_len)
        _pieces_panel(axes["pieces"], summary, packing)
    for name, ax in axes.items():
        if name not in ("group", "length"):  # these show shares
            ax.yaxis.set_major_formatter(thousands)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    title = f"wwm-prep stats — {summary['dir']} ({summary['kind']}: {compact(t['tokens'])} tokens"
    title += f" in {compact(t['rows'])} rows)" if packing is not None else f" in {compact(t['documents'])} documents)"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
