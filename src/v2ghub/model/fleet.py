"""A fleet as a structure of arrays: one entry per plug-in session, never one object each.

Each index ``i`` is one session of one vehicle at one charger: when it arrives and leaves,
its battery, the owner's state-of-charge (SoC) window and target, the charger's power limits
and efficiencies, whether the owner opted in to V2G, and the site it is connected to.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import IntEnum
from functools import cached_property

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class ChargerKind(IntEnum):
    """Where the session happens; private (home) chargers have a stricter valley rule."""

    HOME = 0
    WORKPLACE = 1
    PUBLIC = 2


class Chemistry(IntEnum):
    """A battery's cell chemistry (cathode / graphite anode), for its ageing model."""

    LFP = 0
    NMC = 1


DEFAULT_CHEMISTRY = Chemistry.LFP
"""The chemistry of a vehicle whose fleet does not say: about three quarters of China's
EV batteries are LFP (74.6% of the power-battery capacity installed in 2024, China
Automotive Battery Innovation Alliance figures as reported by Cui Dongshu)."""


_FRACTIONS = ("soc_arrival", "soc_target", "soc_min", "soc_max")
_NON_NEGATIVE = ("max_charge_kw", "max_discharge_kw")


@dataclass(frozen=True)
class Fleet:
    """Sessions of a fleet; every array has one entry per session.

    Times are UTC epoch seconds. Efficiencies are fractions in (0, 1]: a charger that draws
    ``p`` kW stores ``charge_efficiency * p``; one that delivers ``p`` kW to the grid takes
    ``p / discharge_efficiency`` from the battery. ``chemistry`` holds :class:`Chemistry`
    values (``None``: every battery is :data:`DEFAULT_CHEMISTRY`).
    """

    site_index: IntArray
    battery_kwh: FloatArray
    soc_arrival: FloatArray
    soc_target: FloatArray
    soc_min: FloatArray
    soc_max: FloatArray
    max_charge_kw: FloatArray
    max_discharge_kw: FloatArray
    charge_efficiency: FloatArray
    discharge_efficiency: FloatArray
    arrival_s: IntArray
    departure_s: IntArray
    v2g_opt_in: BoolArray
    charger_kind: npt.NDArray[np.int8]
    session_ids: npt.NDArray[np.str_] | None = None
    chemistry: npt.NDArray[np.int8] | None = None

    def __post_init__(self) -> None:
        n = self.battery_kwh.shape[0]
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if not isinstance(value, np.ndarray) or value.shape != (n,):
                raise ValueError(f"Fleet.{f.name} must be an array of shape ({n},)")
        self._check(~(self.battery_kwh > 0), "battery_kwh", "must be > 0")
        for name in _FRACTIONS:
            values = getattr(self, name)
            self._check(~((values >= 0) & (values <= 1)), name, "must be within 0-1")
        for name in _NON_NEGATIVE:
            self._check(~(getattr(self, name) >= 0), name, "must be >= 0")
        for name in ("charge_efficiency", "discharge_efficiency"):
            values = getattr(self, name)
            self._check(~((values > 0) & (values <= 1)), name, "must be within (0, 1]")
        self._check(self.soc_min > self.soc_max, "soc_min", "must not exceed soc_max")
        self._check(self.soc_target > self.soc_max, "soc_target", "must not exceed soc_max")
        self._check(self.departure_s <= self.arrival_s, "departure", "must be after arrival")
        self._check(self.site_index < 0, "site_index", "must be >= 0")
        if self.chemistry is not None:
            known = np.isin(self.chemistry, [c.value for c in Chemistry])
            self._check(
                ~known, "chemistry", f"must be one of {', '.join(c.name for c in Chemistry)}"
            )

    def _check(self, bad: BoolArray, name: str, rule: str) -> None:
        where = np.flatnonzero(bad)
        if where.size:
            i = int(where[0])
            label = self.session_ids[i] if self.session_ids is not None else str(i)
            raise ValueError(f"session {label}: {name} {rule} ({where.size} sessions fail)")

    @property
    def n_sessions(self) -> int:
        """Number of sessions (vehicles) in the fleet."""
        return int(self.battery_kwh.shape[0])

    @cached_property
    def energy_arrival_kwh(self) -> FloatArray:
        """Energy stored at arrival."""
        return self.soc_arrival * self.battery_kwh

    @cached_property
    def target_energy_kwh(self) -> FloatArray:
        """Energy the owner must have at departure (``soc_target * battery_kwh``)."""
        return self.soc_target * self.battery_kwh

    @cached_property
    def energy_min_kwh(self) -> FloatArray:
        """Lowest energy allowed: ``min(soc_arrival, soc_min) * battery_kwh``."""
        return np.minimum(self.soc_arrival, self.soc_min) * self.battery_kwh

    @cached_property
    def energy_max_kwh(self) -> FloatArray:
        """Highest energy allowed: ``max(soc_arrival, soc_max) * battery_kwh``."""
        return np.maximum(self.soc_arrival, self.soc_max) * self.battery_kwh

    @cached_property
    def discharge_limit_kw(self) -> FloatArray:
        """Discharge power limit; zero for sessions that did not opt in to V2G."""
        return np.where(self.v2g_opt_in, self.max_discharge_kw, 0.0)

    def label(self, i: int) -> str:
        """Human-readable id of session ``i``."""
        return str(self.session_ids[i]) if self.session_ids is not None else f"#{i}"

    def take(self, index: IntArray) -> Fleet:
        """The sub-fleet of the given sessions (copies)."""
        taken = {
            f.name: getattr(self, f.name)[index]
            for f in fields(self)
            if getattr(self, f.name) is not None
        }
        return replace(self, **taken)
