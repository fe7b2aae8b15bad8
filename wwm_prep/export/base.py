"""What an export format is, and where formats are found: every module of `export.formats` that defines `FORMAT`.

Adding a format is adding one module there. The command line takes its name, help and options from the
registry, so format modules stay light to import (their libraries, NumPy and Arrow are imported when they write).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wwm_prep.core.plugins import defined_in

if TYPE_CHECKING:
    from wwm_prep.export.source import Source, Tally


@dataclass(frozen=True)
class Option:
    """An option of one format, `--NAME` on the command line; `None` given means `default`."""

    name: str  # as the command line spells it, without the dashes (`shard-size`)
    help: str
    default: str
    choices: tuple[str, ...] | None = None
    recorded: Callable[[str], Any] = str  # the value as the export's record keeps (and a rerun compares) it

    @property
    def key(self) -> str:
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class ExportFormat:
    """A format: its name, what it writes (a directory of its own, or files under a prefix), the library it needs,
    its options and its writer."""

    name: str
    help: str
    owns_directory: bool  # a directory the export is made whole in; else files PREFIX_<name> beside others
    require: Callable[[], Any]  # the format's library, or a one-line WwmPrepError saying how to install it
    write: Callable[[Source, Path, dict[str, Any], Tally | None], dict[str, str]]
    options: tuple[Option, ...] = ()
    file_names: Callable[[], list[str]] = list  # names under the prefix (formats that own no directory)

    def recorded_options(self, given: Mapping[str, str | None]) -> dict[str, Any]:
        """The options as the record keeps them, by their Python names (`shard_size`): every option of the format,
        its default where none was given."""
        return {o.key: o.recorded(given.get(o.key) or o.default) for o in self.options}


@cache
def formats() -> dict[str, ExportFormat]:
    """Every format, by name."""
    from wwm_prep.export import formats as package

    return defined_in(package, "FORMAT", ExportFormat)
