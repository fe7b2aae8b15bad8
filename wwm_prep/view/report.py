"""The summary of `wwm-prep stats` as the plain tables a person reads, and the number formats the plot shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wwm_prep.core.lengths import band_label
from wwm_prep.view.hist import PERCENTILES

_METRICS = (("documents", "documents"), ("characters", "characters"), ("words", "words"), ("tokens", "tokens"),
            ("word groups", "groups"), ("tokens per group", "tokens_per_group"),
            ("characters per token", "characters_per_token"))
_SEQUENCE_METRICS = (("pieces", "pieces"), ("cut documents", "cut_documents"))
_LABELS = {"document_tokens": "tokens per document", "group_tokens": "tokens per group",
           "row_fill": "row fill (tokens)", "pieces_per_row": "pieces per row"}
_UNITS = {"document_tokens": "documents", "group_tokens": "groups", "row_fill": "rows", "pieces_per_row": "rows"}


def fmt(value: Any, digits: int = 2) -> str:
    """A value for a table cell: thousands separated, None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def compact(n: int | None) -> str:
    """12,345 or 4.70 M or 1.23 B: numbers that fit a plot title."""
    if n is None:
        return "—"
    for size, unit in ((10**9, "B"), (10**6, "M")):
        if abs(n) >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n:,}"


def _bar(share: float, width: int = 24) -> str:
    full = share * width
    return "█" * int(full) + ("▌" if full - int(full) >= 0.5 else "")


def _subset_table(summary: Mapping[str, Any]) -> list[str]:
    """Metrics as rows, one column for all the data and one per subset (where there are several)."""
    t, subsets = summary["totals"], summary["subsets"]
    columns = [("all", t)] + list(subsets.items()) if len(subsets) > 1 else [("all", t)]
    metrics = _METRICS + (_SEQUENCE_METRICS if summary["kind"] == "sequences" else ())
    width = max(12, *(len(name) + 1 for name, _ in columns))
    lines = [f"{'':<22}" + "".join(f"{name:>{width}}" for name, _ in columns)]
    for label, key in metrics:
        lines.append(f"{label:<22}" + "".join(f"{fmt(col.get(key)):>{width}}" for _, col in columns))
    return lines


def _packing_table(t: Mapping[str, Any]) -> list[str]:
    rows = [
        ("rows", fmt(t["rows"]) + f" × {fmt(t['seq_len'])} tokens"),
        ("efficiency (non-pad share)", f"{100 * (t['efficiency'] or 0):.2f} %"),
        ("document-token share", f"{100 * (t['token_share'] or 0):.2f} %  (without <CLS>/<SEP>)"),
        ("pad tokens", fmt(t["pad_tokens"])),
        ("pieces", f"{fmt(t['pieces'])}  ({fmt(t['pieces_per_row'])} per row)"),
        ("cut documents", f"{fmt(t['cut_documents'])}  (into {fmt(t['cut_pieces'])} pieces; {fmt(t['cuts'])} cuts)"),
        ("split long groups", f"{fmt(t['group_splits'])}  (from the pack manifest)"),
    ]
    return ["", "packing"] + [f"  {name:<28}{value}" for name, value in rows]


def _distributions(summary: Mapping[str, Any]) -> list[str]:
    lines = ["", f"{'distribution':<22}{'mean':>9}" + "".join(f"{name:>8}" for name, _ in PERCENTILES)]
    for key, dist in summary["distributions"].items():
        lines.append(f"{_LABELS[key]:<22}{fmt(dist['mean']):>9}"
                     + "".join(f"{fmt(dist[name]):>8}" for name, _ in PERCENTILES))
    return lines


def _span(b: Mapping[str, Any], seq_len: int | None) -> str:
    """A histogram bin's range of values; a row fill bin also in % of the row."""
    if b["to"] is None:
        span = f"{b['from']:,}+"
    elif b["to"] == b["from"]:
        span = f"{b['from']:,}"
    else:
        span = f"{b['from']:,}–{b['to']:,}"
    if seq_len:
        to = b["to"] if b["to"] is not None else b["from"]
        lo, hi = 100 * b["from"] / seq_len, 100 * to / seq_len
        span += f" ({lo:.0f} %)" if b["to"] == b["from"] else f" ({lo:.0f}–{hi:.0f} %)"
    return span


def _histograms(summary: Mapping[str, Any]) -> list[str]:
    lines = []
    for key, bins in summary["histograms"].items():
        lines += ["", f"{_LABELS[key]:<26}{_UNITS[key]:>12}{'share':>9}"]
        seq_len = summary["totals"].get("seq_len") if key == "row_fill" else None
        for b in bins:
            lines.append(f"  {_span(b, seq_len):<24}{b['count']:>12,}{100 * b['share']:>8.1f}%  {_bar(b['share'])}")
    return lines


def _length_shares(summary: Mapping[str, Any]) -> list[str]:
    """Share of tokens by the length of their piece and of their whole document, side by side."""
    shares = summary["length_shares"]
    lines = ["", f"{'share of tokens by length':<26}{'of the piece':>14}{'of the document':>17}"]
    for piece, document in zip(shares["by_piece"], shares["by_document"]):
        lines.append(f"  {band_label(piece):<24}{100 * piece['share']:>13.1f}%{100 * document['share']:>16.1f}%  "
                     f"{_bar(document['share'])}")
    return lines


def _closing(summary: Mapping[str, Any]) -> list[str]:
    """The manifest cross-check, the tokenizer and the notes."""
    check = summary["manifest"]
    lines = [""]
    if not check["found"]:
        lines.append("manifest: none here, nothing to cross-check")
    elif check["mismatches"] or check["unlisted"] or check["missing"]:
        for name, m in check["mismatches"].items():
            lines.append(f"MISMATCH {name}: shards {m['shards']:,}, manifest {m['manifest']:,}")
        for what in ("unlisted", "missing"):
            if check[what]:
                listed = ", ".join(check[what][:5]) + (f" and {len(check[what]) - 5} more" if len(check[what]) > 5 else "")
                lines.append(f"MISMATCH shards {'the manifest does not list' if what == 'unlisted' else 'listed but absent'}: {listed}")
    else:
        lines.append(f"manifest totals agree with the shards ({', '.join(check['compared'])})")
    if summary.get("tokenizer"):
        lines.append(f"tokenizer: {summary['tokenizer']}")
    return lines + [f"note: {n}" for n in summary["notes"]]


def format_stats(summary: Mapping[str, Any]) -> str:
    """The plain summary tables a person reads."""
    t, kind = summary["totals"], summary["kind"]
    head = f"{summary['dir']}: {kind}, {summary['shards']} shard{'s' * (summary['shards'] != 1)}"
    if kind == "sequences":
        head += f", {t['rows']:,} rows × {fmt(t['seq_len'])} tokens"
    lines = [head, "", *_subset_table(summary)]
    if kind == "sequences":
        lines += _packing_table(t)
    lines += _distributions(summary) + _histograms(summary) + _length_shares(summary) + _closing(summary)
    return "\n".join(lines)


def _composition_rows(label: str, before: Mapping[str, Any], after: Mapping[str, Any], total_before: int,
                      total_after: int) -> str:
    return (f"  {label:<14}{before['tokens']:>16,}{100 * before['tokens'] / max(total_before, 1):>8.1f}%"
            f"{after['tokens']:>16,}{100 * after['tokens'] / max(total_after, 1):>8.1f}%"
            f"{(after['tokens'] / before['tokens']) if before['tokens'] else 0:>9.2f}×")


def format_plan(plan: Mapping[str, Any]) -> str:
    """`pack --plan`: tokens by subset and by document length, as segmented and as pack will take them."""
    segmented, packed = plan["segmented"], plan["packed"]
    weights = ", ".join(f"{n}={w:g}" for n, w in plan["subset_weights"].items()) or "none"
    lengths = ", ".join(f"{b}:{w:g}" for b, w in plan["length_weights"]) or "none"
    whole, taken = segmented["all"], packed["all"]
    lines = [f"plan (nothing packed): seq_len {plan['seq_len']:,}, seed {plan['seed']}, subset weights {weights}, "
             f"length weights {lengths}",
             f"  {whole['documents']:,} documents ({whole['tokens']:,} tokens) as segmented → "
             f"{taken['documents']:,} packed ({taken['tokens']:,} tokens, {taken['tokens'] / max(whole['tokens'], 1):.2f}×)",
             "", f"  {'tokens by':<14}{'as segmented':>16}{'share':>9}{'packed':>16}{'share':>9}{'ratio':>10}"]
    for name in [n for n in segmented if n != "all"]:
        lines.append(_composition_rows(name, segmented[name], packed[name], whole["tokens"], taken["tokens"]))
    lines += ["", f"  {'document length':<14}"]
    for before, after in zip(whole["by_document_length"], taken["by_document_length"]):
        lines.append(_composition_rows(band_label(before), before, after, whole["tokens"], taken["tokens"]))
    return "\n".join(lines)
