"""The state of one twin run: the plan in force (:class:`_Plan`), the fleet's arrays in
arrival order with its meters and samples (:class:`_Run`), and what the finished run
returns (:class:`SimulationRun`). :mod:`v2ghub.sim.engine` steps them through time.

Every operation is on whole arrays of vehicles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from v2ghub.model.case import CityCase
from v2ghub.model.fleet import ChargerKind, Fleet
from v2ghub.model.headroom import PluggedFleet
from v2ghub.model.problem import Problem, Schedule
from v2ghub.model.tariff import PeriodKind, PriceLevels
from v2ghub.model.valley_rule import ValleyRule
from v2ghub.regulation.envelope import EnvelopeHour
from v2ghub.sim.battery import step_batteries
from v2ghub.sim.expected_arrivals import ExpectedArrivals
from v2ghub.units import SECONDS_PER_HOUR

if TYPE_CHECKING:
    from v2ghub.sim.demand_response_service import DemandResponseService, EventResult
    from v2ghub.sim.regulation_service import HourResult, RegulationFollower

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SOC_SAMPLE_SIZE = 200
SITE_LIMIT_TOLERANCE_KW = 1e-6


@dataclass(frozen=True)
class SimulationRun:
    """What one planner did to one city, step by step and per session.

    Per-step arrays cover the case's grid; per-session arrays the case's fleet.
    ``import_kwh_by_level`` and ``export_kwh_by_level`` have shape
    ``(n_sessions, prices.n_levels)``: grid-side energy per session at each price level.
    ``dr_delivered_kwh`` is each session's credited demand-response energy (zeros without
    events; see :mod:`v2ghub.sim.demand_response_service`). ``soc_hours`` is each
    session's SoC summed over its plugged steps times the step (SoC x h, at the end of
    each step): its mean SoC while plugged is that over the plugged hours (battery ageing,
    :mod:`v2ghub.sim.wear`).
    """

    case: CityCase
    planner: str
    prices: PriceLevels
    charge_kw: FloatArray
    discharge_kw: FloatArray
    plugged_count: IntArray
    mean_soc: FloatArray
    soc_sample_index: IntArray
    soc_sample: FloatArray
    energy_final_kwh: FloatArray
    import_kwh_by_level: FloatArray
    export_kwh_by_level: FloatArray
    site_limit_violations: int
    setpoint_cuts: int
    fallback_reasons: tuple[str, ...]
    planner_seconds: float
    total_seconds: float
    regulation_hours: tuple[HourResult, ...] = ()
    envelope: tuple[EnvelopeHour, ...] = ()
    demand_response_events: tuple[EventResult, ...] = ()
    dr_delivered_kwh: FloatArray = field(default_factory=lambda: np.zeros(0))
    soc_hours: FloatArray = field(default_factory=lambda: np.zeros(0))
    site_power_kw: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    """Each site's net power per step (sites x steps, kW, + charging): what the feeders
    under the sites carry (:mod:`v2ghub.network.feeders`)."""

    @property
    def ev_load_kw(self) -> FloatArray:
        """Net EV load per step (+ import, - export)."""
        return self.charge_kw - self.discharge_kw

    @property
    def energy_charged_kwh(self) -> FloatArray:
        """Grid energy drawn per session."""
        return np.asarray(self.import_kwh_by_level.sum(axis=1))

    @property
    def energy_discharged_kwh(self) -> FloatArray:
        """Grid energy delivered per session."""
        return np.asarray(self.export_kwh_by_level.sum(axis=1))


@dataclass(frozen=True)
class _Plan:
    """The schedule in force and the per-session arrays the physics needs while it runs.

    ``index`` are the (arrival-ordered) sessions it drives; every array has their rows.
    """

    power_kw: FloatArray
    index: IntArray
    end_step: IntArray
    site_index: IntArray
    max_charge_kw: FloatArray
    max_discharge_kw: FloatArray
    charge_efficiency: FloatArray
    discharge_efficiency: FloatArray
    energy_min_kwh: FloatArray
    energy_max_kwh: FloatArray
    start_step: int

    @staticmethod
    def of(
        problem: Problem, schedule: Schedule, index: IntArray, end_step: IntArray, step: int
    ) -> _Plan:
        """The plan of a schedule for the plugged vehicles (the forecast rows dropped)."""
        n = problem.n_plugged
        return _Plan(
            power_kw=schedule.power_kw[:n],
            index=index,
            end_step=end_step,
            site_index=problem.site_index[:n],
            max_charge_kw=problem.max_charge_kw[:n],
            max_discharge_kw=problem.max_discharge_kw[:n],
            charge_efficiency=problem.charge_efficiency[:n],
            discharge_efficiency=problem.discharge_efficiency[:n],
            energy_min_kwh=problem.energy_min_kwh[:n],
            energy_max_kwh=problem.energy_max_kwh[:n],
            start_step=step,
        )

    def still_plugged(self, step: int) -> _Plan:
        """The plan without the sessions that have left by ``step``."""
        keep = self.end_step > step
        if keep.all():
            return self
        arrays = {
            f.name: getattr(self, f.name)[keep] for f in fields(self) if f.name != "start_step"
        }
        return _Plan(**arrays, start_step=self.start_step)

    def setpoint(self, step: int) -> FloatArray:
        """Each row's power at ``step`` (zero past the schedule's end)."""
        column = step - self.start_step
        if column < self.power_kw.shape[1]:
            return self.power_kw[:, column]
        return np.zeros(self.index.size)

    def setpoint_of(self, index: IntArray, step: int) -> FloatArray:
        """The power at ``step`` of the sessions ``index`` (sorted, holding all of this
        plan's): zero for those the plan does not drive (they wait for a plan)."""
        if np.array_equal(index, self.index):
            return self.setpoint(step)
        power = np.zeros(index.size)
        power[np.searchsorted(index, self.index)] = self.setpoint(step)
        return power

    def apply(
        self, energy_kwh: FloatArray, setpoint_kw: FloatArray, dt_h: float
    ) -> tuple[FloatArray, FloatArray]:
        """These rows' battery physics for one step: (energy_after_kwh, applied_kw)."""
        return step_batteries(
            energy_kwh=energy_kwh,
            setpoint_kw=setpoint_kw,
            max_charge_kw=self.max_charge_kw,
            max_discharge_kw=self.max_discharge_kw,
            charge_efficiency=self.charge_efficiency,
            discharge_efficiency=self.discharge_efficiency,
            energy_min_kwh=self.energy_min_kwh,
            energy_max_kwh=self.energy_max_kwh,
            dt_h=dt_h,
        )


@dataclass(eq=False)
class _Run:
    """One run's state: the fleet in arrival order, its energies, meters and samples.

    Working in arrival order makes the arrivals of a step a slice and every gather read
    memory nearly in sequence; :meth:`result` puts everything back into the fleet's order.
    ``active`` are the plugged sessions (sorted: newcomers come after every earlier
    arrival). Energy by price level has shape ``(levels, sessions)``.
    """

    case: CityCase
    fleet: Fleet
    order: IntArray
    inverse: IntArray
    first_step: IntArray
    end_step: IntArray
    prices: PriceLevels
    import_price: FloatArray
    export_price: FloatArray
    energy_kwh: FloatArray
    import_kwh_by_level: FloatArray
    export_kwh_by_level: FloatArray
    sample: IntArray
    sample_rows: IntArray
    soc_sample: FloatArray
    charge_kw: FloatArray
    discharge_kw: FloatArray
    plugged_count: IntArray
    mean_soc: FloatArray
    soc_hours: FloatArray
    site_power_kw: FloatArray
    hour_tops: frozenset[int]
    expected: ExpectedArrivals | None = None
    active: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    plan: _Plan | None = None
    baseline: _Plan | None = None  # the plan without the event, while one runs
    envelope: list[EnvelopeHour] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    violations: int = 0
    cuts: int = 0
    planner_seconds: float = 0.0

    @staticmethod
    def set_up(case: CityCase, *, sample_seed: int) -> _Run:
        """The run's arrays before the first step."""
        grid = case.grid
        n, n_steps = case.fleet.n_sessions, grid.length
        prices = case.tariff.price_levels(grid)
        first_unsorted, _ = grid.plugged_steps(case.fleet.arrival_s, case.fleet.departure_s)
        order = np.argsort(first_unsorted, kind="stable")
        fleet = case.fleet.take(order)
        first, end = grid.plugged_steps(fleet.arrival_s, fleet.departure_s)
        end = np.minimum(end, n_steps)
        first = np.minimum(first, end)
        rng = np.random.default_rng(sample_seed)
        sample = np.sort(rng.choice(n, size=min(n, SOC_SAMPLE_SIZE), replace=False))
        inverse = np.empty(n, dtype=np.int64)
        inverse[order] = np.arange(n, dtype=np.int64)
        # The flexibility envelope is taken at the top of every hour (UTC offsets here are
        # whole hours, so UTC hour tops are local ones).
        step_s = round(grid.step.total_seconds())
        start_s = round(grid.start.timestamp())
        hour_tops = {k for k in range(n_steps) if (start_s + k * step_s) % SECONDS_PER_HOUR == 0}
        return _Run(
            case=case,
            fleet=fleet,
            order=order,
            inverse=inverse,
            first_step=first,
            end_step=end,
            prices=prices,
            import_price=prices.import_series(),
            export_price=prices.export_series(),
            energy_kwh=fleet.energy_arrival_kwh.copy(),
            import_kwh_by_level=np.zeros((prices.n_levels, n)),
            export_kwh_by_level=np.zeros((prices.n_levels, n)),
            sample=sample,
            sample_rows=inverse[sample],
            soc_sample=np.full((sample.size, n_steps), np.nan),
            charge_kw=np.zeros(n_steps),
            discharge_kw=np.zeros(n_steps),
            plugged_count=np.zeros(n_steps, dtype=np.int64),
            mean_soc=np.full(n_steps, np.nan),
            soc_hours=np.zeros(n),
            site_power_kw=np.zeros((case.sites.n_sites, n_steps)),
            hour_tops=frozenset(hour_tops),
        )

    def plug_in(self, step: int) -> bool:
        """Add the sessions that arrive at ``step``, drop those that have left; whether
        any arrived."""
        first, end = self.first_step, self.end_step
        arrived_from = np.searchsorted(first, step, side="left")
        arrived_until = np.searchsorted(first, step, side="right")
        newcomers = np.arange(arrived_from, arrived_until, dtype=np.int64)
        newcomers = newcomers[end[newcomers] > step]
        self.active = np.concatenate((self.active[end[self.active] > step], newcomers))
        self.plugged_count[step] = self.active.size
        return newcomers.size > 0

    def valley_rule(self, rows: IntArray, forecast_rows: int) -> ValleyRule:
        """The valley rule for a problem of the sessions ``rows`` (then ``forecast_rows``
        expected groups, counted as public chargers), with the charging metered so far."""
        valley_levels = np.array(
            [kind == PeriodKind.VALLEY for kind in self.prices.level_kind], dtype=np.bool_
        )
        charged = self.import_kwh_by_level.sum(axis=0)
        valley = self.import_kwh_by_level[valley_levels].sum(axis=0)
        private = self.fleet.charger_kind == ChargerKind.HOME
        return ValleyRule(
            private=np.concatenate((private[rows], np.zeros(forecast_rows, dtype=np.bool_))),
            valley_kwh=float(valley.sum()),
            charged_kwh=float(charged.sum()),
            private_valley_kwh=float(valley[private].sum()),
            private_charged_kwh=float(charged[private].sum()),
        )

    def plugged_fleet(self, plan: _Plan, setpoint_kw: FloatArray) -> PluggedFleet:
        """What the grid services read of the plugged vehicles."""
        sites = self.case.sites
        return PluggedFleet(
            planned_kw=setpoint_kw,
            energy_kwh=self.energy_kwh[plan.index],
            energy_min_kwh=plan.energy_min_kwh,
            energy_max_kwh=plan.energy_max_kwh,
            target_energy_kwh=self.fleet.target_energy_kwh[plan.index],
            max_charge_kw=plan.max_charge_kw,
            max_discharge_kw=plan.max_discharge_kw,
            charge_efficiency=plan.charge_efficiency,
            discharge_efficiency=plan.discharge_efficiency,
            site_index=plan.site_index,
            import_limit_kw=sites.import_limit_kw,
            export_limit_kw=sites.export_limit_kw,
        )

    def meter(
        self,
        step: int,
        plan: _Plan,
        *,
        applied_kw: FloatArray,
        charged_kw: FloatArray,
        discharged_kw: FloatArray,
    ) -> None:
        """Meter one step's powers (grid side): energy per session and price level, the
        fleet's totals, site limits broken, and the SoC seen."""
        dt_h = self.case.grid.dt_h
        level = self.prices.level[step]
        import_row = self.import_kwh_by_level[level]
        import_row[plan.index] += charged_kw * dt_h
        if discharged_kw.any():
            export_row = self.export_kwh_by_level[level]
            export_row[plan.index] += discharged_kw * dt_h
        self.charge_kw[step] = charged_kw.sum()
        self.discharge_kw[step] = discharged_kw.sum()

        sites = self.case.sites
        site_net = np.bincount(plan.site_index, weights=applied_kw, minlength=sites.n_sites)
        self.site_power_kw[:, step] = site_net
        over = (site_net > sites.import_limit_kw + SITE_LIMIT_TOLERANCE_KW) | (
            site_net < -sites.export_limit_kw - SITE_LIMIT_TOLERANCE_KW
        )
        self.violations += int(np.count_nonzero(over))

        energy, battery, active = self.energy_kwh, self.fleet.battery_kwh, self.active
        if active.size:
            soc = energy[active] / battery[active]
            self.mean_soc[step] = float(np.mean(soc))
            self.soc_hours[active] += soc * dt_h
        rows = self.sample_rows
        sample_plugged = (self.first_step[rows] <= step) & (self.end_step[rows] > step)
        self.soc_sample[:, step] = np.where(sample_plugged, energy[rows] / battery[rows], np.nan)

    def result(
        self,
        *,
        planner: str,
        started: float,
        regulation: RegulationFollower | None,
        demand_response: DemandResponseService | None,
    ) -> SimulationRun:
        """What happened, per step and per session in the fleet's order."""
        inverse, dr = self.inverse, demand_response
        return SimulationRun(
            case=self.case,
            planner=planner,
            prices=self.prices,
            charge_kw=self.charge_kw,
            discharge_kw=self.discharge_kw,
            plugged_count=self.plugged_count,
            mean_soc=self.mean_soc,
            soc_sample_index=self.sample,
            soc_sample=self.soc_sample,
            energy_final_kwh=self.energy_kwh[inverse],
            import_kwh_by_level=np.ascontiguousarray(self.import_kwh_by_level[:, inverse].T),
            export_kwh_by_level=np.ascontiguousarray(self.export_kwh_by_level[:, inverse].T),
            site_limit_violations=self.violations,
            setpoint_cuts=self.cuts,
            fallback_reasons=tuple(self.fallbacks),
            planner_seconds=self.planner_seconds,
            total_seconds=time.perf_counter() - started,
            regulation_hours=tuple(regulation.results()) if regulation else (),
            envelope=tuple(self.envelope),
            demand_response_events=tuple(dr.results()) if dr is not None else (),
            dr_delivered_kwh=(
                dr.session_kwh[inverse] if dr is not None else np.zeros(self.fleet.n_sessions)
            ),
            soc_hours=self.soc_hours[inverse],
            site_power_kw=self.site_power_kw,
        )
