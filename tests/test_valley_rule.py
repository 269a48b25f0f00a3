"""The pilots' valley rule as a planning goal: the LP's rows, the fast planner's prices,
the twin's hindsight reach and its report."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.guarantees import check_guarantees, shortfall_kwh
from tests.strategies import START, problems
from v2ghub import Scenario, Twin
from v2ghub.model import Problem, TimeGrid
from v2ghub.model.tariff import PeriodKind
from v2ghub.model.valley_rule import ValleyRule
from v2ghub.planning import LpPlanner, make_planner
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.valley_rule_prices import rule_miss_kwh
from v2ghub.sim.valley_reach import highest_share

FloatArray = np.ndarray

# Valley 0-4, flat 4-8, peak 8-12 (hourly steps); the valley is the cheapest.
KINDS = np.array([0] * 4 + [1] * 4 + [2] * 4, dtype=np.int8)
PRICES = np.array([0.3] * 4 + [0.65] * 4 + [1.1] * 4)


def _problem(**overrides: object) -> Problem:
    """Three vehicles plugged all day: each needs 20 kWh, one at a home charger.

    Without the rule the planners charge where it is cheapest, which is the valley, so
    the rule only binds once the valley's import is made dearer than the flat steps."""
    n = 3
    fields: dict[str, object] = {
        "grid": TimeGrid(START, timedelta(hours=1), 12),
        "control_steps": 12,
        "vehicle_index": np.arange(n, dtype=np.int64),
        "site_index": np.zeros(n, dtype=np.int64),
        "energy_kwh": np.full(n, 20.0),
        "energy_min_kwh": np.full(n, 10.0),
        "energy_max_kwh": np.full(n, 60.0),
        "target_energy_kwh": np.full(n, 40.0),
        "max_charge_kw": np.full(n, 7.0),
        "max_discharge_kw": np.zeros(n),
        "charge_efficiency": np.full(n, 1.0),
        "discharge_efficiency": np.full(n, 1.0),
        "departure_step": np.full(n, 12, dtype=np.int64),
        "arrival_step": np.zeros(n, dtype=np.int64),
        "import_limit_kw": np.array([np.inf]),
        "export_limit_kw": np.array([np.inf]),
        # The valley is dear and the flat steps cheap: without the rule, nothing charges
        # in the valley.
        "import_price_cny_per_kwh": np.array([0.9] * 4 + [0.3] * 4 + [1.1] * 4),
        "export_price_cny_per_kwh": np.zeros(12),
        "period_kind": KINDS,
        "base_load_kw": np.zeros(12),
        "renewable_surplus_kw": np.zeros(12),
        "valley_rule": ValleyRule(private=np.array([True, False, False])),
    }
    fields.update(overrides)
    return Problem(**fields)  # type: ignore[arg-type]


def _shares(problem: Problem, power_kw: FloatArray) -> tuple[float, float]:
    assert problem.valley_rule is not None
    charged = np.maximum(power_kw, 0.0)
    valley = problem.period_kind == PeriodKind.VALLEY
    private = problem.valley_rule.private
    overall = charged[:, valley].sum() / charged.sum()
    private_share = charged[private][:, valley].sum() / charged[private].sum()
    return float(overall), float(private_share)


@pytest.mark.parametrize("name", ["lp", "fast", "mpc-lp", "mpc"])
def test_planners_meet_the_rule_the_prices_work_against(name: str) -> None:
    problem = _problem()
    assert problem.valley_rule is not None
    plain = make_planner(name).plan(problem).power_kw
    kept = make_planner(f"{name}+rules").plan(problem).power_kw
    assert _shares(problem, plain)[0] == pytest.approx(0.0, abs=1e-6)
    overall, private = _shares(problem, kept)
    assert overall >= 0.6 - 1e-6
    assert private >= 0.8 - 1e-6
    assert rule_miss_kwh(problem, problem.valley_rule, kept) == pytest.approx((0, 0), abs=1e-5)
    # Every target is still met, within every limit.
    check_guarantees(problem, kept)
    assert shortfall_kwh(problem, kept).max() == pytest.approx(0.0, abs=1e-5)


def test_the_rule_counts_what_was_metered_before_the_horizon() -> None:
    # Earlier in the day 100 kWh were charged outside the valley: to reach 60% overall the
    # horizon must put 150 kWh more in the valley than outside, more than three vehicles can
    # (3 x 28 kWh of valley charging at most): the LP reaches what it can and reports the miss.
    rule = ValleyRule(private=np.zeros(3, dtype=np.bool_), charged_kwh=100.0)
    problem = _problem(valley_rule=rule)
    power_kw = LpPlanner(keep_valley_rule=True).plan(problem).power_kw
    charged = np.maximum(power_kw, 0.0)
    assert charged[:, :4].sum() == pytest.approx(3 * 4 * 7.0, rel=1e-6)  # the whole valley
    miss_overall, _ = rule_miss_kwh(problem, rule, power_kw)
    valley_kwh = 84.0
    charged_kwh = 100.0 + float(charged.sum())
    assert miss_overall == pytest.approx(0.6 * charged_kwh - valley_kwh, rel=1e-6)


def test_rule_keeping_planners_are_named_and_described() -> None:
    for name in ("lp", "fast", "mpc", "mpc-lp"):
        planner = make_planner(f"{name}+rules")
        assert planner.name == f"{name}+rules"
        assert planner.capabilities.valley_rule is True  # type: ignore[attr-defined]
        assert make_planner(name).capabilities.valley_rule is False  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"unknown planner 'tou\+rules' \(known: .*fast\+rules"):
        make_planner("tou+rules")


def test_a_per_vehicle_wear_price_steers_who_discharges() -> None:
    # Two V2G vehicles with energy to spare and a paid peak: only the one whose wear costs
    # less than the export price discharges.
    problem = _problem(
        energy_kwh=np.full(3, 50.0),
        target_energy_kwh=np.full(3, 20.0),
        max_discharge_kw=np.array([7.0, 7.0, 0.0]),
        import_price_cny_per_kwh=PRICES,
        export_price_cny_per_kwh=np.array([0.0] * 8 + [1.0] * 4),
        degradation_cny_per_kwh=np.array([0.2, 2.0, 0.2]),
        valley_rule=None,
    )
    for planner in (LpPlanner(), FastPlanner()):
        power_kw = planner.plan(problem).power_kw
        assert power_kw[0, 8:].min() == pytest.approx(-7.0, abs=1e-6), planner.name
        assert power_kw[1].min() == pytest.approx(0.0, abs=1e-6), planner.name


def _with_rule(problem: Problem, private: list[bool]) -> Problem:
    return replace(problem, valley_rule=ValleyRule(private=np.array(private, dtype=np.bool_)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems(limited_sites=False), data=st.data())
def test_keeping_the_rule_never_lowers_the_share_where_it_is_reachable(
    problem: Problem, data: st.DataObject
) -> None:
    """Where the exact LP can meet the rule (heavily penalised), the rule-keeping planners
    meet it, and never reach less than they would without the rule."""
    private = data.draw(
        st.lists(st.booleans(), min_size=problem.n_vehicles, max_size=problem.n_vehicles)
    )
    problem = _with_rule(problem, private)
    rule = problem.valley_rule
    assert rule is not None
    strict = replace(problem, valley_rule=replace(rule, penalty_cny_per_kwh=1e3))
    reachable = (
        max(rule_miss_kwh(strict, rule, LpPlanner(keep_valley_rule=True).plan(strict).power_kw))
        <= 1e-4
    )
    for name in ("lp", "fast"):
        plain = make_planner(name).plan(problem).power_kw
        kept = make_planner(f"{name}+rules").plan(problem).power_kw
        check_guarantees(problem, kept)
        # Delivery first: the rule never leaves a vehicle shorter than the plain plan.
        assert shortfall_kwh(problem, kept).sum() <= shortfall_kwh(problem, plain).sum() + 1e-4
        plain_miss = rule_miss_kwh(problem, rule, plain)
        kept_miss = rule_miss_kwh(problem, rule, kept)
        if reachable:
            assert max(kept_miss) <= 1e-3, (name, kept_miss, plain_miss)
        assert sum(kept_miss) <= sum(plain_miss) + 1e-4, (name, kept_miss, plain_miss)


def test_the_reach_counts_valley_hours_chargers_and_site_limits() -> None:
    # Each vehicle can take 4 h x 7 kW = 28 kWh in the valley (more than its 20 kWh need,
    # which counts: charging is what the rule counts) and needs nothing outside it.
    problem = _problem(valley_rule=None)
    everyone = np.ones(3, dtype=np.bool_)
    assert highest_share(problem, everyone) == pytest.approx(1.0)
    # A 10-kW site takes 40 kWh in the valley; the other 20 kWh of need come outside it.
    limited = replace(problem, import_limit_kw=np.array([10.0]), export_limit_kw=np.array([10.0]))
    assert highest_share(limited, everyone) == pytest.approx(40 / 60)
    # Vehicles that leave before the valley cannot charge in it at all.
    late = replace(problem, arrival_step=np.full(3, 4, dtype=np.int64))
    assert highest_share(late, everyone) == pytest.approx(0.0)
    # The private chargers' reach counts their sessions only.
    mixed = replace(problem, arrival_step=np.array([0, 4, 4], dtype=np.int64))
    assert highest_share(mixed, np.array([True, False, False])) == pytest.approx(1.0)
    assert highest_share(mixed, everyone) == pytest.approx(28 / (28 + 40))


def test_the_twin_reports_the_rule_its_reach_and_its_cost(tmp_path: Path) -> None:
    scenario = Scenario.pilot_cities(cities=["Shenzhen"], vehicles_per_city=300)
    result = Twin(scenario, planners=["fast", "fast+rules"]).run()
    plain = result.metrics("Shenzhen", "fast")
    kept = result.metrics("Shenzhen", "fast+rules")
    for m in (plain, kept):
        assert 0.6 <= m.valley_share_reachable <= 1.0
        assert m.valley_share_reachable >= m.valley_share - 1e-9
        assert m.valley_share_private_reachable >= m.valley_share_private - 1e-9
    assert kept.valley_share >= 0.6
    assert kept.valley_rule_cost_cny == kept.owner_cost_cny - plain.owner_cost_cny
    assert plain.valley_rule_cost_cny is None
    result.write(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    city = summary["planners"]["fast+rules"]["cities"]["Shenzhen"]
    assert city["valley_share_reachable"] == pytest.approx(kept.valley_share_reachable, abs=1e-6)
    assert city["valley_rule_reachable"] is True
    assert city["valley_rule_cost_cny"] == str(kept.valley_rule_cost_cny)
    report = tmp_path / "report.html"
    result.report(report)
    text = report.read_text(encoding="utf-8")
    assert "<h2>The pilots' valley rule</h2>" in text
    assert "fast+rules met the rule in 1 of 1 cities" in text


def test_a_scenario_with_pilot_rules_runs_the_rule_keepers_beside_the_others() -> None:
    scenario = Scenario.pilot_cities(cities=["Shenzhen"], vehicles_per_city=100).replace(
        planners=["tou", "fast", "mpc"], pilot_rules=True
    )
    assert scenario.planners == ("tou", "fast", "fast+rules", "mpc", "mpc+rules")
