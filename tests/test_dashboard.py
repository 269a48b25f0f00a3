"""The operator dashboard's routes: login and logout, the page each role gets, plotly.js
served locally, the twin run as JSON, and the live feed, whose watchers share one
snapshot a second (counted at the store, on a frozen snapshot clock)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from v2ghub import Scenario, Twin, TwinResult
from v2ghub.api.app import create_app
from v2ghub.api.auth import COOKIE
from v2ghub.api.context import ApiContext
from v2ghub.api.dashboard import PLOTLY_JS
from v2ghub.api.feed import FeedEvent, FleetFeed
from v2ghub.api.run_view import RunView
from v2ghub.api.web_server import WebServer, WebSettings
from v2ghub.live.live_state import LiveStatus, PlanSnapshot, SitePlan, VehicleState
from v2ghub.regulation.envelope import EnvelopeHour
from v2ghub.store.api_tokens import Role
from v2ghub.store.grid_events import GridEvent
from v2ghub.store.openadr_events import VtnEventView
from v2ghub.store.records import Station
from v2ghub.store.repository import Store

SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 7, 1, 18, 0, tzinfo=SHANGHAI)
TOKENS = {
    Role.ADMIN: "v2g_admin-token-0123456789",
    Role.OPERATOR: "v2g_operator-token-0123456789",
    Role.GRID: "v2g_grid-token-0123456789",
    Role.OWNER: "v2g_owner-token-0123456789",
}


class CountingStore(Store):
    """A store that counts the reads the fleet snapshot makes."""

    calls: Counter[str]

    def stations(self) -> list[Station]:
        self.calls["stations"] += 1
        return super().stations()

    def grid_events(self, **options: Any) -> list[GridEvent]:
        self.calls["grid_events"] += 1
        return super().grid_events(**options)

    def site_limits(self, now: datetime) -> dict[str, tuple[float, float]]:
        self.calls["site_limits"] += 1
        return super().site_limits(now)


class FixedClock:
    def now(self) -> datetime:
        return AT

    def seconds(self, simulated_s: float) -> float:
        return simulated_s


class FrozenMonotonic:
    """The feed's snapshot clock, moved by hand."""

    def __init__(self) -> None:
        self.value_s = 100.0

    def __call__(self) -> float:
        return self.value_s


def _snapshot() -> PlanSnapshot:
    envelope = EnvelopeHour(
        start=AT,
        planned_kw=2.0,
        durations_h=(0.25, 1.0, 4.0),
        raise_kw=np.array([30.0, 20.0, 10.0]),
        lower_kw=np.array([25.0, 12.0, 4.0]),
        plugged=2,
    )
    return PlanSnapshot(
        at=AT,
        planner="fast",
        fallback_reason=None,
        plan_time_s=0.01,
        step=timedelta(minutes=15),
        sites=(
            SitePlan("north", 40.0, 20.0, planned_kw=11.0, plan_ahead_kw=(11.0, 5.0), plugged=1),
            SitePlan("south", 10.0, 15.0, planned_kw=-9.0, plan_ahead_kw=(-9.0, 7.0), plugged=1),
        ),
        vehicles=(
            VehicleState("N1", 1, "tx-n", "north", 30.0, 48.0, 60.0, 11.0, AT + timedelta(hours=4)),
            VehicleState("S1", 1, "tx-s", "south", 45.0, 40.0, 60.0, -9.0, AT + timedelta(hours=9)),
        ),
        envelope=envelope,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CountingStore]:
    opened = CountingStore.open(data_dir=tmp_path / "data")
    assert isinstance(opened, CountingStore)
    for station_id, site_id in (("N1", "north"), ("S1", "south")):
        opened.add_station(station_id, site_id=site_id, password_hash="-", v2x_allowed=True)
    opened.add_site_limit(
        "south",
        import_limit_kw=10.0,
        export_limit_kw=15.0,
        starts_at=AT - timedelta(hours=1),
        reason="transformer work",
        at=AT - timedelta(hours=1),
    )
    for role, secret in TOKENS.items():
        opened.add_token(
            role.value,
            role=role,
            token=secret,
            at=AT,
            site_ids=("north",) if role is Role.OPERATOR else (),
            owner_id="owner-7" if role is Role.OWNER else None,
        )
    opened.calls = Counter()
    yield opened
    opened.close()


def _api(store: Store, *, run_folder: Path | None = None) -> ApiContext:
    status = LiveStatus()
    status.publish(_snapshot())
    return ApiContext(
        store=store,
        clock=FixedClock(),
        timezone=SHANGHAI,
        status=status,
        connected=lambda: frozenset({"N1"}),
        measured=lambda: {"N1": 7.0, "S1": -5.0},
        site_limits={"north": (40.0, 20.0), "south": (30.0, 15.0)},
        run_folder=run_folder,
    )


def _client(app: FastAPI) -> httpx.AsyncClient:
    """A client of ``app`` in this process (cookies kept, redirects not followed)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
async def client(store: CountingStore) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(create_app(_api(store))) as test_client:
        yield test_client


async def _logged_in(client: httpx.AsyncClient, role: Role) -> httpx.AsyncClient:
    answer = await client.post("/login", data={"token": TOKENS[role]})
    assert answer.status_code == 303
    return client


# Login and logout ----------------------------------------------------------------------------


async def test_login_sets_an_httponly_strict_cookie_and_opens_the_dashboard(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.post("/login", data={"token": TOKENS[Role.ADMIN]})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={TOKENS[Role.ADMIN]};")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<span class="who-name" id="who-name">admin</span>' in page.text


async def test_a_wrong_token_is_refused_and_sets_no_cookie(client: httpx.AsyncClient) -> None:
    answer = await client.post("/login", data={"token": "v2g_not-a-token"})
    assert answer.status_code == 401
    assert "Unknown or revoked token." in answer.text
    assert "set-cookie" not in answer.headers
    empty = await client.post("/login", data={"token": "  "})
    assert empty.status_code == 401
    assert "Paste a token." in empty.text


async def test_without_a_valid_token_the_page_sends_to_the_login(client: httpx.AsyncClient) -> None:
    answer = await client.get("/")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login"
    assert "set-cookie" not in answer.headers
    client.cookies.set(COOKIE, "v2g_revoked-or-never-made")
    stale = await client.get("/")
    assert stale.status_code == 303
    assert stale.headers["set-cookie"].startswith(f'{COOKIE}="";')  # the stale cookie is dropped
    login = await client.get("/login")
    assert login.status_code == 200
    assert 'name="token"' in login.text


async def test_a_login_posted_from_another_site_is_refused(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/login", data={"token": TOKENS[Role.ADMIN]}, headers={"Origin": "https://evil.example"}
    )
    assert answer.status_code == 403
    assert answer.json() == {
        "detail": "a login must come from this server's own page",
        "field": None,
    }
    assert "set-cookie" not in answer.headers
    same = await client.post(
        "/login", data={"token": TOKENS[Role.ADMIN]}, headers={"Origin": "http://testserver"}
    )
    assert same.status_code == 303


async def test_logout_clears_the_cookie(client: httpx.AsyncClient) -> None:
    await _logged_in(client, Role.OPERATOR)
    answer = await client.post("/logout")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f'{COOKIE}="";')
    assert "Max-Age=0" in cookie
    assert (await client.get("/")).status_code == 303


# The page per role ---------------------------------------------------------------------------

CARDS = (
    "vehicles",
    "envelope",
    "event-form",
    "stations",
    "today",
    "owner",
    "power",
    "sites",
    "regulation",
    "openadr",
)
SEES = {
    Role.ADMIN: {
        "vehicles",
        "envelope",
        "event-form",
        "stations",
        "today",
        "power",
        "sites",
        "regulation",
        "openadr",
    },
    Role.OPERATOR: {
        "vehicles",
        "event-form",
        "stations",
        "today",
        "power",
        "sites",
        "regulation",
        "openadr",
    },
    Role.GRID: {"envelope", "event-form", "power", "sites", "regulation", "openadr"},
    Role.OWNER: {"owner"},
}


def _config(page: str) -> dict[str, Any]:
    marker = '<script id="v2ghub-config" type="application/json">'
    start = page.index(marker) + len(marker)
    document: dict[str, Any] = json.loads(page[start : page.index("</script>", start)])
    return document


@pytest.mark.parametrize("role", list(Role))
async def test_each_role_gets_only_its_cards(client: httpx.AsyncClient, role: Role) -> None:
    page = (await (await _logged_in(client, role)).get("/")).text
    shown = {card for card in CARDS if f'id="{card}"' in page}
    assert shown == SEES[role]
    config = _config(page)
    assert config["role"] == role.value
    assert config["live"] is (role is not Role.OWNER)
    assert config["run"] is False
    assert config["can_steer"] is (role is not Role.OWNER)
    assert config["utc_offset_s"] == 8 * 3600
    assert config["sites"] == (["north"] if role is Role.OPERATOR else [])
    assert 'id="run"' not in page  # no run folder shown
    assert 'data-tab="run"' not in page


async def test_the_regulation_card_has_its_parts_and_asks_the_regulation_api(
    client: httpx.AsyncClient,
) -> None:
    page = (await (await _logged_in(client, Role.GRID)).get("/")).text
    card = page[
        page.index('id="regulation"') : page.index("</section>", page.index('id="regulation"'))
    ]
    for part in (
        "regulation-capacity",
        "regulation-participants",
        "regulation-shares",
        "regulation-left-out",
        "regulation-signal",
        "regulation-chart",
        "regulation-hours",
    ):
        assert f'id="{part}"' in card, part
    headings = ("Composite", "Correlation", "Delay", "Precision")
    assert [f'<th class="num">{h}</th>' in card for h in headings] == [True] * len(headings)
    script = (await client.get("/static/regulation.js")).text
    assert '"/api/v1/grid/regulation"' in script
    assert '"/api/v1/grid/regulation/response"' in script
    assert "export function startRegulation()" in script
    assert "startRegulation();" in (await client.get("/static/dashboard.js")).text


async def test_the_events_card_lists_the_vtns_events_and_marks_the_vens_grid_events(
    client: httpx.AsyncClient, store: CountingStore
) -> None:
    page = (await (await _logged_in(client, Role.GRID)).get("/")).text
    card = page[page.index('id="events"') : page.index("</section>", page.index('id="events"'))]
    for part in ("events-table", "openadr", "openadr-table", "openadr-empty", "openadr-message"):
        assert f'id="{part}"' in card, part
    headings = ("Event", "Signal", "Sites", "When", "Status", "Answer")
    assert [f"<th>{h}</th>" in card for h in headings] == [True] * len(headings)
    script = (await client.get("/static/events.js")).text
    assert '"/api/v1/grid/openadr/events"' in script
    assert 'const VTN_PREFIX = "openadr:";' in script
    assert 'tr.classList.add("from-vtn")' in script
    assert "startOpenAdr(); //" in script
    assert ".vtn-tag" in (await client.get("/static/dashboard.css")).text
    # What the card asks for, with the page's cookie: the VEN's event and its answer.
    store.apply_vtn_event(
        VtnEventView(
            source="openadr:ven-a",
            vtn_event_id="dr-1",
            modification_number=0,
            signal_name="LOAD_DISPATCH",
            site_ids=("south",),
            starts_at=AT,
            ends_at=AT + timedelta(hours=1),
            opt_state="optOut",
            opt_reason="south cannot take 20 kW less",
            status="near",
            received_at=AT,
            updated_at=AT,
        ),
        at=AT,
    )
    listed = await client.get("/api/v1/grid/openadr/events")
    assert listed.status_code == 200
    assert [(e["vtn_event_id"], e["opt_state"], e["opt_reason"]) for e in listed.json()] == [
        ("dr-1", "optOut", "south cannot take 20 kW less")
    ]


async def test_the_page_loads_nothing_from_elsewhere_and_forbids_it(
    client: httpx.AsyncClient,
) -> None:
    answer = await (await _logged_in(client, Role.ADMIN)).get("/")
    page = answer.text
    assert '<script src="/static/plotly.min.js?v=' in page
    assert '<script type="module" src="/static/dashboard.js?v=' in page
    assert "http://" not in page
    assert "https://" not in page
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self';" in policy
    assert answer.headers["cache-control"] == "no-store"


async def test_plotly_is_served_from_the_package_with_a_long_cache(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.get("/static/plotly.min.js")  # no token needed: it is public code
    assert answer.status_code == 200
    assert answer.content == PLOTLY_JS.read_bytes()
    assert answer.headers["content-type"].startswith("text/javascript")
    assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    again = await client.get(
        "/static/plotly.min.js", headers={"If-None-Match": answer.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""
    own = await client.get("/static/dashboard.js")
    assert own.status_code == 200
    assert own.headers["cache-control"] == "no-cache"
    assert b"new EventSource(" in own.content
    # The modules the page's script imports, each served and each imported by another.
    names = ("common.js", "cards.js", "events.js", "power.js", "regulation.js", "run.js")
    modules = [await client.get(f"/static/{name}") for name in names]
    assert [m.status_code for m in modules] == [200] * len(names)
    assert all(m.headers["content-type"].startswith("text/javascript") for m in modules)
    imports = own.content + b"".join(m.content for m in modules)
    assert [f'from "./{name}";'.encode() in imports for name in names] == [True] * len(names)
    assert (
        (await client.get("/static/dashboard.css")).headers["content-type"].startswith("text/css")
    )
    for name in ("nothing.js", "..%2Fdashboard.py", "%2E%2E%2Fapp.py"):
        assert (await client.get(f"/static/{name}")).status_code == 404


# The twin run --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scenario = Scenario.pilot_cities(cities=["Kunming"], vehicles_per_city=120, seed=5)
    result = Twin(scenario, planners=["uncontrolled", "fast"]).run()
    return result.write(tmp_path_factory.mktemp("twin") / "evening-run")


async def test_the_run_view_serves_the_runs_curves_and_figures(
    store: CountingStore, run_folder: Path
) -> None:
    result = TwinResult.read(run_folder)
    async with _client(create_app(_api(store, run_folder=run_folder))) as client:
        answer = await client.get(
            "/api/v1/run", headers={"Authorization": f"Bearer {TOKENS[Role.OPERATOR]}"}
        )
        page = (await (await _logged_in(client, Role.ADMIN)).get("/")).text
    assert answer.status_code == 200
    view = RunView.model_validate(answer.json())
    assert view.folder == "evening-run"
    assert view.planners == ["uncontrolled", "fast"]
    assert view.vehicles_per_city == 120
    (city,) = view.cities
    assert city.city == "Kunming"
    assert city.step_s == 900
    assert len(city.times) == 96
    assert city.times[0].isoformat() == f"{result.info.date}T00:00:00+08:00"
    assert city.times[1] - city.times[0] == timedelta(minutes=15)
    curves = result.curves("Kunming", "uncontrolled")
    np.testing.assert_allclose(city.base_load_kw, curves.base_load_kw, atol=5e-4)
    for planner in city.planners:
        curves = result.curves("Kunming", planner.planner)
        metrics = result.metrics("Kunming", planner.planner)
        np.testing.assert_allclose(planner.total_load_kw, curves.total_load_kw, atol=5e-4)
        np.testing.assert_allclose(
            np.subtract(planner.charge_kw, planner.discharge_kw), planner.ev_load_kw, atol=2e-3
        )
        assert planner.peak_kw == metrics.peak_kw
        assert planner.sessions == 120
        assert planner.owner_cost_cny == metrics.owner_cost_cny
    fast = city.planners[1]
    assert fast.energy_discharged_kwh > 0
    assert min(fast.ev_load_kw) < 0  # V2G: the fleet gives power back at some step
    assert answer.json()["cities"][0]["planners"][1]["owner_cost_cny"] == str(
        result.metrics("Kunming", "fast").owner_cost_cny.quantize(fast.owner_cost_cny)
    )
    assert 'data-tab="run"' in page
    assert 'id="run"' in page
    assert _config(page)["run"] is True


async def test_the_run_view_is_refused_to_owners_and_absent_without_a_folder(
    store: CountingStore, run_folder: Path, tmp_path: Path
) -> None:
    async with _client(create_app(_api(store, run_folder=run_folder))) as client:
        owner = await client.get(
            "/api/v1/run", headers={"Authorization": f"Bearer {TOKENS[Role.OWNER]}"}
        )
        page = (await (await _logged_in(client, Role.OWNER)).get("/")).text
    assert owner.status_code == 403
    assert 'id="run"' not in page
    admin = {"Authorization": f"Bearer {TOKENS[Role.ADMIN]}"}
    async with _client(create_app(_api(store))) as client:
        missing = await client.get("/api/v1/run", headers=admin)
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no twin run is shown (serve --show-run FOLDER)"
    (tmp_path / "not-a-run").mkdir()
    async with _client(create_app(_api(store, run_folder=tmp_path / "not-a-run"))) as client:
        broken = await client.get("/api/v1/run", headers=admin)
    assert broken.status_code == 503
    assert broken.json()["detail"] == (
        "the run folder 'not-a-run' cannot be read: not found: not the output folder of a "
        "v2ghub run"
    )
    assert str(tmp_path) not in broken.text  # the server's paths stay on the server


# The feed ------------------------------------------------------------------------------------


async def _events(url: str, role: Role, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The first ``count`` events of one connection to the feed: (event, data)."""
    headers = {"Authorization": f"Bearer {TOKENS[role]}"}
    found: list[tuple[str, dict[str, Any]]] = []
    lines: list[str] = []
    async with (
        httpx.AsyncClient(base_url=url, headers=headers) as client,
        client.stream("GET", "/api/v1/feed") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line:
                lines.append(line)
                continue
            fields = dict(entry.split(": ", 1) for entry in lines)
            lines = []
            if "event" in fields:
                found.append((fields["event"], json.loads(fields["data"])))
                assert fields["id"] == str(found[-1][1]["sequence"])
            else:
                assert fields == {"retry": "1000"}
            if len(found) == count:
                break
    return found


def _app_with_feed(store: Store) -> tuple[FastAPI, FleetFeed, FrozenMonotonic]:
    app = create_app(_api(store))
    frozen = FrozenMonotonic()
    feed = FleetFeed(app.state.api, interval_s=0.02, monotonic=frozen)
    app.state.feed = feed
    return app, feed, frozen


async def test_five_watchers_share_one_snapshot_a_second(store: CountingStore) -> None:
    app, feed, frozen = _app_with_feed(store)
    async with WebServer(app, WebSettings(port=0)) as server:
        first = await asyncio.gather(*(_events(server.url, Role.ADMIN, 3) for _ in range(5)))
        assert feed.computations == 1
        per_snapshot = dict(store.calls)
        assert per_snapshot["grid_events"] == 1
        assert per_snapshot["site_limits"] == 1
        frozen.value_s += 1.0  # a second later
        second = await asyncio.gather(*(_events(server.url, Role.ADMIN, 2) for _ in range(5)))
        assert feed.computations == 2
        assert dict(store.calls) == {name: 2 * n for name, n in per_snapshot.items()}
    assert [data["sequence"] for events in first for _, data in events] == [1] * 15
    assert [data["sequence"] for events in second for _, data in events] == [2] * 10
    kind, data = first[0][0]
    assert kind == "fleet"
    event = FeedEvent.model_validate(data)
    fleet = event.fleet
    assert fleet.at == AT
    assert fleet.plugged_vehicles == 2
    assert fleet.measured_kw == pytest.approx(2.0)  # 7 kW charging, 5 kW discharging
    assert fleet.planned_kw == pytest.approx(2.0)
    south = fleet.sites[1]
    assert (south.site_id, south.import_limit_kw, south.export_limit_kw) == ("south", 10.0, 15.0)
    assert south.plan_ahead_kw == [-9.0, 7.0]
    assert fleet.plan_step_s == 900
    assert [e.site_id for e in fleet.grid_events] == ["south"]
    assert [v.station_id for v in fleet.vehicles] == ["N1", "S1"]
    assert fleet.vehicles[0].soc == pytest.approx(0.5)
    assert fleet.vehicles[0].target_soc == pytest.approx(0.8)
    assert fleet.envelope is not None
    assert fleet.envelope.raise_kw == [30.0, 20.0, 10.0]
    assert event.connected_station_ids == ["N1"]
    assert (event.connected_stations, event.registered_stations) == (1, 2)
    # The vehicles go only in a connection's first event while the plan stays the same;
    # the setpoints never (GET /api/v1/fleet/now has them).
    assert "setpoints" not in data["fleet"]
    later = [data["fleet"] for _, data in first[0][1:]]
    assert ["vehicles" in fleet for fleet in later] == [False, False]
    assert [fleet["plugged_vehicles"] for fleet in later] == [2, 2]


async def test_each_scope_has_its_own_snapshot_and_sees_only_its_part(
    store: CountingStore,
) -> None:
    app, feed, _ = _app_with_feed(store)
    async with WebServer(app, WebSettings(port=0)) as server:
        admin, operator, grid, operator_again = await asyncio.gather(
            _events(server.url, Role.ADMIN, 2),
            _events(server.url, Role.OPERATOR, 2),
            _events(server.url, Role.GRID, 2),
            _events(server.url, Role.OPERATOR, 2),
        )
    assert feed.computations == 3
    assert operator_again == operator
    mine = FeedEvent.model_validate(operator[0][1])
    assert [site.site_id for site in mine.fleet.sites] == ["north"]
    assert [v.station_id for v in mine.fleet.vehicles] == ["N1"]
    assert mine.fleet.grid_events == []  # the event is at the south site
    assert mine.fleet.envelope is None  # fleet-wide: admin and grid only
    assert (mine.connected_station_ids, mine.registered_stations) == (["N1"], 1)
    totals = FeedEvent.model_validate(grid[0][1])
    assert [site.site_id for site in totals.fleet.sites] == ["north", "south"]
    assert totals.fleet.vehicles == []
    assert totals.fleet.setpoints == []
    assert totals.fleet.envelope is not None
    assert totals.connected_station_ids == []
    assert (totals.connected_stations, totals.registered_stations) == (1, 2)
    assert len(FeedEvent.model_validate(admin[0][1]).fleet.vehicles) == 2


async def test_the_feed_ends_streams_when_closed_and_forgets_watchers_who_left(
    store: CountingStore,
) -> None:
    app, feed, _ = _app_with_feed(store)
    headers = {"Authorization": f"Bearer {TOKENS[Role.GRID]}"}
    async with WebServer(app, WebSettings(port=0)) as server:
        await _events(server.url, Role.ADMIN, 1)  # connects, reads, hangs up
        async with asyncio.timeout(10):
            while feed.listeners:
                await asyncio.sleep(0.01)
        async with (
            httpx.AsyncClient(base_url=server.url, headers=headers) as client,
            client.stream("GET", "/api/v1/feed") as response,
        ):
            lines = response.aiter_lines()
            assert await anext(lines) == "retry: 1000"
            feed.close()
            rest = [line async for line in lines]  # ends: the server closed the stream
        assert len(rest) < 10
    assert feed.listeners == 0


async def test_the_feed_refuses_owners_and_strangers(client: httpx.AsyncClient) -> None:
    owner = await client.get(
        "/api/v1/feed", headers={"Authorization": f"Bearer {TOKENS[Role.OWNER]}"}
    )
    assert owner.status_code == 403
    assert owner.json()["detail"] == "the owner role may not do this (only admin, operator, grid)"
    assert (await client.get("/api/v1/feed")).status_code == 401


async def test_an_event_carries_the_first_vehicles_and_counts_them_all(
    store: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("v2ghub.api.feed.FEED_VEHICLES", 1)
    app, _, _ = _app_with_feed(store)
    async with WebServer(app, WebSettings(port=0)) as server:
        ((_, data),) = await _events(server.url, Role.ADMIN, 1)
        headers = {"Authorization": f"Bearer {TOKENS[Role.ADMIN]}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
            fleet_now = (await client.get("/api/v1/fleet/now")).json()
    assert [v["station_id"] for v in data["fleet"]["vehicles"]] == ["N1"]
    assert data["fleet"]["plugged_vehicles"] == 2
    assert [v["station_id"] for v in fleet_now["vehicles"]] == ["N1", "S1"]
