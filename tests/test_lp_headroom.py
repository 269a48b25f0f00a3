"""The LP's regulation headroom term: absent when not asked, hand-worked, and deliverable."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from v2ghub.model import Problem, TimeGrid
from v2ghub.planning.lp import GridTerms, LpPlanner, LpResult, _Model
from v2ghub.planning.objective import final_energy_kwh, schedule_cost
from v2ghub.planning.reserve import (
    MISSED_COMMITMENT_CNY_PER_KW_H,
    REGULATION_DURATION_H,
    stored_energy_at_steps,
)
from v2ghub.regulation.capacity import Headroom, fit_sites, headroom

from .guarantees import check_guarantees, shortfall_kwh
from .strategies import problems
from .test_lp import _one_vehicle

FloatArray = npt.NDArray[np.float64]
HEADROOM_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# The interior point stops within its tolerances (about 1e-7 of the largest values).
ABS_KW = 1e-5
REL = 1e-6
PRICES_CNY_PER_KW_H = (0.0, 0.0, 0.3, 2.0, 20.0)


def _without_term(problem: Problem) -> Problem:
    return replace(problem, regulation_price_cny_per_kw_h=None, regulation_commitment_kw=None)


def _measured(problem: Problem, power_kw: FloatArray, step: int) -> Headroom:
    """What :func:`v2ghub.regulation.capacity.headroom` finds at ``step`` of a plan.

    Fed the planned power, the stored energy at the start of the step (the plan
    simulated), an hour's hold and the hours to departure, then fitted to the sites.
    The target is what the plan delivers (at most the target): a vehicle left short by
    its site can offer what keeps that delivery, as the LP counts it.
    """
    energy = stored_energy_at_steps(problem, power_kw[:, : step + 1])[:, step]
    real = np.arange(problem.n_vehicles) < problem.n_plugged
    plugged = real & (problem.arrival_step <= step) & (problem.departure_step > step)
    delivered = np.minimum(problem.target_energy_kwh, final_energy_kwh(problem, power_kw))
    room = headroom(
        planned_kw=power_kw[:, step],
        energy_kwh=energy,
        energy_min_kwh=problem.energy_min_kwh,
        energy_max_kwh=problem.energy_max_kwh,
        target_energy_kwh=delivered,
        max_charge_kw=problem.max_charge_kw,
        max_discharge_kw=problem.max_discharge_kw,
        charge_efficiency=problem.charge_efficiency,
        discharge_efficiency=problem.discharge_efficiency,
        hours_to_departure=np.where(
            plugged, (problem.departure_step - step) * problem.dt_h, 0.0
        ).astype(np.float64),
        duration_h=REGULATION_DURATION_H,
    )
    return fit_sites(
        room,
        planned_kw=power_kw[:, step],
        site_index=problem.site_index,
        import_limit_kw=problem.import_limit_kw,
        export_limit_kw=problem.export_limit_kw,
    )


def _assert_reported_consistently(problem: Problem, result: LpResult) -> None:
    """Missed commitment and objective are what the reported headroom implies."""
    missed = np.maximum(problem.regulation_commitment - result.regulation_kw, 0.0)
    np.testing.assert_allclose(result.regulation_missed_kw, missed, atol=1e-12)
    dt_h = problem.dt_h
    value = dt_h * float(problem.regulation_price @ result.regulation_kw)
    penalty = MISSED_COMMITMENT_CNY_PER_KW_H * dt_h * float(missed.sum())
    energy = schedule_cost(problem, result.power_kw).objective_cny
    assert result.objective_cny == pytest.approx(energy - value + penalty, rel=1e-6, abs=1e-4)


# 1. Without a price or a commitment the programme is the energy programme.


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems())
def test_without_price_or_commitment_the_programme_is_unchanged(problem: Problem) -> None:
    plain = _without_term(problem)
    zeros = np.zeros(problem.grid.length)
    unpriced = replace(plain, regulation_price_cny_per_kw_h=zeros, regulation_commitment_kw=zeros)
    before, after = _Model.build(plain, GridTerms()), _Model.build(unpriced, GridTerms())
    pairs = int((problem.departure_step - problem.arrival_step).sum())
    limited = np.isfinite(problem.import_limit_kw) | np.isfinite(problem.export_limit_kw)
    assert before.headroom is None
    assert after.headroom is None
    assert before.n_cols == after.n_cols == 3 * pairs + problem.n_vehicles
    n_rows = pairs + problem.n_vehicles + int(limited.sum()) * problem.grid.length
    assert before.n_rows == after.n_rows == n_rows
    np.testing.assert_array_equal(before.matrix.toarray(), after.matrix.toarray())
    np.testing.assert_array_equal(before.cost, after.cost)
    np.testing.assert_array_equal(before.row_lower, after.row_lower)
    np.testing.assert_array_equal(before.row_upper, after.row_upper)
    first, second = LpPlanner().solve(plain), LpPlanner().solve(unpriced)
    assert first.objective_cny == second.objective_cny
    np.testing.assert_array_equal(first.power_kw, second.power_kw)
    np.testing.assert_array_equal(second.regulation_kw, zeros)
    np.testing.assert_array_equal(second.regulation_missed_kw, zeros)


# 2. Hand-worked.


def test_a_priced_hour_keeps_the_headroom_worked_by_hand() -> None:
    # One lossless V2G car, 7 kW both ways, 30 kWh now, 44 kWh needed after 3 hours;
    # energy costs 1.0, 0.5, 0.8 CNY/kWh. Headroom pays 10 CNY per kW-hour in hour one.
    # Charging p kW in hour one: room up 7 - p; room down is held by the departure need
    # (after hour one only 2 h x 7 kW can still be added, so the car must hold
    # 44 - 14 = 30 kWh at the end of the hour): 30 + p - l >= 30, l <= p. So
    # R = min(p, 7 - p) = 3.5 at p = 3.5, then 7 kW in the cheap hour and 3.5 in the last.
    # Objective: 3.5 * 1.0 + 7 * 0.5 + 3.5 * 0.8 - 10 * 3.5 = -25.2 CNY (plain plan
    # [0, 7, 7] costs 9.1 and keeps no room: the car's need leaves none down).
    problem = replace(
        _one_vehicle(
            prices=[1.0, 0.5, 0.8],
            energy_kwh=30.0,
            target_kwh=44.0,
            max_discharge_kw=7.0,
            export_prices=[0.5, 0.25, 0.4],
        ),
        regulation_price_cny_per_kw_h=np.array([10.0, 0.0, 0.0]),
    )
    result = LpPlanner().solve(problem)
    np.testing.assert_allclose(result.power_kw, [[3.5, 7.0, 3.5]], atol=1e-6)
    np.testing.assert_allclose(result.regulation_kw, [3.5, 0.0, 0.0], atol=1e-6)
    np.testing.assert_array_equal(result.regulation_missed_kw, [0.0, 0.0, 0.0])
    assert result.objective_cny == pytest.approx(-25.2, abs=1e-5)
    room = _measured(problem, result.power_kw, 0)
    assert room.lower_total_kw == pytest.approx(3.5, abs=1e-6)
    assert room.raise_total_kw == pytest.approx(3.5, abs=1e-6)
    _assert_reported_consistently(problem, result)


def test_two_cars_share_the_hour_worked_by_hand() -> None:
    # Two identical charge-only cars, 7 kW, 20 kWh now, 27 kWh needed after 3 hours,
    # energy 0.2, 0.6, 1.0 CNY/kWh, headroom 5 CNY per kW-hour in hour one. The fleet at
    # total power P in hour one has room down P (no V2G) and up 14 - P: R = 7 at P = 7,
    # split between the cars any way (no energy row binds: each needs only 7 kWh of the
    # 21 it could take). The other 7 kWh in hour two at 0.6.
    # Objective: 7 * 0.2 + 7 * 0.6 - 5 * 7 = -29.4 CNY.
    one = _one_vehicle(prices=[0.2, 0.6, 1.0])
    two = replace(
        one,
        vehicle_index=np.arange(2, dtype=np.int64),
        site_index=np.zeros(2, dtype=np.int64),
        energy_kwh=np.repeat(one.energy_kwh, 2),
        energy_min_kwh=np.repeat(one.energy_min_kwh, 2),
        energy_max_kwh=np.repeat(one.energy_max_kwh, 2),
        target_energy_kwh=np.repeat(one.target_energy_kwh, 2),
        max_charge_kw=np.repeat(one.max_charge_kw, 2),
        max_discharge_kw=np.repeat(one.max_discharge_kw, 2),
        charge_efficiency=np.repeat(one.charge_efficiency, 2),
        discharge_efficiency=np.repeat(one.discharge_efficiency, 2),
        departure_step=np.repeat(one.departure_step, 2),
        arrival_step=np.repeat(one.arrival_step, 2),
        regulation_price_cny_per_kw_h=np.array([5.0, 0.0, 0.0]),
    )
    result = LpPlanner().solve(two)
    np.testing.assert_allclose(result.power_kw.sum(axis=0), [7.0, 7.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(result.regulation_kw, [7.0, 0.0, 0.0], atol=1e-6)
    assert result.objective_cny == pytest.approx(-29.4, abs=1e-5)
    _assert_reported_consistently(two, result)


# 3. Commitments.


def _committed(commitment_kw: float) -> Problem:
    # One charge-only car, 7 kW, 20 -> 27 kWh over 3 hours at 0.2, 0.6, 1.0 CNY/kWh: the
    # energy plan charges 7 kW in hour one, which leaves no room up there.
    return replace(
        _one_vehicle(prices=[0.2, 0.6, 1.0]),
        regulation_commitment_kw=np.array([commitment_kw, 0.0, 0.0]),
    )


def test_a_commitment_makes_the_plan_keep_headroom() -> None:
    plain = LpPlanner().solve(_committed(0.0))
    np.testing.assert_allclose(plain.power_kw, [[7.0, 0.0, 0.0]], atol=1e-6)
    assert _measured(_committed(0.0), plain.power_kw, 0).raise_total_kw == pytest.approx(
        0.0, abs=1e-6
    )
    # Keeping 3 kW both ways: charge at most 4 kW in hour one (room up 7 - p >= 3) and
    # at least 3 (room down p, no V2G); the cheapest is 4, then 3 kWh at 0.6.
    problem = _committed(3.0)
    result = LpPlanner().solve(problem)
    np.testing.assert_allclose(result.power_kw, [[4.0, 3.0, 0.0]], atol=1e-6)
    room = _measured(problem, result.power_kw, 0)
    assert min(room.lower_total_kw, room.raise_total_kw) >= 3.0 * (1 - REL)
    assert result.regulation_kw[0] >= 3.0 * (1 - REL)
    np.testing.assert_allclose(result.regulation_missed_kw, 0.0, atol=1e-9)
    assert result.shortfall_kwh[0] == 0.0
    _assert_reported_consistently(problem, result)


def test_an_impossible_commitment_is_reported_missed_and_the_plan_stays_within_limits() -> None:
    # 1,000 kW from one 7 kW car: the most it keeps is min(p, 7 - p) = 3.5 kW.
    problem = _committed(1000.0)
    result = LpPlanner().solve(problem)
    assert result.regulation_kw[0] == pytest.approx(3.5, abs=1e-5)
    assert result.regulation_missed_kw[0] == pytest.approx(996.5, abs=1e-5)
    np.testing.assert_array_equal(result.regulation_missed_kw[1:], [0.0, 0.0])
    check_guarantees(problem, result.power_kw)
    check_guarantees(problem, LpPlanner().plan(problem).power_kw)
    assert result.shortfall_kwh[0] == pytest.approx(0.0, abs=1e-6)
    _assert_reported_consistently(problem, result)


@HEADROOM_SETTINGS
@given(problem=problems(), share=st.floats(0.1, 1.0), data=st.data())
def test_a_commitment_the_fleet_can_keep_is_kept(
    problem: Problem, share: float, data: st.DataObject
) -> None:
    # What the fleet can keep in a step is found by pricing it high; committing a share
    # of that, unpriced, must be kept in full, as the twin's arithmetic measures it.
    step = data.draw(st.integers(0, problem.grid.length - 1))
    price = np.zeros(problem.grid.length)
    price[step] = 50.0
    most = LpPlanner().solve(replace(problem, regulation_price_cny_per_kw_h=price))
    commitment = np.zeros(problem.grid.length)
    commitment[step] = share * most.regulation_kw[step]
    committed = replace(problem, regulation_commitment_kw=commitment)
    result = LpPlanner().solve(committed)
    check_guarantees(committed, result.power_kw)
    np.testing.assert_allclose(result.regulation_missed_kw, 0.0, atol=ABS_KW)
    room = _measured(committed, result.power_kw, step)
    kept = min(room.lower_total_kw, room.raise_total_kw)
    assert kept >= commitment[step] * (1 - REL) - ABS_KW
    _assert_reported_consistently(committed, result)


# 4. What the LP reports is deliverable, by the twin's own arithmetic.


@HEADROOM_SETTINGS
@given(problem=problems(), data=st.data())
def test_the_reported_headroom_is_deliverable(problem: Problem, data: st.DataObject) -> None:
    horizon = problem.grid.length
    prices = data.draw(
        st.lists(st.sampled_from(PRICES_CNY_PER_KW_H), min_size=horizon, max_size=horizon)
    )
    commitments = data.draw(
        st.lists(st.sampled_from([0.0, 0.0, 0.0, 5.0, 40.0]), min_size=horizon, max_size=horizon)
    )
    priced = replace(
        problem,
        regulation_price_cny_per_kw_h=np.array(prices),
        regulation_commitment_kw=np.array(commitments),
    )
    result = LpPlanner().solve(priced)
    check_guarantees(priced, result.power_kw)
    # Headroom never costs delivery.
    plain = LpPlanner().solve(_without_term(problem))
    assert result.shortfall_kwh.sum() <= plain.shortfall_kwh.sum() + 1e-4
    np.testing.assert_allclose(
        shortfall_kwh(priced, result.power_kw), result.shortfall_kwh, atol=1e-4
    )
    asked = np.flatnonzero((priced.regulation_price > 0) | (priced.regulation_commitment > 0))
    for step in asked.tolist():  # a few steps
        room = _measured(priced, result.power_kw, step)
        deliverable = min(room.lower_total_kw, room.raise_total_kw)
        assert result.regulation_kw[step] <= deliverable * (1 + REL) + ABS_KW
    not_asked = np.setdiff1d(np.arange(horizon), asked)
    np.testing.assert_array_equal(result.regulation_kw[not_asked], 0.0)
    _assert_reported_consistently(priced, result)


# Steps shorter or longer than the hour: the window follows the plan's own steps.


def _window_end_room(
    problem: Problem, power_kw: FloatArray, step: int, *, down: bool
) -> FloatArray:
    """Per vehicle, the deflection (kW) it can hold an hour on top of the plan from ``step``.

    Simulated: the planned power of the window's steps moved by the deflection (as far as
    the charger goes), through the exact efficiency curve, must leave the stored energy at
    the window's end within its window and above what the delivery needs (refill at the
    vehicle's charger); the step's own power within the charger's limits. By bisection.
    """
    dt_h, hold = problem.dt_h, REGULATION_DURATION_H
    n_window = int(np.ceil(hold / dt_h - 1e-9))
    hours = np.full(n_window, dt_h)
    hours[-1] = hold - (n_window - 1) * dt_h
    energy = stored_energy_at_steps(problem, power_kw[:, : step + 1])[:, step]
    hours_left = (problem.departure_step - step) * dt_h
    real = np.arange(problem.n_vehicles) < problem.n_plugged
    offers = real & (problem.arrival_step <= step) & (problem.departure_step - step >= n_window)
    delivered = np.minimum(problem.target_energy_kwh, final_energy_kwh(problem, power_kw))
    refill = problem.max_charge_kw * problem.charge_efficiency
    floor = np.maximum(problem.energy_min_kwh, delivered - (hours_left - hold) * refill)
    planned = power_kw[:, step]
    limit = planned + problem.max_discharge_kw if down else problem.max_charge_kw - planned
    window = power_kw[:, step : min(step + n_window, problem.grid.length)]
    window = np.pad(window, ((0, 0), (0, n_window - window.shape[1])))

    def holds(deflection_kw: FloatArray) -> npt.NDArray[np.bool_]:
        moved = np.clip(
            window + (-deflection_kw if down else deflection_kw)[:, None],
            -problem.max_discharge_kw[:, None],
            problem.max_charge_kw[:, None],
        )
        stored = np.where(
            moved >= 0,
            moved * problem.charge_efficiency[:, None],
            moved / problem.discharge_efficiency[:, None],
        )
        end = energy + stored @ hours
        return np.asarray(end >= floor if down else end <= problem.energy_max_kwh, dtype=bool)

    low, high = np.zeros(problem.n_vehicles), np.maximum(limit, 0.0)
    for _ in range(60):  # bisection, every vehicle at once
        middle = (low + high) / 2
        ok = holds(middle)
        low, high = np.where(ok, middle, low), np.where(ok, high, middle)
    return np.where(offers & holds(low), low, 0.0)


@HEADROOM_SETTINGS
@given(problem=problems(), minutes=st.sampled_from([15, 40, 90]), data=st.data())
def test_headroom_over_shorter_or_longer_steps_is_deliverable(
    problem: Problem, minutes: int, data: st.DataObject
) -> None:
    grid = TimeGrid(problem.grid.start, timedelta(minutes=minutes), problem.grid.length)
    horizon = grid.length
    prices = data.draw(
        st.lists(st.sampled_from(PRICES_CNY_PER_KW_H), min_size=horizon, max_size=horizon)
    )
    priced = replace(problem, grid=grid, regulation_price_cny_per_kw_h=np.array(prices))
    result = LpPlanner().solve(priced)
    check_guarantees(priced, result.power_kw)
    for step in np.flatnonzero(priced.regulation_price > 0).tolist():  # a few steps
        lower = _window_end_room(priced, result.power_kw, step, down=True)
        upper = _window_end_room(priced, result.power_kw, step, down=False)
        room = fit_sites(
            Headroom(raise_kw=upper, lower_kw=lower),
            planned_kw=result.power_kw[:, step],
            site_index=priced.site_index,
            import_limit_kw=priced.import_limit_kw,
            export_limit_kw=priced.export_limit_kw,
        )
        deliverable = min(room.lower_total_kw, room.raise_total_kw)
        assert result.regulation_kw[step] <= deliverable * (1 + REL) + ABS_KW
