"""One EV2Gym day with about N plugged vehicles, timed; prints one JSON line.

Run by the peers' own interpreter (``benchmarks/bench_peers.py`` builds that environment),
never by the project's: ``python ev2gym_day.py --vehicles 1000 --seed 1``.

The day is EV2Gym's README example configuration (``V2GProfitPlusLoads.yaml``: workplace
arrivals, inflexible loads, solar and a demand-response event, no power flow) at its own
15-minute steps, with the date fixed (a Monday) instead of drawn at random, 96 steps from
05:00, one port per charging station, and as many stations as it takes for EV2Gym's own
arrival model to spawn about N sessions. The policy is its ``ChargeAsFastAsPossible``
heuristic (or ``RoundRobin``, for which the power setpoint it shares out is switched on),
driven exactly as in its README: ``get_action`` then ``step``.

A connected vehicle-step is one vehicle plugged in for one step; they are counted from
EV2Gym's own state: before each step, the sum over stations of ``n_evs_connected``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from importlib import resources
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

# The peers' interpreter has these; the project's (and so mypy) does not.
import yaml  # type: ignore[import-untyped,unused-ignore]
from ev2gym.baselines.heuristics import (  # type: ignore[import-not-found,unused-ignore]
    ChargeAsFastAsPossible,
    RoundRobin,
)
from ev2gym.models.ev2gym_env import EV2Gym  # type: ignore[import-not-found,unused-ignore]

STEPS_PER_DAY = 96
START_HOUR = 5
# EV2Gym's workplace arrivals fill a port about this many times a day (refined after a try).
FIRST_GUESS_SESSIONS_PER_PORT = 0.75
SIZE_TOLERANCE = 0.1
SIZE_ATTEMPTS = 4


def _config(stations: int, folder: Path, *, setpoints: bool) -> Path:
    """Write the README example's configuration with our date, length and station count."""
    package = resources.files("ev2gym")
    example = package / "example_config_files" / "V2GProfitPlusLoads.yaml"
    config: dict[str, Any] = yaml.safe_load(example.read_text())
    config.update(
        simulation_length=STEPS_PER_DAY,
        random_day=False,
        random_hour=False,
        year=2022,
        month=1,
        day=17,
        hour=START_HOUR,
        minute=0,
        number_of_charging_stations=stations,
        number_of_ports_per_cs=1,
        # RoundRobin shares a power setpoint; without one (the example's) it charges nobody.
        power_setpoint_enabled=setpoints,
        # The example names its EV table relative to the repository's root: point at the
        # installed copy instead.
        ev_specs_file=str(package / "data" / "ev_specs_v2g_enabled2024.json"),
    )
    path = folder / f"config_{stations}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _environment(vehicles: int, seed: int, folder: Path, *, setpoints: bool) -> Any:
    """An EV2Gym environment whose day holds about ``vehicles`` sessions."""
    stations = max(1, math.ceil(vehicles / FIRST_GUESS_SESSIONS_PER_PORT))
    env: Any = None
    for _ in range(SIZE_ATTEMPTS):
        env = EV2Gym(config_file=str(_config(stations, folder, setpoints=setpoints)), seed=seed)
        sessions = len(env.EVs_profiles)
        if abs(sessions - vehicles) <= SIZE_TOLERANCE * vehicles:
            break
        stations = max(1, round(stations * vehicles / max(sessions, 1)))
    return env


def main() -> None:
    """Run one day and print wall seconds, connected vehicle-steps and steps as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vehicles", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policy", choices=("fast", "round-robin"), default="fast")
    args = parser.parse_args()

    with TemporaryDirectory() as folder:
        setup_started = time.perf_counter()
        env = _environment(
            args.vehicles, args.seed, Path(folder), setpoints=args.policy == "round-robin"
        )
        setup_s = time.perf_counter() - setup_started
        agent = ChargeAsFastAsPossible() if args.policy == "fast" else RoundRobin(env)
        connected_vehicle_steps = 0
        loop_s = 0.0
        for _ in range(env.simulation_length):
            # Counting walks every station: keep it out of the timed loop.
            connected_vehicle_steps += sum(cs.n_evs_connected for cs in env.charging_stations)
            started = time.perf_counter()
            actions = agent.get_action(env)
            env.step(actions)
            loop_s += time.perf_counter() - started
    result = {
        "tool": "EV2Gym",
        "policy": type(agent).__name__,
        "vehicles": len(env.EVs_profiles),
        "ports": int(env.number_of_ports),
        "steps": int(env.simulation_length),
        "connected_vehicle_steps": int(connected_vehicle_steps),
        "seconds": loop_s,
        "setup_seconds": setup_s,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
