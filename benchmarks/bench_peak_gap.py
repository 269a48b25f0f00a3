"""The fast planner's gap to the exact LP with the area's peak priced, by family and size.

Two families of day-ahead problems, several seeds each:

- ``tight-sites``: what ``v2ghub plan`` reads. Seeded sessions, sites and prices files
  (written to a temporary folder, read by the same loaders as ``plan``): the shipped
  example's 36 hours of Shenzhen prices and its base load (scaled by the sessions / 1,000),
  and three sites: a residential transformer (60% of the sessions: evening arrivals,
  morning departures, 7 kW), an office car park (25%: day stays, 20 kW) and a public V2G
  station (15%: stays of 1-2.5 hours, 40 or 60 kW); 70% of the vehicles offer V2G. Each
  site's import and export limit is a share of its chargers' total power (30%, 30%, 20%),
  so the limits bind in the evening and at the valley's start.
- ``shenzhen``: the twin's seeded Shenzhen fleet as one day-ahead problem with its own
  synthetic sites (every site limited).

For each family, size and seed it prints the LP's objective and time, and fast's gap to it
and time, without the peak price and with it (``--peak-price``, CNY/kW), all measured in
the same run; objectives are ``schedule_cost(...).objective_cny`` at that peak price, and
the energy left short (kWh) by each planner beside them. The LP is the exact optimum, so
its objective is the lower bound the gap is measured against.

With ``--mpc-vehicles N`` it also times one twin day of ``mpc`` (fast with its peak price
at every control instant) in Shenzhen with N vehicles.

Run: ``python benchmarks/bench_peak_gap.py [--sizes 1000,3000] [--seeds 0,1,2,3]
[--families tight-sites,shenzhen] [--peak-price 0.5] [--mpc-vehicles 10000]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from v2ghub.model.problem import Planner, Problem
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.lp import LpPlanner
from v2ghub.planning.objective import final_energy_kwh, schedule_cost
from v2ghub.scenarios.build import synthetic_cases
from v2ghub.scenarios.config import ScenarioFile, SimulationSettings, resolve
from v2ghub.scenarios.day_ahead import case_day_ahead_problem, day_ahead_problem
from v2ghub.scenarios.prices_csv import load_prices_csv
from v2ghub.scenarios.sessions_csv import load_sessions_csv
from v2ghub.scenarios.sites_csv import load_sites_csv

FloatArray = npt.NDArray[np.float64]
EXAMPLE_PRICES = Path(__file__).resolve().parent.parent / "examples" / "prices.csv"
SITES = ("home-transformer", "office", "v2g-station")
SESSION_SHARES = (0.60, 0.25, 0.15)
LIMIT_SHARES = (0.30, 0.30, 0.20)  # of each site's chargers' total power
BATTERIES_KWH = (38.9, 44.9, 60.0, 75.0, 82.6)
V2G_SHARE = 0.7
DEGRADATION_CNY_PER_KWH = 0.2
SESSIONS_HEADER = (
    "session_id,site_id,arrival,departure,battery_kwh,soc_arrival,soc_target,soc_min,"
    "soc_max,max_charge_kw,max_discharge_kw,charge_efficiency,discharge_efficiency"
)


def _local_times(hours: FloatArray) -> list[str]:
    """Hours after 2025-07-16 00:00 (Shenzhen time) as ISO times, to the minute."""
    minutes = np.datetime64("2025-07-16T00:00") + np.round(hours * 60).astype("timedelta64[m]")
    return [f"{stamp}:00+08:00" for stamp in minutes.astype(str)]


def write_tight_sites(folder: Path, *, sessions: int, seed: int) -> None:
    """Write the ``tight-sites`` family's sessions.csv, sites.csv and prices.csv."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=sessions, p=SESSION_SHARES)  # home, office, public
    home, office = kind == 0, kind == 1
    arrival_h = np.where(
        home,
        rng.uniform(17.0, 22.5, sessions),
        np.where(office, rng.uniform(7.5, 10.0, sessions), rng.uniform(8.0, 22.0, sessions)),
    )
    departure_h = np.where(
        home,
        24.0 + rng.uniform(6.5, 9.5, sessions),
        np.where(
            office, rng.uniform(17.0, 19.5, sessions), arrival_h + rng.uniform(1, 2.5, sessions)
        ),
    )
    soc_arrival = np.where(
        kind == 2, rng.uniform(0.15, 0.35, sessions), rng.uniform(0.6, 0.9, sessions)
    )
    soc_target = np.where(home, 0.9, 0.8)
    soc_target = np.maximum(soc_target, soc_arrival)
    charge_kw = np.where(home, 7.0, np.where(office, 20.0, rng.choice([40.0, 60.0], sessions)))
    discharge_kw = np.where(rng.random(sessions) < V2G_SHARE, charge_kw, 0.0)
    efficiency = np.where(home, 0.90, 0.92)
    battery_kwh = rng.choice(BATTERIES_KWH, sessions)
    arrivals, departures = _local_times(arrival_h), _local_times(departure_h)
    rows = [
        f"s{i},{SITES[kind[i]]},{arrivals[i]},{departures[i]},{battery_kwh[i]},"
        f"{soc_arrival[i]:.3f},{soc_target[i]:.3f},0.2,1.0,{charge_kw[i]},{discharge_kw[i]},"
        f"{efficiency[i]},{efficiency[i]}"
        for i in range(sessions)  # writing a file, one line per session
    ]
    (folder / "sessions.csv").write_text("\n".join([SESSIONS_HEADER, *rows]) + "\n")
    chargers_kw = np.bincount(kind, weights=charge_kw, minlength=3)
    limits_kw = chargers_kw * np.array(LIMIT_SHARES)
    (folder / "sites.csv").write_text(
        "site_id,import_limit_kw,export_limit_kw\n"
        + "".join(f"{site},{kw:.0f},{kw:.0f}\n" for site, kw in zip(SITES, limits_kw, strict=True))
    )
    lines = EXAMPLE_PRICES.read_text(encoding="utf-8").splitlines()
    scaled = [lines[0]]
    for line in lines[1:]:  # 144 price steps
        *fields, base_kw = line.split(",")
        scaled.append(",".join([*fields, f"{float(base_kw) * sessions / 1000:.1f}"]))
    (folder / "prices.csv").write_text("\n".join(scaled) + "\n")


def tight_sites(sessions: int, seed: int) -> Problem:
    """The ``tight-sites`` problem: its files written, then read as ``v2ghub plan`` does."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        write_tight_sites(folder, sessions=sessions, seed=seed)
        read = load_sessions_csv(folder / "sessions.csv")
        return day_ahead_problem(
            fleet=read.fleet,
            sites=load_sites_csv(folder / "sites.csv", site_ids=read.site_ids),
            prices=load_prices_csv(folder / "prices.csv"),
            degradation_cny_per_kwh=DEGRADATION_CNY_PER_KWH,
            sessions_file=folder / "sessions.csv",
            session_rows=read.rows,
        )


def shenzhen(vehicles: int, seed: int) -> Problem:
    """The twin's seeded Shenzhen fleet as one day-ahead problem over its case's grid."""
    scenario = resolve(
        ScenarioFile(
            simulation=SimulationSettings(
                vehicles_per_city=vehicles, cities=("Shenzhen",), seed=seed
            )
        )
    )
    return case_day_ahead_problem(synthetic_cases(scenario)[0])


FAMILIES: dict[str, Callable[[int, int], Problem]] = {
    "tight-sites": tight_sites,
    "shenzhen": shenzhen,
}


def _run(problem: Problem, planner: Planner, peak_price: float) -> tuple[float, float, float]:
    """(objective CNY, shortfall kWh, seconds) of one planner on one problem."""
    started = time.perf_counter()
    power_kw = planner.plan(problem).power_kw
    seconds = time.perf_counter() - started
    cost = schedule_cost(problem, power_kw, peak_price_cny_per_kw=peak_price).objective_cny
    short = np.maximum(problem.target_energy_kwh - final_energy_kwh(problem, power_kw), 0.0)
    return cost, float(short.sum()), seconds


def _mpc_day(vehicles: int) -> float:
    """Seconds of one Shenzhen twin day with ``mpc``."""
    from v2ghub.sim.runner import run_cases  # noqa: PLC0415 - only with --mpc-vehicles
    from v2ghub.twin.scenario import Scenario  # noqa: PLC0415

    case = next(
        iter(Scenario.pilot_cities(cities=["Shenzhen"], vehicles_per_city=vehicles).cases())
    )
    started = time.perf_counter()
    run_cases([case], ["mpc"])
    return time.perf_counter() - started


def main() -> None:
    """Print one row per family, size, seed and peak price."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,3000")
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--peak-price", type=float, default=0.5, help="CNY/kW")
    parser.add_argument("--mpc-vehicles", type=int, default=0, help="also time an mpc day")
    args = parser.parse_args()
    FastPlanner(peak_price_cny_per_kw=1.0).plan(shenzhen(10, 0))  # compile or load kernels
    print(
        f"{'family':>11} {'size':>6} {'seed':>4} {'CNY/kW':>6} {'LP CNY':>11} {'LP s':>6} "
        f"{'fast CNY':>11} {'fast s':>6} {'gap':>7} {'short kWh LP/fast':>17}"
    )
    for family in args.families.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            gaps: dict[float, list[float]] = {}
            for seed in (int(s) for s in args.seeds.split(",")):
                problem = FAMILIES[family](size, seed)
                for price in (0.0, args.peak_price):
                    lp = _run(problem, LpPlanner(peak_price_cny_per_kw=price), price)
                    fast = _run(problem, FastPlanner(peak_price_cny_per_kw=price), price)
                    gap = (fast[0] - lp[0]) / abs(lp[0])
                    gaps.setdefault(price, []).append(gap)
                    print(
                        f"{family:>11} {problem.n_vehicles:>6,} {seed:>4} {price:>6.2f} "
                        f"{lp[0]:>11,.1f} {lp[2]:>6.1f} {fast[0]:>11,.1f} {fast[2]:>6.2f} "
                        f"{gap:>+7.2%} {lp[1]:>8.1f}/{fast[1]:<8.1f}",
                        flush=True,
                    )
            for price, values in gaps.items():
                print(
                    f"{family:>11} {size:>6,} {'all':>4} {price:>6.2f} gap mean "
                    f"{np.mean(values):+.2%}, worst {max(values):+.2%}",
                    flush=True,
                )
    if args.mpc_vehicles:
        seconds = _mpc_day(args.mpc_vehicles)
        print(f"mpc day, Shenzhen, {args.mpc_vehicles:,} vehicles: {seconds:.1f} s")


if __name__ == "__main__":
    main()
