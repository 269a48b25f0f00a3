"""The live aggregator under 1,000 simulated chargers: latency, message rate, nothing lost.

``v2ghub serve`` runs as a real subprocess (default planner, control loop on) with its
SQLite store in a temporary folder on disk: every acknowledged TransactionEvent costs a
commit with fsync (WAL, synchronous=FULL). The chargers run in this process (``run_fleet``)
on the wall clock (real time, no scaling): each station plugs a vehicle in within the
first ``--plug-within`` seconds, then sends a TransactionEvent Updated with its meter
values every ``--meter-interval`` seconds, as a thousand chargers would.

Reported per run: request-to-response latency of the chargers' calls (p50, p99) over the
steady state (after every station is connected and the vehicles are plugged) and over
the whole run, the message rate, and the loss check: every TransactionEvent the server
acknowledged carries one meter value, so the store must hold at least that many meter
rows (it may hold a few more: events committed whose answer was still on the way when
the fleet stopped).

Baseline, measured in the same run: the same fleet against the same server with its
store on /dev/shm (memory: fsync costs nothing), so the ratio isolates what durable
commits cost on this machine's disk.

Run: ``python benchmarks/bench_live.py [--chargers 1000] [--duration 180]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from v2ghub.live.chargers import ChargerFleet, make_fleet_config
from v2ghub.live.clock import SystemClock
from v2ghub.live.security import hash_password
from v2ghub.store.repository import Store

GOAL_P99_MS = 200.0
PASSWORD = "bench-password-0123456789"
SITE_ID = "site-1"
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RunResult:
    """One run of the fleet against one server."""

    store: str
    p50_ms: float
    p99_ms: float
    p50_all_ms: float
    p99_all_ms: float
    messages_per_s: float
    """Requests answered per second over the steady state (all actions)."""
    meter_values_per_s: float
    acknowledged_events: int
    stored_meter_rows: int
    call_errors: int
    reconnects: int
    server_cpu_s: float
    fleet_cpu_s: float
    """CPU of this process (the chargers) during the run."""

    @property
    def lost(self) -> int:
        """Acknowledged meter values missing from the store (must be 0)."""
        return max(self.acknowledged_events - self.stored_meter_rows, 0)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _register(data_dir: Path, count: int, width: int) -> None:
    """Stations SIM0001... with one password (one hash: scrypt per station is slow)."""
    password_hash = hash_password(PASSWORD)
    with Store.open(data_dir=data_dir) as store:
        for i in range(count):
            store.add_station(
                f"SIM{i + 1:0{width}d}",
                site_id=SITE_ID,
                password_hash=password_hash,
                v2x_allowed=True,
            )


def _start_server(
    data_dir: Path, port: int, log: Path, extra: tuple[str, ...] = ("--no-api",)
) -> subprocess.Popen[bytes]:
    """``v2ghub serve`` on ``port`` with ``extra`` options (default: without the web API)."""
    command = [
        sys.executable,
        "-m",
        "v2ghub.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        *extra,
    ]
    with log.open("wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while "listening on" not in log.read_text(errors="replace"):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"v2ghub serve did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return server


def _stop_server(server: subprocess.Popen[bytes]) -> float:
    """Stop the server (SIGINT, as Ctrl-C); its CPU time in seconds."""
    cpu_s = _cpu_seconds(server.pid)
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    return cpu_s


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process (Linux /proc), NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _run_fleet(
    url: str,
    *,
    count: int,
    duration_s: float,
    plug_within_s: float,
    meter_interval_s: float,
    v16_share: float = 0.0,
    v201_share: float = 0.25,
) -> tuple[ChargerFleet, int, float]:
    """Run the fleet; it, the number of calls before the steady state, and its length (s)."""
    config = make_fleet_config(
        url=url,
        count=count,
        password=PASSWORD,
        v201_share=v201_share,
        v16_share=v16_share,
        seed=1,
        meter_interval_s=meter_interval_s,
        first_arrival_within_s=plug_within_s,
        dwell_h=(6.0, 8.0),
        validate_messages=False,
    )
    fleet = ChargerFleet(config, clock=SystemClock())
    run = asyncio.create_task(fleet.run(duration_s=duration_s))
    # Steady state: every vehicle plugged and one meter interval more.
    warm_up_s = min(plug_within_s + meter_interval_s, duration_s / 3)
    await asyncio.sleep(warm_up_s)
    steady_from = len(fleet.collector.latencies_ms)
    began = time.perf_counter()
    await run
    return fleet, steady_from, time.perf_counter() - began


def _measure(
    args: argparse.Namespace,
    folder: Path,
    label: str,
    *,
    v16_share: float = 0.0,
    v201_share: float = 0.25,
) -> RunResult:
    width = max(4, len(str(args.chargers)))
    data_dir = folder / "data"
    _register(data_dir, args.chargers, width)
    port = _free_port()
    server = _start_server(data_dir, port, folder / "serve.log")
    try:
        fleet, steady_from, steady_s = asyncio.run(
            _run_fleet(
                f"ws://127.0.0.1:{port}",
                count=args.chargers,
                duration_s=args.duration,
                plug_within_s=args.plug_within,
                meter_interval_s=args.meter_interval,
                v16_share=v16_share,
                v201_share=v201_share,
            )
        )
    finally:
        server_cpu_s = _stop_server(server)
    stats = fleet.stats()
    with Store.open(data_dir=data_dir) as store:
        stored = store.count_meter_values()
    latencies = np.array(fleet.collector.latencies_ms)
    steady = latencies[steady_from:]
    # A meter value travels in a TransactionEvent (2.x) or a MeterValues (1.6).
    errors = stats.call_errors.get("TransactionEvent", 0) + stats.call_errors.get("MeterValues", 0)
    return RunResult(
        store=label,
        p50_ms=float(np.percentile(steady, 50)) if steady.size else math.nan,
        p99_ms=float(np.percentile(steady, 99)) if steady.size else math.nan,
        p50_all_ms=stats.latency_p50_ms,
        p99_all_ms=stats.latency_p99_ms,
        messages_per_s=steady.size / steady_s,
        meter_values_per_s=stats.meter_values_sent / stats.wall_s,
        # meter_values_sent counts TransactionEvents answered; a CallError is no receipt.
        # A 1.6 StartTransaction counts there too, but a V2X station's first one carries no
        # export register, so the store starts that transaction at its first MeterValues.
        acknowledged_events=stats.meter_values_sent
        - errors
        - stats.calls_sent.get("StartTransaction", 0),
        stored_meter_rows=stored,
        call_errors=sum(stats.call_errors.values()),
        reconnects=stats.reconnects,
        server_cpu_s=server_cpu_s,
        fleet_cpu_s=stats.cpu_s,
    )


def _print(results: list[RunResult], baseline: RunResult | None) -> None:
    print(
        f"{'store':>14} {'p50 ms':>7} {'p99 ms':>7} {'p99 all':>8} {'msg/s':>7} "
        f"{'meter/s':>8} {'acked':>7} {'stored':>7} {'lost':>5} {'errors':>6} "
        f"{'reconn':>6} {'srv cpu s':>9} {'fleet cpu s':>11} {'p99 vs base':>11} {'goal 200':>8}"
    )
    for r in results:
        ratio = r.p99_ms / baseline.p99_ms if baseline is not None else math.nan
        goal = "yes" if r.p99_ms < GOAL_P99_MS else "NO"
        print(
            f"{r.store:>14} {r.p50_ms:7.1f} {r.p99_ms:7.1f} {r.p99_all_ms:8.1f} "
            f"{r.messages_per_s:7.1f} {r.meter_values_per_s:8.1f} {r.acknowledged_events:7d} "
            f"{r.stored_meter_rows:7d} {r.lost:5d} {r.call_errors:6d} {r.reconnects:6d} "
            f"{r.server_cpu_s:9.1f} {r.fleet_cpu_s:11.1f} {ratio:11.2f} {goal:>8}"
        )


def main() -> None:
    """Run the fleet against a server on disk, then on /dev/shm, and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds per run")
    parser.add_argument("--meter-interval", type=float, default=10.0, help="seconds")
    parser.add_argument(
        "--plug-within", type=float, default=20.0, help="every vehicle plugs in by then (s)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the /dev/shm run")
    parser.add_argument(
        "--v16-share",
        type=float,
        help="compare a fleet with this share of OCPP 1.6J stations with an all-2.1 fleet "
        "(both on disk, in the same run) instead of disk against /dev/shm",
    )
    parser.add_argument("--keep", action="store_true", help="keep the data folders")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(
        f"{args.chargers} chargers, a meter value every {args.meter_interval:g} s (real time), "
        f"{args.duration:g} s per run"
    )
    if args.v16_share is not None:
        _compare_versions(args)
        return
    results: list[RunResult] = []
    baseline: RunResult | None = None
    runs: list[tuple[str, str | None]] = [("disk", None)]
    if not args.no_baseline and Path("/dev/shm").is_dir():
        runs.append(("/dev/shm", "/dev/shm"))
    for label, parent in runs:
        folder = Path(tempfile.mkdtemp(prefix="v2ghub-bench-", dir=parent))
        try:
            result = _measure(args, folder, label)
        finally:
            if args.keep:
                print(f"kept {folder}")
            else:
                with contextlib.suppress(OSError):
                    shutil.rmtree(folder)
        results.append(result)
        if parent is not None:
            baseline = result
    _print(results, baseline)


def _compare_versions(args: argparse.Namespace) -> None:
    """``--v16-share``: the fleet with that share of 1.6 stations, and all on 2.1 as the
    baseline, one after the other against a fresh server on disk each."""
    results: list[RunResult] = []
    for label, v16_share, v201_share in (
        ("all 2.1", 0.0, 0.0),
        (f"{args.v16_share:.0%} on 1.6", args.v16_share, 0.0),
    ):
        folder = Path(tempfile.mkdtemp(prefix="v2ghub-bench-"))
        try:
            results.append(
                _measure(args, folder, label, v16_share=v16_share, v201_share=v201_share)
            )
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(folder)
    _print(results, results[0])


if __name__ == "__main__":
    main()
