"""The OCPP server (CSMS): stations connect over websockets, speak OCPP 2.1, 2.0.1 or 1.6J,
and are authenticated with their own password (security profile 1 on loopback, profile 2
with TLS everywhere else, for 1.6 as its security whitepaper has it).

A station connects to ``ws(s)://HOST:PORT/<anything>/<station id>`` offering the
subprotocol ``ocpp2.1``, ``ocpp2.0.1`` or ``ocpp1.6`` and HTTP Basic credentials (user =
station id).
Unknown stations, wrong passwords and a second connection for a station that is already
connected are refused during the handshake and logged as events; nothing is taken over.
Password checks are bounded (:mod:`v2ghub.live.password_checks`): an address that failed
too often is refused at once, without a check. What a station makes the server write to
the event log and the program's log is rate-limited per station
(:class:`~v2ghub.live.write_limits.StationBudget`); a full or read-only store is reported
once a minute (:class:`~v2ghub.live.write_limits.StorageAlarm`), and the messages it could
not take are refused so that stations send them again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import zlib
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import Generic, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from ocpp.exceptions import OCPPError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from v2ghub.defaults import DATA_DIR
from v2ghub.live.clock import Clock
from v2ghub.live.control import ControlLoop, SetpointCommand
from v2ghub.live.csms import StationConnection, answer_outcome, station_connection
from v2ghub.live.csms16 import Station16
from v2ghub.live.grid_services import GridServices
from v2ghub.live.live_problem import ControlSettings
from v2ghub.live.live_state import MeasuredPower
from v2ghub.live.metrics import LiveMetrics
from v2ghub.live.ocpp_adapter import NotStoredError
from v2ghub.live.outcomes import OFFLINE, SendOutcome, SendStatus
from v2ghub.live.password_checks import (
    FAILED_ATTEMPTS_BURST,
    FAILED_ATTEMPTS_PER_MINUTE,
    PasswordChecks,
    default_concurrent_checks,
)
from v2ghub.live.profiles import profile_request
from v2ghub.live.security import (
    basic_credentials,
    generate_password,
    hash_password,
    is_loopback,
    self_signed_certificate,
    server_tls_context,
)
from v2ghub.live.store_seam import LiveStore
from v2ghub.live.write_limits import StationBudget, StorageAlarm
from v2ghub.model.problem import Planner
from v2ghub.store.database import StorageError
from v2ghub.store.records import (
    Event,
    EventKind,
    OcppVersion,
    Station,
    StatusReport,
    StoredEvent,
    TransactionEventRecord,
)

LOGGER = logging.getLogger("v2ghub.live")

REFUSAL_EVENT_INTERVAL_S = 60.0
RETRY_AFTER_S = 60
"""What an address refused for too many failed attempts is told to wait (s)."""
MAX_GROUP = 500
"""TransactionEvents committed together at most (a group commit)."""
PING_TIMEOUT_S = 5.0
REGISTERED_MAX_AGE_S = 30.0
"""How long the registered stations read for the 1.6 default profiles are reused."""
SUBPROTOCOLS = [Subprotocol(version.value) for version in OcppVersion]
STATION_KINDS: dict[OcppVersion, type[StationConnection]] = {OcppVersion.V16: Station16}
"""The connection class of the versions :mod:`v2ghub.live.csms` does not define itself."""

T = TypeVar("T")


Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """Work that arrives while the store's writer is busy is done together, in one
    database transaction (``work`` takes the items and gives one result each); each
    caller gets its result once that transaction is committed."""

    def __init__(
        self, writer: ThreadPoolExecutor, work: Callable[[list[Item]], list[Result]]
    ) -> None:
        self._writer = writer
        self._work = work
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._committer: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        done: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit())
        return await done

    async def _commit(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
            items = [item for item, _ in group]
            try:
                results = await loop.run_in_executor(self._writer, self._work, items)
            except Exception as error:  # the whole group failed: each caller hears it
                for _, done in group:
                    if not done.done():
                        done.set_exception(error)
                continue
            for (_, done), result in zip(group, results, strict=True):
                if not done.done():
                    done.set_result(result)


class Replanner(Protocol):
    def trigger(self, reason: str) -> None: ...


@dataclass(frozen=True)
class ServerSettings:
    """Where and how the server listens."""

    host: str = "127.0.0.1"
    port: int = 9000
    certfile: Path | None = None
    keyfile: Path | None = None
    tls_folder: Path | None = None
    """Where a self-signed certificate is made when TLS is needed and none is given."""
    allow_profile_1_off_loopback: bool = False
    """Plain ``ws://`` on a non-loopback address (security profile 1): only when asked."""
    call_timeout_s: float = 30.0
    """How long a station may take to answer a request."""
    max_frame_bytes: int = 256 * 1024
    password_checks_at_once: int | None = field(default_factory=default_concurrent_checks)
    """Password hashes computed at once (one per core); ``None``: no bound."""
    failed_attempts_burst: int | None = FAILED_ATTEMPTS_BURST
    """Failed password attempts an address may make at once; ``None``: no limit."""
    failed_attempts_per_minute: float = FAILED_ATTEMPTS_PER_MINUTE
    """...and then each minute."""


class CsmsServer:
    """The CSMS: accepts stations, hands their messages to the store, sends them setpoints.

    Use as an async context manager; ``url`` is where stations connect.
    """

    def __init__(
        self,
        store: LiveStore,
        settings: ServerSettings,
        *,
        clock: Clock,
        metrics: LiveMetrics | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.metrics = metrics if metrics is not None else LiveMetrics()
        self.measured = MeasuredPower()
        """The latest metered power per EVSE (for the web API)."""
        self.stations: dict[str, StationConnection] = {}
        self.replanner: Replanner | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="v2ghub-store")
        self._server: Server | None = None
        self._installed: dict[str, set[tuple[int, str]]] = {}
        """Per station, the (EVSE, transaction) whose dynamic profile it accepted."""
        self._refusals: dict[str, tuple[float, int]] = {}
        """When each kind of refused handshake was last logged, and how many since."""
        self._sockets: dict[str, ServerConnection] = {}
        self._events: GroupCommit[TransactionEventRecord, StoredEvent] = GroupCommit(
            self._writer, store.transaction_events
        )
        self._statuses: GroupCommit[StatusReport, None] = GroupCommit(
            self._writer, store.set_evse_statuses
        )
        self._decoy_hash = hash_password(generate_password())
        self.passwords = PasswordChecks(
            concurrent=settings.password_checks_at_once,
            failed_burst=settings.failed_attempts_burst,
            failed_per_minute=settings.failed_attempts_per_minute,
        )
        self.budget = StationBudget()
        """What each station may make the server write (event rows, log lines)."""
        self.storage_alarm = StorageAlarm()
        self._tls = settings.certfile is not None or not is_loopback(settings.host)
        self._control_settings: ControlSettings | None = None
        self._stations_read: tuple[float, list[Station]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- the hub a station connection uses ------------------------------------------------

    def now(self) -> datetime:
        return self.clock.now()

    async def write(self, work: Callable[[LiveStore], T], /) -> T:
        """Run ``work(store)`` in the store's single writer thread (committed on return)
        and return its result; :class:`~v2ghub.live.ocpp_adapter.NotStoredError` when the
        storage cannot take it (reported once a minute)."""
        return await self._not_stored_if_full(self._in_writer(work))

    async def _in_writer(self, work: Callable[[LiveStore], T], /) -> T:
        store = self.store
        return await asyncio.get_running_loop().run_in_executor(self._writer, work, store)

    async def _not_stored_if_full(self, writing: Awaitable[T], /) -> T:
        try:
            return await writing
        except StorageError as error:
            self.storage_refused(error)
            raise NotStoredError(error) from None

    async def store_transaction_event(self, event: TransactionEventRecord) -> StoredEvent:
        """Store a TransactionEvent in the writer thread; what became of it.

        TransactionEvents, the bulk of the traffic, are group-committed: those that arrive
        while the writer is busy are stored together in one database transaction, and each
        is answered once that transaction is committed.
        """
        return await self._not_stored_if_full(self._events.submit(event))

    async def store_status(self, station_id: str, evse_id: int, status: str, at: datetime) -> None:
        """Keep an EVSE's status (StatusNotification), group-committed as TransactionEvents
        are: a plan that changes a thousand stations' states costs one commit, not a
        thousand."""
        await self._not_stored_if_full(
            self._statuses.submit(StatusReport(station_id, evse_id, status, at))
        )

    def replan(self, reason: str) -> None:
        if self.replanner is not None:
            self.replanner.trigger(reason)

    async def log_event(self, event: Event, /) -> None:
        """Keep ``event`` in the event log, within its station's budget (events of no
        station are rare and kept); a storage that cannot take it is reported once a
        minute, never raised."""
        if event.station_id is not None and not self.budget.allow(event.station_id):
            return
        try:
            await self._in_writer(lambda store: store.record_event(event))
        except StorageError as error:
            self.storage_refused(error)

    def may_log(self, station_id: str, /) -> bool:
        """Whether a log line about ``station_id`` may be written now (its budget)."""
        return self.budget.allow(station_id)

    def storage_refused(self, error: StorageError, /) -> None:
        """A write was refused by the storage: said once a minute, not once a message."""
        self.storage_alarm.note(error)

    def spawn(self, work: Awaitable[None], /) -> None:
        """Run ``work`` beside the connections; a failure is logged."""

        async def run() -> None:
            try:
                await work
            except Exception:
                LOGGER.exception("a request to a station failed")

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def profile_id(self, evse_id: int, transaction_id: str) -> int:
        return profile_id(evse_id, transaction_id)

    async def _registered(self) -> list[Station]:
        """The registered stations, read at most once every
        :data:`REGISTERED_MAX_AGE_S` (a thousand stations booting at once would otherwise
        read them a thousand times)."""
        now_s = time.monotonic()
        if self._stations_read is None or now_s - self._stations_read[0] > REGISTERED_MAX_AGE_S:
            self._stations_read = (now_s, await asyncio.to_thread(self.store.stations))
        return self._stations_read[1]

    async def fallback_limit_kw(self, station_id: str, connectors: int) -> float:
        """What each connector of an OCPP 1.6 station may draw on its own (its
        TxDefaultProfile): its site's import limit shared by every connector registered at
        the site, never more than the station's power; the station's power when the site
        has no limit."""
        stations = await self._registered()
        if all(s.station_id != station_id for s in stations):  # registered since: read again
            self._stations_read = None
            stations = await self._registered()
        station = next((s for s in stations if s.station_id == station_id), None)
        if station is None:
            return 0.0
        settings = self._control_settings
        site_limit_kw = math.inf  # no control loop (a test's server): no site limit known
        if settings is not None:
            limits = {site.site_id: site.import_limit_kw for site in settings.sites}
            site_limit_kw = limits.get(station.site_id, settings.unknown_site_import_limit_kw)
        grid = await asyncio.to_thread(self.store.site_limits, self.now())
        if station.site_id in grid:
            site_limit_kw = min(site_limit_kw, grid[station.site_id][0])
        if math.isinf(site_limit_kw):
            return station.max_power_kw
        sharing = sum(1 for s in stations if s.site_id == station.site_id) * max(connectors, 1)
        return max(0.0, min(station.max_power_kw, site_limit_kw / sharing))

    def control_loop(
        self,
        planner: Planner,
        settings: ControlSettings,
        *,
        grid_services: GridServices | None = None,
    ) -> ControlLoop:
        """The control loop that plans with ``planner`` and sends through this server, and
        that this server asks to re-plan on station events (run it with ``run(stop)``);
        with ``grid_services``, it follows regulation and keeps DR baselines."""
        control = ControlLoop(
            store=self.store,
            planner=planner,
            settings=settings,
            clock=self.clock,
            send=self.send_setpoint,
            measured=self.measured.by_station,
            grid_services=grid_services,
            storage_alarm=self.storage_alarm,
        )
        self.replanner = control
        self._control_settings = settings
        return control

    def transaction_ended(self, station_id: str, transaction_id: str) -> None:
        installed = self._installed.get(station_id, set())
        for key in [key for key in installed if key[1] == transaction_id]:
            installed.discard(key)

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the server is not started")
        port = next(iter(self._server.sockets)).getsockname()[1]
        host = self.settings.host if ":" not in self.settings.host else f"[{self.settings.host}]"
        return f"{'wss' if self._tls else 'ws'}://{host}:{port}"

    async def __aenter__(self) -> CsmsServer:
        ssl_context = None
        if self._tls:
            certfile, keyfile = self.settings.certfile, self.settings.keyfile
            if certfile is None or keyfile is None:
                if self.settings.allow_profile_1_off_loopback:
                    self._tls = False
                else:
                    folder = self.settings.tls_folder or DATA_DIR
                    certfile, keyfile = self_signed_certificate(folder, self.settings.host)
            if self._tls and certfile is not None and keyfile is not None:
                ssl_context = server_tls_context(certfile, keyfile)
        self._server = await serve(
            self._connection,
            self.settings.host,
            self.settings.port,
            subprotocols=SUBPROTOCOLS,
            process_request=self._check_handshake,
            ssl=ssl_context,
            max_size=self.settings.max_frame_bytes,
            ping_interval=60,
            ping_timeout=60,
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.passwords.close()
        self._writer.shutdown(wait=True)

    # --- handshake and connection ---------------------------------------------------------

    async def _note_refusal(self, station_id: str | None, why: str) -> None:
        """Log a refused handshake and keep it as an event, at most once a minute per
        station and reason (unknown ids, and addresses that failed too often, share one):
        a flood of refusals can flood neither the database nor the log."""
        key = f"{station_id}\n{why}" if station_id is not None else why.split(" '", maxsplit=1)[0]
        now_s = time.monotonic()
        last_s, count = self._refusals.get(key, (None, 0))
        if last_s is not None and now_s - last_s < REFUSAL_EVENT_INTERVAL_S:
            self._refusals[key] = (last_s, count + 1)
            return
        self._refusals[key] = (now_s, 0)
        more = f" ({count} more like it since the last such line)" if count else ""
        LOGGER.warning("connection refused (%s): %s%s", station_id, why, more)
        await self.log_event(Event(self.now(), EventKind.CONNECTION_REFUSED, why, station_id))

    async def _refuse(
        self, connection: ServerConnection, status: HTTPStatus, station_id: str | None, why: str
    ) -> Response:
        await self._note_refusal(station_id, why)
        response = connection.respond(status, f"{status.phrase}\n")
        if status is HTTPStatus.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = 'Basic realm="v2ghub", charset="UTF-8"'
        if status is HTTPStatus.TOO_MANY_REQUESTS:
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    async def _check_handshake(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        station_id = _station_id(request.path)
        if station_id is None:
            return await self._refuse(
                connection, HTTPStatus.NOT_FOUND, None, "no station id in the URL path"
            )
        address = _address(connection)
        if not self.passwords.may_try(address):
            return await self._refuse(
                connection,
                HTTPStatus.TOO_MANY_REQUESTS,
                None,
                f"too many failed password attempts from {address!r}: refused unchecked",
            )
        return await self._check_credentials(connection, request, station_id, address)

    async def _check_credentials(
        self, connection: ServerConnection, request: Request, station_id: str, address: str
    ) -> Response | None:
        credentials = basic_credentials(request.headers.get("Authorization"))
        station: Station | None = await asyncio.to_thread(self.store.station, station_id)
        # An unknown id costs the same check and gets the same answer as a wrong password,
        # so that station ids cannot be probed.
        stored_hash = self._decoy_hash if station is None else station.password_hash
        user, password = credentials or ("", "")
        valid = await self.passwords.verify(address, password, stored_hash)
        if station is not None and credentials is not None and valid and user == station_id:
            self.passwords.succeeded(address)
        if station is None:
            return await self._refuse(
                connection, HTTPStatus.UNAUTHORIZED, None, f"unknown station id {station_id[:48]!r}"
            )
        if credentials is None:
            return await self._refuse(
                connection, HTTPStatus.UNAUTHORIZED, station_id, "no Basic credentials"
            )
        if not valid or user != station_id:
            return await self._refuse(
                connection, HTTPStatus.UNAUTHORIZED, station_id, "wrong station id or password"
            )
        if station_id in self.stations and await self._answers(station_id):
            return await self._refuse(
                connection,
                HTTPStatus.CONFLICT,
                station_id,
                "station is already connected; the new connection is refused",
            )
        return None

    async def _answers(self, station_id: str) -> bool:
        """Whether the station's current connection still answers a ping; one that does
        not (a network outage left it half-open) is closed and logged."""
        socket = self._sockets.get(station_id)
        if socket is None:
            return True
        try:
            pong = await socket.ping()
            await asyncio.wait_for(pong, PING_TIMEOUT_S)
        except (TimeoutError, ConnectionClosed):
            why = f"the old connection did not answer a ping in {PING_TIMEOUT_S:g} s: closed"
            LOGGER.warning("%s: %s", station_id, why)
            await self.log_event(Event(self.now(), EventKind.STALE_CONNECTION, why, station_id))
            await socket.close(1001, "replaced after it stopped answering")
            with suppress(TimeoutError):
                await asyncio.wait_for(self._gone(station_id), PING_TIMEOUT_S)
            return False
        return True

    async def _gone(self, station_id: str) -> None:
        while station_id in self.stations:
            await asyncio.sleep(0.05)

    async def _connection(self, connection: ServerConnection) -> None:
        station_id = _station_id(connection.request.path if connection.request else "")
        if station_id is None or connection.subprotocol is None:
            await connection.close(1008, "no station id or OCPP subprotocol")
            return
        version = OcppVersion(connection.subprotocol)
        if station_id in self.stations:  # two handshakes raced past the check
            await self._note_refusal(
                station_id, "station is already connected; the new connection is refused"
            )
            await connection.close(1008, "already connected")
            return
        station = station_connection(
            station_id,
            connection,
            version,
            self,
            timeout_s=self.settings.call_timeout_s,
            kinds=STATION_KINDS,
        )
        self.stations[station_id] = station
        self._sockets[station_id] = connection
        # A station that reconnects may have rebooted: its profiles are sent afresh (with
        # the same ids, so that a profile it kept is replaced, never doubled).
        self._installed[station_id] = set()
        if self.may_log(station_id):
            LOGGER.info("%s connected (%s)", station_id, version.value)
        try:
            await self.log_event(Event(self.now(), EventKind.CONNECTED, version.value, station_id))
            await station.start()
        except ConnectionClosed:
            pass
        finally:
            if self.stations.get(station_id) is station:
                del self.stations[station_id]
                del self._sockets[station_id]
                self.measured.disconnected(station_id)
            with suppress(Exception):  # the station is gone either way
                await self.log_event(Event(self.now(), EventKind.DISCONNECTED, "", station_id))
            self.replan(f"{station_id} disconnected")

    # --- requests to stations -------------------------------------------------------------

    async def call_station(
        self, station_id: str, payload: object, *, validated: bool = False
    ) -> SendOutcome:
        """Send ``payload`` to a station; the answer, or why there is none.

        The outcome is ``Accepted``/``Rejected`` as the station answered, a CallError, a
        timeout or ``Offline``; it never raises for a station's failure. ``validated``: the
        caller checked the payload against its schema already (a broadcast checks its one
        payload once, not once per station), and the answer is not checked either.
        """
        station = self.stations.get(station_id)
        if station is None:
            return OFFLINE
        try:
            result = await station.request(payload, validated=validated)
        except OCPPError as error:
            return SendOutcome(SendStatus.CALL_ERROR, f"{error.code}: {error.description}")
        except TimeoutError:
            return SendOutcome(SendStatus.TIMEOUT)
        except ConnectionClosed:
            return OFFLINE
        except (TypeError, ValueError) as error:  # an unchecked answer that is not one
            return SendOutcome(SendStatus.ERROR, f"{type(error).__name__}: {error}")
        return answer_outcome(result)

    async def send_setpoint(self, command: SetpointCommand) -> SendOutcome:
        """Send one EVSE its setpoint; the station's answer (see :meth:`call_station`).

        On OCPP 2.1 the first command of a transaction installs a dynamic charging profile
        (SetChargingProfile) and later ones update it (UpdateDynamicSchedule); should an
        update be refused, the next command installs the profile again. OCPP 2.0.1 stations
        get a charge limit profile each time. The profile id follows from the EVSE and the
        transaction, so a profile sent again (after a reconnect or a restart of the server)
        replaces the station's, never stands beside it. The payload is built for the OCPP
        version the station is connected with now.
        """
        station = self.stations.get(command.station_id)
        if station is None:
            return OFFLINE
        if station.version is not command.ocpp_version:
            command = replace(command, ocpp_version=station.version)
        key = (command.evse_id, command.transaction_id)
        installed = self._installed.setdefault(command.station_id, set())
        number = profile_id(command.evse_id, command.transaction_id)
        try:
            request: object = (
                station.setpoint_request(command, profile_id=number, now=self.now())
                if isinstance(station, Station16)
                else profile_request(
                    command, profile_id=number, now=self.now(), installed=key in installed
                )
            )
        except ValueError as error:  # nothing sent: the command does not fit the station
            return SendOutcome(SendStatus.NOT_SENT, str(error))
        outcome = await self.call_station(command.station_id, request)
        self.metrics.setpoints.labels(status=outcome.status.value).inc()
        if self.stations.get(command.station_id) is not station:
            return outcome  # reconnected meanwhile: the new connection starts afresh
        if outcome.accepted and command.regulation is None:
            installed.add(key)
            if isinstance(station, Station16):
                self.spawn(station.verify(command))
        else:  # refused, or a frequency-mode profile (an update cannot leave that mode)
            installed.discard(key)
        return outcome


def profile_id(evse_id: int, transaction_id: str) -> int:
    """The charging profile id of a transaction's profile: the same every time (positive,
    32 bits), so that sending it again replaces it."""
    return zlib.crc32(f"{evse_id}/{transaction_id}".encode()) % (2**31 - 1) + 1


def _address(connection: ServerConnection) -> str:
    """The client's address (IP), what its failed password attempts are counted by."""
    remote = connection.remote_address
    return str(remote[0]) if isinstance(remote, tuple) and remote else str(remote)


def _station_id(path: str) -> str | None:
    """The station id: the last segment of the URL path (percent-decoded)."""
    segment = urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1]
    station_id = unquote(segment)
    return station_id or None
