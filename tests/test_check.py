"""The one checked path: check() finds every broken guarantee, plan_safely() falls back
with the reason, plan_checked() refuses."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2ghub import (
    PlannerCapabilities,
    PlanningError,
    Problem,
    Schedule,
    ViolationKind,
    capabilities_of,
    check,
    plan_checked,
    plan_safely,
)
from v2ghub.planning import PLANNERS, UncontrolledPlanner, make_planner
from v2ghub.scenarios.examples import small_problem

from .strategies import problems


def _schedule(power_kw: np.ndarray) -> Schedule:
    return Schedule(power_kw=power_kw, planner="hand")


def _kinds(problem: Problem, power_kw: np.ndarray) -> set[ViolationKind]:
    return {v.kind for v in check(problem, _schedule(power_kw))}


@settings(max_examples=25, deadline=None)
@given(problem=problems())
@pytest.mark.parametrize("name", [n for n in PLANNERS if n not in ("lp", "mpc-lp")])
def test_every_planner_passes_the_check(name: str, problem: Problem) -> None:
    assert check(problem, make_planner(name).plan(problem)) == []


@settings(max_examples=10, deadline=None)
@given(problem=problems())
def test_the_exact_planner_passes_the_check(problem: Problem) -> None:
    assert check(problem, make_planner("lp").plan(problem)) == []


def test_each_broken_guarantee_is_named_with_where_and_how_much() -> None:
    problem = small_problem()  # 3 vehicles, 8 hourly steps; site 0 imports <= 12 kW
    quiet = np.zeros((3, 8))
    assert _kinds(problem, quiet) == set()

    unplugged = quiet.copy()
    unplugged[1, 0] = 1.0  # vehicle 1 arrives at step 2
    assert _kinds(problem, unplugged) == {ViolationKind.UNPLUGGED}

    fast = quiet.copy()
    fast[2, 1] = 11.5  # vehicle 2 charges at most 11 kW
    (violation,) = check(problem, _schedule(fast))
    assert (violation.kind, violation.row, violation.step) == (ViolationKind.CHARGE_LIMIT, 2, 1)
    assert violation.excess == pytest.approx(0.5)
    assert str(violation) == "above charging limit at row 2, step 1 by 0.5"

    no_v2g = quiet.copy()
    no_v2g[1, 3] = -1.0  # vehicle 1 did not opt in to V2G
    assert _kinds(problem, no_v2g) == {ViolationKind.DISCHARGE_LIMIT}

    site = quiet.copy()
    site[0, 3], site[1, 3] = 7.0, 7.0  # 14 kW at site 0, whose import limit is 12 kW
    (violation,) = check(problem, _schedule(site))
    assert (violation.kind, violation.site, violation.step) == (ViolationKind.SITE_IMPORT, 0, 3)
    assert violation.excess == pytest.approx(2.0)

    drained = quiet.copy()
    drained[2, :6] = -11.0  # 60 kWh stored, floor 15 kWh: the fifth hour goes below it
    kinds = _kinds(problem, drained)
    assert kinds == {ViolationKind.ENERGY_BELOW_WINDOW}

    overfull = quiet.copy()
    overfull[2, :6] = 11.0  # 60 kWh stored, ceiling 71.25 kWh
    assert _kinds(problem, overfull) == {ViolationKind.ENERGY_ABOVE_WINDOW}

    nan = quiet.copy()
    nan[0, 0] = np.nan
    assert _kinds(problem, nan) == {ViolationKind.NOT_FINITE}
    assert _kinds(problem, np.zeros((2, 8))) == {ViolationKind.SHAPE}


def test_a_vehicle_below_its_window_may_charge_back_into_it() -> None:
    problem = small_problem()
    low = replace(problem, energy_kwh=np.array([5.0, 15.0, 10.0]))  # below their floors
    power = np.zeros((3, 8))
    power[0, 0] = 7.0  # 5 + 6.65 kWh: still below its 12 kWh floor
    assert check(low, _schedule(power)) == []
    power[0, 1] = -1.0  # discharging while still below the floor is not
    assert _kinds(low, power) == {ViolationKind.ENERGY_BELOW_WINDOW}


def test_only_the_steps_asked_for_are_checked() -> None:
    problem = small_problem()
    power = np.zeros((3, 8))
    power[2, 4] = 11.5  # half a kW above its charger, at the fifth step
    assert check(problem, _schedule(power), steps=4) == []
    assert _kinds(problem, power) == {ViolationKind.CHARGE_LIMIT}


def test_counts_every_case_and_keeps_the_worst() -> None:
    problem = small_problem()
    power = np.zeros((3, 8))
    power[0, 0:8] = 7.5
    power[0, 4] = 9.0
    (violation,) = [v for v in check(problem, _schedule(power)) if v.kind == "above charging limit"]
    assert (violation.count, violation.step) == (8, 4)
    assert violation.excess == pytest.approx(2.0)


class _Reckless:
    name = "reckless"

    def plan(self, problem: Problem) -> Schedule:
        return _schedule(np.full((problem.n_vehicles, problem.grid.length), 100.0))


class _Crashing:
    name = "crashing"

    def plan(self, problem: Problem) -> Schedule:
        raise RuntimeError("solver crashed")


class _Slow:
    name = "slow"

    def plan(self, problem: Problem) -> Schedule:
        time.sleep(2.0)
        return UncontrolledPlanner().plan(problem)


def test_plan_safely_falls_back_to_safe_charging_with_the_reason() -> None:
    problem = small_problem()
    safe = UncontrolledPlanner().plan(problem).power_kw
    broken = plan_safely(_Reckless(), problem)
    assert broken.planner == "safe-fallback"
    assert broken.fallback_reason is not None
    assert broken.fallback_reason.startswith("planner 'reckless' broke a guarantee: ")
    assert "above charging limit at row 0, step 0 by 93 (" in broken.fallback_reason
    np.testing.assert_array_equal(broken.power_kw, safe)
    crashed = plan_safely(_Crashing(), problem)
    assert crashed.fallback_reason == "planner 'crashing' failed: RuntimeError: solver crashed"
    slow = plan_safely(_Slow(), problem, timeout_s=0.05)
    assert slow.fallback_reason == "planner 'slow' timed out after 0.05 s"
    assert check(problem, slow) == []


def test_plan_safely_returns_a_good_schedule_untouched() -> None:
    problem = small_problem()
    planner = make_planner("fast")
    schedule = plan_safely(planner, problem, timeout_s=60)
    assert schedule.fallback_reason is None
    np.testing.assert_array_equal(schedule.power_kw, planner.plan(problem).power_kw)


def test_plan_checked_refuses_a_broken_schedule_and_passes_errors_on() -> None:
    problem = small_problem()
    with pytest.raises(PlanningError, match=r"^planner 'reckless' broke a guarantee: power while"):
        plan_checked(_Reckless(), problem)
    with pytest.raises(RuntimeError, match="solver crashed"):
        plan_checked(_Crashing(), problem)


def test_make_planner_takes_keyword_options_and_names_unknown_ones() -> None:
    mpc = make_planner("mpc", peak_price_cny_per_kw=2.0, seed=3)
    assert mpc.name == "mpc"
    assert capabilities_of(mpc).peak_price
    assert capabilities_of(make_planner("lp")).max_sessions == 2_000
    assert capabilities_of(make_planner("tou")) == PlannerCapabilities()
    with pytest.raises(ValueError, match=r"planner 'tou' takes no option 'seed' \(takes: no"):
        make_planner("tou", seed=1)
    with pytest.raises(ValueError, match=r"unknown planner 'fastest' \(known: uncontrolled, "):
        make_planner("fastest")


def _reference_kinds(problem: Problem, power: np.ndarray, tol: float) -> set[ViolationKind]:
    """The guarantees as plain array arithmetic: the oracle the compiled check must match."""
    steps = np.arange(power.shape[1])
    plugged = (steps >= problem.arrival_step[:, None]) & (steps < problem.departure_step[:, None])
    kinds = set()
    if np.any(~plugged & (power != 0)):
        kinds.add(ViolationKind.UNPLUGGED)
    if np.any(power - problem.max_charge_kw[:, None] > tol):
        kinds.add(ViolationKind.CHARGE_LIMIT)
    if np.any(-power - problem.max_discharge_kw[:, None] > tol):
        kinds.add(ViolationKind.DISCHARGE_LIMIT)
    stored = np.where(
        power > 0,
        power * problem.charge_efficiency[:, None],
        power / problem.discharge_efficiency[:, None],
    )
    path = problem.energy_kwh[:, None] + np.cumsum(stored * problem.dt_h, axis=1)
    if np.any((problem.energy_min_kwh[:, None] - path > tol) & (power < 0)):
        kinds.add(ViolationKind.ENERGY_BELOW_WINDOW)
    if np.any((path - problem.energy_max_kwh[:, None] > tol) & (power > 0)):
        kinds.add(ViolationKind.ENERGY_ABOVE_WINDOW)
    n_sites = problem.import_limit_kw.shape[0]
    for step in range(power.shape[1]):
        site_kw = np.bincount(problem.site_index, weights=power[:, step], minlength=n_sites)
        if np.any(site_kw - problem.import_limit_kw > tol):
            kinds.add(ViolationKind.SITE_IMPORT)
        if np.any(-site_kw - problem.export_limit_kw > tol):
            kinds.add(ViolationKind.SITE_EXPORT)
    return kinds


@settings(max_examples=200, deadline=None)
@given(problem=problems(), seed=st.integers(0, 2**32 - 1), order=st.sampled_from("CF"))
def test_the_compiled_check_finds_what_plain_arithmetic_finds(
    problem: Problem, seed: int, order: str
) -> None:
    rng = np.random.default_rng(seed)
    shape = (problem.n_vehicles, problem.grid.length)
    scale = np.maximum(problem.max_charge_kw, problem.max_discharge_kw)[:, None]
    power = rng.uniform(-1.2, 1.2, size=shape) * scale
    power[rng.random(shape) < 0.5] = 0.0
    power = np.asfortranarray(power) if order == "F" else np.ascontiguousarray(power)
    found = {v.kind for v in check(problem, _schedule(power), tolerance_kw=1e-5)}
    assert found == _reference_kinds(problem, power, 1e-5)
