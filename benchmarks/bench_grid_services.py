"""Grid services in the twin: what keeping headroom buys, and what a market day pays.

One Shenzhen day (``--vehicles``, planner fast) offering regulation at 10, 11, 19 and 20 h:

- **headroom kept or not.** The same day with the planner seeing the headroom's value
  (the city's capacity rate plus mileage rate times the signal's mileage, as
  ``v2ghub simulate --regulation`` runs it) against the planner blind to it (value 0,
  the baseline): committed capacity, owners' energy cost, and what the capacity would
  earn at that value;
- **a market day.** The shipped market (``data/market.toml``): capacity sold, earned and
  penalised, for v2g-rules and fast;
- **the envelope.** The fleet's 1-hour room up and down at 19:00 in the market runs.

Run: ``python benchmarks/bench_grid_services.py [--vehicles 10000]``.
"""

from __future__ import annotations

import argparse
import time
from decimal import Decimal
from zoneinfo import ZoneInfo

from v2ghub.model.case import CityCase
from v2ghub.planning import make_planner
from v2ghub.scenarios.build import synthetic_cases
from v2ghub.scenarios.config import ScenarioFile, SimulationSettings, resolve
from v2ghub.scenarios.market_config import default_market
from v2ghub.sim.engine import Simulator
from v2ghub.sim.metrics import evaluate
from v2ghub.sim.regulation_service import RegulationFollower, RegulationOffer
from v2ghub.sim.runner import run_cases


def _case(vehicles: int) -> CityCase:
    settings = SimulationSettings(cities=("Shenzhen",), vehicles_per_city=vehicles)
    return synthetic_cases(resolve(ScenarioFile(simulation=settings)))[0]


def _headroom(vehicles: int) -> None:
    case = _case(vehicles)
    print(f"Shenzhen, {vehicles:,} vehicles, planner fast, regulation at 10, 11, 19, 20 h")
    value = None
    for label, valued in (("blind (baseline)", False), ("headroom valued", True)):
        follower = RegulationFollower(
            case.grid,
            timezone=case.tariff.timezone,
            offer=RegulationOffer(),
            value_cny_per_mw_h=10.0 if valued else 0.0,
            mileage_cny_per_mw=12.0 if valued else 0.0,
        )
        started = time.perf_counter()
        run = Simulator(case, make_planner("fast"), regulation=follower).run()
        seconds = time.perf_counter() - started
        metrics = evaluate(run).metrics
        if valued:
            value = follower.value_cny_per_kw_h
        committed_mw_h = sum(h.capacity_kw for h in run.regulation_hours) / 1000
        print(
            f"  {label:17s} committed {committed_mw_h:7.3f} MW-h  owners' energy cost "
            f"{metrics.owner_cost_cny:>11} CNY  score {metrics.regulation_score:.3f}  "
            f"unmet {metrics.unmet_energy_kwh:8.1f} kWh  {seconds:6.1f} s"
        )
    if value is not None:
        print(
            f"  headroom valued at {value:.3f} CNY per kW-h (capacity 10 CNY/MW-h, mileage 12/MW)"
        )


def _market(vehicles: int) -> None:
    print(f"\nShipped market, Shenzhen, {vehicles:,} vehicles")
    started = time.perf_counter()
    summaries = run_cases([_case(vehicles)], ["v2g-rules", "fast"], market=default_market())
    seconds = time.perf_counter() - started
    for s in summaries:
        sold = {
            p: sum(o.sold_kw for o in s.market if o.product == p)
            for p in ("regulation", "demand_response")
        }
        net = sum((o.amounts.net_cny for o in s.market), Decimal(0))
        m = s.metrics
        print(
            f"  {s.planner:9s} sold regulation {sold['regulation'] / 1000:6.3f} MW-h, demand "
            f"response {sold['demand_response'] / 1000:6.3f} MW-h; earned {m.market_capacity_cny} "
            f"CNY, penalties {m.market_penalty_cny} CNY, net {net} CNY; DR delivered "
            f"{m.dr_delivered_kwh:,.0f} of {m.dr_requested_kwh:,.0f} kWh"
        )
        for hour in s.envelope:
            if hour.start.astimezone(ZoneInfo(s.timezone)).hour == 19:
                k = hour.durations_h.index(1.0)
                print(
                    f"  {'':9s} envelope at 19:00: planned {hour.planned_kw / 1000:.2f} MW, "
                    f"1 h up {hour.raise_kw[k] / 1000:.2f} MW, "
                    f"down {hour.lower_kw[k] / 1000:.2f} MW"
                )
                break
    print(f"  ({seconds:.1f} s for the clearing and both runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vehicles", type=int, default=10_000)
    args = parser.parse_args()
    _headroom(args.vehicles)
    _market(args.vehicles)


if __name__ == "__main__":
    main()
