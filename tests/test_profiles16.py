"""OCPP 1.6 smart-charging requests: validated against the official 1.6 schemas, in W and
in A, never a negative limit for a station that may not discharge."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.messages import Call, validate_payload

from tests.test_profiles import command, payload
from v2ghub.live.profiles16 import (
    Rates,
    RateUnit,
    clear_profile_v16,
    composite_power_kw,
    composite_schedule_v16,
    sent_power_kw,
    transaction_number,
    tx_default_profile_v16,
    tx_profile_v16,
)
from v2ghub.store.records import OcppVersion

NOW = datetime(2026, 7, 1, 10, 30, 5, 250000, tzinfo=UTC)
AMPS = Rates(unit=RateUnit.AMPS, phases=3, voltage_v=220.0)


def validated(request: object) -> dict[str, Any]:
    body = payload(request)
    message = Call(unique_id="1", action=type(request).__name__, payload=body)
    asyncio.run(validate_payload(message, "1.6"))
    return body


def v16(setpoint_kw: float, *, discharge_limit_kw: float = 7.0, transaction_id: str = "42") -> Any:
    return command(
        setpoint_kw,
        version=OcppVersion.V16,
        discharge_limit_kw=discharge_limit_kw,
        transaction_id=transaction_id,
    )


def test_a_tx_profile_in_watts_names_the_transaction_and_discharges_when_allowed() -> None:
    body = validated(tx_profile_v16(v16(-6.5), profile_id=17, now=NOW, rates=Rates()))
    assert body == {
        "connectorId": 2,
        "csChargingProfiles": {
            "chargingProfileId": 17,
            "transactionId": 42,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "startSchedule": "2026-07-01T10:30:05Z",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": -6500.0}],
            },
        },
    }


def test_a_charge_only_station_is_never_told_a_negative_limit() -> None:
    request = tx_profile_v16(v16(0.0, discharge_limit_kw=0.0), profile_id=3, now=NOW, rates=AMPS)
    period = validated(request)["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]
    assert period == [{"startPeriod": 0, "limit": 0.0, "numberPhases": 3}]


def test_a_limit_in_amps_is_the_power_over_three_phases_at_220_v_rounded_down() -> None:
    # 7 kW / (3 x 220 V) = 10.606 A: 10.6 A, which is 6.996 kW, never more than meant.
    request = tx_profile_v16(v16(7.0), profile_id=3, now=NOW, rates=AMPS)
    body = validated(request)["csChargingProfiles"]["chargingSchedule"]
    assert body["chargingRateUnit"] == "A"
    assert body["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 10.6, "numberPhases": 3}]
    assert sent_power_kw(v16(7.0), AMPS) == pytest.approx(6.996)


def test_the_default_profile_covers_every_connector_and_is_never_negative() -> None:
    body = validated(tx_default_profile_v16(-3.0, rates=Rates()))
    assert body["connectorId"] == 0
    profile = body["csChargingProfiles"]
    assert profile["chargingProfilePurpose"] == "TxDefaultProfile"
    assert profile["chargingProfileKind"] == "Relative"
    assert "transactionId" not in profile
    assert profile["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 0.0}
    ]


def test_clear_and_composite_requests_are_valid() -> None:
    assert validated(clear_profile_v16(17)) == {"id": 17}
    assert validated(composite_schedule_v16(1, 60, AMPS)) == {
        "connectorId": 1,
        "duration": 60,
        "chargingRateUnit": "A",
    }


def test_a_transaction_id_that_is_not_a_1_6_integer_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'tx-42' is not an OCPP 1\.6 integer id"):
        transaction_number("tx-42")
    with pytest.raises(ValueError, match=r"is not an OCPP 1\.6 integer id"):
        tx_profile_v16(v16(1.0, transaction_id="tx-42"), profile_id=1, now=NOW, rates=Rates())


@pytest.mark.parametrize(
    ("configuration", "expected"),
    [
        ({}, Rates()),
        (
            {
                "ChargingScheduleAllowedChargingRateUnit": "Current",
                "ConnectorPhaseRotation": "0.RST, 1.R",
                "NumberOfConnectors": "2",
            },
            Rates(unit=RateUnit.AMPS, phases=1, connectors=2),
        ),
        (
            {"ChargingScheduleAllowedChargingRateUnit": "Current,Power", "NumberOfConnectors": "x"},
            Rates(unit=RateUnit.WATTS),
        ),
        ({"ConnectorPhaseRotation": "NotApplicable", "NumberOfConnectors": "0"}, Rates()),
    ],
)
def test_the_configuration_says_unit_phases_and_connectors(
    configuration: dict[str, str], expected: Rates
) -> None:
    assert Rates.from_configuration(configuration) == expected


def test_the_composite_schedule_is_read_in_its_own_unit() -> None:
    answer = SimpleNamespace(
        status="Accepted",
        charging_schedule={
            "charging_rate_unit": "A",
            "charging_schedule_period": [
                {"start_period": 0, "limit": Decimal("16.0"), "number_phases": 1}
            ],
        },
    )
    assert composite_power_kw(answer, Rates()) == pytest.approx(16 * 220 / 1000)
    assert composite_power_kw(SimpleNamespace(status="Rejected"), Rates()) is None
    empty = SimpleNamespace(status="Accepted", charging_schedule={"charging_schedule_period": []})
    assert composite_power_kw(empty, Rates()) is None


@settings(max_examples=60, deadline=None)
@given(
    share=st.floats(-1.0, 1.0),
    charge_kw=st.floats(0.0, 350.0),
    discharge_kw=st.floats(0.0, 350.0),
    amps=st.booleans(),
    transaction=st.integers(1, 2**31 - 1),
)
def test_any_1_6_command_gives_a_valid_profile_within_its_limits(
    share: float, charge_kw: float, discharge_kw: float, amps: bool, transaction: int
) -> None:
    setpoint_kw = share * (charge_kw if share >= 0 else discharge_kw)
    cmd = command(
        setpoint_kw,
        version=OcppVersion.V16,
        charge_limit_kw=charge_kw,
        discharge_limit_kw=discharge_kw,
        transaction_id=str(transaction),
    )
    rates = AMPS if amps else Rates()
    body = validated(tx_profile_v16(cmd, profile_id=9, now=NOW, rates=rates))
    limit = body["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
    told_kw = rates.power_kw(limit)
    # Never more than meant either way (rounded toward zero), within one 0.1 step.
    assert -discharge_kw - 1e-9 <= told_kw <= charge_kw + 1e-9
    assert abs(told_kw - setpoint_kw) <= rates.power_kw(0.1) + 1e-9
    if discharge_kw == 0:
        assert limit >= 0
