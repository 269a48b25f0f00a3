"""``/api/v1/stations``: the registered stations, their EVSEs' latest status and whether
each is connected now. Admin sees every station, an operator its sites' (another site's
station is 403, an unknown one 404); the grid and owner roles are refused."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from v2ghub.api.auth import Caller, Principal, refuse, require, require_site
from v2ghub.api.context import ApiContext, context
from v2ghub.api.models import EvseOut, StationOut
from v2ghub.store.api_tokens import Role
from v2ghub.store.records import Station

router = APIRouter(prefix="/api/v1/stations", tags=["stations"])

Api = Annotated[ApiContext, Depends(context)]
READERS = (Role.ADMIN, Role.OPERATOR)


def stations_out(api: ApiContext, stations: Sequence[Station]) -> list[StationOut]:
    """``stations`` with their EVSEs (one query for all) and connection state."""
    connected = api.connected()
    evses: dict[str, list[EvseOut]] = {station.station_id: [] for station in stations}
    for evse in api.store.evse_statuses([station.station_id for station in stations]):
        evses[evse.station_id].append(
            EvseOut(evse_id=evse.evse_id, status=evse.status, updated_at=api.local(evse.updated_at))
        )
    return [
        StationOut(
            station_id=station.station_id,
            site_id=station.site_id,
            connected=station.station_id in connected,
            ocpp_version=None if station.ocpp_version is None else station.ocpp_version.value,
            v2x_allowed=station.v2x_allowed,
            max_power_kw=station.max_power_kw,
            vendor=station.vendor,
            model=station.model,
            last_boot_at=None if station.last_boot_at is None else api.local(station.last_boot_at),
            evses=evses[station.station_id],
        )
        for station in stations
    ]


def visible_stations(api: ApiContext, caller: Principal) -> list[StationOut]:
    visible = caller.site_filter()
    stations = [s for s in api.store.stations() if visible is None or s.site_id in visible]
    return stations_out(api, stations)


def one_station(api: ApiContext, caller: Principal, station_id: str) -> StationOut:
    station = api.store.station(station_id)
    if station is None:
        raise refuse(404, f"no station {station_id!r}", "station_id")
    require_site(caller, station.site_id)
    return stations_out(api, [station])[0]


@router.get("", response_model=list[StationOut], summary="List stations")
async def list_stations(api: Api, caller: Caller) -> list[StationOut]:
    """Every station the caller sees, by id, with its EVSEs."""
    require(caller, *READERS)
    return await run_in_threadpool(visible_stations, api, caller)


@router.get("/{station_id}", response_model=StationOut, summary="One station")
async def get_station(station_id: str, api: Api, caller: Caller) -> StationOut:
    """One station with its EVSEs (404 if unknown, 403 if at a site the caller does not
    see)."""
    require(caller, *READERS)
    return await run_in_threadpool(one_station, api, caller, station_id)
