"""The web API's HTTP server: uvicorn, in the same process as the OCPP server (so that the
routes read the control loop's latest instant and the stations connected now from memory)
but on its own thread and event loop: a burst of web requests then holds the chargers'
loop for one interpreter switch interval (5 ms) at most, never for a whole request, and a
burst of charger messages never holds up a dashboard.

It listens on loopback by default; anywhere else it speaks HTTPS (bearer tokens must not
cross a network in clear), with the certificate given or the same self-signed one the
OCPP server makes in the data folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from v2ghub.defaults import DATA_DIR
from v2ghub.errors import InputError
from v2ghub.live.security import is_loopback, self_signed_certificate

LOG = logging.getLogger("v2ghub.api")
STARTUP_TIMEOUT_S = 30.0
GRACEFUL_SHUTDOWN_S = 2


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    certfile: Path | None = None
    keyfile: Path | None = None
    tls_folder: Path | None = None


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: ``serve`` stops everything on a signal."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    """Serves ``app`` while open (``async with``); ``url`` is where."""

    def __init__(self, app: FastAPI, settings: WebSettings) -> None:
        self.settings = settings
        self._app = app
        self._tls = settings.certfile is not None or not is_loopback(settings.host)
        certfile, keyfile = settings.certfile, settings.keyfile
        if self._tls and (certfile is None or keyfile is None):
            certfile, keyfile = self_signed_certificate(
                settings.tls_folder or DATA_DIR, settings.host
            )
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            # Open dashboards hold a feed each: stopping waits for them this long at most.
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            access_log=False,
            lifespan="off",
            ssl_certfile=str(certfile) if self._tls and certfile else None,
            ssl_keyfile=str(keyfile) if self._tls and keyfile else None,
        )
        self._server = _QuietServer(config)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        servers = getattr(self._server, "servers", [])
        if not servers:
            raise RuntimeError("the web server is not started")
        port = servers[0].sockets[0].getsockname()[1]
        host = self.settings.host if ":" not in self.settings.host else f"[{self.settings.host}]"
        return f"{'https' if self._tls else 'http'}://{host}:{port}"

    async def __aenter__(self) -> WebServer:
        where = f"{self.settings.host}:{self.settings.port}"
        listener = socket.socket(
            socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET, socket.SOCK_STREAM
        )
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.settings.host, self.settings.port))
        except OSError as error:
            listener.close()
            raise InputError(
                f"the web API cannot listen on {where}: {error.strerror} (give --api-port, "
                "or --no-api)"
            ) from None
        self._thread = threading.Thread(
            target=self._serve, args=(listener,), name="v2ghub-web", daemon=True
        )
        self._thread.start()
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            while not self._server.started:
                if not self._thread.is_alive():
                    if self._failure is not None:
                        raise self._failure
                    raise RuntimeError(f"the web API stopped while starting on {where}")
                await asyncio.sleep(0.02)
        return self

    def _serve(self, listener: socket.socket) -> None:
        """The web thread: uvicorn on an event loop of its own until told to exit."""

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await self._server.serve(sockets=[listener])

        try:
            asyncio.run(serve())
        except BaseException as error:  # kept for the thread that started it
            self._failure = error
            LOG.exception("the web API stopped")

    async def __aexit__(self, *_: object) -> None:
        feed = getattr(self._app.state, "feed", None)
        if feed is not None and self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the web loop has just ended
                # the live feeds end now, not at their next event
                self._loop.call_soon_threadsafe(feed.close)
        self._server.should_exit = True
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
