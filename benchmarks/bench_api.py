"""The web API beside 1,000 simulated chargers: its latency, and what it costs the OCPP side.

Two runs against a real ``v2ghub serve`` subprocess (SQLite on disk), each with the same
fleet of ``--chargers`` stations on the wall clock (as ``bench_live.py``: every vehicle
plugs in within ``--plug-within`` seconds, then a TransactionEvent with meter values every
``--meter-interval`` seconds):

- **with the API**: ``serve`` with its web API; a second process reads ``/api/v1/fleet/now``
  and ``/api/v1/history`` (the last four hours in 15-minute intervals, per site) at
  ``--api-rate`` requests a second each (about what a room of dashboards polling every few
  seconds asks), and ``--watchers`` clients hold the dashboard's live feed open;
- **baseline**: the same fleet against ``serve --no-api``, nothing reading.

The store holds a day of history before each run (``--history-hours`` of meter values
every 5 minutes and setpoints every 15 minutes for every station, and what the control
loop records of each site once a minute), so that the reads work over realistic tables,
not empty ones.

Reported: API p50/p99 per route (client side, steady state), the OCPP p99 with and without
the API and their ratio (goal: within 10%), and the store reads the feed made per second
(``v2ghub_feed_snapshots`` from ``/metrics``: one snapshot is one round of store reads,
shared by every watcher; goal: at most one a second however many watch).

Run: ``python benchmarks/bench_api.py [--chargers 1000] [--duration 120]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np

from bench_live import (
    _cpu_seconds,
    _free_port,
    _register,
    _run_fleet,
    _start_server,
    _stop_server,
)
from v2ghub.store import schema
from v2ghub.store.api_tokens import Role, new_token
from v2ghub.store.repository import Store

GOAL_API_P99_MS = 100.0
GOAL_OCPP_RATIO = 1.10
SITES = 10
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RunResult:
    label: str
    server_cpu_s: float
    web_cpu_s: float
    """The web API's own process (a child of ``serve``)."""
    reader_cpu_s: float
    fleet_cpu_s: float
    ocpp_p50_ms: float
    ocpp_p99_ms: float
    api_ms: dict[str, tuple[float, float, int]]
    """Per route: p50, p99 and the number of requests."""
    api_errors: int
    feed_snapshots_per_s: float
    feed_events: int


def _prefill(data_dir: Path, count: int, width: int, hours: float, now: datetime) -> int:
    """A day of meter values and setpoints for every station (bulk inserts); rows added."""
    station_ids = [f"SIM{i + 1:0{width}d}" for i in range(count)]
    start = now - timedelta(hours=hours)
    meter_times = [start + timedelta(minutes=5 * k) for k in range(int(hours * 12))]
    plan_times = meter_times[::3]
    rng = np.random.default_rng(7)
    rows = 0
    with Store.open(data_dir=data_dir) as store, store.engine.begin() as connection:
        # Ten sites of a hundred stations each: the history has something per site to sum.
        for index, station_id in enumerate(station_ids):
            connection.execute(
                schema.stations.update()
                .where(schema.stations.c.station_id == station_id)
                .values(site_id=f"site-{index % SITES + 1}")
            )
        for station_id in station_ids:
            transaction_id = f"history-{station_id}"
            connection.execute(
                schema.sessions.insert().values(
                    station_id=station_id,
                    transaction_id=transaction_id,
                    evse_id=1,
                    started_at=start,
                    ended_at=now - timedelta(minutes=10),
                    last_seq_no=len(meter_times),
                    start_import_register_wh=0,
                    start_export_register_wh=0,
                )
            )
            power_kw = rng.uniform(-7.0, 11.0, size=len(meter_times))
            connection.execute(
                schema.meter_values.insert(),
                [
                    {
                        "station_id": station_id,
                        "transaction_id": transaction_id,
                        "seq_no": k,
                        "measured_at": at,
                        "evse_id": 1,
                        "import_register_wh": 1_000 * k,
                        "export_register_wh": 100 * k,
                        "power_kw": float(power_kw[k]),
                        "soc": 0.5,
                    }
                    for k, at in enumerate(meter_times)
                ],
            )
            connection.execute(
                schema.setpoints.insert(),
                [
                    {
                        "station_id": station_id,
                        "evse_id": 1,
                        "transaction_id": transaction_id,
                        "sent_at": at,
                        "setpoint_kw": float(power_kw[3 * k]),
                        "discharge_limit_kw": 7.0,
                        "planner": "fast",
                        "status": "Accepted",
                    }
                    for k, at in enumerate(plan_times)
                ],
            )
            rows += len(meter_times) + len(plan_times)
        # What the control loop records: each site at each instant (one a minute).
        instants = [start + timedelta(minutes=k) for k in range(int(hours * 60))]
        connection.execute(
            schema.site_power.insert(),
            [
                {
                    "site_id": f"site-{site + 1}",
                    "at": at,
                    "measured_kw": float(rng.uniform(-300.0, 600.0)),
                    "planned_kw": float(rng.uniform(-300.0, 600.0)),
                    "import_limit_kw": None,
                    "export_limit_kw": 0.0,
                    "plugged": 100,
                }
                for site in range(SITES)
                for at in instants
            ],
        )
        rows += SITES * len(instants)
    return rows


def _token(data_dir: Path) -> str:
    token = new_token()
    with Store.open(data_dir=data_dir) as store:
        store.add_token("bench", role=Role.ADMIN, token=token, at=datetime.now(UTC))
    return token


# The reader process ---------------------------------------------------------------------------


def _read(args: argparse.Namespace) -> None:
    """Read the API at a steady rate for ``--duration`` s and hold ``--watchers`` feeds open;
    write the latencies as JSON to ``--out``."""
    headers = {"Authorization": f"Bearer {args.token}"}
    stop = time.monotonic() + args.duration
    latencies: dict[str, list[float]] = {}
    errors = 0
    feed_events = 0
    lock = threading.Lock()

    def watch() -> None:
        while time.monotonic() < stop:  # a stream ends every 30 s; a browser reconnects
            watch_once()

    def watch_once() -> None:
        nonlocal feed_events
        feed = f"{args.url}/api/v1/feed"
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.Client(timeout=30) as client,
            client.stream("GET", feed, headers=headers) as response,
        ):
            if response.status_code != 200:
                return
            # Counted in the raw bytes: splitting half a megabyte into lines every two
            # seconds in twenty threads would load this machine more than the server.
            tail = b""
            for chunk in response.iter_raw():
                joined = tail + chunk
                found = joined.count(b"event: fleet\n")
                tail = joined[-16:]
                with lock:
                    feed_events += found - tail.count(b"event: fleet\n")
                if time.monotonic() > stop:
                    return

    watchers = [threading.Thread(target=watch, daemon=True) for _ in range(args.watchers)]
    for thread in watchers:
        thread.start()
    interval_s = 1.0 / args.api_rate
    with httpx.Client(base_url=args.url, headers=headers, timeout=30) as client:
        next_s = time.monotonic()
        while time.monotonic() < stop:
            now = datetime.now(UTC)
            history = (
                f"/api/v1/history?start={(now - timedelta(hours=4)).isoformat()}"
                f"&end={now.isoformat()}&interval_s=900"
            )
            for name, path in (("fleet/now", "/api/v1/fleet/now"), ("history 4 h", history)):
                began = time.perf_counter()
                response = client.get(path.replace("+", "%2B"))
                elapsed_ms = (time.perf_counter() - began) * 1e3
                if response.status_code != 200:
                    errors += 1
                    continue
                latencies.setdefault(name, []).append(elapsed_ms)
            next_s += interval_s
            time.sleep(max(0.0, next_s - time.monotonic()))
    Path(args.out).write_text(
        json.dumps({"latencies_ms": latencies, "errors": errors, "feed_events": feed_events})
    )


# Runs -------------------------------------------------------------------------------------


def _web_processes(server_pid: int) -> list[int]:
    """``serve``'s web API process (a multiprocessing child), if it runs one."""
    try:
        children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    except OSError:
        return []
    found = []
    for child in children:
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    return found


def _feed_snapshots(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("v2ghub_feed_snapshots ") or line.startswith(
            "v2ghub_feed_snapshots_total "
        ):
            return float(line.split()[1])
    return math.nan


def _measure(args: argparse.Namespace, folder: Path, *, with_api: bool) -> RunResult:
    width = max(4, len(str(args.chargers)))
    data_dir = folder / "data"
    _register(data_dir, args.chargers, width)
    _prefill(data_dir, args.chargers, width, args.history_hours, datetime.now(UTC))
    token = _token(data_dir)
    port, api_port = _free_port(), _free_port()
    extra = ("--api-port", str(api_port)) if with_api else ("--no-api",)
    server = _start_server(data_dir, port, folder / "serve.log", extra)
    api_url = f"http://127.0.0.1:{api_port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while with_api and "dashboard on" not in (folder / "serve.log").read_text(errors="replace"):
        if time.monotonic() > deadline:  # the web API starts just after the OCPP server
            raise RuntimeError("the web API did not start")
        time.sleep(0.2)
    reader: subprocess.Popen[bytes] | None = None
    out = folder / "reader.json"
    snapshots_before = math.nan
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    children_cpu_s = before.ru_utime + before.ru_stime
    try:
        if with_api:
            snapshots_before = _feed_snapshots(api_url)
            reader = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--read",
                    "--url",
                    api_url,
                    "--token",
                    token,
                    "--duration",
                    str(args.duration),
                    "--api-rate",
                    str(args.api_rate),
                    "--watchers",
                    str(args.watchers),
                    "--reader-niceness",
                    str(args.reader_niceness),
                    "--out",
                    str(out),
                ]
            )
        began = time.monotonic()
        fleet, steady_from, _ = asyncio.run(
            _run_fleet(
                f"ws://127.0.0.1:{port}",
                count=args.chargers,
                duration_s=args.duration,
                plug_within_s=args.plug_within,
                meter_interval_s=args.meter_interval,
            )
        )
        wall_s = time.monotonic() - began
        snapshots = _feed_snapshots(api_url) - snapshots_before if with_api else math.nan
        if reader is not None:
            reader.wait(timeout=args.duration + 60)
    finally:
        if reader is not None and reader.poll() is None:
            reader.kill()
        web_cpu_s = sum(_cpu_seconds(pid) for pid in _web_processes(server.pid))
        server_cpu_s = _stop_server(server)
    reader_cpu_s = math.nan
    if reader is not None:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        # Both the server (and its web process) and the reader have been waited for: the
        # children's time is all of them.
        reader_cpu_s = usage.ru_utime + usage.ru_stime - children_cpu_s - server_cpu_s - web_cpu_s
    latencies = np.array(fleet.collector.latencies_ms)[steady_from:]
    api_ms: dict[str, tuple[float, float, int]] = {}
    errors = 0
    feed_events = 0
    if with_api:
        read = json.loads(out.read_text())
        errors, feed_events = read["errors"], read["feed_events"]
        for name, values in read["latencies_ms"].items():
            steady = np.array(values)[len(values) // 6 :]  # after the fleet's warm-up
            api_ms[name] = (
                float(np.percentile(steady, 50)),
                float(np.percentile(steady, 99)),
                len(values),
            )
    return RunResult(
        label="with API" if with_api else "no API",
        server_cpu_s=server_cpu_s,
        web_cpu_s=web_cpu_s,
        reader_cpu_s=reader_cpu_s,
        fleet_cpu_s=fleet.stats().cpu_s,
        ocpp_p50_ms=float(np.percentile(latencies, 50)),
        ocpp_p99_ms=float(np.percentile(latencies, 99)),
        api_ms=api_ms,
        api_errors=errors,
        feed_snapshots_per_s=snapshots / wall_s if with_api else math.nan,
        feed_events=feed_events,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds per run")
    parser.add_argument("--meter-interval", type=float, default=10.0)
    parser.add_argument("--plug-within", type=float, default=20.0)
    parser.add_argument("--history-hours", type=float, default=24.0)
    parser.add_argument("--api-rate", type=float, default=4.0, help="reads a second per route")
    parser.add_argument("--watchers", type=int, default=20, help="live feeds held open")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs, interleaved")
    parser.add_argument(
        "--reader-niceness",
        type=int,
        default=0,
        help="run the reading process at this nice value (it stands in for browsers and "
        "dashboards on other machines; 0: the server's own priority)",
    )
    parser.add_argument("--read", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read:
        os.nice(args.reader_niceness)
        _read(args)
        return
    logging.basicConfig(level=logging.ERROR)
    print(
        f"{args.chargers} chargers, a meter value every {args.meter_interval:g} s, "
        f"{args.duration:g} s a run; {args.history_hours:g} h of history in the store; "
        f"API reads {args.api_rate:g}/s per route, {args.watchers} live feeds open"
    )
    results = []
    for _ in range(args.rounds):  # interleaved: a slow spell of the machine hits both
        for with_api in (False, True):
            folder = Path(tempfile.mkdtemp(prefix="v2ghub-bench-api-"))
            try:
                results.append(_measure(args, folder, with_api=with_api))
            finally:
                with contextlib.suppress(OSError):
                    shutil.rmtree(folder)
    print(
        f"{'run':>9} {'OCPP p50 ms':>11} {'OCPP p99 ms':>11} {'server cpu s':>12} {'web cpu s':>9} "
        f"{'fleet cpu s':>11} {'reader cpu s':>12}"
    )
    for r in results:
        print(
            f"{r.label:>9} {r.ocpp_p50_ms:11.1f} {r.ocpp_p99_ms:11.1f} {r.server_cpu_s:12.1f} "
            f"{r.web_cpu_s:9.1f} "
            f"{r.fleet_cpu_s:11.1f} {r.reader_cpu_s:12.1f}"
        )
    baselines = [r for r in results if r.label == "no API"]
    loads = [r for r in results if r.label == "with API"]
    base_p99 = float(np.median([r.ocpp_p99_ms for r in baselines]))
    loaded_p99 = float(np.median([r.ocpp_p99_ms for r in loads]))
    ratio = loaded_p99 / base_p99
    print(
        f"OCPP p99, median of {args.rounds}: {loaded_p99:.1f} ms with the API, {base_p99:.1f} "
        f"without: {ratio:.2f} (goal <= {GOAL_OCPP_RATIO:.2f}: "
        f"{'yes' if ratio <= GOAL_OCPP_RATIO else 'NO'})"
    )
    print(
        f"{'route':>12} {'p50 ms':>7} {'p99 ms':>7} {'requests':>8} {'goal 100':>8}  (each round)"
    )
    for loaded in loads:
        for name, (p50, p99, n) in loaded.api_ms.items():
            goal = "yes" if p99 < GOAL_API_P99_MS else "NO"
            print(f"{name:>12} {p50:7.1f} {p99:7.1f} {n:8d} {goal:>8}")
    print(
        f"API errors {loaded.api_errors}; live feed: {loaded.feed_events} events to "
        f"{args.watchers} watchers, {loaded.feed_snapshots_per_s:.2f} snapshots (store "
        "read rounds) a second (goal <= 1)"
    )


if __name__ == "__main__":
    main()
