"""What a simulated charging station says and understands: OCPP payloads and charging
profiles, pure functions with no I/O.

Payloads are plain ``dict`` objects with snake_case keys, the form the ``ocpp`` package's
call dataclasses take (it turns them into camelCase and validates them against the
official JSON schemas). Units on the wire are OCPP's: W, Wh, A, V, percent.

Metering choices (valid in both OCPP 2.0.1 and 2.1):

- ``Energy.Active.Import.Register`` / ``Energy.Active.Export.Register``: whole Wh, rounded
  down (a meter never shows more than flowed), cumulative over the station's life, so they
  never fall. Import is energy delivered to the vehicle, export energy given back.
- ``Power.Active.Import`` and ``Power.Active.Export``: both sent, both >= 0 W; the signed
  power is import - export (the project's sign: + charging, - discharging). No negative
  import value is ever sent, so no reader can count a discharge twice.
- ``SoC``: percent with one decimal, location EV.

On an AC station the 2.1 and 2.0.1 ``acChargingParameters`` have no battery capacity or
state of charge, so the charging needs carry them in ``customData`` (vendorId
``"v2ghub"``, ``evEnergyCapacity`` Wh, ``stateOfCharge`` percent); a DC station sends them
in ``dcChargingParameters`` as the schema defines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from v2ghub.store.records import OcppVersion
from v2ghub.units import kw_to_w, kwh_to_wh, w_to_kw

Payload = dict[str, Any]

VENDOR_ID = "v2ghub"
AC_VOLTAGE_V = 230.0
"""Phase voltage used to turn an AC limit in A into W (``W = A * 230 V * phases``)."""
AC_PHASES = 3
DC_VOLTAGE_V = 400.0
"""Nominal DC link voltage used to turn a DC limit in A into W."""
AC_MIN_CURRENT_A = 6
AC_MAX_KW = 22.0
"""A station of at most this power is AC; above it, DC."""
PERCENT = 100.0

# Operation modes a simulated station follows; the others are refused with a reason.
MODE_CHARGING_ONLY = "ChargingOnly"
MODE_CENTRAL_SETPOINT = "CentralSetpoint"
MODE_IDLE = "Idle"
SUPPORTED_MODES = frozenset({MODE_CHARGING_ONLY, MODE_CENTRAL_SETPOINT, MODE_IDLE})
SUPPORTED_PURPOSES = frozenset({"TxProfile", "TxDefaultProfile", "ChargingStationMaxProfile"})


def timestamp(at: datetime) -> str:
    """OCPP date-time: UTC, ISO 8601, milliseconds, ``Z``."""
    utc = at.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Vehicle:
    """One visit of a vehicle to a station (one transaction)."""

    id_token: str
    model: str
    battery_kwh: float
    arrival_soc: float
    target_soc: float
    min_soc: float
    """The owner's floor: discharge never takes the battery below it (0-1)."""
    max_charge_kw: float
    """min(vehicle, station) at the connector."""
    max_discharge_kw: float
    """0 when the station, the protocol version or the vehicle cannot discharge."""
    arrived_at: datetime
    departure_at: datetime


# ---------------------------------------------------------------- station -> CSMS


def boot_notification(*, station_id: str, first: bool) -> Payload:
    """BootNotification: reason PowerUp at start, Unknown after a lost connection."""
    return {
        "charging_station": {
            "model": "v2ghub-sim-v2x",
            "vendor_name": "v2ghub",
            "serial_number": station_id[:25],
            "firmware_version": "sim-1",
        },
        "reason": "PowerUp" if first else "Unknown",
    }


def status_notification(*, at: datetime, occupied: bool) -> Payload:
    """StatusNotification of the station's one EVSE and connector."""
    return {
        "timestamp": timestamp(at),
        "connector_status": "Occupied" if occupied else "Available",
        "evse_id": 1,
        "connector_id": 1,
    }


def meter_value(
    *,
    at: datetime,
    import_wh: float,
    export_wh: float,
    power_kw: float,
    soc: float | None,
    context: str,
) -> Payload:
    """One MeterValue with the registers, the power split into import/export, and SoC."""
    sampled: list[Payload] = [
        _sample(math.floor(import_wh), "Energy.Active.Import.Register", context, "Wh"),
        _sample(math.floor(export_wh), "Energy.Active.Export.Register", context, "Wh"),
        _sample(round(kw_to_w(max(power_kw, 0.0)), 1), "Power.Active.Import", context, "W"),
        _sample(round(kw_to_w(max(-power_kw, 0.0)), 1), "Power.Active.Export", context, "W"),
    ]
    if soc is not None:
        soc_sample = _sample(round(soc * PERCENT, 1), "SoC", context, "Percent")
        soc_sample["location"] = "EV"
        sampled.append(soc_sample)
    return {"timestamp": timestamp(at), "sampled_value": sampled}


def _sample(value: float, measurand: str, context: str, unit: str) -> Payload:
    return {
        "value": value,
        "measurand": measurand,
        "context": context,
        "unit_of_measure": {"unit": unit},
    }


def transaction_event(
    *,
    event_type: str,
    at: datetime,
    seq_no: int,
    transaction_id: str,
    trigger_reason: str,
    charging_state: str,
    meter: Payload,
    id_token: str | None = None,
    stopped_reason: str | None = None,
) -> Payload:
    """TransactionEvent (Started, Updated or Ended) of EVSE 1 with one meter value."""
    info: Payload = {"transaction_id": transaction_id, "charging_state": charging_state}
    if stopped_reason is not None:
        info["stopped_reason"] = stopped_reason
    payload: Payload = {
        "event_type": event_type,
        "timestamp": timestamp(at),
        "trigger_reason": trigger_reason,
        "seq_no": seq_no,
        "transaction_info": info,
        "meter_value": [meter],
    }
    if event_type == "Started":
        payload["evse"] = {"id": 1, "connector_id": 1}
    if id_token is not None:
        payload["id_token"] = {"id_token": id_token, "type": "Local"}
    return payload


def charging_needs(
    *, vehicle: Vehicle, energy_kwh: float, version: OcppVersion, dc: bool
) -> Payload:
    """NotifyEVChargingNeeds for a vehicle holding ``energy_kwh`` now.

    On 2.1: ``requestedEnergyTransfer`` AC_BPT/DC_BPT when the vehicle may discharge (else
    AC_three_phase/DC), ``controlMode`` DynamicControl and ``v2xChargingParameters`` with
    powers in W and the energy requests in Wh relative to the energy stored now:

        evTargetEnergyRequest = (target_soc * battery - energy) in Wh
        evMinEnergyRequest    = (min_soc * battery - energy) in Wh   (negative above floor)
        evMaxEnergyRequest    = (battery - energy) in Wh
        evMinV2XEnergyRequest, evMaxV2XEnergyRequest: the same window as min and max

    On 2.0.1: charge only, ``energyAmount`` = max(evTargetEnergyRequest, 0).
    """
    capacity_wh = kwh_to_wh(vehicle.battery_kwh)
    energy_wh = kwh_to_wh(energy_kwh)
    target_wh = vehicle.target_soc * capacity_wh - energy_wh
    energy_amount_wh = max(round(target_wh), 0)
    soc_percent = round(energy_kwh / vehicle.battery_kwh * PERCENT)
    max_charge_w = kw_to_w(vehicle.max_charge_kw)
    bidirectional = version is OcppVersion.V21 and vehicle.max_discharge_kw > 0
    needs: Payload = {"departure_time": timestamp(vehicle.departure_at)}
    if dc:
        needs["requested_energy_transfer"] = "DC_BPT" if bidirectional else "DC"
        needs["dc_charging_parameters"] = {
            "ev_max_current": round(max_charge_w / DC_VOLTAGE_V),
            "ev_max_voltage": round(DC_VOLTAGE_V * 1.25),
            "ev_max_power": round(max_charge_w),
            "ev_energy_capacity": round(capacity_wh),
            "energy_amount": energy_amount_wh,
            "state_of_charge": soc_percent,
        }
    else:
        needs["requested_energy_transfer"] = "AC_BPT" if bidirectional else "AC_three_phase"
        needs["ac_charging_parameters"] = {
            "energy_amount": energy_amount_wh,
            "ev_min_current": AC_MIN_CURRENT_A,
            "ev_max_current": max(
                round(max_charge_w / (AC_VOLTAGE_V * AC_PHASES)), AC_MIN_CURRENT_A
            ),
            "ev_max_voltage": round(AC_VOLTAGE_V),
        }
        needs["custom_data"] = {
            "vendor_id": VENDOR_ID,
            "ev_energy_capacity": round(capacity_wh),
            "state_of_charge": soc_percent,
        }
    if version is OcppVersion.V21:
        needs["available_energy_transfer"] = (
            [needs["requested_energy_transfer"]] + (["DC"] if dc else ["AC_three_phase"])
            if bidirectional
            else [needs["requested_energy_transfer"]]
        )
        needs["control_mode"] = "DynamicControl"
        needs["v2x_charging_parameters"] = {
            "min_charge_power": 0.0,
            "max_charge_power": round(max_charge_w, 1),
            "min_discharge_power": 0.0,
            "max_discharge_power": round(kw_to_w(vehicle.max_discharge_kw), 1),
            "ev_target_energy_request": round(target_wh, 1),
            "ev_min_energy_request": round(vehicle.min_soc * capacity_wh - energy_wh, 1),
            "ev_max_energy_request": round(capacity_wh - energy_wh, 1),
            # The V2X cycling window is the owner's whole window [min_soc, full].
            "ev_min_v2x_energy_request": round(vehicle.min_soc * capacity_wh - energy_wh, 1),
            "ev_max_v2x_energy_request": round(capacity_wh - energy_wh, 1),
            "target_soc": round(vehicle.target_soc * PERCENT),
        }
    return {"evse_id": 1, "charging_needs": needs}


# ---------------------------------------------------------------- CSMS -> station


class ProfileRefusedError(ValueError):
    """A charging profile this station cannot follow; ``reason_code`` goes on the wire."""

    def __init__(self, reason_code: str, detail: str) -> None:
        super().__init__(f"{reason_code}: {detail}")
        self.reason_code = reason_code
        self.detail = detail


@dataclass(frozen=True)
class SchedulePeriod:
    """One period of a charging schedule, in kW with the project's sign."""

    start_s: float
    """Offset from the schedule's start (s)."""
    mode: str | None
    """The 2.1 operationMode; ``None`` when absent (ChargingOnly, or a legacy negative limit)."""
    limit_kw: float | None
    setpoint_kw: float | None
    discharge_limit_kw: float | None
    """<= 0: the most the vehicle may discharge (2.1 sends it negative)."""


@dataclass(frozen=True)
class ChargingProfile:
    """A charging profile as the station holds it."""

    profile_id: int
    purpose: str
    stack_level: int
    transaction_id: str | None
    start_at: datetime | None
    """Where ``start_s`` offsets count from; ``None``: from when the profile was received."""
    duration_s: float | None
    periods: tuple[SchedulePeriod, ...]

    def period_at(self, at: datetime) -> SchedulePeriod | None:
        """The period in force at ``at``, or ``None`` before the start or after the end."""
        if self.start_at is None:
            return self.periods[0]
        offset_s = (at - self.start_at).total_seconds()
        if offset_s < self.periods[0].start_s:
            return None
        if self.duration_s is not None and offset_s >= self.duration_s:
            return None
        current = self.periods[0]
        for period in self.periods:
            if period.start_s <= offset_s:
                current = period
        return current

    def updated(
        self,
        *,
        limit_kw: float | None,
        setpoint_kw: float | None,
        discharge_limit_kw: float | None,
    ) -> ChargingProfile:
        """The profile after an UpdateDynamicSchedule: given fields replace the first period's."""
        first = self.periods[0]
        first = replace(
            first,
            limit_kw=first.limit_kw if limit_kw is None else limit_kw,
            setpoint_kw=first.setpoint_kw if setpoint_kw is None else setpoint_kw,
            discharge_limit_kw=(
                first.discharge_limit_kw if discharge_limit_kw is None else discharge_limit_kw
            ),
        )
        return replace(self, periods=(first, *self.periods[1:]))


def parse_profile(
    profile: Payload, *, received_at: datetime, version: OcppVersion, can_discharge: bool
) -> ChargingProfile:
    """The profile of a SetChargingProfile request (snake_case keys, as ``ocpp`` hands them).

    Refuses (``ProfileRefusedError``) what the station cannot do: an unsupported purpose or
    operation mode, or a demand to discharge (a negative setpoint or limit) on a station
    that cannot discharge. Limits in A become W with
    ``W = A * 230 V * phases`` (AC, 3 phases unless ``numberPhases`` says otherwise).
    """
    purpose = str(profile["charging_profile_purpose"])
    if purpose not in SUPPORTED_PURPOSES:
        raise ProfileRefusedError("UnsupportedPurpose", f"purpose {purpose} is not supported")
    schedules = profile["charging_schedule"]
    schedule = schedules[0]
    unit = str(schedule["charging_rate_unit"])
    periods = tuple(
        _parse_period(p, unit=unit, version=version, can_discharge=can_discharge)
        for p in sorted(schedule["charging_schedule_period"], key=lambda p: p["start_period"])
    )
    kind = str(profile["charging_profile_kind"])
    start_at: datetime | None
    if kind == "Absolute" and "start_schedule" in schedule:
        start_at = datetime.fromisoformat(str(schedule["start_schedule"]))
    elif kind == "Dynamic" and len(periods) == 1:
        start_at = None
    elif kind in ("Absolute", "Relative", "Dynamic"):
        start_at = received_at
    else:
        raise ProfileRefusedError("UnsupportedKind", f"chargingProfileKind {kind} is not supported")
    duration = schedule.get("duration")
    return ChargingProfile(
        profile_id=int(profile["id"]),
        purpose=purpose,
        stack_level=int(profile["stack_level"]),
        transaction_id=profile.get("transaction_id"),
        start_at=start_at,
        duration_s=None if duration is None else float(duration),
        periods=periods,
    )


def rate_to_kw(value: float, *, unit: str, phases: int | None, dc: bool = False) -> float:
    """A rate in the schedule's unit (W or A) as kW."""
    if unit == "A":
        volts = DC_VOLTAGE_V if dc else AC_VOLTAGE_V * (AC_PHASES if phases is None else phases)
        return w_to_kw(value * volts)
    return w_to_kw(value)


def _parse_period(
    period: Payload, *, unit: str, version: OcppVersion, can_discharge: bool
) -> SchedulePeriod:
    phases = period.get("number_phases")

    def kw(key: str) -> float | None:
        value = period.get(key)
        return None if value is None else rate_to_kw(float(value), unit=unit, phases=phases)

    mode = period.get("operation_mode")
    if mode is not None and mode not in SUPPORTED_MODES:
        raise ProfileRefusedError("UnsupportedMode", f"operationMode {mode} is not supported")
    limit_kw, setpoint_kw, discharge_kw = kw("limit"), kw("setpoint"), kw("discharge_limit")
    # A dischargeLimit only permits; a negative setpoint or limit demands discharge.
    wants_discharge = (setpoint_kw is not None and setpoint_kw < 0) or (
        limit_kw is not None and limit_kw < 0
    )
    if wants_discharge and not can_discharge:
        reason = "V2XNotSupported" if version is OcppVersion.V21 else "NegativeLimit"
        raise ProfileRefusedError(reason, "this station cannot discharge")
    if mode == MODE_CENTRAL_SETPOINT and setpoint_kw is None:
        raise ProfileRefusedError("MissingSetpoint", "CentralSetpoint needs a setpoint")
    return SchedulePeriod(
        start_s=float(period["start_period"]),
        mode=mode,
        limit_kw=limit_kw,
        setpoint_kw=setpoint_kw,
        discharge_limit_kw=None if discharge_kw is None else -abs(discharge_kw),
    )


def period_command_kw(period: SchedulePeriod) -> tuple[float, bool]:
    """What a period asks of the charger: (signed power kW, follows a setpoint).

    CentralSetpoint: the setpoint, clipped to [dischargeLimit, limit]. Idle: 0. Otherwise
    (ChargingOnly, or no mode): charge at up to ``limit`` (a negative ``limit`` without a
    mode is the legacy way to ask for discharge and is followed as such); no limit means
    full power. A setpoint is followed up to the vehicle's full battery; a limit only up to
    the owner's target, as a car stops at its own charge limit.
    """
    if period.mode == MODE_IDLE:
        return 0.0, False
    if period.mode == MODE_CENTRAL_SETPOINT:
        power_kw = period.setpoint_kw if period.setpoint_kw is not None else 0.0
        if period.limit_kw is not None:
            power_kw = min(power_kw, period.limit_kw)
        if period.discharge_limit_kw is not None:
            power_kw = max(power_kw, period.discharge_limit_kw)
        return power_kw, True
    limit_kw = math.inf if period.limit_kw is None else period.limit_kw
    if period.mode == MODE_CHARGING_ONLY:
        limit_kw = max(limit_kw, 0.0)
    return limit_kw, limit_kw < 0


def seconds_between(start: datetime, end: datetime) -> float:
    """``end - start`` in seconds."""
    return (end - start).total_seconds()


def later(at: datetime, seconds: float) -> datetime:
    """``at`` plus ``seconds``."""
    return at + timedelta(seconds=seconds)
