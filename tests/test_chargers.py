"""Simulated stations against a small CSMS over a real loopback websocket.

The CSMS below uses the ``ocpp`` package's server side; it records every request, can
drop a station's connection (and refuse it for a while) and sends profiles. The clock runs
600 times faster than the wall, so a 10 s meter interval takes 17 ms.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import itertools
import math
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from http import HTTPStatus
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.exceptions import FormatViolationError
from ocpp.exceptions import NotImplementedError as OcppNotImplementedError
from ocpp.routing import on
from ocpp.v21 import call as call21
from ocpp.v21 import call_result as call_result21
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as call_result201
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from v2ghub.live.charger_fleet import BatteryBank
from v2ghub.live.charger_messages import (
    AC_PHASES,
    AC_VOLTAGE_V,
    CallAnswer,
    ProfileCriteria,
    ProfileRefusedError,
    ScheduleRates,
    parse_profile,
    period_command_kw,
    timestamp,
)
from v2ghub.live.chargers import (
    ChargerConfig,
    ChargerFleet,
    FleetConfig,
    FleetStats,
    make_fleet_config,
)
from v2ghub.live.clock import ScaledClock
from v2ghub.live.ocpp_adapter import ChargePoint21, ChargePoint201
from v2ghub.store.records import OcppVersion
from v2ghub.units import current_to_kw, kw_to_current

SPEED = 600.0
START = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
# A guard against a scenario that never ends, not a speed bound: the mixed fleet's day takes
# about 12 s alone and went past 20 s beside the rest of the suite on two busy cores.
WAIT_S = 60.0
EFFICIENCY = 0.92

Record = tuple[str, dict[str, Any]]


class _Recorder:
    """The CSMS's handlers, shared by both versions: record, answer Accepted."""

    csms: Csms
    id: str
    results: ModuleType
    """The ``ocpp`` package's public ``call_result`` module of the version."""
    _connection: ServerConnection

    def _record(self, action: str, payload: dict[str, Any]) -> None:
        self.csms.messages.setdefault(self.id, []).append((action, payload))

    @on("BootNotification")
    def on_boot(self, **payload: Any) -> Any:
        self._record("BootNotification", payload)
        return self.results.BootNotification(
            current_time=timestamp(datetime.now(UTC)), interval=300, status="Accepted"
        )

    @on("StatusNotification")
    def on_status(self, **payload: Any) -> Any:
        if self.id in self.csms.drop_on_status:
            # The server goes down after the boot: the station is accepted, then offline.
            self.csms.drop_on_status.discard(self.id)
            self.csms.refusing.add(self.id)
            self.csms.closing.append(asyncio.ensure_future(self._connection.close()))
        else:
            self._record("StatusNotification", payload)
        return self.results.StatusNotification()

    @on("Heartbeat")
    def on_heartbeat(self, **payload: Any) -> Any:
        self._record("Heartbeat", payload)
        return self.results.Heartbeat(current_time=timestamp(datetime.now(UTC)))

    @on("NotifyEVChargingNeeds")
    def on_needs(self, **payload: Any) -> Any:
        self._record("NotifyEVChargingNeeds", payload)
        return self.results.NotifyEVChargingNeeds(status="Accepted")

    @on("TransactionEvent")
    def on_transaction_event(self, **payload: Any) -> Any:
        if self.csms.drop_at.get(self.id) == payload["seq_no"]:
            # Drop the line before answering: the station must send this event again.
            del self.csms.drop_at[self.id]
            self.csms.refusing.add(self.id)
            self.csms.closing.append(asyncio.ensure_future(self._connection.close()))
        else:
            self._record("TransactionEvent", payload)
        return self.results.TransactionEvent()


class _Csms21(_Recorder, ChargePoint21):
    results = call_result21


class _Csms201(_Recorder, ChargePoint201):
    results = call_result201


class Csms:
    """A minimal CSMS on 127.0.0.1 with a free port."""

    subprotocols: tuple[str, ...] = ("ocpp2.1", "ocpp2.0.1")

    def __init__(self) -> None:
        self.messages: dict[str, list[Record]] = {}
        self.links: dict[str, Any] = {}
        self.auth: dict[str, str | None] = {}
        self.drop_at: dict[str, int] = {}
        self.drop_on_status: set[str] = set()
        self.refusing: set[str] = set()
        self.closing: list[asyncio.Future[None]] = []
        self.port = 0

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def _refuse(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.rsplit("/", 1)[-1] in self.refusing:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "down\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        station_id = ws.request.path.rsplit("/", 1)[-1]
        self.auth[station_id] = ws.request.headers.get("Authorization")
        link = self.link_class(ws.subprotocol)(station_id, ws)
        link.csms = self
        self.links[station_id] = link
        with contextlib.suppress(ConnectionClosed):
            await link.start()

    def link_class(self, subprotocol: str | None) -> type[Any]:
        """The server end of a connection that chose ``subprotocol``."""
        return _Csms21 if subprotocol == "ocpp2.1" else _Csms201

    def of(self, station_id: str, action: str) -> list[dict[str, Any]]:
        return [p for a, p in self.messages.get(station_id, []) if a == action]

    def events(self, station_id: str, event_type: str | None = None) -> list[dict[str, Any]]:
        return [
            p
            for p in self.of(station_id, "TransactionEvent")
            if event_type is None or p["event_type"] == event_type
        ]

    async def send(self, station_id: str, request: Any) -> Any:
        return await self.links[station_id].call(request, suppress=False)


CsmsT = TypeVar("CsmsT", bound=Csms)


def run_with_csms(
    config_of: Callable[[str], FleetConfig],
    scenario: Callable[[Csms, ChargerFleet], Awaitable[None]],
) -> FleetStats:
    """Start the CSMS and the fleet, run ``scenario``, stop both; the fleet's stats."""
    return run_against(Csms, config_of, scenario)


def run_against(
    csms_class: type[CsmsT],
    config_of: Callable[[str], FleetConfig],
    scenario: Callable[[CsmsT, ChargerFleet], Awaitable[None]],
) -> FleetStats:
    """:func:`run_with_csms` with a CSMS of ``csms_class``."""

    async def main() -> FleetStats:
        csms = csms_class()
        async with serve(
            csms._handle,
            "127.0.0.1",
            0,
            subprotocols=[Subprotocol(name) for name in csms.subprotocols],
            process_request=csms._refuse,
            compression=None,
        ) as server:
            csms.port = next(iter(server.sockets)).getsockname()[1]
            fleet = ChargerFleet(config_of(csms.url()), clock=ScaledClock(START, SPEED))
            stop = asyncio.Event()
            runner = asyncio.create_task(fleet.run(stop=stop))
            try:
                await asyncio.wait_for(scenario(csms, fleet), WAIT_S)
            finally:
                stop.set()
            return await asyncio.wait_for(runner, WAIT_S)

    return asyncio.run(main())


async def until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.005)


def one_station(
    url: str, *, version: OcppVersion = OcppVersion.V21, power_kw: float = 11.0, v2x: bool = True
) -> FleetConfig:
    return FleetConfig(
        url=url,
        stations=(ChargerConfig("CP1", "secret", version, power_kw, v2x),),
        first_arrival_within_s=0.0,
        dwell_h=(8.0, 8.0),
        charge_efficiency=EFFICIENCY,
        discharge_efficiency=EFFICIENCY,
    )


def sampled(event: dict[str, Any], measurand: str) -> float:
    values = event["meter_value"][0]["sampled_value"]
    return float(next(v["value"] for v in values if v["measurand"] == measurand))


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coroutine)


# ---------------------------------------------------------------- messages on the wire


def test_v21_station_boots_starts_a_transaction_and_sends_v2x_needs() -> None:
    async def scenario(csms: Csms, fleet: ChargerFleet) -> None:
        await until(lambda: len(csms.events("CP1", "Updated")) >= 3)
        view = fleet.station("CP1")
        assert view.vehicle is not None
        vehicle = view.vehicle
        actions = [a for a, _ in csms.messages["CP1"]]
        assert actions[:5] == [
            "BootNotification",
            "StatusNotification",
            "StatusNotification",
            "TransactionEvent",
            "NotifyEVChargingNeeds",
        ]
        statuses = [p["connector_status"] for p in csms.of("CP1", "StatusNotification")]
        assert statuses == ["Available", "Occupied"]
        expected = "Basic " + base64.b64encode(b"CP1:secret").decode()
        assert csms.auth["CP1"] == expected

        (started,) = csms.events("CP1", "Started")
        assert started["seq_no"] == 0
        assert started["trigger_reason"] == "CablePluggedIn"
        assert started["transaction_info"]["transaction_id"] == view.transaction_id
        assert started["id_token"]["id_token"] == vehicle.id_token
        assert sampled(started, "SoC") == pytest.approx(vehicle.arrival_soc * 100, abs=0.05)
        assert sampled(started, "Energy.Active.Export.Register") == 0

        (needs,) = csms.of("CP1", "NotifyEVChargingNeeds")
        charging = needs["charging_needs"]
        assert charging["requested_energy_transfer"] == "AC_BPT"
        assert charging["control_mode"] == "DynamicControl"
        departure = datetime.fromisoformat(charging["departure_time"])
        assert abs((departure - vehicle.departure_at).total_seconds()) < 0.001
        capacity_wh = vehicle.battery_kwh * 1000
        stored_wh = vehicle.arrival_soc * capacity_wh
        v2x = charging["v2x_charging_parameters"]
        assert v2x["max_charge_power"] == 7000  # the vehicle's 7 kW on-board charger
        assert v2x["max_discharge_power"] == 7000
        assert v2x["ev_target_energy_request"] == pytest.approx(
            vehicle.target_soc * capacity_wh - stored_wh, abs=0.1
        )
        assert v2x["ev_min_energy_request"] == pytest.approx(0.2 * capacity_wh - stored_wh, abs=0.1)
        assert v2x["ev_max_energy_request"] == pytest.approx(capacity_wh - stored_wh, abs=0.1)
        assert v2x["ev_min_v2x_energy_request"] == v2x["ev_min_energy_request"]
        assert v2x["target_soc"] == round(vehicle.target_soc * 100)
        assert charging["custom_data"]["ev_energy_capacity"] == round(capacity_wh)

        updated = csms.events("CP1", "Updated")
        assert [e["seq_no"] for e in updated[:3]] == [1, 2, 3]
        assert {e["trigger_reason"] for e in updated} == {"MeterValuePeriodic"}
        # No profile: full power, as a real charger does.
        assert sampled(updated[1], "Power.Active.Import") == 7000
        imports = [sampled(e, "Energy.Active.Import.Register") for e in updated]
        assert imports == sorted(imports)
        assert imports[-1] > imports[0]

    stats = run_with_csms(one_station, scenario)
    assert stats.calls_sent["BootNotification"] == 1
    assert stats.call_errors == {}
    assert stats.rejections == {}
    assert not math.isnan(stats.latency_p50_ms)


def test_v201_dc_station_sends_charge_only_needs() -> None:
    def config(url: str) -> FleetConfig:
        return one_station(url, version=OcppVersion.V201, power_kw=50.0, v2x=False)

    async def scenario(csms: Csms, fleet: ChargerFleet) -> None:
        await until(lambda: len(csms.events("CP1", "Updated")) >= 2)
        vehicle = fleet.station("CP1").vehicle
        assert vehicle is not None
        (needs,) = csms.of("CP1", "NotifyEVChargingNeeds")
        charging = needs["charging_needs"]
        assert charging["requested_energy_transfer"] == "DC"
        assert "v2x_charging_parameters" not in charging
        assert "control_mode" not in charging
        dc = charging["dc_charging_parameters"]
        capacity_wh = vehicle.battery_kwh * 1000
        assert dc["ev_energy_capacity"] == round(capacity_wh)
        assert dc["state_of_charge"] == round(vehicle.arrival_soc * 100)
        assert dc["energy_amount"] == round(
            (vehicle.target_soc - vehicle.arrival_soc) * capacity_wh
        )
        assert dc["ev_max_power"] == round(vehicle.max_charge_kw * 1000)
        assert vehicle.max_charge_kw <= 50.0
        assert vehicle.max_discharge_kw == 0

    run_with_csms(config, scenario)


# ---------------------------------------------------------------- following the CSMS


def _setpoint_profile(setpoint_w: float, transaction_id: str, *, profile_id: int = 7) -> Any:
    return call21.SetChargingProfile(
        evse_id=1,
        charging_profile={
            "id": profile_id,
            "stack_level": 0,
            "charging_profile_purpose": "TxProfile",
            "charging_profile_kind": "Dynamic",
            "transaction_id": transaction_id,
            "charging_schedule": [
                {
                    "id": 1,
                    "charging_rate_unit": "W",
                    "charging_schedule_period": [
                        {
                            "start_period": 0,
                            "operation_mode": "CentralSetpoint",
                            "setpoint": setpoint_w,
                            "discharge_limit": -7000.0,
                        }
                    ],
                }
            ],
        },
    )


def test_central_setpoint_discharges_and_the_export_register_counts_it() -> None:
    async def scenario(csms: Csms, fleet: ChargerFleet) -> None:
        await until(lambda: len(csms.events("CP1", "Updated")) >= 1)
        view = fleet.station("CP1")
        assert view.transaction_id is not None
        answer = await csms.send("CP1", _setpoint_profile(-7000.0, view.transaction_id))
        assert answer.status == "Accepted"
        before = fleet.station("CP1")
        assert before.setpoint_kw == -7.0
        seen = len(csms.events("CP1", "Updated"))
        await until(lambda: len(csms.events("CP1", "Updated")) >= seen + 12)
        after = fleet.station("CP1")
        assert after.energy_kwh is not None
        assert before.energy_kwh is not None
        exported_wh = after.export_register_wh - before.export_register_wh
        assert exported_wh > 0
        # The battery gives exported / efficiency (step_batteries' rule).
        assert (before.energy_kwh - after.energy_kwh) * 1000 == pytest.approx(
            exported_wh / EFFICIENCY, rel=1e-9
        )
        assert after.import_register_wh == before.import_register_wh

        # On the wire: 7 kW out, and the register grows by 7 kW x the time between samples.
        events = csms.events("CP1", "Updated")[seen + 1 :]
        for earlier, later in itertools.pairwise(events):
            assert sampled(later, "Power.Active.Export") == 7000
            assert sampled(later, "Power.Active.Import") == 0
            dt_h = (
                datetime.fromisoformat(later["timestamp"])
                - datetime.fromisoformat(earlier["timestamp"])
            ).total_seconds() / 3600
            grown_wh = sampled(later, "Energy.Active.Export.Register") - sampled(
                earlier, "Energy.Active.Export.Register"
            )
            assert grown_wh == pytest.approx(7000 * dt_h, abs=1.5)
        socs = [sampled(e, "SoC") for e in events]
        assert socs[-1] < socs[0]
        vehicle = after.vehicle
        assert vehicle is not None
        export_span_wh = sampled(events[-1], "Energy.Active.Export.Register") - sampled(
            events[0], "Energy.Active.Export.Register"
        )
        expected_drop = export_span_wh / EFFICIENCY / (vehicle.battery_kwh * 1000) * 100
        assert socs[0] - socs[-1] == pytest.approx(expected_drop, abs=0.15)

        # A new setpoint for the same profile, then one for a profile the station lacks.
        update = call21.UpdateDynamicSchedule(
            charging_profile_id=7, schedule_update={"setpoint": -3000.0}
        )
        assert (await csms.send("CP1", update)).status == "Accepted"
        assert fleet.station("CP1").setpoint_kw == -3.0
        unknown = call21.UpdateDynamicSchedule(
            charging_profile_id=99, schedule_update={"setpoint": 1000.0}
        )
        refused = await csms.send("CP1", unknown)
        assert refused.status == "Rejected"
        assert refused.status_info["reason_code"] == "UnknownProfile"
        seen = len(csms.events("CP1", "Updated"))
        await until(lambda: len(csms.events("CP1", "Updated")) >= seen + 2)
        assert sampled(csms.events("CP1", "Updated")[-1], "Power.Active.Export") == 3000

        cleared = await csms.send("CP1", call21.ClearChargingProfile(charging_profile_id=7))
        assert cleared.status == "Accepted"
        assert fleet.station("CP1").setpoint_kw is None

        # A request the station does not implement is a CallError, and the station lives on.
        with pytest.raises(OcppNotImplementedError, match="Reset"):
            await csms.send("CP1", call21.Reset(type="Immediate"))
        seen = len(csms.events("CP1", "Updated"))
        await until(lambda: len(csms.events("CP1", "Updated")) >= seen + 1)

    stats = run_with_csms(one_station, scenario)
    assert stats.requests_received["SetChargingProfile"] == 1
    assert stats.requests_refused == {"UpdateDynamicSchedule": 1, "Reset": 1}


def test_discharge_is_refused_where_the_station_cannot_discharge() -> None:
    def config(url: str) -> FleetConfig:
        return FleetConfig(
            url=url,
            stations=(
                ChargerConfig("OLD", None, OcppVersion.V201, 11.0, v2x=False),
                ChargerConfig("NOV2X", None, OcppVersion.V21, 11.0, v2x=False),
                # 2.0.1, configured to discharge by negative limits.
                ChargerConfig("OLDV2X", None, OcppVersion.V201, 11.0, v2x=True),
            ),
            first_arrival_within_s=0.0,
            dwell_h=(8.0, 8.0),
        )

    async def scenario(csms: Csms, fleet: ChargerFleet) -> None:
        stations = ("OLD", "NOV2X", "OLDV2X")
        await until(lambda: all(len(csms.events(s, "Updated")) >= 1 for s in stations))

        def negative_limit(transaction_id: str | None) -> Any:
            return call201.SetChargingProfile(
                evse_id=1,
                charging_profile={
                    "id": 3,
                    "stack_level": 0,
                    "charging_profile_purpose": "TxProfile",
                    "charging_profile_kind": "Relative",
                    "transaction_id": transaction_id,
                    "charging_schedule": [
                        {
                            "id": 1,
                            "charging_rate_unit": "W",
                            "charging_schedule_period": [{"start_period": 0, "limit": -7000.0}],
                        }
                    ],
                },
            )

        answer = await csms.send("OLD", negative_limit(fleet.station("OLD").transaction_id))
        assert answer.status == "Rejected"
        assert answer.status_info["reason_code"] == "NegativeLimit"
        answer = await csms.send("OLDV2X", negative_limit(fleet.station("OLDV2X").transaction_id))
        assert answer.status == "Accepted"
        tx = fleet.station("NOV2X").transaction_id
        assert tx is not None
        answer = await csms.send("NOV2X", _setpoint_profile(-7000.0, tx))
        assert answer.status == "Rejected"
        assert answer.status_info["reason_code"] == "V2XNotSupported"
        # A TxProfile for another transaction is refused too; a charge limit in A is taken.
        answer = await csms.send("NOV2X", _setpoint_profile(3000.0, "not-this-one"))
        assert answer.status_info["reason_code"] == "TxNotFound"
        amps = call201.SetChargingProfile(
            evse_id=1,
            charging_profile={
                "id": 4,
                "stack_level": 0,
                "charging_profile_purpose": "TxProfile",
                "charging_profile_kind": "Relative",
                "charging_schedule": [
                    {
                        "id": 1,
                        "charging_rate_unit": "A",
                        "charging_schedule_period": [
                            {"start_period": 0, "limit": 6.0, "number_phases": 1}
                        ],
                    }
                ],
            },
        )
        assert (await csms.send("OLD", amps)).status == "Accepted"
        assert fleet.station("OLD").setpoint_kw == pytest.approx(6 * 230 / 1000)
        for station in ("OLD", "NOV2X"):
            assert fleet.station(station).export_register_wh == 0

    stats = run_with_csms(config, scenario)
    assert stats.requests_refused == {"SetChargingProfile": 3}


# ---------------------------------------------------------------- losing the connection


def test_reconnect_resumes_the_transaction_and_delivers_offline_events() -> None:
    async def scenario(csms: Csms, fleet: ChargerFleet) -> None:
        csms.drop_at["CP1"] = 3
        await until(lambda: "CP1" in csms.refusing)
        transaction_id = fleet.station("CP1").transaction_id
        # Queued: the event in flight when the line dropped (resent as it was) and at
        # least five made while offline.
        await until(lambda: fleet.station("CP1").queued_events >= 6)
        assert not fleet.station("CP1").online
        csms.refusing.discard("CP1")
        await until(lambda: any(e.get("offline") for e in csms.events("CP1")))
        await until(lambda: fleet.station("CP1").queued_events == 0)
        seen = len(csms.events("CP1"))
        await until(lambda: len(csms.events("CP1")) >= seen + 2)

        events = csms.events("CP1")
        seq_nos = [e["seq_no"] for e in events]
        assert seq_nos == list(range(len(events)))  # no gap, no duplicate
        assert {e["transaction_info"]["transaction_id"] for e in events} == {transaction_id}
        offline = [e["seq_no"] for e in events if e.get("offline")]
        assert len(offline) >= 5
        assert offline == list(range(offline[0], offline[-1] + 1))
        # The event the line dropped under was made online: it is resent as it was.
        assert not events[3].get("offline")
        assert offline[0] >= 4
        assert not events[-1].get("offline")
        boots = csms.of("CP1", "BootNotification")
        assert [b["reason"] for b in boots] == ["PowerUp", "Unknown"]
        imports = [sampled(e, "Energy.Active.Import.Register") for e in events]
        assert imports == sorted(imports)
        view = fleet.station("CP1")
        assert imports[-1] <= view.import_register_wh

    stats = run_with_csms(one_station, scenario)
    assert stats.reconnects == 1
    assert stats.connect_failures >= 1
    assert stats.unsent_events == 0


def test_a_vehicle_that_came_while_the_server_was_down_is_reported_in_order() -> None:
    # The vehicle arrives while the server is down: its TransactionEvents (flagged
    # offline) and its NotifyEVChargingNeeds (a message with no offline flag) wait in the
    # queue and go out in the order they were made once the server is back.
    def config(url: str) -> FleetConfig:
        return dataclasses.replace(one_station(url), first_arrival_within_s=300.0)

    async def scenario(csms: Csms, fleet: ChargerFleet) -> None:
        csms.drop_on_status.add("CP1")
        await until(lambda: "CP1" in csms.refusing)
        await until(lambda: fleet.station("CP1").queued_events >= 4)
        assert not fleet.station("CP1").online
        assert not csms.events("CP1")
        csms.refusing.discard("CP1")
        await asyncio.wait_for(until(lambda: fleet.station("CP1").queued_events == 0), 5.0)

        after_boot = [a for a, _ in csms.messages["CP1"]][2:]
        assert after_boot[:3] == ["StatusNotification", "TransactionEvent", "NotifyEVChargingNeeds"]
        events = csms.events("CP1")
        assert [e["seq_no"] for e in events] == list(range(len(events)))
        assert events[0]["event_type"] == "Started"
        assert events[0]["offline"] is True
        assert all(e["offline"] is True for e in events[:3])
        needs = csms.of("CP1", "NotifyEVChargingNeeds")
        assert len(needs) == 1
        assert "offline" not in needs[0]

    stats = run_with_csms(config, scenario)
    assert stats.reconnects == 1
    assert stats.unsent_events == 0
    assert stats.calls_sent["NotifyEVChargingNeeds"] == 1


def test_a_mixed_fleet_runs_vehicles_through_and_meters_what_flowed() -> None:
    def config(url: str) -> FleetConfig:
        return make_fleet_config(
            url=url,
            count=12,
            password="pw",
            v201_share=0.5,
            seed=3,
            first_arrival_within_s=60.0,
            dwell_h=(0.2, 0.4),
            mean_idle_h=0.05,
            vehicles_per_station=2,
        )

    async def scenario(csms: Csms, fleet: ChargerFleet) -> None:
        def done() -> bool:
            stats = fleet.stats()
            return all(s.transactions_ended == 2 for s in stats.stations.values()) and not any(
                fleet.station(i).queued_events for i in stats.stations
            )

        await until(done)

    stats = run_with_csms(config, scenario)
    assert stats.call_errors == {}
    assert stats.rejections == {}
    assert stats.calls_sent["NotifyEVChargingNeeds"] == 24
    assert stats.unsent_events == 0
    assert stats.meter_values_sent == stats.calls_sent["TransactionEvent"]
    for station_stats in stats.stations.values():
        assert station_stats.import_wh > 0
        assert station_stats.export_wh == 0  # nobody asked for discharge
        assert station_stats.soc is None  # the last vehicle has left


# ---------------------------------------------------------------- the pure parts


def test_profile_parsing_converts_amps_and_refuses_what_it_cannot_do() -> None:
    def profile(period: dict[str, Any], unit: str = "W", purpose: str = "TxProfile") -> Any:
        return {
            "id": 1,
            "stack_level": 0,
            "charging_profile_purpose": purpose,
            "charging_profile_kind": "Relative",
            "charging_schedule": [
                {
                    "id": 1,
                    "charging_rate_unit": unit,
                    "charging_schedule_period": [{"start_period": 0, **period}],
                }
            ],
        }

    def parse(body: dict[str, Any], *, can_discharge: bool = True) -> Any:
        return parse_profile(
            body, received_at=START, version=OcppVersion.V21, can_discharge=can_discharge
        )

    (period,) = parse(profile({"limit": 16.0}, unit="A")).periods
    power_kw, follows = period_command_kw(period)
    assert power_kw == pytest.approx(16 * 230 * 3 / 1000)
    assert not follows
    (period,) = parse(
        profile(
            {"operation_mode": "CentralSetpoint", "setpoint": -9000.0, "discharge_limit": -5000.0}
        )
    ).periods
    assert period_command_kw(period) == (-5.0, True)
    with pytest.raises(ProfileRefusedError, match="UnsupportedMode"):
        parse(profile({"operation_mode": "ExternalSetpoint", "limit": 1.0}))
    with pytest.raises(ProfileRefusedError, match="V2XNotSupported"):
        parse(profile({"operation_mode": "CentralSetpoint", "setpoint": -1.0}), can_discharge=False)
    with pytest.raises(ProfileRefusedError, match="UnsupportedPurpose"):
        parse(profile({"limit": 1.0}, purpose="PriorityCharging"))


def amp_profile(**period: object) -> dict[str, object]:
    """A 16 A TxProfile (Relative, one period), as ``ocpp`` hands it (snake_case)."""
    return {
        "id": 7,
        "stack_level": 1,
        "charging_profile_purpose": "TxProfile",
        "charging_profile_kind": "Relative",
        "charging_schedule": [
            {
                "id": 1,
                "charging_rate_unit": "A",
                "charging_schedule_period": [{"start_period": 0, "limit": 16, **period}],
            }
        ],
    }


def test_a_profile_is_read_into_a_typed_record_and_a_wrong_field_is_named() -> None:
    profile = parse_profile(
        amp_profile(), received_at=START, version=OcppVersion.V21, can_discharge=True
    )
    assert (profile.profile_id, profile.stack_level, profile.rate_unit) == (7, 1, "A")
    assert profile.periods[0].limit_kw == pytest.approx(16 * 230 * 3 / 1000)
    with pytest.raises(FormatViolationError, match=r"chargingSchedulePeriod\[0\]\.limit"):
        parse_profile(
            amp_profile(limit="16"), received_at=START, version=OcppVersion.V21, can_discharge=True
        )
    with pytest.raises(FormatViolationError, match=r"chargingProfile\.chargingProfilePurpose"):
        parse_profile(
            {**amp_profile(), "charging_profile_purpose": None},
            received_at=START,
            version=OcppVersion.V21,
            can_discharge=True,
        )


def test_a_schedule_update_is_in_the_profiles_unit_and_criteria_match() -> None:
    profile = parse_profile(
        amp_profile(), received_at=START, version=OcppVersion.V21, can_discharge=True
    )
    update = ScheduleRates.from_payload(
        {"setpoint": -10, "discharge_limit": 10},
        rate_unit=profile.rate_unit,
        phases=None,
        field="scheduleUpdate",
    )
    assert update.demands_discharge
    (period,) = profile.updated(update).periods
    assert period.limit_kw == pytest.approx(11.04)
    assert period.setpoint_kw == pytest.approx(-6.9)
    assert period.discharge_limit_kw == pytest.approx(-6.9)
    assert ProfileCriteria.from_payload(None).matches(profile)
    assert ProfileCriteria.from_payload({"stack_level": 1}).matches(profile)
    assert not ProfileCriteria.from_payload(
        {"charging_profile_purpose": "TxDefaultProfile"}
    ).matches(profile)


def test_answers_are_read_into_call_answers() -> None:
    boot = call_result21.BootNotification(current_time="x", interval=30, status="Pending")
    assert CallAnswer.from_result(boot) == CallAnswer(status="Pending", interval_s=30.0)
    event = call_result201.TransactionEvent(id_token_info={"status": "Blocked"})
    assert CallAnswer.from_result(event) == CallAnswer(status="Blocked", interval_s=None)
    heartbeat = call_result21.Heartbeat(current_time="x")
    assert CallAnswer.from_result(heartbeat) == CallAnswer(status=None, interval_s=None)
    with pytest.raises(FormatViolationError, match=r"idTokenInfo\.status"):
        CallAnswer.from_result(call_result21.Authorize(id_token_info={"status": 1}))


@given(current_a=st.floats(0, 1000), phases=st.sampled_from([1, 2, 3]))
def test_current_and_power_convert_both_ways(current_a: float, phases: int) -> None:
    power_kw = current_to_kw(current_a, voltage_v=AC_VOLTAGE_V, phases=phases)
    assert kw_to_current(power_kw, voltage_v=AC_VOLTAGE_V, phases=phases) == pytest.approx(
        current_a, abs=1e-9
    )
    assert current_to_kw(16, voltage_v=AC_VOLTAGE_V, phases=AC_PHASES) == pytest.approx(11.04)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.one_of(st.floats(-30, 30), st.just(math.nan), st.just(math.inf)),
            st.booleans(),
            st.floats(1e-4, 0.5),
        ),
        min_size=1,
        max_size=40,
    ),
    start_soc=st.floats(0.0, 1.0),
)
def test_registers_never_fall_and_energy_is_conserved(
    steps: list[tuple[float, bool, float]], start_soc: float
) -> None:
    bank = BatteryBank(1, charge_efficiency=0.9, discharge_efficiency=0.85)
    bank.plug(
        0,
        energy_kwh=60.0 * start_soc,
        capacity_kwh=60.0,
        floor_kwh=12.0,
        target_kwh=54.0,
        max_charge_kw=11.0,
        max_discharge_kw=11.0,
    )
    start_kwh = float(bank.energy_kwh[0])
    last_import, last_export = 0.0, 0.0
    for command_kw, follows, dt_h in steps:
        bank.command_kw[0] = command_kw
        bank.follows_setpoint[0] = follows
        bank.step(dt_h)
        assert bank.import_wh[0] >= last_import
        assert bank.export_wh[0] >= last_export
        last_import, last_export = float(bank.import_wh[0]), float(bank.export_wh[0])
        assert abs(float(bank.power_kw[0])) <= 11.0 + 1e-9
        assert min(12.0, start_kwh) - 1e-9 <= bank.energy_kwh[0] <= 60.0 + 1e-9
    stored_kwh = 0.9 * last_import / 1000 - last_export / 1000 / 0.85
    assert float(bank.energy_kwh[0]) - start_kwh == pytest.approx(stored_kwh, abs=1e-9)
    assert np.all(np.isfinite(bank.energy_kwh))
