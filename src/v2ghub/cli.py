"""The command line: it parses arguments and calls the library (:mod:`v2ghub.twin`,
:mod:`v2ghub.workflows`, :mod:`v2ghub.live.commands`); the work is done there, and each
command imports its part of the library only when it runs."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, NoReturn, TypeAlias

from rich.console import Console

from v2ghub import __version__, defaults
from v2ghub.api.command_line import TOKEN_COMMANDS, add_token_commands
from v2ghub.choices import (
    KEEPS_VALLEY_RULE,
    MAX_VEHICLES,
    PLAN_PLANNERS,
    PLANNER_NAMES,
    RULES_SUFFIX,
    TWIN_MAX_SESSIONS,
)
from v2ghub.errors import InputError, PlanningError
from v2ghub.live.command_line import LIVE_COMMANDS, add_live_commands

# Only light modules above: the parser and every --help are built from them. Each command
# imports what it runs (the twin, the planners, the live server, the web API) when it runs.
DATA_DIR = defaults.DATA_DIR
DEFAULT_OUT = defaults.OUT_DIR


def _positive_vehicles(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 10 <= value <= MAX_VEHICLES:
        raise argparse.ArgumentTypeError(f"must be within 10 and {MAX_VEHICLES:,}, got {value}")
    return value


def _whole_number(text: str, *, least: int, refusal: str) -> int:
    """``text`` as a whole number of at least ``least``; ``refusal`` (formatted with
    ``text`` and ``value``) says why a smaller one is refused."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(refusal.format(text=text, value=value))
    return value


def _seed(text: str) -> int:
    return _whole_number(text, least=0, refusal="must be a whole number >= 0, got {text!r}")


def _distinct_names(text: str) -> str:
    """A comma-separated list of distinct names (case aside), checked here so that a slip
    is refused before a run of many minutes (whether each name exists is told later, in
    one line, by the layer that knows the names)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"no name in {text!r}")
    seen: set[str] = set()
    for part in parts:
        if part.casefold() in seen:
            raise argparse.ArgumentTypeError(f"{part} is named twice")
        seen.add(part.casefold())
    return ",".join(parts)


def _workers(text: str) -> int:
    return _whole_number(text, least=1, refusal="must be at least 1, got {value}")


def _feeders(text: str) -> int:
    return _whole_number(text, least=0, refusal="must be at least 0, got {value}")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
FILE: dict[str, Any] = {"type": Path, "metavar": "FILE"}
DIR: dict[str, Any] = {"type": Path, "metavar": "DIR"}
LIST: dict[str, Any] = {"metavar": "LIST"}
SWITCH: dict[str, Any] = {"action": "store_true"}


def build_parser() -> argparse.ArgumentParser:
    """The ``v2ghub`` argument parser (each command's options are told in the docs)."""
    parser = argparse.ArgumentParser(
        prog="v2ghub",
        description="v2ghub: vehicle-to-grid aggregation. A digital twin of V2G fleets in "
        "the nine Chinese pilot cities (or your own sessions), and a live aggregator for "
        "real bidirectional chargers over OCPP 2.1/2.0.1.",
    )
    parser.add_argument("--version", action="version", version=f"v2ghub {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_simulate_parser(commands)
    _add_plan_parser(commands)
    _add_settle_parser(commands)
    _add_statement_parser(commands)
    add_live_commands(commands)
    add_token_commands(commands)
    return parser


def _add_simulate_parser(commands: Commands) -> None:
    add = commands.add_parser(
        "simulate",
        help="simulate a day of V2G and write a report",
        description="Simulate one day of V2G for each city and planner and write the results "
        "and report.html into --out. With no arguments: a weekday in the nine pilot cities, "
        "10,000 synthetic vehicles each, planners uncontrolled, tou, v2g-rules and mpc.",
    ).add_argument
    add("--scenario", **FILE, help="a TOML scenario file")
    add(
        "--sessions",
        **FILE,
        help="your own sessions CSV (columns in docs/cli.md) instead of a synthetic fleet",
    )
    add(
        "--sites",
        **FILE,
        help="site limits CSV (site_id, import_limit_kw, export_limit_kw) for --sessions",
    )
    add("--city", metavar="NAME", help="the city (tariff, load) of --sessions; e.g. Shenzhen")
    add(
        "--vehicles",
        type=_positive_vehicles,
        metavar="N",
        help="synthetic vehicles per city "
        f"(10 to {MAX_VEHICLES:,}; default {defaults.VEHICLES_PER_CITY:,})",
    )
    add("--seed", type=_seed, metavar="N", help=f"random seed, >= 0 (default {defaults.SEED})")
    add("--date", type=_day, help="the simulated day, YYYY-MM-DD")
    add(
        "--planners",
        **LIST,
        type=_distinct_names,
        help=f"planners to compare, the first the reference (of {', '.join(PLANNER_NAMES)}, "
        f"and {', '.join(n + RULES_SUFFIX for n in KEEPS_VALLEY_RULE)} to keep the pilots' "
        f"valley rule; lp and mpc-lp up to {TWIN_MAX_SESSIONS:,} sessions a city)",
    )
    add(
        "--cities",
        **LIST,
        type=_distinct_names,
        help="comma-separated cities (default: the nine pilots)",
    )
    add(
        "--out",
        **DIR,
        default=DEFAULT_OUT,
        help=f"output folder, replaced if it exists (default: ./{DEFAULT_OUT})",
    )
    add("--quiet", **SWITCH, help="no progress bar or table")
    add(
        "--pilot-rules",
        **SWITCH,
        help="also run each planner that can keep the pilots' valley rule (60%% of charging "
        "in valley hours, 80%% at home) as <name>+rules, e.g. mpc+rules, and report the "
        "share each reached, the most the day allowed and what keeping the rule cost",
    )
    add(
        "--feeders",
        type=_feeders,
        metavar="N",
        help="put N distribution feeders a city under its residential compounds "
        "(pandapower's standard LV feeders) and run AC power flow at every step of every "
        "planner: overloads and voltages in summary.json and a Feeders section in the report",
    )
    add(
        "--feeder-network",
        **FILE,
        help="a pandapower JSON network for every feeder instead of the standard ones",
    )
    add(
        "--wear",
        choices=("flat", "model"),
        help="battery wear price for the planners: flat (the scenario's "
        "degradation_cny_per_kwh) or model (the battery ageing model's; default: the "
        "scenario's wear setting, flat)",
    )
    add(
        "--regulation",
        **SWITCH,
        help="also offer frequency regulation: commit the headroom "
        "the fleet can hold each offered hour and follow a 2-s signal",
    )
    add(
        "--regulation-hours",
        **LIST,
        help="local hours offered, comma-separated (default "
        f"{','.join(map(str, defaults.REGULATION_HOURS))}); implies --regulation",
    )
    add(
        "--regulation-kind",
        choices=("dynamic", "traditional"),
        default="dynamic",
        help="the seeded synthetic signal: fast and energy-neutral, or slower with a drift",
    )
    add("--regulation-signal", **FILE, help="follow this signal CSV; implies --regulation")
    add("--frequency", **FILE, help="answer this frequency CSV by droop; implies --regulation")
    add(
        "--no-frequency-response",
        **SWITCH,
        help="with --regulation, no primary frequency "
        "response (by default 5%% droop, 0.05 Hz deadband, within the promise)",
    )
    add(
        "--market",
        **SWITCH,
        help="first sell the fleet's day-ahead headroom in a capacity "
        "market (the scenario's [market], else the shipped one); every planner honours it",
    )
    add(
        "--demand-response",
        **SWITCH,
        help="answer an event 18:00-19:00 local, 0.5 kW below "
        "the baseline per plugged vehicle, when the scenario has none and no market runs",
    )
    add(
        "--workers",
        type=_workers,
        metavar="N",
        help="shard each city's fleet (blocks of 25,000 vehicles, whole sites) and run the "
        "shards on a local Ray runtime of N CPUs; mpc and fast coordinate the area's peak "
        "across shards in rounds",
    )
    add(
        "--ray-address",
        metavar="ADDRESS",
        help="run the shards on the Ray cluster at ADDRESS (e.g. ray://head:10001 or "
        "auto); its workers must see --out's file system",
    )


def _add_settle_parser(commands: Commands) -> None:
    settle_parser = commands.add_parser(
        "settle",
        help="settle a simulate run or a day of live meter data: who is paid what, to the fen",
        description="Post a simulate run's days (or, with --live, a city's day of the live "
        "store) to a double-entry ledger and write statements.csv and settlement.json.",
    )
    add = settle_parser.add_argument
    add("run", type=Path, nargs="?", metavar="RUN_DIR", help="a simulate output folder")
    add("--out", **DIR, required=True, help="folder for the statements")
    add(
        "--planners",
        **LIST,
        type=_distinct_names,
        help="comma-separated planners to settle (default: all)",
    )
    add("--contracts", **FILE, help="shares per stream and site or charger kind (TOML)")
    add("--rates", **FILE, help="rates overriding the shipped ones (TOML)")
    add("--ledger", **FILE, help="an SQLite ledger to post into (default: DIR/ledger.sqlite)")
    live = settle_parser.add_argument_group("live meter data (instead of RUN_DIR)").add_argument
    live("--live", **SWITCH, help="settle a day of the live aggregator's store")
    live("--data-dir", **DIR, help=f"folder of the live SQLite database (default ./{DATA_DIR})")
    live("--database-url", metavar="URL", help="the live database's URL instead")
    live("--day", type=_day, metavar="YYYY-MM-DD", help="the city's local day to settle")
    live("--city", metavar="NAME", help="the stations' city: its tariff, rates and time zone")


def _add_statement_parser(commands: Commands) -> None:
    statement_parser = commands.add_parser(
        "statement",
        help="a party's statement over a day or a month of a ledger",
        description="State what a party (or a group: owner: is every owner) received and paid "
        "over a day or a month of a ledger; writes statement.csv and statement.json.",
    )
    add = statement_parser.add_argument
    add("--ledger", **FILE, required=True, help="the SQLite ledger to read")
    when = statement_parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--month", metavar="YYYY-MM", help="every period of this month")
    when.add_argument("--day", metavar="YYYY-MM-DD", help="every period of this day")
    add("--party", metavar="ID", help="owner:S1, operator:site-7, aggregator, grid or owner:")
    add("--city", metavar="NAME", help="only this city's periods")
    add("--planner", metavar="NAME", help="only this planner's periods")
    add("--out", **DIR, required=True, help="folder for the statement")


def _add_plan_parser(commands: Commands) -> None:
    add = commands.add_parser(
        "plan",
        help="plan every session of a file over a price series; write schedule.csv",
        description="Plan every session of a sessions file over the steps of a prices file "
        "at once (day-ahead), check the plan and write it as CSV (session_id, start, "
        "power_kw; + charging, - discharging), and optionally a JSON summary of its cost.",
    ).add_argument
    add("--sessions", **FILE, required=True, help="sessions CSV (as for simulate --sessions)")
    add("--prices", **FILE, required=True, help="prices CSV: start, import and export prices")
    add("--sites", **FILE, help="site limits CSV (default: no limits)")
    add("--planner", default=defaults.PLAN_PLANNER, metavar="NAME", help=", ".join(PLAN_PLANNERS))
    add(
        "--degradation-cny-per-kwh",
        default=defaults.DEGRADATION_CNY_PER_KWH,
        metavar="CNY",
        help="battery wear cost per kWh discharged",
    )
    add("--peak-price-cny-per-kw", metavar="CNY", help="price of the peak; lp or fast only")
    add(
        "--pilot-rules",
        **SWITCH,
        help="keep the pilots' valley rule (60%% of charging in the lowest-priced steps, 80%% "
        "on home chargers; relaxed at a penalty where the stays do not allow it); lp or fast "
        "only",
    )
    add(
        "--out",
        **FILE,
        required=True,
        help="the schedule CSV to write; replaces only an earlier schedule (or an empty file)",
    )
    add(
        "--summary",
        **FILE,
        help="also write a JSON summary of the plan's exact cost; replaces only an earlier one",
    )
    add(
        "--force",
        **SWITCH,
        help="replace --out and --summary whatever regular file they are (a symbolic link "
        "itself, not what it points to); a device or a folder is never replaced",
    )


def simulate(args: argparse.Namespace, console: Console) -> None:
    """Run ``v2ghub simulate``: build the scenario, run the twin, write the results."""
    # The library's heavy modules, here and in each command below, load when it runs.
    from v2ghub.files import writing_into  # noqa: PLC0415
    from v2ghub.report.outputs import print_summary  # noqa: PLC0415
    from v2ghub.twin import Twin  # noqa: PLC0415
    from v2ghub.twin.options import regulation_from_options, scenario_from_options  # noqa: PLC0415
    from v2ghub.twin.output_folder import check_output_folder, staging_folder  # noqa: PLC0415
    from v2ghub.twin.progress import progress_callback  # noqa: PLC0415

    started = time.perf_counter()
    scenario = scenario_from_options(
        scenario_file=args.scenario,
        sessions=args.sessions,
        sites=args.sites,
        city=args.city,
        cities=args.cities,
        vehicles_per_city=args.vehicles,
        seed=args.seed,
        date=args.date,
        planners=args.planners,
        wear=args.wear,
        pilot_rules=args.pilot_rules,
        feeders=args.feeders,
        feeder_network=args.feeder_network,
    )
    regulation = regulation_from_options(
        regulation=args.regulation,
        hours=args.regulation_hours,
        kind=args.regulation_kind,
        signal_file=args.regulation_signal,
        frequency_file=args.frequency,
        frequency_response=not args.no_frequency_response,
        seed=scenario.seed,
    )
    twin = Twin(
        scenario,
        regulation=regulation or False,
        market=args.market,
        demand_response=args.demand_response,
        workers=args.workers,
        ray_address=args.ray_address,
    )
    twin.check()
    inputs = [args.scenario, args.sessions, args.sites]
    check_output_folder(args.out, inputs)
    work = staging_folder(args.out)  # beside --out: the tables are linked, not copied
    try:
        runs = len(scenario.cities) * len(twin.planners)
        # The run writes its tables into `work`: a full disk is said as one line.
        with (
            writing_into(args.out),
            progress_callback(not args.quiet, runs, console=console) as on_step,
        ):
            result = twin.run(progress=on_step or False, workdir=work)
        with console.status("writing report"):
            result.write(args.out, inputs=inputs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not args.quiet:
        print_summary(console, result.runs, result.planners)
    console.print(
        f"wrote {args.out}/report.html, summary.json, summary.csv, curves.csv, envelope.csv, "
        f"sessions.parquet, meter.parquet, settlement.json in {time.perf_counter() - started:.1f} s"
    )


def plan(args: argparse.Namespace, console: Console) -> None:
    """Run ``v2ghub plan``: read, plan, check, then write the schedule (and summary)."""
    from v2ghub.workflows.day_ahead_plan import plan_files  # noqa: PLC0415

    written = plan_files(
        sessions=args.sessions,
        prices=args.prices,
        sites=args.sites,
        out=args.out,
        summary=args.summary,
        planner=args.planner,
        degradation_cny_per_kwh=args.degradation_cny_per_kwh,
        peak_price_cny_per_kw=args.peak_price_cny_per_kw,
        force=args.force,
        pilot_rules=args.pilot_rules,
    )
    summary = written.summary
    warnings = Console(stderr=True)
    for warning in written.warnings:
        warnings.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    also = f" and {args.summary}" if args.summary is not None else ""
    _say(
        console,
        f"wrote {args.out}{also}: {written.planner} plan for {summary['sessions']} sessions, "
        f"objective {summary['objective_cny']} CNY, "
        f"unmet energy {summary['unmet_energy_kwh']:g} kWh",
    )


def settle(args: argparse.Namespace, console: Console) -> bool:
    """Run ``v2ghub settle``; whether every period balanced."""
    from v2ghub.workflows import settle as settling  # noqa: PLC0415

    started = time.perf_counter()
    settling.check_settle_options(
        run=args.run,
        live=args.live,
        planners=args.planners,
        data_dir=args.data_dir,
        database_url=args.database_url,
        day=args.day,
        city=args.city,
    )
    files = {"contracts": args.contracts, "rates": args.rates, "ledger": args.ledger}
    if args.live:
        document = settling.settle_live_day(
            day=args.day,
            city=args.city,
            out=args.out,
            data_dir=args.data_dir,
            database_url=args.database_url,
            **files,
        )
    else:
        with console.status("settling") as status:
            document = settling.settle_folder(
                args.run,
                out=args.out,
                planners=args.planners.split(",") if args.planners else None,
                on_period=lambda period: status.update(f"settling {period}"),
                **files,
            )
    verdict = "balanced" if document["balanced"] else "NOT BALANCED"
    console.print(
        f"settled {len(document['periods'])} periods ({verdict}); wrote {args.out}/"
        f"statements.csv, settlement.json in {time.perf_counter() - started:.1f} s"
    )
    if args.live:
        console.print(f"not settled: {document['not_settled']}", markup=False)
    return bool(document["balanced"])


def statement(args: argparse.Namespace, console: Console) -> None:
    """Run ``v2ghub statement``: read the ledger, write the lines and totals, sum up."""
    from v2ghub.settlement.statements import statement as party_statement  # noqa: PLC0415
    from v2ghub.settlement.statements import write_statement  # noqa: PLC0415
    from v2ghub.workflows.statement import statement_line  # noqa: PLC0415

    result = party_statement(
        args.ledger,
        party=args.party,
        month=args.month,
        day=args.day,
        city=args.city,
        planner=args.planner,
    )
    _say(console, statement_line(result, *write_statement(result, args.out)))


def _say(console: Console, line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _service_command(args: argparse.Namespace, console: Console) -> int:
    """The live aggregator's commands, with the web API beside ``serve``."""
    if args.command in TOKEN_COMMANDS:
        from v2ghub.api.commands import run_token_command  # noqa: PLC0415

        return run_token_command(args, console)
    from v2ghub.api.live_context import web_pages  # noqa: PLC0415
    from v2ghub.live.commands import run_live_command  # noqa: PLC0415

    return run_live_command(args, console, web_pages=web_pages)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``v2ghub`` command: the exit code of the command ``argv`` names.

    Without ``argv`` (the installed command, which reads ``sys.argv``), a ``simulate``
    that has written its results ends the process at once (:func:`leave`).
    """
    args = build_parser().parse_args(argv)
    code = _run(args)
    if argv is None and args.command == "simulate":
        leave(code)
    return code


def _run(args: argparse.Namespace) -> int:
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
        elif args.command in (*LIVE_COMMANDS, *TOKEN_COMMANDS):
            return _service_command(args, console)
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


def leave(code: int) -> NoReturn:
    """End the process with exit ``code``, its output flushed, without the interpreter's
    teardown where nothing needs it.

    The teardown frees every module and object one by one: about 0.5 s of CPU after a
    million-vehicle ``simulate``, for memory the system takes back whole anyway. It runs
    as usual (``sys.exit``) when the output cannot be flushed or something still needs
    it: Ray started in this process, child processes, or threads other than daemons.
    """
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: the interpreter says so, as always
        sys.exit(code)
    if _needs_teardown():
        sys.exit(code)
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    os._exit(code)


def _needs_teardown() -> bool:
    """Whether anything the interpreter's exit would finish is still running."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return True
    processes = sys.modules.get("multiprocessing")
    if processes is not None and processes.active_children():
        return True
    main_thread = threading.main_thread()
    return any(
        thread is not main_thread and not thread.daemon and thread.is_alive()
        for thread in threading.enumerate()
    )


if __name__ == "__main__":
    sys.exit(main())
