"""What a packing strategy is, and where strategies are found: every module of `pipeline.strategies` that defines
`STRATEGY`.

Adding a strategy is adding one module there: `pack`'s `--strategy` choices, its options (`--window`), the config's
checks and what a partition's report records all come from the registry. Strategy modules stay light to import
(no NumPy or Arrow at module level), since the command line reads them before any command runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from wwm_prep.core.errors import WwmPrepError
from wwm_prep.core.plugins import defined_in

if TYPE_CHECKING:
    from wwm_prep.pipeline.packing import Piece

#: A strategy's packer: pieces as they arrive (in batches) → rows of pieces whose sizes sum to at most `seq_len`.
#: Its keyword arguments are the strategy's options.
Packer = Callable[..., Iterator[list["Piece"]]]


@dataclass(frozen=True)
class StrategyOption:
    """An integer option of one strategy, `--NAME` on the command line."""

    name: str  # as the command line spells it, without the dashes; also the packer's keyword (dashes as _)
    help: str
    default: int
    minimum: int = 1

    @property
    def key(self) -> str:
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class Strategy:
    """A packing strategy: its name, a line of help, its packer and the options the packer takes."""

    name: str
    help: str
    pack: Packer
    options: tuple[StrategyOption, ...] = ()

    def settle(self, given: Mapping[str, Any]) -> dict[str, int]:
        """Every option of this strategy, as given or its default, checked; options of others are dropped."""
        settled = {}
        for option in self.options:
            value = given.get(option.key)
            value = option.default if value is None else int(value)
            if value < option.minimum:
                raise WwmPrepError(f"--{option.name} must be at least {option.minimum}, not {value}")
            settled[option.key] = value
        return settled

    def rows(self, batches: Iterable[list[Piece]], seq_len: int, options: Mapping[str, int]) -> Iterator[list[Piece]]:
        return self.pack(batches, seq_len, **options)


@cache
def strategies() -> dict[str, Strategy]:
    """Every strategy, by name (in name order)."""
    from wwm_prep.pipeline import strategies as package

    return defined_in(package, "STRATEGY", Strategy)


def strategy(name: str) -> Strategy:
    """The strategy called `name`, or a one-line WwmPrepError naming those there are."""
    found = strategies()
    if name not in found:
        raise WwmPrepError(f"--strategy must be one of {', '.join(found)}, not {name!r}")
    return found[name]


def every_option() -> dict[str, StrategyOption]:
    """The options of every strategy by key (`window`), for the command line: each belongs to one strategy."""
    return {option.key: option for s in strategies().values() for option in s.options}


def owner(key: str) -> Strategy:
    """The strategy an option belongs to."""
    return next(s for s in strategies().values() if any(o.key == key for o in s.options))
