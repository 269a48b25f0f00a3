"""The clock the live aggregator and the simulated chargers read.

Real deployments use :class:`SystemClock`. A demonstration or a test can run a
:class:`ScaledClock`: it starts at a chosen instant and runs ``speed`` times faster than the
wall clock, so a day of peaks and valleys passes in minutes. Both return timezone-aware UTC.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant (timezone-aware, UTC)."""
        ...

    def seconds(self, simulated_s: float) -> float:
        """How many wall-clock seconds ``simulated_s`` seconds of this clock take."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def seconds(self, simulated_s: float) -> float:
        return simulated_s


class ScaledClock:
    """Starts at ``start`` and runs ``speed`` times faster than the wall clock."""

    def __init__(self, start: datetime, speed: float = 1.0) -> None:
        if start.tzinfo is None:
            raise ValueError(
                "clock start must be timezone-aware, for example 2026-07-01T18:00+08:00"
            )
        if not speed > 0:
            raise ValueError(f"clock speed must be positive, got {speed}")
        self._start = start.astimezone(UTC)
        self._speed = speed
        self._wall_start = time.monotonic()

    def now(self) -> datetime:
        elapsed_s = (time.monotonic() - self._wall_start) * self._speed
        return self._start + timedelta(seconds=elapsed_s)

    def seconds(self, simulated_s: float) -> float:
        return simulated_s / self._speed
