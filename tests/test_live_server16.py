"""OCPP 1.6J stations against the real server over a loopback websocket, frame by frame:
what is stored, what they are told, and what is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from v2ghub.cli import main
from v2ghub.live.clock import ScaledClock
from v2ghub.live.control import SetpointCommand
from v2ghub.live.live_problem import ControlSettings, LiveSite
from v2ghub.live.security import basic_header, hash_password
from v2ghub.live.server import CsmsServer, ServerSettings, profile_id
from v2ghub.planning import make_planner
from v2ghub.settlement.ledger import Ledger
from v2ghub.store.records import EventKind, OcppVersion
from v2ghub.store.repository import Store

NOON = datetime(2026, 7, 1, 4, 0, tzinfo=UTC)  # 12:00 in Shenzhen
PASSWORD = "correct-horse-battery-staple-0123"
SITE_LIMIT_KW = 22.0


def stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """Two 1.6 stations on one site, on each back end (SQLite and PostgreSQL)."""
    with Store.open(database_url=database_url) as opened:
        hashed = hash_password(PASSWORD)
        opened.add_station("CP16", site_id="s1", password_hash=hashed, v2x_allowed=True)
        opened.add_station("CP16-A", site_id="s1", password_hash=hashed, max_power_kw=22.0)
        yield opened


@pytest.fixture
async def server(store: Store, tmp_path: Path) -> AsyncIterator[CsmsServer]:
    settings = ServerSettings(
        host="127.0.0.1", port=0, tls_folder=tmp_path / "tls", call_timeout_s=5
    )
    async with CsmsServer(store, settings, clock=ScaledClock(NOON)) as running:
        running.control_loop(
            make_planner("fast"),
            ControlSettings(
                city="Shenzhen",
                sites=(LiveSite("s1", import_limit_kw=SITE_LIMIT_KW, export_limit_kw=10.0),),
            ),
        )
        yield running


@dataclass
class Station16:
    """A 1.6 station written frame by frame: it calls, and answers what the CSMS asks with
    ``answers`` (action -> payload), keeping every request it was sent."""

    ws: ClientConnection
    answers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = field(default_factory=dict)
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _pending: dict[str, asyncio.Future[list[Any]]] = field(default_factory=dict)
    _reader: asyncio.Task[None] | None = None
    _count: int = 0

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            if frame[0] == 2:
                _, unique_id, action, payload = frame
                self.received.append((action, payload))
                answer = self.answers.get(action, accepted)(payload)
                await self.ws.send(json.dumps([3, unique_id, answer]))
            elif frame[1] in self._pending:
                self._pending.pop(frame[1]).set_result(frame)

    async def call(self, action: str, payload: dict[str, Any]) -> list[Any]:
        self._count += 1
        unique_id = f"m{self._count}"
        done: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending[unique_id] = done
        await self.ws.send(json.dumps([2, unique_id, action, payload]))
        return await asyncio.wait_for(done, 10)

    async def raw(self, text: str) -> list[Any]:
        """Send a frame as it is; the CallError the CSMS answers (message id ``-1`` or
        the frame's)."""
        done: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending["-1"] = done
        self._pending["bad-1"] = done
        await self.ws.send(text)
        return await asyncio.wait_for(done, 10)

    async def until(self, action: str, count: int = 1) -> list[dict[str, Any]]:
        for _ in range(200):
            got = [payload for name, payload in self.received if name == action]
            if len(got) >= count:
                return got
            await asyncio.sleep(0.02)
        raise AssertionError(f"the CSMS sent {action} fewer than {count} times: {self.received}")


def accepted(_: dict[str, Any]) -> dict[str, Any]:
    return {"status": "Accepted"}


def open_station(server: CsmsServer, station_id: str) -> Any:
    return connect(
        f"{server.url}/ocpp/{station_id}",
        subprotocols=[Subprotocol("ocpp1.6")],
        additional_headers={"Authorization": basic_header(station_id, PASSWORD)},
    )


def configuration(unit: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def answer(_: dict[str, Any]) -> dict[str, Any]:
        return {
            "configurationKey": [
                {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": unit},
                {"key": "ConnectorPhaseRotation", "readonly": True, "value": "1.RST"},
                {"key": "NumberOfConnectors", "readonly": True, "value": "1"},
            ]
        }

    return answer


def meter(
    at: datetime, import_wh: int, export_wh: int | None = None, power_w: float = 7000
) -> dict[str, Any]:
    sampled = [
        {"value": str(import_wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": str(power_w), "measurand": "Power.Active.Import", "unit": "W"},
    ]
    if export_wh is not None:
        sampled.append(
            {
                "value": str(export_wh / 1000),
                "measurand": "Energy.Active.Export.Register",
                "unit": "kWh",
            }
        )
    return {"timestamp": stamp(at), "sampledValue": sampled}


async def boot(station: Station16) -> None:
    answer = await station.call(
        "BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "AC22"}
    )
    assert answer[2]["status"] == "Accepted"
    assert answer[2]["interval"] == 300


async def test_boot_reads_the_configuration_and_installs_the_site_share_as_default(
    server: CsmsServer, store: Store
) -> None:
    async with open_station(server, "CP16-A") as ws:
        assert ws.subprotocol == "ocpp1.6"
        station = Station16(ws, answers={"GetConfiguration": configuration("Current")})
        station.start()
        await boot(station)
        asked = await station.until("GetConfiguration")
        assert "ChargingScheduleAllowedChargingRateUnit" in asked[0]["key"]
        default = (await station.until("SetChargingProfile"))[0]
        beat = await station.call("Heartbeat", {})
        assert datetime.fromisoformat(beat[2]["currentTime"]) >= NOON
    recorded = store.station("CP16-A")
    assert recorded is not None
    assert recorded.ocpp_version is OcppVersion.V16
    assert (recorded.vendor, recorded.model) == ("Acme", "AC22")
    # 22 kW for the site's two stations of one connector each: 11 kW, in A over three
    # phases at 220 V: 16.67 A, rounded down to 16.6 A.
    assert default["connectorId"] == 0
    profile = default["csChargingProfiles"]
    assert profile["chargingProfilePurpose"] == "TxDefaultProfile"
    assert profile["chargingSchedule"]["chargingRateUnit"] == "A"
    assert profile["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 16.6, "numberPhases": 3}
    ]


async def test_a_transaction_is_stored_once_whatever_is_sent_again(
    server: CsmsServer, store: Store
) -> None:
    start_at = NOON + timedelta(minutes=1)
    async with open_station(server, "CP16-A") as ws:
        station = Station16(ws, answers={"GetConfiguration": configuration("Power")})
        station.start()
        await boot(station)
        authorized = await station.call("Authorize", {"idTag": "OWNER-7"})
        assert authorized[2] == {"idTagInfo": {"status": "Accepted"}}
        start = {
            "connectorId": 1,
            "idTag": "OWNER-7",
            "meterStart": 1000,
            "timestamp": stamp(start_at),
        }
        first = await station.call("StartTransaction", start)
        again = await station.call("StartTransaction", start)  # no answer came: sent again
        transaction = first[2]["transactionId"]
        assert isinstance(transaction, int)
        assert transaction > 0
        assert again[2]["transactionId"] == transaction
        values = {
            "connectorId": 1,
            "transactionId": transaction,
            "meterValue": [meter(start_at + timedelta(minutes=5), 1500)],
        }
        for _ in range(2):
            answer = await station.call("MeterValues", values)
            assert answer[2] == {}
        stop = {
            "transactionId": transaction,
            "meterStop": 2400,
            "timestamp": stamp(start_at + timedelta(minutes=12)),
            "reason": "EVDisconnected",
            "transactionData": [meter(start_at + timedelta(minutes=10), 2200)],
        }
        for _ in range(2):
            stopped = await station.call("StopTransaction", stop)
            assert stopped[2] == {"idTagInfo": {"status": "Accepted"}}
        cleared = await station.until("ClearChargingProfile")
    assert cleared == [{"id": profile_id(1, str(transaction))}]
    samples = store.meter_samples("CP16-A", str(transaction))
    assert [s.import_register_wh for s in samples] == [1000, 1500, 2200, 2400]
    assert {s.export_register_wh for s in samples} == {0}  # a charge-only station
    sessions = [s for s in store.sessions() if s.transaction_id == str(transaction)]
    assert len(sessions) == 1
    session = sessions[0]
    assert session.started_at == start_at
    assert session.ended_at == start_at + timedelta(minutes=12)
    assert session.id_token == "OWNER-7"
    assert session.stopped_reason == "EVDisconnected"
    assert session.imported_wh == 1400


async def test_a_register_that_goes_back_is_refused_by_name_and_the_link_stays(
    server: CsmsServer, store: Store
) -> None:
    async with open_station(server, "CP16-A") as ws:
        station = Station16(ws)
        station.start()
        start = {"connectorId": 1, "idTag": "T", "meterStart": 5000, "timestamp": stamp(NOON)}
        transaction = (await station.call("StartTransaction", start))[2]["transactionId"]
        back = {
            "connectorId": 1,
            "transactionId": transaction,
            "meterValue": [meter(NOON + timedelta(minutes=1), 4000)],
        }
        refused = await station.call("MeterValues", back)
        assert refused[0] == 4
        assert refused[2] == "PropertyConstraintViolation"
        assert f"station 'CP16-A', transaction '{transaction}'" in refused[3]
        assert "registers never go back" in refused[3]
        assert (await station.call("Heartbeat", {}))[0] == 3
    refusals = store.events(kind=EventKind.REFUSED)
    assert any(str(transaction) in event.detail for event in refusals)
    assert [s.import_register_wh for s in store.meter_samples("CP16-A", str(transaction))] == [5000]


async def test_a_malformed_frame_gets_a_call_error_and_the_connection_stays_up(
    server: CsmsServer,
) -> None:
    async with open_station(server, "CP16-A") as ws:
        station = Station16(ws)
        station.start()
        garbage = await station.raw("[2, ")
        assert garbage[:3] == [4, "-1", "FormationViolation"]  # the 1.6 spelling
        wrong = await station.raw(
            json.dumps([2, "bad-1", "StartTransaction", {"connectorId": "x"}])
        )
        assert wrong[:2] == [4, "bad-1"]
        assert wrong[2] in ("FormationViolation", "TypeConstraintViolation")
        unknown = await station.raw(json.dumps([2, "bad-1", "TransactionEvent", {}]))
        assert unknown[2] == "NotSupported"
        assert "TransactionEvent is not an action of ocpp1.6" in unknown[3]
        polite = await station.call("DataTransfer", {"vendorId": "com.example"})
        assert polite[2] == {"status": "UnknownVendorId"}


async def test_setpoints_go_out_as_tx_profiles_and_are_checked_with_the_composite_schedule(
    server: CsmsServer, store: Store
) -> None:
    told: list[float] = []

    def composite(payload: dict[str, Any]) -> dict[str, Any]:
        # The station says it will do 5 kW whatever it was told: the CSMS must notice.
        return {
            "status": "Accepted",
            "connectorId": payload["connectorId"],
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 5000.0}],
            },
        }

    def profile(payload: dict[str, Any]) -> dict[str, Any]:
        told.append(
            payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
        )
        return {"status": "Accepted"}

    async with open_station(server, "CP16") as ws:
        station = Station16(
            ws,
            answers={
                "GetConfiguration": configuration("Power"),
                "GetCompositeSchedule": composite,
                "SetChargingProfile": profile,
            },
        )
        station.start()
        start = {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": stamp(NOON)}
        transaction = (await station.call("StartTransaction", start))[2]["transactionId"]
        await station.until("SetChargingProfile")  # the TxDefaultProfile
        command = SetpointCommand(
            station_id="CP16",
            evse_id=1,
            transaction_id=str(transaction),
            ocpp_version=OcppVersion.V16,
            site_id="s1",
            setpoint_kw=-6.0,
            charge_limit_kw=11.0,
            discharge_limit_kw=7.0,
            planner="fast",
        )
        outcome = await server.send_setpoint(command)
        assert outcome.accepted
        sent = (await station.until("SetChargingProfile", 2))[1]
        await station.until("GetCompositeSchedule")
        for _ in range(100):
            if store.events(kind=EventKind.SETPOINT_NOT_ACCEPTED):
                break
            await asyncio.sleep(0.02)
    assert sent["connectorId"] == 1
    assert sent["csChargingProfiles"]["transactionId"] == transaction
    assert sent["csChargingProfiles"]["chargingProfilePurpose"] == "TxProfile"
    assert told[-1] == -6000.0  # a V2X station discharges by a negative limit
    [event] = store.events(kind=EventKind.SETPOINT_NOT_ACCEPTED)
    assert (
        f"transaction {transaction}: sent -6 kW, the composite schedule says 5 kW" in event.detail
    )


async def test_a_v2x_station_s_first_transaction_starts_its_registers_at_its_first_reading(
    server: CsmsServer, store: Store
) -> None:
    async with open_station(server, "CP16") as ws:
        station = Station16(ws)
        station.start()
        start = {"connectorId": 1, "idTag": "T", "meterStart": 10_000, "timestamp": stamp(NOON)}
        transaction = (await station.call("StartTransaction", start))[2]["transactionId"]
        values = {
            "connectorId": 1,
            "transactionId": transaction,
            "meterValue": [meter(NOON + timedelta(minutes=5), 10_500, export_wh=80_000)],
        }
        await station.call("MeterValues", values)
    [session] = [s for s in store.sessions() if s.transaction_id == str(transaction)]
    # The lifetime export register (80 kWh) is where this transaction's export starts.
    assert (session.start_import_register_wh, session.start_export_register_wh) == (10_500, 80_000)
    assumed = store.events(kind=EventKind.ASSUMED)
    assert any("its registers start at its first meter value" in event.detail for event in assumed)


async def test_a_second_connection_and_a_wrong_password_are_refused_as_for_2x(
    server: CsmsServer,
) -> None:
    async with open_station(server, "CP16-A") as ws:
        Station16(ws).start()
        with pytest.raises(InvalidStatus) as twice:
            async with open_station(server, "CP16-A"):
                pass
        assert twice.value.response.status_code == 409
    wrong = connect(
        f"{server.url}/ocpp/CP16-A",
        subprotocols=[Subprotocol("ocpp1.6")],
        additional_headers={"Authorization": basic_header("CP16-A", "not-the-password-at-all")},
    )
    with pytest.raises(InvalidStatus) as refused:
        async with wrong:
            pass
    assert refused.value.response.status_code == 401


async def test_a_1_6_session_settles_like_any_other(
    server: CsmsServer, store: Store, database_url: str, tmp_path: Path
) -> None:
    """Shenzhen in March, valley 0-8 at 0.247 CNY/kWh (test_settle_live's prices): 4,000 Wh
    charged by a 1.6 station 02:00-04:00 local cost its owner 98.8 fen, 99 half up."""
    start_at = datetime(2026, 3, 9, 18, 0, tzinfo=UTC)  # 02:00 on 10 March in Shenzhen
    async with open_station(server, "CP16-A") as ws:
        station = Station16(ws)
        station.start()
        start = {"connectorId": 1, "idTag": "T", "meterStart": 1000, "timestamp": stamp(start_at)}
        transaction = (await station.call("StartTransaction", start))[2]["transactionId"]
        values = {
            "connectorId": 1,
            "transactionId": transaction,
            "meterValue": [meter(start_at + timedelta(hours=1), 3000)],
        }
        await station.call("MeterValues", values)
        stop = {
            "transactionId": transaction,
            "meterStop": 5000,
            "timestamp": stamp(start_at + timedelta(hours=2)),
        }
        await station.call("StopTransaction", stop)
    out = tmp_path / "settled"
    command = ["settle", "--live", "--database-url", database_url, "--out", str(out)]
    assert main([*command, "--day", "2026-03-10", "--city", "shenzhen"]) == 0
    with Ledger.open(out / "ledger.sqlite") as ledger:
        balances = ledger.balances("2026-03-10/Shenzhen/live")
    assert balances[f"owner:CP16-A/{transaction}"] == -99
    assert balances["grid"] == 99
