"""Manifests as typed objects: the one place that writes `manifest.json` and reads it back.

Each stage leaves a manifest beside its shards (what was made, from what, with which configuration). Readers
ask for a kind and get a dataclass, or a one-line error that names the file and the stage that writes it;
nobody digs through dicts. Every manifest read is checked against `schemas/manifest.json` first, so a
hand-edited or foreign file is refused with the field that is wrong, not with a KeyError later.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from wwm_prep import __version__
from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.claims import live_claims
from wwm_prep.core.files import read_json, write_json_atomic
from wwm_prep.core.resources import resource
from wwm_prep.core.storage import location, remote_errors, sha256_of

MANIFEST = "manifest.json"
_JSON_TYPES = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
               "boolean": bool, "null": type(None)}


@cache
def _spec() -> dict[str, Any]:
    return read_json(resource("schemas", "manifest.json"))


def _fields_of(ref: str) -> list[dict[str, Any]]:
    """The fields of `kind.field.field…` in the schema (a sequence manifest repeats its documents' config)."""
    kind, *names = ref.split(".")
    fields = _spec()["kinds"][kind]["fields"]
    for name in names:
        fields = next(f for f in fields if f["name"] == name)["fields"]
    return fields


def check_fields(data: Any, fields: list[dict[str, Any]], where: str) -> str | None:
    """The first field of `data` that is missing or of the wrong type, as `config.tokenizer.sha256`."""
    for f in fields:
        name = f"{where}{f['name']}"
        if f["name"] not in data:
            if f.get("optional"):
                continue
            return f"{name} (missing)"
        value = data[f["name"]]
        types = tuple(_JSON_TYPES[t] for t in f["type"].split("|"))
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            return f"{name} (not {f['type']})"
        nested = _fields_of(f["same_as"]) if "same_as" in f else f.get("fields")
        if nested and (bad := check_fields(value, nested, f"{name}.")):
            return bad
        for key, item in value.items() if "values" in f else ():
            if not isinstance(item, dict) or (bad := check_fields(item, f["values"], f"{name}.{key}.")):
                return bad or f"{name}.{key} (not object)"
    return None


@dataclass(frozen=True)
class TokenizerRecord:
    """The tokenizer shards were made with; `path` and `vocab_size` are left out where a stage does not record them."""

    sha256: str
    special_ids: dict[str, int]
    path: str | None = None
    vocab_size: int | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TokenizerRecord:
        return cls(d["sha256"], {k: int(v) for k, v in d.get("special_ids", {}).items()}, d.get("path"),
                   d.get("vocab_size"))

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


def schema_ref(name: str, version: int) -> dict[str, Any]:
    return {"name": name, "version": version}


@dataclass(frozen=True)
class DocumentConfig:
    """What document shards depend on: their schema, the dictionary and the tokenizer."""

    schema: dict[str, Any]
    dictionary: dict[str, Any]
    tokenizer: TokenizerRecord
    stage: str = "segment"
    split_lines: bool = False  # vibrato read one line at a time (absent from manifests written before it existed)
    text_column: str = "text"  # where the texts were taken from; written only when it is another, so outputs of
    # the default stay byte for byte what they were

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DocumentConfig:
        return cls(d["schema"], d["dictionary"], TokenizerRecord.from_dict(d["tokenizer"]), d["stage"],
                   bool(d.get("split_lines", False)), str(d.get("text_column", "text")))

    def to_dict(self) -> dict[str, Any]:
        column = {"text_column": self.text_column} if self.text_column != "text" else {}
        return {"stage": self.stage, "schema": self.schema, "dictionary": self.dictionary,
                "tokenizer": self.tokenizer.to_dict(), "split_lines": self.split_lines, **column}

    def same_output(self, other: DocumentConfig) -> bool:
        return not self.differences(other)

    def differences(self, new: DocumentConfig) -> list[str]:
        """What the shards depend on that differs, as `setting: old → new`. Paths may differ between machines;
        the hashes, settings and schema decide."""

        def facts(c: DocumentConfig) -> dict[str, tuple[Any, str]]:  # setting -> (what decides, what to show)
            d, t = c.dictionary, c.tokenizer
            return {"dictionary": (d["sha256"], f"{d.get('name', '?')} (sha256 {d['sha256'][:12]}…)"),
                    "tokenizer": (t.sha256, f"{Path(t.path or '?').name} (sha256 {t.sha256[:12]}…)"),
                    **{name: (value, str(value)) for name, value in (
                        ("ignore_space", d["ignore_space"]), ("max_grouping_len", d["max_grouping_len"]),
                        ("split_lines", c.split_lines), ("text_column", c.text_column), ("schema", c.schema),
                        ("stage", c.stage))}}

        old, now = facts(self), facts(new)
        return [f"{name}: {old[name][1]} → {now[name][1]}" for name in old if old[name][0] != now[name][0]]


M = TypeVar("M", bound="Manifest")


class Manifest(ABC):
    """What both kinds share: their kind, the stage that writes them, reading and writing."""

    kind: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_dict(cls: type[M], d: dict[str, Any]) -> M: ...

    @abstractmethod
    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    def stage(cls) -> str:
        return _spec()["kinds"][cls.kind]["stage"]

    @classmethod
    def read(cls: type[M], directory: Path) -> M:
        """The manifest of `directory`, or a WwmPrepError that says what is wrong and which command makes one."""
        directory = location(directory)
        path = directory / MANIFEST
        made_by = f"give a directory written by `wwm-prep {cls.stage()}`"
        with remote_errors(directory):
            if not path.is_file():
                raise WwmPrepError(_why_no_manifest(directory, made_by))
        data = read_json(path)
        if not isinstance(data, dict):
            raise WwmPrepError(f"{path} cannot be read as JSON; {made_by}")
        if data.get("kind") != cls.kind:
            raise WwmPrepError(f"{path} is not a {cls.kind[:-1]} manifest; {made_by}")
        bad = check_fields(data, _spec()["kinds"][cls.kind]["fields"], "")
        if bad:
            raise WwmPrepError(f"{path} lacks {bad}; re-create it with this version of `wwm-prep {cls.stage()}`")
        return cls.from_dict(data)

    @classmethod
    def read_if_any(cls: type[M], directory: Path) -> M | None:
        """The manifest where a valid one is there, else None (for readers that can do without it)."""
        try:
            return cls.read(directory)
        except WwmPrepError:
            return None

    def write(self, directory: Path) -> None:
        write_json_atomic(Path(directory) / MANIFEST, self.to_dict())


def _why_no_manifest(directory: Any, made_by: str) -> str:
    """The likeliest reason a directory has no manifest, and what to run instead."""
    if not directory.exists():
        return f"{directory} does not exist; {made_by}"
    if not directory.is_dir():
        return f"{directory} is a file, not a directory; {made_by}"
    if (directory / "ja").is_dir() or any(p.name.endswith((".jsonl", ".jsonl.gz", ".jsonl.zst"))
                                          for p in directory.iterdir()):
        return (f"{directory} holds corpus files, not shards: run `wwm-prep segment {directory} --out DOCS` first, "
                f"or `wwm-prep prepare {directory} --out OUT --seq-len 8192` for both steps")
    if isinstance(directory, Path) and (holders := live_claims(directory)):
        return (f"{directory} is still being written by {holders[0].describe()}: its manifest is written when its "
                f"last unit is done; wait for that run (and any others on it) to finish")
    return f"{directory}: no {MANIFEST} here; {made_by}"


def manifest_sha256(directory: Path) -> str:
    return sha256_of(location(directory) / MANIFEST)


@dataclass(frozen=True)
class DocumentManifest(Manifest):
    """`segment`'s manifest: one report per unit (input file → shard), their totals, and what is not done."""

    kind: ClassVar[str] = "documents"
    config: DocumentConfig
    inputs: list[str]
    units: dict[str, dict[str, Any]]  # unit name → its report (source, subset, shard, sha256, counts, …)
    totals: dict[str, int]
    failed: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    wwm_prep_version: str = __version__
    done_here: frozenset[str] | None = None  # the units the run that returns it did itself (not written)

    @property
    def complete(self) -> bool:
        return not self.missing

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DocumentManifest:
        return cls(DocumentConfig.from_dict(d["config"]), d["inputs"], d["units"], d["totals"], d["failed"],
                   d["missing"], d["wwm_prep_version"])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "wwm_prep_version": self.wwm_prep_version, "config": self.config.to_dict(),
                "inputs": self.inputs, "units": self.units, "totals": self.totals, "failed": self.failed,
                "missing": self.missing, "complete": self.complete}

    def shard_rows(self) -> dict[str, int]:
        """Rows of each shard by file name."""
        return {u["shard"]: int(u["documents"]) for u in self.units.values()}


@dataclass(frozen=True)
class SequenceConfig:
    """What sequence shards depend on, beyond their documents: the packing options as they were applied."""

    schema: dict[str, Any]
    seq_len: int
    strategy: str
    window: int | None
    seed: int
    subset_weights: dict[str, float]
    shard_rows: int
    tokenizer: TokenizerRecord
    sentence_ends: dict[str, Any]
    partitions: int = 1  # packed independently, each from its own document shards (absent before they were)
    length_weights: list[list[Any]] = field(default_factory=list)  # [[bound, weight], …]; absent before them
    stage: str = "pack"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SequenceConfig:
        return cls(**{**d, "tokenizer": TokenizerRecord.from_dict(d["tokenizer"])})

    def to_dict(self) -> dict[str, Any]:
        return {**vars(self), "tokenizer": self.tokenizer.to_dict()}


@dataclass(frozen=True)
class SequenceManifest(Manifest):
    """`pack`'s manifest: its configuration, the documents it packed, totals per subset, and the shards in order."""

    kind: ClassVar[str] = "sequences"
    config: SequenceConfig
    documents: dict[str, Any]  # dir, manifest_sha256, and the document manifest's config, totals and failed
    totals: dict[str, Any]
    subsets: dict[str, dict[str, Any]]
    shards: list[dict[str, Any]]  # file, rows, pad_tokens, sha256, partition
    wwm_prep_version: str = __version__

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SequenceManifest:
        return cls(SequenceConfig.from_dict(d["config"]), d["documents"], d["totals"], d["subsets"], d["shards"],
                   d["wwm_prep_version"])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "wwm_prep_version": self.wwm_prep_version, "config": self.config.to_dict(),
                "documents": self.documents, "totals": self.totals, "subsets": self.subsets, "shards": self.shards}

    @property
    def document_config(self) -> DocumentConfig:
        return DocumentConfig.from_dict(self.documents["config"])

    @property
    def tokenizer(self) -> TokenizerRecord:
        """The data's tokenizer with all that segment and pack recorded of it (pack's special ids win)."""
        docs = self.document_config.tokenizer
        return replace(docs, sha256=self.config.tokenizer.sha256 or docs.sha256,
                       special_ids={**docs.special_ids, **self.config.tokenizer.special_ids})

    def shard_rows(self) -> dict[str, int]:
        """Rows of each shard by file name."""
        return {s["file"]: int(s["rows"]) for s in self.shards}


KINDS: dict[str, type[Manifest]] = {m.kind: m for m in (DocumentManifest, SequenceManifest)}
