"""The web API beside ``v2ghub serve``: its context (the OCPP server's and the control
loop's state, the store, the city's time zone, the gauges ``/metrics`` reads at each
scrape) and :func:`web_pages`, which serves it while ``serve`` runs, in a process of its
own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

from v2ghub.api.app import create_app
from v2ghub.api.context import ApiContext, ControlLink
from v2ghub.api.mirror import LoopSide
from v2ghub.api.web_process import WebProcess, WebProcessConfig
from v2ghub.api.web_server import WebServer, WebSettings
from v2ghub.live.commands import Running
from v2ghub.live.control import ControlLoop
from v2ghub.live.live_problem import ControlSettings
from v2ghub.live.live_state import LiveStatus
from v2ghub.live.metrics import LiveMetrics
from v2ghub.live.server import CsmsServer
from v2ghub.scenarios.catalog import pilot_cities
from v2ghub.store.database import is_in_memory
from v2ghub.store.repository import Store


def register_loop_gauges(metrics: LiveMetrics, server: CsmsServer, status: LiveStatus) -> None:
    """The gauges ``/metrics`` reads from the OCPP server and the control loop at each
    scrape (in ``serve``'s process, whichever process serves the web API)."""

    def latest_plan_s() -> float:
        return status.latest.plan_time_s if status.latest is not None else float("nan")

    def plan_age_s() -> float:
        if status.latest is None:
            return float("nan")
        return (server.clock.now() - status.latest.at).total_seconds()

    metrics.gauge(
        "v2ghub_connected_stations", "Stations connected now", lambda: len(server.stations)
    )
    metrics.gauge("v2ghub_plans", "Plans made since the server started", lambda: status.plans)
    metrics.gauge(
        "v2ghub_fallbacks",
        "Plans since start that fell back to the safe charge-only plan",
        lambda: status.fallbacks,
    )
    metrics.gauge(
        "v2ghub_control_failures",
        "Control instants that failed since start",
        lambda: status.failures,
    )
    metrics.gauge("v2ghub_last_plan_seconds", "Wall time of the last plan", latest_plan_s)
    metrics.gauge("v2ghub_last_plan_age_seconds", "Age of the last plan (loop clock)", plan_age_s)
    metrics.gauge(
        "v2ghub_plugged_vehicles",
        "Vehicles in the last plan",
        lambda: len(status.latest.vehicles) if status.latest is not None else 0,
    )


def _timezone(settings: ControlSettings) -> str:
    return pilot_cities()[settings.city].tariff().timezone


def live_context(
    store: Store,
    server: CsmsServer,
    control: ControlLoop,
    settings: ControlSettings,
    *,
    ledger_path: Path | None = None,
    run_folder: Path | None = None,
) -> ApiContext:
    """What the web API reads when it runs in ``serve``'s own process (the library's and
    the tests' way; ``serve`` runs it in a process of its own: :func:`web_pages`). Called
    on the control loop's event loop, it links the API to it (posted regulation signals,
    re-plans)."""
    status = control.status
    since = server.clock.now() - status.power_log.keep
    status.power_log.prime(store.site_power_records(since=since), since=since)
    register_loop_gauges(server.metrics, server, status)
    try:
        link = ControlLink(
            asyncio.get_running_loop(), control.trigger, grid_services=control.grid_services
        )
    except RuntimeError:  # not on an event loop: nothing to hand work to
        link = None
    return ApiContext(
        control=link,
        store=store,
        clock=server.clock,
        timezone=ZoneInfo(_timezone(settings)),
        status=status,
        connected=lambda: frozenset(server.stations),
        measured=server.measured.by_station,
        metrics=server.metrics,
        ledger_path=ledger_path,
        run_folder=run_folder,
        control_interval_s=settings.control_interval_s,
        site_limits=_site_limits(settings),
        unknown_site_limits=_unknown_site_limits(settings),
    )


def _site_limits(settings: ControlSettings) -> dict[str, tuple[float, float]]:
    return {site.site_id: (site.import_limit_kw, site.export_limit_kw) for site in settings.sites}


def _unknown_site_limits(settings: ControlSettings) -> tuple[float, float]:
    return settings.unknown_site_import_limit_kw, settings.unknown_site_export_limit_kw


@asynccontextmanager
async def web_pages(running: Running) -> AsyncIterator[str | None]:
    """Serve the web API and dashboard beside ``running`` (``serve``'s ``--api-*``,
    ``--ledger`` and ``--show-run`` options) with :func:`served_web`; their URL, or None
    with ``--no-api``."""
    args = running.args
    if args.no_api:
        yield None
        return
    web = WebSettings(
        host=args.api_host,
        port=args.api_port,
        certfile=args.certfile,
        keyfile=args.keyfile,
        tls_folder=args.data_dir,
    )
    async with served_web(
        running.store,
        running.server,
        running.control,
        running.settings,
        web,
        ledger_path=args.ledger if args.ledger is not None else args.data_dir / "ledger.sqlite",
        run_folder=args.show_run,
    ) as url:
        yield url


@asynccontextmanager
async def served_web(
    store: Store,
    server: CsmsServer,
    control: ControlLoop,
    settings: ControlSettings,
    web: WebSettings,
    *,
    ledger_path: Path | None = None,
    run_folder: Path | None = None,
) -> AsyncIterator[str]:
    """The web API and dashboard of a running OCPP server and control loop, in a process
    of their own (:mod:`v2ghub.api.web_process`), while open; their URL. Called on the
    control loop's event loop.

    A store only this process can open (SQLite in memory) keeps the API in this process,
    on a thread of its own."""
    database_url = store.engine.url.render_as_string(hide_password=False)
    if is_in_memory(database_url):
        context = live_context(
            store, server, control, settings, ledger_path=ledger_path, run_folder=run_folder
        )
        async with WebServer(create_app(context), web) as in_process:
            yield in_process.url
        return
    register_loop_gauges(server.metrics, server, control.status)
    config = WebProcessConfig(
        database_url=database_url,
        web=web,
        clock=server.clock,
        timezone=_timezone(settings),
        ledger_path=ledger_path,
        run_folder=run_folder,
        control_interval_s=settings.control_interval_s,
        site_limits=_site_limits(settings),
        unknown_site_limits=_unknown_site_limits(settings),
        power_log_keep=control.status.power_log.keep,
        log_level=logging.getLogger().getEffectiveLevel(),
    )
    side = LoopSide(
        status=control.status,
        connected=lambda: frozenset(server.stations),
        measured=server.measured.by_station,
        metrics=server.metrics,
        trigger=control.trigger,
        grid_services=control.grid_services,
    )
    async with WebProcess(config, side) as process:
        yield process.url
