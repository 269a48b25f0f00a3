"""The one source of step boundaries: a regular grid of time steps."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from v2ghub.units import hours


@dataclass(frozen=True)
class TimeGrid:
    """``length`` steps of ``step`` each, the first starting at ``start`` (timezone-aware).

    Step ``k`` covers ``[start + k*step, start + (k+1)*step)``.
    """

    start: datetime
    step: timedelta
    length: int

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError(f"TimeGrid start must be timezone-aware, got {self.start!r}")
        if self.step <= timedelta(0):
            raise ValueError(f"TimeGrid step must be positive, got {self.step}")
        if self.step.total_seconds() != int(self.step.total_seconds()):
            raise ValueError(f"TimeGrid step must be whole seconds, got {self.step}")
        if self.length < 0:
            raise ValueError(f"TimeGrid length must be >= 0, got {self.length}")

    @property
    def dt_h(self) -> float:
        """Step length in hours."""
        return hours(self.step)

    @property
    def step_s(self) -> int:
        """Step length in whole seconds."""
        return int(self.step.total_seconds())

    @property
    def start_s(self) -> int:
        """Start as UTC epoch seconds."""
        return int(self.start.timestamp())

    @property
    def end(self) -> datetime:
        """The end of the last step."""
        return self.start + self.step * self.length

    def time_at(self, index: int) -> datetime:
        """Start of step ``index`` (may be past the end, for horizons that extend the grid)."""
        return self.start + self.step * index

    def step_starts(self) -> list[datetime]:
        """Start of every step, in the start's time zone."""
        return [self.time_at(k) for k in range(self.length)]

    def sub_grid(self, first: int, length: int) -> TimeGrid:
        """The grid of ``length`` steps starting at step ``first`` of this one."""
        return TimeGrid(start=self.time_at(first), step=self.step, length=length)

    def first_full_step(self, epoch_s: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """First step that starts at or after each instant (ceil), as step indices."""
        offset = epoch_s - self.start_s
        return np.asarray(-((-offset) // self.step_s), dtype=np.int64)

    def last_boundary(self, epoch_s: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Index of the last step boundary at or before each instant (floor)."""
        offset = epoch_s - self.start_s
        return np.asarray(offset // self.step_s, dtype=np.int64)

    def plugged_steps(
        self, arrival_s: npt.NDArray[np.int64], departure_s: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Steps a vehicle is plugged for: ``[first, end)``, whole steps only.

        A vehicle counts as plugged in a step only if it is plugged for the whole step, so
        ``first = ceil(arrival)`` and ``end = floor(departure)`` on the grid. ``end`` may
        equal ``first`` (a session shorter than a step gets no step).
        """
        first = self.first_full_step(arrival_s)
        end = np.maximum(self.last_boundary(departure_s), first)
        return first, end

    @staticmethod
    def covering(start: datetime, end: datetime, step: timedelta) -> TimeGrid:
        """The grid from ``start`` with as many steps as needed to reach ``end``."""
        length = max(0, math.ceil((end - start) / step))
        return TimeGrid(start=start, step=step, length=length)
