"""The web API's live regulation (``/api/v1/grid/regulation``), on SQLite and PostgreSQL.

A day in Shanghai (2026-03-10), now 12:30: 10 kW committed from 11:00 to 13:00, one V2X
EVSE (S1/T1 at site depot) given a share of all of it (baseline 5 kW, 10 kW per unit of
signal each way) that follows the signal exactly, its power read every 4 s; the signal
changes every minute. The hour 11:00-12:00 is whole and scored; 12:00-12:30 is drawn.

The live side is a real :class:`SignalBroadcaster` and :class:`GridServices` on an event
loop of the test's own (standing for the OCPP server's), reached through a
:class:`ControlLink` as ``serve`` reaches it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.api_helpers import SHANGHAI, FixedClock, TestClient, add_tokens, bearer, local
from v2ghub.api.app import create_app
from v2ghub.api.context import ApiContext, ControlLink
from v2ghub.live.grid_services import GridServices
from v2ghub.live.outcomes import ACCEPTED, SendOutcome
from v2ghub.live.regulation_shares import RegulationAssignment
from v2ghub.live.regulation_signal import SignalBroadcaster
from v2ghub.regulation.live_score import live_regulation_hours
from v2ghub.store import schema
from v2ghub.store.records import EventKind, MeterSample
from v2ghub.store.regulation import RegulationMode, Share, SignalSample
from v2ghub.store.repository import Store

NOW = local(12, 30)
COMMITTED = (local(11), local(13))
CAPACITY_KW = 10.0
BASELINE_KW = 5.0
READING_S = 4
SIGNAL_STEP_S = 60
BASE = "/api/v1/grid/regulation"


def signal_at(at: datetime) -> float:
    """The test's signal: a new value every minute, within -0.5..0.5."""
    minute = int((at - COMMITTED[0]).total_seconds() // SIGNAL_STEP_S)
    return round(0.5 * math.sin(0.7 * minute), 3)


def fill_regulation(store: Store) -> int:
    """The commitment, the signal, S1/T1's share and its power readings; the commitment's
    id."""
    add_tokens(store)
    store.add_station("S1", site_id="depot", password_hash="x", v2x_allowed=True)
    started = local(10, 50)
    store.transaction_event(
        station_id="S1",
        evse_id=1,
        transaction_id="T1",
        event_type="Started",
        seq_no=0,
        at=started,
        trigger_reason="CablePluggedIn",
        samples=[MeterSample("S1", "T1", 0, started, 0, 0, power_kw=0.0)],
    )
    commitment_id = store.add_commitment(
        starts_at=COMMITTED[0],
        ends_at=COMMITTED[1],
        capacity_kw=CAPACITY_KW,
        source="api:grid",
        at=local(10),
    )
    minutes = int((NOW - COMMITTED[0]).total_seconds() // SIGNAL_STEP_S)
    store.add_signals(
        [_sample(COMMITTED[0] + timedelta(seconds=SIGNAL_STEP_S * k)) for k in range(minutes + 1)],
        source="file:test",
        at=local(10),
    )
    store.record_shares(
        [
            Share(
                mode=RegulationMode.CENTRAL_FREQUENCY,
                commitment_id=commitment_id,
                station_id="S1",
                evse_id=1,
                transaction_id="T1",
                from_at=local(10, 55),
                baseline_kw=BASELINE_KW,
                raise_share_kw=CAPACITY_KW,
                lower_share_kw=CAPACITY_KW,
                status="Accepted",
            )
        ]
    )
    readings = []
    at = COMMITTED[0]
    k = 1
    while at <= NOW:
        power_kw = BASELINE_KW + CAPACITY_KW * signal_at(at)
        readings.append(MeterSample("S1", "T1", -1, at, k, 0, power_kw=power_kw))
        at += timedelta(seconds=READING_S)
        k += 1
    store.add_meter_values("S1", 1, readings, at=NOW)
    return commitment_id


def _sample(at: datetime) -> SignalSample:
    return SignalSample(at, signal_at(at))


@dataclass
class Live:
    """The test's stand-in for the server's side: its event loop, the control loop's
    trigger, the grid services with a real broadcaster."""

    loop: asyncio.AbstractEventLoop
    services: GridServices
    broadcaster: SignalBroadcaster
    triggers: list[str] = field(default_factory=list)

    def run_handed(self) -> None:
        """Run what the web thread handed to the loop."""
        self.loop.run_until_complete(asyncio.sleep(0))


@pytest.fixture
def live(store: Store) -> Iterator[Live]:
    loop = asyncio.new_event_loop()

    async def call_station(
        station_id: str, payload: object, *, validated: bool = False
    ) -> SendOutcome:
        return ACCEPTED

    broadcaster = SignalBroadcaster(clock=FixedClock(NOW), call_station=call_station, store=store)
    yield Live(loop, GridServices(store, broadcaster=broadcaster), broadcaster)
    loop.close()


@pytest.fixture
def api(store: Store, live: Live) -> TestClient:
    context = ApiContext(
        store=store,
        clock=FixedClock(NOW),
        timezone=SHANGHAI,
        control=ControlLink(live.loop, live.triggers.append, grid_services=live.services),
    )
    return TestClient(create_app(context))


# Roles ----------------------------------------------------------------------------------------


def test_owners_may_do_nothing_and_operators_only_read(api: TestClient, store: Store) -> None:
    add_tokens(store)
    body = {"samples": [{"at": "2026-03-10T12:30:00+08:00", "signal": 0.5}]}
    commitment = {
        "starts_at": "2026-03-10T14:00:00+08:00",
        "ends_at": "2026-03-10T15:00:00+08:00",
        "capacity_kw": 5,
    }
    writes = [
        ("POST", f"{BASE}/signal", body),
        ("POST", f"{BASE}/commitments", commitment),
        ("DELETE", f"{BASE}/commitments/1", None),
    ]
    reads = [BASE, f"{BASE}/commitments", f"{BASE}/response"]
    for name, allowed in (("alice", False), ("depot", True)):
        for method, path, document in writes:
            answer = api.request(method, path, json=document, headers=bearer(name))
            assert answer.status_code == 403, (name, path)
            assert "may not do this (only admin, grid)" in answer.json()["detail"]
        for path in reads:
            answer = api.get(path, headers=bearer(name))
            assert answer.status_code == (200 if allowed else 403), (name, path, answer.text)
    for method, path, document in writes:
        assert api.request(method, path, json=document).status_code == 401
    assert store.signals(start=local(0), end=local(23)) == []
    assert store.commitments() == []


# The signal ----------------------------------------------------------------------------------


def test_a_posted_signal_is_recorded_and_handed_to_the_broadcaster(
    api: TestClient, store: Store, live: Live
) -> None:
    add_tokens(store)
    body = {
        "samples": [
            {"at": "2026-03-10T12:29:58+08:00", "signal": -0.25},
            {"at": "2026-03-10T04:30:00Z", "signal": 0.75},
            {"at": "2026-03-10T12:30:02+08:00", "signal": 1},
        ]
    }
    answer = api.post(f"{BASE}/signal", json=body, headers=bearer("grid"))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "recorded": 3,
        "broadcast": True,
        "signal_now": 0.75,
        "signal_now_at": "2026-03-10T12:30:00+08:00",
    }
    stored = store.signals(start=local(12), end=local(13))
    assert [(s.at, s.signal) for s in stored] == [
        (local(12, 29) + timedelta(seconds=58), -0.25),
        (NOW, 0.75),
        (NOW + timedelta(seconds=2), 1.0),
    ]
    assert live.broadcaster.signal_at(NOW) == (0.0, "none")  # not on the loop yet
    live.run_handed()
    assert live.broadcaster.signal_at(NOW) == (0.75, "api")
    assert live.broadcaster.signal_at(NOW + timedelta(seconds=3)) == (1.0, "api")


@pytest.mark.parametrize(
    "case",
    [
        ({"at": "2026-03-10T12:30:00", "signal": 0.5}, "samples.1.at", "timezone"),
        ({"at": "2026-03-10T12:30:00+08:00", "signal": 1.5}, "samples.1.signal", "less than"),
        ({"at": "2026-03-10T12:30:00+08:00", "signal": -1.01}, "samples.1.signal", "greater"),
        ({"at": "yesterday", "signal": 0.1}, "samples.1.at", "datetime"),
        ({"at": "2026-03-10T12:30:00+08:00"}, "samples.1.signal", "required"),
        ({"at": "2026-03-10T12:30:00+08:00", "signal": 0, "x": 1}, "samples.1.x", "Extra"),
    ],
)
def test_a_bad_sample_is_refused_naming_it_and_nothing_is_recorded(
    api: TestClient,
    store: Store,
    live: Live,
    case: tuple[dict[str, object], str, str],
) -> None:
    """``case``: the second sample, the field named, a word of the message."""
    sample, field, message = case
    add_tokens(store)
    good = {"at": "2026-03-10T12:29:00+08:00", "signal": 0.2}
    answer = api.post(f"{BASE}/signal", json={"samples": [good, sample]}, headers=bearer("grid"))
    assert answer.status_code == 422
    assert answer.json()["field"] == field
    assert answer.json()["detail"].startswith(f"{field}: ")
    assert message in answer.json()["detail"]
    assert store.signals(start=local(0), end=local(23)) == []
    live.run_handed()
    assert live.broadcaster.signal_at(NOW) == (0.0, "none")


def test_an_empty_or_too_long_body_is_refused(api: TestClient, store: Store) -> None:
    add_tokens(store)
    empty = api.post(f"{BASE}/signal", json={"samples": []}, headers=bearer("admin"))
    assert (empty.status_code, empty.json()["field"]) == (422, "samples")
    sample = {"at": "2026-03-10T12:29:00+08:00", "signal": 0.2}
    many = api.post(f"{BASE}/signal", json={"samples": [sample] * 1001}, headers=bearer("admin"))
    assert (many.status_code, many.json()["field"]) == (422, "samples")
    assert "at most 1000" in many.json()["detail"]
    assert store.signals(start=local(0), end=local(23)) == []


def test_without_a_control_loop_the_signal_is_recorded_only(store: Store) -> None:
    add_tokens(store)
    context = ApiContext(store=store, clock=FixedClock(NOW), timezone=SHANGHAI)
    answer = TestClient(create_app(context)).post(
        f"{BASE}/signal",
        json={"samples": [{"at": "2026-03-10T12:00:00+08:00", "signal": -1}]},
        headers=bearer("admin"),
    )
    assert answer.status_code == 200
    assert answer.json()["broadcast"] is False
    assert answer.json()["signal_now"] == -1.0
    assert _sources(store) == ["api:admin"]


def _sources(store: Store) -> list[str]:
    """Who recorded each signal sample (no Store method reads it)."""
    with store.engine.connect() as connection:
        return [row.source for row in connection.execute(sa.select(schema.regulation_signals))]


# Commitments ---------------------------------------------------------------------------------


def test_commitments_are_made_listed_and_cancelled_and_each_write_logged(
    api: TestClient, store: Store, live: Live
) -> None:
    add_tokens(store)
    made = api.post(
        f"{BASE}/commitments",
        json={
            "starts_at": "2026-03-10T13:00:00+08:00",
            "ends_at": "2026-03-10T07:00:00Z",
            "capacity_kw": 25.5,
            "external_id": "AGC-42",
        },
        headers=bearer("grid"),
    )
    assert made.status_code == 201, made.text
    document = made.json()
    commitment_id = document.pop("commitment_id")
    assert document == {
        "starts_at": "2026-03-10T13:00:00+08:00",
        "ends_at": "2026-03-10T15:00:00+08:00",
        "capacity_kw": 25.5,
        "source": "api:grid",
        "external_id": "AGC-42",
        "recorded_at": "2026-03-10T12:30:00+08:00",
        "cancelled_at": None,
        "cancelled_by": None,
        "in_force": False,
    }
    live.run_handed()
    assert live.triggers == [f"regulation commitment {commitment_id} made"]

    listed = api.get(f"{BASE}/commitments", headers=bearer("depot")).json()
    assert [c["commitment_id"] for c in listed] == [commitment_id]
    before = api.get(
        f"{BASE}/commitments",
        params={"start": "2026-03-10T10:00:00+08:00", "end": "2026-03-10T13:00:00+08:00"},
        headers=bearer("depot"),
    ).json()
    assert before == []

    cancelled = api.delete(f"{BASE}/commitments/{commitment_id}", headers=bearer("admin"))
    assert cancelled.status_code == 200
    assert cancelled.json()["cancelled_by"] == "api:admin"
    assert cancelled.json()["cancelled_at"] == "2026-03-10T12:30:00+08:00"
    again = api.delete(f"{BASE}/commitments/{commitment_id}", headers=bearer("admin"))
    assert again.status_code == 409
    assert again.json() == {
        "detail": f"regulation commitment {commitment_id} is already cancelled",
        "field": "commitment_id",
    }
    missing = api.delete(f"{BASE}/commitments/999", headers=bearer("grid"))
    assert (missing.status_code, missing.json()["detail"]) == (
        404,
        "no regulation commitment 999",
    )
    live.run_handed()
    assert live.triggers[1:] == [f"regulation commitment {commitment_id} cancelled"]
    hidden = api.get(
        f"{BASE}/commitments", params={"include_cancelled": "false"}, headers=bearer("grid")
    )
    assert hidden.json() == []
    logged = store.events(kind=EventKind.API_WRITE)
    assert [(e.actor, e.detail) for e in reversed(logged)] == [
        (
            "grid",
            f"regulation commitment {commitment_id}: 25.5 kW from "
            "2026-03-10T13:00:00+08:00 to 2026-03-10T15:00:00+08:00",
        ),
        ("admin", f"regulation commitment {commitment_id} cancelled"),
    ]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"ends_at": "2026-03-10T13:00:00+08:00"}, "ends_at", "is not after starts_at"),
        (
            {"starts_at": "2026-03-10T11:00:00+08:00", "ends_at": "2026-03-10T12:00:00+08:00"},
            "ends_at",
            "has passed",
        ),
        ({"capacity_kw": 0}, "capacity_kw", "greater than 0"),
        ({"starts_at": "2026-03-10T14:00:00"}, "starts_at", "timezone"),
    ],
)
def test_a_bad_commitment_is_refused_naming_the_field(
    api: TestClient, store: Store, change: dict[str, object], field: str, message: str
) -> None:
    add_tokens(store)
    body = {
        "starts_at": "2026-03-10T13:00:00+08:00",
        "ends_at": "2026-03-10T14:00:00+08:00",
        "capacity_kw": 5,
    } | change
    answer = api.post(f"{BASE}/commitments", json=body, headers=bearer("grid"))
    assert answer.status_code == 422
    assert answer.json()["field"] == field
    assert message in answer.json()["detail"]
    assert store.commitments() == []
    assert store.events(kind=EventKind.API_WRITE) == []


# The state, the score and the response -----------------------------------------------------------


def test_regulation_now_shows_the_commitment_the_shares_the_broadcast_and_the_score(
    api: TestClient, store: Store, live: Live
) -> None:
    commitment_id = fill_regulation(store)
    commitment = store.commitment_in_force(NOW)
    live.services.latest = RegulationAssignment(
        commands=[],
        mode=RegulationMode.CENTRAL_FREQUENCY,
        capacity_kw=CAPACITY_KW,
        participants=1,
        raise_kw=9.5,
        lower_kw=8.0,
        left_out_kw=3.25,
    )
    live.broadcaster.commit(commitment)
    live.broadcaster.set_participants(frozenset({"S1"}))
    assert live.loop.run_until_complete(live.broadcaster.step(NOW)) == 1
    live.loop.run_until_complete(live.broadcaster.settle())  # the station answered

    answer = api.get(BASE, headers=bearer("grid"))
    assert answer.status_code == 200, answer.text
    document = answer.json()
    hours = document.pop("hours")
    assert document == {
        "at": "2026-03-10T12:30:00+08:00",
        "commitment": {
            "commitment_id": commitment_id,
            "starts_at": "2026-03-10T11:00:00+08:00",
            "ends_at": "2026-03-10T13:00:00+08:00",
            "capacity_kw": CAPACITY_KW,
            "source": "api:grid",
            "external_id": None,
            "recorded_at": "2026-03-10T10:00:00+08:00",
            "cancelled_at": None,
            "cancelled_by": None,
            "in_force": True,
        },
        "mode": "CentralFrequency",
        "capacity_kw": CAPACITY_KW,
        "participants": 1,
        "following_stations": 1,
        "raise_kw": 9.5,
        "lower_kw": 8.0,
        "left_out_kw": 3.25,
        "last_signal": 0.0,  # nothing posted, no file: the broadcaster sends 0
        "last_signal_at": "2026-03-10T12:30:00+08:00",
        "broadcasts": 1,
        "messages": 1,
        "answers": {"Accepted": 1},
        "live": True,
    }
    # The whole hour 11:00-12:00, followed exactly; 12:00-13:00 has not ended.
    (expected,) = live_regulation_hours(store, local(11), local(12), timezone="Asia/Shanghai")
    assert len(hours) == 1
    hour = hours[0]
    assert hour["start"] == "2026-03-10T11:00:00+08:00"
    assert hour["commitment_id"] == commitment_id
    for name in ("correlation", "delay", "precision", "composite", "mileage_mw"):
        assert hour[name] == pytest.approx(getattr(expected, name)), name
    assert hour["composite"] == pytest.approx(1.0)
    assert hour["delay_s"] == 0.0
    assert hour["evse_count"] == 1
    assert hour["reporting_share"] == 1.0
    assert hour["mileage_mw"] > 0
    # The hour ended more than a minute ago: its score is kept, not made again.
    context: ApiContext = api.app.state.api  # type: ignore[attr-defined]
    assert list(context.regulation_hours) == [(commitment_id, local(11).astimezone(UTC))]
    again = api.get(BASE, headers=bearer("depot")).json()
    assert again["hours"] == hours


def test_without_a_control_loop_regulation_now_reads_the_store_only(store: Store) -> None:
    fill_regulation(store)
    context = ApiContext(store=store, clock=FixedClock(NOW), timezone=SHANGHAI)
    document = TestClient(create_app(context)).get(BASE, headers=bearer("admin")).json()
    assert document["live"] is False
    assert document["commitment"]["capacity_kw"] == CAPACITY_KW
    assert (document["mode"], document["participants"], document["broadcasts"]) == (None, 0, 0)
    assert [h["composite"] for h in document["hours"]] == [pytest.approx(1.0)]


def test_the_response_follows_the_signal_on_the_score_grid(api: TestClient, store: Store) -> None:
    fill_regulation(store)
    current = api.get(f"{BASE}/response", headers=bearer("depot"))
    assert current.status_code == 200, current.text
    document = current.json()
    assert (document["start"], document["end"], document["stride"]) == (
        "2026-03-10T12:00:00+08:00",
        "2026-03-10T12:30:00+08:00",
        1,
    )
    (segment,) = document["segments"]
    assert segment["first_at"] == "2026-03-10T12:00:00+08:00"
    assert segment["step_s"] == 2.0
    assert len(segment["signal"]) == 900  # 30 min at 2 s
    first = local(12)
    assert segment["signal"][:31:30] == [signal_at(first), signal_at(first + timedelta(minutes=1))]
    assert segment["response"] == pytest.approx(segment["signal"], abs=1e-9)

    window = api.get(
        f"{BASE}/response",
        params={"start": "2026-03-10T10:30:00+08:00", "end": "2026-03-10T14:00:00+08:00"},
        headers=bearer("grid"),
    ).json()
    assert window["stride"] == 2  # 11:00-12:30 is 2,700 samples
    assert [s["first_at"] for s in window["segments"]] == [
        "2026-03-10T11:00:00+08:00",
        "2026-03-10T12:00:00+08:00",
    ]
    assert [len(s["signal"]) for s in window["segments"]] == [900, 450]
    assert all(s["step_s"] == 4.0 for s in window["segments"])
    assert sum(len(s["response"]) for s in window["segments"]) <= 2000


def test_a_bad_response_window_is_refused(api: TestClient, store: Store) -> None:
    add_tokens(store)
    for params, message in (
        ({"start": "2026-03-10T12:00:00"}, "start must have a UTC offset"),
        ({"start": "2026-03-09T11:00:00+08:00"}, "at most 24 hours"),
        (
            {"start": "2026-03-10T12:00:00+08:00", "end": "2026-03-10T11:00:00+08:00"},
            "is not after start",
        ),
    ):
        answer = api.get(f"{BASE}/response", params=params, headers=bearer("grid"))
        assert answer.status_code == 422, params
        assert message in answer.json()["detail"]
    nothing = api.get(f"{BASE}/response", headers=bearer("grid")).json()
    assert nothing["segments"] == []
