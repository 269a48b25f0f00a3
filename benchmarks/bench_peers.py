"""v2ghub's simulation throughput side by side with EV2Gym and acnportal, from one run.

What is compared
    The wall time of each tool's simulation loop over one day, as connected vehicle-steps
    per second. A connected vehicle-step is one vehicle plugged in for one step, counted
    from each tool's own state (EV2Gym: the vehicles its stations hold before each step;
    acnportal: the plug-in and unplug iterations of the sessions it simulated; v2ghub: for
    each session the whole steps in ``[arrival, departure)`` on the case's grid), never
    fleet size times grid length. Setup is left out everywhere: EV2Gym's environment
    construction (which draws its sessions), acnportal's event queue and network, v2ghub's
    case. v2ghub's time includes its planning.

A comparable day
    About N plug-in sessions over one day at 15-minute steps, one policy decision a step.
    v2ghub and acnportal simulate the very same sessions: the synthetic Shenzhen day of
    ``synthetic_cases`` at N vehicles (grid from local midnight until the last departure,
    136 steps), handed to acnportal as a synthetic event queue. EV2Gym draws its own
    sessions from its own arrival model: its README's example configuration
    (``V2GProfitPlusLoads.yaml``, workplace arrivals) on a fixed Monday, 96 steps from 05:00,
    with as many one-port stations as it takes for about N sessions (within 10%).

Policies
    The peers run their simplest built-in policies, which charge every plugged vehicle at
    full rate: EV2Gym's ``ChargeAsFastAsPossible`` and acnportal's ``UncontrolledCharging``
    (``--peer-policy round-robin`` runs both tools' ``RoundRobin`` instead: acnportal's takes
    about two minutes a day at N = 1,000). v2ghub runs its rule planners ``tou`` and
    ``v2g-rules`` and the optimising ``mpc`` (only up to ``--mpc-max-vehicles``).

Caveats
    The peers do more per step than charge a battery: EV2Gym updates a CC-CV battery model,
    prices, user satisfaction, a reward and an observation vector for every port (it has
    more ports than sessions), and tracks transformer loads, solar and a demand-response
    event; its power flow is off, as in the example configuration (with it on, each step
    would cost more). acnportal checks every schedule against the network's constraints and
    stores pilot and rate matrices. Both are pure-Python loops over vehicles or stations;
    v2ghub steps arrays. The policies differ too (the peers' are uncontrolled, v2ghub's plan
    against prices), so the ratio is the cost of simulating a day, not of one algorithm.
    Rounds are interleaved (EV2Gym, acnportal, v2ghub, then again) and medians reported,
    because machines here are noisy.

The peers run in their own virtual environment, built once (slow: a few minutes) from
``benchmarks/peers/requirements.txt`` under ``~/.cache/v2ghub-peers`` (or
``$V2GHUB_PEERS_HOME``) and reused; their day runners are ``benchmarks/peers/*.py``.

Run: ``python benchmarks/bench_peers.py [--rounds 3] [--sizes 100,1000]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from v2ghub.model.case import CityCase
from v2ghub.planning import make_planner
from v2ghub.scenarios.build import synthetic_cases
from v2ghub.scenarios.config import ScenarioFile, SimulationSettings, resolve
from v2ghub.sim.engine import Simulator

PEERS_FOLDER = Path(__file__).resolve().parent / "peers"
REQUIREMENTS = PEERS_FOLDER / "requirements.txt"
EV2GYM_RUNNER = PEERS_FOLDER / "ev2gym_day.py"
ACNPORTAL_RUNNER = PEERS_FOLDER / "acnportal_day.py"
CITY = "Shenzhen"
WARM_UP_VEHICLES = 100
# pip's lines worth showing while the peers' environment installs.
PIP_PROGRESS = ("Collecting", "Processing", "Downloading", "Installing", "Successfully", "ERROR")
PEER_POLICIES = {  # --peer-policy: (EV2Gym runner's --policy, acnportal runner's --policy)
    "fast": ("fast", "uncontrolled"),
    "round-robin": ("round-robin", "round-robin"),
}


@dataclass(frozen=True)
class Sample:
    """One timed day of one tool and policy."""

    tool: str
    policy: str
    vehicles: int  # the N asked for
    sessions: int  # sessions the tool simulated
    steps: int
    connected_vehicle_steps: int
    seconds: float


# --- The peers' environment ------------------------------------------------------------


def _peers_home() -> Path:
    default = Path.home() / ".cache" / "v2ghub-peers"
    return Path(os.environ.get("V2GHUB_PEERS_HOME", default))


def _peers_python() -> Path:
    """The peers' interpreter, building their environment first if it is missing.

    The environment's folder is named after this interpreter's version and the requirements'
    hash, so a change of pins builds a fresh one beside the old.
    """
    pins = REQUIREMENTS.read_bytes()
    version = f"py{sys.version_info.major}{sys.version_info.minor}"
    venv = _peers_home() / f"venv-{version}-{hashlib.sha256(pins).hexdigest()[:12]}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if stamp.exists():
        return python
    print(f"Building the peers' environment in {venv} (once; a few minutes)", flush=True)
    started = time.perf_counter()
    # Run from the project's venv, ``venv`` bases the new one on the underlying Python.
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    command = [
        str(python),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "-r",
        str(REQUIREMENTS),
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as pip:
        assert pip.stdout is not None
        tail: list[str] = []
        for line in pip.stdout:
            tail = [*tail[-30:], line.rstrip()]
            if line.startswith(PIP_PROGRESS):
                elapsed = time.perf_counter() - started
                print(f"  [{elapsed:5.0f} s] {line.rstrip()[:110]}", flush=True)
    if pip.returncode != 0:
        sys.exit("pip could not install the peers' requirements:\n" + "\n".join(tail))
    stamp.write_bytes(pins)
    print(f"Peers' environment ready in {time.perf_counter() - started:.0f} s", flush=True)
    return python


def _run_peer(python: Path, runner: Path, arguments: list[str], *, vehicles: int) -> Sample:
    """Run one peer day in a subprocess and read the JSON line it prints last."""
    with TemporaryDirectory() as scratch:  # whatever a peer writes stays out of the checkout
        done = subprocess.run(
            [str(python), str(runner), *arguments],
            capture_output=True,
            text=True,
            cwd=scratch,
            check=False,
        )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        sys.exit(f"{runner.name} {' '.join(arguments)} failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1])
    return Sample(
        tool=str(result["tool"]),
        policy=str(result["policy"]),
        vehicles=vehicles,
        sessions=int(result["vehicles"]),
        steps=int(result["steps"]),
        connected_vehicle_steps=int(result["connected_vehicle_steps"]),
        seconds=float(result["seconds"]),
    )


# --- v2ghub's side ---------------------------------------------------------------------


def _case(vehicles: int) -> CityCase:
    settings = SimulationSettings(vehicles_per_city=vehicles, cities=(CITY,))
    return synthetic_cases(resolve(ScenarioFile(simulation=settings)))[0]


def _write_sessions(case: CityCase, path: Path) -> None:
    """The case's sessions as the acnportal runner reads them (see its docstring)."""
    first, end = case.plugged_steps()
    plugged = end > first  # a session shorter than a step is simulated by nobody
    fleet = case.fleet
    energy_arrival_kwh = fleet.energy_arrival_kwh
    energy_target_kwh = fleet.soc_target * fleet.battery_kwh
    sessions = {
        "arrival_step": first[plugged].tolist(),
        "departure_step": end[plugged].tolist(),
        "battery_kwh": fleet.battery_kwh[plugged].tolist(),
        "energy_arrival_kwh": energy_arrival_kwh[plugged].tolist(),
        "energy_requested_kwh": np.maximum(energy_target_kwh - energy_arrival_kwh, 0.0)[
            plugged
        ].tolist(),
        "max_charge_kw": fleet.max_charge_kw[plugged].tolist(),
    }
    path.write_text(json.dumps(sessions))


def _run_v2ghub(case: CityCase, planner: str, *, vehicles: int) -> Sample:
    started = time.perf_counter()
    Simulator(case, make_planner(planner)).run()
    seconds = time.perf_counter() - started
    return Sample(
        tool="v2ghub",
        policy=planner,
        vehicles=vehicles,
        sessions=case.fleet.n_sessions,
        steps=case.grid.length,
        connected_vehicle_steps=case.connected_vehicle_steps,
        seconds=seconds,
    )


# --- The table -------------------------------------------------------------------------


def _rate(samples: list[Sample]) -> float:
    """Connected vehicle-steps per second over the median time."""
    return statistics.median(s.connected_vehicle_steps for s in samples) / statistics.median(
        s.seconds for s in samples
    )


def _print_table(results: dict[tuple[str, str, int], list[Sample]], peers: list[str]) -> None:
    ratio_heads = "".join(f" {'x ' + peer:>12}" for peer in peers)
    print(
        f"\n{'tool':<10} {'policy':<23} {'N':>7} {'sessions':>8} {'steps':>5} "
        f"{'conn. veh-steps':>15} {'median s':>9} {'min-max s':>15} {'veh-steps/s':>12}"
        f"{ratio_heads}"
    )
    for (tool, policy, vehicles), samples in results.items():
        seconds = [s.seconds for s in samples]
        first = samples[0]
        ratios = ""
        if tool == "v2ghub":
            for peer in peers:
                peer_samples = [
                    v for (t, _, n), v in results.items() if t == peer and n == vehicles
                ]
                if not peer_samples:
                    ratios += f" {'-':>12}"
                    continue
                ratio = _rate(samples) / _rate(peer_samples[0])
                # Two significant figures at least: mpc runs slower than the peers.
                ratios += f" {ratio:>11,.0f}x" if ratio >= 10 else f" {ratio:>11.2g}x"
        spread = f"{min(seconds):.3f}-{max(seconds):.3f}"
        print(
            f"{tool:<10} {policy:<23} {vehicles:>7,} {first.sessions:>8,} {first.steps:>5} "
            f"{statistics.median(s.connected_vehicle_steps for s in samples):>15,.0f} "
            f"{statistics.median(seconds):>9.3f} {spread:>15} {_rate(samples):>12,.0f}{ratios}"
        )


def main() -> None:
    """Build the peers' environment if needed, run interleaved rounds, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1000", help="vehicles per day, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--planners", default="tou,v2g-rules,mpc")
    parser.add_argument("--mpc-max-vehicles", type=int, default=10_000)
    parser.add_argument("--peer-policy", choices=tuple(PEER_POLICIES), default="fast")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    planners = args.planners.split(",")
    ev2gym_policy, acnportal_policy = PEER_POLICIES[args.peer_policy]
    run_started = time.perf_counter()

    python = _peers_python()
    pinned = [
        line.strip()
        for line in REQUIREMENTS.read_text().splitlines()
        if line.startswith(("ev2gym==", "acnportal=="))
    ]
    print(f"Peers: {', '.join(pinned)} in {python.parent.parent}", flush=True)
    # Compile v2ghub's kernels before timing (the peers' setup is left out of theirs too).
    warm_up = _case(WARM_UP_VEHICLES)
    for planner in planners:
        Simulator(warm_up, make_planner(planner)).run()

    results: dict[tuple[str, str, int], list[Sample]] = defaultdict(list)
    with TemporaryDirectory() as scratch:
        cases = {n: _case(n) for n in sizes}
        session_files = {n: Path(scratch) / f"sessions_{n}.json" for n in sizes}
        for n in sizes:
            _write_sessions(cases[n], session_files[n])
        for round_number in range(1, args.rounds + 1):
            for n in sizes:
                samples = [
                    _run_peer(
                        python,
                        EV2GYM_RUNNER,
                        ["--vehicles", str(n), "--policy", ev2gym_policy],
                        vehicles=n,
                    ),
                    _run_peer(
                        python,
                        ACNPORTAL_RUNNER,
                        ["--sessions", str(session_files[n]), "--policy", acnportal_policy],
                        vehicles=n,
                    ),
                ]
                samples += [
                    _run_v2ghub(cases[n], planner, vehicles=n)
                    for planner in planners
                    if planner != "mpc" or n <= args.mpc_max_vehicles
                ]
                for sample in samples:
                    results[(sample.tool, sample.policy, n)].append(sample)
                    print(
                        f"round {round_number}/{args.rounds}  N={n:<7,} {sample.tool:<9} "
                        f"{sample.policy:<23} {sample.seconds:8.3f} s",
                        flush=True,
                    )

    _print_table(dict(sorted(results.items(), key=lambda kv: kv[0][2])), ["EV2Gym", "acnportal"])
    print(
        f"\nRate = median connected vehicle-steps / median seconds of the simulation loop; "
        f"x peer = v2ghub's rate over the peer's at the same N. "
        f"Whole run: {time.perf_counter() - run_started:.0f} s."
    )


if __name__ == "__main__":
    main()
