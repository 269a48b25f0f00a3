"""The twin's engine: steps a city's fleet through time, calling a planner at each control
interval and applying its setpoints through battery physics and meters.

Every operation is on whole arrays of vehicles; the only Python loop is over time steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from v2ghub.model.case import CityCase
from v2ghub.model.fleet import Fleet
from v2ghub.model.problem import Planner, Problem, Schedule, capabilities_of
from v2ghub.model.tariff import PriceLevels
from v2ghub.planning.check import plan_safely
from v2ghub.regulation.envelope import ENVELOPE_DURATIONS_H, EnvelopeHour, fleet_envelope
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
        case = self.case
        grid = case.grid
        n, n_steps, dt_h = case.fleet.n_sessions, grid.length, grid.dt_h
        prices = case.tariff.price_levels(grid)
        import_price = prices.import_series()
        export_price = prices.export_series()

        # Work in arrival order: arrivals become a slice and every gather reads memory
        # nearly in sequence. Results are put back into the fleet's order at the end.
        first_unsorted, _ = grid.plugged_steps(case.fleet.arrival_s, case.fleet.departure_s)
        order = np.argsort(first_unsorted, kind="stable")
        fleet = case.fleet.take(order)
        first, end = grid.plugged_steps(fleet.arrival_s, fleet.departure_s)
        end = np.minimum(end, n_steps)
        first = np.minimum(first, end)
        energy = fleet.energy_arrival_kwh.copy()
        import_by_level = np.zeros((prices.n_levels, n))
        export_by_level = np.zeros((prices.n_levels, n))

        rng = np.random.default_rng(self.sample_seed)
        sample = np.sort(rng.choice(n, size=min(n, SOC_SAMPLE_SIZE), replace=False))
        inverse = np.empty(n, dtype=np.int64)
        inverse[order] = np.arange(n, dtype=np.int64)
        sample_sorted = inverse[sample]
        soc_sample = np.full((sample.size, n_steps), np.nan)
        charge_kw = np.zeros(n_steps)
        discharge_kw = np.zeros(n_steps)
        plugged_count = np.zeros(n_steps, dtype=np.int64)
        mean_soc = np.full(n_steps, np.nan)
        expected = (
            ExpectedArrivals(
                fleet=fleet,
                first_step=first,
                end_step=end,
                site_limited=np.isfinite(case.sites.import_limit_kw)
                | np.isfinite(case.sites.export_limit_kw),
                steps_per_group=max(1, round(1 / dt_h)),
            )
            if capabilities_of(self.planner).expected_arrivals
            else None
        )
        violations = 0
        cuts = 0
        fallbacks: list[str] = []
        planner_seconds = 0.0

        def new_plan(step: int, active: IntArray, energy_kwh: FloatArray) -> _Plan:
            nonlocal planner_seconds
            t0 = time.perf_counter()
            problem = self._problem(
                fleet=fleet,
                order=order,
                active=active,
                step=step,
                energy=energy_kwh,
                end=end,
                prices=prices,
                import_price=import_price,
                export_price=export_price,
                expected=expected.after(step) if expected is not None else None,
            )
            schedule = plan_safely(self.planner, problem, steps=problem.control_steps)
            if schedule.fallback_reason is not None:
                fallbacks.append(schedule.fallback_reason)
            planner_seconds += time.perf_counter() - t0
            return _Plan.of(problem, schedule, active, end[active], step)

        dr = self.demand_response
        # The flexibility envelope is taken at the top of every hour (UTC offsets here are
        # whole hours, so UTC hour tops are local ones).
        step_s = round(grid.step.total_seconds())
        start_s = round(grid.start.timestamp())
        hour_tops = {k for k in range(n_steps) if (start_s + k * step_s) % SECONDS_PER_HOUR == 0}
        envelope: list[EnvelopeHour] = []
        active = np.zeros(0, dtype=np.int64)
        plan: _Plan | None = None
        baseline: _Plan | None = None  # the plan without the event, while one runs
        for step in range(n_steps):
            # Newcomers come after every earlier arrival, so ``active`` stays sorted.
            arrived_from = np.searchsorted(first, step, side="left")
            arrived_until = np.searchsorted(first, step, side="right")
            newcomers = np.arange(arrived_from, arrived_until, dtype=np.int64)
            newcomers = newcomers[end[newcomers] > step]
            active = np.concatenate((active[end[active] > step], newcomers))
            plugged_count[step] = active.size

            arrivals = self.replan_on_arrival and newcomers.size > 0
            planning_instant = step % self.control_steps == 0 or arrivals
            in_event = dr is not None and dr.covers(step)
            held = plan.still_plugged(step) if plan is not None and not planning_instant else None
            # In an event and right after it, plan every step from the energies the event
            # left, so that the plan in force always keeps every owner's departure need.
            if planning_instant or in_event or (dr is not None and dr.has_ended(step)):
                plan = new_plan(step, active, energy)
            else:
                assert held is not None  # step 0 always plans
                plan = held

            setpoint = plan.setpoint(step)
            if dr is not None and in_event:
                # The baseline is the run without the event: its plan changes at that
                # run's planning instants only, from the energies it would have had.
                if dr.begins(step):
                    dr.start_baseline(energy)
                    baseline = plan if planning_instant or held is None else held
                elif planning_instant:
                    baseline = new_plan(step, active, dr.baseline_energy_kwh)
                else:
                    assert baseline is not None
                    baseline = baseline.still_plugged(step)
                setpoint = dr.respond(
                    step=step,
                    rows=plan,
                    planned_kw=setpoint,
                    baseline_kw=baseline.setpoint_of(plan.index, step),
                    energy_kwh=energy[plan.index],
                    target_energy_kwh=fleet.target_energy_kwh[plan.index],
                )
            if step in hour_tops or (self.regulation is not None and self.regulation.covers(step)):
                # What the grid services read of the plugged vehicles, as keywords.
                vehicles: dict[str, npt.NDArray[Any]] = {
                    "planned_kw": setpoint,
                    "energy_kwh": energy[plan.index],
                    "energy_min_kwh": plan.energy_min_kwh,
                    "energy_max_kwh": plan.energy_max_kwh,
                    "target_energy_kwh": fleet.target_energy_kwh[plan.index],
                    "max_charge_kw": plan.max_charge_kw,
                    "max_discharge_kw": plan.max_discharge_kw,
                    "charge_efficiency": plan.charge_efficiency,
                    "discharge_efficiency": plan.discharge_efficiency,
                    "site_index": plan.site_index,
                    "import_limit_kw": case.sites.import_limit_kw,
                    "export_limit_kw": case.sites.export_limit_kw,
                }
            if step in hour_tops:
                envelope.append(
                    fleet_envelope(
                        start=grid.start + step * grid.step,
                        hours_to_departure=((plan.end_step - step) * dt_h).astype(np.float64),
                        durations_h=ENVELOPE_DURATIONS_H,
                        **vehicles,
                    )
                )
            if self.regulation is not None and self.regulation.covers(step):
                new_energy, charged_kwh, discharged_kwh = self.regulation.follow(
                    step=step, end_step=plan.end_step, **vehicles
                )
                charged = charged_kwh / dt_h  # the step's mean powers
                discharged = discharged_kwh / dt_h
                applied = charged - discharged
            else:
                new_energy, applied = plan.apply(energy[plan.index], setpoint, dt_h)
                cuts += int(np.count_nonzero(np.abs(applied - setpoint) > 1e-6))
                charged = np.maximum(applied, 0.0)
                discharged = np.maximum(-applied, 0.0)
            energy[plan.index] = new_energy
            if dr is not None and in_event:
                dr.record(step=step, index=plan.index, applied_kw=applied)
            level = prices.level[step]
            import_row = import_by_level[level]
            import_row[plan.index] += charged * dt_h
            if discharged.any():
                export_row = export_by_level[level]
                export_row[plan.index] += discharged * dt_h
            charge_kw[step] = charged.sum()
            discharge_kw[step] = discharged.sum()

            site_net = np.bincount(plan.site_index, weights=applied, minlength=case.sites.n_sites)
            over = (site_net > case.sites.import_limit_kw + SITE_LIMIT_TOLERANCE_KW) | (
                site_net < -case.sites.export_limit_kw - SITE_LIMIT_TOLERANCE_KW
            )
            violations += int(np.count_nonzero(over))

            if active.size:
                mean_soc[step] = float(np.mean(energy[active] / fleet.battery_kwh[active]))
            sample_plugged = (first[sample_sorted] <= step) & (end[sample_sorted] > step)
            soc_sample[:, step] = np.where(
                sample_plugged,
                energy[sample_sorted] / fleet.battery_kwh[sample_sorted],
                np.nan,
            )
            if self.on_step is not None:
                self.on_step(step + 1)

        return SimulationRun(
            case=case,
            planner=self.planner.name,
            prices=prices,
            charge_kw=charge_kw,
            discharge_kw=discharge_kw,
            plugged_count=plugged_count,
            mean_soc=mean_soc,
            soc_sample_index=sample,
            soc_sample=soc_sample,
            energy_final_kwh=energy[inverse],
            import_kwh_by_level=np.ascontiguousarray(import_by_level[:, inverse].T),
            export_kwh_by_level=np.ascontiguousarray(export_by_level[:, inverse].T),
            site_limit_violations=violations,
            setpoint_cuts=cuts,
            fallback_reasons=tuple(fallbacks),
            planner_seconds=planner_seconds,
            total_seconds=time.perf_counter() - started,
            regulation_hours=tuple(self.regulation.results()) if self.regulation else (),
            envelope=tuple(envelope),
            demand_response_events=tuple(dr.results()) if dr is not None else (),
            dr_delivered_kwh=dr.session_kwh[inverse] if dr is not None else np.zeros(n),
        )

    def _problem(
        self,
        *,
        fleet: Fleet,
        order: IntArray,
        active: IntArray,
        step: int,
        energy: FloatArray,
        end: IntArray,
        prices: PriceLevels,
        import_price: FloatArray,
        export_price: FloatArray,
        expected: ExpectedGroups | None = None,
    ) -> Problem:
        """The problem of the plugged vehicles, then the groups expected to come, if any."""
        case = self.case
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
