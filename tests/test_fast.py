"""The fast planner: its guarantees, and its cost held against the exact LP."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from v2ghub.model import Problem
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.lp import LpPlanner
from v2ghub.planning.objective import schedule_cost
from v2ghub.scenarios.build import synthetic_cases
from v2ghub.scenarios.config import ScenarioFile, SimulationSettings, resolve
from v2ghub.scenarios.day_ahead import case_day_ahead_problem
from v2ghub.sim.engine import Simulator
from v2ghub.sim.metrics import session_outcomes

from .guarantees import check_guarantees, shortfall_kwh
from .strategies import problems

FAST_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# Without site limits each vehicle's plan is its exact optimum: only rounding remains.
EXACT_SHARE, EXACT_CNY = 1e-6, 1e-4


@FAST_SETTINGS
@given(problem=problems(limited_sites=False))
def test_fast_matches_the_lp_without_site_limits(problem: Problem) -> None:
    lp = LpPlanner().solve(problem)
    raw = FastPlanner().solve(problem)
    power_kw = FastPlanner().plan(problem).power_kw
    check_guarantees(problem, power_kw)
    # The final cut has (next to) nothing to cut.
    np.testing.assert_allclose(power_kw, raw, atol=1e-9)
    assert np.all(shortfall_kwh(problem, power_kw) <= lp.shortfall_kwh + 1e-3)
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
    check_guarantees(problem, power_kw)
    fast_short = shortfall_kwh(problem, power_kw).sum()
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
    return case_day_ahead_problem(synthetic_cases(scenario)[0])


def test_fast_is_within_one_percent_of_the_lp_on_a_synthetic_day() -> None:
    problem = shenzhen_day_ahead(1_000)
    assert np.isfinite(problem.import_limit_kw).all()  # the sites do bind here
    lp = LpPlanner().solve(problem)
    power_kw = FastPlanner().plan(problem).power_kw
    check_guarantees(problem, power_kw)
    assert shortfall_kwh(problem, power_kw).sum() <= lp.shortfall_kwh.sum() + 1e-3
    fast = schedule_cost(problem, power_kw).objective_cny
    assert fast <= lp.objective_cny + 0.01 * abs(lp.objective_cny)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems(limited_sites=True))
def test_fast_delivers_at_shared_sites_about_as_much_as_the_lp(problem: Problem) -> None:
    # Charge-only fleets at limited sites: where the LP delivers every target, the fast
    # planner's first pass and its fills deliver them too, up to a little (worst seen over
    # 800 cases: 0.18 kWh). Where no plan can deliver all, the two may favour different
    # vehicles (the LP the most efficient ones), so those cases are not compared.
    problem = replace(problem, max_discharge_kw=np.zeros(problem.n_vehicles))
    lp = shortfall_kwh(problem, LpPlanner().plan(problem).power_kw).sum()
    assume(lp < 1e-6)
    fast = shortfall_kwh(problem, FastPlanner().plan(problem).power_kw).sum()
    assert fast <= 0.5


def test_fast_in_the_twin_keeps_promises_at_shared_sites() -> None:
    # Re-planned at every step with only the plugged vehicles known, the fast planner used
    # to crowd the home transformers' last valley hours and leave vehicles short (161 kWh
    # unmet against 95 unavoidable here); its first pass's site fills keep every promise.
    scenario = resolve(
        ScenarioFile(simulation=SimulationSettings(vehicles_per_city=1000, cities=("Shenzhen",)))
    )
    case = synthetic_cases(scenario)[0]
    run = Simulator(case, FastPlanner()).run()
    outcomes = session_outcomes(run)
    assert run.site_limit_violations == 0
    assert run.setpoint_cuts == 0
    np.testing.assert_allclose(outcomes.unmet_kwh, outcomes.unavoidable_kwh, atol=1e-3)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems(limited_sites=True), data=st.data())
def test_fast_with_a_short_control_interval_keeps_the_window(
    problem: Problem, data: st.DataObject
) -> None:
    # In the twin only the first control steps are applied, and they put urgent energy
    # first; the whole returned schedule must still keep every limit.
    control_steps = data.draw(st.integers(1, problem.grid.length - 1))
    power_kw = FastPlanner().plan(replace(problem, control_steps=control_steps)).power_kw
    check_guarantees(problem, power_kw)
