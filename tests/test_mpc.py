"""Receding-horizon planning: forecasts, the applied interval, and the guarantees."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import HealthCheck, given, settings

from v2ghub.model import CityCase, Problem
from v2ghub.planning import make_planner
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.lp import LpPlanner
from v2ghub.planning.mpc import RecedingHorizonPlanner
from v2ghub.sim.engine import Simulator

from .strategies import cases, problems

FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FEW
@given(problem=problems())
def test_perfect_forecast_applies_the_inner_plans_first_interval(problem: Problem) -> None:
    inner = LpPlanner()
    wrapped = RecedingHorizonPlanner(inner, base_load_error=0.0)
    full = inner.plan(problem).power_kw
    applied = wrapped.plan(problem)
    assert applied.planner == "mpc-lp"
    assert applied.n_steps == min(problem.control_steps, problem.grid.length)
    np.testing.assert_allclose(applied.power_kw, full[:, : applied.n_steps], atol=1e-9)


@FEW
@given(problem=problems())
def test_forecast_is_exact_now_and_wanders_later_repeatably(problem: Problem) -> None:
    planner = RecedingHorizonPlanner(LpPlanner(), base_load_error=0.2, seed=3)
    first = planner.forecast(problem)
    again = planner.forecast(problem)
    assert first.base_load_kw[0] == problem.base_load_kw[0]
    np.testing.assert_array_equal(first.base_load_kw, again.base_load_kw)
    if np.all(problem.base_load_kw[1:] > 0):
        assert not np.allclose(first.base_load_kw[1:], problem.base_load_kw[1:])
    assert np.all(first.renewable_surplus_kw >= 0)


@FEW
@given(case=cases())
def test_mpc_in_the_twin_keeps_the_limits(case: CityCase) -> None:
    run = Simulator(case, make_planner("mpc"), control_steps=4).run()
    assert run.setpoint_cuts == 0
    assert run.site_limit_violations == 0
    assert run.fallback_reasons == ()
    fleet = case.fleet
    assert np.all(run.energy_final_kwh <= fleet.energy_max_kwh + 1e-6)
    assert np.all(run.energy_final_kwh >= fleet.energy_min_kwh - 1e-6)


@FEW
@given(problem=problems())
def test_expected_groups_are_forecast_and_never_applied(problem: Problem) -> None:
    # Treat the vehicles that arrive later as the forecast groups of arrivals to come.
    later = problem.arrival_step > 0
    order = np.argsort(later, kind="stable")  # plugged vehicles first, then the groups
    arrays = {
        name: getattr(problem, name)[order]
        for name in (
            "vehicle_index",
            "site_index",
            "energy_kwh",
            "energy_min_kwh",
            "energy_max_kwh",
            "target_energy_kwh",
            "max_charge_kw",
            "max_discharge_kw",
            "charge_efficiency",
            "discharge_efficiency",
            "departure_step",
            "arrival_step",
        )
    }
    grouped = replace(problem, **arrays, expected_count=int(later.sum()))
    planner = RecedingHorizonPlanner(FastPlanner(), arrival_error=0.3, seed=5)
    forecast = planner.forecast(grouped)
    plugged = grouped.n_plugged
    # The plugged vehicles are known exactly; the groups are scaled, never negative.
    np.testing.assert_array_equal(forecast.energy_kwh[:plugged], grouped.energy_kwh[:plugged])
    factor = np.divide(
        forecast.max_charge_kw[plugged:],
        grouped.max_charge_kw[plugged:],
        out=np.ones(grouped.expected_count),
        where=grouped.max_charge_kw[plugged:] > 0,
    )
    assert np.all(factor >= 0)
    np.testing.assert_allclose(
        forecast.target_energy_kwh[plugged:], grouped.target_energy_kwh[plugged:] * factor
    )
    schedule = planner.plan(grouped)
    assert np.all(schedule.power_kw[plugged:] == 0.0)
