"""OCPP 1.6J smart charging: the requests v2ghub sends a 1.6 station, and how it reads
the station's configuration and composite schedule.

The request objects are the ``ocpp`` package's (``ocpp.v16.call``); its ``ChargePoint.call``
validates them against the official 1.6 schemas.

- A **TxProfile** for the running transaction: kind ``Absolute`` from ``now``, one period
  whose ``limit`` is the setpoint. 1.6 has no discharge: a station registered as V2X is
  sent a negative limit to discharge (the convention of bidirectional 1.6 chargers); any
  other station gets a limit >= 0, always.
- A **TxDefaultProfile** on connector 0 (each connector of the station): the safe limit a
  station keeps between transactions and when it loses the aggregator, so that its site
  stays within its limit without us.
- Limits go out in W, or in A with ``numberPhases`` where the station takes only A
  (``ChargingScheduleAllowedChargingRateUnit`` = ``Current``), converted once here with
  :func:`v2ghub.units.kw_to_current` at :data:`~v2ghub.defaults.AC_PHASE_VOLTAGE_V` and the
  station's phases (``ConnectorPhaseRotation``, else :data:`~v2ghub.defaults.AC_PHASES`).
  1.6 limits are multiples of 0.1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from ocpp.v16 import call as call_v16
from ocpp.v16.enums import ChargingProfileKindType, ChargingProfilePurposeType, ChargingRateUnitType

from v2ghub.defaults import AC_PHASE_VOLTAGE_V, AC_PHASES
from v2ghub.live.control import SetpointCommand
from v2ghub.live.profiles import STACK_LEVEL, check_limits, utc_timestamp
from v2ghub.units import current_to_kw, kw_to_current, kw_to_w, w_to_kw

CONFIGURATION_KEYS = (
    "ChargingScheduleAllowedChargingRateUnit",
    "ConnectorPhaseRotation",
    "NumberOfConnectors",
)
"""What v2ghub asks a 1.6 station after it boots (GetConfiguration)."""
TX_DEFAULT_PROFILE_ID = 1
"""The id of the TxDefaultProfile v2ghub installs on every 1.6 station (one each)."""


class RateUnit(StrEnum):
    """The unit of a 1.6 charging schedule's limits."""

    WATTS = "W"
    AMPS = "A"


@dataclass(frozen=True)
class Rates:
    """How a 1.6 station takes its limits: unit, phases and phase voltage."""

    unit: RateUnit = RateUnit.WATTS
    phases: int = AC_PHASES
    voltage_v: float = AC_PHASE_VOLTAGE_V
    connectors: int = 1

    @classmethod
    def from_configuration(cls, values: Mapping[str, str]) -> Rates:
        """Read from a GetConfiguration answer's keys (unknown or odd values: defaults).

        >>> Rates.from_configuration({"ChargingScheduleAllowedChargingRateUnit": "Current",
        ...                           "ConnectorPhaseRotation": "0.RST, 1.R"}).phases
        1
        """
        units = {part.strip() for part in values.get(CONFIGURATION_KEYS[0], "").split(",")}
        unit = RateUnit.AMPS if "Current" in units and "Power" not in units else RateUnit.WATTS
        return cls(
            unit=unit,
            phases=_phases(values.get("ConnectorPhaseRotation", "")),
            connectors=_positive_int(values.get("NumberOfConnectors"), 1),
        )

    def rate(self, power_kw: float) -> float:
        """A power as a 1.6 limit in this unit (a multiple of 0.1, rounded toward zero so
        that a limit never exceeds the power meant)."""
        value = (
            kw_to_w(power_kw)
            if self.unit is RateUnit.WATTS
            else kw_to_current(power_kw, voltage_v=self.voltage_v, phases=self.phases)
        )
        return math.trunc(round(value * 10, 6)) / 10 + 0.0

    def power_kw(self, rate: float, phases: int | None = None) -> float:
        """A 1.6 limit in this unit as a power (``phases``: the period's ``numberPhases``)."""
        if self.unit is RateUnit.WATTS:
            return w_to_kw(rate)
        return current_to_kw(rate, voltage_v=self.voltage_v, phases=phases or self.phases)


def _phases(rotation: str) -> int:
    """Phases of connector 1 (else any connector) from ``ConnectorPhaseRotation``, e.g.
    ``0.RST, 1.RST`` (3) or ``1.R`` (1); :data:`AC_PHASES` when it does not say."""
    by_connector: dict[str, int] = {}
    for entry in rotation.split(","):
        connector, _, letters = entry.strip().partition(".")
        if letters and set(letters) <= set("RST"):
            by_connector[connector] = len(letters)
    return by_connector.get("1", next(iter(by_connector.values()), AC_PHASES))


def _positive_int(value: str | None, default: int) -> int:
    try:
        number = int(value) if value is not None else default
    except ValueError:
        return default
    return number if number > 0 else default


def _charging_rate_unit(rates: Rates) -> ChargingRateUnitType:
    return ChargingRateUnitType.watts if rates.unit is RateUnit.WATTS else ChargingRateUnitType.amps


def _period(rates: Rates, power_kw: float) -> dict[str, object]:
    period: dict[str, object] = {"start_period": 0, "limit": rates.rate(power_kw)}
    if rates.unit is RateUnit.AMPS:
        period["number_phases"] = rates.phases
    return period


def transaction_number(transaction_id: str) -> int:
    """A 1.6 transaction id (an integer the CSMS assigned) from the text the store keeps."""
    if not transaction_id.isdigit():
        raise ValueError(f"transaction id {transaction_id!r} is not an OCPP 1.6 integer id")
    return int(transaction_id)


def tx_profile_v16(
    command: SetpointCommand, *, profile_id: int, now: datetime, rates: Rates
) -> call_v16.SetChargingProfile:
    """The TxProfile of a setpoint: negative (discharge) only when the command allows
    discharge, which it does only for a station registered as V2X.

    Raises
    ------
    ValueError
        The setpoint is outside the command's limits, the transaction id is not a 1.6
        integer, or ``now`` is naive.
    """
    check_limits(command)
    profile = {
        "charging_profile_id": profile_id,
        "transaction_id": transaction_number(command.transaction_id),
        "stack_level": STACK_LEVEL,
        "charging_profile_purpose": ChargingProfilePurposeType.tx_profile,
        "charging_profile_kind": ChargingProfileKindType.absolute,
        "charging_schedule": {
            "charging_rate_unit": _charging_rate_unit(rates),
            "start_schedule": utc_timestamp(now),
            "charging_schedule_period": [_period(rates, profile_power_kw(command))],
        },
    }
    return call_v16.SetChargingProfile(connector_id=command.evse_id, cs_charging_profiles=profile)


def profile_power_kw(command: SetpointCommand) -> float:
    """The power a 1.6 TxProfile carries for ``command``: its setpoint, or 0 for a
    discharge the station may not be told (no negative limit without V2X)."""
    return command.setpoint_kw if command.discharge_limit_kw > 0 else max(command.setpoint_kw, 0.0)


def sent_power_kw(command: SetpointCommand, rates: Rates) -> float:
    """The power the station is told, after rounding to its unit."""
    return rates.power_kw(rates.rate(profile_power_kw(command)))


def tx_default_profile_v16(limit_kw: float, *, rates: Rates) -> call_v16.SetChargingProfile:
    """The TxDefaultProfile of every connector (connector 0): at most ``limit_kw`` each,
    never negative."""
    profile = {
        "charging_profile_id": TX_DEFAULT_PROFILE_ID,
        "stack_level": STACK_LEVEL,
        "charging_profile_purpose": ChargingProfilePurposeType.tx_default_profile,
        "charging_profile_kind": ChargingProfileKindType.relative,
        "charging_schedule": {
            "charging_rate_unit": _charging_rate_unit(rates),
            "charging_schedule_period": [_period(rates, max(limit_kw, 0.0))],
        },
    }
    return call_v16.SetChargingProfile(connector_id=0, cs_charging_profiles=profile)


def clear_profile_v16(profile_id: int) -> call_v16.ClearChargingProfile:
    """Remove one profile (a finished transaction's TxProfile)."""
    return call_v16.ClearChargingProfile(id=profile_id)


def composite_schedule_v16(
    connector_id: int, duration_s: int, rates: Rates
) -> call_v16.GetCompositeSchedule:
    """Ask what the connector will do for ``duration_s`` from now, in the station's unit."""
    return call_v16.GetCompositeSchedule(
        connector_id=connector_id,
        duration=duration_s,
        charging_rate_unit=_charging_rate_unit(rates),
    )


def composite_power_kw(answer: object, rates: Rates) -> float | None:
    """The power limit in force now by a GetCompositeSchedule answer (its first period),
    or None when it gives none (status not Accepted, or no period)."""
    if getattr(answer, "status", None) != "Accepted":
        return None
    schedule = getattr(answer, "charging_schedule", None)
    if not isinstance(schedule, Mapping):
        return None
    periods = schedule.get("charging_schedule_period")
    if not isinstance(periods, list) or not periods or not isinstance(periods[0], Mapping):
        return None
    first = periods[0]
    limit = first.get("limit")  # the ocpp package reads JSON decimals as Decimal
    if not isinstance(limit, int | float | Decimal) or isinstance(limit, bool):
        return None
    unit = schedule.get("charging_rate_unit")
    phases = first.get("number_phases")
    read = Rates(
        unit=RateUnit.AMPS if unit == RateUnit.AMPS.value else RateUnit.WATTS,
        phases=rates.phases,
        voltage_v=rates.voltage_v,
    )
    return read.power_kw(float(limit), phases if isinstance(phases, int) else None)
