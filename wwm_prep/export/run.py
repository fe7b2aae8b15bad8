"""An export from start to end: read the source, ask the format's writer, record and place the result.

The formats' libraries are imported only for the format asked for.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.storage import AnyPath
from wwm_prep.export.base import formats
from wwm_prep.export.record import ExportRecord, Target, check_target
from wwm_prep.export.source import Tally, open_source


@dataclass(frozen=True)
class Outcome:
    """What an export did: its record, and whether it found the same export already complete."""

    record: ExportRecord
    target: Target
    already_done: bool


def run_export(seq_dir: AnyPath | str, out: Path, fmt: str, options: dict[str, Any] | None = None, *,
               overwrite: bool = False) -> Outcome:
    """Export the sequence shards of `seq_dir` to `out` (an MDS directory, or a Megatron prefix)."""
    export_format = formats()[fmt]
    options = export_format.recorded_options(options or {})
    source = open_source(seq_dir)
    export_format.require()  # a missing extra is said before anything else is done
    own_dir = export_format.owns_directory
    target = Target(Path(out).absolute(), own_dir)
    done = check_target(target, export_format.file_names(), fmt, options, source.manifest_sha256, overwrite)
    if done is not None:
        return Outcome(done, target, True)
    try:
        staging = target.staging()
    except OSError as exc:  # a read-only or missing parent
        raise WwmPrepError(f"cannot write beside {target.path}: {exc.strerror or exc}") from exc
    try:
        written_to = staging if own_dir else staging / target.path.name
        tally = Tally()
        stored = export_format.write(source, written_to, options, tally)
        if tally.rows != source.rows:
            raise WwmPrepError(f"{source.shards.dir}: the shards hold {tally.rows:,} rows, their manifest "
                               f"{source.rows:,}; re-run `wwm-prep pack`")
        record = ExportRecord(fmt, options, source.record(), stored, tally.rows, tally.rows * source.seq_len,
                              tally.content_tokens)
        target.place(staging, record)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):  # a full disk, a file gone: one line, and nothing left behind
            raise WwmPrepError(f"export to {target.path} failed: {exc.strerror or exc}") from exc
        raise
    return Outcome(record, target, False)

