"""A technical-documentation benchmark corpus, generated: Japanese and English prose with code, command lines,
tables, URLs and man-page option lists, in the llm-jp layout (`<out>/ja/tech_docs/train_<i>.jsonl.gz`).

ASCII-heavy, space-heavy text is where segment's own cost weighs most against vibrato's (vibrato is fast per
byte on it), so `make bench` watches segment on it beside ja-sample. Every fragment is written here and
combined by a seeded generator: the same bytes on every machine, and nothing to commit.

    python benchmarks/tech_corpus.py OUT [--documents N] [--files N] [--smoke]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from collections.abc import Callable
from pathlib import Path

from corpus_args import parse_with_smoke

TOOLS = ["wwm-prep", "vibrato", "sentencepiece", "pyarrow", "numpy", "ray", "git", "make", "rsync", "curl", "jq",
         "docker", "kubectl", "ssh", "tar", "zstd", "pytest", "uv", "pip", "systemctl"]
NOUNS_JA = ["設定ファイル", "出力ディレクトリ", "形態素解析器", "辞書", "トークナイザ", "シャード", "マニフェスト", "ワーカー",
            "キャッシュ", "ログ", "環境変数", "依存関係", "テストケース", "ベンチマーク", "メモリ使用量", "入力コーパス",
            "部分集合", "チェックサム", "一時ファイル", "コマンドライン"]
VERBS_JA = ["指定します", "確認してください", "省略できます", "書き出します", "読み込みます", "再実行します", "無視されます",
            "上書きされます", "検証します", "並列に処理します"]
CONNECT_JA = ["なお、", "ただし、", "たとえば", "このとき", "まず", "次に", "最後に", "必要であれば", "既定では", "通常は"]
VERBS_EN = ["writes", "reads", "skips", "verifies", "compresses", "caches", "streams", "rejects", "merges", "packs"]
NOUNS_EN = ["the shard", "each unit", "the manifest", "a worker", "the dictionary", "every record", "the output",
            "the cache directory", "the tokenizer model", "a partial run"]
WORDS = ["alpha", "batch", "chunk", "delta", "epoch", "field", "group", "index", "label", "merge", "offset", "piece",
         "queue", "range", "slice", "token", "value", "window", "yield", "zone"]
HOSTS = ["docs.example.org", "git.example.com", "mirror.example.net", "api.example.jp", "wiki.example.dev"]


def ident(rng: random.Random) -> str:
    return "_".join(rng.sample(WORDS, rng.randint(1, 3)))


def url(rng: random.Random) -> str:
    path = "/".join(rng.sample(WORDS, rng.randint(1, 4)))
    query = f"?{rng.choice(WORDS)}={rng.randint(0, 9999)}&lang={rng.choice(['ja', 'en'])}" if rng.random() < 0.5 else ""
    return f"https://{rng.choice(HOSTS)}/{path}{rng.choice(['', '.html', '.md', '/'])}{query}"


def option(rng: random.Random) -> str:
    return f"--{rng.choice(WORDS)}-{rng.choice(WORDS)}"


def sentence_ja(rng: random.Random) -> str:
    parts = [rng.choice(CONNECT_JA) if rng.random() < 0.4 else "",
             f"{rng.choice(TOOLS)} の `{option(rng)}` で{rng.choice(NOUNS_JA)}を{rng.choice(VERBS_JA)}"]
    if rng.random() < 0.3:
        parts.append(f"（詳しくは {url(rng)} を参照）")
    if rng.random() < 0.3:
        parts.append(f"。値は {rng.randint(1, 65536)} MiB 以下、既定は {rng.choice(['auto', 'none', '0', '4'])} です")
    return "".join(parts) + "。"


def sentence_en(rng: random.Random) -> str:
    s = f"{rng.choice(NOUNS_EN).capitalize()} {rng.choice(VERBS_EN)} {rng.choice(NOUNS_EN)}"
    if rng.random() < 0.5:
        s += f" when `{ident(rng)}` is set to {rng.randint(0, 512)}"
    if rng.random() < 0.3:
        s += f"; see {url(rng)} for details"
    return s + "."


def paragraph(rng: random.Random) -> str:
    return "".join(sentence_ja(rng) if rng.random() < 0.6 else " " + sentence_en(rng) + " "
                   for _ in range(rng.randint(2, 6))).strip()


def shell(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(2, 6)):
        tool = rng.choice(TOOLS)
        args = " ".join(rng.choice([option(rng), f"{option(rng)}={rng.randint(1, 128)}", ident(rng) + ".jsonl.gz",
                                    f"'{url(rng)}'", f"${rng.choice(WORDS).upper()}_DIR"]) for _ in range(rng.randint(1, 4)))
        lines.append(f"$ {tool} {args}" + (f" | {rng.choice(['jq .', 'head -n 20', 'wc -l', 'sort -u'])}"
                                           if rng.random() < 0.3 else ""))
        if rng.random() < 0.4:
            lines.append(f"{rng.choice(['INFO', 'WARN', 'done'])}: {rng.randint(0, 99999)} records in "
                         f"{rng.random() * 90:.2f} s ({rng.randint(1, 400)} MB/s)")
    return "```sh\n" + "\n".join(lines) + "\n```"


def python_code(rng: random.Random) -> str:
    name, arg, other = ident(rng), rng.choice(WORDS), rng.choice(WORDS)
    body = [f"def {name}({arg}: list[int], {other}: int = {rng.randint(1, 64)}) -> dict[str, int]:",
            f'    """{rng.choice(NOUNS_JA)}を{rng.choice(VERBS_JA).removesuffix("します")}する。"""',
            "    counts = {}",
            f"    for i, x in enumerate({arg}):",
            f"        if x % {other} == {rng.randint(0, 7)}:",
            f"            counts[f\"{{i:04d}}\"] = counts.get(str(x), 0) + {rng.randint(1, 9)}",
            f"    return {{k: v for k, v in sorted(counts.items()) if v > {rng.randint(0, 3)}}}"]
    return "```python\n" + "\n".join(body) + "\n```"


def config(rng: random.Random) -> str:
    entries = {ident(rng): rng.choice([rng.randint(0, 10000), rng.random() < 0.5, url(rng), [rng.choice(WORDS)] * 2])
               for _ in range(rng.randint(3, 8))}
    if rng.random() < 0.5:
        return "```json\n" + json.dumps(entries, indent=2) + "\n```"
    return "```yaml\n" + "\n".join(f"{k}: {json.dumps(v)}" for k, v in entries.items()) + "\n```"


def table(rng: random.Random) -> str:
    columns = rng.sample(["名前", "name", "型", "type", "既定値", "default", "説明", "MB/s", "秒", "ratio"], rng.randint(3, 5))
    rows = [[rng.choice([ident(rng), str(rng.randint(0, 10 ** rng.randint(1, 6))), f"{rng.random():.3f}",
                         rng.choice(NOUNS_JA)]) for _ in columns] for _ in range(rng.randint(3, 10))]
    if rng.random() < 0.5:  # Markdown
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(c), *(len(r[i]) for r in rows)) + 2 for i, c in enumerate(columns)]  # aligned with spaces
    return "\n".join("".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [columns, *rows])


def man_options(rng: random.Random) -> str:
    lines = ["OPTIONS"]
    for _ in range(rng.randint(3, 8)):
        lines.append(f"       {option(rng)} {rng.choice(WORDS).upper()}")
        lines.append(f"              {sentence_en(rng)} {sentence_ja(rng) if rng.random() < 0.5 else ''}".rstrip())
        lines.append("")
    return "\n".join(lines).rstrip()


def html_text(rng: random.Random) -> str:
    """Text as it comes out of HTML: no-break spaces, ideographic spaces, tabs and runs of blanks."""
    cells = [rng.choice(NOUNS_JA) + "\u00a0" + str(rng.randint(1, 99)) for _ in range(rng.randint(2, 5))]
    return ("\t".join(cells) + "\n\u3000" + sentence_ja(rng) + "   \n" + "  ".join(rng.sample(WORDS, 4))
            + "\u2003" + url(rng))


BLOCKS: list[tuple[Callable[[random.Random], str], float]] = [
    (paragraph, 4), (shell, 2), (python_code, 1.5), (config, 1), (table, 1.5), (man_options, 1), (html_text, 1)]


def document(rng: random.Random) -> str:
    makers, weights = zip(*BLOCKS)
    title = f"# {rng.choice(TOOLS)} {rng.choice(['入門', 'リファレンス', 'FAQ', 'チュートリアル', 'release notes'])}"
    return "\n\n".join([title] + [rng.choices(makers, weights)[0](rng) for _ in range(rng.randint(4, 40))])


def write(out: Path, documents: int, files: int, seed: int = 18) -> list[Path]:
    rng = random.Random(seed)
    subset = out / "ja" / "tech_docs"
    subset.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        path = subset / f"train_{i}.jsonl.gz"
        with gzip.GzipFile(path, "wb", mtime=0) as f:  # mtime 0: the same bytes on every run
            for _ in range(documents // files):
                f.write((json.dumps({"text": document(rng)}, ensure_ascii=False) + "\n").encode("utf-8"))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--documents", type=int, default=1500)
    parser.add_argument("--files", type=int, default=2)
    args = parse_with_smoke(parser, {"documents": 20, "files": 1})
    paths = write(args.out, args.documents, args.files)
    print(f"{len(paths)} files, {sum(p.stat().st_size for p in paths) / 1e6:.1f} MB gz, in {args.out}")


if __name__ == "__main__":
    main()
