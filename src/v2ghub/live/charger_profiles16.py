"""OCPP 1.6 charging profiles as a simulated station holds them: reading a
SetChargingProfile, the limit in force at an instant, and the composite schedule.

A profile's limits are kept in kW with the project's sign (+ charging, - discharging: a
negative limit asks a bidirectional station to discharge, the convention such chargers
follow on 1.6). A limit in A becomes kW with :func:`limit_kw`:

    kW = A * AC_PHASE_VOLTAGE_V * phases / 1000      (phases: numberPhases, else AC_PHASES)

the rule the CSMS uses too, so a limit sent in A and read back in A is the same number.

Stacking (OCPP 1.6 section 3.13): at an instant, the TxProfile in force with the highest
stackLevel wins; without one, the TxDefaultProfile in force with the highest stackLevel
(one set on connector 1 before one set on connector 0 at the same level); a
ChargePointMaxProfile in force caps the charging side of the result. A profile is in force
where it is valid (validFrom, validTo) and its schedule has begun and not ended
(``duration``): Absolute schedules count from startSchedule, Relative ones from the start of
the transaction, Recurring ones from startSchedule plus whole days or weeks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from v2ghub.defaults import AC_PHASE_VOLTAGE_V, AC_PHASES
from v2ghub.live.charger_messages import ProfileRefusedError, later
from v2ghub.live.charger_messages16 import (
    CHARGE_PROFILE_MAX_STACK_LEVEL,
    CHARGING_SCHEDULE_MAX_PERIODS,
)
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
from v2ghub.units import SECONDS_PER_DAY, current_to_kw, kw_to_current, kw_to_w, w_to_kw

TX_PROFILE = "TxProfile"
TX_DEFAULT_PROFILE = "TxDefaultProfile"
CHARGE_POINT_MAX_PROFILE = "ChargePointMaxProfile"
RECURRENCE_S = {"Daily": SECONDS_PER_DAY, "Weekly": 7 * SECONDS_PER_DAY}
UNIT_OF_RATE = {"Power": "W", "Current": "A"}
"""``ChargingScheduleAllowedChargingRateUnit`` value -> ``chargingRateUnit``."""


def limit_kw(limit: float, *, unit: str, phases: int | None) -> float:
    """A 1.6 schedule limit in ``unit`` (W or A on ``phases``, :data:`AC_PHASES` when
    ``None``) as kW."""
    if unit == "W":
        return w_to_kw(limit)
    return current_to_kw(
        limit, voltage_v=AC_PHASE_VOLTAGE_V, phases=AC_PHASES if phases is None else phases
    )


def limit_in_unit(power_kw: float, *, unit: str, phases: int | None) -> float:
    """The inverse of :func:`limit_kw`, rounded to 0.1 (the schema's ``multipleOf``)."""
    if unit == "W":
        return round(kw_to_w(power_kw), 1)
    current_a = kw_to_current(
        power_kw, voltage_v=AC_PHASE_VOLTAGE_V, phases=AC_PHASES if phases is None else phases
    )
    return round(current_a, 1)


@dataclass(frozen=True)
class Limit:
    """What a schedule period allows: signed kW, and the phases it named (A only)."""

    power_kw: float
    phases: int | None


@dataclass(frozen=True)
class Period16:
    start_s: int
    """Offset from the schedule's start (s)."""
    limit: Limit


@dataclass(frozen=True)
class ChargingProfile16:
    """A 1.6 charging profile as the station holds it."""

    profile_id: int
    connector_id: int
    purpose: str
    stack_level: int
    transaction_id: int | None
    kind: str
    """Absolute, Relative or Recurring."""
    start_at: datetime | None
    """Absolute and Recurring: where offsets count from; Relative: ``None`` (the
    transaction's start)."""
    recurrence_s: float | None
    duration_s: float | None
    valid_from: datetime | None
    valid_to: datetime | None
    rate_unit: str
    periods: tuple[Period16, ...]

    def schedule_start(self, at: datetime, *, transaction_start: datetime) -> datetime:
        """Where the offsets of the schedule that covers ``at`` count from."""
        if self.start_at is None:
            return transaction_start
        if self.recurrence_s is None:
            return self.start_at
        cycles = math.floor((at - self.start_at).total_seconds() / self.recurrence_s)
        return later(self.start_at, cycles * self.recurrence_s)

    def limit_at(self, at: datetime, *, transaction_start: datetime) -> Limit | None:
        """The limit in force at ``at``; ``None`` where the profile is not in force."""
        if (self.valid_from is not None and at < self.valid_from) or (
            self.valid_to is not None and at >= self.valid_to
        ):
            return None
        offset_s = (
            at - self.schedule_start(at, transaction_start=transaction_start)
        ).total_seconds()
        if offset_s < self.periods[0].start_s:
            return None
        if self.duration_s is not None and offset_s >= self.duration_s:
            return None
        current = self.periods[0]
        for period in self.periods:
            if period.start_s <= offset_s:
                current = period
        return current.limit

    def changes(
        self, start: datetime, end: datetime, *, transaction_start: datetime
    ) -> Iterable[datetime]:
        """Instants in ``[start, end]`` where the profile's limit may change."""
        first = self.schedule_start(start, transaction_start=transaction_start)
        step_s = self.recurrence_s or math.inf
        while first <= end:
            yield from (later(first, p.start_s) for p in self.periods)
            if self.duration_s is not None:
                yield later(first, self.duration_s)
            if math.isinf(step_s):
                break
            first = later(first, step_s)
        yield from (t for t in (self.valid_from, self.valid_to) if t is not None)


def parse_profile16(
    raw: object,
    *,
    connector_id: int,
    received_at: datetime,
    rate_unit: str,
    can_discharge: bool,
) -> ChargingProfile16:
    """The ``csChargingProfiles`` of a SetChargingProfile for ``connector_id`` (snake_case
    keys, as ``ocpp`` hands them), read into a :class:`ChargingProfile16`.

    Refuses (``ProfileRefusedError``) what the station cannot do: a connector other than 0
    or 1, a TxProfile on connector 0 or a ChargePointMaxProfile on connector 1, a
    stackLevel or a number of periods above what it reports, a ``chargingRateUnit`` other
    than ``rate_unit``, a Recurring profile without startSchedule or recurrencyKind, and
    a negative limit (discharge) where the station cannot discharge or on a
    ChargePointMaxProfile. A field of the wrong type is an OCPP ``FormatViolation`` naming
    it.
    """
    profile = obj(_plain(raw), "csChargingProfiles")
    if connector_id not in (0, 1):
        raise ProfileRefusedError("UnknownConnector", f"connector {connector_id} does not exist")
    purpose = required_text(
        profile, "charging_profile_purpose", field="csChargingProfiles.chargingProfilePurpose"
    )
    if purpose == TX_PROFILE and connector_id == 0:
        raise ProfileRefusedError("TxProfileOnConnector0", "a TxProfile needs connector 1")
    if purpose == CHARGE_POINT_MAX_PROFILE and connector_id != 0:
        raise ProfileRefusedError("MaxProfileOnConnector", "a ChargePointMaxProfile needs 0")
    stack_level = int(
        required_number(profile, "stack_level", field="csChargingProfiles.stackLevel")
    )
    if not 0 <= stack_level <= CHARGE_PROFILE_MAX_STACK_LEVEL:
        raise ProfileRefusedError("StackLevel", f"stackLevel {stack_level} is out of range")
    schedule = obj(profile.get("charging_schedule"), "csChargingProfiles.chargingSchedule")
    unit = required_text(schedule, "charging_rate_unit", field="chargingSchedule.chargingRateUnit")
    if unit != rate_unit:
        raise ProfileRefusedError(
            "RateUnit", f"chargingRateUnit {unit}: this station takes {rate_unit}"
        )
    raw_periods = required_objects(
        schedule.get("charging_schedule_period"), "chargingSchedule.chargingSchedulePeriod"
    )
    if len(raw_periods) > CHARGING_SCHEDULE_MAX_PERIODS:
        raise ProfileRefusedError("TooManyPeriods", f"{len(raw_periods)} periods")
    periods = sorted(
        (_period(p, f"chargingSchedulePeriod[{i}]", unit) for i, p in enumerate(raw_periods)),
        key=lambda period: period.start_s,
    )
    if any(p.limit.power_kw < 0 for p in periods) and (
        not can_discharge or purpose == CHARGE_POINT_MAX_PROFILE
    ):
        raise ProfileRefusedError("NegativeLimit", "this station or profile cannot discharge")
    kind = required_text(
        profile, "charging_profile_kind", field="csChargingProfiles.chargingProfileKind"
    )
    start = schedule.get("start_schedule")
    start_at = None if start is None else parse_time(start, "chargingSchedule.startSchedule")
    recurrence_s = None
    if kind == "Recurring":
        recurrency = text(profile, "recurrency_kind", field="csChargingProfiles.recurrencyKind")
        if start_at is None or recurrency not in RECURRENCE_S:
            raise ProfileRefusedError("Recurring", "Recurring needs startSchedule, recurrencyKind")
        recurrence_s = float(RECURRENCE_S[recurrency])
    elif kind == "Relative":
        start_at = None
    elif start_at is None:
        start_at = received_at
    transaction_id = number(profile, "transaction_id", field="csChargingProfiles.transactionId")
    return ChargingProfile16(
        profile_id=int(
            required_number(
                profile, "charging_profile_id", field="csChargingProfiles.chargingProfileId"
            )
        ),
        connector_id=connector_id,
        purpose=purpose,
        stack_level=stack_level,
        transaction_id=None if transaction_id is None else int(transaction_id),
        kind=kind,
        start_at=start_at,
        recurrence_s=recurrence_s,
        duration_s=number(schedule, "duration", field="chargingSchedule.duration"),
        valid_from=_time(profile, "valid_from", "csChargingProfiles.validFrom"),
        valid_to=_time(profile, "valid_to", "csChargingProfiles.validTo"),
        rate_unit=unit,
        periods=tuple(periods),
    )


def _period(period: Payload, field: str, unit: str) -> Period16:
    phases = number(period, "number_phases", field=f"{field}.numberPhases")
    limit = required_number(period, "limit", field=f"{field}.limit")
    whole_phases = None if phases is None else int(phases)
    return Period16(
        start_s=int(required_number(period, "start_period", field=f"{field}.startPeriod")),
        limit=Limit(limit_kw(limit, unit=unit, phases=whole_phases), whole_phases),
    )


def _time(payload: Payload, key: str, field: str) -> datetime | None:
    value = payload.get(key)
    return None if value is None else parse_time(value, field)


def _plain(value: object) -> object:
    """``value`` with every ``Decimal`` as a float: ``ocpp`` reads a 1.6
    SetChargingProfile's numbers as ``Decimal`` to check their ``multipleOf``."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def limit_in_force(
    profiles: Iterable[ChargingProfile16], at: datetime, *, transaction_start: datetime
) -> Limit | None:
    """The limit of the stacked profiles at ``at`` (see the module's docstring); ``None``
    when no profile is in force."""
    ranked = sorted(profiles, key=lambda p: (-p.stack_level, -p.connector_id))

    def first_in_force(purpose: str) -> Limit | None:
        found = (
            p.limit_at(at, transaction_start=transaction_start)
            for p in ranked
            if p.purpose == purpose
        )
        return next((limit for limit in found if limit is not None), None)

    limit = first_in_force(TX_PROFILE) or first_in_force(TX_DEFAULT_PROFILE)
    cap = first_in_force(CHARGE_POINT_MAX_PROFILE)
    if cap is None or (limit is not None and limit.power_kw <= cap.power_kw):
        return limit
    return cap


def composite_schedule(
    profiles: Iterable[ChargingProfile16],
    *,
    start: datetime,
    duration_s: int,
    transaction_start: datetime,
    fallback: Limit,
) -> list[tuple[int, Limit]]:
    """The limits in force from ``start`` for ``duration_s``: (offset s, limit) at each
    change, ``fallback`` where no profile is in force. Offsets are whole seconds, each the
    first whole second at or after the change."""
    kept = list(profiles)
    end = later(start, duration_s)
    offsets = {0}
    for profile in kept:
        for instant in profile.changes(start, end, transaction_start=transaction_start):
            offset_s = math.ceil((instant - start) / timedelta(seconds=1))
            if 0 < offset_s < duration_s:
                offsets.add(offset_s)
    schedule: list[tuple[int, Limit]] = []
    for offset_s in sorted(offsets):
        at = later(start, offset_s)
        limit = limit_in_force(kept, at, transaction_start=transaction_start) or fallback
        if not schedule or schedule[-1][1] != limit:
            schedule.append((offset_s, limit))
    return schedule
