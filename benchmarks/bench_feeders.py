"""Power flow for a city's feeders through a day: v2ghub's batched solver against
pandapower's own time-series loop, and against the twin's planning time for the same day.

1. v2ghub: ``--feeders`` feeders (the standard kinds in turn, one compound of charging each:
   the charging of a real planned day, Shenzhen's ``--vehicles``-vehicle fleet with
   ``--planner``) x the day's steps, each feeder's whole day solved in one batch
   (:func:`v2ghub.network.feeders.feeder_day`). CPU seconds of the power flows alone, and of
   building the feeders (pandapower's base case per kind, the inverse per feeder).
2. pandapower: ``pandapower.timeseries.run_timeseries`` with a ``ConstControl`` per load, the
   same loads and charging, on ``--pandapower-feeders`` of the feeders (a Newton-Raphson a
   step; its time per feeder-day times ``--feeders`` is the projection, stated as such),
   checked to agree with the batched results.
3. The twin's own planning time for the same day and fleet (``planner_seconds``).

Run: ``python benchmarks/bench_feeders.py [--feeders 1000] [--vehicles 100000]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from v2ghub import Scenario
from v2ghub.network.feeders import Feeder, attach_sites, build_network, feeder_day
from v2ghub.scenarios.build import synthetic_cases
from v2ghub.sim.engine import Simulator
from v2ghub.sim.runner import fresh_planner

SEED = 3


def _pandapower_day(feeder: Feeder, site_power_kw: np.ndarray, scale: np.ndarray) -> float:
    """pandapower's time-series loop over ``feeder``'s day; its worst transformer loading."""
    import pandas as pd  # type: ignore[import-untyped]  # noqa: PLC0415
    from pandapower import control, timeseries  # noqa: PLC0415

    net = build_network(feeder.kind, seed=SEED)
    model = feeder.model
    charging_mw = np.asarray(feeder.site_to_bus_mw @ site_power_kw[feeder.site_rows])
    # Each load's share of its bus's charging (the loads of a bus by rated power).
    bus_rated = np.zeros(model.n_buses)
    np.add.at(bus_rated, model.load_bus, model.load_mw)
    share = model.load_mw / np.where(bus_rated[model.load_bus] > 0, bus_rated[model.load_bus], 1)
    load_mw = (
        model.load_mw[:, None] * feeder.base_scale * scale[None, :]
        + charging_mw[model.load_bus] * share[:, None]
    )
    load_mvar = model.load_mvar[:, None] * feeder.base_scale * scale[None, :]
    steps = scale.size
    frame = pd.DataFrame(
        np.hstack([load_mw.T, load_mvar.T]),
        columns=[f"p{k}" for k in range(load_mw.shape[0])]
        + [f"q{k}" for k in range(load_mw.shape[0])],
    )
    source = timeseries.DFData(frame)
    index = net.load.index
    control.ConstControl(
        net,
        "load",
        "p_mw",
        index,
        data_source=source,
        profile_name=[f"p{k}" for k in range(len(index))],
    )
    control.ConstControl(
        net,
        "load",
        "q_mvar",
        index,
        data_source=source,
        profile_name=[f"q{k}" for k in range(len(index))],
    )
    writer = timeseries.OutputWriter(net, time_steps=range(steps))
    writer.log_variable("res_trafo", "loading_percent")
    net.load["scaling"] = 1.0
    timeseries.run_timeseries(
        net,
        time_steps=range(steps),
        verbose=False,
        calculate_voltage_angles=True,
        trafo_model="t",
        trafo_loading="current",
        numba=False,
    )
    table = writer.output["res_trafo.loading_percent"]
    return float(np.nanmax(table.to_numpy())) / 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feeders", type=int, default=1000)
    parser.add_argument("--vehicles", type=int, default=100_000)
    parser.add_argument("--planner", default="fast")
    parser.add_argument("--pandapower-feeders", type=int, default=3)
    args = parser.parse_args()

    scenario = Scenario.pilot_cities(cities=["Shenzhen"], vehicles_per_city=args.vehicles)
    (case,) = synthetic_cases(scenario.settings)
    run = Simulator(case, fresh_planner(args.planner)).run()
    steps = run.site_power_kw.shape[1]
    base = np.asarray(case.signals.base_load_kw[:steps])
    scale = base / base[: round(24 / case.grid.dt_h)].max()

    began = time.process_time()
    feeders = attach_sites(case.sites, args.feeders, seed=SEED, city="Shenzhen")
    build_s = time.process_time() - began
    began = time.process_time()
    days = [feeder_day(f, run.site_power_kw, scale) for f in feeders]
    flow_s = time.process_time() - began
    feeder_steps = len(feeders) * steps
    overloaded = sum(int(d.overloaded.sum()) for d in days)

    sample = feeders[: args.pandapower_feeders]
    began = time.process_time()
    theirs = [_pandapower_day(f, run.site_power_kw, scale) for f in sample]
    pandapower_s = time.process_time() - began
    ours = [float(np.nanmax(d.max_trafo_loading)) for d in days[: len(sample)]]
    agree = max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) if sample else 0.0
    per_feeder_pp_s = pandapower_s / max(len(sample), 1)

    print(f"Shenzhen, {args.vehicles:,} vehicles, {args.planner}: {steps} steps")
    print(f"feeders: {len(feeders):,} (of {args.feeders:,} asked; one per compound)")
    print(
        f"  building them (pandapower base case per kind, inverse per feeder): {build_s:.2f} CPU s"
    )
    print(
        f"  v2ghub batched power flow: {flow_s:.2f} CPU s for {feeder_steps:,} feeder-steps "
        f"({flow_s / max(len(feeders), 1) * 1e3:.1f} ms a feeder-day); "
        f"{overloaded:,} feeder-steps overloaded"
    )
    print(
        f"  pandapower run_timeseries: {pandapower_s:.2f} CPU s for {len(sample)} feeder-days "
        f"({per_feeder_pp_s:.2f} s each; projected to {len(feeders):,}: "
        f"{per_feeder_pp_s * len(feeders):,.0f} s); worst transformer loading agrees to {agree:.1e}"
    )
    if flow_s > 0:
        ratio = per_feeder_pp_s / (flow_s / len(feeders))
        print(f"  ratio pandapower / v2ghub per feeder-day: {ratio:,.0f}x")
    print(
        f"the twin's planning time for the same day: {run.planner_seconds:.2f} s; "
        f"power flow / planning: {flow_s / max(run.planner_seconds, 1e-9):.2f}"
    )


if __name__ == "__main__":
    main()
