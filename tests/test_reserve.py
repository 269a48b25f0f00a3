"""The fast planner keeping regulation headroom: priced, committed, never dearer than not."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from v2ghub.model import Problem, TimeGrid
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.reserve import fleet_headroom, regulation_objective

from .guarantees import check_guarantees, shortfall_kwh
from .strategies import problems

RESERVE_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _one_charger(price_cny_per_kw_h: float, commitment_kw: float = 0.0) -> Problem:
    """One charge-only car, 7 kW, lossless, plugged 4 hours, needing 7 kWh.

    Energy costs 0.3 CNY/kWh in the first hour and 0.5 after: without a regulation
    price it charges 7 kW in the first hour, which leaves no room to go up there.
    """
    one = np.ones(1)
    steps = 4
    priced = np.array([price_cny_per_kw_h, 0.0, 0.0, 0.0])
    return Problem(
        grid=TimeGrid(datetime(2025, 7, 16, tzinfo=UTC), timedelta(hours=1), steps),
        control_steps=steps,
        vehicle_index=np.zeros(1, dtype=np.int64),
        site_index=np.zeros(1, dtype=np.int64),
        energy_kwh=10.0 * one,
        energy_min_kwh=0.0 * one,
        energy_max_kwh=60.0 * one,
        target_energy_kwh=17.0 * one,
        max_charge_kw=7.0 * one,
        max_discharge_kw=0.0 * one,
        charge_efficiency=one,
        discharge_efficiency=one,
        departure_step=np.array([steps]),
        arrival_step=np.zeros(1, dtype=np.int64),
        import_limit_kw=np.array([np.inf]),
        export_limit_kw=np.array([np.inf]),
        import_price_cny_per_kwh=np.array([0.3, 0.5, 0.5, 0.5]),
        export_price_cny_per_kwh=np.zeros(steps),
        period_kind=np.zeros(steps, dtype=np.int8),
        base_load_kw=np.zeros(steps),
        renewable_surplus_kw=np.zeros(steps),
        regulation_price_cny_per_kw_h=priced,
        regulation_commitment_kw=np.array([commitment_kw, 0.0, 0.0, 0.0]),
    )


def test_without_a_headroom_price_the_plan_is_the_energy_plan() -> None:
    priced = _one_charger(0.0)
    plain = replace(priced, regulation_price_cny_per_kw_h=None, regulation_commitment_kw=None)
    np.testing.assert_array_equal(FastPlanner().plan(priced).power_kw, [[7.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(FastPlanner().plan(plain).power_kw, [[7.0, 0.0, 0.0, 0.0]])


def test_a_headroom_price_splits_the_first_hour_halfway() -> None:
    # At 1 CNY per kW-h of symmetric room, charging p kW in hour one keeps min(p, 7 - p):
    # best at p = 3.5 (3.5 CNY of room); the other 3.5 kWh cost 0.5 each later. Objective
    # 3.5 * 0.3 + 3.5 * 0.5 - 3.5 = -0.7 CNY, against 7 * 0.3 = 2.1 CNY without room.
    problem = _one_charger(1.0)
    power_kw = FastPlanner().plan(problem).power_kw
    steps = np.array([0], dtype=np.int64)
    objective, room = regulation_objective(problem, power_kw, steps)
    assert power_kw[0, 0] == pytest.approx(3.5, abs=1e-6)
    assert power_kw[0, 1:].sum() == pytest.approx(3.5, abs=1e-6)
    assert room.symmetric_kw[0] == pytest.approx(3.5, abs=1e-6)
    assert objective == pytest.approx(-0.7, abs=1e-6)


def test_a_cheap_headroom_price_leaves_the_energy_plan() -> None:
    # At 0.1 CNY per kW-h, 3.5 kW of room earns 0.35 CNY but moving 3.5 kWh to the dearer
    # hours costs 0.7 CNY: the plan keeps charging at full power in hour one.
    power_kw = FastPlanner().plan(_one_charger(0.1)).power_kw
    np.testing.assert_allclose(power_kw, [[7.0, 0.0, 0.0, 0.0]], atol=1e-9)


def test_a_commitment_is_kept_whatever_the_price() -> None:
    problem = _one_charger(0.0, commitment_kw=3.0)
    power_kw = FastPlanner().plan(problem).power_kw
    room = fleet_headroom(problem, power_kw, np.array([0], dtype=np.int64))
    assert room.symmetric_kw[0] >= 3.0 - 1e-6
    assert shortfall_kwh(problem, power_kw).sum() == pytest.approx(0.0, abs=1e-9)


def _priced(problem: Problem, price: float, every: int) -> Problem:
    horizon = problem.grid.length
    mask = np.arange(horizon) % every == 0
    return replace(problem, regulation_price_cny_per_kw_h=np.where(mask, price, 0.0))


@RESERVE_SETTINGS
@given(
    problem=problems(),
    price=st.floats(0.01, 5.0),
    every=st.integers(1, 4),
)
def test_keeping_headroom_never_costs_more_than_ignoring_it(
    problem: Problem, price: float, every: int
) -> None:
    priced = _priced(problem, price, every)
    steps = np.flatnonzero(priced.regulation_price > 0).astype(np.int64)
    ignoring = FastPlanner().plan(problem).power_kw
    power_kw = FastPlanner().plan(priced).power_kw
    check_guarantees(priced, power_kw)
    assert shortfall_kwh(priced, power_kw).sum() <= shortfall_kwh(priced, ignoring).sum() + 1e-4
    with_room, _ = regulation_objective(priced, power_kw, steps)
    without, _ = regulation_objective(priced, ignoring, steps)
    assert with_room <= without + 1e-6 * max(1.0, abs(without))
