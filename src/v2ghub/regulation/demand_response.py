"""Demand response: a grid operator's event and how a fleet's power is cut to answer it.

An event asks the fleet to take its net load (charging minus discharging, grid side)
below its baseline (what it would have drawn without the event) for a while, sized in
one of three ways (:class:`DemandResponseEvent`). Each step of the event
:func:`allocate_reduction` lowers the vehicles' powers from their planned ones:

1. **pause charging** first, pro rata to each vehicle's pausable kW (every vehicle gives
   up the same share of what it can give up), and only then
2. **discharge** (V2G) the vehicles that opted in, pro rata to their dischargeable kW.

Pro rata rather than least-urgent-first: the pausable kW already shrinks with urgency
(a vehicle close to its departure need can pause little or nothing), it needs no sort
and it spreads the owners' loss, and their pay, evenly.

"Where owners allow" is the headroom of :mod:`v2ghub.regulation.capacity`: a vehicle
goes no lower than the power that leaves it, at the end of the step, at its floor: the
larger of ``energy_min_kwh`` and the energy from which it can still reach its target by
departure charging at ``refill_kw`` (its charger's power, or its share of a limited
site's); nor lower than it could hold for the rest of the event (or of its stay) and
meet its floor then, so that the event's first steps do not leave vehicles that must
then charge flat out before it ends. Discharging needs ``max_discharge_kw > 0`` (opted
in to V2G). Site limits: cutting load cannot break an import limit, but it can take a
site below its export limit (pausing charging where others discharge, or discharging),
so what each site may lose is capped by ``site net + export_limit_kw``, pauses first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import numpy as np
import numpy.typing as npt

from v2ghub.regulation.capacity import Headroom, fit_sites, headroom

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_SIZES = ("reduction_kw", "reduction_kw_per_vehicle", "target_net_kw")


class Chargers(Protocol):
    """Per plugged vehicle, what holds for its whole session: its site, its charger's
    limits (``max_discharge_kw`` 0 unless it opted in to V2G), its efficiencies and its
    energy window (the twin engine's plan rows are one; a live site's table another)."""

    @property
    def site_index(self) -> IntArray: ...
    @property
    def max_charge_kw(self) -> FloatArray: ...
    @property
    def max_discharge_kw(self) -> FloatArray: ...
    @property
    def charge_efficiency(self) -> FloatArray: ...
    @property
    def discharge_efficiency(self) -> FloatArray: ...
    @property
    def energy_min_kwh(self) -> FloatArray: ...
    @property
    def energy_max_kwh(self) -> FloatArray: ...


@dataclass(frozen=True)
class DemandResponseEvent:
    """One event from the grid operator.

    Exactly one size is given:

    - ``reduction_kw``: the fleet's net load is to drop by this much below its baseline;
    - ``reduction_kw_per_vehicle``: as much per vehicle *plugged in* at each step of the
      event (vehicles away cannot respond, so the request follows the plugged count);
    - ``target_net_kw``: the fleet's net load is to come down to this level (the request
      is ``max(baseline - target, 0)`` each step).

    ``city`` None means every city. ``price_cny_per_kwh`` None means the city's demand
    response rate (``data/settlement.toml``). ``start`` and ``end`` are timezone-aware;
    the event covers the steps that start in ``[start, end)``.
    """

    start: datetime
    end: datetime
    city: str | None = None
    reduction_kw: float | None = None
    reduction_kw_per_vehicle: float | None = None
    target_net_kw: float | None = None
    price_cny_per_kwh: Decimal | None = None

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            moment = getattr(self, name)
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
        if self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start}")
        given = [name for name in _SIZES if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(_SIZES)}; got {len(given)}")
        size = float(getattr(self, given[0]))
        if not np.isfinite(size) or (given[0] != "target_net_kw" and size < 0):
            raise ValueError(f"{given[0]} must be a finite number >= 0, got {size}")
        if self.price_cny_per_kwh is not None and not self.price_cny_per_kwh >= 0:
            raise ValueError(f"price_cny_per_kwh must be >= 0, got {self.price_cny_per_kwh}")

    def requested_kw(self, *, baseline_kw: float, plugged: int) -> float:
        """The reduction asked of the fleet in a step, kW (``baseline_kw``: the fleet's
        net load without the event; ``plugged``: vehicles plugged in)."""
        if self.reduction_kw is not None:
            return self.reduction_kw
        if self.reduction_kw_per_vehicle is not None:
            return self.reduction_kw_per_vehicle * plugged
        assert self.target_net_kw is not None  # one size is always given
        return max(baseline_kw - self.target_net_kw, 0.0)


@dataclass(frozen=True)
class Allocation:
    """One step's answer: each vehicle's new setpoint and the fleet's totals (kW)."""

    setpoint_kw: FloatArray
    requested_kw: float
    paused_kw: float
    discharged_kw: float

    @property
    def achieved_kw(self) -> float:
        """Reduction the setpoints make below the planned powers."""
        return self.paused_kw + self.discharged_kw


def _pro_rata(room_kw: FloatArray, wanted_kw: float) -> tuple[FloatArray, float]:
    """Each vehicle's part of ``wanted_kw`` in proportion to its room, and the total."""
    total = float(room_kw.sum())
    taken = min(max(wanted_kw, 0.0), total)
    if taken <= 0:
        return np.zeros_like(room_kw), 0.0
    return room_kw * (taken / total), taken


def allocate_reduction(
    *,
    chargers: Chargers,
    planned_kw: FloatArray,
    reduction_kw: float,
    energy_kwh: FloatArray,
    target_energy_kwh: FloatArray,
    steps_to_departure: IntArray,
    dt_h: float,
    import_limit_kw: FloatArray,
    export_limit_kw: FloatArray,
    refill_kw: FloatArray | None = None,
    hold_steps: int = 1,
) -> Allocation:
    """Lower the planned powers of one step by ``reduction_kw`` in all, where owners allow.

    Per vehicle ``i`` with room ``r_i`` (how far it may go below ``planned_kw[i]`` this
    step, see the module docstring), split into a pausable part
    ``p_i = min(r_i, max(planned_i, 0))`` and a dischargeable part ``d_i = r_i - p_i``,
    each first capped site by site (:func:`~v2ghub.regulation.capacity.fit_sites`)::

        paused     = min(reduction, sum p)          vehicle i: p_i * paused / sum p
        discharged = min(reduction - paused, sum d) vehicle i: d_i * discharged / sum d
        setpoint_i = planned_i - its paused part - its discharged part

    ``planned_kw`` should be powers the batteries can take this step (the plan after the
    battery's own cuts); ``steps_to_departure`` counts this step; the site limits are per
    site, ``chargers.site_index`` points into them.

    ``hold_steps`` (the event's steps left, this one included): a vehicle's room is also
    what it could hold that long, or until it leaves if sooner, and still meet its floor
    then. Without it, the first steps would take every vehicle down to its floor, from
    where it must charge at full power: load would come back before the event is over.
    """
    hours_to_departure = (steps_to_departure * dt_h).astype(np.float64)

    def room_for(steps: int) -> FloatArray:
        return headroom(
            planned_kw=planned_kw,
            energy_kwh=energy_kwh,
            target_energy_kwh=target_energy_kwh,
            energy_min_kwh=chargers.energy_min_kwh,
            energy_max_kwh=chargers.energy_max_kwh,
            max_charge_kw=chargers.max_charge_kw,
            max_discharge_kw=chargers.max_discharge_kw,
            charge_efficiency=chargers.charge_efficiency,
            discharge_efficiency=chargers.discharge_efficiency,
            hours_to_departure=hours_to_departure,
            duration_h=steps * dt_h,
            refill_kw=refill_kw,
        ).lower_kw

    room = room_for(1)
    held = np.minimum(steps_to_departure, hold_steps)
    for steps in np.unique(held[held > 1]).tolist():  # a few durations, never vehicles
        room = np.where(held == steps, np.minimum(room, room_for(steps)), room)
    pausable = np.minimum(room, np.maximum(planned_kw, 0.0))
    dischargeable = room - pausable
    none = np.zeros_like(room)

    def fitted(lower_kw: FloatArray, net_kw: FloatArray) -> FloatArray:
        return fit_sites(
            Headroom(raise_kw=none, lower_kw=lower_kw),
            planned_kw=net_kw,
            site_index=chargers.site_index,
            import_limit_kw=import_limit_kw,
            export_limit_kw=export_limit_kw,
        ).lower_kw

    pausable = fitted(pausable, planned_kw)
    # What discharging may add at a site is what its export limit leaves after every
    # pause there: the pro-rata pauses never exceed these, so the sum stays within.
    dischargeable = fitted(dischargeable, planned_kw - pausable)
    pause, paused = _pro_rata(pausable, reduction_kw)
    discharge, discharged = _pro_rata(dischargeable, reduction_kw - paused)
    return Allocation(
        setpoint_kw=planned_kw - pause - discharge,
        requested_kw=max(reduction_kw, 0.0),
        paused_kw=paused,
        discharged_kw=discharged,
    )
