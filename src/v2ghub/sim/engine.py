"""The twin's engine: steps a city's fleet through time, calling a planner at each control
interval and applying its setpoints through battery physics and meters.

One run (:meth:`Simulator.run`) is: set up (:class:`~v2ghub.sim.run_state._Run`, in
:mod:`v2ghub.sim.run_state`: the fleet in arrival order, its energies, meters and
samples), then per step: plug in the arrivals, plan when due
(:meth:`Simulator._plan_when_due`), answer a demand-response event
(:meth:`Simulator._answer_event`), take the hourly flexibility envelope, apply the step
(regulation or battery physics, :meth:`Simulator._apply`), meter it (:meth:`_Run.meter`);
at the end the results are put back into the fleet's order (:meth:`_Run.result`).

Every operation is on whole arrays of vehicles; the only Python loop is over time steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from v2ghub.defaults import ENVELOPE_DURATIONS_H
from v2ghub.model.case import CityCase
from v2ghub.model.headroom import PluggedFleet
from v2ghub.model.problem import Planner, Problem, capabilities_of
from v2ghub.network.feeder_limits import SiteCaps
from v2ghub.planning.check import plan_safely
from v2ghub.regulation.envelope import fleet_envelope

if TYPE_CHECKING:
    from v2ghub.sim.demand_response_service import DemandResponseService
    from v2ghub.sim.regulation_service import RegulationFollower
from v2ghub.sim.expected_arrivals import ExpectedArrivals, ExpectedGroups
from v2ghub.sim.run_state import SimulationRun, _Plan, _Run

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


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
    site_caps:
        What the feeders under the sites allow them step by step
        (:mod:`v2ghub.network.feeder_limits`): every problem the planner gets carries the
        caps' room as load at the sites, and their limits; a planner that asks for the
        sessions expected later is told of those at the capped sites.
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
        site_caps: SiteCaps | None = None,
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
        self.site_caps = site_caps
        # Only a planner that keeps the pilots' valley rule is told the day's charging.
        self.keeps_rule = capabilities_of(planner).valley_rule

    def run(self) -> SimulationRun:
        """Step through the whole grid and return what happened."""
        started = time.perf_counter()
        run = _Run.set_up(self.case, sample_seed=self.sample_seed)
        run.expected = (
            ExpectedArrivals(
                fleet=run.fleet,
                first_step=run.first_step,
                end_step=run.end_step,
                site_limited=self._site_limited(),
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

    def _site_limited(self) -> npt.NDArray[np.bool_]:
        """Per site, whether a planner that asks is told of the sessions expected there:
        where a feeder caps the sites, the capped sites (a compound's evening arrivals
        need the night's room under its cap); else every site with a limit."""
        if self.site_caps is not None:
            return np.asarray(np.isfinite(self.site_caps.import_cap_kw).any(axis=1))
        sites = self.case.sites
        return np.asarray(np.isfinite(sites.import_limit_kw) | np.isfinite(sites.export_limit_kw))

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
        degradation = case.degradation_cny_per_kwh
        if isinstance(degradation, np.ndarray):
            # One price per session; the forecast rows never discharge.
            degradation = rows(degradation[order[active]], no_discharge)
        regulation_terms = self.regulation.planning_terms(step, horizon) if self.regulation else {}
        caps = self.site_caps
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
            import_limit_kw=case.sites.import_limit_kw if caps is None else caps.import_limit_kw,
            export_limit_kw=case.sites.export_limit_kw if caps is None else caps.export_limit_kw,
            site_load_kw=None if caps is None else caps.window(step, horizon),
            import_price_cny_per_kwh=import_price[step:stop],
            export_price_cny_per_kwh=export_price[step:stop],
            period_kind=prices.kind[step:stop],
            base_load_kw=signals.base_load_kw[step:stop],
            renewable_surplus_kw=signals.renewable_surplus_kw[step:stop],
            degradation_cny_per_kwh=degradation,
            regulation_price_cny_per_kw_h=regulation_terms.get("regulation_price_cny_per_kw_h"),
            regulation_commitment_kw=regulation_terms.get("regulation_commitment_kw"),
            valley_rule=run.valley_rule(active, no_discharge.size) if self.keeps_rule else None,
        )


def _of(groups: ExpectedGroups | None, name: str) -> npt.NDArray[Any]:
    """One array of the expected groups (empty without them)."""
    return np.asarray(getattr(groups, name)) if groups is not None else np.zeros(0)
