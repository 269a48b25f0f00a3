"""Live regulation under 1,000 simulated chargers: how late each AFRRSignal arrives, and
how many messages the broadcast costs against a per-charger setpoint path.

``v2ghub serve`` runs as a real subprocess (SQLite on disk, the default planner) with a
regulation commitment starting shortly after it does and a synthetic dynamic signal file
(4-s steps) replayed from the commitment's start. The OCPP 2.1 V2X chargers run in this
process on the wall clock (not checking the server's messages against the schemas, as a
thousand chargers sharing one core could not afford): they plug in within
``--plug-within`` seconds, accept their ``CentralFrequency`` profiles, follow every
AFRRSignal and send their power every 2 s in batches every 10 s. Measured over
``--duration`` seconds of the committed period:

- each AFRRSignal's delay at the charger: arrival minus the signal's ``timestamp``
  (p50, p99, max; goal p99 <= 1 s);
- messages the server sent per charger and in total (AFRRSignal and profiles).

Baseline, from the same run: a per-charger setpoint path would send each participating
EVSE a new setpoint whenever its own ``baseline + signal * share`` moves by more than
0.1 kW (:func:`v2ghub.regulation.dispatch.changed_setpoints`), computed from the shares
and signal the server recorded; the ratio is broadcast messages over those.

Run: ``python benchmarks/bench_regulation_live.py [--chargers 1000] [--duration 300]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from v2ghub.live.chargers import ChargerFleet, FleetStats, make_fleet_config
from v2ghub.live.clock import SystemClock
from v2ghub.live.security import hash_password
from v2ghub.regulation.signals import synthetic_signal
from v2ghub.store.regulation import RegulationMode
from v2ghub.store.repository import Store

GOAL_P99_S = 1.0
PASSWORD = "bench-password-0123456789"
SITE_ID = "site-1"
SIGNAL_STEP_S = 4.0
TOLERANCE_KW = 0.1
SETTLED_S = 20.0
"""Seconds into the commitment after which every frequency profile is in place."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds a running process has used (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_signal(path: Path, start: datetime, duration_s: float) -> None:
    signal = synthetic_signal(
        kind="dynamic", seed=7, start=start, duration_s=duration_s, step_s=SIGNAL_STEP_S
    )
    rows = ["time,signal"]
    for k, value in enumerate(signal.values):
        at = start + timedelta(seconds=k * SIGNAL_STEP_S)
        rows.append(f"{at.isoformat()},{value:.4f}")
    path.write_text("\n".join(rows) + "\n")


def setpoint_baseline_messages(store: Store, start: datetime, end: datetime) -> int:
    """Messages a per-EVSE setpoint path would have sent over ``[start, end)``."""
    shares = [
        s for s in store.shares(mode=RegulationMode.CENTRAL_FREQUENCY) if s.status == "Accepted"
    ]
    latest = {(s.station_id, s.evse_id): s for s in shares if s.from_at < end}
    baseline = np.array([s.baseline_kw for s in latest.values()])
    raise_kw = np.array([s.raise_share_kw for s in latest.values()])
    lower_kw = np.array([s.lower_share_kw for s in latest.values()])
    signal = np.array([s.signal for s in store.signals(start=start, end=end)])
    if signal.size < 2 or baseline.size == 0:
        return 0
    share = np.where(signal[:, None] >= 0, raise_kw, lower_kw)
    setpoint = baseline + signal[:, None] * share
    return int(np.count_nonzero(np.abs(np.diff(setpoint, axis=0)) > TOLERANCE_KW))


async def run_fleet(
    url: str, args: argparse.Namespace, run_s: float
) -> tuple[FleetStats, ChargerFleet]:
    config = make_fleet_config(
        url=url,
        count=args.chargers,
        password=PASSWORD,
        seed=1,
        meter_interval_s=60.0,
        first_arrival_within_s=args.plug_within,
        dwell_h=(8.0, 8.0),
        arrival_soc=(0.5, 0.5),
        target_soc=(0.6, 0.6),
        # A thousand chargers share this process's core: they skip checking the server's
        # messages against the schemas (real ones each have their own processor).
        validate_messages=False,
    )
    fleet = ChargerFleet(config, clock=SystemClock())
    await fleet.run(duration_s=run_s)
    return fleet.stats(), fleet


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=300.0, help="committed seconds run")
    parser.add_argument("--plug-within", type=float, default=30.0)
    parser.add_argument("--lead", type=float, default=90.0, help="seconds before the commitment")
    parser.add_argument("--server-log", type=Path, help="the server's debug log, to this file")
    args = parser.parse_args()
    started_wall = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        url = f"sqlite:///{data / 'v2ghub.sqlite3'}"
        now = datetime.now(UTC).replace(microsecond=0)
        starts_at = now + timedelta(seconds=args.lead)
        ends_at = starts_at + timedelta(hours=1)
        with Store.open(database_url=url) as store:
            for k in range(1, args.chargers + 1):
                store.add_station(
                    f"SIM{k:04d}",
                    site_id=SITE_ID,
                    password_hash=hash_password(PASSWORD),
                    v2x_allowed=True,
                )
        (data / "commitments.csv").write_text(
            "starts_at,ends_at,capacity_kw\n"
            f"{starts_at.isoformat()},{ends_at.isoformat()},{args.chargers * 2.0}\n"
        )
        write_signal(data / "signal.csv", starts_at, 3600.0)
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "v2ghub.cli",
                "serve",
                "--port",
                str(port),
                "--no-api",
                "--database-url",
                url,
                "--data-dir",
                str(data),
                "--control-interval",
                "60",
                "--regulation-commitments",
                str(data / "commitments.csv"),
                "--regulation-signal",
                str(data / "signal.csv"),
                *(["--log-level", "debug"] if args.server_log else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=args.server_log.open("w") if args.server_log else subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            time.sleep(3.0)
            run_s = args.lead + args.duration
            stats, fleet = asyncio.run(run_fleet(f"ws://127.0.0.1:{port}/ocpp", args, run_s))
        finally:
            server_cpu_s = process_cpu_s(server.pid)
            server.terminate()
            _, stderr = server.communicate(timeout=60)
            stderr = stderr or b""
        with Store.open(database_url=url) as store:
            end = starts_at + timedelta(seconds=args.duration)
            baseline_messages = setpoint_baseline_messages(store, starts_at, end)
            steps = len(store.signals(start=starts_at, end=end))
            shares = store.shares(mode=RegulationMode.CENTRAL_FREQUENCY)
            per_instant: dict[str, int] = {}
            statuses: dict[str, int] = {}
            for share in shares:
                instant = f"{share.from_at:%H:%M:%S}"
                per_instant[instant] = per_instant.get(instant, 0) + 1
                statuses[share.status] = statuses.get(share.status, 0) + 1
    wall_s = time.perf_counter() - started_wall
    afrr = stats.requests_received.get("AFRRSignal", 0)
    p50, p99, delay_max = stats.afrr_delay_p50_s, stats.afrr_delay_p99_s, stats.afrr_delay_max_s
    print(
        f"chargers {args.chargers}, committed seconds run {args.duration:g}, signal steps {steps}"
    )
    print(
        f"AFRRSignal delay at the charger: p50 {p50:.3f} s, p99 {p99:.3f} s, max {delay_max:.3f} s"
    )
    print(f"  goal p99 <= {GOAL_P99_S:g} s: {'met' if p99 <= GOAL_P99_S else 'NOT met'}")
    delays = np.frombuffer(fleet.collector.afrr_delays_s)
    stamps = np.frombuffer(fleet.collector.afrr_timestamps_s) - starts_at.timestamp()
    worst = sorted(
        ((float(delays[stamps == t].max()), float(t)) for t in np.unique(stamps)), reverse=True
    )[:5]
    print(
        "  latest signals (s after the commitment's start: worst delay):",
        ", ".join(f"{t:.0f}: {d:.2f} s" for d, t in worst),
    )
    settled = delays[stamps >= SETTLED_S]
    if settled.size:
        print(
            f"  from {SETTLED_S:g} s on (the profiles installed): p50 "
            f"{np.percentile(settled, 50):.3f} s, p99 {np.percentile(settled, 99):.3f} s, "
            f"max {settled.max():.3f} s"
        )
    per_charger = afrr / max(args.chargers, 1)
    print(
        f"broadcast: {afrr} AFRRSignal received ({per_charger:.1f} a charger, "
        f"{afrr / max(args.duration, 1):.1f}/s), {len(shares)} frequency profiles sent"
    )
    print(
        f"per-charger setpoint baseline (computed from the same shares and signal): "
        f"{baseline_messages} setpoints ({baseline_messages / max(args.chargers, 1):.1f} a charger)"
    )
    print("their answers:", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    print(
        "frequency profiles per control instant:",
        ", ".join(f"{at} {count}" for at, count in sorted(per_instant.items())),
    )
    if baseline_messages:
        ratio = (afrr + len(shares)) / baseline_messages
        print(f"messages, broadcast / per-charger setpoints: {ratio:.2f}")
    print(
        f"CPU seconds over the run: server {server_cpu_s:.0f}, chargers {stats.cpu_s:.0f} "
        f"(of {2 * stats.wall_s:.0f} on this machine's 2 cores)"
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"whole process {wall_s:.0f} s wall, peak memory of the charger process {peak_mb:.0f} MB")
    if stderr.strip():
        print("server stderr (last lines):", *stderr.decode().splitlines()[-5:], sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
