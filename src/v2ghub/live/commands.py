"""The live aggregator's commands: ``v2ghub serve``, ``station``, ``chargers`` and ``site``.

Every command that uses the store takes the same ``--data-dir`` / ``--database-url``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import math
import signal
import ssl
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from rich.console import Console

from v2ghub.defaults import API_PORT, DATA_DIR, LIVE_CITY, LIVE_CONTROL_INTERVAL_S, OCPP_PORT
from v2ghub.errors import InputError
from v2ghub.live.chargers import (
    ChargerConfig,
    FleetConfig,
    FleetStats,
    make_fleet_config,
    run_fleet,
)
from v2ghub.live.clock import Clock, ScaledClock, SystemClock
from v2ghub.live.control import ControlLoop
from v2ghub.live.live_problem import ControlSettings, LiveSite, warm_up
from v2ghub.live.openadr_ven import openadr_ven
from v2ghub.live.regulation_options import add_regulation_options, grid_services_from_args
from v2ghub.live.security import generate_password, hash_password, is_loopback
from v2ghub.live.server import CsmsServer, ServerSettings
from v2ghub.planning import PLANNERS, make_planner
from v2ghub.scenarios.catalog import city_name, pilot_cities
from v2ghub.scenarios.config import GridShape, load_scenario
from v2ghub.scenarios.signals_csv import load_frequency_csv
from v2ghub.scenarios.sites_csv import load_sites_csv
from v2ghub.store.repository import Store

DEFAULT_DATA_DIR = DATA_DIR
DEFAULT_PORT = OCPP_PORT
DEFAULT_CITY = LIVE_CITY
LIVE_COMMANDS = ("serve", "station", "chargers", "site")
GC_THRESHOLDS = (20_000, 20, 20)
"""The server's garbage collector runs a young collection every 20,000 allocations (not
700): a message makes hundreds of short-lived objects, and each collection paused it."""


@dataclass(frozen=True)
class Running:
    """A running ``serve``: what the web pages beside it read."""

    args: argparse.Namespace
    store: Store
    server: CsmsServer
    control: ControlLoop
    settings: ControlSettings


WebPages = Callable[[Running], AbstractAsyncContextManager[str | None]]
"""Starts the web API and dashboard beside a running ``serve`` (while open); their URL, or
None when not asked for. :func:`v2ghub.api.pages.web_pages` is the one ``v2ghub`` uses."""


def store_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("store")
    group.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"folder of the embedded SQLite database (default ./{DEFAULT_DATA_DIR})",
    )
    group.add_argument(
        "--database-url",
        help="a database URL instead, e.g. postgresql://user@host:5432/v2ghub",
    )


def _clock_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("simulated time (demonstrations)")
    group.add_argument(
        "--clock-start",
        type=_aware_time,
        help="run on a clock that starts at this instant, e.g. 2026-07-01T17:00+08:00",
    )
    group.add_argument(
        "--clock-speed",
        type=float,
        default=1.0,
        help="how many times faster than real time that clock runs (default 1)",
    )


def _openadr_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("OpenADR 2.0b VEN (grid signals from a VTN)")
    group.add_argument("--openadr-vtn-url", help="the VTN's URL; runs a VEN beside the server")
    group.add_argument("--openadr-ven-name", help="this VEN's name at the VTN")
    group.add_argument(
        "--openadr-resources",
        type=Path,
        help="CSV resource_id,site_id[,level_1_kw,level_2_kw,level_3_kw]: the VTN's resources "
        "as our sites (a site not listed is never dispatched)",
    )
    group.add_argument("--openadr-cert", type=Path, help="our certificate for signing (PEM)")
    group.add_argument("--openadr-key", type=Path, help="its private key (PEM)")
    group.add_argument("--openadr-vtn-fingerprint", help="the VTN certificate's fingerprint")
    group.add_argument(
        "--openadr-ca-file",
        type=Path,
        help="the certificate authority (PEM) the VTN's TLS certificate is checked against "
        "(OpenADR VTNs use the OpenADR Alliance's, not the system's); needed with "
        "--openadr-cert",
    )


def _aware_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone, e.g. {text}+08:00")
    return moment


def add_live_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve``, ``station`` and ``chargers`` to the ``v2ghub`` parser."""
    serve = commands.add_parser(
        "serve",
        help="run the live aggregator: an OCPP 2.1/2.0.1 server that plans and sends setpoints",
        description="Run the live aggregator: the OCPP server (CSMS) that registered charging "
        "stations connect to, and the control loop that plans the plugged vehicles with the "
        "same planners as the twin and sends each EVSE its setpoint. Stations connect to "
        "URL/<station id> with subprotocol ocpp2.1 or ocpp2.0.1 and Basic authentication "
        "(register them with `v2ghub station add`). Off loopback the server uses TLS "
        "(security profile 2), with a self-signed certificate in the data folder unless "
        "--certfile/--keyfile are given.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0: any free one)")
    store_options(serve)
    serve.add_argument(
        "--planner",
        default="fast",
        choices=[name for name in PLANNERS if not name.startswith("mpc")],
        help="planner of the control loop (default fast)",
    )
    where = serve.add_mutually_exclusive_group()
    where.add_argument(
        "--city",
        help=f"shipped city for tariff, discharge prices and time zone (default {DEFAULT_CITY}): "
        + ", ".join(sorted(pilot_cities())),
    )
    where.add_argument(
        "--scenario", type=Path, help="scenario TOML file: its first city and grid shape"
    )
    serve.add_argument(
        "--sites",
        type=Path,
        help="site limits CSV: site_id, import_limit_kw, export_limit_kw (a blank is no "
        "limit); a site not listed imports within its chargers' limits and exports nothing",
    )
    serve.add_argument(
        "--control-interval",
        type=float,
        default=LIVE_CONTROL_INTERVAL_S,
        help=f"seconds between plans (default {LIVE_CONTROL_INTERVAL_S:g})",
    )
    web = serve.add_argument_group("web API and dashboard")
    web.add_argument(
        "--api-host",
        default="127.0.0.1",
        help="address of the web API and dashboard (default loopback; HTTPS anywhere else)",
    )
    web.add_argument(
        "--api-port",
        type=int,
        default=API_PORT,
        help=f"port of the web API and dashboard (default {API_PORT}; 0: any free one)",
    )
    web.add_argument("--no-api", action="store_true", help="run without the web API")
    web.add_argument(
        "--ledger",
        type=Path,
        help="settlement ledger the API's statements read (what `v2ghub settle --live "
        "--ledger` posts; default DATA_DIR/ledger.sqlite)",
    )
    web.add_argument(
        "--show-run",
        type=Path,
        metavar="FOLDER",
        help="also show a finished `v2ghub simulate` run folder on the dashboard",
    )
    serve.add_argument("--certfile", type=Path, help="TLS certificate chain (PEM)")
    serve.add_argument("--keyfile", type=Path, help="TLS private key (PEM)")
    serve.add_argument(
        "--allow-profile-1",
        action="store_true",
        help="allow plain ws:// (OCPP security profile 1) on a non-loopback address",
    )
    add_regulation_options(serve)
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="warning",
        help="what the server logs to stderr (default warning; debug says why each plan ran)",
    )
    _clock_options(serve)
    _openadr_options(serve)

    station = commands.add_parser(
        "station",
        help="register charging stations and manage their passwords",
        description="Register charging stations. A station's password is generated, printed "
        "once and stored only as a hash: configure it in the station as its "
        "BasicAuthPassword.",
    )
    actions = station.add_subparsers(dest="station_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="register a station and print its password once")
    add.add_argument("station_id", metavar="ID", help="the station's identity (its URL path)")
    add.add_argument("--site", default="site-1", help="the site it belongs to (default site-1)")
    add.add_argument(
        "--v2x",
        action="store_true",
        help="the station may discharge (OCPP 2.1 stations; a 2.0.1 station only with this)",
    )
    add.add_argument(
        "--max-power-kw", type=float, default=11.0, help="power of one EVSE, kW (default 11)"
    )
    store_options(add)
    password = actions.add_parser(
        "password", help="give a station a new password (printed once; the old one stops working)"
    )
    password.add_argument("station_id", metavar="ID")
    store_options(password)
    listing = actions.add_parser("list", help="list registered stations")
    store_options(listing)
    _add_chargers_parser(commands)
    _add_site_parser(commands)


def _add_site_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    site = commands.add_parser(
        "site",
        help="grid events: set a site's connection limits for a while",
        description="Record a grid event for a running aggregator: a site's import and "
        "export limits (kW at its connection point) from --from until --until. `v2ghub "
        "serve` sees it within a second and re-plans; when the event ends, the site's "
        "configured limits (--sites) hold again. Give the server's --data-dir or "
        "--database-url.",
    )
    actions = site.add_subparsers(dest="site_command", required=True, metavar="ACTION")
    limit = actions.add_parser("limit", help="limit a site's import and export")
    limit.add_argument("site_id", metavar="SITE")
    limit.add_argument("--import-kw", type=float, help="import limit, kW (default: none)")
    limit.add_argument(
        "--export-kw", type=float, help="export (V2G) limit, kW (default: none; 0 stops V2G)"
    )
    limit.add_argument("--from", dest="starts_at", type=_aware_time, help="start (default: now)")
    limit.add_argument(
        "--until", dest="ends_at", type=_aware_time, help="end (default: until replaced)"
    )
    limit.add_argument("--reason", default="grid event", help="why, kept with the event")
    store_options(limit)


def _add_chargers_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    chargers = commands.add_parser(
        "chargers",
        help="simulate V2X charging stations with cars that speak OCPP to a server",
        description="Run N simulated charging stations in one process: vehicles arrive and "
        "leave, declare their needs (NotifyEVChargingNeeds, on OCPP 2.x), obey the charging "
        "profiles they get (discharging on OCPP 2.1 V2X stations, and on V2X 1.6 stations by "
        "negative limits) and send meter values. The stations (SIM0001...) are registered in "
        "the store with fresh passwords, so give the same --data-dir or --database-url as "
        "`v2ghub serve`. Ends after --duration or on Ctrl-C with a summary.",
    )
    chargers.add_argument("--count", type=int, default=10, help="stations (default 10)")
    chargers.add_argument(
        "--url", default=f"ws://127.0.0.1:{DEFAULT_PORT}", help="the server's URL (ws:// or wss://)"
    )
    store_options(chargers)
    chargers.add_argument(
        "--v201-share",
        type=float,
        default=0.25,
        help="share of the stations not speaking 1.6 that speak OCPP 2.0.1, charge-only "
        "(default 0.25)",
    )
    chargers.add_argument(
        "--v16-share",
        type=float,
        default=0.0,
        help="share of stations speaking OCPP 1.6J (default 0)",
    )
    chargers.add_argument(
        "--current-only-share",
        type=float,
        default=0.0,
        help="share of the AC OCPP 1.6 stations that take charging schedules in A only "
        "(default 0: in W)",
    )
    chargers.add_argument("--site", default="site-1", help="site of the stations (default site-1)")
    chargers.add_argument(
        "--max-power-kw", type=float, default=11.0, help="power of each station, kW (default 11)"
    )
    chargers.add_argument(
        "--meter-interval", type=float, default=10.0, help="seconds between meter values"
    )
    chargers.add_argument("--seed", type=int, default=0, help="seed of arrivals and vehicles")
    chargers.add_argument(
        "--duration",
        type=float,
        help="seconds to run, on the chargers' clock (default: until Ctrl-C)",
    )
    chargers.add_argument(
        "--ca-file", type=Path, help="certificate to trust for wss:// (the server's)"
    )
    frequency = chargers.add_mutually_exclusive_group()
    frequency.add_argument(
        "--frequency-file",
        type=Path,
        help="grid frequency CSV (columns time, frequency_hz) the stations measure in "
        "LocalFrequency mode, at the chargers' clock time (50 Hz outside the file)",
    )
    frequency.add_argument(
        "--frequency-seed",
        type=int,
        default=0,
        help="seed of the synthetic grid frequency used without --frequency-file (default 0)",
    )
    chargers.add_argument(
        "--regulation-sample-s",
        type=float,
        default=2.0,
        help="seconds between the meter samples of a station in a frequency mode (default 2)",
    )
    chargers.add_argument(
        "--regulation-report-s",
        type=float,
        default=10.0,
        help="seconds between the messages that carry those samples (default 10)",
    )
    _clock_options(chargers)


def run_live_command(
    args: argparse.Namespace, console: Console, *, web_pages: WebPages | None = None
) -> int:
    """Run ``serve``, ``station``, ``chargers`` or ``site``; the exit status. ``serve``
    starts ``web_pages`` beside the OCPP server."""
    if args.command == "station":
        return _station(args, console)
    if args.command == "serve":
        return _serve(args, console, web_pages)
    if args.command == "chargers":
        return _chargers(args, console)
    if args.command == "site":
        return _site_limit(args, console)
    raise InputError(f"unknown command {args.command!r}")


def _open_store(args: argparse.Namespace) -> Store:
    try:
        return Store.open(data_dir=args.data_dir, database_url=args.database_url)
    except ValueError as error:
        raise InputError(str(error)) from error


def _station(args: argparse.Namespace, console: Console) -> int:
    with _open_store(args) as store:
        if args.station_command == "list":
            for station in store.stations():
                seen = "never connected"
                if station.last_boot_at is not None:
                    seen = (
                        f"{station.ocpp_version}, booted {station.last_boot_at:%Y-%m-%d %H:%M} UTC"
                    )
                kind = "V2X" if station.v2x_allowed else "charge-only"
                console.print(
                    f"{station.station_id}  site {station.site_id}  "
                    f"{station.max_power_kw:g} kW  {kind}  {seen}",
                    markup=False,
                    highlight=False,
                )
            return 0
        secret = generate_password()
        try:
            if args.station_command == "add":
                store.add_station(
                    args.station_id,
                    site_id=args.site,
                    password_hash=hash_password(secret),
                    v2x_allowed=args.v2x,
                    max_power_kw=args.max_power_kw,
                )
            else:
                if store.station(args.station_id) is None:
                    raise InputError(f"station {args.station_id!r} is not registered")
                store.set_password(args.station_id, hash_password(secret))
        except ValueError as error:
            raise InputError(str(error)) from error
        console.print(
            f"station {args.station_id}: password {secret}\n"
            "(shown once: set it as the station's BasicAuthPassword; only its hash is stored)",
            markup=False,
            highlight=False,
        )
    return 0


def _site_limit(args: argparse.Namespace, console: Console) -> int:
    now = SystemClock().now()
    starts_at = args.starts_at or now
    with _open_store(args) as store:
        try:
            store.add_site_limit(
                args.site_id,
                import_limit_kw=args.import_kw,
                export_limit_kw=args.export_kw,
                starts_at=starts_at,
                ends_at=args.ends_at,
                reason=args.reason,
                at=now,
            )
        except ValueError as error:
            raise InputError(str(error)) from error

    def text(limit_kw: float | None) -> str:
        return "no limit" if limit_kw is None else f"{limit_kw:g} kW"

    until = "until replaced" if args.ends_at is None else f"until {args.ends_at.isoformat()}"
    console.print(
        f"site {args.site_id}: import {text(args.import_kw)}, export {text(args.export_kw)} "
        f"from {starts_at.isoformat()} {until} ({args.reason})",
        markup=False,
        highlight=False,
    )
    return 0


def _clock(args: argparse.Namespace) -> Clock:
    if args.clock_start is None:
        if args.clock_speed != 1.0:
            raise InputError("--clock-speed needs --clock-start")
        return SystemClock()
    try:
        return ScaledClock(args.clock_start, args.clock_speed)
    except ValueError as error:
        raise InputError(str(error)) from error


def control_settings(args: argparse.Namespace) -> ControlSettings:
    """The control loop's settings from ``serve``'s options."""
    city = city_name(args.city or DEFAULT_CITY)
    grid_shape = GridShape()
    if args.scenario is not None:
        scenario = load_scenario(args.scenario)
        city = scenario.simulation.cities[0]
        grid_shape = scenario.grid
    city = city_name(city)
    sites: tuple[LiveSite, ...] = ()
    if args.sites is not None:
        # Only the sites the file lists: any other keeps the unknown site's limits (no
        # export), as promised, whether or not its stations are registered yet.
        limits = load_sites_csv(args.sites, site_ids=(), other_sites=True)
        sites = tuple(
            LiveSite(site, float(imp), float(exp))
            for site, imp, exp in zip(
                limits.site_ids, limits.import_limit_kw, limits.export_limit_kw, strict=True
            )
        )
    return ControlSettings(
        city=city,
        sites=sites,
        planner=args.planner,
        control_interval_s=args.control_interval,
        unknown_site_import_limit_kw=math.inf,
        unknown_site_export_limit_kw=0.0,
        grid_shape=grid_shape,
    )


def _serve(args: argparse.Namespace, console: Console, web_pages: WebPages | None) -> int:
    if not is_loopback(args.host) and args.allow_profile_1 and args.certfile is None:
        console.print(
            f"warning: plain ws:// on {args.host} (security profile 1): passwords cross the "
            "network in clear",
            markup=False,
        )
    if (args.certfile is None) != (args.keyfile is None):
        raise InputError("give both --certfile and --keyfile, or neither")
    clock = _clock(args)
    if getattr(args, "openadr_vtn_url", None) and args.clock_start is not None:
        raise InputError("--openadr-vtn-url runs on the system clock: drop --clock-start")
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for noisy in ("websockets", "ocpp", "asyncio", "numba"):  # their debug is per frame
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))
    with _open_store(args) as store:
        settings = control_settings(args)
        server_settings = ServerSettings(
            host=args.host,
            port=args.port,
            certfile=args.certfile,
            keyfile=args.keyfile,
            tls_folder=args.data_dir,
            allow_profile_1_off_loopback=args.allow_profile_1,
        )
        if args.show_run is not None and not args.show_run.is_dir():
            why = "is not a run folder (give what `v2ghub simulate --out` wrote)"
            raise InputError(why, file=args.show_run)
        asyncio.run(
            _serve_until_stopped(
                store, server_settings, settings, clock, console, args=args, web_pages=web_pages
            )
        )
    return 0


async def _serve_until_stopped(
    store: Store,
    server_settings: ServerSettings,
    settings: ControlSettings,
    clock: Clock,
    console: Console,
    *,
    args: argparse.Namespace,
    web_pages: WebPages | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    planner = make_planner(settings.planner)
    warm_up(planner, settings, now=clock.now())
    async with CsmsServer(store, server_settings, clock=clock) as server:
        services = grid_services_from_args(
            args, store, clock=clock, call_station=server.call_station
        )
        control = server.control_loop(planner, settings, grid_services=services)
        stations = store.stations()
        console.print(
            f"v2ghub serve: listening on {server.url}/<station id> (ocpp2.1, ocpp2.0.1); "
            f"store {store.url}; {len(stations)} stations registered; planner "
            f"{settings.planner}, {settings.city}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        if not stations:
            console.print("register a station first: v2ghub station add ID", markup=False)
        for site in sorted({s.site_id for s in stations} - {s.site_id for s in settings.sites}):
            console.print(
                f"site {site}: no limits configured: import limited by its chargers only, "
                "no export (no V2G) until --sites gives one",
                markup=False,
            )
        async with contextlib.AsyncExitStack() as stack:
            if web_pages is not None:
                running = Running(args, store, server, control, settings)
                url = await stack.enter_async_context(web_pages(running))
                if url is not None:
                    console.print(
                        f"v2ghub serve: dashboard on {url}/ (API docs {url}/docs; a token "
                        "to log in: v2ghub token add NAME --role ROLE)",
                        markup=False,
                        highlight=False,
                        soft_wrap=True,
                    )
            ven = openadr_ven(args, store=store, clock=clock, control=control, settings=settings)
            if ven is not None:
                await stack.enter_async_context(ven)
                console.print(
                    f"v2ghub serve: OpenADR VEN {ven.settings.ven_name} polling "
                    f"{ven.settings.vtn_url}",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )
            # Everything loaded so far lives as long as the server: out of the collector's
            # sight, a full collection no longer walks it (it paused the event loop).
            gc.collect()
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
            await control.run(stop)
    console.print("v2ghub serve: stopped", markup=False)


def _chargers(args: argparse.Namespace, console: Console) -> int:
    if not args.count >= 1:
        raise InputError(f"--count must be at least 1, got {args.count}")
    clock = _clock(args)
    ssl_context = None
    if args.url.startswith("wss://"):
        ssl_context = ssl.create_default_context(
            cafile=None if args.ca_file is None else str(args.ca_file)
        )
    try:
        config = make_fleet_config(
            url=args.url.rstrip("/"),
            count=args.count,
            v201_share=args.v201_share,
            v16_share=args.v16_share,
            current_only_share=args.current_only_share,
            max_power_kw=args.max_power_kw,
            seed=args.seed,
            meter_interval_s=args.meter_interval,
            ssl_context=ssl_context,
            regulation_sample_s=args.regulation_sample_s,
            regulation_report_s=args.regulation_report_s,
            frequency_trace=(
                None if args.frequency_file is None else load_frequency_csv(args.frequency_file)
            ),
            frequency_seed=args.frequency_seed,
        )
    except ValueError as error:
        raise InputError(str(error)) from error
    with _open_store(args) as store:
        config = replace(config, stations=_register(store, config.stations, site_id=args.site))
    console.print(f"v2ghub chargers: {len(config.stations)} stations to {config.url}", markup=False)
    stats = asyncio.run(_run_fleet_until_stopped(config, clock, args.duration))
    errors = sum(stats.call_errors.values())
    console.print(
        f"sent {sum(stats.calls_sent.values()):,} requests ({stats.meter_values_sent:,} meter "
        f"values), {errors:,} CallErrors, {sum(stats.rejections.values()):,} rejections; "
        f"latency p50 {stats.latency_p50_ms:.1f} ms, p99 {stats.latency_p99_ms:.1f} ms; "
        f"{stats.reconnects} reconnects; {stats.unsent_events} events unsent"
        + (
            f"; {afrr:,} AFRRSignals, delay p50 {stats.afrr_delay_p50_s:.3f} s, "
            f"p99 {stats.afrr_delay_p99_s:.3f} s"
            if (afrr := stats.requests_received.get("AFRRSignal", 0))
            else ""
        ),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return 0


def _register(
    store: Store, stations: tuple[ChargerConfig, ...], *, site_id: str
) -> tuple[ChargerConfig, ...]:
    """Register the simulated stations (or give existing ones a new password)."""
    registered = []
    for station in stations:
        password = generate_password()
        try:
            if store.station(station.station_id) is None:
                store.add_station(
                    station.station_id,
                    site_id=site_id,
                    password_hash=hash_password(password),
                    v2x_allowed=station.v2x,
                    max_power_kw=station.max_power_kw,
                )
            else:
                store.set_password(station.station_id, hash_password(password))
        except ValueError as error:
            raise InputError(str(error)) from error
        registered.append(replace(station, password=password))
    return tuple(registered)


async def _run_fleet_until_stopped(
    config: FleetConfig, clock: Clock, duration_s: float | None
) -> FleetStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    return await run_fleet(config, clock=clock, duration_s=duration_s, stop=stop)
