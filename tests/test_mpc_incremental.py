"""Incremental receding-horizon planning: the held plan, what changed, the whole plans."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from v2ghub.model import CityCase, Problem, TimeGrid
from v2ghub.model.problem import Schedule
from v2ghub.model.tariff import PeriodKind
from v2ghub.model.valley_rule import ValleyRule
from v2ghub.planning import make_planner
from v2ghub.planning.check import ViolationKind, check
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.held_plan import HeldPlan, short_sites
from v2ghub.planning.lp import LpPlanner
from v2ghub.planning.mpc import RecedingHorizonPlanner
from v2ghub.planning.stepping import make_feasible
from v2ghub.sim.engine import Simulator

from .strategies import cases, problems

START = datetime(2025, 7, 16, 18, tzinfo=UTC)
HOUR = timedelta(hours=1)
HORIZON = 8
SITE_KINDS = (ViolationKind.SITE_IMPORT, ViolationKind.SITE_EXPORT)
FEW = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def plugged(
    *,
    energy_kwh: list[float],
    departure_step: list[int],
    site_index: list[int],
    import_limit_kw: list[float],
    max_charge_kw: list[float] | None = None,
    vehicle_index: list[int] | None = None,
    first_step: int = 0,
) -> Problem:
    """Vehicles plugged in now (step ``first_step`` of an evening), charge-only."""
    n = len(energy_kwh)
    horizon = HORIZON - first_step
    prices = np.array([1.2, 1.2, 0.7, 0.7, 0.3, 0.3, 0.3, 0.3])[first_step:]
    kinds = np.where(prices <= 0.3, PeriodKind.VALLEY, PeriodKind.PEAK).astype(np.int8)
    ones = np.ones(n)
    return Problem(
        grid=TimeGrid(START + first_step * HOUR, HOUR, horizon),
        control_steps=1,
        vehicle_index=np.array(vehicle_index if vehicle_index else range(n), dtype=np.int64),
        site_index=np.array(site_index, dtype=np.int64),
        energy_kwh=np.array(energy_kwh, dtype=np.float64),
        energy_min_kwh=ones * 5.0,
        energy_max_kwh=ones * 60.0,
        target_energy_kwh=ones * 50.0,
        max_charge_kw=np.array(max_charge_kw or [7.0] * n, dtype=np.float64),
        max_discharge_kw=np.zeros(n),
        charge_efficiency=ones * 0.9,
        discharge_efficiency=ones * 0.9,
        departure_step=np.array(departure_step, dtype=np.int64),
        arrival_step=np.zeros(n, dtype=np.int64),
        import_limit_kw=np.array(import_limit_kw, dtype=np.float64),
        export_limit_kw=np.full(len(import_limit_kw), np.inf),
        import_price_cny_per_kwh=prices,
        export_price_cny_per_kwh=prices * 0.5,
        period_kind=kinds,
        base_load_kw=np.linspace(300.0, 100.0, horizon),
        renewable_surplus_kw=np.zeros(horizon),
    )


def after_one_step(problem: Problem, power_kw: np.ndarray) -> Problem:
    """The next instant's problem when the first step of ``power_kw`` was lived exactly."""
    energy = problem.energy_kwh + problem.charge_efficiency * np.maximum(power_kw[:, 0], 0.0)
    return replace(
        problem,
        grid=problem.grid.sub_grid(1, problem.grid.length - 1),
        energy_kwh=energy,
        departure_step=problem.departure_step - 1,
        import_price_cny_per_kwh=problem.import_price_cny_per_kwh[1:],
        export_price_cny_per_kwh=problem.export_price_cny_per_kwh[1:],
        period_kind=problem.period_kind[1:],
        base_load_kw=problem.base_load_kw[1:],
        renewable_surplus_kw=problem.renewable_surplus_kw[1:],
    )


def with_arrival(problem: Problem, *, site: int, max_charge_kw: float) -> Problem:
    """``problem`` with one more vehicle (index 99), just plugged in at ``site``."""
    n = problem.n_vehicles

    def more(name: str, value: float) -> np.ndarray:
        return np.append(getattr(problem, name), value)

    rule = problem.valley_rule
    if rule is not None:  # a public charger
        rule = replace(rule, private=np.append(rule.private, False))
    return replace(
        problem,
        valley_rule=rule,
        vehicle_index=more("vehicle_index", 99).astype(np.int64),
        site_index=more("site_index", site).astype(np.int64),
        energy_kwh=more("energy_kwh", 10.0),
        energy_min_kwh=more("energy_min_kwh", 5.0),
        energy_max_kwh=more("energy_max_kwh", 60.0),
        target_energy_kwh=more("target_energy_kwh", 40.0),
        max_charge_kw=more("max_charge_kw", max_charge_kw),
        max_discharge_kw=more("max_discharge_kw", 0.0),
        charge_efficiency=more("charge_efficiency", 0.9),
        discharge_efficiency=more("discharge_efficiency", 0.9),
        departure_step=more("departure_step", problem.grid.length).astype(np.int64),
        arrival_step=np.zeros(n + 1, dtype=np.int64),
    )


def held_and_next(problem: Problem) -> tuple[np.ndarray, HeldPlan, Problem]:
    power_kw = FastPlanner().plan(replace(problem, control_steps=HORIZON)).power_kw
    return power_kw, HeldPlan.of(problem, power_kw), after_one_step(problem, power_kw)


TWO_SITES = plugged(
    energy_kwh=[10.0, 20.0, 30.0],
    departure_step=[8, 6, 8],
    site_index=[0, 0, 1],
    import_limit_kw=[np.inf, 14.0],
)


def test_vehicles_as_planned_keep_their_plan_and_nothing_is_replanned() -> None:
    power_kw, held, later = held_and_next(TWO_SITES)
    partial = held.partial(later, most_free_share=1.0)
    assert partial is not None
    assert partial.free_rows.size == 0
    np.testing.assert_allclose(partial.held_power_kw, power_kw[:, 1:])


def test_an_arrival_at_a_site_without_limit_is_planned_alone_against_the_held_load() -> None:
    power_kw, held, later = held_and_next(TWO_SITES)
    partial = held.partial(with_arrival(later, site=0, max_charge_kw=7.0), most_free_share=1.0)
    assert partial is not None
    assert partial.free_rows.tolist() == [3]
    assert partial.problem.vehicle_index.tolist() == [99]
    np.testing.assert_allclose(
        partial.problem.base_load_kw, later.base_load_kw + power_kw[:, 1:].sum(axis=0)
    )
    np.testing.assert_array_equal(partial.held_power_kw[3], 0.0)


def test_an_arrival_at_a_limited_site_gets_the_room_the_held_vehicles_leave() -> None:
    power_kw, held, later = held_and_next(TWO_SITES)
    arrived = with_arrival(later, site=1, max_charge_kw=10.0)
    partial = held.partial(arrived, most_free_share=1.0)
    assert partial is not None
    assert partial.free_rows.tolist() == [3]
    load = partial.problem.site_load_kw
    assert load is not None
    np.testing.assert_allclose(load[1], power_kw[2, 1:])  # vehicle 2 is held at site 1
    np.testing.assert_allclose(load[0], power_kw[:2, 1:].sum(axis=0))
    # Its plan keeps the site's limit with the held load, step by step.
    plan = FastPlanner().plan(replace(partial.problem, control_steps=HORIZON)).power_kw
    assert np.all(plan[0] + load[1] <= 14.0 + 1e-9)
    # Naming the site frees all its vehicles.
    wider = held.partial(arrived, most_free_share=1.0, free_sites=np.array([1]))
    assert wider is not None
    assert wider.free_rows.tolist() == [2, 3]


def test_a_vehicle_short_of_what_its_charger_allows_names_its_limited_site() -> None:
    # Site 1 (14 kW) holds a 7 kW vehicle charging flat out for its last two hours; an
    # arrival needing 30 kWh in three hours gets 7 + 7 + 14 kW (25.2 kWh stored): short,
    # though its 14 kW charger alone could store 37.8 kWh.
    urgent = plugged(
        energy_kwh=[10.0, 20.0, 10.0],
        departure_step=[8, 6, 3],
        site_index=[0, 0, 1],
        import_limit_kw=[np.inf, 14.0],
    )
    _, held, later = held_and_next(urgent)
    arrived = with_arrival(later, site=1, max_charge_kw=14.0)
    partial = held.partial(arrived, most_free_share=1.0)
    assert partial is not None
    free = partial.problem
    rushed = replace(free, departure_step=np.array([3]), target_energy_kwh=np.array([40.0]))
    plan = FastPlanner().plan(replace(rushed, control_steps=rushed.grid.length)).power_kw
    assert short_sites(rushed, plan).tolist() == [1]
    # It leaves at step 3: a whole plan at step 3 or later comes too late for it.
    assert short_sites(rushed, plan, leaving_by=3).tolist() == [1]
    assert short_sites(rushed, plan, leaving_by=2).tolist() == []
    # Without the held load it would not be short: nothing to name.
    alone = replace(rushed, site_load_kw=None)
    plan = FastPlanner().plan(replace(alone, control_steps=alone.grid.length)).power_kw
    assert short_sites(alone, plan).tolist() == []


def test_a_vehicle_off_its_plan_is_replanned_and_too_many_changes_replan_all() -> None:
    _, held, later = held_and_next(TWO_SITES)
    energy = later.energy_kwh.copy()
    energy[1] -= 0.5  # a demand-response cut, say
    moved = replace(later, energy_kwh=energy)
    partial = held.partial(moved, most_free_share=1.0)
    assert partial is not None
    assert partial.free_rows.tolist() == [1]
    assert held.partial(moved, most_free_share=0.2) is None


def test_only_a_later_instant_on_the_plans_grid_is_planned_by_what_changed() -> None:
    _, held, later = held_and_next(TWO_SITES)
    half_step = replace(later, grid=TimeGrid(START + HOUR / 2, HOUR, later.grid.length))
    assert held.partial(half_step, most_free_share=1.0) is None
    assert held.partial(TWO_SITES, most_free_share=1.0) is None  # the same instant


def test_the_held_charging_counts_as_metered_for_the_valley_rule() -> None:
    rule = ValleyRule(private=np.array([True, False, True]), valley_kwh=1.0, charged_kwh=2.0)
    power_kw, held, later = held_and_next(replace(TWO_SITES, valley_rule=rule))
    partial = held.partial(with_arrival(later, site=0, max_charge_kw=7.0), most_free_share=1.0)
    assert partial is not None
    assert partial.problem.valley_rule is not None
    charged = power_kw[:, 1:].clip(min=0.0)  # 1-hour steps: kW = kWh
    valley = later.period_kind == PeriodKind.VALLEY
    free_rule = partial.problem.valley_rule
    assert free_rule.private.tolist() == [False]  # the arrival's charger is public
    assert free_rule.charged_kwh == pytest.approx(2.0 + charged.sum())
    assert free_rule.valley_kwh == pytest.approx(1.0 + charged[:, valley].sum())
    assert free_rule.private_charged_kwh == pytest.approx(charged[[0, 2]].sum())


def test_problem_rows_keeps_the_horizon_and_the_forecast_rows_last() -> None:
    two = TWO_SITES.rows(np.array([2, 0]))
    assert two.vehicle_index.tolist() == [2, 0]
    assert two.energy_kwh.tolist() == [30.0, 10.0]
    assert two.grid == TWO_SITES.grid
    assert two.expected_count == 0
    np.testing.assert_array_equal(two.import_limit_kw, TWO_SITES.import_limit_kw)
    forecast = replace(TWO_SITES, expected_count=1)  # row 2 stands for sessions to come
    kept = forecast.rows(np.array([0, 2]))
    assert kept.expected_count == 1
    assert kept.n_plugged == 1
    assert kept.energy_kwh.tolist() == [10.0, 30.0]
    assert forecast.rows(np.array([1])).expected_count == 0
    with pytest.raises(ValueError, match="plugged rows first, then forecast rows"):
        forecast.rows(np.array([2, 0]))


def test_the_groups_expected_later_are_planned_afresh_beside_the_held_vehicles() -> None:
    power_kw, held, later = held_and_next(TWO_SITES)
    # Sessions expected at the limited site in two hours, for the rest of the horizon.
    expected = with_arrival(later, site=1, max_charge_kw=20.0)
    arrival = expected.arrival_step.copy()
    arrival[3] = 2
    expected = replace(
        expected,
        vehicle_index=np.append(later.vehicle_index, -1),
        arrival_step=arrival,
        expected_count=1,
    )
    partial = held.partial(expected, most_free_share=1.0)
    assert partial is not None
    assert partial.free_rows.tolist() == [3]  # the vehicles keep their plans
    assert partial.problem.expected_count == 1
    assert partial.problem.arrival_step.tolist() == [2]
    np.testing.assert_allclose(partial.held_power_kw[:3], power_kw[:, 1:])
    load = partial.problem.site_load_kw
    assert load is not None
    np.testing.assert_allclose(load[1], power_kw[2, 1:])
    # A forecast row short of its target names no site: it is no vehicle.
    never = np.zeros((4, expected.grid.length))
    assert short_sites(expected, never).tolist() == [1]  # vehicle 2 is short at site 1
    never[2] = 7.0
    assert short_sites(expected, never).tolist() == []


@FEW
@given(case=cases())
def test_incremental_mpc_in_the_twin_keeps_every_guarantee(case: CityCase) -> None:
    planner = make_planner("mpc", whole_plan_every=3)
    run = Simulator(case, planner, control_steps=1).run()
    assert run.setpoint_cuts == 0
    assert run.site_limit_violations == 0
    assert run.fallback_reasons == ()
    assert np.all(run.energy_final_kwh <= case.fleet.energy_max_kwh + 1e-6)
    assert np.all(run.energy_final_kwh >= case.fleet.energy_min_kwh - 1e-6)


def test_incremental_mpc_plans_between_whole_plans_and_delivers_as_the_whole() -> None:
    from v2ghub.twin import Scenario  # noqa: PLC0415 - the scenario is only needed here

    case = next(iter(Scenario.pilot_cities(cities=["Shenzhen"], vehicles_per_city=100).cases()))
    runs = {}
    planners = {}
    for every in (1, 4):
        planners[every] = make_planner("mpc", whole_plan_every=every)
        runs[every] = Simulator(case, planners[every]).run()
    assert isinstance(planners[4], RecedingHorizonPlanner)
    assert planners[1].partial_plans == 0  # type: ignore[attr-defined]
    incremental = planners[4]
    assert incremental.partial_plans > incremental.whole_plans
    assert runs[4].fallback_reasons == ()
    target = case.fleet.target_energy_kwh
    short = {
        every: float(np.maximum(target - run.energy_final_kwh, 0.0).sum())
        for every, run in runs.items()
    }
    assert short[4] <= short[1] + 1e-3


def test_the_planners_options_are_checked() -> None:
    with pytest.raises(ValueError, match="whole_plan_every must be >= 1, got 0"):
        RecedingHorizonPlanner(LpPlanner(), whole_plan_every=0)
    with pytest.raises(ValueError, match=r"most_free_share must lie within 0\.\.1, got 2"):
        RecedingHorizonPlanner(LpPlanner(), most_free_share=2)
    with pytest.raises(ValueError, match="peak_iterations must be >= 0, got -1"):
        FastPlanner(peak_iterations=-1)


@FEW
@given(problem=problems(limited_sites=True), data=st.data())
def test_every_planner_keeps_the_site_limits_with_the_sites_other_load(
    problem: Problem, data: st.DataObject
) -> None:
    # Load at each site, somewhere between its export and import limits, step by step.
    n_sites, horizon = problem.import_limit_kw.shape[0], problem.grid.length
    share = np.array(
        data.draw(
            st.lists(st.floats(-1.0, 1.0), min_size=n_sites * horizon, max_size=n_sites * horizon)
        )
    ).reshape(n_sites, horizon)
    load = np.where(
        share > 0,
        share * problem.import_limit_kw[:, None],
        share * problem.export_limit_kw[:, None],
    )
    loaded = replace(problem, site_load_kw=load)
    import_room, export_room = loaded.site_room_kw()
    for planner in (FastPlanner(), FastPlanner(peak_price_cny_per_kw=1.0), LpPlanner()):
        power_kw = planner.plan(loaded).power_kw
        site_kw = np.zeros((n_sites, power_kw.shape[1]))
        np.add.at(site_kw, loaded.site_index, power_kw)
        assert np.all(site_kw <= import_room[:, : site_kw.shape[1]] + 1e-6), planner.name
        assert np.all(-site_kw <= export_room[:, : site_kw.shape[1]] + 1e-6), planner.name
        assert not [
            v for v in check(loaded, Schedule(power_kw, planner.name)) if v.kind in SITE_KINDS
        ]
    # make_feasible cuts any plan into the room; check counts the load.
    wild_kw = problem.max_charge_kw[:, None] * np.ones((1, horizon))
    cut = make_feasible(loaded, wild_kw)
    site_kw = np.zeros((n_sites, horizon))
    np.add.at(site_kw, loaded.site_index, cut)
    assert np.all(site_kw <= np.maximum(import_room, 0.0) + 1e-6)
    kinds = {v.kind for v in check(loaded, Schedule(wild_kw, "wild"))}
    if np.any(site_kw_of(loaded, wild_kw) > import_room + 1e-3):
        assert ViolationKind.SITE_IMPORT in kinds


def site_kw_of(problem: Problem, power_kw: np.ndarray) -> np.ndarray:
    """Each site's summed power per step, with the rows plugged in only."""
    steps = np.arange(problem.grid.length)
    plugged = (steps >= problem.arrival_step[:, None]) & (steps < problem.departure_step[:, None])
    site_kw = np.zeros((problem.import_limit_kw.shape[0], problem.grid.length))
    np.add.at(site_kw, problem.site_index, np.where(plugged, power_kw, 0.0))
    return site_kw
