"""The README's scaling table: how long `segment` takes on llm-jp-corpus-v3's Japanese subsets with one unit per
input file (before chunks) and with one unit per chunk, on a number of cores, against the ideal (total ÷ cores).

Units are scheduled largest first, each to the core that frees up first (what a pool of workers taking the next
unit does, with the largest units put first). File counts and token counts are the published ones (DESIGN §7);
ja_warp_pdf is left out, its file count was not found.

    python benchmarks/scaling_table.py [--tokens-per-second 0.51e6] [--chunk-mib 64]
"""

from __future__ import annotations

import argparse
import heapq

# subset: (files, tokens in all of them), from llm-jp's public scripts and configs
SUBSETS = {
    "ja_cc/level0": (65, 230e9),
    "ja_cc/level1": (65, 75e9),
    "ja_cc/level2": (65, 75e9),
    "ja_warp_html/level0": (2, 1.4e9),
    "ja_wiki": (15, 1.28e9),
    "kaken": (1, 1.8e9),  # "very few files": one is the worst case
}
BYTES_PER_TOKEN = 15e9 / 3.5e9  # a ja_cc level-0 file: ≈15 GB of text, ≈3.5 B tokens
CORES = (64, 256, 1024, 4096)


def makespan(units: list[float], cores: int) -> float:
    """Time until the last core is done, units (in seconds) taken largest first by the core free first."""
    free = [0.0] * min(cores, len(units))
    for unit in sorted(units, reverse=True):
        heapq.heapreplace(free, free[0] + unit)
    return max(free)


def units(chunk_tokens: float | None) -> list[float]:
    """Tokens of every unit: whole files, or chunks of `chunk_tokens` (the last of a file holding the rest)."""
    found = []
    for files, tokens in SUBSETS.values():
        per_file = tokens / files
        if chunk_tokens is None:
            found += [per_file] * files
            continue
        whole, rest = divmod(per_file, chunk_tokens)
        found += ([chunk_tokens] * int(whole) + ([rest] if rest else [])) * files
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens-per-second", type=float, default=0.51e6, help="per core")
    parser.add_argument("--chunk-mib", type=float, default=64, help="--chunk-size, in MiB of text")
    parser.add_argument("--smoke", action="store_true", help="the same run: it computes, it measures nothing")
    args = parser.parse_args()
    chunk_tokens = args.chunk_mib * (1 << 20) / BYTES_PER_TOKEN
    total = sum(tokens for _, tokens in SUBSETS.values())
    plans = {"whole-file units (before)": units(None),
             f"chunks of {args.chunk_mib:g} MiB ≈ {chunk_tokens / 1e6:.0f} M tokens (now)": units(chunk_tokens)}
    print(f"{total / 1e9:.0f} B tokens in {len(plans['whole-file units (before)'])} files; "
          f"{len(list(plans.values())[1])} chunks; {args.tokens_per_second / 1e6:.2f} M tokens/s per core\n")
    print("| cores | ideal | " + " | ".join(plans) + " |")
    print("| --- | --- |" + " --- |" * len(plans))
    for cores in CORES:
        ideal = total / args.tokens_per_second / cores
        cells = []
        for planned in plans.values():
            hours = makespan([u / args.tokens_per_second for u in planned], cores) / 3600
            cells.append(f"{hours:.2f} h ({hours * 3600 / ideal:.2f}×)")
        print(f"| {cores:,} | {ideal / 3600:.2f} h | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
