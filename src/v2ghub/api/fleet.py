"""``/api/v1/fleet``: the fleet now (plugged vehicles, measured and planned power per site
and in total, the envelope, setpoints in force with their answers, grid events in force).

Everything here but the stations' sites and the grid events in force is read from memory
(the control loop's latest instant and the latest metered powers), so a read costs two
small indexed queries however large the fleet. The vehicles and setpoints are made once
per plan (and per set of sites seen), not at every read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from v2ghub.api.auth import Caller, Principal, require
from v2ghub.api.context import ApiContext, context
from v2ghub.api.grid_events import grid_event_out
from v2ghub.api.models import EnvelopeNow, FleetNow, SetpointNow, SiteNow, VehicleNow
from v2ghub.live.live_state import PlanSnapshot
from v2ghub.store.api_tokens import Role
from v2ghub.store.records import Setpoint

if TYPE_CHECKING:
    from v2ghub.api.feed import FleetFeed

router = APIRouter(prefix="/api/v1", tags=["fleet"])

Api = Annotated[ApiContext, Depends(context)]


def _limit(value_kw: float) -> float | None:
    return None if math.isinf(value_kw) else value_kw


@dataclass(frozen=True)
class _PlanRows:
    """The vehicles and setpoints of one plan as one set of sites sees them."""

    latest: PlanSnapshot | None
    setpoints: tuple[Setpoint, ...]
    vehicles: list[VehicleNow]
    setpoint_rows: list[SetpointNow]


def _plan_rows(
    api: ApiContext, visible: frozenset[str] | None, site_of: dict[str, str]
) -> _PlanRows:
    """The latest plan's vehicles and the setpoints in force, made again only when the loop
    publishes a new plan or new setpoints (both are replaced whole, never changed)."""
    latest = api.status.latest if api.status is not None else None
    in_force = api.status.setpoints if api.status is not None else ()
    cached = api.plan_rows.get(visible)
    if isinstance(cached, _PlanRows) and cached.latest is latest and cached.setpoints is in_force:
        return cached
    vehicles = [
        VehicleNow(
            station_id=v.station_id,
            evse_id=v.evse_id,
            transaction_id=v.transaction_id,
            site_id=v.site_id,
            energy_kwh=v.energy_kwh,
            target_energy_kwh=v.target_energy_kwh,
            energy_max_kwh=v.energy_max_kwh,
            soc=v.energy_kwh / v.energy_max_kwh if v.energy_max_kwh > 0 else 0.0,
            target_soc=v.target_energy_kwh / v.energy_max_kwh if v.energy_max_kwh > 0 else 0.0,
            planned_kw=v.planned_kw,
            departure_at=api.local(v.departure_at),
        )
        for v in (latest.vehicles if latest is not None else ())
        if visible is None or v.site_id in visible
    ]
    setpoint_rows = [
        SetpointNow(
            station_id=s.station_id,
            evse_id=s.evse_id,
            transaction_id=s.transaction_id,
            sent_at=api.local(s.sent_at),
            setpoint_kw=s.setpoint_kw,
            discharge_limit_kw=s.discharge_limit_kw,
            planner=s.planner,
            status=s.status,
            fallback_reason=s.fallback_reason,
        )
        for s in in_force
        if visible is None or site_of.get(s.station_id) in visible
    ]
    rows = _PlanRows(latest, in_force, vehicles, setpoint_rows)
    api.plan_rows[visible] = rows  # one assignment: readers see the old rows or the new
    return rows


def fleet_now(
    api: ApiContext, caller: Principal, site_of: dict[str, str] | None = None
) -> FleetNow:
    """The fleet now as ``caller`` may see it (an operator: its sites only; the grid role:
    totals, sites and envelope, no vehicles or setpoints). ``site_of`` is each station's
    site, read from the store when not given."""
    now = api.now()
    visible = caller.site_filter()
    if site_of is None:
        site_of = api.store.station_sites()
    in_force = api.store.grid_events(in_force_at=now, site_ids=visible)
    measured_by_site: dict[str, float] = {}
    for station_id, power_kw in api.measured().items():
        site_id = site_of.get(station_id)
        if site_id is not None:
            measured_by_site[site_id] = measured_by_site.get(site_id, 0.0) + power_kw
    latest = api.status.latest if api.status is not None else None
    planned_by_site = {site.site_id: site for site in latest.sites} if latest else {}
    limits = api.store.site_limits(now)
    site_ids = sorted(
        set(site_of.values()) | set(planned_by_site) | set(limits) | set(api.site_limits)
    )
    if visible is not None:
        site_ids = [site_id for site_id in site_ids if site_id in visible]
    sites = []
    for site_id in site_ids:
        plan = planned_by_site.get(site_id)
        import_kw, export_kw = limits.get(site_id) or api.site_limits.get(
            site_id, api.unknown_site_limits
        )
        sites.append(
            SiteNow(
                site_id=site_id,
                plugged_vehicles=plan.plugged if plan else 0,
                measured_kw=measured_by_site.get(site_id),
                planned_kw=plan.planned_kw if plan else None,
                import_limit_kw=_limit(import_kw),
                export_limit_kw=_limit(export_kw),
                plan_ahead_kw=list(plan.plan_ahead_kw) if plan else [],
            )
        )
    measured = [site.measured_kw for site in sites if site.measured_kw is not None]
    planned = [site.planned_kw for site in sites if site.planned_kw is not None]
    envelope = None
    if latest is not None and visible is None:
        env = latest.envelope
        envelope = EnvelopeNow(
            at=api.local(env.start),
            planned_kw=env.planned_kw,
            plugged_vehicles=env.plugged,
            durations_h=list(env.durations_h),
            raise_kw=[float(v) for v in env.raise_kw],
            lower_kw=[float(v) for v in env.lower_kw],
        )
    sees_vehicles = caller.role in (Role.ADMIN, Role.OPERATOR)
    rows = _plan_rows(api, visible, site_of) if latest is not None and sees_vehicles else None
    return FleetNow(
        at=api.local(now),
        plugged_vehicles=sum(site.plugged_vehicles for site in sites),
        measured_kw=sum(measured) if measured else None,
        planned_kw=sum(planned) if planned else None,
        sites=sites,
        envelope=envelope,
        last_plan_at=api.local(latest.at) if latest else None,
        planner=latest.planner if latest else None,
        fallback_reason=latest.fallback_reason if latest else None,
        setpoints=rows.setpoint_rows if rows is not None else [],
        vehicles=rows.vehicles if rows is not None else [],
        grid_events=[grid_event_out(api, event, now) for event in in_force],
        plan_step_s=round(latest.step.total_seconds()) if latest else None,
    )


@router.get("/fleet/now", response_model=FleetNow, summary="The fleet now")
async def get_fleet_now(request: Request, caller: Caller) -> Response:
    """Plugged vehicles, measured and planned power per site and in total (kW, + charging),
    the flexibility envelope, the setpoints in force with the stations' last answers, and
    the grid events in force. Owners are refused; the grid role sees no vehicle. At most a
    second old: everyone who sees the same sites shares one snapshot a second with the
    live feed."""
    require(caller, Role.ADMIN, Role.OPERATOR, Role.GRID)
    feed: FleetFeed = request.app.state.feed
    return Response(await feed.fleet_json(caller), media_type="application/json")


@router.get("/fleet/envelope", response_model=EnvelopeNow | None, summary="The envelope now")
async def get_envelope(api: Api, caller: Caller) -> EnvelopeNow | None:
    """How far the whole fleet can raise or lower its power from the plan and hold it for
    15 min, 1 h and 4 h (null before the first plan). Admin and grid roles."""
    require(caller, Role.ADMIN, Role.GRID)
    now = await run_in_threadpool(fleet_now, api, caller)
    return now.envelope
