"""Masking-rate schedules: the rate of a batch as a function of the optimizer step it is used for.

A collator with a schedule works out each batch's step itself, from the step its epoch started at and the batches
made since (see ``WholeWordMaskCollator.set_schedule``), so the rate is a function of the batch's place in the
stream, like its masks, and DataLoader workers follow the schedule without being told anything at run time.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

Schedule = Sequence[tuple[int, float]] | Callable[[int], float]


def check_rate(rate: float) -> float:
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"a masking rate must lie in [0, 1], not {rate}")
    return rate


class RateSchedule:
    """A rate by step: piecewise constant from ``[(first step, rate), …]`` (starting at step 0, steps
    increasing), or any function of the step.

    ``[(0, 0.30), (100_000, 0.15)]`` masks 30 % for steps 0–99,999 and 15 % from then on. A function must pickle
    (a module-level function, not a lambda) where DataLoader workers are started by spawning, as on macOS and
    Windows.
    """

    def __init__(self, schedule: Schedule) -> None:
        if callable(schedule):
            self.function: Callable[[int], float] | None = schedule
            self.steps: list[int] = []
            self.rates: list[float] = []
            return
        self.function = None
        pairs = [(int(step), check_rate(rate)) for step, rate in schedule]
        self.steps = [step for step, _ in pairs]
        self.rates = [rate for _, rate in pairs]
        if not self.steps or self.steps[0] != 0 or any(a >= b for a, b in zip(self.steps, self.steps[1:])):
            raise ValueError(f"a schedule's steps must start at 0 and increase, not {self.steps}")

    def __call__(self, step: int) -> float:
        if self.function is not None:
            return check_rate(self.function(step))
        return self.rates[bisect.bisect_right(self.steps, step) - 1]

    def __repr__(self) -> str:
        what = self.function if self.function is not None else list(zip(self.steps, self.rates))
        return f"{type(self).__name__}({what!r})"
