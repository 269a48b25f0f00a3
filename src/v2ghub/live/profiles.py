"""OCPP charging-profile requests for a :class:`~v2ghub.live.control.SetpointCommand`.

The request objects are the ``ocpp`` package's (``ocpp.v21.call``, ``ocpp.v201.call``); its
``ChargePoint.call`` turns them into the JSON payload and validates it against the
official schemas. Powers go out in W (``chargingRateUnit`` ``W``), rounded to whole watts.

OCPP 2.1
    A ``TxProfile`` for the transaction, of kind ``Dynamic``: one period from the start
    with ``operationMode`` ``CentralSetpoint``, the signed ``setpoint`` (negative =
    discharge), ``limit`` (the charging limit, >= 0) and ``dischargeLimit``, which the 2.1
    schema wants <= 0 ("negative values in order to be consistent with setpoint"); 0 means
    no discharge. Later setpoints for the same transaction go out as
    ``UpdateDynamicSchedule`` with the same profile id. ``maxOfflineDuration`` with
    ``invalidAfterOfflineDuration`` makes a station drop the profile (a discharge, above
    all) when it loses the aggregator for longer than that.
OCPP 2.0.1
    A ``TxProfile`` of kind ``Absolute`` starting ``now``, one period whose ``limit`` is the
    setpoint in W, never negative (2.0.1 has no discharge).

OCPP 2.1, regulation
    An EVSE that follows regulation or frequency (``SetpointCommand.regulation``) gets a
    whole new dynamic ``TxProfile`` each time its baseline or shares change: one period in
    ``CentralFrequency`` or ``LocalFrequency`` mode with ``v2xBaseline`` (the setpoint)
    and the mode's curve, ``limit`` and ``dischargeLimit`` as above. An
    ``UpdateDynamicSchedule`` cannot change a mode or a curve, so the first setpoint after
    regulation installs a ``CentralSetpoint`` profile again.

Each new profile has the same ``stackLevel`` and purpose as the last, so it replaces it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from ocpp.v21 import call as call_v21
from ocpp.v21 import datatypes as types_v21
from ocpp.v21 import enums as enums_v21
from ocpp.v201 import call as call_v201
from ocpp.v201 import datatypes as types_v201
from ocpp.v201 import enums as enums_v201

from v2ghub.live.control import SetpointCommand
from v2ghub.live.regulation_modes import RegulationShare
from v2ghub.store.records import OcppVersion
from v2ghub.store.regulation import RegulationMode
from v2ghub.units import kw_to_w

STACK_LEVEL = 0
MAX_OFFLINE_S = 300
"""How long a 2.1 station keeps a profile while it cannot reach the aggregator."""
TRANSACTION_ID_MAX_LENGTH = 36  # both schemas


def _watts(power_kw: float) -> float:
    """Whole watts, as a float (``-0.0`` becomes ``0.0``)."""
    return float(round(kw_to_w(power_kw))) + 0.0


def utc_timestamp(now: datetime) -> str:
    """An aware instant as UTC ISO 8601 in whole seconds with ``Z``."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    return now.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _check(command: SetpointCommand, version: OcppVersion) -> None:
    if command.ocpp_version is not version:
        raise ValueError(
            f"station {command.station_id} speaks {command.ocpp_version}, not {version}"
        )
    if len(command.transaction_id) > TRANSACTION_ID_MAX_LENGTH:
        raise ValueError(
            f"transaction id {command.transaction_id!r} is longer than "
            f"{TRANSACTION_ID_MAX_LENGTH} characters"
        )
    check_limits(command)


def check_limits(command: SetpointCommand) -> None:
    """Refuse a setpoint outside the command's own limits (``ValueError``)."""
    if not -command.discharge_limit_kw <= command.setpoint_kw <= command.charge_limit_kw:
        raise ValueError(
            f"setpoint {command.setpoint_kw} kW is outside [-{command.discharge_limit_kw}, "
            f"{command.charge_limit_kw}] kW for {command.station_id}/{command.evse_id}"
        )


def _period_v21(command: SetpointCommand) -> types_v21.ChargingSchedulePeriodType:
    if command.regulation is not None:
        return _frequency_period_v21(command, command.regulation)
    return types_v21.ChargingSchedulePeriodType(
        start_period=0,
        operation_mode=enums_v21.OperationModeEnumType.central_setpoint,
        setpoint=_watts(command.setpoint_kw),
        limit=_watts(command.charge_limit_kw),
        discharge_limit=-_watts(command.discharge_limit_kw) + 0.0,
    )


def _frequency_period_v21(
    command: SetpointCommand, share: RegulationShare
) -> types_v21.ChargingSchedulePeriodType:
    """A period in ``CentralFrequency`` or ``LocalFrequency`` mode: the setpoint as
    ``v2xBaseline`` and the share as the mode's curve (:mod:`v2ghub.live.regulation_modes`),
    within the command's limits."""
    period = types_v21.ChargingSchedulePeriodType(
        start_period=0,
        limit=_watts(command.charge_limit_kw),
        discharge_limit=-_watts(command.discharge_limit_kw) + 0.0,
        v2x_baseline=_watts(command.setpoint_kw),
    )
    if share.mode is RegulationMode.CENTRAL_FREQUENCY:
        period.operation_mode = enums_v21.OperationModeEnumType.central_frequency
        period.v2x_signal_watt_curve = [
            types_v21.V2XSignalWattPointType(signal=signal, power=power_w)
            for signal, power_w in share.signal_watt_curve()
        ]
    else:
        period.operation_mode = enums_v21.OperationModeEnumType.local_frequency
        period.v2x_freq_watt_curve = [
            types_v21.V2XFreqWattPointType(frequency=frequency_hz, power=power_w)
            for frequency_hz, power_w in share.freq_watt_curve()
        ]
    return period


def set_charging_profile_v21(
    command: SetpointCommand,
    *,
    profile_id: int,
    now: datetime,
    max_offline_s: int = MAX_OFFLINE_S,
) -> call_v21.SetChargingProfile:
    """An OCPP 2.1 dynamic ``TxProfile`` with the command's central setpoint.

    Raises
    ------
    ValueError
        The station is not on 2.1, the transaction id is too long for OCPP, the setpoint
        is outside the command's limits, or ``now`` is naive.
    """
    _check(command, OcppVersion.V21)
    period = _period_v21(command)
    schedule = types_v21.ChargingScheduleType(
        id=profile_id,
        charging_rate_unit=enums_v21.ChargingRateUnitEnumType.w,
        charging_schedule_period=[period],
    )
    profile = types_v21.ChargingProfileType(
        id=profile_id,
        stack_level=STACK_LEVEL,
        charging_profile_purpose=enums_v21.ChargingProfilePurposeEnumType.tx_profile,
        charging_profile_kind=enums_v21.ChargingProfileKindEnumType.dynamic,
        charging_schedule=[schedule],
        transaction_id=command.transaction_id,
        dyn_update_time=utc_timestamp(now),
        max_offline_duration=max_offline_s,
        invalid_after_offline_duration=True,
    )
    return call_v21.SetChargingProfile(charging_profile=profile, evse_id=command.evse_id)


def update_dynamic_schedule_v21(
    command: SetpointCommand, profile_id: int
) -> call_v21.UpdateDynamicSchedule:
    """The new setpoint for the dynamic profile ``profile_id`` already on the station."""
    _check(command, OcppVersion.V21)
    period = _period_v21(command)
    update = types_v21.ChargingScheduleUpdateType(
        setpoint=period.setpoint, limit=period.limit, discharge_limit=period.discharge_limit
    )
    return call_v21.UpdateDynamicSchedule(charging_profile_id=profile_id, schedule_update=update)


def set_charging_profile_v201(
    command: SetpointCommand, *, profile_id: int, now: datetime
) -> call_v201.SetChargingProfile:
    """An OCPP 2.0.1 absolute ``TxProfile`` from ``now`` whose limit is the setpoint (W).

    A negative limit (discharge, the convention of bidirectional chargers before 2.1) is
    sent only when the command allows discharge (a station configured for it).

    Raises
    ------
    ValueError
        The station is not on 2.0.1, the setpoint is outside the command's limits,
        the transaction id is too long, or ``now`` is naive.
    """
    _check(command, OcppVersion.V201)
    period = types_v201.ChargingSchedulePeriodType(
        start_period=0, limit=_watts(command.setpoint_kw)
    )
    schedule = types_v201.ChargingScheduleType(
        id=profile_id,
        charging_rate_unit=enums_v201.ChargingRateUnitEnumType.watts,
        charging_schedule_period=[period],
        start_schedule=utc_timestamp(now),
    )
    profile = types_v201.ChargingProfileType(
        id=profile_id,
        stack_level=STACK_LEVEL,
        charging_profile_purpose=enums_v201.ChargingProfilePurposeEnumType.tx_profile,
        charging_profile_kind=enums_v201.ChargingProfileKindEnumType.absolute,
        charging_schedule=[schedule],
        transaction_id=command.transaction_id,
    )
    return call_v201.SetChargingProfile(evse_id=command.evse_id, charging_profile=profile)


def scheduled_profile_v21(
    command: SetpointCommand, *, profile_id: int, now: datetime
) -> call_v21.SetChargingProfile:
    """An OCPP 2.1 absolute ``TxProfile`` from ``now`` carrying the whole plan, for a vehicle
    under ScheduledControl: one CentralSetpoint period per change of ``schedule_kw``."""
    _check(command, OcppVersion.V21)
    periods = []
    previous_kw: float | None = None
    for step, power_kw in enumerate(command.schedule_kw or (command.setpoint_kw,)):
        if power_kw == previous_kw:
            continue
        previous_kw = power_kw
        step_command = replace(
            command,
            setpoint_kw=min(max(power_kw, -command.discharge_limit_kw), command.charge_limit_kw),
        )
        period = _period_v21(step_command)
        period.start_period = step * command.step_s
        periods.append(period)
    schedule = types_v21.ChargingScheduleType(
        id=profile_id,
        charging_rate_unit=enums_v21.ChargingRateUnitEnumType.w,
        charging_schedule_period=periods,
        start_schedule=utc_timestamp(now),
        duration=len(command.schedule_kw or (0,)) * command.step_s or None,
    )
    profile = types_v21.ChargingProfileType(
        id=profile_id,
        stack_level=STACK_LEVEL,
        charging_profile_purpose=enums_v21.ChargingProfilePurposeEnumType.tx_profile,
        charging_profile_kind=enums_v21.ChargingProfileKindEnumType.absolute,
        charging_schedule=[schedule],
        transaction_id=command.transaction_id,
    )
    return call_v21.SetChargingProfile(charging_profile=profile, evse_id=command.evse_id)


def profile_request(
    command: SetpointCommand, *, profile_id: int, now: datetime, installed: bool
) -> call_v21.SetChargingProfile | call_v21.UpdateDynamicSchedule | call_v201.SetChargingProfile:
    """The request for a command: on 2.1 an ``UpdateDynamicSchedule`` when the
    transaction's dynamic profile ``profile_id`` is ``installed`` (accepted before), else a
    ``SetChargingProfile``; the whole plan for a vehicle under ScheduledControl
    (:func:`scheduled_profile_v21`); on 2.0.1 always a ``SetChargingProfile``."""
    if command.ocpp_version is OcppVersion.V201:
        return set_charging_profile_v201(command, profile_id=profile_id, now=now)
    if command.regulation is not None:  # a new curve: the whole profile, never an update
        return set_charging_profile_v21(command, profile_id=profile_id, now=now)
    if command.schedule_kw:
        return scheduled_profile_v21(command, profile_id=profile_id, now=now)
    if installed:
        return update_dynamic_schedule_v21(command, profile_id)
    return set_charging_profile_v21(command, profile_id=profile_id, now=now)
