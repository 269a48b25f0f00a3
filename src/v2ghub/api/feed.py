"""``/api/v1/feed``: the fleet now, pushed to the dashboard as Server-Sent Events.

Every watcher of the same scope (role and sites) shares one snapshot. :class:`FleetFeed`
computes :func:`~v2ghub.api.fleet.fleet_now` (and which of the scope's stations are
connected) at most once per ``max_age_s`` (1 s) per scope, behind one asyncio lock, and
keeps its JSON ready to send: however many browsers watch, the feed reads the store at
most once a second per scope (a few small indexed queries), and serialises once.

Each connection gets an event every ``interval_s`` (2 s)::

    id: 17
    event: fleet
    data: {"sequence": 17, "fleet": {...FleetNow...}, "connected_station_ids": [...], ...}

and, if the store fails to answer, ``event: problem`` with ``{"detail": ...}`` instead
(cached the same way, so a failing store is not asked more often). A connection ends after
``connection_s`` (the browser's ``EventSource`` reconnects after ``retry``, 1 s, and the
token is checked again): a revoked token stops seeing the fleet within that time, and a
server shutting down never waits longer than that for an open page.

The fleet of an event carries no setpoints (``GET /api/v1/fleet/now`` has them), and its
vehicles (the first :data:`FEED_VEHICLES` by station) only in the first event of a
connection and whenever the control loop has planned since the connection's last event:
the vehicles change only then, and at a thousand plugged they were most of the half
megabyte an event weighed. An event without them has no ``vehicles`` key: the page keeps
the ones it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from v2ghub.api.auth import Caller, Principal, require
from v2ghub.api.context import ApiContext
from v2ghub.api.fleet import fleet_now
from v2ghub.api.models import FleetNow
from v2ghub.store.api_tokens import Role

LOG = logging.getLogger("v2ghub.api")

router = APIRouter(prefix="/api/v1", tags=["fleet"])

FEED_INTERVAL_S = 2.0
"""Seconds between two events of one connection (the page wants one at least every 5 s)."""
SNAPSHOT_MAX_AGE_S = 1.0
"""A snapshot is computed again only when older than this: at most one per second."""
CONNECTION_S = 30.0
"""A connection ends after this many seconds; the browser reconnects at once."""
FEED_VEHICLES = 300
"""Vehicles an event carries at most (by station): the rows the page shows; the count of
all of them is ``plugged_vehicles``, and ``GET /api/v1/fleet/now`` has every one."""
RETRY_MS = 1000
"""How long a browser waits before reconnecting (the stream's ``retry:`` field)."""

Scope = tuple[Role, frozenset[str] | None]
"""What a caller may see: its role and its sites (None for all)."""


class FeedEvent(BaseModel):
    """One event of the feed (``event: fleet``)."""

    sequence: int
    """Counts the snapshots computed for this scope since the server started."""
    fleet: FleetNow
    connected_station_ids: list[str]
    """The caller's stations connected now (empty for the grid role)."""
    connected_stations: int
    registered_stations: int
    """Stations registered at the caller's sites."""


@dataclass(frozen=True)
class _Snapshot:
    computed_s: float
    sequence: int
    text: str
    """The whole SSE event, ready to send."""
    fleet_json: bytes | None
    """The fleet now as ``GET /api/v1/fleet/now`` sends it; None when it could not be read."""
    light_text: str
    """The SSE event without the vehicles (the same as ``text`` for a problem)."""
    plan_at: str | None
    """When the plan of the vehicles was made (a connection sends them when it changes)."""


def _sse(sequence: int, event: str, data: str) -> str:
    return f"id: {sequence}\nevent: {event}\ndata: {data}\n\n"


class FleetFeed:
    """The app's one producer of fleet snapshots, shared by every feed connection.

    ``monotonic`` is the clock that ages snapshots (tests freeze it to count exactly).
    """

    def __init__(
        self,
        api: ApiContext,
        *,
        max_age_s: float = SNAPSHOT_MAX_AGE_S,
        interval_s: float = FEED_INTERVAL_S,
        connection_s: float = CONNECTION_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.max_age_s = max_age_s
        self.interval_s = interval_s
        self.connection_s = connection_s
        self._monotonic = monotonic
        self._lock = asyncio.Lock()
        self._closed = asyncio.Event()
        self._cache: dict[Scope, _Snapshot] = {}
        self._pending: dict[Scope, asyncio.Future[_Snapshot]] = {}
        self.computations = 0
        """Snapshots computed since start (every scope)."""
        self.listeners = 0
        """Connections streaming now."""

    async def snapshot(self, caller: Principal) -> str:
        """The caller's scope's latest event, computed again only if older than
        ``max_age_s``. Concurrent callers share the one computation under way, which
        finishes (and is kept) even if the caller who started it hangs up."""
        return (await self._latest(caller)).text

    async def fleet_json(self, caller: Principal) -> bytes:
        """The fleet now as the caller may see it, JSON: the same snapshot as the feed's
        (at most ``max_age_s`` old). Raises what reading the fleet raised."""
        latest = await self._latest(caller)
        if latest.fleet_json is None:
            return await run_in_threadpool(
                lambda: fleet_now(self.api, caller).model_dump_json().encode()
            )
        return latest.fleet_json

    async def _latest(self, caller: Principal) -> _Snapshot:
        scope: Scope = (caller.role, caller.site_filter())
        async with self._lock:
            cached = self._cache.get(scope)
            if cached is not None and self._monotonic() - cached.computed_s < self.max_age_s:
                return cached
            task = self._pending.get(scope)
            if task is None:
                sequence = cached.sequence + 1 if cached is not None else 1
                self.computations += 1
                task = asyncio.ensure_future(self._compute(caller, scope, sequence))
                self._pending[scope] = task
        return await asyncio.shield(task)

    async def _compute(self, caller: Principal, scope: Scope, sequence: int) -> _Snapshot:
        try:
            snapshot = await run_in_threadpool(self._event, caller, sequence)
        except Exception as error:  # the page says so, and the feed goes on
            LOG.exception("the feed could not read the fleet")
            problem = {"detail": f"the fleet could not be read: {type(error).__name__}"}
            text = _sse(sequence, "problem", json.dumps(problem))
            snapshot = _Snapshot(0.0, sequence, text, None, text, None)
        finally:
            del self._pending[scope]
        snapshot = replace(snapshot, computed_s=self._monotonic())
        self._cache[scope] = snapshot
        return snapshot

    def _event(self, caller: Principal, sequence: int) -> _Snapshot:
        """The events with and without the vehicles, and the fleet's JSON."""
        site_of = self.api.store.station_sites()
        fleet = fleet_now(self.api, caller, site_of)
        visible = caller.site_filter()
        stations = [
            station_id
            for station_id, site_id in site_of.items()
            if visible is None or site_id in visible
        ]
        connected = self.api.connected()
        online = sorted(station_id for station_id in stations if station_id in connected)
        rest = json.dumps(
            {
                "sequence": sequence,
                "connected_station_ids": [] if caller.role is Role.GRID else online,
                "connected_stations": len(online),
                "registered_stations": len(stations),
            },
            separators=(",", ":"),
        )[:-1]

        def event(fleet_text: str) -> str:
            # FeedEvent's fields, the fleet's JSON spliced in rather than encoded again.
            return _sse(sequence, "fleet", rest + ',"fleet":' + fleet_text + "}")

        plan_at = None if fleet.last_plan_at is None else fleet.last_plan_at.isoformat()
        first = sorted(fleet.vehicles, key=lambda v: (v.station_id, v.evse_id))[:FEED_VEHICLES]
        shown = fleet.model_copy(update={"vehicles": first})
        return _Snapshot(
            computed_s=0.0,
            sequence=sequence,
            text=event(shown.model_dump_json(exclude={"setpoints"})),
            fleet_json=fleet.model_dump_json().encode(),
            light_text=event(fleet.model_dump_json(exclude={"setpoints", "vehicles"})),
            plan_at=plan_at,
        )

    async def events(self, caller: Principal) -> AsyncIterator[str]:
        """One connection's stream: an event every ``interval_s`` until ``connection_s``
        has passed or the feed is closed."""
        self.listeners += 1
        try:
            yield f"retry: {RETRY_MS}\n\n"
            deadline_s = time.monotonic() + self.connection_s
            sent_plan_at: str | None = None
            first = True
            while not self._closed.is_set():
                latest = await self._latest(caller)
                if first or latest.plan_at != sent_plan_at:
                    yield latest.text
                else:
                    yield latest.light_text
                first, sent_plan_at = False, latest.plan_at
                left_s = deadline_s - time.monotonic()
                if left_s <= 0:
                    break
                await self._pause(min(self.interval_s, left_s))
        finally:
            self.listeners -= 1

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closed.wait()

    def close(self) -> None:
        """End every stream now (a server about to stop)."""
        self._closed.set()


def feed_of(request: Request) -> FleetFeed:
    """The app's feed, made on first use (``app.state.feed``)."""
    feed: FleetFeed | None = getattr(request.app.state, "feed", None)
    if feed is None:
        feed = FleetFeed(request.app.state.api)
        request.app.state.feed = feed
    return feed


@router.get(
    "/feed",
    summary="The fleet now, as a live stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
)
async def get_feed(request: Request, caller: Caller) -> StreamingResponse:
    """Server-Sent Events: every 2 s an ``event: fleet`` whose data is the fleet now (as
    ``GET /api/v1/fleet/now``) with the stations connected. Everyone watching the same
    sites shares one snapshot a second. Admin, operator and grid roles."""
    require(caller, Role.ADMIN, Role.OPERATOR, Role.GRID)
    return StreamingResponse(
        feed_of(request).events(caller),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
