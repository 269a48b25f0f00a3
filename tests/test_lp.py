"""The exact optimiser: hand-worked cases, guarantees, and every planner held against it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from v2ghub.model import Problem, TimeGrid
from v2ghub.planning import make_planner
from v2ghub.planning.lp import LpPlanner
from v2ghub.planning.objective import final_energy_kwh, schedule_cost

from .guarantees import check_guarantees
from .strategies import problems

LP_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _one_vehicle(
    *,
    prices: list[float],
    energy_kwh: float = 20.0,
    target_kwh: float = 27.0,
    import_limit_kw: float = np.inf,
    max_discharge_kw: float = 0.0,
    export_prices: list[float] | None = None,
) -> Problem:
    steps = len(prices)
    one = np.ones(1)
    return Problem(
        grid=TimeGrid(datetime(2025, 7, 16, tzinfo=UTC), timedelta(hours=1), steps),
        control_steps=steps,
        vehicle_index=np.zeros(1, dtype=np.int64),
        site_index=np.zeros(1, dtype=np.int64),
        energy_kwh=one * energy_kwh,
        energy_min_kwh=one * 10.0,
        energy_max_kwh=one * 60.0,
        target_energy_kwh=one * target_kwh,
        max_charge_kw=one * 7.0,
        max_discharge_kw=one * max_discharge_kw,
        charge_efficiency=one * 1.0,
        discharge_efficiency=one * 1.0,
        departure_step=np.array([steps]),
        arrival_step=np.zeros(1, dtype=np.int64),
        import_limit_kw=one * import_limit_kw,
        export_limit_kw=one * np.inf,
        import_price_cny_per_kwh=np.array(prices),
        export_price_cny_per_kwh=np.array(export_prices if export_prices else prices),
        period_kind=np.zeros(steps, dtype=np.int8),
        base_load_kw=np.zeros(steps),
        renewable_surplus_kw=np.zeros(steps),
    )


def test_lp_charges_in_the_cheapest_hour() -> None:
    result = LpPlanner().solve(_one_vehicle(prices=[1.0, 0.2, 0.65]))
    np.testing.assert_allclose(result.power_kw, [[0.0, 7.0, 0.0]], atol=1e-6)
    assert result.objective_cny == pytest.approx(7.0 * 0.2)
    assert result.shortfall_kwh.tolist() == [0.0]


def test_lp_arbitrages_when_the_spread_pays() -> None:
    # Discharge 7 kWh at 1.5 in hour 0, then buy back 14 kWh at 0.2: ends at 27 kWh.
    result = LpPlanner().solve(
        _one_vehicle(prices=[1.5, 0.2, 0.2], max_discharge_kw=7.0, export_prices=[1.5, 0.1, 0.1])
    )
    np.testing.assert_allclose(result.power_kw, [[-7.0, 7.0, 7.0]], atol=1e-6)
    assert result.objective_cny == pytest.approx(-7 * 1.5 + 14 * 0.2)


def test_lp_reports_the_shortfall_a_site_forces() -> None:
    # The site gives 2 kW: 3 hours x 2 kW = 6 kWh of the 7 needed.
    result = LpPlanner().solve(_one_vehicle(prices=[1.0, 0.2, 0.65], import_limit_kw=2.0))
    np.testing.assert_allclose(result.power_kw, [[2.0, 2.0, 2.0]], atol=1e-6)
    assert result.shortfall_kwh[0] == pytest.approx(1.0, abs=1e-5)


def test_peak_price_flattens_the_peak() -> None:
    problem = _one_vehicle(prices=[0.2, 0.2, 0.2, 0.2], target_kwh=34.0)
    plain = LpPlanner().solve(problem)
    flattened = LpPlanner(peak_price_cny_per_kw=1.0).solve(problem)
    assert schedule_cost(problem, flattened.power_kw).peak_kw == pytest.approx(14.0 / 4)
    assert schedule_cost(problem, plain.power_kw).peak_kw >= 3.5 - 1e-9


@LP_SETTINGS
@given(problem=problems())
def test_lp_keeps_every_guarantee(problem: Problem) -> None:
    result = LpPlanner().solve(problem)
    check_guarantees(problem, result.power_kw)
    final = final_energy_kwh(problem, result.power_kw)
    np.testing.assert_allclose(
        np.maximum(problem.target_energy_kwh - final, 0.0), result.shortfall_kwh, atol=1e-4
    )
    if np.all(problem.departure_step > problem.arrival_step):
        assert result.objective_cny == pytest.approx(
            schedule_cost(problem, result.power_kw).objective_cny, abs=1e-4
        )


@pytest.mark.parametrize("name", ["uncontrolled", "tou", "v2g-rules"])
@LP_SETTINGS
@given(problem=problems(limited_sites=False))
def test_no_planner_beats_the_lp(name: str, problem: Problem) -> None:
    lp = LpPlanner().solve(problem)
    schedule = make_planner(name).plan(problem)
    check_guarantees(problem, schedule.power_kw)
    rules_final = final_energy_kwh(problem, schedule.power_kw)
    rules_short = np.maximum(problem.target_energy_kwh - rules_final, 0.0)
    # The LP delivers at least as much energy to every vehicle as any rule planner ...
    assert lp.shortfall_kwh.sum() <= rules_short.sum() + 1e-4
    # ... and, where both meet every target, at no higher cost.
    if rules_short.sum() < 1e-6 and lp.shortfall_kwh.sum() < 1e-6:
        rules_cost = schedule_cost(problem, schedule.power_kw).objective_cny
        assert lp.objective_cny <= rules_cost + 1e-4


def test_lp_never_plans_charging_and_discharging_at_once() -> None:
    # Discharge pays 1.22 at peak against 1.04 for import (Changzhou-like), no wear,
    # efficient chargers: buying and selling in the same step would pay if allowed.
    problem = _one_vehicle(
        prices=[1.04, 1.04, 0.26], max_discharge_kw=7.0, export_prices=[1.22, 1.22, 0.26]
    )
    problem = replace(
        problem,
        charge_efficiency=np.ones(1) * 0.98,
        discharge_efficiency=np.ones(1) * 0.98,
    )
    result = LpPlanner().solve(problem)
    # The objective the LP reports is what its net schedule really costs, or more.
    assert schedule_cost(problem, result.power_kw).objective_cny <= result.objective_cny + 1e-6
    final = final_energy_kwh(problem, result.power_kw)[0]
    assert final >= problem.target_energy_kwh[0] - 1e-6
    assert final <= problem.energy_max_kwh[0] + 1e-6
