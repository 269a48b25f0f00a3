"""Simulator throughput in vehicle-steps per second, for 1e4, 1e5 and 1e6 vehicles.

One synthetic city (Shenzhen) over its day at 15-minute steps (the grid runs until the last
session leaves, about 34 hours), for each planner. A baseline measured in the same run puts
the figures in context on a noisy machine: the cost of one plain vectorised pass over the
fleet arrays (``energy += power * dt``) per step, which no simulator can beat.

Run: ``make bench`` or ``python benchmarks/bench_simulator.py [--sizes 10000,100000]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from v2ghub.planning import make_planner
from v2ghub.scenarios.build import synthetic_cases
from v2ghub.scenarios.config import ScenarioFile, SimulationSettings, resolve
from v2ghub.sim.engine import Simulator

GOAL_VEHICLE_STEPS_PER_S = 10_000_000


def _baseline_seconds(n: int, steps: int) -> float:
    """A floor: one fused multiply-add over n vehicles per step."""
    energy = np.zeros(n)
    power = np.full(n, 7.0)
    started = time.perf_counter()
    for _ in range(steps):
        energy += power * 0.25
    return time.perf_counter() - started


def main() -> None:
    """Print a table of throughput per fleet size and planner."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    # The exact planners (lp, mpc) take minutes a day at these sizes: name them to run them.
    parser.add_argument("--planners", default="uncontrolled,tou,v2g-rules,fast")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    planners = args.planners.split(",")
    print(
        f"{'vehicles':>10} {'planner':>13} {'steps':>6} {'seconds':>8} {'planner s':>9} "
        f"{'Mveh-steps/s':>13} {'vs floor':>9} {'goal 10M':>8}"
    )
    for n in sizes:
        settings = SimulationSettings(vehicles_per_city=n, cities=("Shenzhen",))
        case = synthetic_cases(resolve(ScenarioFile(simulation=settings)))[0]
        steps = case.grid.length
        floor_s = _baseline_seconds(n, steps)
        for name in planners:
            started = time.perf_counter()
            run = Simulator(case, make_planner(name)).run()
            seconds = time.perf_counter() - started
            rate = n * steps / seconds
            # The goal is stated for a million vehicles; smaller fleets only show the trend.
            ok = ("yes" if rate >= GOAL_VEHICLE_STEPS_PER_S else "NO") if n >= 1_000_000 else "-"
            print(
                f"{n:>10,} {name:>13} {steps:>6} {seconds:>8.2f} {run.planner_seconds:>9.2f} "
                f"{rate / 1e6:>13.1f} {seconds / floor_s:>8.0f}x {ok:>8}"
            )
        print(f"{n:>10,} {'floor (1 op)':>13} {steps:>6} {floor_s:>8.3f}")


if __name__ == "__main__":
    main()
