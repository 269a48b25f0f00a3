"""Simulated OCPP 1.6J stations against a small 1.6 central system over a real websocket.

The central system below is built from ``ocpp.v16.ChargePoint`` handlers (the package
validates every request and answer against the 1.6 schemas on both ends). It records every
request as it arrives, assigns transactionIds (a replayed StartTransaction gets the id it
was given the first time and is stored once), and can drop a station's line before
answering a request and refuse it for a while. The clock runs 600 times faster than the
wall (see ``tests/test_chargers.py``), so a 10 s meter interval takes 17 ms.
"""

from __future__ import annotations

import base64
import itertools
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from ocpp.exceptions import FormatViolationError
from ocpp.exceptions import NotImplementedError as OcppNotImplementedError
from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from websockets.asyncio.server import ServerConnection

from tests.test_chargers import EFFICIENCY, START, Csms, run_against, until
from v2ghub.cli import build_parser
from v2ghub.defaults import AC_PHASE_VOLTAGE_V, AC_PHASES
from v2ghub.live.charger_config import ChargerConfig, FleetConfig, make_fleet_config
from v2ghub.live.charger_messages import CallAnswer, ProfileRefusedError, timestamp
from v2ghub.live.charger_messages16 import Configuration16
from v2ghub.live.charger_profiles16 import (
    Limit,
    composite_schedule,
    limit_in_force,
    limit_in_unit,
    parse_profile16,
)
from v2ghub.live.chargers import ChargerFleet
from v2ghub.live.ocpp_adapter import ChargePoint16
from v2ghub.store.records import OcppVersion

Drop = Callable[[str, dict[str, Any]], bool]
"""Whether to drop the line before answering this request (action, payload)."""
FIRST_TRANSACTION_ID = 1000


class _Central16(ChargePoint16):
    """The central system's end of one station's connection."""

    csms: Csms16
    id: str
    _connection: ServerConnection

    async def _receive(self, action: str, payload: dict[str, Any]) -> None:
        """Record the request; drop the line (before the answer) when told to."""
        self.csms.messages.setdefault(self.id, []).append((action, payload))
        drop = self.csms.drop_when.get(self.id)
        if drop is not None and drop(action, payload):
            del self.csms.drop_when[self.id]
            self.csms.dropped.append((action, payload))
            self.csms.refusing.add(self.id)
            await self._connection.close()

    @on("BootNotification")
    async def on_boot(self, **payload: Any) -> Any:
        await self._receive("BootNotification", payload)
        return result16.BootNotification(
            current_time=timestamp(datetime.now(UTC)), interval=300, status="Accepted"
        )

    @on("StatusNotification")
    async def on_status(self, **payload: Any) -> Any:
        await self._receive("StatusNotification", payload)
        return result16.StatusNotification()

    @on("Heartbeat")
    async def on_heartbeat(self, **payload: Any) -> Any:
        await self._receive("Heartbeat", payload)
        return result16.Heartbeat(current_time=timestamp(datetime.now(UTC)))

    @on("Authorize")
    async def on_authorize(self, **payload: Any) -> Any:
        await self._receive("Authorize", payload)
        return result16.Authorize(id_tag_info={"status": "Accepted"})

    @on("StartTransaction")
    async def on_start(self, **payload: Any) -> Any:
        # Stored before the answer: a replay (the answer was lost) gets the same id.
        key = (self.id, payload["id_tag"], payload["timestamp"])
        transactions = self.csms.transactions
        transaction_id = transactions.setdefault(key, FIRST_TRANSACTION_ID + len(transactions))
        await self._receive("StartTransaction", payload)
        return result16.StartTransaction(
            transaction_id=transaction_id, id_tag_info={"status": "Accepted"}
        )

    @on("MeterValues")
    async def on_meter_values(self, **payload: Any) -> Any:
        await self._receive("MeterValues", payload)
        return result16.MeterValues()

    @on("StopTransaction")
    async def on_stop(self, **payload: Any) -> Any:
        await self._receive("StopTransaction", payload)
        return result16.StopTransaction(id_tag_info={"status": "Accepted"})


class Csms16(Csms):
    """The test CSMS speaking OCPP 1.6J."""

    subprotocols: tuple[str, ...] = ("ocpp1.6",)

    def __init__(self) -> None:
        super().__init__()
        self.drop_when: dict[str, Drop] = {}
        self.dropped: list[tuple[str, dict[str, Any]]] = []
        self.transactions: dict[tuple[str, str, str], int] = {}

    def link_class(self, subprotocol: str | None) -> type[Any]:
        return _Central16

    def meter_values(self, station_id: str) -> list[dict[str, Any]]:
        return self.of(station_id, "MeterValues")

    def transaction_ids(self, station_id: str) -> list[int]:
        """The transactionIds assigned to ``station_id``, in order."""
        return sorted(tx for (s, _, _), tx in self.transactions.items() if s == station_id)


def station16(
    station_id: str, *, power_kw: float = 11.0, v2x: bool = True, current_only: bool = False
) -> ChargerConfig:
    return ChargerConfig(station_id, "secret", OcppVersion.V16, power_kw, v2x, current_only)


def fleet16(url: str, *stations: ChargerConfig, **options: Any) -> FleetConfig:
    settings: dict[str, Any] = {
        "first_arrival_within_s": 0.0,
        "dwell_h": (8.0, 8.0),
        "arrival_soc": (0.5, 0.6),
        "charge_efficiency": EFFICIENCY,
        "discharge_efficiency": EFFICIENCY,
    }
    return FleetConfig(url=url, stations=stations, **(settings | options))


def reading(meter_value: dict[str, Any], measurand: str) -> str | None:
    """The value of ``measurand`` in one MeterValue (1.6 values are strings)."""
    values = meter_value["sampled_value"]
    return next((v["value"] for v in values if v["measurand"] == measurand), None)


def first_reading(message: dict[str, Any], measurand: str) -> str | None:
    return reading(message["meter_value"][0], measurand)


def taken_at(message: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(message["meter_value"][0]["timestamp"])


def profile_request(
    limit: float,
    *,
    connector_id: int = 1,
    purpose: str = "TxProfile",
    unit: str = "W",
    profile_id: int = 1,
    stack_level: int = 0,
    transaction_id: int | None = None,
    phases: int | None = None,
) -> Any:
    """A SetChargingProfile with one period from the start (Relative)."""
    period: dict[str, Any] = {"start_period": 0, "limit": limit}
    if phases is not None:
        period["number_phases"] = phases
    profile: dict[str, Any] = {
        "charging_profile_id": profile_id,
        "stack_level": stack_level,
        "charging_profile_purpose": purpose,
        "charging_profile_kind": "Relative",
        "charging_schedule": {"charging_rate_unit": unit, "charging_schedule_period": [period]},
    }
    if transaction_id is not None:
        profile["transaction_id"] = transaction_id
    return call16.SetChargingProfile(connector_id=connector_id, cs_charging_profiles=profile)


async def power_after(csms: Csms16, station_id: str, since: datetime) -> tuple[str, str]:
    """(measurand, W) of the power in the first MeterValues made after ``since``; it must
    be made within one meter interval (10 s) and a little slack."""

    def made_after() -> list[dict[str, Any]]:
        return [m for m in csms.meter_values(station_id) if taken_at(m) > since]

    await until(lambda: bool(made_after()))
    first = made_after()[0]
    assert (taken_at(first) - since).total_seconds() <= 12
    for measurand in ("Power.Active.Import", "Power.Active.Export"):
        value = first_reading(first, measurand)
        if value is not None:
            return measurand, value
    raise AssertionError(f"no power in {first}")


def schedule_of(answer: Any) -> tuple[str, list[tuple[int, float]]]:
    """(unit, [(startPeriod, limit)]) of a GetCompositeSchedule answer."""
    schedule = answer.charging_schedule
    periods = [
        (int(p["start_period"]), float(p["limit"])) for p in schedule["charging_schedule_period"]
    ]
    return schedule["charging_rate_unit"], periods


# ---------------------------------------------------------------- messages on the wire


def _run_one_visit() -> tuple[Csms16, Any, Any]:
    """One visit at CP1 (V2X) and CP2 (charge-only); the CSMS, CP1's view during the
    visit and the fleet's stats."""
    captured: dict[str, Any] = {}

    def config(url: str) -> FleetConfig:
        return fleet16(
            url,
            station16("CP1"),
            station16("CP2", v2x=False),
            dwell_h=(0.1, 0.1),
            vehicles_per_station=1,
        )

    async def scenario(csms: Csms16, fleet: ChargerFleet) -> None:
        captured["csms"] = csms
        await until(lambda: len(csms.meter_values("CP1")) >= 2)
        captured["view"] = fleet.station("CP1")

        def finished(station_id: str) -> bool:
            statuses = [p["status"] for p in csms.of(station_id, "StatusNotification")]
            return bool(csms.of(station_id, "StopTransaction")) and statuses[-1] == "Available"

        await until(lambda: finished("CP1") and finished("CP2"))
        await until(lambda: not any(fleet.station(s).queued_events for s in ("CP1", "CP2")))

    stats = run_against(Csms16, config, scenario)
    return captured["csms"], captured["view"], stats


def test_a_visit_boots_authorizes_starts_meters_and_stops_with_the_assigned_id() -> None:
    csms, view, stats = _run_one_visit()
    vehicle = view.vehicle
    assert vehicle is not None
    assert csms.auth["CP1"] == "Basic " + base64.b64encode(b"CP1:secret").decode()
    actions = [a for a, _ in csms.messages["CP1"] if a != "Heartbeat"]
    assert actions[:8] == [
        "BootNotification",
        "StatusNotification",
        "StatusNotification",
        "Authorize",
        "StartTransaction",
        "MeterValues",
        "StatusNotification",
        "MeterValues",
    ]
    assert actions[-3:] == ["StopTransaction", "StatusNotification", "StatusNotification"]
    statuses = [p["status"] for p in csms.of("CP1", "StatusNotification")]
    assert statuses == ["Available", "Preparing", "Charging", "Finishing", "Available"]
    assert {p["connector_id"] for p in csms.of("CP1", "StatusNotification")} == {1}
    assert {p["error_code"] for p in csms.of("CP1", "StatusNotification")} == {"NoError"}
    (boot,) = csms.of("CP1", "BootNotification")
    assert (boot["charge_point_vendor"], boot["charge_point_model"]) == ("v2ghub", "v2ghub-sim-v16")

    (authorized,) = csms.of("CP1", "Authorize")
    assert authorized == {"id_tag": vehicle.id_token}
    (started,) = csms.of("CP1", "StartTransaction")
    assert started["connector_id"] == 1
    assert started["id_tag"] == vehicle.id_token
    assert started["meter_start"] == 0
    assert datetime.fromisoformat(started["timestamp"]) == vehicle.arrived_at.replace(
        microsecond=vehicle.arrived_at.microsecond // 1000 * 1000
    )
    (transaction_id,) = csms.transaction_ids("CP1")
    assert view.transaction_id == str(transaction_id)

    begin, *metered = csms.meter_values("CP1")
    assert len(metered) >= 30  # 6 minutes at 10 s
    for message in (begin, *metered):
        assert message["connector_id"] == 1
        assert message["transaction_id"] == transaction_id
        (meter,) = message["meter_value"]
        context = "Sample.Periodic" if message in metered else "Transaction.Begin"
        assert {v["context"] for v in meter["sampled_value"]} == {context}
        assert {v["measurand"]: v["unit"] for v in meter["sampled_value"]} == {
            "Energy.Active.Import.Register": "Wh",
            "Energy.Active.Export.Register": "Wh",
            "Power.Active.Import": "W",
            "SoC": "Percent",
        }
    assert first_reading(begin, "Energy.Active.Import.Register") == "0"
    assert first_reading(begin, "Energy.Active.Export.Register") == "0"
    assert first_reading(begin, "SoC") == f"{vehicle.arrival_soc * 100:.1f}"
    # No profile: full power (the vehicle's 7 kW), and the register grows by 7 kW x dt.
    assert {first_reading(m, "Power.Active.Import") for m in metered} == {"7000.0"}
    for earlier, later in itertools.pairwise(metered):
        dt_h = (taken_at(later) - taken_at(earlier)).total_seconds() / 3600
        grown_wh = int(first_reading(later, "Energy.Active.Import.Register") or "") - int(
            first_reading(earlier, "Energy.Active.Import.Register") or ""
        )
        assert grown_wh == pytest.approx(7000 * dt_h, abs=1.5)
    socs = [float(first_reading(m, "SoC") or "") for m in metered]
    assert socs == sorted(socs)

    (stopped,) = csms.of("CP1", "StopTransaction")
    assert stopped["transaction_id"] == transaction_id
    assert stopped["reason"] == "EVDisconnected"
    (final,) = stopped["transaction_data"]
    assert {v["context"] for v in final["sampled_value"]} == {"Transaction.End"}
    assert str(stopped["meter_stop"]) == reading(final, "Energy.Active.Import.Register")
    assert stopped["meter_stop"] >= int(
        first_reading(metered[-1], "Energy.Active.Import.Register") or ""
    )
    assert datetime.fromisoformat(stopped["timestamp"]) >= vehicle.departure_at - timedelta(
        milliseconds=1
    )

    # A station that cannot discharge has no export register.
    for message in csms.meter_values("CP2"):
        assert first_reading(message, "Energy.Active.Export.Register") is None
    assert stats.call_errors == {}
    assert stats.rejections == {}
    assert stats.unsent_events == 0
    assert stats.stations["CP1"].transactions_ended == 1
    assert stats.meter_values_sent == sum(
        stats.calls_sent[a] for a in ("StartTransaction", "MeterValues", "StopTransaction")
    )


# ---------------------------------------------------------------- losing the connection


def test_a_start_transaction_left_unanswered_is_sent_again_and_its_id_used_after() -> None:
    def config(url: str) -> FleetConfig:
        return fleet16(url, station16("CP1"))

    async def scenario(csms: Csms16, fleet: ChargerFleet) -> None:
        csms.drop_when["CP1"] = lambda action, _: action == "StartTransaction"
        await until(lambda: "CP1" in csms.refusing)
        await until(lambda: fleet.station("CP1").queued_events >= 4)
        offline = fleet.station("CP1")
        assert not offline.online
        assert offline.transaction_id is None  # no answer, no id yet
        csms.refusing.discard("CP1")
        await until(lambda: fleet.station("CP1").transaction_id is not None)
        await until(lambda: fleet.station("CP1").queued_events == 0)
        seen = len(csms.meter_values("CP1"))
        await until(lambda: len(csms.meter_values("CP1")) >= seen + 2)

        (transaction_id,) = csms.transaction_ids("CP1")  # the replay was stored once
        assert fleet.station("CP1").transaction_id == str(transaction_id)
        first, again = csms.of("CP1", "StartTransaction")
        assert again == first
        assert csms.dropped == [("StartTransaction", first)]
        actions = [a for a, _ in csms.messages["CP1"]]
        second_boot = [i for i, a in enumerate(actions) if a == "BootNotification"][1]
        after_boot = [a for a in actions[second_boot:] if a not in ("StatusNotification",)]
        assert after_boot[:2] == ["BootNotification", "StartTransaction"]
        metered = csms.meter_values("CP1")
        assert len(metered) >= 5
        assert {m["transaction_id"] for m in metered} == {transaction_id}
        times = [taken_at(m) for m in metered]
        assert times == sorted(times)

    stats = run_against(Csms16, config, scenario)
    assert stats.reconnects == 1
    assert stats.calls_sent["StartTransaction"] == 2


def test_a_transaction_made_offline_is_sent_in_order_with_the_id_its_answer_assigns() -> None:
    def config(url: str) -> FleetConfig:
        return fleet16(
            url,
            station16("CP1"),
            dwell_h=(0.05, 0.05),
            mean_idle_h=0.005,
            vehicles_per_station=2,
        )

    async def scenario(csms: Csms16, fleet: ChargerFleet) -> None:
        csms.drop_when["CP1"] = lambda action, _: action == "MeterValues"
        await until(lambda: "CP1" in csms.refusing)

        def second_visit_metered() -> bool:
            started = fleet.stats().stations["CP1"].transactions_started
            return started == 2 and fleet.station("CP1").seq_no >= 2

        await until(second_visit_metered)
        assert len(csms.of("CP1", "StartTransaction")) == 1  # the second is still queued
        csms.refusing.discard("CP1")

        def done() -> bool:
            ended = fleet.stats().stations["CP1"].transactions_ended
            return ended == 2 and fleet.station("CP1").queued_events == 0

        await until(done)

        first_tx, second_tx = csms.transaction_ids("CP1")
        transaction = [
            (a, p)
            for a, p in csms.messages["CP1"]
            if a in ("StartTransaction", "MeterValues", "StopTransaction")
        ]
        second_start = [i for i, (a, _) in enumerate(transaction) if a == "StartTransaction"][1]
        before, after = transaction[1:second_start], transaction[second_start + 1 :]
        assert {p["transaction_id"] for _, p in before} == {first_tx}
        assert before[-1][0] == "StopTransaction"
        assert {p["transaction_id"] for _, p in after} == {second_tx}
        assert after[-1][0] == "StopTransaction"
        # The MeterValues the line dropped under was sent again, as it was, then the rest.
        ((_, dropped),) = csms.dropped
        dropped_at = next(i for i, (_, p) in enumerate(transaction) if p == dropped)
        assert transaction[dropped_at + 1] == ("MeterValues", dropped)
        stamps = [taken_at(p) for a, p in transaction if a == "MeterValues"]
        assert stamps == sorted(stamps)
        # The second vehicle came while offline: authorized locally, not by Authorize.
        assert len(csms.of("CP1", "Authorize")) == 1
        # The register carries on from one visit to the next.
        stop, start = before[-1][1], transaction[second_start][1]
        assert start["meter_start"] == stop["meter_stop"]

    stats = run_against(Csms16, config, scenario)
    assert stats.reconnects == 1
    assert stats.unsent_events == 0
    assert stats.call_errors == {}


# ---------------------------------------------------------------- what the CSMS asks


def test_configuration_is_reported_and_only_the_sample_interval_changes() -> None:
    def config(url: str) -> FleetConfig:
        return fleet16(
            url,
            station16("PW"),
            station16("AMP", current_only=True),
            station16("DC", power_kw=50.0),
            vehicles_per_station=0,
        )

    async def scenario(csms: Csms16, fleet: ChargerFleet) -> None:
        await until(lambda: all(csms.of(s, "StatusNotification") for s in ("PW", "AMP", "DC")))
        answer = await csms.send("PW", call16.GetConfiguration())
        keys = {k["key"]: (k["value"], k["readonly"]) for k in answer.configuration_key}
        assert keys == {
            "NumberOfConnectors": ("1", True),
            "ChargingScheduleAllowedChargingRateUnit": ("Power", True),
            "ChargeProfileMaxStackLevel": ("8", True),
            "ChargingScheduleMaxPeriods": ("24", True),
            "MaxChargingProfilesInstalled": ("10", True),
            "MeterValueSampleInterval": ("10", False),
            "ConnectorPhaseRotation": ("1.RST", True),
        }
        assert answer.unknown_key is None
        asked = ["ChargingScheduleAllowedChargingRateUnit", "HeartbeatInterval"]
        answer = await csms.send("AMP", call16.GetConfiguration(key=asked))
        assert [(k["key"], k["value"]) for k in answer.configuration_key] == [
            ("ChargingScheduleAllowedChargingRateUnit", "Current")
        ]
        assert answer.unknown_key == ["HeartbeatInterval"]
        answer = await csms.send("DC", call16.GetConfiguration(key=["ConnectorPhaseRotation"]))
        assert answer.configuration_key[0]["value"] == "1.NotApplicable"

        async def change(key: str, value: str) -> str:
            answer = await csms.send("PW", call16.ChangeConfiguration(key=key, value=value))
            return str(answer.status)

        assert await change("MeterValueSampleInterval", "30") == "Accepted"
        answer = await csms.send("PW", call16.GetConfiguration(key=["MeterValueSampleInterval"]))
        assert answer.configuration_key[0]["value"] == "30"
        assert await change("MeterValueSampleInterval", "ten") == "Rejected"
        assert await change("NumberOfConnectors", "2") == "Rejected"  # read-only
        assert await change("AuthorizationKey", "x") == "NotSupported"

        # No transaction: a TxProfile is refused, a TxDefaultProfile kept and in force.
        refused = await csms.send("PW", profile_request(3000.0))
        assert refused.status == "Rejected"
        default = profile_request(2000.0, connector_id=0, purpose="TxDefaultProfile")
        assert (await csms.send("PW", default)).status == "Accepted"
        composite = await csms.send("PW", call16.GetCompositeSchedule(connector_id=1, duration=60))
        assert composite.status == "Accepted"
        assert schedule_of(composite) == ("W", [(0, 2000.0)])
        unknown = await csms.send("PW", call16.GetCompositeSchedule(connector_id=2, duration=60))
        assert unknown.status == "Rejected"
        in_amps = call16.GetCompositeSchedule(connector_id=1, duration=60, charging_rate_unit="A")
        assert (await csms.send("DC", in_amps)).status == "Rejected"

        with pytest.raises(OcppNotImplementedError, match="Reset"):
            await csms.send("PW", call16.Reset(type="Soft"))

    stats = run_against(Csms16, config, scenario)
    assert stats.requests_refused == {
        "ChangeConfiguration": 3,
        "SetChargingProfile": 1,
        "GetCompositeSchedule": 2,
        "Reset": 1,
    }


def test_the_sample_interval_spaces_the_meter_values() -> None:
    def config(url: str) -> FleetConfig:
        return fleet16(url, station16("CP1"))

    async def scenario(csms: Csms16, fleet: ChargerFleet) -> None:
        await until(lambda: len(csms.meter_values("CP1")) >= 2)
        change = call16.ChangeConfiguration(key="MeterValueSampleInterval", value="30")
        assert (await csms.send("CP1", change)).status == "Accepted"
        since = fleet.clock.now()
        await until(lambda: sum(taken_at(m) > since for m in csms.meter_values("CP1")) >= 4)
        stamps = [taken_at(m) for m in csms.meter_values("CP1") if taken_at(m) > since]
        for earlier, later in itertools.pairwise(stamps):
            assert 25 <= (later - earlier).total_seconds() <= 35
        change = call16.ChangeConfiguration(key="MeterValueSampleInterval", value="0")
        assert (await csms.send("CP1", change)).status == "Accepted"
        seen = len(csms.meter_values("CP1"))
        stop_at = fleet.clock.now() + timedelta(seconds=120)
        await until(lambda: fleet.clock.now() > stop_at)
        assert len(csms.meter_values("CP1")) <= seen + 1  # one may have been on its way

    run_against(Csms16, config, scenario)


def test_profiles_in_w_and_a_are_followed_and_refused_where_they_must_be() -> None:
    def config(url: str) -> FleetConfig:
        return fleet16(
            url,
            station16("PW"),
            station16("AMP", current_only=True),
            station16("NOV2X", v2x=False),
        )

    async def scenario(csms: Csms16, fleet: ChargerFleet) -> None:
        stations = ("PW", "AMP", "NOV2X")
        await until(lambda: all(len(csms.meter_values(s)) >= 1 for s in stations))
        tx = {s: int(fleet.station(s).transaction_id or "0") for s in stations}
        assert all(tx.values())

        async def accepted(station_id: str, request: Any) -> bool:
            answer = await csms.send(station_id, request)
            return bool(answer.status == "Accepted")

        # W: the default for every connector, then a TxProfile over it.
        default = profile_request(2000.0, connector_id=0, purpose="TxDefaultProfile")
        assert await accepted("PW", default)
        assert await power_after(csms, "PW", fleet.clock.now()) == ("Power.Active.Import", "2000.0")
        assert await accepted("PW", profile_request(3000.0, profile_id=2, transaction_id=tx["PW"]))
        assert fleet.station("PW").setpoint_kw == 3.0
        assert await power_after(csms, "PW", fleet.clock.now()) == ("Power.Active.Import", "3000.0")
        composite = await csms.send("PW", call16.GetCompositeSchedule(connector_id=1, duration=600))
        assert schedule_of(composite) == ("W", [(0, 3000.0)])
        assert composite.connector_id == 1
        other = profile_request(1000.0, profile_id=3, transaction_id=tx["PW"] + 1)
        assert not await accepted("PW", other)
        cleared = await csms.send(
            "PW", call16.ClearChargingProfile(charging_profile_purpose="TxProfile")
        )
        assert cleared.status == "Accepted"
        assert await power_after(csms, "PW", fleet.clock.now()) == ("Power.Active.Import", "2000.0")
        composite = await csms.send("PW", call16.GetCompositeSchedule(connector_id=0, duration=60))
        assert schedule_of(composite) == ("W", [(0, 2000.0)])
        unknown = await csms.send("PW", call16.ClearChargingProfile(id=999))
        assert unknown.status == "Unknown"
        # Above the station's 11 kW, the composite schedule says what it will do: 11 kW.
        assert await accepted("PW", profile_request(20000.0, profile_id=5, stack_level=1))
        composite = await csms.send("PW", call16.GetCompositeSchedule(connector_id=1, duration=60))
        assert schedule_of(composite) == ("W", [(0, 11000.0)])
        assert await power_after(csms, "PW", fleet.clock.now()) == ("Power.Active.Import", "7000.0")
        # A negative limit discharges a V2X station.
        export_before = fleet.station("PW").export_register_wh
        assert await accepted("PW", profile_request(-4000.0, profile_id=4, stack_level=2))
        assert await power_after(csms, "PW", fleet.clock.now()) == ("Power.Active.Export", "4000.0")
        assert fleet.station("PW").export_register_wh > export_before
        assert fleet.station("PW").profile_ids == (1, 4, 5)

        # A: refused in W, followed in A on the default phases or those given.
        assert not await accepted("AMP", profile_request(3000.0))
        assert await accepted("AMP", profile_request(8.0, unit="A"))
        expected_w = 8 * AC_PHASE_VOLTAGE_V * AC_PHASES
        assert await power_after(csms, "AMP", fleet.clock.now()) == (
            "Power.Active.Import",
            f"{expected_w:.1f}",
        )
        composite = await csms.send("AMP", call16.GetCompositeSchedule(connector_id=1, duration=60))
        assert schedule_of(composite) == ("A", [(0, 8.0)])
        in_w = call16.GetCompositeSchedule(connector_id=1, duration=60, charging_rate_unit="W")
        assert schedule_of(await csms.send("AMP", in_w)) == ("W", [(0, expected_w)])
        one_phase = profile_request(16.0, unit="A", profile_id=2, stack_level=1, phases=1)
        assert await accepted("AMP", one_phase)
        assert await power_after(csms, "AMP", fleet.clock.now()) == (
            "Power.Active.Import",
            f"{16 * AC_PHASE_VOLTAGE_V:.1f}",
        )

        # A station that cannot discharge refuses a negative limit and keeps charging.
        assert not await accepted("NOV2X", profile_request(-4000.0))
        assert await power_after(csms, "NOV2X", fleet.clock.now()) == (
            "Power.Active.Import",
            "7000.0",
        )
        assert fleet.station("NOV2X").export_register_wh == 0

    stats = run_against(Csms16, config, scenario)
    assert stats.requests_refused == {"SetChargingProfile": 3}
    assert stats.requests_received["SetChargingProfile"] == 9


def test_the_battery_window_holds_against_the_profiles() -> None:
    def config(url: str) -> FleetConfig:
        # The vehicle arrives at its target, which is also the owner's floor.
        return fleet16(
            url, station16("CP1"), arrival_soc=(0.8, 0.8), target_soc=(0.8, 0.8), min_soc=0.8
        )

    async def scenario(csms: Csms16, fleet: ChargerFleet) -> None:
        await until(lambda: len(csms.meter_values("CP1")) >= 2)
        assert first_reading(csms.meter_values("CP1")[-1], "Power.Active.Import") == "0.0"
        assert csms.of("CP1", "StatusNotification")[-1]["status"] == "SuspendedEV"
        assert (await csms.send("CP1", profile_request(-4000.0))).status == "Accepted"
        assert await power_after(csms, "CP1", fleet.clock.now()) == ("Power.Active.Import", "0.0")
        last = csms.meter_values("CP1")[-1]
        assert first_reading(last, "SoC") == "80.0"
        assert first_reading(last, "Energy.Active.Export.Register") == "0"

    run_against(Csms16, config, scenario)


# ---------------------------------------------------------------- the pure parts


def _profile(
    periods: list[tuple[int, float]],
    *,
    purpose: str = "TxProfile",
    kind: str = "Absolute",
    start: datetime | None = None,
    connector_id: int = 1,
    unit: str = "W",
    rate_unit: str | None = None,
    can_discharge: bool = True,
    **fields: Any,
) -> Any:
    schedule: dict[str, Any] = {
        "charging_rate_unit": unit,
        "charging_schedule_period": [{"start_period": s, "limit": v} for s, v in periods],
    }
    if start is not None:
        schedule["start_schedule"] = timestamp(start)
    if "duration" in fields:
        schedule["duration"] = fields.pop("duration")
    raw = {
        "charging_profile_id": fields.pop("profile_id", 1),
        "stack_level": fields.pop("stack_level", 0),
        "charging_profile_purpose": purpose,
        "charging_profile_kind": kind,
        "charging_schedule": schedule,
        **fields,
    }
    return parse_profile16(
        raw,
        connector_id=connector_id,
        received_at=START,
        rate_unit=rate_unit or unit,
        can_discharge=can_discharge,
    )


def at(seconds: float) -> datetime:
    """``seconds`` after ``START``."""
    return START + timedelta(seconds=seconds)


def test_the_composite_schedule_stacks_tx_over_default_under_the_cap() -> None:
    default = _profile(
        [(0, 4000.0), (120, 1000.0)],
        purpose="TxDefaultProfile",
        connector_id=0,
        start=at(60),
        duration=300,
    )
    short = _profile([(0, 2500.0)], start=at(100), duration=50, stack_level=2, profile_id=2)
    relative = _profile(
        [(0, 9000.0), (1200, 500.0)], kind="Relative", duration=1150, stack_level=1, profile_id=3
    )
    cap = _profile(
        [(0, 7000.0)],
        purpose="ChargePointMaxProfile",
        connector_id=0,
        start=START,
        duration=120,
        profile_id=4,
    )
    profiles = [default, short, relative, cap]
    transaction_start = START - timedelta(seconds=1000)
    schedule = composite_schedule(
        profiles,
        start=START,
        duration_s=600,
        transaction_start=transaction_start,
        fallback=Limit(11.0, None),
    )
    assert schedule == [
        (0, Limit(7.0, None)),  # the TxProfile's 9 kW under the 7 kW cap
        (100, Limit(2.5, None)),  # the higher stack level
        (150, Limit(4.0, None)),  # the TxProfiles have ended: the default
        (180, Limit(1.0, None)),
        (360, Limit(11.0, None)),  # nothing in force: the station's maximum
    ]
    for offset_s, limit in schedule:
        in_force = limit_in_force(profiles, at(offset_s), transaction_start=transaction_start)
        assert in_force == (None if offset_s == 360 else limit)


def test_a_recurring_profile_repeats_daily_and_amps_convert_both_ways() -> None:
    daily = _profile(
        [(0, 2000.0), (3600, 3000.0)],
        purpose="TxDefaultProfile",
        kind="Recurring",
        recurrency_kind="Daily",
        start=START - timedelta(days=2) + timedelta(seconds=600),
    )
    schedule = composite_schedule(
        [daily], start=START, duration_s=5000, transaction_start=START, fallback=Limit(11.0, None)
    )
    assert schedule == [(0, Limit(3.0, None)), (600, Limit(2.0, None)), (4200, Limit(3.0, None))]

    amps = _profile([(0, 16.0)], unit="A", number_phases=None)
    assert amps.periods[0].limit == Limit(16 * AC_PHASE_VOLTAGE_V * AC_PHASES / 1000, None)
    one_phase = parse_profile16(
        {
            "charging_profile_id": 1,
            "stack_level": 0,
            "charging_profile_purpose": "TxProfile",
            "charging_profile_kind": "Relative",
            # As ``ocpp`` hands a 1.6 SetChargingProfile: numbers as Decimal.
            "charging_schedule": {
                "charging_rate_unit": "A",
                "charging_schedule_period": [
                    {"start_period": 0, "limit": Decimal("16.0"), "number_phases": 1}
                ],
            },
        },
        connector_id=1,
        received_at=START,
        rate_unit="A",
        can_discharge=False,
    )
    (period,) = one_phase.periods
    assert period.limit.power_kw == pytest.approx(16 * AC_PHASE_VOLTAGE_V / 1000)
    assert period.limit == Limit(period.limit.power_kw, 1)
    assert limit_in_unit(period.limit.power_kw, unit="A", phases=1) == 16.0
    assert limit_in_unit(period.limit.power_kw, unit="W", phases=1) == 16 * AC_PHASE_VOLTAGE_V


def test_a_profile_the_station_cannot_follow_is_refused_with_its_reason() -> None:
    with pytest.raises(ProfileRefusedError, match="RateUnit: chargingRateUnit W"):
        _profile([(0, 3000.0)], rate_unit="A")
    with pytest.raises(ProfileRefusedError, match="NegativeLimit"):
        _profile([(0, -3000.0)], can_discharge=False)
    with pytest.raises(ProfileRefusedError, match="NegativeLimit"):
        _profile([(0, -3000.0)], purpose="ChargePointMaxProfile", connector_id=0)
    with pytest.raises(ProfileRefusedError, match="TxProfileOnConnector0"):
        _profile([(0, 3000.0)], connector_id=0)
    with pytest.raises(ProfileRefusedError, match="UnknownConnector"):
        _profile([(0, 3000.0)], connector_id=2)
    with pytest.raises(ProfileRefusedError, match="StackLevel: stackLevel 9"):
        _profile([(0, 3000.0)], stack_level=9)
    with pytest.raises(ProfileRefusedError, match="TooManyPeriods: 25 periods"):
        _profile([(60 * i, 3000.0) for i in range(25)])
    with pytest.raises(ProfileRefusedError, match="Recurring needs"):
        _profile([(0, 3000.0)], kind="Recurring", start=START)
    with pytest.raises(FormatViolationError, match=r"chargingSchedulePeriod\[0\]\.limit"):
        _profile([(0, "3000")])  # type: ignore[list-item]


def test_configuration_answers_and_call_answers_are_read() -> None:
    configuration = Configuration16(current_only=True, dc=False, meter_interval_s=10)
    assert configuration.change("MeterValueSampleInterval", "-5") == ("Rejected", None)
    assert configuration.change("MeterValueSampleInterval", "60") == ("Accepted", 60)
    assert configuration.answer(["Nope"]) == {"configuration_key": [], "unknown_key": ["Nope"]}
    started = result16.StartTransaction(transaction_id=42, id_tag_info={"status": "Blocked"})
    assert CallAnswer.from_result(started) == CallAnswer("Blocked", None, transaction_id=42)
    with pytest.raises(FormatViolationError, match=r"idTagInfo\.status"):
        CallAnswer.from_result(result16.Authorize(id_tag_info={"status": 3}))


def test_the_fleet_gives_the_last_share_to_1_6_and_splits_the_rest_as_before() -> None:
    config = make_fleet_config(
        url="ws://x",
        count=10,
        v16_share=0.3,
        v201_share=0.5,
        current_only_share=0.5,
    )
    versions = [s.ocpp_version for s in config.stations]
    assert versions == [OcppVersion.V21] * 3 + [OcppVersion.V201] * 4 + [OcppVersion.V16] * 3
    assert [s.current_only for s in config.stations][-3:] == [False, True, True]
    assert [s.v2x for s in config.stations] == [True] * 3 + [False] * 4 + [True] * 3
    dc = make_fleet_config(
        url="ws://x", count=4, v16_share=1, current_only_share=1, max_power_kw=50
    )
    assert not any(s.current_only for s in dc.stations)  # a DC station takes W
    with pytest.raises(ValueError, match=r"v16_share must be in \[0, 1\], got 1.5"):
        make_fleet_config(url="ws://x", count=2, v16_share=1.5)
    with pytest.raises(ValueError, match=r"current_only is for an OCPP 1\.6 AC station"):
        ChargerConfig("X", None, OcppVersion.V21, 11.0, True, current_only=True)
    args = build_parser().parse_args(
        ["chargers", "--v16-share", "0.3", "--current-only-share", "0.5"]
    )
    assert (args.v16_share, args.current_only_share) == (0.3, 0.5)
    assert math.isclose(build_parser().parse_args(["chargers"]).v16_share, 0.0)
