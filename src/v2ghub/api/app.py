"""The web API application: :func:`create_app` over an :class:`ApiContext`.

Paths are versioned (``/api/v1/...``); the OpenAPI schema is at ``/openapi.json`` and its
page at ``/docs``. Every error body is ``{"detail": text, "field": name or null}``: a 422
names the first field that was wrong.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from v2ghub import __version__
from v2ghub.api import (
    dashboard,
    feed,
    fleet,
    grid_events,
    health,
    history,
    money,
    openadr,
    regulation,
    run_view,
    sessions,
    stations,
)
from v2ghub.api.context import ApiContext

DESCRIPTION = """The live aggregator's web API.

Authenticate with `Authorization: Bearer <token>` (make one with
`v2ghub token add NAME --role admin|operator|grid|owner`). Power is kW with + for
charging and - for discharging; energy kWh; times ISO 8601 with the city's UTC offset;
money exact decimal strings of CNY.
"""


def _field(location: tuple[object, ...]) -> str:
    """``("body", "site_id")`` -> ``site_id``; ``("query", "since")`` -> ``since``."""
    parts = [str(part) for part in location if part not in ("body", "query", "path")]
    return ".".join(parts) or str(location[-1] if location else "body")


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    problems = error.errors()
    first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
    name = _field(tuple(first.get("loc", ())))
    detail = f"{name}: {first.get('msg', 'invalid')}"
    return JSONResponse({"detail": detail, "field": name}, status_code=422)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    body = (
        error.detail if isinstance(error.detail, dict) else {"detail": error.detail, "field": None}
    )
    headers = dict(error.headers or {})
    if error.status_code == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="v2ghub"')
    return JSONResponse(body, status_code=error.status_code, headers=headers)


def create_app(api: ApiContext) -> FastAPI:
    """The FastAPI app serving ``api``'s store, loop and ledger."""
    app = FastAPI(
        title="v2ghub",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.api = api
    app.state.feed = feed.FleetFeed(api)

    def feed_count(name: str) -> Callable[[], float]:
        return lambda: float(getattr(app.state.feed, name))

    api.metrics.gauge(
        "v2ghub_feed_snapshots",
        "Fleet snapshots the live feed computed since start (each a round of store reads, "
        "shared by every watcher of a scope)",
        feed_count("computations"),
    )
    api.metrics.gauge(
        "v2ghub_feed_listeners", "Live feed connections open", feed_count("listeners")
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for module in (
        fleet,
        grid_events,
        openadr,
        regulation,
        health,
        history,
        stations,
        sessions,
        money,
        feed,
        run_view,
        dashboard,
    ):
        app.include_router(module.router)

    @app.middleware("http")
    async def _timed(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started_s = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        api.metrics.api_seconds.labels(route=path).observe(time.perf_counter() - started_s)
        return response

    return app
