"""The fleet's flexibility envelope: how far its power can move, each way, and for how long.

For the grid operator, hour by hour: starting from the fleet's planned power at the top
of the hour, the power it could add (``raise_kw``: charge more, discharge less) and take
away (``lower_kw``: charge less, discharge more) and hold for each of a few durations,
with every vehicle's power limits, SoC window, plug-out time and departure need, and the
sites' limits (:mod:`v2ghub.model.headroom`). A longer hold is never larger: energy runs
out and vehicles leave.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from v2ghub import defaults
from v2ghub.model.headroom import PluggedFleet, site_headroom

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

ENVELOPE_DURATIONS_H = defaults.ENVELOPE_DURATIONS_H
"""How long each deflection must hold (the table in :mod:`v2ghub.defaults`)."""


@dataclass(frozen=True)
class EnvelopeHour:
    """The envelope at the top of one hour: per duration, kW each way; and the plan, kW."""

    start: datetime
    planned_kw: float
    durations_h: tuple[float, ...]
    raise_kw: FloatArray
    lower_kw: FloatArray
    plugged: int


def fleet_envelope(
    fleet: PluggedFleet,
    *,
    start: datetime,
    hours_to_departure: FloatArray,
    durations_h: tuple[float, ...] = ENVELOPE_DURATIONS_H,
) -> EnvelopeHour:
    """The fleet's envelope from the plugged vehicles' state (:func:`site_headroom` for
    each duration; ``ENVELOPE_DURATIONS_H``: a quarter hour, a market hour, an evening)."""
    raise_kw = np.zeros(len(durations_h))
    lower_kw = np.zeros(len(durations_h))
    for k, duration_h in enumerate(durations_h):  # durations, never vehicles
        room = site_headroom(fleet, hours_to_departure=hours_to_departure, duration_h=duration_h)
        raise_kw[k] = room.raise_total_kw
        lower_kw[k] = room.lower_total_kw
    return EnvelopeHour(
        start=start,
        planned_kw=float(fleet.planned_kw.sum()),
        durations_h=durations_h,
        raise_kw=raise_kw,
        lower_kw=lower_kw,
        plugged=int(fleet.planned_kw.size),
    )
