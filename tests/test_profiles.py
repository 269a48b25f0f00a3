"""OCPP charging-profile payloads: the package's own serialisation, validated against the
official 2.1 and 2.0.1 schemas, and their values."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import FormatViolationError
from ocpp.messages import Call, validate_payload
from ocpp.v21 import call as call_v21
from ocpp.v201 import call as call_v201

from v2ghub.live.control import SetpointCommand
from v2ghub.live.profiles import (
    profile_request,
    set_charging_profile_v21,
    set_charging_profile_v201,
    update_dynamic_schedule_v21,
)
from v2ghub.store.records import OcppVersion

NOW = datetime(2025, 7, 16, 18, 30, 5, 123456, tzinfo=timezone(timedelta(hours=8)))
SCHEMA_VERSION = {OcppVersion.V21: "2.1", OcppVersion.V201: "2.0.1"}


def command(
    setpoint_kw: float,
    *,
    version: OcppVersion = OcppVersion.V21,
    charge_limit_kw: float = 11.0,
    discharge_limit_kw: float = 7.0,
    transaction_id: str = "tx-42",
) -> SetpointCommand:
    return SetpointCommand(
        station_id="cs-1",
        evse_id=2,
        transaction_id=transaction_id,
        ocpp_version=version,
        site_id="depot",
        setpoint_kw=setpoint_kw,
        charge_limit_kw=charge_limit_kw,
        discharge_limit_kw=discharge_limit_kw,
        planner="lp",
    )


def payload(request: object) -> dict[str, Any]:
    """The JSON payload exactly as ``ocpp.ChargePoint.call`` builds it."""
    result = remove_nones(snake_to_camel_case(serialize_as_dict(request)))
    assert isinstance(result, dict)
    return result


def validated(request: object, version: OcppVersion) -> dict[str, Any]:
    """The payload, after the package validated it against the official schema."""
    body = payload(request)
    message = Call(unique_id="1", action=type(request).__name__, payload=body)
    asyncio.run(validate_payload(message, SCHEMA_VERSION[version]))
    return body


def test_v21_discharge_profile_is_valid_and_signed() -> None:
    request = set_charging_profile_v21(command(-6.5), profile_id=17, now=NOW)
    assert isinstance(request, call_v21.SetChargingProfile)
    body = validated(request, OcppVersion.V21)
    assert body == {
        "evseId": 2,
        "chargingProfile": {
            "id": 17,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Dynamic",
            "transactionId": "tx-42",
            "dynUpdateTime": "2025-07-16T10:30:05Z",
            "maxOfflineDuration": 300,
            "invalidAfterOfflineDuration": True,
            "chargingSchedule": [
                {
                    "id": 17,
                    "chargingRateUnit": "W",
                    "chargingSchedulePeriod": [
                        {
                            "startPeriod": 0,
                            "operationMode": "CentralSetpoint",
                            "setpoint": -6500.0,
                            "limit": 11000.0,
                            "dischargeLimit": -7000.0,
                        }
                    ],
                }
            ],
        },
    }


def test_v21_charge_only_vehicle_has_a_zero_discharge_limit() -> None:
    request = set_charging_profile_v21(command(3.6, discharge_limit_kw=0.0), profile_id=1, now=NOW)
    period = validated(request, OcppVersion.V21)["chargingProfile"]["chargingSchedule"][0][
        "chargingSchedulePeriod"
    ][0]
    assert period["setpoint"] == 3600.0
    assert period["dischargeLimit"] == 0.0
    assert str(period["dischargeLimit"]) == "0.0"  # not -0.0


def test_the_schema_check_is_real() -> None:
    body = payload(set_charging_profile_v21(command(-6.5), profile_id=17, now=NOW))
    body["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"][0][
        "dischargeLimit"
    ] = 7000.0  # the 2.1 schema wants it <= 0
    with pytest.raises(
        FormatViolationError, match=re.escape("7000.0 is greater than the maximum of 0.0")
    ):
        asyncio.run(validate_payload(Call("1", "SetChargingProfile", body), "2.1"))


def test_update_dynamic_schedule() -> None:
    request = update_dynamic_schedule_v21(command(-2.0), 17)
    assert isinstance(request, call_v21.UpdateDynamicSchedule)
    assert validated(request, OcppVersion.V21) == {
        "chargingProfileId": 17,
        "scheduleUpdate": {"setpoint": -2000.0, "limit": 11000.0, "dischargeLimit": -7000.0},
    }


def test_v201_profile_is_a_non_negative_limit() -> None:
    request = set_charging_profile_v201(
        command(3.6, version=OcppVersion.V201, discharge_limit_kw=0.0), profile_id=5, now=NOW
    )
    assert isinstance(request, call_v201.SetChargingProfile)
    assert validated(request, OcppVersion.V201) == {
        "evseId": 2,
        "chargingProfile": {
            "id": 5,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Absolute",
            "transactionId": "tx-42",
            "chargingSchedule": [
                {
                    "id": 5,
                    "chargingRateUnit": "W",
                    "startSchedule": "2025-07-16T10:30:05Z",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 3600.0}],
                }
            ],
        },
    }


def test_refusals() -> None:
    v201 = command(-1.0, version=OcppVersion.V201, discharge_limit_kw=0.0)
    with pytest.raises(
        ValueError,
        match=re.escape("setpoint -1.0 kW is outside [-0.0, 11.0] kW for cs-1/2"),
    ):
        set_charging_profile_v201(v201, profile_id=1, now=NOW)
    with pytest.raises(ValueError, match=re.escape("speaks ocpp2.1, not ocpp2.0.1")):
        set_charging_profile_v201(command(1.0), profile_id=1, now=NOW)
    with pytest.raises(ValueError, match=re.escape("speaks ocpp2.0.1, not ocpp2.1")):
        update_dynamic_schedule_v21(command(1.0, version=OcppVersion.V201), 1)
    with pytest.raises(ValueError, match=r"setpoint -8.0 kW is outside \[-7.0, 11.0\] kW"):
        set_charging_profile_v21(command(-8.0), profile_id=1, now=NOW)
    with pytest.raises(ValueError, match="longer than 36 characters"):
        set_charging_profile_v21(command(1.0, transaction_id="x" * 37), profile_id=1, now=NOW)
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        set_charging_profile_v21(command(1.0), profile_id=1, now=datetime(2025, 7, 16))  # noqa: DTZ001


def test_a_201_station_configured_to_discharge_gets_a_negative_limit() -> None:
    request = set_charging_profile_v201(
        command(-5.0, version=OcppVersion.V201, discharge_limit_kw=7.0), profile_id=4, now=NOW
    )
    [schedule] = request.charging_profile.charging_schedule
    assert [period.limit for period in schedule.charging_schedule_period] == [-5000.0]


def test_profile_request_picks_the_message() -> None:
    v21 = command(1.0)
    v201 = command(1.0, version=OcppVersion.V201, discharge_limit_kw=0.0)
    first = profile_request(v21, profile_id=3, now=NOW, installed=False)
    assert isinstance(first, call_v21.SetChargingProfile)
    assert isinstance(
        profile_request(v21, profile_id=3, now=NOW, installed=True), call_v21.UpdateDynamicSchedule
    )
    assert isinstance(
        profile_request(v201, profile_id=3, now=NOW, installed=True), call_v201.SetChargingProfile
    )


limits = st.floats(0.0, 350.0, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(
    charge=limits,
    discharge=limits,
    share=st.floats(-1.0, 1.0),
    version=st.sampled_from([OcppVersion.V21, OcppVersion.V201]),  # 1.6: test_profiles16.py
    profile_id=st.integers(0, 2**31 - 1),
)
def test_any_command_gives_valid_payloads(
    charge: float, discharge: float, share: float, version: OcppVersion, profile_id: int
) -> None:
    if version is OcppVersion.V201:
        discharge = 0.0
    setpoint = share * (charge if share >= 0 else discharge)
    cmd = command(setpoint, version=version, charge_limit_kw=charge, discharge_limit_kw=discharge)
    now = datetime(2025, 1, 1, tzinfo=UTC)
    request = profile_request(cmd, profile_id=profile_id, now=now, installed=False)
    period = validated(request, version)["chargingProfile"]["chargingSchedule"][0][
        "chargingSchedulePeriod"
    ][0]
    if version is OcppVersion.V21:
        assert period["setpoint"] == pytest.approx(setpoint * 1000, abs=0.5)
        assert period["dischargeLimit"] <= 0
        assert period["dischargeLimit"] <= period["setpoint"] <= period["limit"]
        update = profile_request(cmd, profile_id=profile_id, now=now, installed=True)
        validated(update, version)
    else:
        assert period["limit"] == pytest.approx(setpoint * 1000, abs=0.5)
        assert period["limit"] >= 0


def test_a_scheduled_vehicle_gets_the_whole_plan_as_an_absolute_profile() -> None:
    scheduled = replace(command(-5.0), schedule_kw=(-5.0, -5.0, 0.0, 7.4, 7.4), step_s=900)
    request = profile_request(scheduled, profile_id=9, now=NOW, installed=True)
    assert isinstance(request, call_v21.SetChargingProfile)  # never a dynamic update
    body = validated(request, OcppVersion.V21)
    profile = body["chargingProfile"]
    assert profile["chargingProfileKind"] == "Absolute"
    [schedule] = profile["chargingSchedule"]
    assert schedule["startSchedule"] == "2025-07-16T10:30:05Z"
    assert schedule["duration"] == 5 * 900
    periods = schedule["chargingSchedulePeriod"]
    assert [(p["startPeriod"], p["setpoint"]) for p in periods] == [
        (0, -5000.0),
        (1800, 0.0),
        (2700, 7400.0),
    ]
    assert {p["operationMode"] for p in periods} == {"CentralSetpoint"}
    assert {p["dischargeLimit"] for p in periods} == {-7000.0}
