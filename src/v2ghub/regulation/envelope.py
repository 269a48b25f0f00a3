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

from v2ghub.model.headroom import site_headroom

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

ENVELOPE_DURATIONS_H = (0.25, 1.0, 4.0)
"""How long each offered deflection must hold: a quarter hour, a market hour, an evening."""


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
    *,
    start: datetime,
    planned_kw: FloatArray,
    energy_kwh: FloatArray,
    energy_min_kwh: FloatArray,
    energy_max_kwh: FloatArray,
    target_energy_kwh: FloatArray,
    max_charge_kw: FloatArray,
    max_discharge_kw: FloatArray,
    charge_efficiency: FloatArray,
    discharge_efficiency: FloatArray,
    hours_to_departure: FloatArray,
    site_index: IntArray,
    import_limit_kw: FloatArray,
    export_limit_kw: FloatArray,
    durations_h: tuple[float, ...] = ENVELOPE_DURATIONS_H,
) -> EnvelopeHour:
    """The fleet's envelope from these vehicles' state (arrays of the plugged vehicles)."""
    raise_kw = np.zeros(len(durations_h))
    lower_kw = np.zeros(len(durations_h))
    for k, duration_h in enumerate(durations_h):  # durations, never vehicles
        room = site_headroom(
            planned_kw=planned_kw,
            energy_kwh=energy_kwh,
            energy_min_kwh=energy_min_kwh,
            energy_max_kwh=energy_max_kwh,
            target_energy_kwh=target_energy_kwh,
            max_charge_kw=max_charge_kw,
            max_discharge_kw=max_discharge_kw,
            charge_efficiency=charge_efficiency,
            discharge_efficiency=discharge_efficiency,
            hours_to_departure=hours_to_departure,
            duration_h=duration_h,
            site_index=site_index,
            import_limit_kw=import_limit_kw,
            export_limit_kw=export_limit_kw,
        )
        raise_kw[k] = room.raise_total_kw
        lower_kw[k] = room.lower_total_kw
    return EnvelopeHour(
        start=start,
        planned_kw=float(planned_kw.sum()),
        durations_h=durations_h,
        raise_kw=raise_kw,
        lower_kw=lower_kw,
        plugged=int(planned_kw.size),
    )
