"""Sharded twin runs on Ray: throughput with 1 and 2 workers, memory, and the peak's rounds.

Three parts, each with its baseline measured in the same run (machines here are noisy):

1. Throughput. The same scenario (``--cities`` x ``--vehicles``, ``--planner``, drawn in
   blocks of ``--block`` vehicles) in one process as the twin always ran it, then sharded
   on a local Ray runtime of 1 and of 2 CPUs (each runtime started before its clock
   starts, and its workers warmed by a tiny run: start and warm-up are printed apart).
   Connected vehicle-steps per second (a vehicle counted only for the steps it is plugged
   in, as simulators state it), the
   speedup of 2 workers over 1, and whether the two sharded summaries agree (timings
   aside). Peak resident memory: of the one-process run (in a child process of its own)
   and of each Ray worker (``ru_maxrss``, read in the worker after its shard).
2. The area's peak (``mpc``, one city of ``--mpc-vehicles``): unsharded against sharded
   with 0, 1 and 2 damped Jacobi rounds after the proportional round
   (:mod:`v2ghub.scale.coordination`): owners' cost, peak, and time. The overhead of
   coordination is the time of the rounds over the run with round 0 alone, plus the
   driver's own seconds (contexts, merges).
3. A projection, stated as such, to a cluster: the national day (``--project-cities`` x
   ``--project-vehicles`` with the planner) on ``--project-workers`` workers, from the
   per-worker rate and the 2-worker efficiency measured in part 1.

Run: ``python benchmarks/bench_scale.py [--vehicles 50000] [--mpc-vehicles 100000]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time
from typing import Any

import numpy as np
import ray

from v2ghub import Scenario, Twin
from v2ghub.scale.ray_runner import ShardedRun, connect
from v2ghub.scenarios.build import block_case
from v2ghub.scenarios.shards import city_layout
from v2ghub.sim.metrics import fold_daily
from v2ghub.twin.result import TwinResult

KIB_PER_MIB = 1024
PILOTS = ("Shanghai", "Guangzhou", "Shenzhen", "Kunming")


def _scenario(cities: list[str], vehicles: int) -> Scenario:
    return Scenario.pilot_cities(cities=cities, vehicles_per_city=vehicles)


def connected_steps(scenario: Scenario, block: int) -> int:
    """Connected vehicle-steps of the scenario's cities, block by block."""
    settings = scenario.settings
    total = 0
    for number in range(len(settings.simulation.cities)):
        layout = city_layout(settings, city_number=number, block_vehicles=block)
        for k in range(layout.n_blocks):
            total += block_case(settings, layout, block=k).connected_vehicle_steps
    return total


def _unsharded_child(cities: list[str], vehicles: int, planners: list[str], block: int) -> Any:
    started = time.perf_counter()
    result = Twin(_scenario(cities, vehicles), planners=planners, block_vehicles=block).run()
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return seconds, rss, _figures(result)


def _figures(result: TwinResult) -> dict[str, dict[str, float]]:
    return {
        f"{run.city}/{run.planner}": {
            "peak_kw": run.metrics.peak_kw,
            "cost_cny": float(run.metrics.owner_cost_cny),
        }
        for run in result.runs
    }


def unsharded(cities: list[str], vehicles: int, planners: list[str], block: int) -> Any:
    """The one-process run in a child process (its own peak memory)."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_unsharded_child, (cities, vehicles, planners, block))


def _summary(result: TwinResult) -> str:
    """summary.json without timings."""
    document = result.summary_document()
    for planner in document["planners"].values():
        for city in planner["cities"].values():
            for key in [k for k in city if k.endswith("_seconds")]:
                del city[key]
        for key in [k for k in planner["total"] if k.endswith("_seconds")]:
            del planner["total"][key]
    return json.dumps(document, sort_keys=True, default=str)


def sharded(
    scenario: Scenario, planners: list[str], *, cpus: int, block: int, jacobi_rounds: int = 1
) -> tuple[float, float, TwinResult, ShardedRun]:
    """A sharded run on a fresh local runtime of ``cpus``, its workers warmed first:
    (start and warm-up s, run s, result, figures)."""
    started = time.perf_counter()
    connect(workers=cpus, address=None)  # as simulate --workers starts it
    # Warm the workers (each imports the package and loads its compiled kernels once):
    # one small city per worker, so that every worker gets one; timed with the start.
    warm = _scenario(list(PILOTS[:cpus]), 10)
    Twin(warm, planners=planners, workers=cpus).run()
    start_s = time.perf_counter() - started
    try:
        twin = Twin(
            scenario,
            planners=planners,
            workers=cpus,
            block_vehicles=block,
            jacobi_rounds=jacobi_rounds,
        )
        started = time.perf_counter()
        result = twin.run()
        run_s = time.perf_counter() - started
        assert twin.last_sharded_run is not None
        return start_s, run_s, result, twin.last_sharded_run
    finally:
        ray.shutdown()


def part_throughput(args: argparse.Namespace) -> tuple[float, float]:
    cities = args.cities.split(",")
    planners = [args.planner]
    scenario = _scenario(cities, args.vehicles)
    steps = connected_steps(scenario, args.block) * len(planners)
    print(
        f"1. throughput: {len(cities)} cities x {args.vehicles:,} vehicles, {args.planner}, "
        f"blocks of {args.block:,}: {steps:,} connected vehicle-steps"
    )
    one_s, one_rss, _ = unsharded(cities, args.vehicles, planners, args.block)
    print(
        f"   one process (baseline): {one_s:7.1f} s  {steps / one_s:12,.0f} vehicle-steps/s  "
        f"peak RSS {one_rss / KIB_PER_MIB:,.0f} MiB"
    )
    rates = {}
    summaries = {}
    for cpus in (1, 2):
        start_s, run_s, result, figures = sharded(scenario, planners, cpus=cpus, block=args.block)
        rates[cpus] = steps / run_s
        summaries[cpus] = _summary(result)
        print(
            f"   Ray, {cpus} worker(s):    {run_s:7.1f} s  {rates[cpus]:12,.0f} vehicle-steps/s  "
            f"(x{one_s / run_s:.2f} vs one process; runtime start and warm-up {start_s:.1f} s "
            f"apart); workers busy {sum(figures.shard_seconds):.1f} s, driver joining parts "
            f"{figures.join_seconds:.1f} s; peak RSS per worker "
            f"{max(figures.peak_rss_kib) / KIB_PER_MIB:,.0f} MiB"
        )
    speedup = rates[2] / rates[1]
    print(
        f"   speedup 2 workers vs 1: x{speedup:.2f}; summaries (timings aside) "
        f"{'identical' if summaries[1] == summaries[2] else 'DIFFER'}"
    )
    return rates[1], speedup


def part_peak(args: argparse.Namespace) -> float:
    city = args.mpc_city
    scenario = _scenario([city], args.mpc_vehicles)
    steps = connected_steps(scenario, args.block)
    print(
        f"2. the area's peak: {city}, {args.mpc_vehicles:,} vehicles, mpc, blocks of "
        f"{args.block:,} ({steps:,} vehicle-steps)"
    )
    one_s, one_rss, figures = unsharded([city], args.mpc_vehicles, ["mpc"], args.block)
    base = figures[f"{city}/mpc"]
    print(
        f"   unsharded (baseline): cost {base['cost_cny']:12,.2f} CNY  peak "
        f"{base['peak_kw']:12,.0f} kW  {one_s:6.1f} s  peak RSS {one_rss / KIB_PER_MIB:,.0f} MiB"
    )
    times = {}
    rate = 0.0
    for rounds in (0, 1, 2):
        _, run_s, result, run = sharded(
            scenario, ["mpc"], cpus=2, block=args.block, jacobi_rounds=rounds
        )
        times[rounds] = run_s
        metrics = result.metrics(city, "mpc")
        cost = float(metrics.owner_cost_cny)
        print(
            f"   sharded, {rounds} Jacobi round(s): cost {cost:12,.2f} CNY "
            f"({(cost / base['cost_cny'] - 1) * 100:+.2f}%)  peak {metrics.peak_kw:12,.0f} kW "
            f"({(metrics.peak_kw / base['peak_kw'] - 1) * 100:+.2f}%)  {run_s:6.1f} s "
            f"(driver coordination {run.coordination_seconds:.2f} s); peak RSS per worker "
            f"{max(run.peak_rss_kib) / KIB_PER_MIB:,.0f} MiB"
        )
        if rounds == 2:
            base_kw = result.curves(city, "mpc").base_load_kw
            for r, loads in enumerate(run.round_loads[f"{city} / mpc"]):
                total = np.sum(loads, axis=0)
                day = fold_daily(total, base_kw.size, 1)
                print(
                    f"     round {r}: peak of base + fleet {float((base_kw + day).max()):12,.0f} kW"
                )
        if rounds == 1:
            rate = steps * 2 / run_s  # two rounds of every block
    print(
        f"   coordination overhead: 1 round x{times[1] / times[0]:.2f}, 2 rounds "
        f"x{times[2] / times[0]:.2f} the time of round 0 alone"
    )
    return rate


def part_projection(args: argparse.Namespace, rate_one: float, speedup: float) -> None:
    scenario = _scenario(["Shenzhen"], min(args.project_vehicles, args.block))
    per_vehicle = connected_steps(scenario, args.block) / min(args.project_vehicles, args.block)
    steps = per_vehicle * args.project_vehicles * args.project_cities
    efficiency = speedup / 2
    rate = rate_one * args.project_workers * efficiency
    print(
        f"3. projection (not measured): {args.project_cities} cities x "
        f"{args.project_vehicles:,} vehicles, {args.planner}: {steps:,.0f} vehicle-steps on "
        f"{args.project_workers} workers at {rate_one:,.0f} vehicle-steps/s each and the "
        f"2-worker efficiency {efficiency:.0%}: about {steps / rate:,.0f} s of simulation "
        "(assumes workers as fast as this machine's cores and a shared file system for --out; "
        "leaves out the runtime's start, the driver's joining of parts and the report)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cities", default="Shenzhen,Kunming")
    parser.add_argument("--vehicles", type=int, default=50_000)
    parser.add_argument("--planner", default="tou")
    parser.add_argument("--block", type=int, default=25_000)
    parser.add_argument("--mpc-city", default="Shenzhen")
    parser.add_argument("--mpc-vehicles", type=int, default=100_000)
    parser.add_argument("--project-cities", type=int, default=9)
    parser.add_argument("--project-vehicles", type=int, default=1_000_000)
    parser.add_argument("--project-workers", type=int, default=64)
    parser.add_argument("--skip", default="", help="parts to skip, e.g. 2")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    rate_one, speedup = part_throughput(args) if "1" not in skip else (0.0, 0.0)
    if "2" not in skip:
        part_peak(args)
    if "1" not in skip:
        part_projection(args, rate_one, speedup)


if __name__ == "__main__":
    main()
