"""``/api/v1/sessions``: charging sessions (transactions), open or ended, with the energy
asked, delivered and discharged, and what the owner is owed once the day is settled.

An owner sees only the sessions whose id token is its owner id; an operator its sites';
admin every one; the grid role none (it sees no owner's data).

- ``energy_asked_kwh``: the vehicle's latest needs' target less its energy then
  (:func:`v2ghub.store.api_reads.energy_asked_kwh`); null when it sent no needs, or
  they lack the target, the SoC or the battery size.
- ``delivered_kwh`` / ``discharged_kwh``: latest minus start register.
- ``soc``: the latest reading's (null when no reading carried one).
- ``owed_cny``: :func:`v2ghub.api.money.owed_fen`, null before the session's day is settled.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime
from starlette.concurrency import run_in_threadpool

from v2ghub.api.auth import Caller, Principal, refuse, require, require_site
from v2ghub.api.context import ApiContext, context
from v2ghub.api.models import NeedsIn, SessionOut
from v2ghub.api.money import owed_fen
from v2ghub.settlement.money import fen_to_cny
from v2ghub.store.api_reads import SessionFilter, SessionView
from v2ghub.store.api_tokens import Role
from v2ghub.store.records import Event, EventKind, EvNeeds
from v2ghub.units import wh_to_kwh

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])

Api = Annotated[ApiContext, Depends(context)]
READERS = (Role.ADMIN, Role.OPERATOR, Role.OWNER)
DEFAULT_LIMIT = 500
MAX_LIMIT = 5000


def sessions_out(api: ApiContext, views: Sequence[SessionView]) -> list[SessionOut]:
    """``views`` as the API shows them, with what their owners are owed (one ledger read)."""
    owed = owed_fen(api.ledger_path, views, timezone=api.timezone, now=api.now())
    return [
        SessionOut(
            station_id=view.station_id,
            evse_id=view.evse_id,
            transaction_id=view.transaction_id,
            site_id=view.site_id,
            owner_id=view.id_token,
            started_at=api.local(view.started_at),
            ended_at=None if view.ended_at is None else api.local(view.ended_at),
            energy_asked_kwh=view.energy_asked_kwh,
            delivered_kwh=wh_to_kwh(view.delivered_wh),
            discharged_kwh=wh_to_kwh(view.exported_wh),
            soc=view.soc,
            owed_cny=fen_to_cny(owed[view.session_id]) if view.session_id in owed else None,
        )
        for view in views
    ]


def session_filter(
    caller: Principal,
    *,
    site_id: str | None,
    owner_id: str | None,
    since: datetime | None,
    open_only: bool | None,
) -> SessionFilter:
    """The sessions ``caller`` may list, narrowed by the query; 403 for a site or an owner
    outside its own (an owner may narrow its own sessions to a site)."""
    sites = None if site_id is None else frozenset({site_id})
    if caller.role is Role.OWNER:
        if owner_id not in (None, caller.token.owner_id):
            raise refuse(403, "an owner token sees its own sessions only", "owner_id")
        owner_id = caller.token.owner_id
    elif site_id is not None:
        require_site(caller, site_id)
    else:
        sites = caller.site_filter()
    return SessionFilter(site_ids=sites, owner_id=owner_id, since=since, open=open_only)


def visible_session(
    api: ApiContext, caller: Principal, station_id: str, transaction_id: str
) -> SessionView:
    """The session, if ``caller`` may see it (404 if unknown; 403 if not its own)."""
    key = SessionFilter(key=(station_id, transaction_id))
    found = api.store.session_views(key, now=api.now(), limit=1)
    if not found:
        raise refuse(404, f"no session {transaction_id!r} at station {station_id!r}")
    view = found[0]
    if caller.role is Role.OWNER:
        if view.id_token != caller.token.owner_id:
            raise refuse(403, "an owner token sees its own sessions only", "transaction_id")
    else:
        require_site(caller, view.site_id)
    return view


def one_session(
    api: ApiContext, caller: Principal, station_id: str, transaction_id: str
) -> SessionOut:
    return sessions_out(api, [visible_session(api, caller, station_id, transaction_id)])[0]


def record_needs(
    api: ApiContext, caller: Principal, station_id: str, transaction_id: str, body: NeedsIn
) -> SessionOut:
    """Keep ``body`` as the open session's needs (who may: as for a read; an ended session
    or a departure already past is refused)."""
    view = visible_session(api, caller, station_id, transaction_id)
    now = api.now()
    if view.ended_at is not None:
        raise refuse(422, f"session {transaction_id!r} has ended", "transaction_id")
    if body.departure_at <= now:
        raise refuse(422, f"departure_at ({body.departure_at.isoformat()}) is past", "departure_at")
    if (
        body.target_energy_kwh is not None
        and body.battery_kwh is not None
        and body.target_energy_kwh > body.battery_kwh
    ):
        raise refuse(422, "target_energy_kwh is more than battery_kwh", "target_energy_kwh")
    api.store.record_needs(
        EvNeeds(
            station_id=station_id,
            evse_id=view.evse_id,
            received_at=now,
            departure_at=body.departure_at,
            battery_kwh=body.battery_kwh,
            soc=body.soc,
            target_energy_kwh=body.target_energy_kwh,
            min_energy_kwh=body.min_energy_kwh,
            max_charge_kw=None,
            max_discharge_kw=None,
            transaction_id=transaction_id,
        )
    )
    detail = (
        f"needs of {station_id}/{transaction_id}: leaves {body.departure_at.isoformat()}, "
        f"target {body.target_energy_kwh} kWh"
    )
    api.store.record_event(
        Event(
            at=now,
            kind=EventKind.API_WRITE,
            detail=detail,
            station_id=station_id,
            actor=caller.name,
        )
    )
    return one_session(api, caller, station_id, transaction_id)


@router.put(
    "/{station_id}/{transaction_id:path}/needs",
    response_model=SessionOut,
    summary="Say a vehicle's needs",
)
async def put_needs(
    station_id: str, transaction_id: str, body: NeedsIn, api: Api, caller: Caller
) -> SessionOut:
    """A plugged vehicle's departure and energy needs, for vehicles whose charger cannot
    send them (OCPP 1.6, 2.0.1 without them): the owner of the session, its site's
    operator, or admin. The control loop plans with them from its next instant."""
    require(caller, *READERS)
    return await run_in_threadpool(record_needs, api, caller, station_id, transaction_id, body)


@router.get("", response_model=list[SessionOut], summary="List sessions")
async def list_sessions(
    *,
    api: Api,
    caller: Caller,
    site_id: Annotated[str | None, Query(description="one site only")] = None,
    owner_id: Annotated[str | None, Query(description="one owner's id token only")] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="those still open or ended since")
    ] = None,
    open_only: Annotated[
        bool | None, Query(alias="open", description="true: open ones; false: ended ones")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> list[SessionOut]:
    """Sessions the caller sees, newest start first."""
    require(caller, *READERS)
    where = session_filter(
        caller, site_id=site_id, owner_id=owner_id, since=since, open_only=open_only
    )

    def read() -> list[SessionOut]:
        return sessions_out(api, api.store.session_views(where, now=api.now(), limit=limit))

    return await run_in_threadpool(read)


@router.get("/{station_id}/{transaction_id:path}", response_model=SessionOut, summary="One session")
async def get_session(station_id: str, transaction_id: str, api: Api, caller: Caller) -> SessionOut:
    """One session (404 if unknown; 403 if the caller may not see it)."""
    require(caller, *READERS)
    return await run_in_threadpool(one_session, api, caller, station_id, transaction_id)
