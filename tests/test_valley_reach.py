"""The valley rule's hindsight reach: exact programmes with the site limits, the quick
bound above them, and the report's verdicts."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from tests.guarantees import shortfall_kwh
from tests.strategies import START, problems
from v2ghub import Scenario, Twin
from v2ghub.model import Problem, TimeGrid
from v2ghub.model.tariff import PeriodKind
from v2ghub.model.valley_rule import ValleyRule, valley_steps
from v2ghub.planning import LpPlanner
from v2ghub.report.valley_rule_section import VERDICTS, rule_verdict
from v2ghub.sim.metrics import CityMetrics
from v2ghub.sim.valley_reach import (
    EXACT_MAX_SESSIONS,
    bounded_share,
    highest_share,
    settled,
    valley_reach,
)

# Zero of each field's type, for metrics of which only the valley rule's fields matter.
_ZERO: dict[str, Any] = {
    "str": "",
    "int": 0,
    "float": 0.0,
    "bool": False,
    "Decimal": Decimal(0),
    "Decimal | None": None,
}


def _home_site(**overrides: object) -> Problem:
    """Three home chargers of 7 kW on a 10-kW transformer, plugged 8 hourly steps of
    which the first 4 are valley hours; each needs 20 kWh; the first opts in to V2G but
    arrives at its floor, so it has nothing to give before it has charged."""
    n = 3
    fields: dict[str, object] = {
        "grid": TimeGrid(START, timedelta(hours=1), 8),
        "control_steps": 8,
        "vehicle_index": np.arange(n, dtype=np.int64),
        "site_index": np.zeros(n, dtype=np.int64),
        "energy_kwh": np.full(n, 10.0),
        "energy_min_kwh": np.full(n, 10.0),
        "energy_max_kwh": np.full(n, 30.0),
        "target_energy_kwh": np.full(n, 30.0),
        "max_charge_kw": np.full(n, 7.0),
        "max_discharge_kw": np.array([7.0, 0.0, 0.0]),
        "charge_efficiency": np.full(n, 1.0),
        "discharge_efficiency": np.full(n, 1.0),
        "departure_step": np.full(n, 8, dtype=np.int64),
        "arrival_step": np.zeros(n, dtype=np.int64),
        "import_limit_kw": np.array([10.0]),
        "export_limit_kw": np.array([10.0]),
        "import_price_cny_per_kwh": np.array([0.3] * 4 + [0.65] * 4),
        "export_price_cny_per_kwh": np.zeros(8),
        "period_kind": np.array([PeriodKind.VALLEY] * 4 + [PeriodKind.FLAT] * 4, dtype=np.int8),
        "base_load_kw": np.zeros(8),
        "renewable_surplus_kw": np.zeros(8),
    }
    fields.update(overrides)
    return Problem(**fields)  # type: ignore[arg-type]


def test_a_binding_transformer_limits_the_reach_where_the_bound_counted_v2g() -> None:
    # 60 kWh of need, 40 kWh of valley import at the transformer's 10 kW: without V2G the
    # rest is charged after the valley, and the quick bound agrees.
    everyone = np.ones(3, dtype=np.bool_)
    charge_only = _home_site(max_discharge_kw=np.zeros(3))
    assert highest_share(charge_only, everyone) == pytest.approx(40 / 60, abs=1e-7)
    assert bounded_share(charge_only, everyone) == pytest.approx(40 / 60, abs=1e-7)
    # The V2G vehicle arrives at its floor: whatever it gives the others in the valley it
    # must have charged first, and charged again. Without discharge in the valley that is
    # nothing; with it, charge counted twice raises the share, but far less than the
    # quick bound's 7 kW of extra valley import in every valley hour.
    problem = _home_site()
    assert highest_share(problem, everyone, valley_discharge=False) == pytest.approx(40 / 60)
    cycled = highest_share(problem, everyone)
    assert 40 / 60 < cycled < 0.75
    assert bounded_share(problem, everyone) == pytest.approx(1.0)
    # With 20 kWh above its floor (which it must end with again) it can lend the others
    # their need in the valley and refill its own after it.
    lender = replace(problem, energy_kwh=np.array([30.0, 10.0, 10.0]))
    assert highest_share(lender, everyone, valley_discharge=False) > 40 / 60
    assert highest_share(lender, everyone) <= bounded_share(lender, everyone) + 1e-9


def test_a_feeders_cap_in_the_valley_lowers_the_reach_exactly_and_in_the_bound() -> None:
    # A feeder leaves the 10-kW transformer only 6 kW in the first two valley hours (its
    # households' load takes 4 kW there, as the feeder caps say): 32 kWh of valley import,
    # not 40, for 60 kWh of need.
    everyone = np.ones(3, dtype=np.bool_)
    load = np.zeros((1, 8))
    load[0, :2] = 4.0
    capped = _home_site(max_discharge_kw=np.zeros(3), site_load_kw=load)
    assert highest_share(capped, everyone) == pytest.approx(32 / 60, abs=1e-7)
    assert bounded_share(capped, everyone) == pytest.approx(32 / 60, abs=1e-7)


def test_the_twin_reach_under_feeders_keeps_their_caps() -> None:
    from v2ghub.network.feeder_limits import feeder_caps  # noqa: PLC0415
    from v2ghub.network.feeders import attach_sites, base_load_scale  # noqa: PLC0415

    case = next(iter(Scenario.pilot_cities(cities=["Shenzhen"], vehicles_per_city=1200).cases()))
    feeders = attach_sites(case.sites, 3, seed=1, city=case.city)
    base_load_kw = np.asarray(case.signals.base_load_kw[: case.grid.length])
    caps = feeder_caps(feeders, case.sites, base_load_scale(base_load_kw, 96))
    free = valley_reach(case, settle=False)
    capped = valley_reach(case, settle=False, caps=caps)
    assert capped.exact
    assert free.exact
    # The compounds' night room is smaller under the feeders: less of their charging can
    # fall in the valley.
    assert capped.private_share < free.private_share - 1e-3
    assert capped.share <= free.share + 1e-9


def test_cycling_a_v2g_battery_in_the_valley_counts_only_with_split_steps() -> None:
    # One V2G vehicle plugged for the valley alone with 7 kWh of room: charging it full
    # is all a plan without valley discharge can count, and it needs nothing, so its share
    # is 1 either way; but a second vehicle plugged only after the valley (need 7 kWh)
    # makes the total count: split steps let the first charge and discharge in turns.
    problem = _home_site(
        energy_kwh=np.array([23.0, 23.0]),
        energy_min_kwh=np.array([10.0, 10.0]),
        energy_max_kwh=np.array([30.0, 30.0]),
        target_energy_kwh=np.array([23.0, 30.0]),
        max_charge_kw=np.full(2, 7.0),
        max_discharge_kw=np.array([7.0, 0.0]),
        charge_efficiency=np.full(2, 1.0),
        discharge_efficiency=np.full(2, 1.0),
        departure_step=np.array([4, 8], dtype=np.int64),
        arrival_step=np.array([0, 4], dtype=np.int64),
        vehicle_index=np.arange(2, dtype=np.int64),
        site_index=np.zeros(2, dtype=np.int64),
        import_limit_kw=np.array([np.inf]),
        export_limit_kw=np.array([np.inf]),
    )
    everyone = np.ones(2, dtype=np.bool_)
    # Without valley discharge: at most 7 kWh in the valley (the room), 7 kWh after it.
    assert highest_share(problem, everyone, valley_discharge=False) == pytest.approx(0.5)
    # Split steps: 4 steps at (c / 7 + d / 7 <= 1) with the battery's 13 kWh above the
    # floor to cycle: 7 kWh room + 13 kWh down and back = charged within 4 x 7 kWh.
    split = highest_share(problem, everyone)
    assert split > 0.5
    assert split <= 28 / (28 + 7) + 1e-9


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems())
def test_no_plan_beats_the_reach(problem: Problem) -> None:
    """The exact LP's plans (cost-optimal, and keeping the rule at a heavy penalty) meet
    every target the sites allow, so their valley shares are plans the reach counts."""
    everyone = np.ones(problem.n_vehicles, dtype=np.bool_)
    reach = highest_share(problem, everyone)
    stepwise = highest_share(problem, everyone, valley_discharge=False)
    # Delivery comes first: where a V2G vehicle shares a limited site, its discharge in
    # the valley can bring another vehicle nearer its target, and plans without it are
    # then plans the reach does not count (the next test). Elsewhere they are a subset.
    limited = np.isfinite(problem.import_limit_kw)[problem.site_index]
    sharing = np.bincount(problem.site_index)[problem.site_index] > 1
    if not (limited & sharing & (problem.max_discharge_kw > 0)).any():
        assert stepwise <= reach + 1e-7
    rule = ValleyRule(private=np.zeros(problem.n_vehicles, dtype=np.bool_), penalty_cny_per_kwh=1e3)
    least_short = shortfall_kwh(problem, LpPlanner().plan(problem).power_kw).sum()
    valley = valley_steps(problem.period_kind)
    for planner in (LpPlanner(), LpPlanner(keep_valley_rule=True)):
        power_kw = planner.plan(replace(problem, valley_rule=rule)).power_kw
        if shortfall_kwh(problem, power_kw).sum() > least_short + 1e-6:
            continue  # a plan the reach does not count (it leaves a vehicle shorter)
        charged_kw = np.maximum(power_kw, 0.0)
        if charged_kw.sum() * problem.dt_h > 1e-6:
            share = charged_kw[:, valley].sum() / charged_kw.sum()
            assert share <= reach + 1e-6, (planner.name, share, reach)


def test_delivery_comes_before_the_share_where_v2g_lends_room_at_a_site() -> None:
    # A 2-kW site. Vehicle 2 needs 10 kWh in the first (valley) hour but its 3-kW
    # charger gets only the site's 2 kW, unless the V2G vehicle 4 discharges 1 kW then
    # and charges again later, partly in the one flat hour: less short, a lower share.
    valley = np.ones(12, dtype=np.bool_)
    valley[6] = False
    problem = Problem(
        grid=TimeGrid(START, timedelta(hours=1), 12),
        control_steps=12,
        vehicle_index=np.arange(5, dtype=np.int64),
        site_index=np.zeros(5, dtype=np.int64),
        energy_kwh=np.array([0.0, 0.0, 0.0, 0.0, 7.875]),
        energy_min_kwh=np.zeros(5),
        energy_max_kwh=np.array([10.0, 10.0, 10.0, 10.0, 15.75]),
        target_energy_kwh=np.array([0.0, 0.0, 10.0, 0.0, 15.75]),
        max_charge_kw=np.array([1.0, 1.0, 3.0, 1.0, 2.0]),
        max_discharge_kw=np.array([0.0, 0.0, 0.0, 0.0, 1.0]),
        charge_efficiency=np.full(5, 0.875),
        discharge_efficiency=np.full(5, 0.875),
        departure_step=np.array([1, 1, 1, 1, 7], dtype=np.int64),
        arrival_step=np.zeros(5, dtype=np.int64),
        import_limit_kw=np.array([2.0]),
        export_limit_kw=np.array([0.0]),
        import_price_cny_per_kwh=np.where(valley, 0.2, 0.65),
        export_price_cny_per_kwh=np.where(valley, 0.1, 0.325),
        period_kind=np.where(valley, PeriodKind.VALLEY, PeriodKind.FLAT).astype(np.int8),
        base_load_kw=np.zeros(12),
        renewable_surplus_kw=np.zeros(12),
    )
    everyone = np.ones(5, dtype=np.bool_)
    # Without the discharge every kWh can fall in the valley (vehicle 2 stays shorter).
    assert highest_share(problem, everyone, valley_discharge=False) == pytest.approx(1.0)
    # With it: 13 kWh in the valley and 0.31 kWh in the flat hour.
    assert highest_share(problem, everyone) == pytest.approx(13.0 / (13.0 + 0.3061224), abs=1e-6)


def test_kunming_home_transformers_put_the_private_rule_out_of_reach() -> None:
    # Kunming's home sessions plug in around 18:00 and leave around 07:30: of the night
    # only 02:00-06:00 is valley, and a home transformer takes half its chargers' power.
    case = next(iter(Scenario.pilot_cities(cities=["Kunming"], vehicles_per_city=400).cases()))
    reach = valley_reach(case)
    assert reach.exact
    assert reach.private_share < 0.8
    assert reach.stepwise_plan_meets_rule is None  # not looked for: out of reach
    bound = valley_reach(case, exact_max_sessions=0)
    assert not bound.exact
    assert bound.private_share >= reach.private_share
    assert bound.share >= reach.share - 1e-9


def test_a_city_within_reach_has_a_stepwise_plan_that_meets_the_rule() -> None:
    case = next(iter(Scenario.pilot_cities(cities=["Shenzhen"], vehicles_per_city=300).cases()))
    reach = valley_reach(case, settle=False)
    assert reach.exact
    assert reach.share >= 0.6
    assert reach.private_share >= 0.8
    assert reach.stepwise_plan_meets_rule is None  # left to settled()
    assert settled(case, reach).stepwise_plan_meets_rule is True
    assert valley_reach(case) == settled(case, reach)
    assert EXACT_MAX_SESSIONS >= 10_000  # the default day's fleets are exact


def test_the_report_says_out_of_reach_where_the_day_did_not_allow_the_rule(
    tmp_path: Path,
) -> None:
    scenario = Scenario.pilot_cities(cities=["Kunming"], vehicles_per_city=400)
    result = Twin(scenario, planners=["fast", "fast+rules"]).run()
    kept = result.metrics("Kunming", "fast+rules")
    assert not kept.valley_rule_met
    assert kept.valley_reach_exact
    assert kept.valley_share_private_reachable < 0.8
    assert kept.valley_share_private <= kept.valley_share_private_reachable + 1e-9
    assert rule_verdict(kept) == "out of reach"
    result.write(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["planners"]["fast+rules"]["cities"]["Kunming"]["valley_rule_reachable"] is False
    report = tmp_path / "report.html"
    result.report(report)
    text = report.read_text(encoding="utf-8")
    assert (
        "fast+rules met the rule in 0 of 1 cities "
        "(0 missed though the day allowed it, 1 out of reach)" in text
    )


@pytest.mark.parametrize(
    ("shares", "exact", "stepwise", "verdict"),
    [
        ((0.61, 0.81, 0.7, 0.9), True, True, "met"),
        ((0.55, 0.81, 0.7, 0.9), True, True, "missed"),
        ((0.55, 0.81, 0.7, 0.79), True, None, "out of reach"),
        ((0.55, 0.81, 0.59, 0.9), False, None, VERDICTS[3]),
        ((0.55, 0.81, 0.7, 0.9), False, None, VERDICTS[3]),
        ((0.55, 0.81, 0.7, 0.9), True, False, VERDICTS[3]),
    ],
)
def test_the_verdict_says_missed_only_where_a_plan_met_the_rule(
    shares: tuple[float, float, float, float], exact: bool, stepwise: bool | None, verdict: str
) -> None:
    reached, private, most, private_most = shares
    zeros = {f.name: _ZERO[str(f.type)] for f in fields(CityMetrics)}
    metrics = replace(
        CityMetrics(**zeros),
        valley_share=reached,
        valley_share_private=private,
        valley_share_reachable=most,
        valley_share_private_reachable=private_most,
        valley_reach_exact=exact,
        valley_rule_met_stepwise=bool(stepwise),
    )
    assert rule_verdict(metrics) == verdict
