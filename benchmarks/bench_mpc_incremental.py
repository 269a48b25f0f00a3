"""Incremental ``mpc`` against ``mpc`` re-planning every vehicle at every instant.

The default nine-city day (10,000 vehicles a city unless ``--vehicles``), each city run with
both, in one process. Printed per city: the simulation's wall time and CPU time (all
threads: on a busy machine the wall time says more about the other jobs), the owners'
cost, the day's peak (base load plus fleet), the objective ``mpc`` prices (owners' cost
plus ``MPC_PEAK_PRICE_CNY_PER_KW`` times the peak, CNY) and the gaps of the incremental
run to the whole re-plans, then the totals. The issue's goal: cost within 0.5% of the whole
re-plans'.

    python benchmarks/bench_mpc_incremental.py [--vehicles N] [--cities A,B]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

from v2ghub.model.problem import Planner
from v2ghub.planning import MPC_PEAK_PRICE_CNY_PER_KW, make_planner
from v2ghub.sim.runner import run_cases
from v2ghub.twin import Scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=10_000)
    parser.add_argument("--cities", default=None, help="comma-separated (default: the nine)")
    args = parser.parse_args()
    cities = args.cities.split(",") if args.cities else None
    scenario = Scenario.pilot_cities(cities=cities, vehicles_per_city=args.vehicles)
    planners: dict[str, Callable[[], Planner]] = {
        "whole": partial(make_planner, "mpc", whole_plan_every=1),
        "incremental": partial(make_planner, "mpc"),
    }
    # Wall seconds, CPU seconds, cost, objective.
    totals = {name: [0.0, 0.0, 0.0, 0.0] for name in planners}
    print(
        f"{'city':<10} {'planner':<12} {'seconds':>8} {'CPU s':>7} {'cost CNY':>11} {'peak kW':>9} "
        f"{'objective':>11} {'cost gap':>9} {'peak gap':>9} {'obj gap':>8}"
    )
    for case in scenario.cases():
        whole: tuple[float, float, float] | None = None
        for name, make in planners.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            metrics = run_cases([case], [make()])[0].metrics
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
            cost = float(metrics.owner_cost_cny)
            objective = cost + MPC_PEAK_PRICE_CNY_PER_KW * metrics.peak_kw
            totals[name][0] += seconds
            totals[name][1] += cpu_seconds
            totals[name][2] += cost
            totals[name][3] += objective
            gaps = ""
            if whole is None:
                whole = (cost, metrics.peak_kw, objective)
            else:
                gaps = (
                    f"{cost / whole[0] - 1:>+9.2%} {metrics.peak_kw / whole[1] - 1:>+9.2%} "
                    f"{objective / whole[2] - 1:>+8.2%}"
                )
            print(
                f"{case.city:<10} {name:<12} {seconds:>8.1f} {cpu_seconds:>7.1f} {cost:>11,.0f} "
                f"{metrics.peak_kw:>9,.0f} {objective:>11,.0f} {gaps}",
                flush=True,
            )
    (whole_s, whole_cpu, whole_cost, whole_obj), (inc_s, inc_cpu, inc_cost, inc_obj) = (
        totals.values()
    )
    print(
        f"\nall cities: whole re-plans {whole_s:.1f} s ({whole_cpu:.1f} CPU s), incremental "
        f"{inc_s:.1f} s ({inc_cpu:.1f} CPU s): {whole_s / inc_s:.1f}x faster in wall time, "
        f"{whole_cpu / inc_cpu:.1f}x in CPU time; cost {inc_cost / whole_cost - 1:+.2%}, "
        f"objective {inc_obj / whole_obj - 1:+.2%}"
    )


if __name__ == "__main__":
    main()
