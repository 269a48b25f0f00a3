"""Honest market offers: demand response offered from the envelope against from the allocation.

One Shenzhen day (``--vehicles``) in the shipped market (``data/market.toml``), for each
of ``--planners``, three ways of sizing the demand-response offer at 18 h, everything
else alike (the same regulation sold, the same clearing, the same run):

- **envelope** (the baseline, how offers were once made): ``offer_share`` of the room
  downwards the day-ahead fast plan leaves for an hour at 18:00
  (:func:`~v2ghub.planning.reserve.plan_headroom`);
- **allocation, expected**: ``offer_share`` of the reduction the demand-response
  allocation holds through the hour in a forecast run of the planner itself, following
  no regulation signal (what ``v2ghub simulate --market`` does);
- **allocation, perfect**: the same forecast following the day's own regulation signal
  (``forecast = "perfect"``): every sale is then delivered in full.

Per row: the forecast (kW), offered, sold, the clearing price, energy delivered of the
energy sold, the penalty and the market's net (all sales, regulation included); then
the forecast run's time against the run's, measured in the same process.

Run: ``python benchmarks/bench_market_offers.py [--vehicles 10000] [--planners fast,tou]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from v2ghub.model.case import CityCase
from v2ghub.planning import make_planner
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.reserve import plan_headroom
from v2ghub.regulation.demand_response import DemandResponseEvent
from v2ghub.scenarios.build import synthetic_cases
from v2ghub.scenarios.config import ScenarioFile, SimulationSettings, resolve
from v2ghub.scenarios.day_ahead import case_day_ahead_problem
from v2ghub.scenarios.market_config import default_market
from v2ghub.sim.demand_response_service import DemandResponseService, EventResult
from v2ghub.sim.engine import Simulator
from v2ghub.sim.market_day import (
    MarketDay,
    MarketOutcome,
    clear_demand_response,
    clear_regulation,
    market_outcomes,
    traded_hours,
)
from v2ghub.sim.market_forecast import ForecastSignal, TwinForecast
from v2ghub.sim.runner import regulation_follower


def _case(vehicles: int) -> CityCase:
    settings = SimulationSettings(cities=("Shenzhen",), vehicles_per_city=vehicles)
    return synthetic_cases(resolve(ScenarioFile(simulation=settings)))[0]


@dataclass(frozen=True)
class _EnvelopeForecast:
    """The old offers: the day-ahead fast plan's room downwards for an hour, as if the
    allocation held it (a one-step result whose delivery is that room)."""

    case: CityCase

    def __call__(
        self, *, regulation_kw: Mapping[int, float], probes: Sequence[DemandResponseEvent]
    ) -> list[EventResult]:
        problem = case_day_ahead_problem(self.case)
        power_kw = FastPlanner().plan(problem).power_kw
        market = default_market()
        assert market.demand_response is not None
        steps = dict(traded_hours(self.case, market.demand_response))
        results = []
        for probe in probes:
            room = plan_headroom(problem, power_kw, steps[probe.start]).lower_total_kw
            results.append(
                EventResult(
                    event=probe,
                    first_step=steps[probe.start],
                    step_h=self.case.grid.dt_h,
                    price_cny_per_kwh=Decimal(0),
                    requested_kw=np.array([probe.reduction_kw or 0.0]),
                    baseline_kw=np.zeros(1),
                    delivered_kw=np.array([room]),
                )
            )
        return results


def _run(case: CityCase, planner: str, day: MarketDay) -> tuple[tuple[MarketOutcome, ...], float]:
    """The day run with what ``day`` sold: its settled sales and the run's seconds."""
    sold_kw = day.regulation_commitments(case.tariff.timezone)
    events = day.demand_response_events(case.city)
    started = time.perf_counter()
    run = Simulator(
        case,
        make_planner(planner),
        regulation=regulation_follower(case, None, sold_kw),
        demand_response=DemandResponseService(case, events) if events else None,
    ).run()
    return market_outcomes(day, run), time.perf_counter() - started


def _row(label: str, outcomes: tuple[MarketOutcome, ...]) -> str:
    dr = [o for o in outcomes if o.product == "demand_response"]
    penalty = sum((o.amounts.penalty_cny for o in outcomes), Decimal(0))
    net = sum((o.amounts.net_cny for o in outcomes), Decimal(0))
    sold = sum(o.sold_kw for o in dr)
    delivered = sum(float(o.sold_kw - o.missed_kw) for o in dr)
    forecast = sum(o.forecast_kw for o in dr)
    offered = sum(o.offered_kw for o in dr)
    price = dr[0].price_cny_per_mw_h if dr else Decimal(0)
    return (
        f"  {label:22s} forecast {forecast:8.1f} kW  offered {offered:6d}  sold {sold:6d} kW "
        f"at {price!s:>4s}  delivered {delivered:8.1f} of {sold:6d} kWh  "
        f"penalty {penalty!s:>7s}  net {net!s:>8s} CNY"
    )


def _regulation(outcomes: tuple[MarketOutcome, ...]) -> str:
    hours = [o for o in outcomes if o.product == "regulation"]
    return "  regulation: " + ", ".join(
        f"{o.start.hour:02d}h sold {o.sold_kw} kW missed {o.missed_kw} score {o.performance}"
        for o in hours
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=10_000)
    parser.add_argument("--planners", default="fast,tou")
    args = parser.parse_args()
    case = _case(args.vehicles)
    market = default_market()
    print(f"Shenzhen, {args.vehicles:,} vehicles, the shipped market")
    cleared = clear_regulation(case, market)
    for planner in args.planners.split(","):
        print(f"{planner}:")
        envelope_day = clear_demand_response(
            cleared, case, market, forecast=_EnvelopeForecast(case)
        )
        outcomes, run_s = _run(case, planner, envelope_day)
        print(_row("envelope (baseline)", outcomes))
        print(_regulation(outcomes))
        signals: tuple[ForecastSignal, ...] = ("expected", "perfect")
        for signal in signals:
            forecast = TwinForecast(
                case=case,
                planner=make_planner(planner),
                follower=lambda sold_kw: regulation_follower(case, None, sold_kw),
                signal=signal,
            )
            started = time.perf_counter()
            day = clear_demand_response(cleared, case, market, forecast=forecast)
            forecast_s = time.perf_counter() - started
            outcomes, _ = _run(case, planner, day)
            print(_row(f"allocation, {signal}", outcomes))
        print(
            f"  forecast run {forecast_s:.1f} s against the day's run {run_s:.1f} s "
            f"({forecast_s / run_s:.2f} times)"
        )


if __name__ == "__main__":
    main()
