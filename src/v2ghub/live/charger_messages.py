"""What a simulated charging station says and understands: OCPP payloads and charging
profiles, pure functions with no I/O.

Requests are built as plain ``dict`` objects with snake_case keys (:data:`Request`), the
form the ``ocpp`` package's call dataclasses take (it turns them into camelCase and
validates them against the official JSON schemas). What the CSMS sends (charging profiles,
schedule updates, clearing criteria, the answers to our requests) is read at once into
typed records (:func:`parse_profile`, :class:`ScheduleRates`, :class:`ProfileCriteria`,
:class:`CallAnswer`); a field of the wrong type is an OCPP ``FormatViolation`` naming it.
Units on the wire are OCPP's: W, Wh, A, V, percent; in the records kW and SoC 0-1.

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

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

from v2ghub.live.charger_frequency import Curve, parse_curve
from v2ghub.live.ocpp_payloads import (
    Payload,
    number,
    obj,
    parse_time,
    required_number,
    required_objects,
    required_text,
    text,
)
from v2ghub.store.records import OcppVersion
from v2ghub.units import (
    current_to_kw,
    fraction_to_percent,
    kw_to_current,
    kw_to_w,
    kwh_to_wh,
    w_to_kw,
)

JsonValue: TypeAlias = (
    str | int | float | bool | Sequence["JsonValue"] | Mapping[str, "JsonValue"] | None
)
"""A JSON value of a request (snake_case keys: the ``ocpp`` package camelCases them)."""
Request: TypeAlias = dict[str, JsonValue]
"""A request's payload: the keywords of the ``ocpp`` call dataclass of its action."""

VENDOR_ID = "v2ghub"
AC_VOLTAGE_V = 230.0
"""Phase voltage used to turn an AC limit in A into W (``W = A * 230 V * phases``)."""
AC_PHASES = 3
DC_VOLTAGE_V = 400.0
"""Nominal DC link voltage used to turn a DC limit in A into W."""
AC_MIN_CURRENT_A = 6
AC_MAX_KW = 22.0
"""A station of at most this power is AC; above it, DC."""

# Operation modes a simulated station follows; the others are refused with a reason.
MODE_CHARGING_ONLY = "ChargingOnly"
MODE_CENTRAL_SETPOINT = "CentralSetpoint"
MODE_IDLE = "Idle"
MODE_CENTRAL_FREQUENCY = "CentralFrequency"
MODE_LOCAL_FREQUENCY = "LocalFrequency"
FREQUENCY_MODES = frozenset({MODE_CENTRAL_FREQUENCY, MODE_LOCAL_FREQUENCY})
"""OCPP 2.1 V2X modes a station without V2X (or on 2.0.1) refuses: InvalidOperationMode."""
SUPPORTED_MODES = frozenset(
    {MODE_CHARGING_ONLY, MODE_CENTRAL_SETPOINT, MODE_IDLE, *FREQUENCY_MODES}
)
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


def boot_notification(*, station_id: str, first: bool) -> Request:
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


def status_notification(*, at: datetime, occupied: bool) -> Request:
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
) -> Request:
    """One MeterValue with the registers, the power split into import/export, and SoC."""
    sampled: list[Request] = [
        _sample(math.floor(import_wh), "Energy.Active.Import.Register", context, "Wh"),
        _sample(math.floor(export_wh), "Energy.Active.Export.Register", context, "Wh"),
        _sample(round(kw_to_w(max(power_kw, 0.0)), 1), "Power.Active.Import", context, "W"),
        _sample(round(kw_to_w(max(-power_kw, 0.0)), 1), "Power.Active.Export", context, "W"),
    ]
    if soc is not None:
        soc_sample = _sample(round(fraction_to_percent(soc), 1), "SoC", context, "Percent")
        soc_sample["location"] = "EV"
        sampled.append(soc_sample)
    return {"timestamp": timestamp(at), "sampled_value": sampled}


def _sample(value: float, measurand: str, context: str, unit: str) -> Request:
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
    meter: Request | list[Request],
    id_token: str | None = None,
    stopped_reason: str | None = None,
) -> Request:
    """TransactionEvent (Started, Updated or Ended) of EVSE 1 with one meter value, or with
    several (a list, oldest first: the samples of a station in a frequency mode)."""
    info: Request = {"transaction_id": transaction_id, "charging_state": charging_state}
    if stopped_reason is not None:
        info["stopped_reason"] = stopped_reason
    payload: Request = {
        "event_type": event_type,
        "timestamp": timestamp(at),
        "trigger_reason": trigger_reason,
        "seq_no": seq_no,
        "transaction_info": info,
        "meter_value": meter if isinstance(meter, list) else [meter],
    }
    if event_type == "Started":
        payload["evse"] = {"id": 1, "connector_id": 1}
    if id_token is not None:
        payload["id_token"] = {"id_token": id_token, "type": "Local"}
    return payload


def charging_needs(
    *, vehicle: Vehicle, energy_kwh: float, version: OcppVersion, dc: bool
) -> Request:
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
    soc_percent = round(fraction_to_percent(energy_kwh / vehicle.battery_kwh))
    max_charge_w = kw_to_w(vehicle.max_charge_kw)
    bidirectional = version is OcppVersion.V21 and vehicle.max_discharge_kw > 0
    needs: Request = {"departure_time": timestamp(vehicle.departure_at)}
    if dc:
        needs["requested_energy_transfer"] = "DC_BPT" if bidirectional else "DC"
        needs["dc_charging_parameters"] = {
            "ev_max_current": round(kw_to_current(vehicle.max_charge_kw, voltage_v=DC_VOLTAGE_V)),
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
                round(
                    kw_to_current(vehicle.max_charge_kw, voltage_v=AC_VOLTAGE_V, phases=AC_PHASES)
                ),
                AC_MIN_CURRENT_A,
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
            "target_soc": round(fraction_to_percent(vehicle.target_soc)),
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
class ScheduleRates:
    """What a schedule period or an UpdateDynamicSchedule asks, in kW with the project's sign
    (``None``: not given)."""

    limit_kw: float | None
    setpoint_kw: float | None
    discharge_limit_kw: float | None
    """<= 0: the most the vehicle may discharge (2.1 sends it negative)."""

    @classmethod
    def from_payload(
        cls, raw: Payload, *, rate_unit: str, phases: int | None, field: str
    ) -> ScheduleRates:
        """``limit``, ``setpoint`` and ``dischargeLimit`` of ``raw``, given in ``rate_unit``
        (W, or A: see :func:`rate_to_kw`); ``field`` names ``raw`` in an error."""

        def kw(key: str, name: str) -> float | None:
            value = number(raw, key, field=f"{field}.{name}")
            return None if value is None else rate_to_kw(value, unit=rate_unit, phases=phases)

        discharge_kw = kw("discharge_limit", "dischargeLimit")
        return cls(
            limit_kw=kw("limit", "limit"),
            setpoint_kw=kw("setpoint", "setpoint"),
            discharge_limit_kw=None if discharge_kw is None else -abs(discharge_kw),
        )

    @property
    def demands_discharge(self) -> bool:
        """A negative setpoint or limit demands discharge; a dischargeLimit only permits."""
        return (self.setpoint_kw is not None and self.setpoint_kw < 0) or (
            self.limit_kw is not None and self.limit_kw < 0
        )


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
    baseline_kw: float = 0.0
    """``v2xBaseline`` (frequency modes): the power the curve adds to."""
    curve: Curve = ()
    """The frequency modes' watt curve, points (x, kW): ``v2xSignalWattCurve`` (x: the
    AFRRSignal integer) in CentralFrequency, ``v2xFreqWattCurve`` (x: Hz) in
    LocalFrequency."""


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
    rate_unit: str
    """``W`` or ``A``: the unit of its schedule, and of an UpdateDynamicSchedule of it."""

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

    def next_change_after(self, at: datetime) -> datetime | None:
        """The first instant after ``at`` where another period starts or the profile ends;
        ``None`` when nothing changes (a Dynamic profile of one period, which has no start,
        or the last period of one without a duration)."""
        if self.start_at is None:
            return None
        offset_s = (at - self.start_at).total_seconds()
        bounds = [p.start_s for p in self.periods]
        if self.duration_s is not None:
            bounds.append(self.duration_s)
        later_s = [b for b in bounds if b > offset_s]
        return None if not later_s else self.start_at + timedelta(seconds=min(later_s))

    def updated(self, update: ScheduleRates) -> ChargingProfile:
        """The profile after an UpdateDynamicSchedule: given rates replace the first period's."""
        first = self.periods[0]
        first = replace(
            first,
            limit_kw=first.limit_kw if update.limit_kw is None else update.limit_kw,
            setpoint_kw=first.setpoint_kw if update.setpoint_kw is None else update.setpoint_kw,
            discharge_limit_kw=(
                first.discharge_limit_kw
                if update.discharge_limit_kw is None
                else update.discharge_limit_kw
            ),
        )
        return replace(self, periods=(first, *self.periods[1:]))


def parse_profile(
    raw: object, *, received_at: datetime, version: OcppVersion, can_discharge: bool
) -> ChargingProfile:
    """The ``chargingProfile`` of a SetChargingProfile request (snake_case keys, as ``ocpp``
    hands them), read into a :class:`ChargingProfile`.

    Refuses (``ProfileRefusedError``) what the station cannot do: an unsupported purpose or
    operation mode, or a demand to discharge (a negative setpoint or limit) on a station
    that cannot discharge. Limits in A become kW with :func:`rate_to_kw`. A field of the
    wrong type is an OCPP ``FormatViolation`` naming it.
    """
    profile = obj(raw, "chargingProfile")
    purpose = required_text(
        profile, "charging_profile_purpose", field="chargingProfile.chargingProfilePurpose"
    )
    if purpose not in SUPPORTED_PURPOSES:
        raise ProfileRefusedError("UnsupportedPurpose", f"purpose {purpose} is not supported")
    schedule = required_objects(
        profile.get("charging_schedule"), "chargingProfile.chargingSchedule"
    )[0]
    unit = required_text(schedule, "charging_rate_unit", field="chargingSchedule.chargingRateUnit")
    raw_periods = required_objects(
        schedule.get("charging_schedule_period"), "chargingSchedule.chargingSchedulePeriod"
    )
    periods = sorted(
        (
            _parse_period(
                period,
                field=f"chargingSchedulePeriod[{i}]",
                unit=unit,
                version=version,
                can_discharge=can_discharge,
            )
            for i, period in enumerate(raw_periods)
        ),
        key=lambda period: period.start_s,
    )
    kind = required_text(
        profile, "charging_profile_kind", field="chargingProfile.chargingProfileKind"
    )
    start = schedule.get("start_schedule")
    start_at: datetime | None
    if kind == "Absolute" and start is not None:
        start_at = parse_time(start, "chargingSchedule.startSchedule")
    elif kind == "Dynamic" and len(periods) == 1:
        start_at = None
    elif kind in ("Absolute", "Relative", "Dynamic"):
        start_at = received_at
    else:
        raise ProfileRefusedError("UnsupportedKind", f"chargingProfileKind {kind} is not supported")
    return ChargingProfile(
        profile_id=int(required_number(profile, "id", field="chargingProfile.id")),
        purpose=purpose,
        stack_level=int(
            required_number(profile, "stack_level", field="chargingProfile.stackLevel")
        ),
        transaction_id=text(profile, "transaction_id", field="chargingProfile.transactionId"),
        start_at=start_at,
        duration_s=number(schedule, "duration", field="chargingSchedule.duration"),
        periods=tuple(periods),
        rate_unit=unit,
    )


def rate_to_kw(value: float, *, unit: str, phases: int | None, dc: bool = False) -> float:
    """A rate in the schedule's unit (W or A) as kW: a current at :data:`DC_VOLTAGE_V` (DC),
    or at :data:`AC_VOLTAGE_V` per phase on ``phases`` (AC, :data:`AC_PHASES` when
    ``None``)."""
    if unit != "A":
        return w_to_kw(value)
    if dc:
        return current_to_kw(value, voltage_v=DC_VOLTAGE_V)
    return current_to_kw(
        value, voltage_v=AC_VOLTAGE_V, phases=AC_PHASES if phases is None else phases
    )


def _parse_period(
    period: Payload, *, field: str, unit: str, version: OcppVersion, can_discharge: bool
) -> SchedulePeriod:
    phases = number(period, "number_phases", field=f"{field}.numberPhases")
    mode = text(period, "operation_mode", field=f"{field}.operationMode")
    if mode is not None and mode not in SUPPORTED_MODES:
        raise ProfileRefusedError("UnsupportedMode", f"operationMode {mode} is not supported")
    rates = ScheduleRates.from_payload(
        period, rate_unit=unit, phases=None if phases is None else int(phases), field=field
    )
    if rates.demands_discharge and not can_discharge:
        reason = "V2XNotSupported" if version is OcppVersion.V21 else "NegativeLimit"
        raise ProfileRefusedError(reason, "this station cannot discharge")
    if mode == MODE_CENTRAL_SETPOINT and rates.setpoint_kw is None:
        raise ProfileRefusedError("MissingSetpoint", "CentralSetpoint needs a setpoint")
    baseline_kw: float = 0.0
    curve: Curve = ()
    if mode in FREQUENCY_MODES:
        baseline_kw, curve = _frequency_response(
            period, mode=mode, field=field, version=version, can_discharge=can_discharge
        )
    return SchedulePeriod(
        start_s=required_number(period, "start_period", field=f"{field}.startPeriod"),
        mode=mode,
        limit_kw=rates.limit_kw,
        setpoint_kw=rates.setpoint_kw,
        discharge_limit_kw=rates.discharge_limit_kw,
        baseline_kw=baseline_kw,
        curve=curve,
    )


def _frequency_response(
    period: Payload, *, mode: str, field: str, version: OcppVersion, can_discharge: bool
) -> tuple[float, Curve]:
    """``v2xBaseline`` (kW, 0 when absent) and the watt curve of a frequency-mode period.

    Only a 2.1 V2X station follows these modes; others refuse them (InvalidOperationMode),
    as do stations whose device model lists no such mode. A period without its curve is
    refused with OCPP's own reason (NoSignalWattCurve, NoFreqWattCurve). The curve's and
    the baseline's powers are in W whatever the schedule's ``chargingRateUnit``.
    """
    if version is not OcppVersion.V21 or not can_discharge:
        raise ProfileRefusedError(
            "InvalidOperationMode", f"operationMode {mode} needs a V2X OCPP 2.1 station"
        )
    if mode == MODE_CENTRAL_FREQUENCY:
        key, x_key, name, missing = (
            "v2x_signal_watt_curve",
            "signal",
            "v2xSignalWattCurve",
            "NoSignalWattCurve",
        )
    else:
        key, x_key, name, missing = (
            "v2x_freq_watt_curve",
            "frequency",
            "v2xFreqWattCurve",
            "NoFreqWattCurve",
        )
    if not period.get(key):
        raise ProfileRefusedError(missing, f"operationMode {mode} needs a {name}")
    curve = parse_curve(period.get(key), x_key=x_key, field=f"{field}.{name}")
    baseline_w = number(period, "v2x_baseline", field=f"{field}.v2xBaseline")
    return (0.0 if baseline_w is None else w_to_kw(baseline_w)), curve


@dataclass(frozen=True)
class ProfileCriteria:
    """ClearChargingProfile's ``chargingProfileCriteria``: what a profile must match
    (``None``: anything)."""

    purpose: str | None
    stack_level: int | None

    @classmethod
    def from_payload(cls, raw: object) -> ProfileCriteria:
        """Read the criteria (``None``: none given, every profile matches)."""
        criteria = obj(raw, "chargingProfileCriteria")
        stack_level = number(criteria, "stack_level", field="chargingProfileCriteria.stackLevel")
        return cls(
            purpose=text(
                criteria,
                "charging_profile_purpose",
                field="chargingProfileCriteria.chargingProfilePurpose",
            ),
            stack_level=None if stack_level is None else int(stack_level),
        )

    def matches(self, profile: ChargingProfile) -> bool:
        """Whether ``profile`` has the purpose and stack level asked for."""
        return self.purpose in (None, profile.purpose) and self.stack_level in (
            None,
            profile.stack_level,
        )


@dataclass(frozen=True)
class CallAnswer:
    """What the CSMS answered to one of the station's requests: the parts a station uses."""

    status: str | None
    """``status``, else ``idTokenInfo.status`` (2.x TransactionEvent, Authorize) or
    ``idTagInfo.status`` (1.6 Authorize, StartTransaction); ``None``: none of them."""
    interval_s: float | None
    """BootNotification's heartbeat (or retry) interval, s."""
    transaction_id: int | None = None
    """The transactionId a 1.6 StartTransaction answer assigns."""

    @classmethod
    def from_result(cls, result: object) -> CallAnswer:
        """Read the ``ocpp`` package's ``call_result`` dataclass of an answer."""
        fields: Payload = (
            {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
            if dataclasses.is_dataclass(result)
            else {}
        )
        status = text(fields, "status")
        if status is None:
            info = obj(fields.get("id_token_info"), "idTokenInfo")
            status = text(info, "status", field="idTokenInfo.status")
        if status is None:
            info = obj(fields.get("id_tag_info"), "idTagInfo")
            status = text(info, "status", field="idTagInfo.status")
        transaction_id = number(fields, "transaction_id", field="transactionId")
        return cls(
            status=status,
            interval_s=number(fields, "interval"),
            transaction_id=None if transaction_id is None else int(transaction_id),
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
