"""Regulation at scale: one dispatch step for 1e6 and 1e7 vehicles, and an hour in the twin.

Dispatch: the participation factors are set once per interval, so a signal step is one
multiply-add over the fleet (:func:`v2ghub.regulation.dispatch.setpoints`). The baseline,
measured in the same run, is a plain proportional split that recomputes every vehicle's
share at every step. It also counts how many vehicles' setpoints change from one signal
step to the next (the messages a per-vehicle setpoint path would send; the broadcast path
sends none).

Twin: one Shenzhen day with ``--twin-vehicles`` vehicles, planner v2g-rules, with one
hour of 2-s dynamic regulation and frequency response (19:00) against the same day
without it. Chargers answer one sample late, so delivered power is compared with the
request one sample earlier.

Goals (issue): a dispatch step in at most 20 ms at 1e6 and 250 ms at 1e7; an hour of 2-s
regulation for 1e5 vehicles in the twin in under 30 s.

Run: ``python benchmarks/bench_regulation.py [--sizes 1000000,10000000] [--twin-vehicles 100000]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from v2ghub.planning import make_planner
from v2ghub.regulation.capacity import Headroom
from v2ghub.regulation.dispatch import changed_setpoints, participation, setpoints
from v2ghub.regulation.signals import synthetic_signal
from v2ghub.scenarios.build import synthetic_cases
from v2ghub.scenarios.config import ScenarioFile, SimulationSettings, resolve
from v2ghub.sim.engine import Simulator
from v2ghub.sim.regulation_service import RegulationFollower, RegulationOffer

STEPS = 50


def _dispatch(n: int) -> None:
    rng = np.random.default_rng(0)
    planned = rng.uniform(-7.0, 7.0, n)
    room = Headroom(raise_kw=rng.uniform(0.0, 7.0, n), lower_kw=rng.uniform(0.0, 7.0, n))
    capacity = 0.8 * min(room.raise_total_kw, room.lower_total_kw)
    signal = synthetic_signal("dynamic", duration_s=STEPS * 2.0, seed=1).values
    shares = participation(room, capacity)
    out = np.empty(n)
    started = time.perf_counter()
    for value in signal:
        setpoints(planned, shares, float(value), out=out)
    ours_ms = (time.perf_counter() - started) / STEPS * 1e3
    delivered = float(out.sum() - planned.sum())
    asked = float(signal[-1]) * capacity

    started = time.perf_counter()
    previous = planned.copy()
    changes = []
    for value in signal:  # the baseline: every share recomputed at every step
        room_kw = room.raise_kw if value >= 0 else room.lower_kw
        baseline = planned + value * capacity * room_kw / room_kw.sum()
        changes.append(changed_setpoints(previous, baseline, tolerance_kw=0.01))
        previous = baseline
    baseline_ms = (time.perf_counter() - started) / STEPS * 1e3
    print(
        f"{n:>11,} {ours_ms:>9.2f} {baseline_ms:>12.2f} {baseline_ms / ours_ms:>6.1f}x "
        f"{abs(delivered - asked) / capacity:>10.2e} {np.mean(changes) / n:>14.1%}",
        flush=True,
    )


def _twin(n: int) -> None:
    settings = SimulationSettings(vehicles_per_city=n, cities=("Shenzhen",))
    case = synthetic_cases(resolve(ScenarioFile(simulation=settings)))[0]
    started = time.perf_counter()
    Simulator(case, make_planner("v2g-rules")).run()
    plain_s = time.perf_counter() - started
    follower = RegulationFollower(
        case.grid, timezone=case.tariff.timezone, offer=RegulationOffer(hours=(19,))
    )
    started = time.perf_counter()
    run = Simulator(case, make_planner("v2g-rules"), regulation=follower).run()
    with_s = time.perf_counter() - started
    hour = run.regulation_hours[0]
    # The chargers act on the value asked one sample earlier: compare with that, over the
    # committing step (the capacity is there by construction).
    lag = follower.delay_samples
    first = follower.samples_per_step
    acted = hour.requested_kw[: first - lag]
    error = np.abs(hour.delivered_kw[lag:first] - acted).max() / max(hour.capacity_kw, 1e-9)
    score = hour.score.composite if hour.score is not None else float("nan")
    print(
        f"twin, {n:,} vehicles: day {plain_s:.1f} s; with an hour of 2-s regulation and "
        f"frequency response {with_s:.1f} s (the hour: {with_s - plain_s:.1f} s, goal < 30 s); "
        f"committed {hour.capacity_kw / 1000:.1f} MW, worst error against the request "
        f"{lag} sample(s) earlier {error:.2e} of it, score {score:.3f}"
    )


def main() -> None:
    """Print the dispatch table, then the twin hour."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--twin-vehicles", type=int, default=100_000)
    args = parser.parse_args()
    print(
        f"{'vehicles':>11} {'step ms':>9} {'baseline ms':>12} {'ratio':>7} "
        f"{'|err|/C':>10} {'changed/step':>14}"
    )
    for n in (int(s) for s in args.sizes.split(",")):
        _dispatch(n)
    _twin(args.twin_vehicles)


if __name__ == "__main__":
    main()
