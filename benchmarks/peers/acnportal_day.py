"""One acnportal (ACN-Sim) day over given sessions, timed; prints one JSON line.

Run by the peers' own interpreter (``benchmarks/bench_peers.py`` builds that environment),
never by the project's: ``python acnportal_day.py --sessions day.json``.

The sessions file is JSON with one list per field, one entry per session, on a grid of
15-minute steps: ``arrival_step``, ``departure_step`` (first step no longer plugged),
``battery_kwh``, ``energy_arrival_kwh``, ``energy_requested_kwh`` and ``max_charge_kw``.
``bench_peers.py`` writes it from the v2ghub day it times, so both tools see the same
vehicles. Each session becomes an acnportal ``EV`` with an ideal ``Battery`` and a
``PluginEvent`` in a synthetic ``EventQueue``; sessions share stations the way a site
would (a station takes the next vehicle once its last one has left: first-fit in arrival
order), on ``simple_acn`` (32 A "BASIC" stations at 220 V, one aggregate limit set so that
charging at full rate never breaks it). The policy is ``UncontrolledCharging`` (or
``RoundRobin`` with first-come-first-served order), run by ``Simulator.run`` with
``period=15`` minutes.

A connected vehicle-step is one vehicle plugged in for one step, counted from acnportal's
own record of the sessions it plugged in (``Simulator.ev_history``): a vehicle is plugged
from the iteration of its plug-in event up to, not including, that of its unplug event.
"""

from __future__ import annotations

import argparse
import heapq
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

# The peers' interpreter has these; the project's (and so mypy) does not.
from acnportal import acnsim  # type: ignore[import-not-found,unused-ignore]
from acnportal.algorithms import (  # type: ignore[import-not-found,unused-ignore]
    RoundRobin,
    UncontrolledCharging,
    first_come_first_served,
)

PERIOD_MIN = 15
VOLTAGE_V = 220
STATION_MAX_A = 32  # acnportal's "BASIC" EVSE


def _stations(arrival: list[int], departure: list[int]) -> list[int]:
    """First-fit station for each session: a station is free again at its last departure."""
    order = sorted(range(len(arrival)), key=lambda i: arrival[i])
    free_at: list[tuple[int, int]] = []  # (step the station is free, station)
    station = [0] * len(arrival)
    opened = 0
    for i in order:
        # acnportal unplugs before it plugs in within one step, so a station freed at the
        # arrival step can take the arriving vehicle.
        if free_at and free_at[0][0] <= arrival[i]:
            _, station[i] = heapq.heappop(free_at)
        else:
            station[i] = opened
            opened += 1
        heapq.heappush(free_at, (departure[i], station[i]))
    return station


def main() -> None:
    """Run one day and print wall seconds, connected vehicle-steps and steps as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=Path, required=True)
    parser.add_argument("--policy", choices=("uncontrolled", "round-robin"), default="uncontrolled")
    args = parser.parse_args()

    day: dict[str, list[Any]] = json.loads(args.sessions.read_text())
    arrival = [int(a) for a in day["arrival_step"]]
    departure = [int(d) for d in day["departure_step"]]
    station = _stations(arrival, departure)
    station_ids = [f"S{k}" for k in range(max(station, default=-1) + 1)]

    setup_started = time.perf_counter()
    events = []
    for i in range(len(arrival)):
        battery = acnsim.Battery(
            capacity=float(day["battery_kwh"][i]),
            init_charge=float(day["energy_arrival_kwh"][i]),
            max_power=float(day["max_charge_kw"][i]),
        )
        ev = acnsim.EV(
            arrival[i],
            departure[i],
            float(day["energy_requested_kwh"][i]),
            station_ids[station[i]],
            f"session-{i}",
            battery,
        )
        events.append(acnsim.PluginEvent(arrival[i], ev))
    queue = acnsim.EventQueue(events)
    network = acnsim.sites.simple_acn(
        station_ids,
        voltage=VOLTAGE_V,
        aggregate_cap=len(station_ids) * STATION_MAX_A * VOLTAGE_V / 1000,
    )
    scheduler: Any = (
        UncontrolledCharging()
        if args.policy == "uncontrolled"
        else RoundRobin(first_come_first_served)
    )
    start = datetime(2025, 7, 16, tzinfo=ZoneInfo("Asia/Shanghai"))
    simulator = acnsim.Simulator(network, scheduler, queue, start, period=PERIOD_MIN, verbose=False)
    setup_s = time.perf_counter() - setup_started

    started = time.perf_counter()
    simulator.run()
    loop_s = time.perf_counter() - started

    plugged = simulator.ev_history.values()
    result = {
        "tool": "acnportal",
        "policy": type(scheduler).__name__,
        "vehicles": len(simulator.ev_history),
        "ports": len(station_ids),
        "steps": int(simulator.iteration),
        "connected_vehicle_steps": int(sum(ev.departure - ev.arrival for ev in plugged)),
        "seconds": loop_s,
        "setup_seconds": setup_s,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
