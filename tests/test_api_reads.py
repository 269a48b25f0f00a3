"""The web API's read endpoints on both back ends: history, stations, sessions,
statements and today, with the values worked out by hand from the day of
:mod:`tests.api_helpers`, and every refusal (401, 403 per role, 404, 422 naming the field).
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.api_helpers import (
    SHANGHAI,
    FixedClock,
    TestClient,
    bearer,
    client,
    fill,
    local,
    post_ledger,
)
from v2ghub.api.app import create_app
from v2ghub.api.context import ApiContext
from v2ghub.live.live_state import LiveStatus
from v2ghub.store import schema
from v2ghub.store.repository import Store
from v2ghub.store.site_power import SitePowerRecord

NOON = local(12)
HISTORY = {"start": "2026-03-10T10:00:00+08:00", "end": "2026-03-10T11:00:00+08:00"}


@pytest.fixture
def filled(store: Store) -> Store:
    return fill(store)


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return post_ledger(tmp_path / "ledger.sqlite")


@pytest.fixture
def api(filled: Store, ledger_path: Path) -> TestClient:
    return client(filled, now=NOON, ledger_path=ledger_path, connected=lambda: frozenset({"S1"}))


def get(api: TestClient, path: str, who: str, **params: Any) -> Any:
    """The JSON body of a GET that must succeed."""
    response = api.get(path, params=params, headers=bearer(who))
    assert response.status_code == 200, response.text
    return response.json()


def refused(api: TestClient, path: str, who: str | None, **params: Any) -> tuple[int, Any]:
    """The status and the error's field of a GET that must fail."""
    response = api.get(path, params=params, headers=bearer(who) if who else {})
    assert response.status_code >= 400
    body = response.json()
    assert set(body) == {"detail", "field"}
    return response.status_code, body["field"]


# History ---------------------------------------------------------------------------------


def record(filled: Store) -> Store:
    """What the control loop recorded at its instants (:mod:`v2ghub.store.site_power`)."""
    rows = [
        ("depot", local(10), 10.0, 7.0),
        ("depot", local(10, 10), -3.0, 1.0),  # holds 15 min: a gap 10:25-10:40
        ("depot", local(10, 40), 9.0, 4.0),
        ("mall", local(10, 30), None, 2.0),  # no reading yet
        ("mall", local(10, 45), 11.0, 2.0),
    ]
    filled.record_site_power(
        [
            SitePowerRecord(site, at, measured, planned, 50.0, math.inf, 1)
            for site, at, measured, planned in rows
        ]
    )
    return filled


def test_history_is_the_mean_of_what_the_loop_recorded(filled: Store, ledger_path: Path) -> None:
    api = client(record(filled), now=NOON, ledger_path=ledger_path)
    body = get(api, "/api/v1/history", "admin", **HISTORY)
    assert body["interval_s"] == 900
    assert body["start"] == "2026-03-10T10:00:00+08:00"
    assert body["times"] == [f"2026-03-10T10:{m:02d}:00+08:00" for m in (0, 15, 30, 45)]
    depot, mall = body["sites"]
    assert depot["site_id"] == "depot"
    # 10 kW for 10 min then -3 for 5; -3 until its 15 min ran out at 10:25; 9 from 10:40.
    assert depot["measured_kw"] == [round((10 * 10 - 3 * 5) / 15, 3), -3, 9, 9]
    assert depot["planned_kw"] == [round((7 * 10 + 1 * 5) / 15, 3), 1, 4, 4]
    assert mall == {
        "site_id": "mall",
        "measured_kw": [None, None, None, 11],
        "planned_kw": [None, None, 2, 2],
    }


def test_history_averages_only_the_elapsed_part_of_an_interval(
    filled: Store, ledger_path: Path
) -> None:
    during = client(record(filled), now=local(10, 35), ledger_path=ledger_path)
    params = {"start": "2026-03-10T02:00:00Z", "end": "2026-03-10T10:40:00+08:00"}
    body = get(during, "/api/v1/history", "admin", **params)
    assert body["start"] == "2026-03-10T10:00:00+08:00"
    assert body["times"][-1] == "2026-03-10T10:30:00+08:00"  # 10 min long, 5 elapsed
    depot, mall = body["sites"]
    assert depot["measured_kw"] == [round(85 / 15, 3), -3, None]
    assert mall["planned_kw"] == [None, None, 2]
    later = get(during, "/api/v1/history", "admin", **HISTORY)
    assert later["sites"][1]["measured_kw"] == [None, None, None, None]  # 10:45 is to come


def test_history_shows_each_role_its_sites(filled: Store, ledger_path: Path) -> None:
    api = client(record(filled), now=NOON, ledger_path=ledger_path)
    depot_only = get(api, "/api/v1/history", "depot", **HISTORY)
    assert [site["site_id"] for site in depot_only["sites"]] == ["depot"]
    mall = get(api, "/api/v1/history", "admin", **HISTORY, site_id="mall")
    assert [site["site_id"] for site in mall["sites"]] == ["mall"]
    grid = get(api, "/api/v1/history", "grid", **HISTORY, interval_s=3600)
    assert [site["measured_kw"] for site in grid["sites"]] == [
        [round((10 * 10 - 3 * 15 + 9 * 15) / 40, 3)],
        [11],
    ]


Refusal = tuple[str | None, dict[str, Any], int, str | None]
"""(token, query, status, field)."""
HISTORY_REFUSALS: list[Refusal] = [
    (None, HISTORY, 401, None),
    ("nobody", HISTORY, 401, None),
    ("alice", HISTORY, 403, None),
    ("depot", {**HISTORY, "site_id": "mall"}, 403, "site_id"),
    ("admin", {**HISTORY, "site_id": "nowhere"}, 404, "site_id"),
    ("admin", {**HISTORY, "end": HISTORY["start"]}, 422, "end"),
    ("admin", {**HISTORY, "end": "2026-03-17T10:00:01+08:00"}, 422, "end"),
    (
        "admin",
        {**HISTORY, "end": "2026-03-17T10:00:00+08:00", "interval_s": 300},
        422,
        "interval_s",
    ),
    ("admin", {**HISTORY, "interval_s": 59}, 422, "interval_s"),
    ("admin", {**HISTORY, "start": "2026-03-10T10:00:00"}, 422, "start"),
    ("admin", {"end": HISTORY["end"]}, 422, "start"),
]


def test_history_refuses(api: TestClient, subtests: pytest.Subtests) -> None:
    for who, params, status, field in HISTORY_REFUSALS:
        with subtests.test(who=who, params=params):
            assert refused(api, "/api/v1/history", who, **params) == (status, field)


# Stations --------------------------------------------------------------------------------


def test_stations_with_their_evses_and_connection(api: TestClient) -> None:
    stations = get(api, "/api/v1/stations", "admin")
    assert [s["station_id"] for s in stations] == ["S1", "S2", "S3"]
    s1 = stations[0]
    assert s1 == {
        "station_id": "S1",
        "site_id": "depot",
        "connected": True,
        "ocpp_version": "ocpp2.1",
        "v2x_allowed": True,
        "max_power_kw": 11.0,
        "vendor": "Acme",
        "model": "V2G-11",
        "last_boot_at": "2026-03-10T08:00:00+08:00",
        "evses": [
            {"evse_id": 1, "status": "Occupied", "updated_at": "2026-03-10T09:40:00+08:00"},
            {"evse_id": 2, "status": "Available", "updated_at": "2026-03-10T08:00:00+08:00"},
        ],
    }
    assert stations[1]["connected"] is False
    assert stations[1]["evses"] == []
    assert [s["station_id"] for s in get(api, "/api/v1/stations", "depot")] == ["S1", "S2"]
    assert get(api, "/api/v1/stations/S3", "mall")["site_id"] == "mall"


STATION_REFUSALS: list[tuple[str, str | None, int, str | None]] = [
    ("/api/v1/stations", None, 401, None),
    ("/api/v1/stations", "grid", 403, None),
    ("/api/v1/stations", "alice", 403, None),
    ("/api/v1/stations/S1", "mall", 403, "site_id"),
    ("/api/v1/stations/S9", "admin", 404, "station_id"),
    ("/api/v1/stations/S1", "grid", 403, None),
]


def test_stations_refuse(api: TestClient, subtests: pytest.Subtests) -> None:
    for path, who, status, field in STATION_REFUSALS:
        with subtests.test(path=path, who=who):
            assert refused(api, path, who) == (status, field)


# Sessions --------------------------------------------------------------------------------


def test_sessions_with_needs_energy_and_what_the_owner_is_owed(api: TestClient) -> None:
    sessions = get(api, "/api/v1/sessions", "admin")
    assert [(s["station_id"], s["transaction_id"]) for s in sessions] == [
        ("S3", "T3"),
        ("S2", "T2"),
        ("S1", "T1"),
        ("S1", "T0"),
        ("S2", "T9"),
    ]
    by_id = {s["transaction_id"]: s for s in sessions}
    assert by_id["T1"] == {
        "station_id": "S1",
        "evse_id": 1,
        "transaction_id": "T1",
        "site_id": "depot",
        "owner_id": "alice",
        "started_at": "2026-03-10T09:40:00+08:00",
        "ended_at": None,
        "energy_asked_kwh": 40 - 0.5 * 60,
        "delivered_kwh": 1.8,
        "discharged_kwh": 0.3,
        "soc": None,
        "owed_cny": "1.23",  # -3.00 charging + 4.23 discharge share
    }
    assert by_id["T0"]["energy_asked_kwh"] == 50 - 0.2 * 50  # its own needs, not T1's
    assert by_id["T0"]["ended_at"] == "2026-03-10T09:30:00+08:00"
    assert by_id["T0"]["owed_cny"] == "-1.00"
    assert by_id["T9"]["owed_cny"] == "-1.20"  # over both days it spans
    assert by_id["T2"]["energy_asked_kwh"] is None  # no needs
    assert by_id["T3"]["owed_cny"] is None  # no ledger line
    assert by_id["T9"]["delivered_kwh"] == 8.0


def test_sessions_filters(api: TestClient) -> None:
    def ids(who: str, **params: Any) -> list[str]:
        return [s["transaction_id"] for s in get(api, "/api/v1/sessions", who, **params)]

    assert ids("alice") == ["T3", "T1", "T0"]
    assert ids("alice", owner_id="alice", site_id="depot") == ["T1", "T0"]
    assert ids("bob") == ["T2", "T9"]
    assert ids("dave") == []
    assert ids("depot") == ["T2", "T1", "T0", "T9"]
    assert ids("depot", owner_id="bob") == ["T2", "T9"]
    assert ids("mall") == ["T3"]
    assert ids("admin", site_id="mall") == ["T3"]
    assert ids("admin", open="true") == ["T3", "T1"]
    assert ids("admin", open="false") == ["T2", "T0", "T9"]
    assert ids("admin", since="2026-03-10T10:55:00+08:00") == ["T3", "T1"]
    assert ids("admin", since="2026-03-10T02:50:00Z") == ["T3", "T2", "T1"]
    assert ids("admin", limit=2) == ["T3", "T2"]
    one = get(api, "/api/v1/sessions/S1/T1", "alice")
    assert (one["transaction_id"], one["owed_cny"]) == ("T1", "1.23")
    assert get(api, "/api/v1/sessions/S2/T2", "depot")["delivered_kwh"] == 2.0


def test_sessions_owe_nothing_without_a_ledger(filled: Store, tmp_path: Path) -> None:
    for ledger_path in (None, tmp_path / "missing.sqlite"):
        no_ledger = client(filled, now=NOON, ledger_path=ledger_path)
        sessions = get(no_ledger, "/api/v1/sessions", "admin")
        assert [s["owed_cny"] for s in sessions] == [None] * 5


SESSION_REFUSALS: list[tuple[str, str | None, dict[str, Any], int, str | None]] = [
    ("/api/v1/sessions", None, {}, 401, None),
    ("/api/v1/sessions", "grid", {}, 403, None),
    ("/api/v1/sessions", "alice", {"owner_id": "bob"}, 403, "owner_id"),
    ("/api/v1/sessions", "depot", {"site_id": "mall"}, 403, "site_id"),
    ("/api/v1/sessions", "admin", {"since": "2026-03-10T10:00:00"}, 422, "since"),
    ("/api/v1/sessions", "admin", {"limit": 0}, 422, "limit"),
    ("/api/v1/sessions", "admin", {"open": "maybe"}, 422, "open"),
    ("/api/v1/sessions/S2/T2", "alice", {}, 403, "transaction_id"),
    ("/api/v1/sessions/S3/T3", "depot", {}, 403, "site_id"),
    ("/api/v1/sessions/S1/T1", "grid", {}, 403, None),
    ("/api/v1/sessions/S1/T7", "admin", {}, 404, None),
]


def test_sessions_refuse(api: TestClient, subtests: pytest.Subtests) -> None:
    for path, who, params, status, field in SESSION_REFUSALS:
        with subtests.test(path=path, who=who, params=params):
            assert refused(api, path, who, **params) == (status, field)


# Statements ------------------------------------------------------------------------------


def test_an_owners_statement_is_its_own_sessions_lines(api: TestClient) -> None:
    body = get(api, "/api/v1/statements", "alice", day="2026-03-10")
    assert body["scope"] == "2026-03-10"
    assert body["party"] is None
    assert body["periods"] == ["2026-03-10/Shenzhen/live"]
    assert [(line["party"], line["kind"], line["amount_cny"]) for line in body["lines"]] == [
        ("owner:S1/T0", "charging", "-1.00"),
        ("owner:S1/T1", "charging", "-3.00"),
        ("owner:S1/T1", "discharge:owner", "4.23"),
    ]
    assert body["lines"][1]["energy_kwh"] == "1.800"
    assert body["lines"][1]["counterparty"] == "operator:depot"
    assert body["net_cny"] == {"owner:S1/T0": "-1.00", "owner:S1/T1": "1.23"}
    assert body["totals"] == [
        {"party": "owner:S1/T0", "stream": "charging", "received_cny": "0.00", "paid_cny": "1.00"},
        {"party": "owner:S1/T1", "stream": "charging", "received_cny": "0.00", "paid_cny": "3.00"},
        {"party": "owner:S1/T1", "stream": "discharge", "received_cny": "4.23", "paid_cny": "0.00"},
    ]
    one = get(api, "/api/v1/statements", "alice", day="2026-03-10", party="owner:S1/T1")
    assert one["party"] == "owner:S1/T1"
    assert one["net_cny"] == {"owner:S1/T1": "1.23"}
    month = get(api, "/api/v1/statements", "bob", month="2026-03")
    assert month["periods"] == ["2026-03-09/Shenzhen/live", "2026-03-10/Shenzhen/live"]
    assert month["net_cny"] == {"owner:S2/T2": "-2.00", "owner:S2/T9": "-1.20"}


def test_statements_of_operators_the_grid_and_admin(api: TestClient) -> None:
    depot = get(api, "/api/v1/statements", "depot", day="2026-03-10", party="operator:depot")
    assert depot["net_cny"] == {"operator:depot": "6.70"}  # 1.00 + 3.00 + 2.00 + 0.70
    grid = get(api, "/api/v1/statements", "grid", month="2026-03")
    assert (grid["party"], grid["net_cny"]) == ("grid", {"grid": "-6.00"})
    every = get(api, "/api/v1/statements", "admin", day="2026-03-10")
    assert every["net_cny"] == {
        "aggregator": "1.77",
        "grid": "-6.00",
        "operator:depot": "6.70",
        "owner:S1/T0": "-1.00",
        "owner:S1/T1": "1.23",
        "owner:S2/T2": "-2.00",
        "owner:S2/T9": "-0.70",
    }
    assert len(every["lines"]) == 12  # each line once for its payer and once for its payee


STATEMENT_REFUSALS: list[Refusal] = [
    (None, {"day": "2026-03-10"}, 401, None),
    ("alice", {"day": "2026-03-10", "party": "owner:S2/T2"}, 403, "party"),
    ("depot", {"day": "2026-03-10", "party": "operator:mall"}, 403, "party"),
    ("depot", {"day": "2026-03-10"}, 422, "party"),
    ("grid", {"day": "2026-03-10", "party": "aggregator"}, 403, "party"),
    ("admin", {}, 422, "day"),
    ("admin", {"day": "2026-03-10", "month": "2026-03"}, 422, "day"),
    ("admin", {"day": "2026-02-30"}, 422, "day"),
    ("admin", {"month": "2026-3"}, 422, "month"),
    ("admin", {"day": "2026-03-11"}, 404, "day"),
    ("admin", {"day": "2026-03-10", "party": "owner:S9/T9"}, 404, "party"),
    ("dave", {"day": "2026-03-10"}, 404, "party"),
]


def test_statements_refuse(api: TestClient, subtests: pytest.Subtests) -> None:
    for who, params, status, field in STATEMENT_REFUSALS:
        with subtests.test(who=who, params=params):
            assert refused(api, "/api/v1/statements", who, **params) == (status, field)


def test_statements_need_a_ledger(filled: Store) -> None:
    no_ledger = client(filled, now=NOON)
    assert refused(no_ledger, "/api/v1/statements", "admin", day="2026-03-10") == (404, None)


# Today -----------------------------------------------------------------------------------


TODAY: list[tuple[str, float, float, int, dict[str, str]]] = [
    # T9 4.0 (half of its 8 kWh falls after midnight), T0 2.0, T1 1.8, T2 2.0, T3 0.6.
    ("admin", 10.4, 0.3, 5, {"discharge": "1.77"}),  # the aggregator's
    ("grid", 10.4, 0.3, 5, {"discharge": "-6.00"}),
    ("depot", 9.8, 0.3, 4, {"charging": "6.70"}),
    ("mall", 0.6, 0.0, 1, {}),
    ("alice", 4.4, 0.3, 3, {"charging": "-4.00", "discharge": "4.23"}),
    ("bob", 6.0, 0.0, 2, {"charging": "-2.70"}),
]


def test_today_so_far(api: TestClient, subtests: pytest.Subtests) -> None:
    for who, charged_kwh, discharged_kwh, sessions, money in TODAY:
        with subtests.test(who=who):
            body = get(api, "/api/v1/today", who)
            assert body["day"] == "2026-03-10"
            assert body["charged_kwh"] == pytest.approx(charged_kwh, abs=1e-9)
            assert body["discharged_kwh"] == pytest.approx(discharged_kwh, abs=1e-9)
            assert body["sessions"] == sessions
            assert body["settled"] is True
            assert {m["stream"]: m["amount_cny"] for m in body["money"]} == money


def test_today_before_it_is_settled(filled: Store, ledger_path: Path) -> None:
    next_day = client(filled, now=local(9, day=11), ledger_path=ledger_path)
    body = get(next_day, "/api/v1/today", "admin")
    assert body == {
        "day": "2026-03-11",
        "charged_kwh": 0.0,  # T1 and T3 are open but metered nothing since midnight
        "discharged_kwh": 0.0,
        "sessions": 2,
        "settled": False,
        "money": [],
    }
    assert refused(next_day, "/api/v1/today", None) == (401, None)


def test_the_recent_history_is_read_from_memory_and_equals_the_stored_one(
    filled: Store, ledger_path: Path
) -> None:
    stored = get(
        client(record(filled), now=NOON, ledger_path=ledger_path), *HISTORY_CALL, **HISTORY
    )
    status = LiveStatus()
    # The server started at 9:00; then the loop recorded the instants of record().
    status.power_log.append([SitePowerRecord("depot", local(9), 1.0, 1.0, 50.0, math.inf, 1)])
    rows = sorted(
        (
            SitePowerRecord(
                series.site_id,
                local(0) + timedelta(seconds=float(at_s)),
                None if math.isnan(measured) else float(measured),
                float(planned),
                50.0,
                math.inf,
                1,
            )
            for series in filled.site_power(start=local(0), end=NOON, origin=local(0))
            for at_s, measured, planned in zip(
                series.at_s, series.measured_kw, series.planned_kw, strict=True
            )
        ),
        key=lambda row: row.at,
    )
    for row in rows:
        status.power_log.append([row])
    api = ApiContext(store=filled, clock=FixedClock(NOON), timezone=SHANGHAI, status=status)
    assert status.power_log.covers(local(9, 45))
    restarted = LiveStatus()  # a server started at noon remembers the stored morning
    restarted.power_log.prime(filled.site_power_records(since=local(0)), since=local(0))
    with filled.engine.begin() as connection:  # gone from the database: only memory has it
        connection.execute(schema.site_power.delete())
    assert get(TestClient(create_app(api)), *HISTORY_CALL, **HISTORY) == stored
    api = replace(api, status=restarted)
    assert get(TestClient(create_app(api)), *HISTORY_CALL, **HISTORY) == stored
    assert not status.power_log.covers(local(8, 59))


HISTORY_CALL = ("/api/v1/history", "admin")
