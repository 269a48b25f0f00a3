"""The live aggregator's commands: ``v2ghub serve``, ``station``, ``chargers`` and ``site``.

Their options are parsed by :mod:`v2ghub.live.command_line`; this module runs them.
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

from rich.console import Console

from v2ghub.errors import InputError
from v2ghub.live.chargers import (
    ChargerConfig,
    FleetConfig,
    FleetStats,
    make_fleet_config,
    run_fleet,
)
from v2ghub.live.clock import Clock, ScaledClock, SystemClock
from v2ghub.live.command_line import DEFAULT_CITY
from v2ghub.live.control import ControlLoop
from v2ghub.live.live_problem import ControlSettings, LiveSite, warm_up
from v2ghub.live.openadr_ven import openadr_ven
from v2ghub.live.regulation_options import grid_services_from_args
from v2ghub.live.security import generate_password, hash_password, is_loopback
from v2ghub.live.server import CsmsServer, ServerSettings
from v2ghub.planning import make_planner
from v2ghub.scenarios.catalog import city_name
from v2ghub.scenarios.config import GridShape, load_scenario
from v2ghub.scenarios.signals_csv import load_frequency_csv
from v2ghub.scenarios.sites_csv import load_sites_csv
from v2ghub.store.database import StorageError
from v2ghub.store.repository import Store

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


def run_live_command(
    args: argparse.Namespace, console: Console, *, web_pages: WebPages | None = None
) -> int:
    """Run ``serve``, ``station``, ``chargers`` or ``site``; the exit status. ``serve``
    starts ``web_pages`` beside the OCPP server.

    A store that cannot take a write (a full or read-only disk) is one line, as bad input
    is: the write was rolled back whole, so nothing is half-written."""
    try:
        if args.command == "station":
            return _station(args, console)
        if args.command == "serve":
            return _serve(args, console, web_pages)
        if args.command == "chargers":
            return _chargers(args, console)
        if args.command == "site":
            return _site_limit(args, console)
    except StorageError as error:
        raise InputError(str(error)) from None
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


def serve_settings(args: argparse.Namespace) -> ServerSettings:
    """The OCPP server's settings from ``serve``'s options."""
    settings = ServerSettings(
        host=args.host,
        port=args.port,
        certfile=args.certfile,
        keyfile=args.keyfile,
        tls_folder=args.data_dir,
        allow_profile_1_off_loopback=args.allow_profile_1,
    )
    attempts = args.failed_attempts_per_address
    if attempts is None:
        return settings
    if attempts < 0:
        raise InputError(f"--failed-attempts-per-address must be >= 0, got {attempts}")
    return replace(
        settings,
        failed_attempts_burst=attempts or None,
        failed_attempts_per_minute=float(attempts or 1),
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
        server_settings = serve_settings(args)
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
            f"v2ghub serve: listening on {server.url}/<station id> (ocpp2.1, ocpp2.0.1, "
            "ocpp1.6); "
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
