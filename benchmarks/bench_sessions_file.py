"""A sessions file of millions of rows through ``v2ghub plan --planner fast``: the whole
process's wall time, CPU time and peak memory, and how fast a bad last row is found.

Writes a seeded sessions file (the format of :mod:`v2ghub.scenarios.sessions_csv`, the
required columns only, ~105 bytes a row) over the example prices' 36 hours, with 1 % of
the sessions shorter than a step with ``--short-share 0.01`` (planned at zero power; the
old code refuses such a file, so by default there are none), and a copy whose last row has a
battery of ``sixty``. Each run is a child process that reports its own peak resident
memory (``VmHWM``, which starts afresh at exec); its CPU time (user + system, all its
threads) is read from its resource use when it ends. On a shared machine the CPU time is
the figure to compare; the wall time grows with the others' load.

The baseline, measured in the same run: reading the file's bytes and Arrow's bare
``read_csv`` of it (a floor for any loader), and, with ``--old-src FOLDER`` (the ``src`` of
another checkout, e.g. ``git worktree add /tmp/old <commit>``), the same commands on that
code. Code whose plan of the whole file would not fit in memory (before the schedule and
the summary were written a block of vehicles at a time, 2 million sessions over 144 steps
took ~20 GB) is given a smaller plan with ``--old-plan-rows``; the ratios are then per
session planned. The fast planner plans a block of sites at a time and keeps each
session's plugged steps only (:mod:`v2ghub.workflows.plan_blocks`); code that holds the
whole plan as one array (sessions x steps, float64: 2.3 GB for 2 million sessions over
144 steps) cannot peak below it. Run::

    python benchmarks/bench_sessions_file.py --rows 2000000 --old-src /tmp/old/src
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from bench_simulator import CHILD, KIB_PER_GIB

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PRICES = EXAMPLES / "prices.csv"
HEADER = (
    "session_id,site_id,arrival,departure,battery_kwh,soc_arrival,soc_target,"
    "max_charge_kw,max_discharge_kw\n"
)
CHUNK_ROWS = 200_000

# Each child reports its own peak, as bench_simulator's does (VmHWM starts afresh at exec).
_REPORT_PEAK = """
with open("/proc/self/status", encoding="ascii") as status:
    peak_kib = next(line.split()[1] for line in status if line.startswith("VmHWM"))
with open(sys.argv[1], "w", encoding="ascii") as out:
    out.write(peak_kib)
"""
LOAD = (
    """
import sys
from pathlib import Path
from v2ghub.errors import InputError
from v2ghub.scenarios.sessions_csv import load_sessions_csv
try:
    load_sessions_csv(Path(sys.argv[2]))
    code = 0
except InputError as error:
    print(error, file=sys.stderr)
    code = 2
"""
    + _REPORT_PEAK
    + "sys.exit(code)\n"
)
FLOOR = (
    """
import sys
import pyarrow as pa
import pyarrow.csv as pa_csv
data = open(sys.argv[2], "rb").read()
table = pa_csv.read_csv(pa.py_buffer(data))
"""
    + _REPORT_PEAK
)


def write_sessions(
    path: Path, *, rows: int, short_share: float, seed: int = 2025, bad_last_row: bool = False
) -> None:
    """A seeded sessions file of ``rows`` sessions within the example prices' horizon."""
    rng = np.random.default_rng(seed)
    zone = timezone(timedelta(hours=8))
    start = datetime(2025, 7, 16, tzinfo=zone)
    # Arrivals 06:00-22:00 on the first day, stays of 1-12 h (ending by noon next day);
    # a share of stays of 2-14 min between two step boundaries.
    arrival_min = rng.integers(6 * 60, 22 * 60, size=rows)
    stay_min = rng.integers(60, 12 * 60, size=rows)
    short = rng.random(rows) < short_share
    arrival_min = np.where(short, (arrival_min // 15) * 15 + 1, arrival_min)
    stay_min = np.where(short, rng.integers(2, 14, size=rows), stay_min)
    departure_min = np.minimum(arrival_min + stay_min, 36 * 60)
    battery_kwh = rng.choice([38.9, 44.9, 60.0, 75.0, 82.6], size=rows)
    soc_arrival = np.round(rng.uniform(0.2, 0.6, size=rows), 2)
    soc_target = np.round(np.maximum(soc_arrival, rng.uniform(0.7, 0.95, size=rows)), 2)
    charge_kw = rng.choice([7, 11, 20], size=rows)
    discharge_kw = np.where(rng.random(rows) < 0.4, charge_kw, 0)
    sites = rng.integers(0, 2000, size=rows)
    minute_text = [
        (start + timedelta(minutes=m)).isoformat() for m in range(36 * 60 + 1)
    ]  # every minute of the horizon, formatted once
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(HEADER)
        for low in range(0, rows, CHUNK_ROWS):
            high = min(low + CHUNK_ROWS, rows)
            lines = [
                f"s{i:010d},site-{sites[i]:04d},{minute_text[arrival_min[i]]},"
                f"{minute_text[departure_min[i]]},{battery_kwh[i]:g},{soc_arrival[i]:g},"
                f"{soc_target[i]:g},{charge_kw[i]},{discharge_kw[i]}\n"
                for i in range(low, high)
            ]
            if bad_last_row and high == rows:
                first, _, rest = lines[-1].partition(",2025")
                cells = ("2025" + rest).split(",")
                cells[2] = "sixty"  # battery_kwh
                lines[-1] = first + "," + ",".join(cells)
            handle.writelines(lines)


def run_child(
    code: str, args: list[str], *, src: Path | None, expect: int
) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds, peak GiB and the last line of stderr of one child."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    with tempfile.TemporaryDirectory() as folder:
        peak_file = Path(folder) / "peak_kib"
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", code, str(peak_file), *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_seconds = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
        if done.returncode != expect:
            raise SystemExit(f"exit {done.returncode}, expected {expect}: {done.stderr[-2000:]}")
        peak_gib = int(peak_file.read_text(encoding="ascii")) / KIB_PER_GIB
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return seconds, cpu_seconds, peak_gib, (lines[-1] if lines else "")


def main() -> None:
    """Write the files, run each task on this code (and the old), print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--old-src", type=Path, help="src folder of the code to compare with")
    parser.add_argument(
        "--plan-rows",
        type=int,
        help="rows of the file planned (default: --rows; 0 skips it)",
    )
    parser.add_argument(
        "--old-plan-rows",
        type=int,
        help="rows planned by --old-src's code (default: --plan-rows; code that writes the "
        "schedule row by row needs ~20 GB for 2 million rows, code that holds the whole "
        "plan as one array ~3.2 GB)",
    )
    parser.add_argument(
        "--short-share", type=float, default=0.0, help="share of sessions shorter than a step"
    )
    parser.add_argument("--folder", type=Path, help="where to write the files (default: temp)")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench-sessions-"))
    folder.mkdir(parents=True, exist_ok=True)
    new_src = Path(__file__).resolve().parent.parent / "src"
    plan_rows = args.rows if args.plan_rows is None else args.plan_rows
    old_plan_rows = plan_rows if args.old_plan_rows is None else args.old_plan_rows

    def sessions_file(rows: int, *, bad: bool) -> Path:
        short = f"-short{args.short_share:g}" if args.short_share else ""
        path = folder / f"sessions-{rows}{short}{'-bad' if bad else ''}.csv"
        if not path.exists():
            started = time.perf_counter()
            write_sessions(path, rows=rows, short_share=args.short_share, bad_last_row=bad)
            size_mb = path.stat().st_size / 1e6
            took = time.perf_counter() - started
            print(f"wrote {path} ({rows:,} rows, {size_mb:,.0f} MB) in {took:.1f} s")
        return path

    def plan_command(path: Path) -> list[str]:
        command = ["plan", "--planner", "fast", "--sessions", str(path)]
        return [*command, "--prices", str(PRICES), "--out", str(folder / "schedule.csv")]

    # (task, code run in the child, its arguments, expected exit status, rows)
    tasks = [
        ("load", LOAD, [str(sessions_file(args.rows, bad=False))], 0, args.rows),
        ("bad last row", CHILD, plan_command(sessions_file(args.rows, bad=True)), 2, args.rows),
    ]

    def code_tasks(label: str) -> list[tuple[str, str, list[str], int, int]]:
        rows = old_plan_rows if label == "old" else plan_rows
        if not rows:
            return tasks
        plan = plan_command(sessions_file(rows, bad=False))
        return [*tasks, ("plan fast", CHILD, plan, 0, rows)]

    print(
        f"{'code':>5} {'rows':>10} {'task':>13} {'wall s':>7} {'CPU s':>7} {'peak GiB':>9}  message"
    )
    floor = run_child(FLOOR, [str(sessions_file(args.rows, bad=False))], src=None, expect=0)
    print(
        f"{'floor':>5} {args.rows:>10,} {'read_csv':>13} {floor[0]:>7.1f} {floor[1]:>7.1f} "
        f"{floor[2]:>9.2f}"
    )
    codes = [("new", new_src)] + ([("old", args.old_src)] if args.old_src else [])
    # (wall s, CPU s, peak GiB, rows) of each code and task
    results: dict[tuple[str, str], tuple[float, float, float, int]] = {}
    for label, src in codes:
        for task, code, command, expect, rows in code_tasks(label):
            seconds, cpu_seconds, peak, message = run_child(code, command, src=src, expect=expect)
            results[(label, task)] = (seconds, cpu_seconds, peak, rows)
            print(
                f"{label:>5} {rows:>10,} {task:>13} {seconds:>7.1f} {cpu_seconds:>7.1f} "
                f"{peak:>9.2f}  {message[:120]}"
            )
    for task, *_ in code_tasks("new"):
        new_s, new_cpu, new_gib, new_rows = results[("new", task)]
        line = (
            f"{task}: new {new_cpu / floor[1]:.1f}x the floor's CPU time, "
            f"{new_gib / floor[2]:.1f}x its memory"
        )
        if ("old", task) in results:
            old_s, old_cpu, old_gib, old_rows = results[("old", task)]
            if old_rows == new_rows:
                line += (
                    f"; old/new: {old_cpu / new_cpu:.2f}x the CPU time, "
                    f"{old_s / new_s:.2f}x the wall time, {old_gib / new_gib:.2f}x the memory"
                )
            else:
                per_row = (old_cpu / old_rows) / (new_cpu / new_rows)
                line += f"; old/new per session: {per_row:.1f}x the CPU time"
        print(line)


if __name__ == "__main__":
    main()
