"""The OCPP server (CSMS): stations connect over websockets, speak OCPP 2.1 or 2.0.1, and
are authenticated with their own password (security profile 1 on loopback, profile 2 with
TLS everywhere else).

A station connects to ``ws(s)://HOST:PORT/<anything>/<station id>`` offering the
subprotocol ``ocpp2.1`` or ``ocpp2.0.1`` and HTTP Basic credentials (user = station id).
Unknown stations, wrong passwords and a second connection for a station that is already
connected are refused during the handshake and logged as events; nothing is taken over.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from ocpp.exceptions import OCPPError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from v2ghub.live.clock import Clock
from v2ghub.live.control import SetpointCommand
from v2ghub.live.csms import StationConnection, answer_status, station_connection
from v2ghub.live.profiles import profile_request
from v2ghub.live.security import (
    basic_credentials,
    is_loopback,
    self_signed_certificate,
    server_tls_context,
    verify_password,
)
from v2ghub.store.records import Event, OcppVersion, Station

LOGGER = logging.getLogger("v2ghub.live")

SUBPROTOCOLS = [OcppVersion.V21.value, OcppVersion.V201.value]


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


class CsmsServer:
    """The CSMS: accepts stations, hands their messages to the store, sends them setpoints.

    Use as an async context manager; ``url`` is where stations connect.
    """

    def __init__(self, store: Any, settings: ServerSettings, *, clock: Clock) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.stations: dict[str, StationConnection] = {}
        self.replanner: Replanner | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="v2ghub-store")
        self._server: Server | None = None
        self._profile_ids = itertools.count(1)
        self._profiles: dict[tuple[str, int, str], tuple[int, bool]] = {}
        """(station, EVSE, transaction) -> (charging profile id, accepted by the station)."""
        self._tls = settings.certfile is not None or not is_loopback(settings.host)

    # --- the hub a station connection uses ------------------------------------------------

    def now(self) -> datetime:
        return self.clock.now()

    async def write(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``store.method`` in the store's single writer thread (committed on return)."""
        work = functools.partial(getattr(self.store, method), *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._writer, work)

    def replan(self, reason: str) -> None:
        if self.replanner is not None:
            self.replanner.trigger(reason)

    def transaction_ended(self, station_id: str, transaction_id: str) -> None:
        for key in [k for k in self._profiles if k[0] == station_id and k[2] == transaction_id]:
            del self._profiles[key]

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
                    folder = self.settings.tls_folder or Path("v2ghub-data")
                    certfile, keyfile = self_signed_certificate(folder, self.settings.host)
            if self._tls and certfile is not None and keyfile is not None:
                ssl_context = server_tls_context(certfile, keyfile)
        self._server = await serve(
            self._connection,
            self.settings.host,
            self.settings.port,
            subprotocols=SUBPROTOCOLS,  # type: ignore[arg-type]
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
        self._writer.shutdown(wait=True)

    # --- handshake and connection ---------------------------------------------------------

    async def _refuse(
        self, connection: ServerConnection, status: HTTPStatus, station_id: str | None, why: str
    ) -> Response:
        LOGGER.warning("connection refused (%s): %s", station_id, why)
        await self.write(
            "record_event",
            Event(at=self.now(), kind="connection refused", detail=why, station_id=station_id),
        )
        response = connection.respond(status, f"{why}\n")
        if status is HTTPStatus.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = 'Basic realm="v2ghub", charset="UTF-8"'
        return response

    async def _check_handshake(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        station_id = _station_id(request.path)
        if station_id is None:
            return await self._refuse(
                connection, HTTPStatus.NOT_FOUND, None, "no station id in the URL path"
            )
        station: Station | None = await self.write("station", station_id)
        if station is None:
            return await self._refuse(
                connection, HTTPStatus.NOT_FOUND, None, f"unknown station id {station_id!r}"
            )
        credentials = basic_credentials(request.headers.get("Authorization"))
        if credentials is None:
            return await self._refuse(
                connection, HTTPStatus.UNAUTHORIZED, station_id, "no Basic credentials"
            )
        user, password = credentials
        valid = user == station_id and await asyncio.to_thread(
            verify_password, password, station.password_hash
        )
        if not valid:
            return await self._refuse(
                connection, HTTPStatus.UNAUTHORIZED, station_id, "wrong station id or password"
            )
        if station_id in self.stations:
            return await self._refuse(
                connection,
                HTTPStatus.CONFLICT,
                station_id,
                "station is already connected; the new connection is refused",
            )
        return None

    async def _connection(self, connection: ServerConnection) -> None:
        station_id = _station_id(connection.request.path if connection.request else "")
        if station_id is None or connection.subprotocol is None:
            await connection.close(1008, "no station id or OCPP subprotocol")
            return
        version = OcppVersion(connection.subprotocol)
        if station_id in self.stations:  # two handshakes raced past the check
            await self._refuse_late(connection, station_id)
            return
        station = station_connection(
            station_id, connection, version, self, timeout_s=self.settings.call_timeout_s
        )
        self.stations[station_id] = station
        # A station that reconnects may have rebooted: its profiles are sent afresh.
        for key in [key for key in self._profiles if key[0] == station_id]:
            del self._profiles[key]
        LOGGER.info("%s connected (%s)", station_id, version.value)
        await self.write(
            "record_event",
            Event(at=self.now(), kind="connected", detail=version.value, station_id=station_id),
        )
        try:
            await station.start()  # type: ignore[attr-defined]
        except ConnectionClosed:
            pass
        finally:
            if self.stations.get(station_id) is station:
                del self.stations[station_id]
            await self.write(
                "record_event",
                Event(at=self.now(), kind="disconnected", detail="", station_id=station_id),
            )
            self.replan(f"{station_id} disconnected")

    async def _refuse_late(self, connection: ServerConnection, station_id: str) -> None:
        why = "station is already connected; the new connection is refused"
        LOGGER.warning("connection refused (%s): %s", station_id, why)
        await self.write(
            "record_event",
            Event(at=self.now(), kind="connection refused", detail=why, station_id=station_id),
        )
        await connection.close(1008, "already connected")

    # --- requests to stations -------------------------------------------------------------

    async def call_station(self, station_id: str, payload: Any) -> str:
        """Send ``payload`` to a station; the answer's status, or why there is none.

        Returns ``Accepted``/``Rejected``/... as the station answered, ``CallError: ...``,
        ``Timeout`` or ``Offline``; it never raises for a station's failure.
        """
        station = self.stations.get(station_id)
        if station is None:
            return "Offline"
        try:
            result = await station.request(payload)
        except OCPPError as error:
            return f"CallError: {error.code}: {error.description}"
        except TimeoutError:
            return "Timeout"
        except ConnectionClosed:
            return "Offline"
        return answer_status(result)

    async def send_setpoint(self, command: SetpointCommand) -> str:
        """Send one EVSE its setpoint; the station's answer (see :meth:`call_station`).

        On OCPP 2.1 the first command of a transaction installs a dynamic charging profile
        (SetChargingProfile) and later ones update it (UpdateDynamicSchedule); should an
        update be refused, the next command installs the profile again. OCPP 2.0.1 stations
        get a charge limit profile each time.
        """
        profile_id, installed = self._profiles.get(command.key, (0, False))
        if not profile_id:
            profile_id = next(self._profile_ids)
        request = profile_request(
            command, profile_id=profile_id, now=self.now(), installed=installed
        )
        status = await self.call_station(command.station_id, request)
        self._profiles[command.key] = (profile_id, status == "Accepted")
        return status


def _station_id(path: str) -> str | None:
    """The station id: the last segment of the URL path (percent-decoded)."""
    segment = urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1]
    station_id = unquote(segment)
    return station_id or None
