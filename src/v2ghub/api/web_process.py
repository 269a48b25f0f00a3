"""The web API and dashboard of ``v2ghub serve`` in a process of their own.

In the same process, the web API shared the interpreter with the chargers' event loop:
every request, feed snapshot and JSON encoding held the loop for its interpreter switches,
and the chargers' tail latency grew with the readers (1.8 times the OCPP p99 with 8
requests a second and 20 live feeds, ``benchmarks/bench_api.py``). In a process of its
own it runs on its own interpreter and, niced (:data:`WEB_NICENESS`), takes the CPU the
chargers leave: the stations come first, the dashboard second.

The web process opens the same store (SQLite file or PostgreSQL: every write goes there,
and the control loop sees a grid event within a second as before) and reads the loop's
memory through a copy kept over a pipe (:mod:`v2ghub.api.mirror`). It ends when ``serve``
closes the pipe, or when ``serve``'s process dies (the pipe's end of file).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from zoneinfo import ZoneInfo

from v2ghub.api.mirror import LoopSide, Mirror, MirroredMetrics, MirrorPublisher, RemoteControl
from v2ghub.api.web_server import STARTUP_TIMEOUT_S, WebSettings
from v2ghub.errors import InputError
from v2ghub.live.clock import Clock
from v2ghub.live.live_state import LiveStatus, SitePowerLog

LOG = logging.getLogger("v2ghub.api")

WEB_NICENESS = 10
"""How much lower the web process's CPU priority is than ``serve``'s (``nice``): on a busy
machine the chargers' messages and setpoints go first."""
SPAWN_TIMEOUT_S = STARTUP_TIMEOUT_S + 30.0
"""How long ``serve`` waits for the web process to listen (its imports included)."""
STOP_TIMEOUT_S = 5.0
"""How long ``serve`` waits for the web process to end before ending it."""


@dataclass(frozen=True)
class WebProcessConfig:
    """What the web process needs to serve ``serve``'s API (all of it picklable)."""

    database_url: str
    """The store's URL, password included."""
    web: WebSettings
    clock: Clock
    timezone: str
    ledger_path: Path | None = None
    run_folder: Path | None = None
    control_interval_s: float = 60.0
    site_limits: dict[str, tuple[float, float]] = field(default_factory=dict)
    unknown_site_limits: tuple[float, float] = (float("inf"), 0.0)
    power_log_keep: timedelta = timedelta(hours=26)
    log_level: int = logging.WARNING
    niceness: int = WEB_NICENESS


@dataclass(frozen=True)
class Started:
    url: str


@dataclass(frozen=True)
class Failed:
    reason: str
    """One line: why the web API could not start."""


def run_web_process(config: WebProcessConfig, connection: Connection) -> None:
    """The web process's entry point: serve until ``serve`` closes ``connection``.

    A Ctrl-C at the terminal reaches both processes: this one leaves it to ``serve``,
    which stops it in order (its feeds closed, its requests answered)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(config.niceness)
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        asyncio.run(_serve(config, connection))
    except InputError as error:
        _tell(connection, Failed(str(error)))
    except Exception as error:
        LOG.exception("the web API stopped")
        _tell(connection, Failed(f"the web API stopped: {type(error).__name__}: {error}"))


def _tell(connection: Connection, message: Started | Failed) -> None:
    with contextlib.suppress(OSError):
        connection.send(message)


async def _serve(config: WebProcessConfig, connection: Connection) -> None:
    # Imported here: the parent never needs FastAPI's app for this process's sake.
    from v2ghub.api.app import create_app  # noqa: PLC0415
    from v2ghub.api.context import ApiContext  # noqa: PLC0415
    from v2ghub.api.web_server import WebServer  # noqa: PLC0415
    from v2ghub.store.repository import Store  # noqa: PLC0415

    store = Store.open(database_url=config.database_url)
    try:
        mirror = Mirror(status=LiveStatus(power_log=SitePowerLog(keep=config.power_log_keep)))
        since = config.clock.now() - config.power_log_keep
        records = store.site_power_records(since=since)
        mirror.status.power_log.prime(records, since=since)
        mirror.primed_until = max((row.at for row in records), default=None)
        api = ApiContext(
            store=store,
            clock=config.clock,
            timezone=ZoneInfo(config.timezone),
            status=mirror.status,
            connected=lambda: mirror.connected,
            measured=lambda: mirror.measured_kw,
            metrics=MirroredMetrics(mirror),
            ledger_path=config.ledger_path,
            run_folder=config.run_folder,
            control_interval_s=config.control_interval_s,
            site_limits=dict(config.site_limits),
            unknown_site_limits=config.unknown_site_limits,
            control=RemoteControl(connection, mirror),
        )
        loop = asyncio.get_running_loop()
        ended = asyncio.Event()

        def serve_ended() -> None:  # on the mirror's thread
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(ended.set)

        async with WebServer(create_app(api), config.web) as server:
            _tell(connection, Started(server.url))
            mirror.follow(connection, serve_ended)
            await ended.wait()
    finally:
        store.close()


class WebProcess:
    """Runs the web process while open (``async with``) and keeps its copy of the loop:
    ``url`` is where it listens. Raises :class:`InputError` with its one line if it cannot
    start (a port in use, a bad certificate)."""

    def __init__(self, config: WebProcessConfig, side: LoopSide) -> None:
        self.config = config
        self.url = ""
        self._side = side
        self._process: multiprocessing.process.BaseProcess | None = None
        self._connection: Connection | None = None
        self._publishing: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WebProcess:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=True)
        publisher = MirrorPublisher(ours, self._side)
        process = context.Process(
            target=run_web_process, args=(self.config, theirs), name="v2ghub-web", daemon=True
        )
        process.start()
        theirs.close()
        self._process, self._connection = process, ours
        try:
            message = await asyncio.to_thread(_first_message, ours, process)
        except BaseException:
            await self._stop()
            raise
        if isinstance(message, Failed):
            await self._stop()
            raise InputError(message.reason)
        self.url = message.url
        # The web process counts its own requests; this one sends the OCPP side's.
        self._side.metrics.drop_web()
        publisher.send()  # the first copy before anyone is told the URL
        self._publishing = asyncio.create_task(publisher.run(), name="v2ghub-web-mirror")
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        if self._publishing is not None:
            self._publishing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publishing
            self._publishing = None
        if self._connection is not None:
            self._connection.close()  # the web process sees the end of file and stops
            self._connection = None
        process = self._process
        if process is not None:
            await asyncio.to_thread(process.join, STOP_TIMEOUT_S)
            if process.is_alive():
                LOG.warning("the web API's process did not stop in %.0f s: ended", STOP_TIMEOUT_S)
                process.kill()
                await asyncio.to_thread(process.join, STOP_TIMEOUT_S)
            self._process = None


def _first_message(
    connection: Connection, process: multiprocessing.process.BaseProcess
) -> Started | Failed:
    """The web process's first word: where it listens, or why it could not."""
    waited_s = 0.0
    while waited_s < SPAWN_TIMEOUT_S:
        if connection.poll(0.1):
            try:
                message = connection.recv()
            except EOFError:
                break
            if isinstance(message, Started | Failed):
                return message
        elif not process.is_alive():
            break
        waited_s += 0.1
    if process.is_alive():
        return Failed(f"the web API did not start within {SPAWN_TIMEOUT_S:.0f} s")
    return Failed(f"the web API's process ended at start (exit code {process.exitcode})")
