"""`wwm-prep export` as a command: mistakes answered in one line with exit 2, a rerun that does nothing, an
export that reaches its place whole or not at all. On the bundled sample, with the Megatron format (the
MDS writer's own tests are in test_mds.py, in the environment that has mosaicml-streaming)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import run
from wwm_prep.core.files import HOST


def _one_line_error(code: int, output: str, *needles: str) -> None:
    assert code == 2 and "Traceback" not in output and len(output.strip().splitlines()) == 1, output
    for needle in needles:
        assert needle in output, output


def test_what_is_not_sequence_shards_is_refused(tmp_path: Path, sample_sequences: dict[str, Path]) -> None:
    _one_line_error(*run("export", str(tmp_path / "absent"), "--format", "megatron", "--out", str(tmp_path / "a")),
                    "does not exist")
    _one_line_error(*run("export", str(sample_sequences["documents"]), "--format", "megatron", "--out",
                         str(tmp_path / "a")), "holds document shards", "wwm-prep pack")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "x.arrow").write_bytes(b"not arrow")
    _one_line_error(*run("export", str(bare), "--format", "megatron", "--out", str(tmp_path / "a")), "not an Arrow shard")
    unlisted = tmp_path / "unlisted"
    unlisted.mkdir()
    for path in sample_sequences["sequences"].glob("*.arrow"):
        (unlisted / path.name).write_bytes(path.read_bytes())
    _one_line_error(*run("export", str(unlisted), "--format", "megatron", "--out", str(tmp_path / "a")),
                    "manifest.json")
    assert not list(tmp_path.glob("a*")) and not list(tmp_path.glob(".a*"))


def test_a_missing_extra_is_one_line(tmp_path: Path, sample_sequences: dict[str, Path],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("streaming", "megatron", "megatron.core", "megatron.core.datasets"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed: importing it fails
    _one_line_error(*run("export", str(sample_sequences["sequences"]), "--format", "mds", "--out", str(tmp_path / "m")),
                    "pip install 'wwm-prep[mds]'")
    _one_line_error(*run("export", str(sample_sequences["sequences"]), "--format", "megatron", "--out",
                         str(tmp_path / "g")), "pip install 'wwm-prep[megatron]'")
    assert list(tmp_path.iterdir()) == []


def test_mds_options_belong_to_mds(tmp_path: Path, sample_sequences: dict[str, Path]) -> None:
    code, output = run("export", str(sample_sequences["sequences"]), "--format", "megatron", "--out",
                       str(tmp_path / "g"), "--compression", "zstd")
    assert code == 2 and "--compression is not an option of --format megatron" in output


def test_a_module_in_export_formats_is_a_format(tmp_path: Path, sample_sequences: dict[str, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a format is adding its module: the registry finds it, and an export runs through it."""
    from wwm_prep.export import base, formats
    from wwm_prep.export.run import run_export

    (tmp_path / "formats").mkdir()
    (tmp_path / "formats" / "rowcount.py").write_text(
        "from wwm_prep.export.base import ExportFormat, Option\n"
        "def write(source, out, opts, tally=None):\n"
        "    rows = sum(batch.num_rows for batch in source.batches(tally))\n"
        "    (out / 'rows.txt').write_text(f'{opts[\"unit\"]} {rows}')\n"
        "    return {}\n"
        "FORMAT = ExportFormat('rowcount', 'row counts', True, lambda: None, write,\n"
        "                      (Option('unit', 'what to count', 'rows'),))\n")
    monkeypatch.setattr(formats, "__path__", [*formats.__path__, str(tmp_path / "formats")])
    base.formats.cache_clear()
    try:
        assert list(base.formats()) == ["mds", "megatron", "rowcount"]
        outcome = run_export(sample_sequences["sequences"], tmp_path / "counted", "rowcount", {})
    finally:
        base.formats.cache_clear()
    assert outcome.record.options == {"unit": "rows"}
    assert (tmp_path / "counted" / "rows.txt").read_text() == f"rows {outcome.record.rows}"


# ------------------------------------------------------------------------------------- reruns and placement (Megatron)

@pytest.fixture()
def megatron() -> None:
    pytest.importorskip("megatron.core.datasets.indexed_dataset")


def _export(seq: Path, prefix: Path, *more: str) -> tuple[int, str]:
    return run("export", str(seq), "--format", "megatron", "--out", str(prefix), *more)


def _files(prefix: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in prefix.parent.iterdir()}


def test_a_rerun_does_nothing_and_a_damaged_export_is_made_again(tmp_path: Path, sample_sequences: dict[str, Path],
                                                                 megatron: None) -> None:
    prefix = tmp_path / "out" / "ja"
    code, output = _export(sample_sequences["sequences"], prefix)
    assert code == 0 and "rows" in output, output
    before = _files(prefix)
    assert sorted(before) == sorted(f"ja_{n}" for n in ("input_ids.bin", "input_ids.idx", "word_starts.bin",
                                                         "word_starts.idx", "doc_lengths.bin", "doc_lengths.idx",
                                                         "export.json"))
    code, output = _export(sample_sequences["sequences"], prefix)
    assert code == 0 and "already complete" in output and "nothing to do" in output
    assert _files(prefix) == before
    bin_path = tmp_path / "out" / "ja_input_ids.bin"
    bin_path.write_bytes(bin_path.read_bytes()[:-4])  # damaged: the record's size no longer holds
    code, output = _export(sample_sequences["sequences"], prefix)
    assert code == 0 and "already complete" not in output
    record = json.loads((tmp_path / "out" / "ja_export.json").read_text())
    assert bin_path.stat().st_size == record["files"]["input_ids.bin"]["bytes"]


def test_another_source_or_a_stranger_file_is_refused_unless_overwrite(tmp_path: Path,
                                                                       sample_sequences: dict[str, Path],
                                                                       megatron: None) -> None:
    prefix = tmp_path / "ja"
    assert _export(sample_sequences["sequences"], prefix)[0] == 0
    _one_line_error(*_export(sample_sequences["other"], prefix), "made otherwise", "source manifest", "--overwrite")
    code, output = _export(sample_sequences["other"], prefix, "--overwrite")
    assert code == 0, output
    from wwm_prep.core.manifest import manifest_sha256

    record = json.loads((tmp_path / "ja_export.json").read_text())
    assert record["source"]["manifest_sha256"] == manifest_sha256(sample_sequences["other"])

    stranger = tmp_path / "b_word_starts.idx"
    stranger.write_bytes(b"someone else's")
    _one_line_error(*_export(sample_sequences["sequences"], tmp_path / "b"), "in the way", "holds no export record")
    assert stranger.read_bytes() == b"someone else's"
    assert _export(sample_sequences["sequences"], tmp_path / "b", "--overwrite")[0] == 0


def test_a_failed_export_leaves_nothing_and_a_dead_runs_leftovers_are_cleared(
        tmp_path: Path, sample_sequences: dict[str, Path], megatron: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from wwm_prep.core import shards as writer

    dead = tmp_path / f".ja.tmp-{HOST}-{2**22 + 1}"  # a pid above any pid_max: a run that has died
    dead.mkdir()
    (dead / "ja_input_ids.bin").write_bytes(b"half")
    calls = {"n": 0}
    real = writer.ListColumn.of

    def failing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] > 3:  # after the first batch's three columns: files half written
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    big = tmp_path / "many-batches"
    from wwm_prep.pipeline.pack import PackConfig, run_pack

    run_pack(sample_sequences["documents"], big, PackConfig(seq_len=256, shard_rows=16), quiet=True)
    monkeypatch.setattr(writer.ListColumn, "of", failing)  # pack reads its documents with it too: set after
    _one_line_error(*_export(big, tmp_path / "ja"), "failed: No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many-batches"]  # nothing placed, no staging left
    monkeypatch.setattr(writer.ListColumn, "of", real)
    assert _export(big, tmp_path / "ja")[0] == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert os.path.exists(tmp_path / "ja_export.json")
