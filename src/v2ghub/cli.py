"""The command line: ``v2ghub simulate`` (the digital twin)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from v2ghub import __version__
from v2ghub.errors import InputError
from v2ghub.model.case import CityCase
from v2ghub.model.sites import SiteLimits
from v2ghub.scenarios.build import (
    arrival_day_count,
    city_case,
    iter_synthetic_cases,
    local_midnight,
)
from v2ghub.scenarios.config import (
    MAX_VEHICLES,
    Scenario,
    ScenarioFile,
    default_scenario,
    load_scenario,
    resolve,
)
from v2ghub.scenarios.sessions_csv import load_sessions_csv
from v2ghub.scenarios.sites_csv import load_sites_csv
from v2ghub.sim.metrics import RunSummary
from v2ghub.sim.runner import run_cases, with_peak_reduction

DEFAULT_OUT = Path("v2ghub-out")


def _positive_vehicles(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 10 <= value <= MAX_VEHICLES:
        raise argparse.ArgumentTypeError(f"must be within 10 and {MAX_VEHICLES:,}, got {value}")
    return value


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The ``v2ghub`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="v2ghub",
        description="v2ghub: vehicle-to-grid aggregation. A digital twin of V2G fleets in "
        "the nine Chinese pilot cities (or your own sessions).",
    )
    parser.add_argument("--version", action="version", version=f"v2ghub {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    simulate = commands.add_parser(
        "simulate",
        help="simulate a day of V2G and write a report",
        description="Simulate one day of V2G for each city and planner, then write "
        "summary.json, summary.csv, curves.csv, sessions.parquet and report.html. With no "
        "arguments: one weekday, the nine pilot cities, 10,000 synthetic vehicles each, "
        "planners uncontrolled, tou and v2g-rules.",
    )
    simulate.add_argument("--scenario", type=Path, metavar="FILE", help="a TOML scenario file")
    simulate.add_argument(
        "--sessions",
        type=Path,
        metavar="FILE",
        help="your own sessions CSV (columns in the README) instead of a synthetic fleet",
    )
    simulate.add_argument(
        "--sites",
        type=Path,
        metavar="FILE",
        help="site limits CSV (site_id, import_limit_kw, export_limit_kw) for --sessions",
    )
    simulate.add_argument(
        "--city", metavar="NAME", help="the city (tariff, load) of --sessions; e.g. Shenzhen"
    )
    simulate.add_argument(
        "--vehicles",
        type=_positive_vehicles,
        metavar="N",
        help="synthetic vehicles per city (10 to 10,000,000; default 10,000)",
    )
    simulate.add_argument("--seed", type=int, help="random seed (default 2025)")
    simulate.add_argument("--date", type=_day, help="the simulated day, YYYY-MM-DD")
    simulate.add_argument(
        "--planners",
        metavar="LIST",
        help="comma-separated planners to compare (default uncontrolled,tou,v2g-rules); "
        "the first is the reference for peak reduction",
    )
    simulate.add_argument(
        "--cities", metavar="LIST", help="comma-separated cities (default: the nine pilots)"
    )
    simulate.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"output folder, replaced if it exists (default: ./{DEFAULT_OUT})",
    )
    simulate.add_argument("--quiet", action="store_true", help="no progress bar or table")
    return parser


def _scenario(args: argparse.Namespace) -> Scenario:
    scenario = load_scenario(args.scenario) if args.scenario else default_scenario()
    updates: dict[str, Any] = {}
    if args.vehicles is not None:
        updates["vehicles_per_city"] = args.vehicles
    if args.seed is not None:
        updates["seed"] = args.seed
    if args.date is not None:
        updates["date"] = args.date
    if args.planners:
        updates["planners"] = tuple(p.strip() for p in args.planners.split(",") if p.strip())
    if args.cities:
        updates["cities"] = tuple(c.strip() for c in args.cities.split(",") if c.strip())
    if args.city:
        updates["cities"] = (args.city,)
    if not updates:
        return scenario
    settings = scenario.simulation.model_dump() | updates
    overrides = {name: data.model_dump() for name, data in scenario.city_data.items()}
    try:
        raw = ScenarioFile.model_validate(
            {
                "simulation": settings,
                "fleet": scenario.fleet.model_dump(),
                "grid": scenario.grid.model_dump(),
                "cities": {k: v for k, v in overrides.items() if k in settings["cities"]},
                "vehicles": [m.model_dump() for m in scenario.vehicle_models],
            }
        )
    except Exception as error:
        raise InputError(f"bad option: {error}".splitlines()[0]) from None
    return resolve(raw)


def _cases(args: argparse.Namespace, scenario: Scenario) -> Iterable[CityCase]:
    """The cases to simulate: the user's sessions (read and checked now) or synthetic
    fleets (generated one city at a time, as the run reaches them)."""
    if args.sessions is None:
        if args.sites is not None:
            raise InputError("--sites applies to --sessions only")
        return iter_synthetic_cases(scenario)
    if args.vehicles is not None:
        raise InputError("--vehicles applies to synthetic fleets, not to --sessions")
    if len(scenario.simulation.cities) != 1:
        raise InputError("--sessions needs --city NAME (the city whose tariff applies)")
    data = scenario.city_data[scenario.simulation.cities[0]]
    sessions = load_sessions_csv(args.sessions)
    sites = (
        load_sites_csv(args.sites, site_ids=sessions.site_ids)
        if args.sites is not None
        else SiteLimits.unlimited(sessions.site_ids)
    )
    midnight = local_midnight(sessions.first_arrival, data.timezone)
    return [
        city_case(
            data=data,
            scenario=scenario,
            fleet=sessions.fleet,
            sites=sites,
            midnight=midnight,
            arrival_days=arrival_day_count(sessions.fleet, data.timezone),
        )
    ]


def _notes(scenario: Scenario, cities: Sequence[str], synthetic: bool) -> list[str]:
    notes = [
        "Base load and renewable surplus are synthetic shapes built from each city's TOU "
        "hours; they are not measured data.",
        "Daily curves fold the simulated hours onto one day: sessions that arrive in the "
        "evening and leave the next morning fill the early hours, as the previous night's "
        "would.",
        "Money is exact: each session's bill is rounded once to the fen; totals add them.",
    ]
    if synthetic:
        notes.append(
            f"Fleets are synthetic ({scenario.simulation.vehicles_per_city:,} vehicles per "
            f"city, seed {scenario.simulation.seed}); see v2ghub.scenarios.synthetic."
        )
    for city in cities:
        data = scenario.city_data[city]
        flags = []
        if data.tariff_assumed:
            flags.append("TOU tariff")
        if data.base_price_assumed:
            flags.append(f"base price {data.base_price_cny_per_kwh} CNY/kWh")
        if data.discharge.assumed:
            flags.append("discharge price")
        if flags:
            notes.append(f"{city}: assumed {', '.join(flags)} (see data/cities.toml).")
    return notes


def _write_summaries(
    out: Path,
    summaries: list[RunSummary],
    planners: Sequence[str],
    notes: list[str],
    info: dict[str, Any],
) -> None:
    from v2ghub.report import outputs  # noqa: PLC0415 - heavy imports only when writing
    from v2ghub.report.html import write_html_report  # noqa: PLC0415

    outputs.write_summary_json(
        out / "summary.json",
        outputs.summary_document(summaries, planners=planners, scenario=info),
    )
    outputs.write_summary_csv(out / "summary.csv", summaries)
    outputs.write_curves_csv(out / "curves.csv", summaries)
    write_html_report(out / "report.html", summaries, title="v2ghub: a day of V2G", notes=notes)


def simulate(args: argparse.Namespace, console: Console) -> None:
    """Run ``v2ghub simulate``."""
    from v2ghub.report.outputs import SessionsWriter, print_summary  # noqa: PLC0415

    started = time.perf_counter()
    scenario = _scenario(args)
    cases = _cases(args, scenario)
    settings = scenario.simulation
    planners = settings.planners
    cities = [c.city for c in cases] if isinstance(cases, list) else list(settings.cities)
    n_runs = len(cities) * len(planners)

    # Write into a fresh folder beside the target and swap it in at the end: a failed or
    # interrupted run leaves no half-written output that could pass for a result.
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    staging.chmod(0o755)
    try:
        progress = Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=console,
            disable=args.quiet,
            transient=True,
        )
        run_starts: dict[str, int] = {}
        with progress, SessionsWriter(staging / "sessions.parquet") as sessions:
            task = progress.add_task("simulating", total=n_runs)

            def on_step(label: str, share: float) -> None:
                first = run_starts.setdefault(label, len(run_starts))
                progress.update(task, completed=first + share, description=label)

            summaries = run_cases(
                cases,
                planners,
                control_steps=settings.control_steps,
                on_step=on_step,
                on_result=sessions.write,
            )
        summaries = with_peak_reduction(summaries, planners[0])
        info = {
            "date": summaries[0].grid.start.date().isoformat() if summaries else None,
            "step_minutes": settings.step_minutes,
            "control_interval_minutes": settings.control_interval_minutes,
            "seed": settings.seed,
            "vehicles_per_city": None if args.sessions else settings.vehicles_per_city,
            "sessions_file": str(args.sessions) if args.sessions else None,
            "cities": cities,
            "planners": list(planners),
            "version": __version__,
        }
        notes = _notes(scenario, cities, synthetic=args.sessions is None)
        with console.status("writing report"):
            _write_summaries(staging, summaries, planners, notes, info)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not args.quiet:
        print_summary(console, summaries, planners)
    console.print(
        f"wrote {out}/report.html, summary.json, summary.csv, curves.csv, sessions.parquet "
        f"in {time.perf_counter() - started:.1f} s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``v2ghub`` command."""
    args = build_parser().parse_args(argv)
    # Wide enough for the summary table when the output is a file or a pipe.
    console = Console(width=None if sys.stdout.isatty() else 120)
    errors = Console(stderr=True)
    try:
        if args.command == "simulate":
            simulate(args, console)
    except InputError as error:
        errors.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        errors.print("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
