"""The twin's engine: steps a city's fleet through time, calling a planner at each control
interval and applying its setpoints through battery physics and meters.

One run (:meth:`Simulator.run`) is: set up (:class:`_Run`: the fleet in arrival order, its
energies, meters and samples), then per step: plug in the arrivals, plan when due
(:meth:`Simulator._plan_when_due`), answer a demand-response event
(:meth:`Simulator._answer_event`), take the hourly flexibility envelope, apply the step
(regulation or battery physics, :meth:`Simulator._apply`), meter it (:meth:`_Run.meter`);
at the end the results are put back into the fleet's order (:meth:`_Run.result`).

Every operation is on whole arrays of vehicles; the only Python loop is over time steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from v2ghub.defaults import ENVELOPE_DURATIONS_H
from v2ghub.model.case import CityCase
from v2ghub.model.fleet import Fleet
from v2ghub.model.headroom import PluggedFleet
from v2ghub.model.problem import Planner, Problem, Schedule, capabilities_of
from v2ghub.model.tariff import PriceLevels
from v2ghub.planning.check import plan_safely
from v2ghub.regulation.envelope import EnvelopeHour, fleet_envelope
from v2ghub.sim.battery import step_batteries
from v2ghub.units import SECONDS_PER_HOUR

if TYPE_CHECKING:
    from v2ghub.sim.demand_response_service import DemandResponseService, EventResult
    from v2ghub.sim.regulation_service import HourResult, RegulationFollower
from v2ghub.sim.expected_arrivals import ExpectedArrivals, ExpectedGroups

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
    events; see :mod:`v2ghub.sim.demand_response_service`).
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
        over = (site_net > sites.import_limit_kw + SITE_LIMIT_TOLERANCE_KW) | (
            site_net < -sites.export_limit_kw - SITE_LIMIT_TOLERANCE_KW
        )
        self.violations += int(np.count_nonzero(over))

        energy, battery, active = self.energy_kwh, self.fleet.battery_kwh, self.active
        if active.size:
            self.mean_soc[step] = float(np.mean(energy[active] / battery[active]))
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
        )


class Simulator:
    """Runs one :class:`CityCase` with one planner.

    Parameters
    ----------
    control_steps:
        Steps between two planning calls (1 = plan every step).
    replan_on_arrival:
        Also plan at a step where vehicles have arrived, so that none waits for the next
        control instant (as the live aggregator re-plans on a new vehicle's needs).
    on_step:
        Called after every step with the number of steps done (for progress bars).
    regulation:
        Frequency regulation over the hours it offers: those steps are lived at the
        signal's pace around the plan's setpoints (:mod:`v2ghub.sim.regulation_service`).
    demand_response:
        Demand-response events: their steps' setpoints are cut to answer them, before any
        regulation (:mod:`v2ghub.sim.demand_response_service`); the step after an event
        is always a planning instant.
    """

    def __init__(
        self,
        case: CityCase,
        planner: Planner,
        *,
        control_steps: int = 1,
        on_step: Callable[[int], None] | None = None,
        sample_seed: int = 0,
        replan_on_arrival: bool = True,
        regulation: RegulationFollower | None = None,
        demand_response: DemandResponseService | None = None,
    ) -> None:
        if control_steps < 1:
            raise ValueError(f"control_steps must be >= 1, got {control_steps}")
        self.case = case
        self.planner = planner
        self.control_steps = control_steps
        self.on_step = on_step
        self.sample_seed = sample_seed
        self.replan_on_arrival = replan_on_arrival
        self.regulation = regulation
        self.demand_response = demand_response

    def run(self) -> SimulationRun:
        """Step through the whole grid and return what happened."""
        started = time.perf_counter()
        run = _Run.set_up(self.case, sample_seed=self.sample_seed)
        run.expected = (
            ExpectedArrivals(
                fleet=run.fleet,
                first_step=run.first_step,
                end_step=run.end_step,
                site_limited=np.isfinite(self.case.sites.import_limit_kw)
                | np.isfinite(self.case.sites.export_limit_kw),
                steps_per_group=max(1, round(1 / self.case.grid.dt_h)),
            )
            if capabilities_of(self.planner).expected_arrivals
            else None
        )
        for step in range(self.case.grid.length):
            self._step(run, step)
            if self.on_step is not None:
                self.on_step(step + 1)
        return run.result(
            planner=self.planner.name,
            started=started,
            regulation=self.regulation,
            demand_response=self.demand_response,
        )

    def _step(self, run: _Run, step: int) -> None:
        """One step: plug in, plan when due, answer an event, envelope, apply and meter."""
        arrivals = run.plug_in(step) and self.replan_on_arrival
        planning_instant = step % self.control_steps == 0 or arrivals
        plan, held = self._plan_when_due(run, step, planning_instant=planning_instant)
        setpoint = plan.setpoint(step)
        in_event = self.demand_response is not None and self.demand_response.covers(step)
        if in_event:
            setpoint = self._answer_event(
                run, step, plan, setpoint, held=held, planning_instant=planning_instant
            )
        regulated = self.regulation is not None and self.regulation.covers(step)
        vehicles = run.plugged_fleet(plan, setpoint) if step in run.hour_tops or regulated else None
        if step in run.hour_tops:
            assert vehicles is not None
            grid = self.case.grid
            run.envelope.append(
                fleet_envelope(
                    vehicles,
                    start=grid.start + step * grid.step,
                    hours_to_departure=((plan.end_step - step) * grid.dt_h).astype(np.float64),
                    durations_h=ENVELOPE_DURATIONS_H,
                )
            )
        applied, charged, discharged = self._apply(run, step, plan, setpoint, vehicles)
        if in_event:
            assert self.demand_response is not None
            self.demand_response.record(step=step, index=plan.index, applied_kw=applied)
        run.meter(step, plan, applied_kw=applied, charged_kw=charged, discharged_kw=discharged)

    def _plan_when_due(
        self, run: _Run, step: int, *, planning_instant: bool
    ) -> tuple[_Plan, _Plan | None]:
        """The plan in force at ``step`` and the one held from before (None when none is).

        A new plan at a planning instant; in an event and right after it, every step from
        the energies the event left, so that the plan in force always keeps every owner's
        departure need.
        """
        dr = self.demand_response
        in_event = dr is not None and dr.covers(step)
        plan = run.plan
        held = plan.still_plugged(step) if plan is not None and not planning_instant else None
        if planning_instant or in_event or (dr is not None and dr.has_ended(step)):
            run.plan = self._new_plan(run, step, run.energy_kwh)
        else:
            assert held is not None  # step 0 always plans
            run.plan = held
        return run.plan, held

    def _answer_event(
        self,
        run: _Run,
        step: int,
        plan: _Plan,
        setpoint_kw: FloatArray,
        *,
        held: _Plan | None,
        planning_instant: bool,
    ) -> FloatArray:
        """The setpoints of a demand-response step: the plan's, cut to answer the event.

        The baseline is the run without the event: its plan changes at that run's
        planning instants only, from the energies it would have had.
        """
        dr = self.demand_response
        assert dr is not None
        if dr.begins(step):
            dr.start_baseline(run.energy_kwh)
            run.baseline = plan if planning_instant or held is None else held
        elif planning_instant:
            run.baseline = self._new_plan(run, step, dr.baseline_energy_kwh)
        else:
            assert run.baseline is not None
            run.baseline = run.baseline.still_plugged(step)
        return dr.respond(
            step=step,
            rows=plan,
            planned_kw=setpoint_kw,
            baseline_kw=run.baseline.setpoint_of(plan.index, step),
            energy_kwh=run.energy_kwh[plan.index],
            target_energy_kwh=run.fleet.target_energy_kwh[plan.index],
        )

    def _apply(
        self,
        run: _Run,
        step: int,
        plan: _Plan,
        setpoint_kw: FloatArray,
        vehicles: PluggedFleet | None,
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Live the step: regulation around the setpoints in an offered hour, else the
        battery physics; the new energies are stored.

        Returns
        -------
        (applied_kw, charged_kw, discharged_kw): the step's mean powers, grid side.
        """
        dt_h = self.case.grid.dt_h
        if self.regulation is not None and self.regulation.covers(step):
            assert vehicles is not None
            new_energy, charged_kwh, discharged_kwh = self.regulation.follow(
                step=step, fleet=vehicles, end_step=plan.end_step
            )
            charged = charged_kwh / dt_h
            discharged = discharged_kwh / dt_h
            applied = charged - discharged
        else:
            new_energy, applied = plan.apply(run.energy_kwh[plan.index], setpoint_kw, dt_h)
            run.cuts += int(np.count_nonzero(np.abs(applied - setpoint_kw) > 1e-6))
            charged = np.maximum(applied, 0.0)
            discharged = np.maximum(-applied, 0.0)
        run.energy_kwh[plan.index] = new_energy
        return applied, charged, discharged

    def _new_plan(self, run: _Run, step: int, energy_kwh: FloatArray) -> _Plan:
        """Plan the plugged vehicles from ``energy_kwh`` through the checked path."""
        t0 = time.perf_counter()
        expected = run.expected
        problem = self._problem(
            run,
            step=step,
            energy=energy_kwh,
            expected=expected.after(step) if expected is not None else None,
        )
        schedule = plan_safely(self.planner, problem, steps=problem.control_steps)
        if schedule.fallback_reason is not None:
            run.fallbacks.append(schedule.fallback_reason)
        run.planner_seconds += time.perf_counter() - t0
        return _Plan.of(problem, schedule, run.active, run.end_step[run.active], step)

    def _problem(
        self,
        run: _Run,
        *,
        step: int,
        energy: FloatArray,
        expected: ExpectedGroups | None = None,
    ) -> Problem:
        """The problem of the plugged vehicles, then the groups expected to come, if any."""
        case = self.case
        fleet, order, active, end = run.fleet, run.order, run.active, run.end_step
        prices, import_price, export_price = run.prices, run.import_price, run.export_price
        groups = expected if expected is not None and expected.n_groups else None
        departure = end[active] - step
        horizon = int(departure.max()) if active.size else 1
        if groups is not None:
            horizon = max(horizon, int(groups.departure_step.max()))
        stop = step + horizon
        signals = case.signals

        def rows(plugged: npt.NDArray[Any], forecast: npt.NDArray[Any]) -> npt.NDArray[Any]:
            return plugged if groups is None else np.concatenate((plugged, forecast))

        no_discharge = np.zeros(groups.n_groups if groups is not None else 0)
        return Problem(
            grid=case.grid.sub_grid(step, horizon),
            control_steps=self.control_steps,
            vehicle_index=rows(order[active], np.full(no_discharge.size, -1, dtype=np.int64)),
            site_index=rows(fleet.site_index[active], _of(groups, "site_index")),
            energy_kwh=rows(energy[active], _of(groups, "energy_kwh")),
            energy_min_kwh=rows(fleet.energy_min_kwh[active], _of(groups, "energy_min_kwh")),
            energy_max_kwh=rows(fleet.energy_max_kwh[active], _of(groups, "energy_max_kwh")),
            target_energy_kwh=rows(
                fleet.target_energy_kwh[active], _of(groups, "target_energy_kwh")
            ),
            max_charge_kw=rows(fleet.max_charge_kw[active], _of(groups, "max_charge_kw")),
            max_discharge_kw=rows(fleet.discharge_limit_kw[active], no_discharge),
            charge_efficiency=rows(
                fleet.charge_efficiency[active], _of(groups, "charge_efficiency")
            ),
            discharge_efficiency=rows(
                fleet.discharge_efficiency[active], _of(groups, "discharge_efficiency")
            ),
            departure_step=rows(departure, _of(groups, "departure_step")),
            arrival_step=rows(np.zeros(active.size, dtype=np.int64), _of(groups, "arrival_step")),
            expected_count=no_discharge.size,
            import_limit_kw=case.sites.import_limit_kw,
            export_limit_kw=case.sites.export_limit_kw,
            import_price_cny_per_kwh=import_price[step:stop],
            export_price_cny_per_kwh=export_price[step:stop],
            period_kind=prices.kind[step:stop],
            base_load_kw=signals.base_load_kw[step:stop],
            renewable_surplus_kw=signals.renewable_surplus_kw[step:stop],
            degradation_cny_per_kwh=case.degradation_cny_per_kwh,
            **(self.regulation.planning_terms(step, horizon) if self.regulation else {}),
        )


def _of(groups: ExpectedGroups | None, name: str) -> npt.NDArray[Any]:
    """One array of the expected groups (empty without them)."""
    return np.asarray(getattr(groups, name)) if groups is not None else np.zeros(0)
