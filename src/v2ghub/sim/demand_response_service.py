"""Demand response in the twin: answer the grid operator's events, measure what was done.

**Baseline.** An event's baseline is the twin without the event. Its plan is the one in
force when the event starts; at that run's own planning instants within the event (the
control interval, arrivals) the planner is called again on the energies the vehicles
would have had without the event (a shadow of the fleet stepped through the same
battery physics). So the catch-up of energy the event paused never inflates the
baseline.

**Response.** Every step of an event the engine plans from the actual energies (so the
plan in force keeps every owner's departure need after what the event took), and that
plan is cut so that the fleet's net load goes towards ``baseline - requested``, by
:func:`~v2ghub.regulation.demand_response.allocate_reduction`: charging paused first,
then V2G discharge, within each owner's departure need, SoC window, charger and site
limits. A regulation hour that overlaps follows around the cut setpoints. The engine
plans again at the first step after an event, so planners catch up what was paused.

**Delivered.** A step's delivered reduction is ``baseline - actual`` net power of the
fleet (grid side, the step's mean). An event's delivered energy counts each step at most
at what it requested, steps above the baseline against it, and is never below zero::

    delivered_kwh = max(sum_k min(baseline_k - actual_k, requested_k) * dt_h, 0)

It is shared among the sessions in proportion to each one's own net reduction over the
event, clipped at zero per session, not per step (a vehicle that discharged early and
less later is paid for the difference only; one that drew more than its baseline gets
nothing and owes nothing), so the sessions' ``dr_delivered_kwh`` add up to the city's.
The requested energy is ``sum_k requested_k * dt_h``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import numpy as np
import numpy.typing as npt

from v2ghub.model.case import CityCase
from v2ghub.regulation.capacity import site_share
from v2ghub.regulation.demand_response import Chargers, DemandResponseEvent, allocate_reduction

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class PluggedRows(Chargers, Protocol):
    """The plugged vehicles of a plan: the engine's rows (``index`` into its sessions)."""

    @property
    def index(self) -> IntArray: ...
    @property
    def end_step(self) -> IntArray: ...
    def apply(
        self, energy_kwh: FloatArray, setpoint_kw: FloatArray, dt_h: float
    ) -> tuple[FloatArray, FloatArray]:
        """The rows' battery physics for one step: (energy_after_kwh, applied_kw)."""


@dataclass(frozen=True)
class EventResult:
    """One event as it ran: per step (from ``first_step`` of the city's grid), the
    reduction requested, the fleet's baseline net load and the delivered reduction
    (``baseline - actual``), kW."""

    event: DemandResponseEvent
    first_step: int
    step_h: float
    price_cny_per_kwh: Decimal
    requested_kw: FloatArray
    baseline_kw: FloatArray
    delivered_kw: FloatArray

    @property
    def start(self) -> datetime:
        """When the event starts."""
        return self.event.start

    @property
    def end(self) -> datetime:
        """When the event ends."""
        return self.event.end

    @property
    def requested_kwh(self) -> float:
        """Energy requested: ``sum(requested_kw) * dt_h``."""
        return float(self.requested_kw.sum()) * self.step_h

    @property
    def delivered_kwh(self) -> float:
        """Energy delivered: ``max(sum(min(delivered_kw, requested_kw)) * dt_h, 0)``."""
        return credited_kwh(self.delivered_kw, self.requested_kw, self.step_h)

    @property
    def held_kw(self) -> float:
        """The reduction delivered in every step of the event, kW:
        ``max(min_k min(delivered_k, requested_k), 0)`` (0 for an event of no step)."""
        if not self.delivered_kw.size:
            return 0.0
        return max(float(np.minimum(self.delivered_kw, self.requested_kw).min()), 0.0)


def credited_kwh(delivered_kw: FloatArray, requested_kw: FloatArray, dt_h: float) -> float:
    """An event's delivered energy: each step at most what it requested, never below 0."""
    return max(float(np.minimum(delivered_kw, requested_kw).sum()) * dt_h, 0.0)


@dataclass(eq=False)
class _Running:
    event: DemandResponseEvent
    first_step: int
    price_cny_per_kwh: Decimal
    requested_kw: list[float] = field(default_factory=list)
    baseline_kw: list[float] = field(default_factory=list)
    delivered_kw: list[float] = field(default_factory=list)
    last_step: int = 0
    reduction_kwh: FloatArray = field(default_factory=lambda: np.zeros(0))


class DemandResponseService:
    """The twin's demand-response service for one city (see the module docstring).

    ``events`` for other cities are ignored; those that cover no step of the city's grid
    are left out of the results. ``default_price_cny_per_kwh`` prices events without a
    price (default: the city's rate in ``data/settlement.toml``).
    """

    def __init__(
        self,
        case: CityCase,
        events: Sequence[DemandResponseEvent],
        *,
        default_price_cny_per_kwh: Decimal | None = None,
    ) -> None:
        grid = case.grid
        self.case = case
        self.dt_h = grid.dt_h
        self.event_of_step: dict[int, _Running] = {}
        rate = default_price_cny_per_kwh
        mine = [e for e in events if e.city in (None, case.city)]
        for event in sorted(mine, key=lambda e: e.start):
            first = first_step_from(event.start, case)
            stop = first_step_from(event.end, case)
            first, stop = max(first, 0), min(stop, grid.length)
            if first >= stop:
                continue
            if any(k in self.event_of_step for k in range(first, stop)):
                raise ValueError(f"demand-response events overlap in {case.city} at {event.start}")
            price = event.price_cny_per_kwh
            if price is None:
                rate = rate if rate is not None else city_rate_cny_per_kwh(case.city)
                price = rate
            running = _Running(event, first, price, last_step=stop - 1)
            for k in range(first, stop):
                self.event_of_step[k] = running
        self.baseline_energy_kwh = np.zeros(0)
        self.session_kwh = np.zeros(case.fleet.n_sessions)
        self._baseline_kw = np.zeros(0)

    def covers(self, step: int) -> bool:
        """Whether an event covers ``step``."""
        return step in self.event_of_step

    def begins(self, step: int) -> bool:
        """Whether ``step`` is covered and the one before is not: the baseline starts."""
        return self.covers(step) and not self.covers(step - 1)

    def has_ended(self, step: int) -> bool:
        """Whether ``step`` is the first after an event (the engine then plans again)."""
        return self.covers(step - 1) and not self.covers(step)

    def start_baseline(self, energy_kwh: FloatArray) -> None:
        """The shadow fleet's energies start as the real ones (every session's)."""
        self.baseline_energy_kwh = energy_kwh.copy()

    def respond(
        self,
        *,
        step: int,
        rows: PluggedRows,
        planned_kw: FloatArray,
        baseline_kw: FloatArray,
        energy_kwh: FloatArray,
        target_energy_kwh: FloatArray,
    ) -> FloatArray:
        """The setpoints of an event step: the plan in force, cut to answer the request.

        ``planned_kw`` is the plan in force for ``rows``, ``baseline_kw`` the baseline
        plan's setpoints for the same rows; ``energy_kwh`` and ``target_energy_kwh`` are
        the rows' actual energies and targets.
        """
        running = self.event_of_step[step]
        index = rows.index
        shadow_after, baseline_applied = rows.apply(
            self.baseline_energy_kwh[index], baseline_kw, self.dt_h
        )
        self.baseline_energy_kwh[index] = shadow_after
        _, planned_applied = rows.apply(energy_kwh, planned_kw, self.dt_h)
        baseline_total = float(baseline_applied.sum())
        requested = running.event.requested_kw(baseline_kw=baseline_total, plugged=index.size)
        sites = self.case.sites
        allocation = allocate_reduction(
            chargers=rows,
            planned_kw=planned_applied,
            reduction_kw=requested - (baseline_total - float(planned_applied.sum())),
            energy_kwh=energy_kwh,
            target_energy_kwh=target_energy_kwh,
            steps_to_departure=rows.end_step - step,
            dt_h=self.dt_h,
            import_limit_kw=sites.import_limit_kw,
            export_limit_kw=sites.export_limit_kw,
            refill_kw=rows.max_charge_kw
            * site_share(rows.site_index, rows.max_charge_kw, sites.import_limit_kw),
            hold_steps=running.last_step - step + 1,
        )
        self._baseline_kw = baseline_applied
        running.requested_kw.append(requested)
        running.baseline_kw.append(baseline_total)
        return allocation.setpoint_kw

    def record(self, *, step: int, index: IntArray, applied_kw: FloatArray) -> None:
        """What the rows of the last :meth:`respond` drew in the step (mean kW); at the
        event's last step, its delivered energy is shared among the sessions."""
        running = self.event_of_step[step]
        if not running.reduction_kwh.size:
            running.reduction_kwh = np.zeros(self.session_kwh.size)
        reduction = self._baseline_kw - applied_kw
        running.reduction_kwh[index] += reduction * self.dt_h
        running.delivered_kw.append(float(reduction.sum()))
        if step == running.last_step:
            delivered = credited_kwh(
                np.array(running.delivered_kw), np.array(running.requested_kw), self.dt_h
            )
            positive = np.maximum(running.reduction_kwh, 0.0)
            total = float(positive.sum())
            if delivered > 0 and total > 0:
                self.session_kwh += positive * (delivered / total)
            running.reduction_kwh = np.zeros(0)

    def results(self) -> list[EventResult]:
        """Every event that ran, in time order."""
        return [
            EventResult(
                event=r.event,
                first_step=r.first_step,
                step_h=self.dt_h,
                price_cny_per_kwh=r.price_cny_per_kwh,
                requested_kw=np.array(r.requested_kw),
                baseline_kw=np.array(r.baseline_kw),
                delivered_kw=np.array(r.delivered_kw),
            )
            for r in dict.fromkeys(self.event_of_step.values())
            if r.requested_kw
        ]


def city_rate_cny_per_kwh(city: str) -> Decimal:
    """The city's demand-response rate in ``data/settlement.toml`` (the defaults' if none)."""
    from v2ghub.settlement.rates import rate_cards  # noqa: PLC0415 - reads a data file

    return rate_cards([city])[city].demand_response_cny_per_kwh


def first_step_from(moment: datetime, case: CityCase) -> int:
    """The first step of the case's grid that starts at or after ``moment``."""
    grid = case.grid
    return int(grid.first_full_step(np.array([int(moment.timestamp())], dtype=np.int64))[0])
