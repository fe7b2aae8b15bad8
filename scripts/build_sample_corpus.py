#!/usr/bin/env python3
"""Assemble the bundled sample corpus from its plain-text sources.

Sources: ``sample/src/<subset>/*.txt``, one document per file, all text written for this project.
Output: ``sample/corpus/ja/...``, laid out like llm-jp-corpus-v3 (gzip JSON lines, one
``{"text": ..., "meta": {...}}`` object per line).

Source file format
------------------
* line 1: ``#meta `` followed by a JSON object (the document's ``meta``);
* the rest of the file is the document text, exactly, except that
  - one final newline, if present, is dropped (so editors may end files with a newline), and
  - ``\\u{XXXX}`` (one to six hex digits) stands for the code point U+XXXX. It is used only for
    characters that are invisible or unsafe in an editor: NBSP, zero-width space, BOM, control
    characters, combining marks. Everything else (emoji, half-width katakana, full-width spaces,
    tabs, ...) is written as itself. No document contains a literal ``\\u{``.

Output is deterministic: files are read in sorted name order, JSON is written with
``ensure_ascii=False`` and fixed separators, and gzip headers carry no name and mtime 0, so a
rebuild is byte-identical.

Usage: python scripts/build_sample_corpus.py [--check]
  --check   rebuild in memory and fail if any output file differs from the one on disk.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "sample" / "src"
OUT = ROOT / "sample" / "corpus"

# subset source directory -> output path (relative to sample/corpus), as in llm-jp-corpus-v3
SUBSETS: dict[str, str] = {
    "ja_cc": "ja/ja_cc/level0/CC-MAIN-sample_0.jsonl.gz",
    "ja_warp_html": "ja/ja_warp_html/level0/warp_html_0.jsonl.gz",
    "ja_warp_pdf": "ja/ja_warp_pdf/e0/warp_pdf_0.jsonl.gz",
    "ja_wiki": "ja/ja_wiki/train_0.jsonl.gz",
    "kaken": "ja/kaken/train_0.jsonl.gz",
}

_ESCAPE = re.compile(r"\\u\{([0-9A-Fa-f]{1,6})\}")


def parse_source(path: Path) -> dict:
    raw = path.read_bytes().decode("utf-8")  # strict: sources must be valid UTF-8
    header, sep, body = raw.partition("\n")
    if not header.startswith("#meta ") or not sep:
        raise ValueError(f"{path}: first line must be '#meta {{...}}'")
    meta = json.loads(header[len("#meta "):])
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: meta must be a JSON object")
    if body.endswith("\n"):
        body = body[:-1]
    text = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), body)
    if not text:
        raise ValueError(f"{path}: empty document")
    return {"text": text, "meta": meta}


def load_subset(name: str) -> list[dict]:
    files = sorted((SRC / name).glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no sources under {SRC / name}")
    return [parse_source(p) for p in files]


def encode_subset(docs: list[dict]) -> bytes:
    lines = "".join(
        json.dumps(d, ensure_ascii=False, separators=(", ", ": ")) + "\n" for d in docs
    ).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(lines)
    return buf.getvalue()


def build() -> dict[Path, bytes]:
    return {OUT / rel: encode_subset(load_subset(name)) for name, rel in SUBSETS.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="verify outputs on disk are up to date")
    args = ap.parse_args(argv)
    outputs = build()
    if args.check:
        stale = [p for p, data in outputs.items() if not p.exists() or p.read_bytes() != data]
        for p in stale:
            print(f"out of date: {p.relative_to(ROOT)}", file=sys.stderr)
        return 1 if stale else 0
    for path, data in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"wrote {path.relative_to(ROOT)} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
