"""``/api/v1/grid-events``: site limits and demand-response requests, listed, made and
cancelled through the web API.

They are the same store rows ``v2ghub site limit`` writes (:mod:`v2ghub.store.grid_events`):
the control loop polls the limits in force every second and re-plans when they change, so
a grid event made here changes the setpoints at the next control instant. Every change is
recorded in the event log with the token's name.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from v2ghub.api.auth import Principal, allow, refuse, require_site
from v2ghub.api.context import ApiContext, context
from v2ghub.api.models import DemandResponseIn, GridEventOut, SiteLimitIn
from v2ghub.store.api_tokens import Role
from v2ghub.store.grid_events import GridEvent, GridEventKind
from v2ghub.store.records import Event, EventKind

router = APIRouter(prefix="/api/v1/grid-events", tags=["grid events"])

Api = Annotated[ApiContext, Depends(context)]
Steering = Annotated[Principal, Depends(allow(Role.ADMIN, Role.OPERATOR, Role.GRID))]
"""Who may list, make and cancel grid events."""


def grid_event_out(api: ApiContext, event: GridEvent, now: datetime) -> GridEventOut:
    def local(at: datetime | None) -> datetime | None:
        return None if at is None else api.local(at)

    return GridEventOut(
        event_id=event.event_id,
        site_id=event.site_id,
        kind=event.kind.value,
        import_limit_kw=event.import_limit_kw,
        export_limit_kw=event.export_limit_kw,
        requested_reduction_kw=event.requested_reduction_kw,
        starts_at=api.local(event.starts_at),
        ends_at=local(event.ends_at),
        reason=event.reason,
        source=event.source,
        external_id=event.external_id,
        recorded_at=api.local(event.recorded_at),
        cancelled_at=local(event.cancelled_at),
        cancelled_by=event.cancelled_by,
        in_force=event.in_force(now),
    )


def _known_site(api: ApiContext, site_id: str) -> None:
    known = {station.site_id for station in api.store.stations()} | set(api.site_limits)
    if site_id not in known:
        raise refuse(
            422, f"unknown site {site_id!r} (no station and no configured limits)", "site_id"
        )


def _times(
    api: ApiContext, starts_at: datetime | None, ends_at: datetime | None
) -> tuple[datetime, datetime | None]:
    start = starts_at if starts_at is not None else api.now()
    if ends_at is not None and ends_at <= start:
        raise refuse(422, f"ends_at ({ends_at.isoformat()}) is not after starts_at", "ends_at")
    return start, ends_at


def _record(api: ApiContext, caller: Principal, what: str) -> None:
    api.store.record_event(
        Event(at=api.now(), kind=EventKind.API_WRITE, detail=what, actor=caller.name)
    )


def _stored(api: ApiContext, event_id: int) -> GridEventOut:
    (event,) = api.store.grid_events(event_id=event_id)
    return grid_event_out(api, event, api.now())


@router.get("", response_model=list[GridEventOut], summary="List grid events")
async def list_grid_events(
    api: Api,
    caller: Steering,
    active: Annotated[bool, Query(description="only those in force now")] = False,
    since: Annotated[datetime | None, Query(description="those not ended before this")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[GridEventOut]:
    """Grid events, newest first (an operator sees its sites' only)."""
    if since is not None and since.tzinfo is None:
        raise refuse(422, "since must have a UTC offset", "since")

    def read() -> list[GridEventOut]:
        now = api.now()
        events = api.store.grid_events(
            site_ids=caller.site_filter(),
            in_force_at=now if active else None,
            since=since,
            limit=limit,
        )
        return [grid_event_out(api, event, now) for event in events]

    return await run_in_threadpool(read)


@router.post("/site-limits", response_model=GridEventOut, status_code=201, summary="Limit a site")
async def add_site_limit(body: SiteLimitIn, api: Api, caller: Steering) -> GridEventOut:
    """Set a site's import and export limits (kW) for a while. Admin, grid, and an operator
    for its own sites."""
    require_site(caller, body.site_id, steer=True)
    if body.import_limit_kw is None and body.export_limit_kw is None:
        raise refuse(422, "give import_limit_kw, export_limit_kw or both", "import_limit_kw")

    def write() -> GridEventOut:
        _known_site(api, body.site_id)
        start, end = _times(api, body.starts_at, body.ends_at)
        event_id = api.store.add_site_limit(
            body.site_id,
            import_limit_kw=body.import_limit_kw,
            export_limit_kw=body.export_limit_kw,
            starts_at=start,
            ends_at=end,
            reason=body.reason,
            at=api.now(),
            kind=GridEventKind.LIMIT,
            source=caller.actor(),
            external_id=body.external_id,
        )
        _record(
            api,
            caller,
            f"grid event {event_id}: site {body.site_id} limit import "
            f"{body.import_limit_kw} kW, export {body.export_limit_kw} kW",
        )
        return _stored(api, event_id)

    return await run_in_threadpool(write)


@router.post(
    "/demand-response",
    response_model=GridEventOut,
    status_code=201,
    summary="Ask a site for less power",
)
async def add_demand_response(body: DemandResponseIn, api: Api, caller: Steering) -> GridEventOut:
    """Ask a site to draw ``reduce_kw`` less than planned now, for a while: recorded as
    the import limit ``max(0, planned now - reduce_kw)`` (its export limit unchanged).
    Admin, grid, and an operator for its own sites."""
    require_site(caller, body.site_id, steer=True)

    def write() -> GridEventOut:
        _known_site(api, body.site_id)
        start, _ = _times(api, body.starts_at, body.ends_at)
        end = body.ends_at
        latest = api.status.latest if api.status is not None else None
        planned_kw = 0.0
        if latest is not None:
            planned_kw = sum(s.planned_kw for s in latest.sites if s.site_id == body.site_id)
        limits = api.store.site_limits(api.now())
        export_kw = (
            limits.get(body.site_id) or api.site_limits.get(body.site_id, api.unknown_site_limits)
        )[1]
        import_kw = max(0.0, planned_kw - body.reduce_kw)
        event_id = api.store.add_site_limit(
            body.site_id,
            import_limit_kw=import_kw,
            export_limit_kw=None if math.isinf(export_kw) else export_kw,
            starts_at=start,
            ends_at=end,
            reason=body.reason,
            at=api.now(),
            kind=GridEventKind.DEMAND_RESPONSE,
            source=caller.actor(),
            external_id=body.external_id,
            requested_reduction_kw=body.reduce_kw,
        )
        _record(
            api,
            caller,
            f"grid event {event_id}: demand response at site {body.site_id}, "
            f"{body.reduce_kw:g} kW less than the {planned_kw:g} kW planned: import limit "
            f"{import_kw:g} kW for {(end - start) / timedelta(minutes=1):g} min",
        )
        return _stored(api, event_id)

    return await run_in_threadpool(write)


@router.delete("/{event_id}", response_model=GridEventOut, summary="Cancel a grid event")
async def cancel_grid_event(event_id: int, api: Api, caller: Steering) -> GridEventOut:
    """Cancel a grid event: its limits stop holding at once (the site's configured limits,
    or an earlier event still in force, hold again)."""

    def write() -> GridEventOut:
        found = api.store.grid_events(event_id=event_id)
        if not found:
            raise refuse(404, f"no grid event {event_id}", "event_id")
        require_site(caller, found[0].site_id, steer=True)
        if not api.store.cancel_grid_event(event_id, by=caller.actor(), at=api.now()):
            raise refuse(409, f"grid event {event_id} is already cancelled", "event_id")
        _record(api, caller, f"grid event {event_id} at site {found[0].site_id} cancelled")
        return _stored(api, event_id)

    return await run_in_threadpool(write)
