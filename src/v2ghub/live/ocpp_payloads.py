"""What stations send, read at once into small typed records with units in their names.

The ``ocpp`` package hands a handler its payload as snake_case keyword arguments, nested
objects as plain ``dict``; it has validated them against the official JSON schemas, but
carries no type hints. Each record here is read from such a payload with
``from_payload``: a field of the wrong type raises an OCPP ``FormatViolation`` that names
the field and the value, so a station hears what it got wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ocpp.exceptions import FormatViolationError

from v2ghub.store.records import MeterSample
from v2ghub.units import kwh_to_wh, percent_to_fraction, w_to_kw

Payload = Mapping[str, object]
"""A payload (or one of its objects) as the ``ocpp`` package hands it: snake_case keys."""

IMPORT_REGISTER = "Energy.Active.Import.Register"
EXPORT_REGISTER = "Energy.Active.Export.Register"
POWER_IMPORT = "Power.Active.Import"
POWER_EXPORT = "Power.Active.Export"
SOC = "SoC"


def _bad(field: str, value: object, expected: str) -> Exception:
    error: Exception = FormatViolationError(
        description=f"{field} must be {expected}, got {str(value)[:80]!r}"
    )
    return error


def text(payload: Payload, key: str, *, field: str | None = None) -> str | None:
    """``payload[key]`` as a string; ``None`` when absent."""
    value = payload.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _bad(field or key, value, "a string")


def number(payload: Payload, key: str, *, field: str | None = None) -> float | None:
    """``payload[key]`` as a float; ``None`` when absent (a bool is not a number)."""
    value = payload.get(key)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _bad(field or key, value, "a number")


def required_text(payload: Payload, key: str, *, field: str | None = None) -> str:
    """``payload[key]`` as a string; a missing one is refused."""
    value = text(payload, key, field=field)
    if value is None:
        raise _bad(field or key, value, "a string")
    return value


def required_number(payload: Payload, key: str, *, field: str | None = None) -> float:
    """``payload[key]`` as a float; a missing one is refused."""
    value = number(payload, key, field=field)
    if value is None:
        raise _bad(field or key, value, "a number")
    return value


def obj(value: object, field: str) -> Payload:
    """``value`` as an object; ``None`` is an empty one."""
    if value is None:
        return {}
    if isinstance(value, Mapping) and all(isinstance(key, str) for key in value):
        return value
    raise _bad(field, value, "an object")


def objects(value: object, field: str) -> list[Payload]:
    """``value`` as a list of objects; ``None`` is an empty list."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(field, value, "a list")
    return [obj(item, f"{field}[{i}]") for i, item in enumerate(value)]


def required_objects(value: object, field: str) -> list[Payload]:
    """``value`` as a list of at least one object."""
    found = objects(value, field)
    if not found:
        raise _bad(field, value, "a list of at least one object")
    return found


def parse_time(value: object, field: str) -> datetime:
    """An OCPP dateTime as aware UTC; a naive one is taken as UTC (OCPP requires UTC)."""
    if not isinstance(value, str):
        raise FormatViolationError(description=f"{field} must be a dateTime string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise FormatViolationError(description=f"{field}: {value!r} is not a dateTime") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as error:  # e.g. 9999-12-31T23:59:59-14:00
        raise FormatViolationError(
            description=f"{field}: {value!r} is outside the years 1-9999 in UTC"
        ) from error


@dataclass(frozen=True)
class ChargingStationInfo:
    """BootNotification's ``chargingStation``."""

    vendor_name: str | None
    model: str | None

    @classmethod
    def from_payload(cls, raw: object) -> ChargingStationInfo:
        station = obj(raw, "chargingStation")
        return cls(
            vendor_name=text(station, "vendor_name", field="chargingStation.vendorName"),
            model=text(station, "model", field="chargingStation.model"),
        )


@dataclass(frozen=True)
class TransactionInfo:
    """TransactionEvent's ``transactionInfo``: which transaction, and why it stopped."""

    transaction_id: str
    stopped_reason: str | None

    @classmethod
    def from_payload(cls, raw: object) -> TransactionInfo:
        info = obj(raw, "transactionInfo")
        transaction_id = info.get("transaction_id")
        if not isinstance(transaction_id, str | int) or isinstance(transaction_id, bool):
            raise _bad("transactionInfo.transactionId", transaction_id, "a string")
        stopped = text(info, "stopped_reason", field="transactionInfo.stoppedReason")
        return cls(transaction_id=str(transaction_id), stopped_reason=stopped)


@dataclass(frozen=True)
class SampledValue:
    """One ``sampledValue``: a measurand's value in ``unit`` times ``10**multiplier``."""

    value: float
    measurand: str
    unit: str | None
    multiplier: int
    phase: str | None

    @property
    def scaled(self) -> float:
        """The value with the unit's ``multiplier`` applied (still in ``unit``)."""
        return self.value * 10.0**self.multiplier

    @classmethod
    def from_payload_v16(cls, raw: Payload, field: str) -> SampledValue:
        """An OCPP 1.6 ``sampledValue``: the value is a decimal string, the unit a field of
        its own (``Wh`` when absent), no multiplier."""
        value = raw.get("value")
        try:
            number_value = float(value) if isinstance(value, str) else math.nan
        except ValueError:
            number_value = math.nan
        if not math.isfinite(number_value):
            raise _bad(f"{field}.value", value, "a decimal number as a string")
        return cls(
            value=number_value,
            measurand=text(raw, "measurand", field=f"{field}.measurand") or IMPORT_REGISTER,
            unit=text(raw, "unit", field=f"{field}.unit") or None,
            multiplier=0,
            phase=text(raw, "phase", field=f"{field}.phase") or None,
        )

    @classmethod
    def from_payload(cls, raw: Payload, field: str) -> SampledValue:
        unit = obj(raw.get("unit_of_measure"), f"{field}.unitOfMeasure")
        multiplier = number(unit, "multiplier", field=f"{field}.unitOfMeasure.multiplier")
        return cls(
            value=required_number(raw, "value", field=f"{field}.value"),
            measurand=text(raw, "measurand", field=f"{field}.measurand") or IMPORT_REGISTER,
            unit=text(unit, "unit", field=f"{field}.unitOfMeasure.unit") or None,
            multiplier=0 if multiplier is None else int(multiplier),
            phase=text(raw, "phase", field=f"{field}.phase") or None,
        )


@dataclass(frozen=True)
class Reading:
    """The totals of one ``meterValue`` (``None``: not in it)."""

    import_wh: int | None = None
    export_wh: int | None = None
    power_kw: float | None = None
    """Signed: import minus export."""
    soc: float | None = None
    """0-1."""


def _energy_wh(sampled: SampledValue) -> int:
    """An energy register in Wh (``kWh`` converted; any other unit taken as Wh)."""
    value = sampled.scaled
    return round(kwh_to_wh(value) if sampled.unit == "kWh" else value)


def _power_kw(sampled: SampledValue) -> float:
    """A power in kW (``kW`` kept; any other unit taken as W)."""
    value = sampled.scaled
    return value if sampled.unit == "kW" else w_to_kw(value)


@dataclass(frozen=True)
class MeterValue:
    """One ``meterValue``: when it was measured and what."""

    measured_at: datetime
    sampled_values: tuple[SampledValue, ...]

    @classmethod
    def from_payload(cls, raw: Payload, field: str, *, v16: bool = False) -> MeterValue:
        sampled = objects(raw.get("sampled_value"), f"{field}.sampledValue")
        read = SampledValue.from_payload_v16 if v16 else SampledValue.from_payload
        return cls(
            measured_at=parse_time(raw.get("timestamp"), f"{field}.timestamp"),
            sampled_values=tuple(
                read(s, f"{field}.sampledValue[{i}]") for i, s in enumerate(sampled)
            ),
        )

    def reading(self) -> Reading:
        """Totals only: a per-phase value (with ``phase``) is a part, not the register."""
        import_wh = export_wh = None
        power_kw = soc = None
        for sampled in self.sampled_values:
            if sampled.phase:
                continue
            if sampled.measurand == IMPORT_REGISTER:
                import_wh = _energy_wh(sampled)
            elif sampled.measurand == EXPORT_REGISTER:
                export_wh = _energy_wh(sampled)
            elif sampled.measurand == POWER_IMPORT:
                power_kw = (power_kw or 0.0) + _power_kw(sampled)
            elif sampled.measurand == POWER_EXPORT:
                power_kw = (power_kw or 0.0) - _power_kw(sampled)
            elif sampled.measurand == SOC:
                soc = percent_to_fraction(sampled.scaled)
        return Reading(import_wh, export_wh, power_kw, soc)


def meter_values(raw: object, field: str = "meterValue", *, v16: bool = False) -> list[MeterValue]:
    """A message's ``meterValue`` list (``None``: empty); ``v16``: in OCPP 1.6's form."""
    return [
        MeterValue.from_payload(entry, f"{field}[{i}]", v16=v16)
        for i, entry in enumerate(objects(raw, field))
    ]


def lacks_export(values: Sequence[MeterValue]) -> bool:
    """Whether a register reading in ``values`` leaves the export register out."""
    readings = (value.reading() for value in values)
    return any(r.import_wh is not None and r.export_wh is None for r in readings)


def meter_samples(
    station_id: str,
    transaction_id: str,
    seq_no: int,
    values: Sequence[MeterValue],
    *,
    export_wh: int = 0,
) -> list[MeterSample]:
    """The register readings of a message's ``meterValue`` list, as the store's samples.

    A reading without an import register (only power or SoC) is not a register reading and
    is left out; one without an export register (a charge-only station's) keeps the export
    register where it was: ``export_wh``, or the message's previous reading.
    """
    samples = []
    for value in values:
        reading = value.reading()
        if reading.import_wh is None:
            continue
        if reading.export_wh is not None:
            export_wh = reading.export_wh
        samples.append(
            MeterSample(
                station_id=station_id,
                transaction_id=transaction_id,
                seq_no=seq_no,
                measured_at=value.measured_at,
                import_register_wh=reading.import_wh,
                export_register_wh=export_wh,
                power_kw=reading.power_kw,
                soc=reading.soc,
            )
        )
    return samples
