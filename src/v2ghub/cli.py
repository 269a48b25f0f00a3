"""The command line: ``v2ghub simulate`` (the digital twin) and ``v2ghub plan`` (a plan from
files)."""

from __future__ import annotations

import argparse
import contextlib
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.exc import SQLAlchemyError

from v2ghub import __version__
from v2ghub.errors import InputError
from v2ghub.live.commands import LIVE_COMMANDS, add_live_commands, city_name, run_live_command
from v2ghub.model.case import CityCase
from v2ghub.model.problem import Planner, Problem, Schedule
from v2ghub.model.sites import SiteLimits
from v2ghub.planning import PLANNERS, make_planner
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.lp import TWIN_MAX_SESSIONS, LpPlanner, PlanningError
from v2ghub.regulation.demand_response import DemandResponseEvent
from v2ghub.scenarios.build import (
    arrival_day_count,
    city_case,
    iter_synthetic_cases,
    local_midnight,
)
from v2ghub.scenarios.catalog import pilot_cities
from v2ghub.scenarios.config import (
    DEFAULT_DEGRADATION_CNY_PER_KWH,
    DEFAULT_DEMAND_RESPONSE,
    MAX_VEHICLES,
    Scenario,
    ScenarioFile,
    default_scenario,
    load_scenario,
    resolve,
)
from v2ghub.scenarios.day_ahead import check_prices_for_lp, day_ahead_problem
from v2ghub.scenarios.market_config import default_market
from v2ghub.scenarios.prices_csv import load_prices_csv
from v2ghub.scenarios.sessions_csv import load_sessions_csv
from v2ghub.scenarios.signals_csv import load_frequency_csv, load_signal_csv
from v2ghub.scenarios.sites_csv import load_sites_csv
from v2ghub.sim.metrics import RunResult, RunSummary
from v2ghub.sim.regulation_service import DEFAULT_HOURS, RegulationOffer
from v2ghub.sim.runner import run_cases, with_peak_reduction
from v2ghub.store.database import DEFAULT_DATA_DIR, SQLITE_FILE_NAME
from v2ghub.store.repository import Store
from v2ghub.units import SECONDS_PER_DAY

if TYPE_CHECKING:
    from v2ghub.report.outputs import TableWriter
    from v2ghub.settlement.contracts import Contracts

DEFAULT_OUT = Path("v2ghub-out")
MAX_SPAN_DAYS = 31  # a month of sessions; a longer span is most likely a mistyped date
PLAN_PLANNERS = tuple(
    name for name in dict.fromkeys(("lp", *PLANNERS)) if not name.startswith("mpc")
)
"""Planners of ``v2ghub plan``: the exact LP, the fast planner and the rule planners
(``mpc`` and ``mpc-lp`` re-plan a running day; a day-ahead plan is a single solve)."""
DEFAULT_PLAN_PLANNER = "lp"


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
        "the nine Chinese pilot cities (or your own sessions), and a live aggregator for "
        "real bidirectional chargers over OCPP 2.1/2.0.1.",
    )
    parser.add_argument("--version", action="version", version=f"v2ghub {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    simulate = commands.add_parser(
        "simulate",
        help="simulate a day of V2G and write a report",
        description="Simulate one day of V2G for each city and planner, then write "
        "summary.json, summary.csv, curves.csv, envelope.csv, sessions.parquet, "
        "meter.parquet, settlement.json and report.html. With no "
        "arguments: one weekday, the nine pilot cities, 10,000 synthetic vehicles each, "
        "planners uncontrolled, tou, v2g-rules and mpc.",
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
        help="comma-separated planners to compare (default uncontrolled,tou,v2g-rules,mpc; "
        f"available: {', '.join(PLANNERS)}; lp and mpc-lp for up to {TWIN_MAX_SESSIONS:,} "
        "sessions a city); the first is the reference for peak reduction",
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
    simulate.add_argument(
        "--regulation",
        action="store_true",
        help="also offer frequency regulation: each offered hour the fleet commits the "
        "capacity it can hold for the hour and follows a 2-s signal; the summary gains "
        "capacity, score and mileage per city",
    )
    simulate.add_argument(
        "--regulation-hours",
        metavar="LIST",
        help="local hours offered, comma-separated (default 10,11,19,20); implies --regulation",
    )
    simulate.add_argument(
        "--regulation-kind",
        choices=("dynamic", "traditional"),
        default="dynamic",
        help="the seeded synthetic signal: fast and energy-neutral (dynamic, the default) "
        "or slower with a drift (traditional)",
    )
    simulate.add_argument(
        "--regulation-signal",
        type=Path,
        metavar="FILE",
        help="follow this signal (CSV: time, signal in -1..1) instead of a synthetic one, "
        "replayed from its start in each offered hour; implies --regulation",
    )
    simulate.add_argument(
        "--frequency",
        type=Path,
        metavar="FILE",
        help="answer this frequency trace (CSV: time, frequency_hz) by droop instead of a "
        "synthetic one; implies --regulation",
    )
    simulate.add_argument(
        "--no-frequency-response",
        action="store_true",
        help="with --regulation, no primary frequency response (by default the fleet also "
        "answers the frequency by 5%% droop with a 0.05 Hz deadband, held within its "
        "promise)",
    )
    simulate.add_argument(
        "--market",
        action="store_true",
        help="sell the fleet's day-ahead headroom in a capacity market first (the "
        "scenario's [market] table, else the shipped one: regulation at 10-12 and 19-21 "
        "h, demand response at 18 h); every planner then honours what was sold and the "
        "summary gains market_sold_mw_h, market_capacity_cny and market_penalty_cny",
    )
    simulate.add_argument(
        "--demand-response",
        action="store_true",
        help="answer a demand-response event in each city when the scenario file has no "
        "[[demand_response]] events (which are always answered) and no market runs: "
        "18:00-19:00 local time, "
        "0.5 kW below the baseline per plugged vehicle, at the city's rate; the summary "
        "gains dr_events, dr_requested_kwh and dr_delivered_kwh per city",
    )
    _add_plan_parser(commands)
    _add_settle_parser(commands)
    _add_statement_parser(commands)
    add_live_commands(commands)
    return parser


def _add_settle_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    settle_parser = commands.add_parser(
        "settle",
        help="settle a simulate run or a day of live meter data: who is paid what, to the fen",
        description="Settle the output folder of `v2ghub simulate`: post every city and "
        "planner's day to a double-entry ledger (charging at the TOU tariff, V2G discharge "
        "at the city's discharge price shared by contract, battery-wear compensation, "
        "demand response delivered per session, the day-ahead market's sales from "
        "market.json when the run had a market, and otherwise the regulation hours of "
        "regulation.json, paid by capacity and mileage times the performance score) and "
        "write statements.csv, settlement.json "
        "(totals, owner earnings, pilot KPIs, balanced) and the ledger. "
        "With --live instead of RUN_DIR, settle one local day of a city from the live "
        "aggregator's store (the meter registers of every transaction that overlaps the "
        "day, cut at its midnights) into period DATE/CITY/live: charging, V2G discharge "
        "and battery wear only, since grid services are not metered live yet; every "
        "session takes the public contract (stations have no charger kind yet).",
    )
    settle_parser.add_argument(
        "run", type=Path, nargs="?", metavar="RUN_DIR", help="a simulate output folder"
    )
    settle_parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for the statements"
    )
    settle_parser.add_argument(
        "--planners", metavar="LIST", help="comma-separated planners to settle (default: all)"
    )
    settle_parser.add_argument(
        "--contracts",
        type=Path,
        metavar="FILE",
        help="shares per stream and site or charger kind (TOML; default: owner 90%% and "
        "aggregator 10%% at home, owner 70%%, operator 20%%, aggregator 10%% elsewhere)",
    )
    settle_parser.add_argument(
        "--rates", type=Path, metavar="FILE", help="rates overriding the shipped ones (TOML)"
    )
    settle_parser.add_argument(
        "--ledger",
        type=Path,
        metavar="FILE",
        help="an SQLite ledger to post into (default: DIR/ledger.sqlite); posting the "
        "same run again changes nothing",
    )
    live = settle_parser.add_argument_group(
        "live meter data (instead of RUN_DIR; grid services are not metered live yet)"
    )
    live.add_argument(
        "--live", action="store_true", help="settle a day of the live aggregator's store"
    )
    live.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help=f"folder of the live SQLite database (default ./{DEFAULT_DATA_DIR})",
    )
    live.add_argument("--database-url", metavar="URL", help="the live database's URL instead")
    live.add_argument(
        "--day", type=_day, metavar="YYYY-MM-DD", help="the city's local day to settle"
    )
    live.add_argument(
        "--city", metavar="NAME", help="the stations' city: its tariff, rates and time zone"
    )


def _add_statement_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    statement_parser = commands.add_parser(
        "statement",
        help="a party's statement over a day or a month of a ledger",
        description="State what one party (or every owner, operator, ...) received and paid "
        "over a day or a month of a ledger that `v2ghub settle --ledger` posted into: the "
        "latest version of every line, withdrawn ones left out. Writes statement.csv (one "
        "row per line: period, session_id, kind, party, counterparty, stream, energy_kwh, "
        "rate, amount_cny (+ received, - paid), cause) and statement.json (exact totals per "
        "party and stream, net per party, line count, the periods covered).",
    )
    statement_parser.add_argument(
        "--ledger", type=Path, required=True, metavar="FILE", help="the SQLite ledger to read"
    )
    when = statement_parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--month", metavar="YYYY-MM", help="every period of this month")
    when.add_argument("--day", metavar="YYYY-MM-DD", help="every period of this day")
    statement_parser.add_argument(
        "--party",
        metavar="ID",
        help="a party id (owner:S1, operator:site-7, aggregator, grid) or a group ending in a "
        "colon (owner: is every owner); default: every party",
    )
    statement_parser.add_argument("--city", metavar="NAME", help="only this city's periods")
    statement_parser.add_argument("--planner", metavar="NAME", help="only this planner's periods")
    statement_parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for the statement"
    )


def _add_plan_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan_parser = commands.add_parser(
        "plan",
        help="plan every session of a file over a price series; write schedule.csv",
        description="Plan the charging and V2G discharging of every session in a sessions "
        "file over the steps of a prices file, all at once (day-ahead), and write the "
        "schedule as CSV (session_id, start, power_kw; + charging, - discharging) with one "
        "row per session and step it is plugged for, and optionally a JSON summary of the "
        "exact cost. Sessions must lie within the prices' steps.",
    )
    plan_parser.add_argument(
        "--sessions",
        type=Path,
        required=True,
        metavar="FILE",
        help="sessions CSV (columns in the README, as for simulate --sessions)",
    )
    plan_parser.add_argument(
        "--prices",
        type=Path,
        required=True,
        metavar="FILE",
        help="prices CSV: start (ISO 8601 with UTC offset), import_price_cny_per_kwh, "
        "export_price_cny_per_kwh, optional base_load_kw; equal steps; prices >= 0",
    )
    plan_parser.add_argument(
        "--sites",
        type=Path,
        metavar="FILE",
        help="site limits CSV (site_id, import_limit_kw, export_limit_kw); default: no limits",
    )
    plan_parser.add_argument(
        "--planner",
        default=DEFAULT_PLAN_PLANNER,
        metavar="NAME",
        help=f"one of {', '.join(PLAN_PLANNERS)} (default {DEFAULT_PLAN_PLANNER}: the exact "
        "cost-optimal linear programme)",
    )
    plan_parser.add_argument(
        "--degradation-cny-per-kwh",
        default=DEFAULT_DEGRADATION_CNY_PER_KWH,
        metavar="CNY",
        help="battery wear cost per kWh discharged, >= 0 "
        f"(default {DEFAULT_DEGRADATION_CNY_PER_KWH})",
    )
    plan_parser.add_argument(
        "--peak-price-cny-per-kw",
        metavar="CNY",
        help="price of the highest base load plus fleet load over the horizon, CNY/kW, >= 0; "
        "--planner lp or fast only (default 0: no peak price)",
    )
    plan_parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE",
        help="the schedule CSV to write (replaced only when planning succeeds)",
    )
    plan_parser.add_argument(
        "--summary",
        type=Path,
        metavar="FILE",
        help="also write a JSON summary: energy cost, export revenue, degradation, peak, "
        "objective (exact CNY strings), unmet energy, solve time",
    )


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
                "demand_response": [
                    e.model_dump()
                    for e in scenario.demand_response
                    if e.city is None or e.city in settings["cities"]
                ],
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
    fleet = sessions.fleet
    span_s = int(fleet.departure_s.max()) - int(fleet.arrival_s.min())
    if span_s > MAX_SPAN_DAYS * SECONDS_PER_DAY:
        latest = int(np.argmax(fleet.departure_s))
        raise InputError(
            f"the sessions span {span_s / SECONDS_PER_DAY:,.0f} days (session "
            f"{fleet.label(latest)} leaves last); the twin simulates up to {MAX_SPAN_DAYS} "
            "days: check its departure",
            file=args.sessions,
            field="departure",
        )
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
    from v2ghub.settlement.settle import settle_run  # noqa: PLC0415

    outputs.write_summary_json(
        out / "summary.json",
        outputs.summary_document(summaries, planners=planners, scenario=info),
    )
    outputs.write_summary_csv(out / "summary.csv", summaries)
    outputs.write_curves_csv(out / "curves.csv", summaries)
    outputs.write_envelope_csv(out / "envelope.csv", summaries)
    outputs.write_market_json(out / "market.json", summaries)
    outputs.write_regulation_json(out / "regulation.json", summaries)
    # Settle what the run metered (totals only: `v2ghub settle` writes the statements).
    settlement = settle_run(out, out=out, statements=False)
    write_html_report(
        out / "report.html",
        summaries,
        title="v2ghub: a day of V2G",
        notes=notes,
        settlement=settlement,
    )


def _check_out(out: Path, inputs: Sequence[Path | None]) -> None:
    """Refuse an output folder whose replacement would destroy anything but old results."""
    target = out.resolve()
    here = Path.cwd().resolve()
    if target == here or target in here.parents:
        raise InputError(f"--out {out} is the current folder or holds it; name a results folder")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; name a folder")
    for given in inputs:
        if given is not None and target in given.resolve().parents:
            raise InputError(f"--out {out} holds the input file {given}; name another folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "summary.json").is_file():
        raise InputError(
            f"--out {out} holds files that are not a v2ghub result (no summary.json); "
            "name a new or empty folder"
        )


def _swap_in(staging: Path, out: Path) -> None:
    """Put ``staging`` in place of ``out``; the old results go only once the new are in."""
    if not out.exists():
        staging.rename(out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=out.parent))
    old.rmdir()
    out.rename(old)
    try:
        staging.rename(out)
    except OSError:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _regulation_offer(args: argparse.Namespace, *, seed: int) -> RegulationOffer | None:
    """The regulation offer the options ask for, if any."""
    options = (args.regulation_hours, args.regulation_signal, args.frequency)
    if all(option is None for option in options) and not args.regulation:
        return None
    hours: tuple[int, ...] = DEFAULT_HOURS
    if args.regulation_hours is not None:
        try:
            hours = tuple(int(h) for h in args.regulation_hours.split(","))
            RegulationOffer(hours=hours)
        except ValueError:
            raise InputError(
                f"--regulation-hours must be local hours 0-23, comma-separated, "
                f"not {args.regulation_hours!r}"
            ) from None
    signal = load_signal_csv(args.regulation_signal) if args.regulation_signal else None
    frequency = load_frequency_csv(args.frequency) if args.frequency else None
    step_s = signal.step_s if signal is not None else 2.0
    if frequency is not None and signal is not None and frequency.step_s != signal.step_s:
        raise InputError(
            f"the frequency file's step ({frequency.step_s:g} s) differs from the signal "
            f"file's ({signal.step_s:g} s)",
            file=args.frequency,
        )
    if frequency is not None and signal is None:
        step_s = frequency.step_s
    try:
        return RegulationOffer(
            hours=hours,
            seed=seed,
            signal=args.regulation_kind,
            step_s=step_s,
            frequency_response=not args.no_frequency_response,
            signal_trace=signal,
            frequency_trace=frequency,
        )
    except ValueError as error:
        raise InputError(str(error)) from None


def _demand_response(
    args: argparse.Namespace, scenario: Scenario, days: dict[str, date]
) -> tuple[list[DemandResponseEvent], str | None]:
    """The events each city answers (the scenario's, else the default one with
    ``--demand-response``) on its simulated day, and a note saying what they are."""
    if not scenario.demand_response and args.demand_response and not args.market:
        scenario = scenario.model_copy(update={"demand_response": (DEFAULT_DEMAND_RESPONSE,)})
        origin = "the --demand-response default, an assumption"
    else:
        origin = "from the scenario file"
    events = [e for city, day in days.items() for e in scenario.demand_response_events(city, day)]
    if not events:
        return [], None
    return events, (
        f"Demand response: {len(events)} event(s) ({origin}); the baseline is the same "
        "planner's run without the event; delivered energy is credited up to what was "
        "requested, step by step."
    )


def _write_run(writers: Sequence[TableWriter], result: RunResult) -> None:
    """Append one run's rows to every per-run file."""
    for writer in writers:
        writer.write(result)


def simulate(args: argparse.Namespace, console: Console) -> None:
    """Run ``v2ghub simulate``."""
    from v2ghub.report.outputs import (  # noqa: PLC0415 - only simulate writes them
        TableWriter,
        meter_table,
        print_summary,
        sessions_table,
    )

    started = time.perf_counter()
    scenario = _scenario(args)
    cases = _cases(args, scenario)
    settings = scenario.simulation
    planners = settings.planners
    cities = [c.city for c in cases] if isinstance(cases, list) else list(settings.cities)
    sessions_per_city = (
        max(c.fleet.n_sessions for c in cases)
        if isinstance(cases, list)
        else settings.vehicles_per_city
    )
    for name in planners:
        most = getattr(make_planner(name), "twin_max_sessions", None)
        if most is not None and sessions_per_city > most:
            raise InputError(
                f"the {name} planner plans at most {most:,} sessions per city in the twin "
                f"({sessions_per_city:,} asked); use fewer --vehicles, or v2ghub plan for "
                "one day-ahead solve"
            )
    n_runs = len(cities) * len(planners)
    days = (
        {c.city: c.grid.start.date() for c in cases}
        if isinstance(cases, list)
        else dict.fromkeys(cities, settings.date)
    )
    events, events_note = _demand_response(args, scenario, days)

    # Write into a fresh folder beside the target and swap it in at the end: a failed or
    # interrupted run leaves no half-written output that could pass for a result.
    out: Path = args.out
    _check_out(out, [args.scenario, args.sessions, args.sites])
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
        with (
            progress,
            TableWriter(staging / "sessions.parquet", sessions_table) as sessions,
            TableWriter(staging / "meter.parquet", meter_table) as meter,
        ):
            task = progress.add_task("simulating", total=n_runs)

            def on_step(label: str, share: float) -> None:
                first = run_starts.setdefault(label, len(run_starts))
                progress.update(task, completed=first + share, description=label)

            summaries = run_cases(
                cases,
                planners,
                control_steps=settings.control_steps,
                on_step=on_step,
                on_result=partial(_write_run, (sessions, meter)),
                regulation=_regulation_offer(args, seed=settings.seed),
                demand_response=events,
                market=(scenario.market or default_market()) if args.market else scenario.market,
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
        if events_note is not None:
            notes.append(events_note)
        with console.status("writing report"):
            _write_summaries(staging, summaries, planners, notes, info)
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not args.quiet:
        print_summary(console, summaries, planners)
    console.print(
        f"wrote {out}/report.html, summary.json, summary.csv, curves.csv, envelope.csv, "
        "sessions.parquet, meter.parquet, settlement.json "
        f"in {time.perf_counter() - started:.1f} s"
    )


def _non_negative(text: str, option: str) -> float:
    """The value of a numeric option: a finite number >= 0."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise InputError(f"{option}: not a number: {text!r}") from None
    if not (value.is_finite() and value >= 0 and math.isfinite(float(value))):
        raise InputError(f"{option}: must be a finite number >= 0, got {text!r}")
    return float(value)


def _check_plan_options(args: argparse.Namespace) -> tuple[float, float]:
    """The degradation (CNY/kWh) and peak price (CNY/kW) options, checked with the rest."""
    if args.planner not in PLAN_PLANNERS:
        raise InputError(
            f"--planner: unknown planner {args.planner!r} (known: {', '.join(PLAN_PLANNERS)})"
        )
    degradation = _non_negative(args.degradation_cny_per_kwh, "--degradation-cny-per-kwh")
    peak_price = 0.0
    if args.peak_price_cny_per_kw is not None:
        if args.planner not in ("lp", "fast"):
            raise InputError(
                f"--peak-price-cny-per-kw applies to --planner lp or fast, not {args.planner!r}"
            )
        peak_price = _non_negative(args.peak_price_cny_per_kw, "--peak-price-cny-per-kw")
    outputs = [args.out] + ([args.summary] if args.summary is not None else [])
    inputs = [p for p in (args.sessions, args.prices, args.sites) if p is not None]
    for output in outputs:
        if output.is_dir():
            raise InputError("is a folder; give the name of the file to write", file=output)
        if any(output.resolve() == source.resolve() for source in inputs):
            raise InputError("is also an input file; write the output elsewhere", file=output)
    if args.summary is not None and args.summary.resolve() == args.out.resolve():
        raise InputError("--summary and --out name the same file", file=args.out)
    return degradation, peak_price


def _check_schedule(schedule: Schedule, problem: Problem) -> None:
    """A planner's schedule must cover every step, be finite and be zero when unplugged."""
    expected = (problem.n_vehicles, problem.grid.length)
    power = schedule.power_kw
    if power.shape != expected:
        raise PlanningError(
            f"planner {schedule.planner} returned power of shape {power.shape}, not {expected}"
        )
    if not np.all(np.isfinite(power)):
        raise PlanningError(f"planner {schedule.planner} returned power that is not finite")
    steps = np.arange(problem.grid.length)
    unplugged = (steps[None, :] < problem.arrival_step[:, None]) | (
        steps[None, :] >= problem.departure_step[:, None]
    )
    if np.any(power[unplugged] != 0):
        raise PlanningError(f"planner {schedule.planner} set power for an unplugged vehicle")


def plan(args: argparse.Namespace, console: Console) -> None:
    """Run ``v2ghub plan``: read, plan, check, then write the schedule (and summary)."""
    from v2ghub.report.schedule_files import (  # noqa: PLC0415 - only this command writes them
        atomic_text,
        plan_summary,
        write_schedule_rows,
        write_summary,
    )

    degradation, peak_price = _check_plan_options(args)
    sessions = load_sessions_csv(args.sessions)
    sites = (
        load_sites_csv(args.sites, site_ids=sessions.site_ids)
        if args.sites is not None
        else SiteLimits.unlimited(sessions.site_ids)
    )
    prices = load_prices_csv(args.prices)
    problem = day_ahead_problem(
        fleet=sessions.fleet,
        sites=sites,
        prices=prices,
        degradation_cny_per_kwh=degradation,
        sessions_file=args.sessions,
        session_rows=sessions.rows,
    )
    planner: Planner
    if args.planner == "lp":
        check_prices_for_lp(problem, prices=prices, prices_file=args.prices)
        planner = LpPlanner(peak_price_cny_per_kw=peak_price)
    elif args.planner == "fast":
        planner = FastPlanner(peak_price_cny_per_kw=peak_price)
    else:
        planner = make_planner(args.planner)
    started = time.perf_counter()
    schedule = planner.plan(problem)
    solve_seconds = time.perf_counter() - started
    _check_schedule(schedule, problem)
    summary = plan_summary(
        problem=problem,
        power_kw=schedule.power_kw,
        prices=prices,
        planner=args.planner,
        solve_seconds=solve_seconds,
        peak_price_cny_per_kw=peak_price,
    )
    fleet = sessions.fleet
    session_ids = (
        fleet.session_ids
        if fleet.session_ids is not None
        else np.char.add("#", np.arange(fleet.n_sessions).astype(np.str_))
    )
    outputs: list[Path] = [args.out] + ([args.summary] if args.summary is not None else [])
    for output in outputs:
        output.parent.mkdir(parents=True, exist_ok=True)
    # Both files are written to temporary files and renamed at the end: a failure in
    # either leaves neither half-written.
    with contextlib.ExitStack() as files:
        schedule_file = files.enter_context(atomic_text(args.out))
        summary_file = (
            files.enter_context(atomic_text(args.summary)) if args.summary is not None else None
        )
        write_schedule_rows(
            schedule_file,
            problem=problem,
            power_kw=schedule.power_kw,
            session_ids=session_ids,
            grid=problem.grid,
        )
        if summary_file is not None:
            write_summary(summary_file, summary)
    unmet = summary["unmet_energy_kwh"]
    also = f" and {args.summary}" if args.summary is not None else ""
    console.print(
        f"wrote {args.out}{also}: {args.planner} plan for {summary['sessions']} sessions, "
        f"objective {summary['objective_cny']} CNY, unmet energy {unmet:g} kWh",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def settle(args: argparse.Namespace, console: Console) -> bool:
    """Run ``v2ghub settle``; whether every period balanced."""
    from v2ghub.settlement.contracts import Contracts  # noqa: PLC0415 - settle only
    from v2ghub.settlement.settle import settle_run  # noqa: PLC0415

    started = time.perf_counter()
    _check_settle_options(args)
    contracts = Contracts.load(args.contracts) if args.contracts is not None else Contracts()
    if args.live:
        document = _settle_live(args, contracts)
    else:
        planners = args.planners.split(",") if args.planners else None
        with console.status("settling") as status:
            document = settle_run(
                args.run,
                out=args.out,
                planners=planners,
                contracts=contracts,
                rates_file=args.rates,
                ledger_path=args.ledger,
                on_period=lambda period: status.update(f"settling {period}"),
            )
    verdict = "balanced" if document["balanced"] else "NOT BALANCED"
    console.print(
        f"settled {len(document['periods'])} periods ({verdict}); wrote {args.out}/"
        f"statements.csv, settlement.json in {time.perf_counter() - started:.1f} s"
    )
    if args.live:
        console.print(f"not settled: {document['not_settled']}", markup=False)
    return bool(document["balanced"])


def _check_settle_options(args: argparse.Namespace) -> None:
    """RUN_DIR or --live with its options, never both nor a mix."""
    live_only = {"--data-dir": args.data_dir, "--database-url": args.database_url}
    live_only |= {"--day": args.day, "--city": args.city}
    if args.live == (args.run is not None):
        raise InputError("settle takes RUN_DIR (a simulate run) or --live, exactly one")
    if not args.live:
        given = [option for option, value in live_only.items() if value is not None]
        if given:
            raise InputError(f"{', '.join(given)} apply to --live only")
        return
    if args.planners:
        raise InputError("--planners applies to RUN_DIR only (live data has one period)")
    missing = [option for option in ("--day", "--city") if live_only[option] is None]
    if missing:
        raise InputError(f"--live needs {' and '.join(missing)}")
    if args.data_dir is not None and args.database_url is not None:
        raise InputError("give --data-dir or --database-url, not both")


def _settle_live(args: argparse.Namespace, contracts: Contracts) -> dict[str, Any]:
    """``settle --live``: the CLI reads the store (settlement sees it through a protocol)."""
    from v2ghub.settlement.live_settle import settle_live  # noqa: PLC0415 - settle only

    city = city_name(args.city)
    if args.database_url is None:
        data_dir = args.data_dir if args.data_dir is not None else DEFAULT_DATA_DIR
        if not (data_dir / SQLITE_FILE_NAME).is_file():
            raise InputError("no live database here (v2ghub serve writes one)", file=data_dir)
    try:
        store = Store.open(data_dir=args.data_dir, database_url=args.database_url)
    except SQLAlchemyError as error:
        raise InputError(f"cannot open the live database ({type(error).__name__})") from None
    with store:
        return settle_live(
            store,
            day=args.day,
            city=city,
            tariff=pilot_cities()[city].tariff(),
            out=args.out,
            contracts=contracts,
            rates_file=args.rates,
            ledger_path=args.ledger,
            store_name=store.url,
        )


STATEMENT_PARTIES_SHOWN = 5
"""Up to this many parties the summary shows each party's net; beyond, each group's."""


def statement(args: argparse.Namespace, console: Console) -> None:
    """Run ``v2ghub statement``: read the ledger, write the lines and totals, sum up."""
    from v2ghub.settlement.money import fen_to_cny  # noqa: PLC0415 - statement only
    from v2ghub.settlement.statements import (  # noqa: PLC0415
        statement as party_statement,
    )
    from v2ghub.settlement.statements import write_statement  # noqa: PLC0415

    result = party_statement(
        args.ledger,
        party=args.party,
        month=args.month,
        day=args.day,
        city=args.city,
        planner=args.planner,
    )
    csv_path, json_path = write_statement(result, args.out)
    net: dict[str, int] = {}
    counts: dict[str, int] = {}
    for party, fen in result.net_fen.items():
        shown = party if len(result.net_fen) <= STATEMENT_PARTIES_SHOWN else party.split(":")[0]
        net[shown] = net.get(shown, 0) + fen
        counts[shown] = counts.get(shown, 0) + 1
    nets = ", ".join(
        f"{name} {fen_to_cny(fen):+} CNY"
        + (f" ({counts[name]:,} parties)" if counts[name] > 1 else "")
        for name, fen in net.items()
    )
    console.print(
        f"{result.scope}: {len(result):,} lines over {len(result.periods)} periods, "
        f"{len(result.net_fen):,} {'party' if len(result.net_fen) == 1 else 'parties'}; "
        f"net {nets}; wrote {csv_path}, {json_path}",
        markup=False,
        highlight=False,
        soft_wrap=True,
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
        elif args.command == "plan":
            plan(args, console)
        elif args.command == "settle" and not settle(args, console):
            return 1  # the statements are written, for inspection, but do not balance
        elif args.command == "statement":
            statement(args, console)
        elif args.command in LIVE_COMMANDS:
            return run_live_command(args, console)
    except InputError as error:
        errors.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except PlanningError as error:
        message = " ".join(str(error).split())
        errors.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        errors.print("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
