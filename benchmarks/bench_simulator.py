"""Simulator throughput in connected vehicle-steps per second, for 1e4, 1e5 and 1e6
vehicles, and what a whole ``v2ghub simulate`` process takes beside it.

A connected vehicle-step is one vehicle plugged in for one step (whole steps, as the
engine counts them): what simulators count when they state vehicle-steps per second, and
what ``benchmarks/bench_peers.py`` compares with EV2Gym and acnportal. The fleet's size
times the grid's length (every vehicle at every step, plugged or not, about 3.4 times as
many) is printed too, labelled as such, for comparison with earlier figures.

One synthetic city (Shenzhen) over its day at 15-minute steps (the grid runs until the last
session leaves, about 34 hours), for each planner. The core is the engine's run
(``Simulator(...).run()``: planning, checking and stepping). A floor measured in the same
run puts the figures in context on a noisy machine: one plain vectorised pass over the
fleet arrays (``energy += power * dt``) per step, which no simulator can beat.

Unless ``--no-end-to-end`` is given, it also runs ``v2ghub simulate --cities Shenzhen
--planners tou,v2g-rules`` as a separate process at each size and prints its wall time and
peak memory (the process's maximum resident set) against the same two planners' core time
measured here: fleet generation, metrics, settlement, Parquet and the report are the
difference. It prints the CPU time (user + system) of both too, and their ratio: on a
machine shared with other work, wall times stretch with the load while CPU times do not.

Run: ``make bench`` or ``python benchmarks/bench_simulator.py [--sizes 10000,100000]``.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from v2ghub.planning import make_planner
from v2ghub.scenarios.build import synthetic_cases
from v2ghub.scenarios.config import ScenarioFile, SimulationSettings, resolve
from v2ghub.sim.engine import Simulator

GOAL_CONNECTED_STEPS_PER_S = 3_000_000
END_TO_END_PLANNERS = ("tou", "v2g-rules")
RULE_PLANNERS = ("uncontrolled", "tou", "v2g-rules")
KIB_PER_GIB = 1024**2


def _baseline_seconds(n: int, steps: int) -> float:
    """A floor: one fused multiply-add over n vehicles per step."""
    energy = np.zeros(n)
    power = np.full(n, 7.0)
    started = time.perf_counter()
    for _ in range(steps):
        energy += power * 0.25
    return time.perf_counter() - started


# The child reports its own peak: /proc's VmHWM starts afresh at exec, whereas ru_maxrss
# would count the benchmark's own memory, which the child holds between fork and exec.
# It then ends as the installed command does (``leave``: no interpreter teardown).
CHILD = """
import sys
from v2ghub.cli import leave, main
code = main(sys.argv[2:])
with open("/proc/self/status", encoding="ascii") as status:
    peak_kib = next(line.split()[1] for line in status if line.startswith("VmHWM"))
with open(sys.argv[1], "w", encoding="ascii") as out:
    out.write(peak_kib)
leave(code)
"""


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def end_to_end(n: int) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak resident memory (GiB) of a whole
    ``v2ghub simulate`` process."""
    with tempfile.TemporaryDirectory() as folder:
        peak_file = Path(folder) / "peak_kib"
        command = [
            sys.executable,
            "-c",
            CHILD,
            str(peak_file),
            "simulate",
            "--cities",
            "Shenzhen",
            "--vehicles",
            str(n),
            "--planners",
            ",".join(END_TO_END_PLANNERS),
            "--quiet",
            "--out",
            str(Path(folder) / "out"),
        ]
        cpu_before = _children_cpu_seconds()
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        cpu_seconds = _children_cpu_seconds() - cpu_before
        peak_kib = int(peak_file.read_text(encoding="ascii"))
    return seconds, cpu_seconds, peak_kib / KIB_PER_GIB


def main() -> None:
    """Print a table of throughput per fleet size and planner, then the whole process."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    # The exact planners (lp, mpc) take minutes a day at these sizes: name them to run them.
    parser.add_argument("--planners", default="uncontrolled,tou,v2g-rules,fast")
    parser.add_argument("--no-end-to-end", action="store_true", help="skip the whole process")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    planners = args.planners.split(",")
    if not args.no_end_to_end:  # the whole process's core: its planners, timed here too
        planners += [p for p in END_TO_END_PLANNERS if p not in planners]
    print(
        f"{'vehicles':>10} {'planner':>13} {'steps':>6} {'connected':>13} {'core s':>7} "
        f"{'planner s':>9} {'M conn/s':>9} {'M fleet x grid/s':>17} {'vs floor':>9} "
        f"{'goal 3M':>7}"
    )
    core_s: dict[tuple[int, str], float] = {}
    core_cpu_s: dict[tuple[int, str], float] = {}
    for n in sizes:
        settings = SimulationSettings(vehicles_per_city=n, cities=("Shenzhen",))
        case = synthetic_cases(resolve(ScenarioFile(simulation=settings)))[0]
        steps = case.grid.length
        connected = case.connected_vehicle_steps
        floor_s = _baseline_seconds(n, steps)
        for name in planners:
            started, cpu_started = time.perf_counter(), time.process_time()
            run = Simulator(case, make_planner(name)).run()
            seconds = time.perf_counter() - started
            core_s[(n, name)] = seconds
            core_cpu_s[(n, name)] = time.process_time() - cpu_started
            rate = connected / seconds
            # The goal is the rule planners' at a million vehicles (an optimising planner
            # spends its time planning); smaller fleets only show the trend.
            ruled = n >= 1e6 and name in RULE_PLANNERS
            ok = ("yes" if rate >= GOAL_CONNECTED_STEPS_PER_S else "NO") if ruled else "-"
            print(
                f"{n:>10,} {name:>13} {steps:>6} {connected:>13,} {seconds:>7.2f} "
                f"{run.planner_seconds:>9.2f} {rate / 1e6:>9.2f} "
                f"{n * steps / seconds / 1e6:>17.1f} {seconds / floor_s:>8.0f}x {ok:>7}"
            )
        print(f"{n:>10,} {'floor (1 op)':>13} {steps:>6} {connected:>13,} {floor_s:>7.3f}")
    if args.no_end_to_end:
        return
    print(
        f"\nWhole process: v2ghub simulate --cities Shenzhen --planners "
        f"{','.join(END_TO_END_PLANNERS)} (a separate process; its core measured above)"
    )
    print(
        f"{'vehicles':>10} {'wall s':>7} {'core s':>7} {'wall/core':>9} {'cpu s':>7} "
        f"{'core cpu s':>10} {'cpu/core cpu':>12} {'peak GiB':>8}"
    )
    for n in sizes:
        core = sum(core_s.get((n, p), float("nan")) for p in END_TO_END_PLANNERS)
        core_cpu = sum(core_cpu_s.get((n, p), float("nan")) for p in END_TO_END_PLANNERS)
        wall, cpu, peak_gib = end_to_end(n)
        print(
            f"{n:>10,} {wall:>7.1f} {core:>7.2f} {wall / core:>9.2f} {cpu:>7.1f} "
            f"{core_cpu:>10.2f} {cpu / core_cpu:>12.2f} {peak_gib:>8.2f}"
        )


if __name__ == "__main__":
    main()
