"""The optimising planners in the twin: what a day costs, what is left undelivered, how long.

One synthetic city (Shenzhen, July weekday, 15-minute steps, re-planned at every control
instant and on every arrival, later arrivals unknown) per fleet size. For each planner it
prints the owners' cost (CNY), the energy left short of the targets beyond what no planner
could deliver (``unmet - unavoidable``, kWh; 0 is every promise kept), the peak, and the
time spent planning. The ``v2g-rules`` planner is the baseline measured in the same run:
``cost vs rules`` is each planner's cost over it.

Variants beside the registered planners:
- ``mpc-arrivals``: receding horizon around the fast planner, also told the groups of
  sessions expected to arrive at each limited site (with 10% forecast error);
- ``fast-guarded``: the fast planner with the urgent-energy guard in the applied steps.

Run: ``python benchmarks/bench_twin_planners.py [--sizes 1000,10000] [--planners ...]``.
"""

from __future__ import annotations

import argparse
import time

from v2ghub.model.problem import Planner
from v2ghub.planning import make_planner
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.mpc import RecedingHorizonPlanner
from v2ghub.scenarios.build import synthetic_cases
from v2ghub.scenarios.config import ScenarioFile, SimulationSettings, resolve
from v2ghub.sim.engine import Simulator
from v2ghub.sim.metrics import evaluate, summarise

BASELINE = "v2g-rules"


def _planner(name: str) -> Planner:
    if name == "mpc-arrivals":
        return RecedingHorizonPlanner(FastPlanner(), expected_arrivals=True, name=name)
    if name == "fast-guarded":
        guarded = FastPlanner(guard=True)
        guarded.name = name
        return guarded
    return make_planner(name)


def main() -> None:
    """Print one row per fleet size and planner."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--planners", default="fast,mpc,mpc-arrivals,fast-guarded")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    names = [BASELINE, *(n for n in args.planners.split(",") if n != BASELINE)]
    # Compile the kernels before timing anything.
    warm = synthetic_cases(
        resolve(ScenarioFile(simulation=SimulationSettings(vehicles_per_city=10)))
    )[0]
    Simulator(warm, _planner("mpc")).run()
    print(
        f"{'vehicles':>9} {'planner':>13} {'cost CNY':>12} {'vs rules':>9} "
        f"{'avoidable short kWh':>20} {'peak kW':>9} {'planning s':>10} {'total s':>8}"
    )
    for n in sizes:
        settings = SimulationSettings(vehicles_per_city=n, cities=("Shenzhen",))
        scenario = resolve(ScenarioFile(simulation=settings))
        case = synthetic_cases(scenario)[0]
        baseline_cost = None
        for name in names:
            started = time.perf_counter()
            run = Simulator(case, _planner(name), control_steps=settings.control_steps).run()
            seconds = time.perf_counter() - started
            metrics = summarise(evaluate(run)).metrics
            cost = float(metrics.owner_cost_cny)
            baseline_cost = cost if baseline_cost is None else baseline_cost
            avoidable = metrics.unmet_energy_kwh - metrics.unavoidable_shortfall_kwh
            print(
                f"{n:>9,} {name:>13} {cost:>12,.2f} {cost / baseline_cost:>9.4f} "
                f"{avoidable:>20.2f} {metrics.peak_kw:>9,.0f} {run.planner_seconds:>10.2f} "
                f"{seconds:>8.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
