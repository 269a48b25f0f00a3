"""The fast planner: its guarantees, and its cost held against the exact LP."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from v2ghub.model import Problem
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.lp import LpPlanner
from v2ghub.planning.objective import final_energy_kwh, schedule_cost
from v2ghub.scenarios.build import synthetic_cases
from v2ghub.scenarios.config import ScenarioFile, SimulationSettings, resolve
from v2ghub.sim.engine import Simulator
from v2ghub.sim.metrics import session_outcomes

from .strategies import problems

TOLERANCE = 1e-5
FAST_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# Without site limits each vehicle's plan is its exact optimum: only rounding remains.
EXACT_SHARE, EXACT_CNY = 1e-6, 1e-4


def _check_guarantees(problem: Problem, power_kw: np.ndarray) -> None:
    steps = np.arange(problem.grid.length)
    plugged = (steps >= problem.arrival_step[:, None]) & (steps < problem.departure_step[:, None])
    assert power_kw.shape == (problem.n_vehicles, problem.grid.length)
    assert np.all(power_kw[~plugged] == 0)
    assert np.all(power_kw <= problem.max_charge_kw[:, None] + TOLERANCE)
    assert np.all(power_kw >= -problem.max_discharge_kw[:, None] - TOLERANCE)
    dt_h = problem.dt_h
    stored = (
        np.maximum(power_kw, 0) * problem.charge_efficiency[:, None]
        - np.maximum(-power_kw, 0) / problem.discharge_efficiency[:, None]
    ) * dt_h
    path = problem.energy_kwh[:, None] + np.cumsum(stored, axis=1)
    assert np.all(path >= problem.energy_min_kwh[:, None] - TOLERANCE)
    assert np.all(path <= problem.energy_max_kwh[:, None] + TOLERANCE)
    n_sites = problem.import_limit_kw.shape[0]
    for step in range(problem.grid.length):  # steps and sites are few here
        site_kw = np.bincount(problem.site_index, weights=power_kw[:, step], minlength=n_sites)
        assert np.all(site_kw <= problem.import_limit_kw + TOLERANCE)
        assert np.all(site_kw >= -problem.export_limit_kw - TOLERANCE)


def _shortfall_kwh(problem: Problem, power_kw: np.ndarray) -> np.ndarray:
    return np.maximum(problem.target_energy_kwh - final_energy_kwh(problem, power_kw), 0.0)


@FAST_SETTINGS
@given(problem=problems(limited_sites=False))
def test_fast_matches_the_lp_without_site_limits(problem: Problem) -> None:
    lp = LpPlanner().solve(problem)
    raw = FastPlanner().solve(problem)
    power_kw = FastPlanner().plan(problem).power_kw
    _check_guarantees(problem, power_kw)
    # The final cut has (next to) nothing to cut.
    np.testing.assert_allclose(power_kw, raw, atol=1e-9)
    assert np.all(_shortfall_kwh(problem, power_kw) <= lp.shortfall_kwh + 1e-3)
    fast = schedule_cost(problem, power_kw).objective_cny
    assert fast <= lp.objective_cny + EXACT_SHARE * abs(lp.objective_cny) + EXACT_CNY


@FAST_SETTINGS
@given(problem=problems(limited_sites=True))
def test_fast_keeps_site_limits(problem: Problem) -> None:
    # With shared site limits the vehicles are planned in turn, which is not optimal in
    # general (small adversarial cases can cost twice the LP); the 1% goal is held on the
    # realistic instance below and in benchmarks/bench_planners.py. Here: the guarantees,
    # and never an objective below the LP's (which would mean a broken limit).
    lp = LpPlanner().solve(problem)
    power_kw = FastPlanner().plan(problem).power_kw
    _check_guarantees(problem, power_kw)
    fast_short = _shortfall_kwh(problem, power_kw).sum()
    if fast_short < 1e-6 and lp.shortfall_kwh.sum() < 1e-6:
        fast = schedule_cost(problem, power_kw).objective_cny
        assert fast >= lp.objective_cny - 1e-4


def test_fast_rejects_no_passes() -> None:
    with pytest.raises(ValueError, match="passes must be >= 1"):
        FastPlanner(passes=0)


def shenzhen_day_ahead(n_vehicles: int) -> Problem:
    """The seeded Shenzhen fleet (July, V2G opt-ins) as one day-ahead problem on its grid."""
    scenario = resolve(
        ScenarioFile(
            simulation=SimulationSettings(vehicles_per_city=n_vehicles, cities=("Shenzhen",))
        )
    )
    case = synthetic_cases(scenario)[0]
    arrival, departure = case.grid.plugged_steps(case.fleet.arrival_s, case.fleet.departure_s)
    keep = np.flatnonzero(departure > arrival)  # a stay shorter than a step gets no step
    fleet = case.fleet.take(keep)
    prices = case.tariff.price_levels(case.grid)
    return Problem(
        grid=case.grid,
        control_steps=case.grid.length,
        vehicle_index=np.arange(keep.size, dtype=np.int64),
        site_index=fleet.site_index.copy(),
        energy_kwh=fleet.energy_arrival_kwh.copy(),
        energy_min_kwh=fleet.energy_min_kwh.copy(),
        energy_max_kwh=fleet.energy_max_kwh.copy(),
        target_energy_kwh=fleet.target_energy_kwh.copy(),
        max_charge_kw=fleet.max_charge_kw.copy(),
        max_discharge_kw=fleet.discharge_limit_kw.copy(),
        charge_efficiency=fleet.charge_efficiency.copy(),
        discharge_efficiency=fleet.discharge_efficiency.copy(),
        departure_step=departure[keep],
        arrival_step=arrival[keep],
        import_limit_kw=case.sites.import_limit_kw.copy(),
        export_limit_kw=case.sites.export_limit_kw.copy(),
        import_price_cny_per_kwh=prices.import_series(),
        export_price_cny_per_kwh=prices.export_series(),
        period_kind=prices.kind.copy(),
        base_load_kw=case.signals.base_load_kw.copy(),
        renewable_surplus_kw=case.signals.renewable_surplus_kw.copy(),
        degradation_cny_per_kwh=case.degradation_cny_per_kwh,
    )


def test_fast_is_within_one_percent_of_the_lp_on_a_synthetic_day() -> None:
    problem = shenzhen_day_ahead(1_000)
    assert np.isfinite(problem.import_limit_kw).all()  # the sites do bind here
    lp = LpPlanner().solve(problem)
    power_kw = FastPlanner().plan(problem).power_kw
    _check_guarantees(problem, power_kw)
    assert _shortfall_kwh(problem, power_kw).sum() <= lp.shortfall_kwh.sum() + 1e-3
    fast = schedule_cost(problem, power_kw).objective_cny
    assert fast <= lp.objective_cny + 0.01 * abs(lp.objective_cny)


def test_fast_in_the_twin_keeps_promises_at_shared_sites() -> None:
    # Re-planned at every step with only the plugged vehicles known, the fast planner used
    # to fill the home transformers' valley hours and leave later arrivals short (161 kWh
    # unmet against 95 unavoidable here); the urgent-energy guard keeps every promise.
    scenario = resolve(
        ScenarioFile(simulation=SimulationSettings(vehicles_per_city=1000, cities=("Shenzhen",)))
    )
    case = synthetic_cases(scenario)[0]
    run = Simulator(case, FastPlanner()).run()
    outcomes = session_outcomes(run)
    assert run.site_limit_violations == 0
    assert run.setpoint_cuts == 0
    np.testing.assert_allclose(outcomes.unmet_kwh, outcomes.unavoidable_kwh, atol=1e-3)
