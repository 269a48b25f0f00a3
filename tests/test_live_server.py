"""The OCPP server over a real loopback websocket: who may connect, what is refused, and
that what a station is told was stored is stored."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from v2ghub.live.clock import ScaledClock
from v2ghub.live.control import SetpointCommand
from v2ghub.live.outcomes import ACCEPTED
from v2ghub.live.security import basic_header, hash_password
from v2ghub.live.server import CsmsServer, ServerSettings, profile_id
from v2ghub.store.records import EventKind, OcppVersion
from v2ghub.store.repository import Store

NOON = datetime(2026, 7, 1, 4, 0, tzinfo=UTC)  # 12:00 in Shenzhen
PASSWORD = "correct-horse-battery-staple-0123"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = Store.open(data_dir=tmp_path / "data")
    opened.add_station(
        "CP-21", site_id="s1", password_hash=hash_password(PASSWORD), v2x_allowed=True
    )
    opened.add_station("CP-201", site_id="s1", password_hash=hash_password(PASSWORD))
    return opened


@pytest.fixture
async def server(store: Store, tmp_path: Path) -> AsyncIterator[CsmsServer]:
    settings = ServerSettings(
        host="127.0.0.1", port=0, tls_folder=tmp_path / "tls", call_timeout_s=5
    )
    async with CsmsServer(store, settings, clock=ScaledClock(NOON)) as running:
        yield running
    store.close()


def _connect(
    server: CsmsServer,
    station_id: str,
    *,
    password: str = PASSWORD,
    subprotocol: str = "ocpp2.1",
    user: str | None = None,
) -> Any:
    return connect(
        f"{server.url}/ocpp/{station_id}",
        subprotocols=[Subprotocol(subprotocol)],
        additional_headers={"Authorization": basic_header(user or station_id, password)},
    )


async def _call(
    ws: ClientConnection, unique_id: str, action: str, payload: dict[str, Any]
) -> list[Any]:
    await ws.send(json.dumps([2, unique_id, action, payload]))
    answer: list[Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return answer


def _event(
    seq_no: int, import_wh: int, export_wh: int = 0, event_type: str = "Updated"
) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "timestamp": "2026-07-01T04:00:00Z",
        "triggerReason": "MeterValuePeriodic" if event_type == "Updated" else "CablePluggedIn",
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": "T-1"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [
            {
                "timestamp": "2026-07-01T04:00:00Z",
                "sampledValue": [
                    {"value": import_wh, "measurand": "Energy.Active.Import.Register"},
                    {"value": export_wh, "measurand": "Energy.Active.Export.Register"},
                ],
            }
        ],
    }


async def test_boot_and_heartbeat_on_both_versions(server: CsmsServer, store: Store) -> None:
    for station_id, version in (("CP-21", "ocpp2.1"), ("CP-201", "ocpp2.0.1")):
        async with _connect(server, station_id, subprotocol=version) as ws:
            assert ws.subprotocol == version
            boot = await _call(
                ws,
                "b1",
                "BootNotification",
                {"reason": "PowerUp", "chargingStation": {"model": "X1", "vendorName": "Acme"}},
            )
            assert boot[:2] == [3, "b1"]
            assert boot[2]["status"] == "Accepted"
            assert boot[2]["interval"] == 300
            beat = await _call(ws, "h1", "Heartbeat", {})
            assert datetime.fromisoformat(beat[2]["currentTime"]) >= NOON
        recorded = store.station(station_id)
        assert recorded is not None
        assert recorded.ocpp_version is not None
        assert recorded.ocpp_version.value == version
        assert (recorded.vendor, recorded.model) == ("Acme", "X1")


@pytest.mark.parametrize(
    ("credentials", "status", "why"),
    [
        # An unknown id gets the answer a wrong password gets: ids cannot be probed.
        (("CP-99", PASSWORD, None), 401, "unknown station id 'CP-99'"),
        (("CP-21", "wrong-password-wrong-password", None), 401, "wrong station id or password"),
        (("CP-21", PASSWORD, "CP-201"), 401, "wrong station id or password"),
    ],
)
async def test_refused_handshakes_are_logged(
    server: CsmsServer,
    store: Store,
    credentials: tuple[str, str, str | None],
    status: int,
    why: str,
) -> None:
    station_id, password, user = credentials
    with pytest.raises(InvalidStatus) as refused:
        async with _connect(server, station_id, password=password, user=user):
            pass
    assert refused.value.response.status_code == status
    events = store.events(kind=EventKind.CONNECTION_REFUSED)
    assert [event.detail for event in events] == [why]


async def test_refusals_are_logged_once_a_minute_not_per_attempt(
    server: CsmsServer, store: Store
) -> None:
    for _ in range(5):
        with pytest.raises(InvalidStatus):
            async with _connect(server, "CP-21", password="wrong-password-wrong-password"):
                pass
        with pytest.raises(InvalidStatus):
            async with _connect(server, f"CP-{_}00"):  # a different unknown id each time
                pass
    details = sorted(event.detail for event in store.events(kind=EventKind.CONNECTION_REFUSED))
    assert details == ["unknown station id 'CP-000'", "wrong station id or password"]


async def test_no_credentials_and_no_subprotocol_are_refused(server: CsmsServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{server.url}/CP-21", subprotocols=[Subprotocol("ocpp2.1")]):
            pass
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as refused:
        async with _connect(server, "CP-21", subprotocol="ocpp1.5"):
            pass
    assert refused.value.response.status_code == 400


async def test_a_second_connection_is_refused_not_a_takeover(
    server: CsmsServer, store: Store
) -> None:
    async with _connect(server, "CP-21") as first:
        with pytest.raises(InvalidStatus) as refused:
            async with _connect(server, "CP-21"):
                pass
        assert refused.value.response.status_code == 409
        # The first connection still works.
        beat = await _call(first, "h2", "Heartbeat", {})
        assert beat[0] == 3
    details = [event.detail for event in store.events(kind=EventKind.CONNECTION_REFUSED)]
    assert details == ["station is already connected; the new connection is refused"]


async def test_malformed_frames_get_call_errors_and_the_connection_stays(
    server: CsmsServer,
) -> None:
    async with _connect(server, "CP-21") as ws:
        await ws.send("this is not json")
        assert json.loads(await ws.recv())[:3] == [4, "-1", "FormatViolation"]
        await ws.send(json.dumps([2, "x1", "Heartbeat"]))  # payload missing
        error = json.loads(await ws.recv())
        assert error[:2] == [4, "x1"]
        await ws.send(json.dumps([2, "x2", "BootNotification", {"reason": 7}]))
        error = json.loads(await ws.recv())
        assert error[:2] == [4, "x2"]
        assert error[2] in (
            "FormatViolation",
            "TypeConstraintViolation",
            "OccurrenceConstraintViolation",
        )
        await ws.send(json.dumps([2, "x3", "NoSuchAction", {}]))
        error = json.loads(await ws.recv())
        assert error[:3] == [4, "x3", "NotSupported"]
        await ws.send(json.dumps([2, "x4", "Reset", {"type": "Immediate"}]))  # a CSMS's action
        error = json.loads(await ws.recv())
        assert error[:3] == [4, "x4", "NotImplemented"]
        await ws.send(json.dumps([3, "nobody-asked", {}]))  # an answer to nothing: dropped
        beat = await _call(ws, "h3", "Heartbeat", {})
        assert beat[:2] == [3, "h3"]


async def test_meter_values_are_stored_once_before_the_answer(
    server: CsmsServer, store: Store
) -> None:
    async with _connect(server, "CP-21") as ws:
        started = await _call(ws, "t0", "TransactionEvent", _event(0, 1_000, event_type="Started"))
        assert started[0] == 3
        for unique_id in ("t1", "t1-replay"):
            answer = await _call(ws, unique_id, "TransactionEvent", _event(1, 1_500, 20))
            assert answer[:2] == [3, unique_id]
            # Acknowledged: it is in the database now.
            samples = store.meter_samples("CP-21", "T-1")
            assert [(s.seq_no, s.import_register_wh, s.export_register_wh) for s in samples] == [
                (0, 1_000, 0),
                (1, 1_500, 20),
            ]
        backwards = await _call(ws, "t2", "TransactionEvent", _event(2, 1_400, 20))
        assert backwards[:3] == [4, "t2", "PropertyConstraintViolation"]
        assert backwards[3] == (
            "station 'CP-21', transaction 'T-1', seq_no 2: import_register_wh 1400 is below "
            "1500 stored before it (registers never go back)"
        )
    assert len(store.meter_samples("CP-21", "T-1")) == 2
    assert [e.kind for e in store.events(kind=EventKind.REFUSED)] == ["refused"]


async def test_readings_without_export_or_evse_keep_what_was_stored(
    server: CsmsServer, store: Store
) -> None:
    async with _connect(server, "CP-21") as ws:
        assert (await _call(ws, "a", "TransactionEvent", _event(0, 1_000, 300, "Started")))[0] == 3
        later = _event(1, 1_200, 0)
        del later["evse"]  # only the first event must name the EVSE
        # No export register, and a per-phase import value beside the total.
        later["meterValue"][0]["sampledValue"] = [
            {"value": 1_200, "measurand": "Energy.Active.Import.Register"},
            {"value": 400, "measurand": "Energy.Active.Import.Register", "phase": "L1"},
        ]
        answer = await _call(ws, "b", "TransactionEvent", later)
        assert answer[:2] == [3, "b"]
    samples = store.meter_samples("CP-21", "T-1")
    assert [(s.import_register_wh, s.export_register_wh) for s in samples] == [
        (1_000, 300),
        (1_200, 300),
    ]
    [session] = store.sessions()
    assert session.evse_id == 1


def test_profile_ids_are_the_same_every_time_and_differ_per_transaction() -> None:
    first = profile_id(1, "T-1")
    assert first == profile_id(1, "T-1")
    assert 1 <= first < 2**31
    assert len({profile_id(evse, f"T-{n}") for evse in (1, 2) for n in range(500)}) == 1_000


async def test_tls_off_loopback_by_default(store: Store, tmp_path: Path) -> None:
    """A non-loopback address gets TLS with a self-signed certificate (profile 2)."""
    settings = ServerSettings(host="0.0.0.0", port=0, tls_folder=tmp_path / "tls")
    async with CsmsServer(store, settings, clock=ScaledClock(NOON)) as running:
        assert running.url.startswith("wss://0.0.0.0:")
        port = running.url.rsplit(":", 1)[1]
        # The certificate names 127.0.0.1 among this machine's addresses: checked in full.
        context = ssl.create_default_context(cafile=str(tmp_path / "tls" / "server-cert.pem"))
        async with connect(
            f"wss://127.0.0.1:{port}/CP-21",
            subprotocols=[Subprotocol("ocpp2.1")],
            additional_headers={"Authorization": basic_header("CP-21", PASSWORD)},
            ssl=context,
        ) as ws:
            beat = await _call(ws, "h4", "Heartbeat", {})
            assert beat[:2] == [3, "h4"]
    store.close()


async def test_profile_1_off_loopback_only_when_asked(store: Store, tmp_path: Path) -> None:
    settings = ServerSettings(
        host="0.0.0.0", port=0, tls_folder=tmp_path / "tls", allow_profile_1_off_loopback=True
    )
    async with CsmsServer(store, settings, clock=ScaledClock(NOON)) as running:
        assert running.url.startswith("ws://0.0.0.0:")
    assert not (tmp_path / "tls" / "server-cert.pem").exists()
    store.close()


async def test_a_station_receives_the_profile_for_its_control_mode(server: CsmsServer) -> None:
    base = SetpointCommand(
        station_id="CP-21",
        evse_id=1,
        transaction_id="T-5",
        ocpp_version=OcppVersion.V21,
        site_id="s1",
        setpoint_kw=-3.0,
        charge_limit_kw=11.0,
        discharge_limit_kw=7.0,
        planner="fast",
    )
    scheduled = replace(base, schedule_kw=(-3.0, -3.0, 5.0), step_s=900)
    async with _connect(server, "CP-21") as ws:
        await _call(ws, "h", "Heartbeat", {})
        received = []
        for command in (base, base, scheduled):
            sending = asyncio.create_task(server.send_setpoint(command))
            request = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send(json.dumps([3, request[1], {"status": "Accepted"}]))
            assert await sending == ACCEPTED
            received.append(request)
    first, update, absolute = received
    assert first[2] == "SetChargingProfile"
    assert first[3]["chargingProfile"]["chargingProfileKind"] == "Dynamic"
    # The accepted dynamic profile is updated in place, under the same id.
    assert update[2] == "UpdateDynamicSchedule"
    assert update[3]["chargingProfileId"] == first[3]["chargingProfile"]["id"]
    assert update[3]["scheduleUpdate"]["setpoint"] == -3000.0
    # ScheduledControl: the plan as an absolute schedule, replacing the same profile id.
    assert absolute[2] == "SetChargingProfile"
    profile = absolute[3]["chargingProfile"]
    assert profile["chargingProfileKind"] == "Absolute"
    assert profile["id"] == first[3]["chargingProfile"]["id"]
    periods = profile["chargingSchedule"][0]["chargingSchedulePeriod"]
    assert [(p["startPeriod"], p["setpoint"]) for p in periods] == [(0, -3000.0), (1800, 5000.0)]


async def test_meter_values_without_export_keep_the_transactions_export(
    server: CsmsServer, store: Store
) -> None:
    async with _connect(server, "CP-21") as ws:
        assert (await _call(ws, "s", "TransactionEvent", _event(0, 1_000, 300, "Started")))[0] == 3
        reading = {
            "evseId": 1,
            "meterValue": [
                {
                    "timestamp": "2026-07-01T04:05:00Z",
                    "sampledValue": [
                        {"value": 1_100, "measurand": "Energy.Active.Import.Register"}
                    ],
                }
            ],
        }
        answer = await _call(ws, "m", "MeterValues", reading)
        assert answer[:2] == [3, "m"]
    samples = store.meter_samples("CP-21", "T-1")
    assert [(s.import_register_wh, s.export_register_wh) for s in samples] == [
        (1_000, 300),
        (1_100, 300),
    ]
