"""``/api/v1/grid/openadr``: the OpenADR VEN's events (``serve --openadr-...``) and its
answer to each, read from the store (:mod:`v2ghub.store.openadr_events`).

Each VTN event is shown as the VEN last saw it (its latest modification, status, opt state
and reason) with the ids of the grid events (``site_limits`` rows) and price events
(``grid_prices`` rows) that modification became: they carry ``source`` ``openadr:VEN`` and
``external_id`` ``EVENT/MODIFICATION/INTERVAL``. Admin, grid and operator roles read them;
an operator sees only the events naming one of its sites, and of those only its sites and
their rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from v2ghub.api.auth import Principal, allow, refuse
from v2ghub.api.context import ApiContext, context
from v2ghub.api.openadr_models import VtnEventOut, VtnStatus
from v2ghub.store.api_tokens import Role
from v2ghub.store.openadr_events import VtnEventView
from v2ghub.store.repository import VtnEventRow

router = APIRouter(prefix="/api/v1/grid/openadr", tags=["OpenADR"])

Api = Annotated[ApiContext, Depends(context)]
Watching = Annotated[Principal, Depends(allow(Role.ADMIN, Role.GRID, Role.OPERATOR))]
"""Who may read the VEN's events."""


def vtn_event_out(
    api: ApiContext,
    view: VtnEventView,
    rows: list[VtnEventRow],
    sites: frozenset[str] | None,
) -> VtnEventOut:
    """``view`` with the ids of the rows its latest modification wrote, of ``sites`` only
    (``None``: every site)."""
    prefix = f"{view.vtn_event_id}/{view.modification_number}/"

    def ids(table: str) -> list[int]:
        return [
            row.row_id
            for row in rows
            if row.table == table
            and row.source == view.source
            and row.external_id.startswith(prefix)
            and (sites is None or row.site_id in sites)
        ]

    return VtnEventOut(
        source=view.source,
        vtn_event_id=view.vtn_event_id,
        modification_number=view.modification_number,
        signal_name=view.signal_name,
        site_ids=[site for site in view.site_ids if sites is None or site in sites],
        starts_at=api.local(view.starts_at),
        ends_at=api.local(view.ends_at),
        status=view.status,
        opt_state=view.opt_state,
        opt_reason=view.opt_reason,
        received_at=api.local(view.received_at),
        updated_at=api.local(view.updated_at),
        grid_event_ids=ids("site_limits"),
        price_event_ids=ids("grid_prices"),
    )


def _touches(view: VtnEventView, sites: frozenset[str] | None) -> bool:
    return sites is None or not sites.isdisjoint(view.site_ids)


@router.get("/events", response_model=list[VtnEventOut], summary="List the VTN's events")
async def list_vtn_events(
    api: Api,
    caller: Watching,
    since: Annotated[datetime | None, Query(description="those not ended before this")] = None,
    status: Annotated[VtnStatus | None, Query(description="those the VTN last gave")] = None,
) -> list[VtnEventOut]:
    """The OpenADR VEN's events, newest received first (an operator sees those naming its
    sites only)."""
    if since is not None and since.tzinfo is None:
        raise refuse(422, "since must have a UTC offset", "since")

    def read() -> list[VtnEventOut]:
        sites = caller.site_filter()
        views = [
            view
            for view in reversed(api.store.vtn_events())
            if _touches(view, sites)
            and (since is None or view.ends_at > since)
            and (status is None or view.status == status.value)
        ]
        rows = api.store.vtn_event_rows() if views else []
        return [vtn_event_out(api, view, rows, sites) for view in views]

    return await run_in_threadpool(read)


@router.get("/events/{source}/{event_id:path}", response_model=VtnEventOut, summary="One VTN event")
async def get_vtn_event(source: str, event_id: str, api: Api, caller: Watching) -> VtnEventOut:
    """One VTN event by the VEN that received it (``openadr:VEN``) and the VTN's event id;
    404 when unknown (or, to an operator, naming none of its sites)."""

    def read() -> VtnEventOut:
        sites = caller.site_filter()
        view = api.store.vtn_event(source, event_id)
        if view is None or not _touches(view, sites):
            raise refuse(404, f"no OpenADR event {event_id!r} from {source!r}", "event_id")
        rows = api.store.vtn_event_rows(source=source, vtn_event_id=event_id)
        return vtn_event_out(api, view, rows, sites)

    return await run_in_threadpool(read)
