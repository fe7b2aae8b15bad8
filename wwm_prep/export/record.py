"""An export's record (its manifest) and how an export reaches its place: whole, or not at all.

An export is written under a temporary name beside its target and moved into place only once its files and
its record are complete, so a crash or Ctrl-C never leaves something that looks done. The record says what
was asked (format and options), what it came from (the source manifest's sha256) and what was made (rows,
tokens, each file's size and sha256). A rerun that asks the same of the same source finds the record and
its files and does nothing; one that asks something else is refused unless told to overwrite.

An MDS export owns a directory (its record is `DIR/export.json`, beside MDS's own `index.json`); a Megatron
export is a prefix whose files lie beside others (`PREFIX_input_ids.bin`, …, and `PREFIX_export.json`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wwm_prep import __version__
from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.files import is_stale_temp, read_json, sha256_file, temp_path, write_json_atomic

KIND = "export"
RECORD = "export.json"


@dataclass(frozen=True)
class ExportRecord:
    """What an export holds, where it came from and how it was asked for."""

    format: str
    options: dict[str, Any]
    source: dict[str, Any]  # dir, manifest_sha256, seq_len, rows, schema, tokenizer
    columns: dict[str, str]  # column → how the format stores it
    rows: int
    tokens: int  # rows × seq_len, padding included
    content_tokens: int  # inside pieces (the sum of doc_lengths)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → bytes, sha256
    wwm_prep_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, **vars(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExportRecord:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def differences(self, fmt: str, options: dict[str, Any], source_sha256: str) -> list[str]:
        """What a new request differs in from this export's, as `setting: old → new`."""
        old = {"format": self.format, **self.options, "source manifest": self.source.get("manifest_sha256")}
        new = {"format": fmt, **options, "source manifest": source_sha256}
        return [f"{k}: {_short(old.get(k))} → {_short(new.get(k))}" for k in sorted(old.keys() | new.keys())
                if old.get(k) != new.get(k)]


def _short(value: Any) -> str:
    text = str(value)
    return f"sha256 {text[:12]}…" if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else text


@dataclass(frozen=True)
class Target:
    """Where an export goes: a directory of its own (`own_dir`), or files named `PREFIX_<name>` beside others."""

    path: Path
    own_dir: bool

    @property
    def parent(self) -> Path:
        return self.path.parent

    def name_of(self, name: str) -> str:
        """The file name that `name` (`input_ids.bin`, `export.json`, …) has in place."""
        return name if self.own_dir else f"{self.path.name}_{name}"

    def final(self, name: str) -> Path:
        return (self.path if self.own_dir else self.parent) / self.name_of(name)

    @property
    def record_path(self) -> Path:
        return self.final(RECORD)

    def read_record(self) -> ExportRecord | None:
        """The record of an export in place, if there is a readable one."""
        data = read_json(self.record_path)
        if not isinstance(data, dict) or data.get("kind") != KIND:
            return None
        try:
            return ExportRecord.from_dict(data)
        except (KeyError, TypeError):
            return None

    def intact(self, record: ExportRecord) -> bool:
        """Every file the record lists is in place with the size it records (hashing them again would read the
        whole export back)."""
        return all(self.final(name).is_file() and self.final(name).stat().st_size == info["bytes"]
                   for name, info in record.files.items())

    def occupied(self, names: Iterable[str]) -> list[Path]:
        """What is already where the export would go: the directory (if not empty), or any of the prefix's files."""
        if self.own_dir:
            return [self.path] if self.path.is_file() or (self.path.is_dir() and any(self.path.iterdir())) else []
        return [p for p in (self.final(n) for n in (*names, RECORD)) if p.exists()]

    def staging(self) -> Path:
        """A fresh temporary directory beside the target, after removing those of dead runs of this host."""
        self.parent.mkdir(parents=True, exist_ok=True)
        for old in self.parent.glob(f".{self.path.name}.tmp-*"):
            if is_stale_temp(old):
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
        tmp = temp_path(self.path)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        return tmp

    def place(self, staging: Path, record: ExportRecord) -> None:
        """Record the staged files (size and sha256) and move them into place, the record last."""
        files = sorted(p for p in staging.iterdir() if p.is_file())
        named = {p.name.removeprefix("" if self.own_dir else f"{self.path.name}_"): p for p in files}
        record.files.update({name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                             for name, p in sorted(named.items())})
        if self.own_dir:
            write_json_atomic(staging / RECORD, record.to_dict())
            old = None
            if self.path.exists():  # overwriting: the old export is moved aside, then removed
                old = temp_path(self.path.with_name(self.path.name + ".old"))
                os.replace(self.path, old)
            os.replace(staging, self.path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
            return
        self.record_path.unlink(missing_ok=True)  # the old record never vouches for files half replaced
        for path in files:
            os.replace(path, self.parent / path.name)
        write_json_atomic(self.record_path, record.to_dict())
        shutil.rmtree(staging, ignore_errors=True)


def check_target(target: Target, names: Iterable[str], fmt: str, options: dict[str, Any], source_sha256: str,
                 overwrite: bool) -> ExportRecord | None:
    """The record of a complete export of the same request, if one is in place (nothing to do); else None once
    the target is free to write, or a WwmPrepError that says what is in the way."""
    record = target.read_record()
    if record is not None:
        changed = record.differences(fmt, options, source_sha256)
        if not changed and target.intact(record):
            return record
        if not changed or overwrite:
            return None  # our own export, damaged: made again; or another one, replaced as asked
        raise WwmPrepError(f"{target.path} holds an export made otherwise ({'; '.join(changed)}); give another "
                           "--out, or --overwrite to replace it")
    in_way = target.occupied(names)
    if in_way and not overwrite:
        what = in_way[0] if len(in_way) == 1 else f"{in_way[0]} and {len(in_way) - 1} more"
        raise WwmPrepError(f"{what} is in the way and holds no export record (left by an interrupted export, or "
                           "made otherwise); give another --out, or --overwrite to replace it")
    if in_way and not target.own_dir:
        for path in in_way:
            path.unlink()
    return None
