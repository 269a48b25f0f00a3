"""The twin's day-ahead market: what the fleet can deliver offered, cleared, honoured, paid."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from v2ghub.errors import InputError
from v2ghub.model.case import CityCase
from v2ghub.planning import make_planner
from v2ghub.scenarios.build import synthetic_cases
from v2ghub.scenarios.config import ScenarioFile, SimulationSettings, load_scenario, resolve
from v2ghub.scenarios.market_config import default_market
from v2ghub.settlement.market import AGGREGATOR
from v2ghub.sim.market_day import clear_day, clear_regulation
from v2ghub.sim.market_forecast import TwinForecast
from v2ghub.sim.runner import regulation_follower, run_cases

VEHICLES = 300


def _shenzhen() -> CityCase:
    settings = SimulationSettings(
        cities=("Shenzhen",), vehicles_per_city=VEHICLES, planners=("v2g-rules",)
    )
    return synthetic_cases(resolve(ScenarioFile(simulation=settings)))[0]


def test_the_day_ahead_offers_clear_against_the_shipped_market() -> None:
    market = default_market()
    case = _shenzhen()
    forecast = TwinForecast(
        case=case,
        planner=make_planner("v2g-rules"),
        follower=lambda sold_kw: regulation_follower(case, None, sold_kw),
    )
    day = clear_day(case, market, forecast=forecast)
    products = [(t.clearing.product, t.clearing.start.hour) for t in day.traded]
    assert products == [
        ("regulation", 10),
        ("regulation", 11),
        ("regulation", 19),
        ("regulation", 20),
        ("demand_response", 18),
    ]
    for t in day.traded:
        assert 0 <= t.sold_kw <= t.offered_kw == int(market.offer_share * t.forecast_kw)
    regulation = day.traded[2]
    # At 19 h the aggregator offers at 5 CNY/MW-h, below every other seller: it sells what
    # it offers up to the 0.6 kW a vehicle the operator wants (180 kW), at 5 CNY/MW-h if
    # it fills that alone, else at the next seller's 8.
    assert regulation.offered_kw > 0
    assert regulation.sold_kw == min(regulation.offered_kw, 180)
    expected_price = 5 if regulation.offered_kw >= 180 else 8
    assert regulation.clearing.price_cny_per_mw_h == Decimal(expected_price)
    sold = day.regulation_commitments("Asia/Shanghai")
    assert sold[19] == float(regulation.sold_kw)
    events = day.demand_response_events("Shenzhen")
    assert len(events) == 1
    assert events[0].reduction_kw == float(day.traded[4].sold_kw)
    assert events[0].price_cny_per_kwh == day.traded[4].clearing.price_cny_per_mw_h / 1000


def test_every_planner_honours_what_was_sold_and_is_paid_for_it() -> None:
    case = _shenzhen()
    market = default_market()
    day = clear_regulation(case, market)
    summaries = run_cases([case], ["v2g-rules", "fast"], market=market)
    sold_regulation = {t.clearing.start: t.sold_kw for t in day.traded}
    for summary in summaries:
        # The regulation hours commit exactly what was sold.
        for hour in summary.regulation_hours:
            assert hour.capacity_kw == pytest.approx(sold_regulation[hour.start])
        # Regulation is sold once for the city; demand response by each planner's own
        # forecast (an hour with nothing sold is not settled).
        regulation = [o for o in summary.market if o.product == "regulation"]
        assert [(o.start, o.sold_kw) for o in regulation] == [
            (t.clearing.start, t.sold_kw) for t in day.traded if t.sold_kw > 0
        ]
        assert len(summary.market) - len(regulation) <= 1
        for outcome in summary.market:
            paid = (
                Decimal(outcome.sold_kw) * outcome.price_cny_per_mw_h * outcome.performance / 1000
            )
            assert outcome.amounts.capacity_cny == paid.quantize(Decimal("0.01"))
            penalty = outcome.missed_kw * outcome.price_cny_per_mw_h * 2 / 1000
            assert outcome.amounts.penalty_cny == penalty.quantize(Decimal("0.01"))
        metrics = summary.metrics
        assert metrics.market_capacity_cny == sum(o.amounts.capacity_cny for o in summary.market)
        assert metrics.market_sold_mw_h == pytest.approx(
            sum(o.sold_kw for o in summary.market) / 1000
        )
    # The sale is the aggregator's: the other sellers' share is theirs.
    assert all(AGGREGATOR in t.clearing.accepted_kw for t in day.traded if t.sold_kw > 0)


def test_a_market_trading_one_hour_twice_is_refused(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(
        "[market.regulation]\nhours = [18]\n"
        'demand = [{ capacity_mw = 1, price_cny_per_mw_h = "10" }]\n'
        "[market.demand_response]\nhours = [18, 19]\n"
        'demand = [{ capacity_mw = 1, price_cny_per_mw_h = "900" }]\n',
        encoding="utf-8",
    )
    with pytest.raises(InputError, match=r"an hour is traded for regulation or demand"):
        load_scenario(scenario)


def test_a_market_step_with_two_sizes_is_refused(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(
        "[market.regulation]\nhours = [18]\n"
        "demand = [{ capacity_mw = 1, capacity_kw_per_vehicle = 0.5, "
        'price_cny_per_mw_h = "10" }]\n',
        encoding="utf-8",
    )
    with pytest.raises(InputError, match=r"market\.regulation\.demand\.0.*exactly one of"):
        load_scenario(scenario)
