"""The web API's tokens, roles and grid events, on SQLite and PostgreSQL.

Two sites (``north``, ``south``) with two V2X vehicles plugged at each, planned once by the
real control loop; tokens of every role. Each role is tried on every route it may and may
not use; every refusal is checked for its status, its JSON error and that nothing changed.
A grid event made through the API must change the setpoints at the next control instant.
"""

from __future__ import annotations

import asyncio
import math
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
import trustme

from v2ghub.api.app import create_app
from v2ghub.api.auth import Principal
from v2ghub.api.context import ApiContext
from v2ghub.api.fleet import fleet_now
from v2ghub.api.web_server import WebServer, WebSettings
from v2ghub.cli import main
from v2ghub.live.control import ControlLoop, SetpointCommand
from v2ghub.live.live_problem import ControlSettings, LiveSite
from v2ghub.live.outcomes import ACCEPTED, SendOutcome
from v2ghub.planning import make_planner
from v2ghub.store import schema
from v2ghub.store.api_tokens import Role, new_token, token_hash
from v2ghub.store.records import EventKind, EvNeeds, MeterSample, TransactionEventRecord
from v2ghub.store.repository import Store

SHENZHEN = ZoneInfo("Asia/Shanghai")
PEAK = datetime(2026, 7, 1, 18, 0, tzinfo=SHENZHEN).astimezone(UTC)
SETTINGS = ControlSettings(
    city="Shenzhen",
    sites=(LiveSite("north", 50.0, 30.0), LiveSite("south", 50.0, 30.0)),
    control_interval_s=3600.0,
    grid_poll_s=0.02,
    debounce_s=0.01,
    planner_timeout_s=60.0,
)


class StoppedClock:
    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at

    def seconds(self, simulated_s: float) -> float:
        return simulated_s


async def accept(command: SetpointCommand) -> SendOutcome:
    return ACCEPTED


def plug_in(store: Store, station_id: str, site_id: str, owner: str) -> None:
    """Register a V2X station at ``site_id`` and plug in a half-full 60 kWh vehicle of
    ``owner`` that wants 90% by tomorrow morning."""
    store.add_station(station_id, site_id=site_id, password_hash="x", v2x_allowed=True)
    started = PEAK - timedelta(minutes=30)
    store.transaction_events(
        [
            TransactionEventRecord(
                station_id=station_id,
                evse_id=1,
                transaction_id=f"tx-{station_id}",
                event_type="Started",
                seq_no=0,
                at=started,
                trigger_reason="CablePluggedIn",
                samples=[
                    MeterSample(station_id, f"tx-{station_id}", 0, started, 1_000, 0, 0.0, 0.5)
                ],
                id_token=owner,
            )
        ]
    )
    store.record_needs(
        EvNeeds(
            station_id=station_id,
            evse_id=1,
            received_at=started,
            departure_at=PEAK + timedelta(hours=14),
            battery_kwh=60.0,
            soc=0.5,
            target_energy_kwh=54.0,
            min_energy_kwh=12.0,
            max_charge_kw=11.0,
            max_discharge_kw=11.0,
            transaction_id=f"tx-{station_id}",
        )
    )


class World:
    """A store with four plugged vehicles, a control loop that planned them once, the API
    over both, and a token of every role."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.clock = StoppedClock(PEAK)
        for number, site in enumerate(("north", "north", "south", "south"), start=1):
            plug_in(store, f"CP{number}", site, owner=f"owner-{number}")
        self.control = ControlLoop(
            store=store,
            planner=make_planner("fast"),
            settings=SETTINGS,
            clock=self.clock,
            send=accept,
        )
        asyncio.run(self.control.run_once())
        self.api = ApiContext(
            store=store,
            clock=self.clock,
            timezone=SHENZHEN,
            status=self.control.status,
            connected=lambda: frozenset({"CP1", "CP3"}),
            measured=lambda: {"CP1": 7.5, "CP2": -3.0, "CP3": 11.0},
            site_limits={
                site.site_id: (site.import_limit_kw, site.export_limit_kw)
                for site in SETTINGS.sites
            },
            control_interval_s=SETTINGS.control_interval_s,
        )
        self.tokens: dict[str, str] = {}
        scopes: dict[str, dict[str, Any]] = {
            "admin": {"role": Role.ADMIN},
            "north-ops": {"role": Role.OPERATOR, "site_ids": ("north",)},
            "grid-co": {"role": Role.GRID},
            "owner-1": {"role": Role.OWNER, "owner_id": "owner-1"},
        }
        for name, scope in scopes.items():
            self.tokens[name] = new_token()
            store.add_token(name, token=self.tokens[name], at=PEAK, **scope)

    def headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


@pytest.fixture
def world(store: Store) -> World:
    return World(store)


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(world.api))
    async with httpx.AsyncClient(transport=transport, base_url="http://v2ghub") as opened:
        yield opened


def site_limit_rows(store: Store) -> int:
    with store.engine.connect() as connection:
        return int(
            connection.execute(
                sa.select(sa.func.count()).select_from(schema.site_limits)
            ).scalar_one()
        )


# Tokens ----------------------------------------------------------------------------------


def test_only_a_hash_of_a_token_is_kept_and_a_revoked_token_stops_working(store: Store) -> None:
    token = new_token()
    assert token.startswith("v2g_")
    assert len(token) == 47
    store.add_token("ops", role=Role.OPERATOR, token=token, at=PEAK, site_ids=("a", "b"))
    with store.engine.connect() as connection:
        (row,) = connection.execute(sa.select(schema.api_tokens)).all()
    assert row.token_hash == token_hash(token)
    assert token not in tuple(map(str, row))
    found = store.token(token)
    assert found is not None
    assert (found.name, found.role, found.site_ids) == ("ops", Role.OPERATOR, ("a", "b"))
    assert store.token(token + "x") is None
    assert store.revoke_token("ops", at=PEAK)
    assert store.token(token) is None
    assert not store.revoke_token("ops", at=PEAK)  # already revoked


@pytest.mark.parametrize(
    ("name", "scope", "message"),
    [
        ("ops", {"role": Role.OPERATOR}, "--site: an operator token needs at least one site"),
        ("g", {"role": Role.GRID, "site_ids": ("a",)}, "--site: only an operator token"),
        ("o", {"role": Role.OWNER}, "--owner: an owner token needs the owner's id"),
        ("a", {"role": Role.ADMIN, "owner_id": "x"}, "--owner: only an owner token"),
        ("bad name", {"role": Role.ADMIN}, "token name 'bad name'"),
    ],
)
def test_a_token_that_could_not_be_used_is_refused(
    store: Store, name: str, scope: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        store.add_token(name, token=new_token(), at=PEAK, **scope)
    assert store.tokens() == []


def test_a_token_name_is_taken_once(store: Store) -> None:
    store.add_token("ops", role=Role.ADMIN, token=new_token(), at=PEAK)
    with pytest.raises(ValueError, match="token name 'ops' is taken"):
        store.add_token("ops", role=Role.GRID, token=new_token(), at=PEAK)


# Who may see what -------------------------------------------------------------------------


async def test_without_a_valid_token_nothing_is_shown(
    client: httpx.AsyncClient, world: World
) -> None:
    for headers, detail in [
        ({}, "a bearer token is needed"),
        ({"Authorization": "Basic abc"}, "the Authorization header must be 'Bearer <token>'"),
        ({"Authorization": "Bearer v2g_nope"}, "unknown or revoked token"),
    ]:
        response = await client.get("/api/v1/fleet/now", headers=headers)
        assert response.status_code == 401
        assert response.json()["detail"].startswith(detail)
        assert response.headers["www-authenticate"] == 'Bearer realm="v2ghub"'
        assert "sites" not in response.json()
    world.store.revoke_token("admin", at=PEAK)
    response = await client.get("/api/v1/fleet/now", headers=world.headers("admin"))
    assert response.status_code == 401


async def test_the_admin_sees_the_whole_fleet_now(client: httpx.AsyncClient, world: World) -> None:
    response = await client.get("/api/v1/fleet/now", headers=world.headers("admin"))
    assert response.status_code == 200
    fleet = response.json()
    assert fleet["at"] == "2026-07-01T18:00:00+08:00"
    assert fleet["plugged_vehicles"] == 4
    sites = {site["site_id"]: site for site in fleet["sites"]}
    assert sorted(sites) == ["north", "south"]
    assert sites["north"]["measured_kw"] == pytest.approx(4.5)  # CP1 7.5 + CP2 -3
    assert sites["south"]["measured_kw"] == pytest.approx(11.0)
    assert fleet["measured_kw"] == pytest.approx(15.5)
    assert (sites["north"]["import_limit_kw"], sites["north"]["export_limit_kw"]) == (50.0, 30.0)
    latest = world.control.status.latest
    assert latest is not None
    assert fleet["planned_kw"] == pytest.approx(latest.planned_kw)
    # The peak: the vehicles give power back, within each site's export limit.
    for site in sites.values():
        assert -30.0 - 1e-9 <= site["planned_kw"] < 0
        assert site["plugged_vehicles"] == 2
        assert site["plan_ahead_kw"][0] == pytest.approx(site["planned_kw"], abs=0.2)
    assert fleet["plan_step_s"] == 900
    assert {s["station_id"] for s in fleet["setpoints"]} == {"CP1", "CP2", "CP3", "CP4"}
    assert {s["status"] for s in fleet["setpoints"]} == {"Accepted"}
    vehicles = {v["station_id"]: v for v in fleet["vehicles"]}
    assert vehicles["CP1"]["soc"] == pytest.approx(30.0 / vehicles["CP1"]["energy_max_kwh"])
    assert vehicles["CP1"]["departure_at"] == "2026-07-02T08:00:00+08:00"
    envelope = fleet["envelope"]
    assert envelope["durations_h"] == [0.25, 1.0, 4.0]
    assert envelope["plugged_vehicles"] == 4
    # Discharging at the peak, the fleet can raise its power (discharge less) by at least
    # what it discharges, and a longer hold is never larger.
    assert envelope["raise_kw"][0] >= -fleet["planned_kw"] - 1e-6
    assert envelope["raise_kw"] == sorted(envelope["raise_kw"], reverse=True)


def test_the_fleet_now_follows_each_new_plan_and_each_new_answer(world: World) -> None:
    """The vehicles and setpoints are made once per plan and set of sites: a new plan or new
    answers from the stations show at the next read, for every scope."""

    def caller(name: str) -> Principal:
        token = world.store.token(world.tokens[name])
        assert token is not None
        return Principal(token)

    admin, north = caller("admin"), caller("north-ops")
    status = world.control.status
    assert {s.status for s in fleet_now(world.api, admin).setpoints} == {"Accepted"}
    assert {v.station_id for v in fleet_now(world.api, north).vehicles} == {"CP1", "CP2"}
    status.setpoints = tuple(
        replace(s, status="Rejected") if s.station_id == "CP2" else s for s in status.setpoints
    )
    answers = {s.station_id: s.status for s in fleet_now(world.api, admin).setpoints}
    assert answers == {"CP1": "Accepted", "CP2": "Rejected", "CP3": "Accepted", "CP4": "Accepted"}
    latest = status.latest
    assert latest is not None
    status.publish(replace(latest, vehicles=latest.vehicles[:1]))  # CP1 only
    assert [v.station_id for v in fleet_now(world.api, admin).vehicles] == ["CP1"]
    assert [v.station_id for v in fleet_now(world.api, north).vehicles] == ["CP1"]
    north_answers = {s.station_id: s.status for s in fleet_now(world.api, north).setpoints}
    assert north_answers == {"CP1": "Accepted", "CP2": "Rejected"}


async def test_an_operator_sees_only_its_sites_and_the_grid_no_vehicle(
    client: httpx.AsyncClient, world: World
) -> None:
    north = (await client.get("/api/v1/fleet/now", headers=world.headers("north-ops"))).json()
    assert [site["site_id"] for site in north["sites"]] == ["north"]
    assert {v["station_id"] for v in north["vehicles"]} == {"CP1", "CP2"}
    assert {s["station_id"] for s in north["setpoints"]} == {"CP1", "CP2"}
    assert north["plugged_vehicles"] == 2
    assert north["envelope"] is None  # the fleet's envelope is not one site's
    grid = (await client.get("/api/v1/fleet/now", headers=world.headers("grid-co"))).json()
    assert grid["plugged_vehicles"] == 4
    assert len(grid["sites"]) == 2
    assert grid["vehicles"] == []
    assert grid["setpoints"] == []
    envelope = await client.get("/api/v1/fleet/envelope", headers=world.headers("grid-co"))
    assert envelope.status_code == 200
    assert envelope.json() == grid["envelope"]


@pytest.mark.parametrize(
    ("token", "method", "path"),
    [
        ("owner-1", "GET", "/api/v1/fleet/now"),
        ("owner-1", "GET", "/api/v1/fleet/envelope"),
        ("north-ops", "GET", "/api/v1/fleet/envelope"),
        ("owner-1", "GET", "/api/v1/grid-events"),
        ("owner-1", "POST", "/api/v1/grid-events/site-limits"),
        ("owner-1", "POST", "/api/v1/grid-events/demand-response"),
        ("owner-1", "DELETE", "/api/v1/grid-events/1"),
    ],
)
async def test_a_role_is_refused_what_it_may_not_do(
    client: httpx.AsyncClient, world: World, token: str, method: str, path: str
) -> None:
    body = {"site_id": "north", "import_limit_kw": 10.0}
    response = await client.request(
        method, path, headers=world.headers(token), json=body if method == "POST" else None
    )
    assert response.status_code == 403
    role = "owner" if token == "owner-1" else "operator"
    assert response.json()["detail"].startswith(f"the {role} role may not do this")
    assert site_limit_rows(world.store) == 0


# Grid events -------------------------------------------------------------------------------


async def test_a_site_limit_is_stored_logged_listed_and_cancelled(
    client: httpx.AsyncClient, world: World
) -> None:
    until = (PEAK + timedelta(hours=2)).astimezone(SHENZHEN).isoformat()
    response = await client.post(
        "/api/v1/grid-events/site-limits",
        headers=world.headers("grid-co"),
        json={
            "site_id": "south",
            "import_limit_kw": 20,
            "export_limit_kw": 5,
            "ends_at": until,
            "reason": "feeder maintenance",
            "external_id": "dispatch-42",
        },
    )
    assert response.status_code == 201
    event = response.json()
    assert event["kind"] == "limit"
    assert event["source"] == "api:grid-co"
    assert (event["import_limit_kw"], event["export_limit_kw"]) == (20.0, 5.0)
    assert event["starts_at"] == "2026-07-01T18:00:00+08:00"
    assert event["ends_at"] == "2026-07-01T20:00:00+08:00"
    assert event["in_force"]
    assert event["external_id"] == "dispatch-42"
    assert world.store.site_limits(PEAK) == {"south": (20.0, 5.0)}
    (logged,) = world.store.events(kind=EventKind.API_WRITE)
    assert logged.actor == "grid-co"
    assert logged.detail == (
        f"grid event {event['event_id']}: site south limit import 20.0 kW, export 5.0 kW"
    )
    listed = await client.get("/api/v1/grid-events?active=true", headers=world.headers("admin"))
    assert [e["event_id"] for e in listed.json()] == [event["event_id"]]
    # The north operator does not see it, and may not cancel it.
    north = await client.get("/api/v1/grid-events", headers=world.headers("north-ops"))
    assert north.json() == []
    refused = await client.delete(
        f"/api/v1/grid-events/{event['event_id']}", headers=world.headers("north-ops")
    )
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "token 'north-ops' has no access to site 'south'",
        "field": "site_id",
    }
    cancelled = await client.delete(
        f"/api/v1/grid-events/{event['event_id']}", headers=world.headers("admin")
    )
    assert cancelled.status_code == 200
    assert cancelled.json()["cancelled_by"] == "api:admin"
    assert not cancelled.json()["in_force"]
    assert world.store.site_limits(PEAK) == {}
    again = await client.delete(
        f"/api/v1/grid-events/{event['event_id']}", headers=world.headers("admin")
    )
    assert again.status_code == 409
    missing = await client.delete("/api/v1/grid-events/999", headers=world.headers("admin"))
    assert missing.status_code == 404
    assert [e.actor for e in world.store.events(kind=EventKind.API_WRITE)] == ["admin", "grid-co"]


async def test_a_demand_response_request_caps_the_site_below_its_plan(
    client: httpx.AsyncClient, world: World
) -> None:
    # In the valley the vehicles charge: the dispatcher asks south for 10 kW less.
    world.clock.at = PEAK + timedelta(hours=7)
    await world.control.run_once()
    latest = world.control.status.latest
    assert latest is not None
    south_kw = next(site.planned_kw for site in latest.sites if site.site_id == "south")
    assert south_kw > 10.0
    response = await client.post(
        "/api/v1/grid-events/demand-response",
        headers=world.headers("north-ops"),
        json={
            "site_id": "north",
            "reduce_kw": 5,
            "ends_at": (world.clock.at + timedelta(hours=1)).isoformat(),
        },
    )
    assert response.status_code == 201
    north_kw = next(site.planned_kw for site in latest.sites if site.site_id == "north")
    event = response.json()
    assert event["kind"] == "demand-response"
    assert event["requested_reduction_kw"] == 5.0
    assert event["import_limit_kw"] == pytest.approx(max(0.0, north_kw - 5.0))
    assert event["export_limit_kw"] == 30.0  # the site's export limit stays
    sent = await world.control.run_once()
    north = [s.setpoint_kw for s in sent if s.station_id in ("CP1", "CP2")]
    assert sum(north) <= event["import_limit_kw"] + 1e-9


@pytest.mark.parametrize(
    ("body", "field", "detail"),
    [
        (
            {"site_id": "north", "import_limit_kw": -1},
            "import_limit_kw",
            "greater than or equal to 0",
        ),
        ({"site_id": "nowhere", "import_limit_kw": 1}, "site_id", "unknown site 'nowhere'"),
        ({"site_id": "north"}, "import_limit_kw", "give import_limit_kw, export_limit_kw or both"),
        (
            {"site_id": "north", "import_limit_kw": 1, "ends_at": "2026-07-01T17:00:00+08:00"},
            "ends_at",
            "ends_at (2026-07-01T17:00:00+08:00) is not after starts_at",
        ),
        (
            {"site_id": "north", "import_limit_kw": 1, "ends_at": "2026-07-01T19:00:00"},
            "ends_at",
            "ends_at: Input should have timezone info",
        ),
        (
            {"site_id": "north", "import_limit_kw": 1, "colour": "red"},
            "colour",
            "colour: Extra inputs",
        ),
        (
            {"site_id": "north", "import_limit_kw": "lots"},
            "import_limit_kw",
            "import_limit_kw: Input should be a valid number",
        ),
    ],
)
async def test_bad_input_names_the_field_and_changes_nothing(
    client: httpx.AsyncClient, world: World, body: dict[str, Any], field: str, detail: str
) -> None:
    response = await client.post(
        "/api/v1/grid-events/site-limits", headers=world.headers("admin"), json=body
    )
    assert response.status_code == 422
    assert response.json()["field"] == field
    assert detail in response.json()["detail"]
    assert site_limit_rows(world.store) == 0
    assert world.store.events(kind=EventKind.API_WRITE) == []


async def test_a_malformed_body_is_refused(client: httpx.AsyncClient, world: World) -> None:
    response = await client.post(
        "/api/v1/grid-events/site-limits",
        headers={**world.headers("admin"), "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("1: JSON decode error")
    assert site_limit_rows(world.store) == 0


async def test_a_cookie_write_must_send_json(client: httpx.AsyncClient, world: World) -> None:
    client.cookies.set("v2ghub_token", world.tokens["admin"])
    form = await client.post(
        "/api/v1/grid-events/site-limits", data={"site_id": "north", "import_limit_kw": "1"}
    )
    assert form.status_code == 403
    assert form.json()["detail"] == "a change made with the dashboard's cookie must send JSON"
    read = await client.get("/api/v1/fleet/now")
    assert read.status_code == 200
    assert site_limit_rows(world.store) == 0


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s:g} s"
        await asyncio.sleep(0.01)


async def test_a_grid_event_from_the_api_changes_the_setpoints_at_the_next_instant(
    client: httpx.AsyncClient, world: World
) -> None:
    """The loop plans hourly; a grid event made through the API wakes it (its one-second
    poll of the limits in force) and the very next plan keeps the new limit."""
    status = world.control.status
    stop = asyncio.Event()
    task = asyncio.create_task(world.control.run(stop))
    await until(lambda: status.plans == 2)  # the loop's own first instant
    latest = status.latest
    assert latest is not None
    north_kw = next(site.planned_kw for site in latest.sites if site.site_id == "north")
    assert north_kw < -5.0  # discharging at the peak
    response = await client.post(
        "/api/v1/grid-events/site-limits",
        headers=world.headers("north-ops"),
        json={"site_id": "north", "export_limit_kw": 2.0},
    )
    assert response.status_code == 201
    await until(lambda: status.plans == 3)
    stop.set()
    await asyncio.wait_for(task, 10)
    replanned = status.latest
    assert replanned is not None
    north = next(site for site in replanned.sites if site.site_id == "north")
    assert north.export_limit_kw == 2.0
    assert north.planned_kw >= -2.0 - 1e-9
    sent = [s for s in status.setpoints if s.station_id in ("CP1", "CP2")]
    assert len(sent) == 2
    assert sum(s.setpoint_kw for s in sent) >= -2.0 - 1e-9


# Health, metrics, schema ---------------------------------------------------------------


async def test_health_and_metrics_need_no_token(client: httpx.AsyncClient, world: World) -> None:
    health = await client.get("/health")
    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "store_reachable": True,
        "control_loop_alive": True,
        "last_plan_age_s": 0.0,
        "connected_stations": 2,
    }
    world.control.status.last_instant_monotonic_s = time.monotonic() - 3 * 3600 - 11
    stale = await client.get("/health")
    assert stale.status_code == 503
    assert stale.json()["status"] == "degraded"
    assert not stale.json()["control_loop_alive"]
    await client.get("/api/v1/fleet/now", headers=world.headers("admin"))
    metrics = (await client.get("/metrics")).text
    assert 'v2ghub_api_request_seconds_count{route="/api/v1/fleet/now"} 1.0' in metrics
    assert "# TYPE v2ghub_ocpp_handling_seconds histogram" in metrics


async def test_the_openapi_schema_names_every_route(client: httpx.AsyncClient) -> None:
    schema_paths = (await client.get("/openapi.json")).json()["paths"]
    for path in (
        "/api/v1/fleet/now",
        "/api/v1/fleet/envelope",
        "/api/v1/grid-events",
        "/api/v1/grid-events/site-limits",
        "/api/v1/grid-events/demand-response",
        "/api/v1/grid-events/{event_id}",
        "/health",
        "/metrics",
    ):
        assert path in schema_paths
    document = (await client.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["token"] == {
        "type": "http",
        "description": "a token from `v2ghub token add NAME --role ROLE`",
        "scheme": "bearer",
    }
    assert schema_paths["/api/v1/fleet/now"]["get"]["security"] == [{"token": []}]
    assert "security" not in schema_paths["/health"]["get"]
    limit = schema_paths["/api/v1/grid-events/site-limits"]["post"]
    assert limit["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "SiteLimitIn"
    )


def test_a_cancelled_grid_event_no_longer_holds_for_the_loop(store: Store) -> None:
    first = store.add_site_limit(
        "a", import_limit_kw=5.0, export_limit_kw=None, starts_at=PEAK, reason="x", at=PEAK
    )
    second = store.add_site_limit(
        "a",
        import_limit_kw=1.0,
        export_limit_kw=0.0,
        starts_at=PEAK,
        reason="y",
        at=PEAK + timedelta(seconds=1),
    )
    assert store.site_limits(PEAK + timedelta(minutes=1)) == {"a": (1.0, 0.0)}
    assert store.cancel_grid_event(second, by="api:x", at=PEAK + timedelta(minutes=2))
    assert store.site_limits(PEAK + timedelta(minutes=3)) == {"a": (5.0, math.inf)}
    assert store.cancel_grid_event(first, by="cli", at=PEAK + timedelta(minutes=2))
    assert store.site_limits(PEAK + timedelta(minutes=3)) == {}
    assert [e.event_id for e in store.grid_events()] == [second, first]
    assert replace(store.grid_events(event_id=first)[0], cancelled_at=None).in_force(PEAK)


def test_the_token_command_prints_a_token_once_and_revokes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path)]
    assert main(["token", "add", "ops-1", "--role", "operator", "--site", "north", *data]) == 0
    printed = capsys.readouterr().out
    secret = re.search(r"v2g_[A-Za-z0-9_-]{43}", printed)
    assert secret is not None
    assert printed.startswith("token ops-1 (operator): v2g_")
    with Store.open(data_dir=tmp_path) as store:
        found = store.token(secret.group())
        assert found is not None
        assert found.site_ids == ("north",)
    assert main(["token", "list", *data]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith("ops-1  operator  north  valid  made ")
    assert secret.group() not in listed
    assert main(["token", "add", "g", "--role", "grid", "--site", "north", *data]) == 2
    assert "error: --site: only an operator token has sites, not grid" in capsys.readouterr().err
    assert main(["token", "revoke", "ops-1", *data]) == 0
    assert main(["token", "revoke", "ops-1", *data]) == 2
    assert "error: no valid token named 'ops-1'" in capsys.readouterr().err
    with Store.open(data_dir=tmp_path) as store:
        assert store.token(secret.group()) is None


async def test_the_web_api_speaks_https_with_a_certificate(world: World, tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.private_key_and_cert_chain_pem.write_to_path(certfile)
    certificate.private_key_pem.write_to_path(keyfile)
    authority.cert_pem.write_to_path(tmp_path / "ca.pem")
    settings = WebSettings(port=0, certfile=certfile, keyfile=keyfile)
    async with WebServer(create_app(world.api), settings) as server:
        assert server.url.startswith("https://127.0.0.1:")
        async with httpx.AsyncClient(verify=ssl_context(tmp_path / "ca.pem")) as client:
            response = await client.get(
                f"{server.url}/api/v1/fleet/now", headers=world.headers("grid-co")
            )
    assert response.status_code == 200
    assert response.json()["plugged_vehicles"] == 4


def ssl_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


# Needs of vehicles that cannot send them ---------------------------------------------------


async def test_an_owner_says_when_its_car_leaves_and_the_loop_plans_with_it(
    client: httpx.AsyncClient, world: World
) -> None:
    leaves = PEAK + timedelta(hours=3)
    body = {"departure_at": leaves.isoformat(), "target_energy_kwh": 45.0, "battery_kwh": 60.0}
    response = await client.put(
        "/api/v1/sessions/CP1/tx-CP1/needs", headers=world.headers("owner-1"), json=body
    )
    assert response.status_code == 200, response.text
    assert response.json()["transaction_id"] == "tx-CP1"
    (plugged,) = [s for s in world.store.plugged(PEAK) if s.station_id == "CP1"]
    assert plugged.departure_at == leaves
    assert plugged.target_energy_kwh == 45.0
    writes = [e for e in world.store.events() if e.kind is EventKind.API_WRITE]
    assert writes[-1].actor == "owner-1"
    assert "needs of CP1/tx-CP1" in writes[-1].detail
    # Someone else's car, a departure already past, a session that does not exist.
    other = await client.put(
        "/api/v1/sessions/CP3/tx-CP3/needs", headers=world.headers("owner-1"), json=body
    )
    assert other.status_code == 403
    assert other.json()["detail"] == "an owner token sees its own sessions only"
    past = {**body, "departure_at": (PEAK - timedelta(minutes=1)).isoformat()}
    late = await client.put(
        "/api/v1/sessions/CP1/tx-CP1/needs", headers=world.headers("admin"), json=past
    )
    assert late.status_code == 422
    assert late.json()["field"] == "departure_at"
    missing = await client.put(
        "/api/v1/sessions/CP9/tx-9/needs", headers=world.headers("admin"), json=body
    )
    assert missing.status_code == 404
    grid = await client.put(
        "/api/v1/sessions/CP1/tx-CP1/needs", headers=world.headers("grid-co"), json=body
    )
    assert grid.status_code == 403
    (unchanged,) = [s for s in world.store.plugged(PEAK) if s.station_id == "CP1"]
    assert unchanged.departure_at == leaves
