"""The fast planner against a vectorised greedy baseline and the exact LP, by fleet size.

The seeded Shenzhen fleet (July, with V2G opt-ins) as one day-ahead problem over its case's
grid (15-minute steps from local midnight until the last departure, about 34 hours), with
the synthetic sites' import and export limits. For each size it prints the fast planner's
time (and the part spent in the final feasibility cut), its peak traced memory, the
greedy baseline's time and objective measured in the same run, and, up to ``--lp-max``
vehicles, the LP's time and objective with the gaps to it.

Run: ``python benchmarks/bench_planners.py [--sizes 1000,10000,100000,1000000] [--lp-max 1000]``.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from v2ghub.model.problem import Problem
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.lp import LpPlanner
from v2ghub.planning.objective import final_energy_kwh, schedule_cost
from v2ghub.planning.stepping import make_feasible
from v2ghub.scenarios.build import synthetic_cases
from v2ghub.scenarios.config import ScenarioFile, SimulationSettings, resolve
from v2ghub.scenarios.day_ahead import case_day_ahead_problem

FloatArray = npt.NDArray[np.float64]
BYTES_PER_GB = 1e9
KB_PER_GB = 1e6


def shenzhen_day_ahead(n_vehicles: int, horizon_steps: int | None = None) -> Problem:
    """The seeded Shenzhen fleet as one day-ahead problem over its case's grid.

    With ``horizon_steps`` the problem ends after that many steps (the issue's goal is
    stated for 96): sessions still plugged then leave at the horizon, those arriving
    after it are dropped.
    """
    scenario = resolve(
        ScenarioFile(
            simulation=SimulationSettings(vehicles_per_city=n_vehicles, cities=("Shenzhen",))
        )
    )
    return case_day_ahead_problem(synthetic_cases(scenario)[0], horizon_steps=horizon_steps)


def greedy_charge_only(problem: Problem) -> FloatArray:
    """Baseline: full power in the cheapest plugged steps until the target, then the cut.

    One argsort of the step prices; a loop over steps in price order, vectorised over
    vehicles; no discharge; site limits by :func:`make_feasible` (pro-rata cuts).
    """
    dt_h = problem.dt_h
    need_kwh = np.maximum(problem.target_energy_kwh - problem.energy_kwh, 0.0)
    need_kwh = np.minimum(need_kwh, problem.energy_max_kwh - problem.energy_kwh)
    step_kwh = problem.max_charge_kw * problem.charge_efficiency * dt_h
    power_kw = np.zeros((problem.n_vehicles, problem.grid.length), order="F")
    for step in np.argsort(problem.import_price_cny_per_kwh, kind="stable"):
        plugged = (problem.arrival_step <= step) & (problem.departure_step > step)
        stored_kwh = np.where(plugged, np.minimum(step_kwh, need_kwh), 0.0)
        need_kwh -= stored_kwh
        power_kw[:, step] = stored_kwh / (problem.charge_efficiency * dt_h)
    return make_feasible(problem, power_kw)


@dataclass(frozen=True)
class Run:
    """One planner's result on one problem."""

    seconds: float
    objective_cny: float
    shortfall_kwh: float
    peak_traced_gb: float


def _measure(problem: Problem, plan: object) -> Run:
    assert callable(plan)
    tracemalloc.start()
    started = time.perf_counter()
    power_kw = plan(problem)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    shortfall = np.maximum(problem.target_energy_kwh - final_energy_kwh(problem, power_kw), 0.0)
    return Run(
        seconds=seconds,
        objective_cny=schedule_cost(problem, power_kw).objective_cny,
        shortfall_kwh=float(shortfall.sum()),
        peak_traced_gb=peak / BYTES_PER_GB,
    )


def main() -> None:
    """Print one row per fleet size."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--lp-max", type=int, default=1000, help="run the LP up to this size")
    parser.add_argument("--passes", type=int, default=3, help="fast planner passes per site")
    parser.add_argument(
        "--horizon-steps", type=int, default=None, help="cut the horizon (the goal: 96 steps)"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    planner = FastPlanner(passes=args.passes)
    planner.plan(shenzhen_day_ahead(10))  # compile (or load the cached kernels) first

    def fast(problem: Problem) -> FloatArray:
        return planner.plan(problem).power_kw

    def lp(problem: Problem) -> FloatArray:
        return LpPlanner(time_limit_s=3600.0).plan(problem).power_kw

    print(
        f"{'vehicles':>9} {'steps':>5} {'fast s':>7} {'cut s':>6} {'peak GB':>7} "
        f"{'greedy s':>8} {'fast/greedy':>11} {'fast CNY':>12} {'greedy CNY':>12} "
        f"{'vs greedy':>9} {'short kWh f/g':>15} {'LP s':>7} {'LP CNY':>12} {'vs LP':>7}"
    )
    for n in sizes:
        problem = shenzhen_day_ahead(n, args.horizon_steps)
        fast_run = _measure(problem, fast)
        raw = planner.solve(problem)
        started = time.perf_counter()
        make_feasible(problem, raw)
        cut_s = time.perf_counter() - started
        del raw
        greedy_run = _measure(problem, greedy_charge_only)
        vs_greedy = (fast_run.objective_cny - greedy_run.objective_cny) / abs(
            greedy_run.objective_cny
        )
        line = (
            f"{problem.n_vehicles:>9,} {problem.grid.length:>5} {fast_run.seconds:>7.2f} "
            f"{cut_s:>6.2f} {fast_run.peak_traced_gb:>7.2f} {greedy_run.seconds:>8.2f} "
            f"{fast_run.seconds / greedy_run.seconds:>11.2f} {fast_run.objective_cny:>12,.1f} "
            f"{greedy_run.objective_cny:>12,.1f} {vs_greedy:>+9.2%} "
            f"{fast_run.shortfall_kwh:>7.0f}/{greedy_run.shortfall_kwh:<7.0f}"
        )
        if n <= args.lp_max:
            lp_run = _measure(problem, lp)
            gap = (fast_run.objective_cny - lp_run.objective_cny) / abs(lp_run.objective_cny)
            line += f" {lp_run.seconds:>7.1f} {lp_run.objective_cny:>12,.1f} {gap:>+7.2%}"
        print(line, flush=True)
    max_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KB_PER_GB
    print(f"process peak resident memory (all sizes, incl. building problems): {max_rss_gb:.2f} GB")


if __name__ == "__main__":
    main()
