"""Whose an output directory is: one stage, one set of inputs and one configuration, recorded in `output.json`
before any work. The rule is written once here for `segment` and `pack`:

- a rerun of the same stage on the same inputs (or more of them) with the same configuration resumes;
- another stage, fewer inputs or another configuration is refused before any work, saying what differs;
- `--overwrite` first removes everything wwm-prep made there, unless another live run is writing to it;
- a non-empty directory holding anything wwm-prep does not write is refused, and never emptied.

A refused run leaves the directory exactly as it was, and an error creates no directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from wwm_prep import __version__
from wwm_prep.core.claims import CLAIMS_DIR, live_claims
from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.files import read_json, write_json_atomic
from wwm_prep.core.manifest import KINDS, MANIFEST, check_fields
from wwm_prep.core.resources import resource
from wwm_prep.core.storage import AnyPath, Output, is_url
from wwm_prep.pipeline.units import lock

OWNER = "output.json"
# What segment and pack write in an output directory: a directory that holds anything else is not wwm-prep's.
_OWN = re.compile(r"(output|manifest|config)\.json|units|claims|rejects|index|\.manifest\.lock|[^.].*\.arrow|"
                  r"\..+\.tmp-.+")
_DIRS = ("units", "rejects", "index", CLAIMS_DIR)
Differences = Callable[[dict[str, Any], dict[str, Any]], list[str]]


@cache
def _fields() -> list[dict[str, Any]]:
    return read_json(resource("schemas", "output.json"))["fields"]


@dataclass(frozen=True)
class Identity:
    """What makes an output one run's: its stage, its inputs (recorded locations) and its configuration."""

    stage: str
    inputs: tuple[str, ...]
    config: dict[str, Any] | None  # None: not known (a directory written before output.json was)

    @classmethod
    def of(cls, stage: str, inputs: list[str], config: dict[str, Any]) -> Identity:
        return cls(stage, tuple(sorted(set(inputs))), json.loads(json.dumps(config)))  # as it reads back

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "inputs": list(self.inputs), "config": self.config,
                "wwm_prep_version": __version__}


def plain_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`setting: old → new` for each setting whose value differs."""
    return [f"{name}: {_show(old.get(name))} → {_show(new.get(name))}" for name in dict.fromkeys([*old, *new])
            if old.get(name) != new.get(name)]


def _show(value: Any) -> str:
    return "none" if value is None else json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else str(value)


def claim_output(target: AnyPath | str, staging: Path, mine: Identity, *, overwrite: bool = False,
                 claim_timeout: float, differences: Differences = plain_differences) -> Output:
    """The output directory, made this run's (see the module's rule), or a WwmPrepError before anything changes."""
    try:
        out = Output(target, staging=staging)
        refusal = _refusal(out, mine, overwrite, claim_timeout, differences)
        if refusal:
            raise WwmPrepError(refusal)
        out.local.mkdir(parents=True, exist_ok=True)
        with lock(out):  # a run that started meanwhile may have claimed it first
            if refusal := _refusal(out, mine, overwrite, claim_timeout, differences):
                raise WwmPrepError(refusal)
            _take(out, mine, overwrite)
    except OSError as exc:
        raise WwmPrepError(f"cannot write to {target}: {exc.strerror or exc}") from exc
    return out


def _refusal(out: Output, mine: Identity, overwrite: bool, claim_timeout: float,
             differences: Differences) -> str | None:
    """Why this run may not use `out`, or None."""
    if not out.remote and out.local.exists() and not out.local.is_dir():
        return f"--out {out} is a file, not a directory"
    names = out.names()
    foreign = [name for name in names if not _OWN.fullmatch(name)]
    if MANIFEST in names and (out.read_json(MANIFEST) or {}).get("kind") not in KINDS:
        foreign.insert(0, MANIFEST)
    if foreign:
        return (f"{out} holds files wwm-prep did not write ({', '.join(foreign[:3])}"
                f"{f' and {len(foreign) - 3} more' if len(foreign) > 3 else ''}); give a new or empty directory "
                "as --out" + (" (--overwrite never empties a directory wwm-prep did not write)" if overwrite else ""))
    others = live_claims(out.local, claim_timeout)
    if overwrite:
        if others:
            return (f"--overwrite would remove {out} from under {others[0].describe()}, which is writing to it: "
                    "wait for it to finish, or stop it first")
        return None
    previous = _previous(out)
    if previous is None:
        return None
    if previous.stage != mine.stage:
        return (f"{out} holds the output of `wwm-prep {previous.stage}`, not of {mine.stage} (stage: {previous.stage} "
                f"→ {mine.stage}); choose another --out, or pass --overwrite to remove it and start again")
    settings = differences(previous.config, mine.config) if previous.config is not None else []
    inputs = []
    if dropped := sorted(set(previous.inputs) - set(mine.inputs)):
        inputs = [f"inputs: {_count(previous.inputs)} → {_count(mine.inputs)}; not among this run's: "
                  f"{dropped[0]}{f' and {len(dropped) - 1} more' if len(dropped) > 1 else ''}"]
    elif previous.inputs and set(mine.inputs) > set(previous.inputs) and others:
        inputs = [f"inputs: {_count(previous.inputs)} → {_count(mine.inputs)}, while {others[0].describe()} is "
                  "writing the fewer"]
    if not settings and not inputs:
        return None
    made = " and ".join(what for what, found in (("from other inputs", inputs), ("with another configuration",
                                                                                    settings)) if found)
    return (f"{out} was made {made} ({'; '.join(inputs + settings)}); choose another --out, or pass --overwrite to "
            "remove what is there and start again")


def _count(inputs: tuple[str, ...]) -> str:
    if len(inputs) == 1:
        return inputs[0]
    return f"{len(inputs)} files under {os.path.commonpath(inputs) if not any(map(is_url, inputs)) else '…'}"


def _previous(out: Output) -> Identity | None:
    """Whose the output is: its `output.json`, else what an earlier version's files say of it (None: nothing)."""
    data = out.read_json(OWNER)
    if isinstance(data, dict) and check_fields(data, _fields(), "") is None:
        return Identity(data["stage"], tuple(data["inputs"]), data["config"])
    manifest = out.read_json(MANIFEST) or {}
    if manifest.get("kind") == "documents":
        return Identity("segment", (), manifest["config"])
    if manifest.get("kind") == "sequences":
        return Identity("pack", (), None)
    if (config := out.read_json("config.json")) is not None:
        return Identity("segment", (), config)
    if any(name.startswith("partition-") for name in out.names("units")):
        return Identity("pack", (), None)
    return None


def _take(out: Output, mine: Identity, overwrite: bool) -> None:
    """Make the output this run's: with `overwrite`, first remove all that wwm-prep made there."""
    previous = _previous(out)
    if overwrite and (gone := _clear(out)):
        print(f"--overwrite: removed {gone} file(s) an earlier {previous.stage if previous else 'run'} made in "
              f"{out}", file=sys.stderr)
    elif previous is not None and set(mine.inputs) > set(previous.inputs) and previous.inputs:
        added = len(set(mine.inputs) - set(previous.inputs))
        print(f"adding {added} input file(s) to {out}, which held {len(previous.inputs)}: its manifest will cover "
              "them all", file=sys.stderr)
    write_json_atomic(out.local / OWNER, mine.to_dict())
    out.publish(OWNER)


def _clear(out: Output) -> int:
    """Remove what wwm-prep made in `out` (all of it is, or the run was refused): returns how many files."""
    gone = 0
    for name in out.names():
        if name == ".manifest.lock":  # held by this run, which is about to write its own
            continue
        inner = out.names(name) if name in _DIRS else []
        for file in inner:
            out.remove(f"{name}/{file}")
        if name in _DIRS:
            shutil.rmtree(out.local / name, ignore_errors=True)
        else:
            out.remove(name)
        gone += len(inner) or 1
    return gone
