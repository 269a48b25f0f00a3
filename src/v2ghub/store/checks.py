"""What the store refuses, before anything is written: ids, times, meter samples, needs.

Every refusal is a ``ValueError`` whose one-line message names the station, transaction,
``seq_no`` and field concerned.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from v2ghub.store.records import EvNeeds, MeterSample
from v2ghub.store.schema import STATION_ID_LENGTH, TRANSACTION_ID_LENGTH

EVENT_TYPES = ("Started", "Updated", "Ended")
_STATION_ID = re.compile(rf"[!-.0-~]{{1,{STATION_ID_LENGTH}}}")
"""Printable ASCII (0x21-0x7E) without '/' (0x2F): the id is part of the websocket path."""
_REGISTERS = ("import_register_wh", "export_register_wh")


@dataclass(frozen=True)
class Registers:
    """A meter's two cumulative registers (Wh)."""

    import_wh: int
    export_wh: int

    @classmethod
    def of(cls, sample: MeterSample) -> Registers:
        return cls(sample.import_register_wh, sample.export_register_wh)

    def below(self, other: Registers) -> str | None:
        """The first register of ``self`` below ``other``'s, as ``"name value"``, or None."""
        pairs = ((self.import_wh, other.import_wh), (self.export_wh, other.export_wh))
        for name, (mine, theirs) in zip(_REGISTERS, pairs, strict=True):
            if mine < theirs:
                return f"{name} {mine} is below {theirs}"
        return None


def check_station_id(station_id: str) -> None:
    if not _STATION_ID.fullmatch(station_id):
        raise ValueError(
            f"station id {station_id!r} must be 1-{STATION_ID_LENGTH} printable ASCII "
            "characters without '/' or whitespace"
        )


def check_transaction_id(transaction_id: str) -> None:
    if not 0 < len(transaction_id) <= TRANSACTION_ID_LENGTH:
        raise ValueError(
            f"transaction id {transaction_id!r} must be 1-{TRANSACTION_ID_LENGTH} characters"
        )


def check_event_type(event_type: str) -> None:
    if event_type not in EVENT_TYPES:
        raise ValueError(f"event_type {event_type!r} must be one of {', '.join(EVENT_TYPES)}")


def check_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} {value.isoformat()} must be timezone-aware")


def check_sample(sample: MeterSample) -> None:
    where = f"station {sample.station_id!r}, transaction {sample.transaction_id!r}"
    check_aware(f"{where}: measured_at", sample.measured_at)
    for name in _REGISTERS:
        if getattr(sample, name) < 0:
            raise ValueError(f"{where}: {name} {getattr(sample, name)} must be >= 0")
    if sample.soc is not None and not 0 <= sample.soc <= 1:
        raise ValueError(f"{where}: soc {sample.soc} must be within 0-1")


def event_samples(
    samples: Sequence[MeterSample], station_id: str, transaction_id: str, seq_no: int
) -> list[MeterSample]:
    """A transaction event's samples, checked to belong to it, in time order."""
    for sample in samples:
        key = (sample.station_id, sample.transaction_id, sample.seq_no)
        if key != (station_id, transaction_id, seq_no):
            raise ValueError(
                f"a sample of station {key[0]!r}, transaction {key[1]!r}, seq_no {key[2]} "
                f"came with station {station_id!r}, transaction {transaction_id!r}, "
                f"seq_no {seq_no}"
            )
        check_sample(sample)
    return sorted(samples, key=lambda sample: sample.measured_at)


def check_event_registers(
    ordered: Sequence[MeterSample],
    *,
    floor: Registers | None,
    ceiling: Registers | None,
    where: str,
) -> None:
    """Registers never go backwards: each sample at or above ``floor`` (what earlier
    ``seq_no`` stored) and the one before it; the last at or below ``ceiling`` (what later
    ``seq_no`` stored, for an event that arrives late)."""
    for sample in ordered:
        registers = Registers.of(sample)
        if floor is not None and (problem := registers.below(floor)):
            raise ValueError(f"{where}: {problem} stored before it (registers never go back)")
        floor = registers
    if ordered and ceiling is not None and (problem := ceiling.below(Registers.of(ordered[-1]))):
        raise ValueError(f"{where}: a later reading's {problem} (registers never go back)")


def latest_changes(ordered: Sequence[MeterSample]) -> dict[str, Any]:
    """A session's new latest registers, SoC and meter time, from samples newer than all
    stored ones (in time order)."""
    if not ordered:
        return {}
    last = ordered[-1]
    changes: dict[str, Any] = {
        "import_register_wh": last.import_register_wh,
        "export_register_wh": last.export_register_wh,
        "last_meter_at": last.measured_at,
    }
    socs = [sample.soc for sample in ordered if sample.soc is not None]
    if socs:
        changes["soc"] = socs[-1]
    return changes


def check_needs(needs: EvNeeds) -> None:
    where = f"needs of station {needs.station_id!r}, EVSE {needs.evse_id}"
    check_aware(f"{where}: received_at", needs.received_at)
    if needs.departure_at is not None:
        check_aware(f"{where}: departure_at", needs.departure_at)
    if needs.soc is not None and not 0 <= needs.soc <= 1:
        raise ValueError(f"{where}: soc {needs.soc} must be within 0-1")
    for name in ("battery_kwh", "target_energy_kwh", "min_energy_kwh"):
        value = getattr(needs, name)
        if value is not None and value < 0:
            raise ValueError(f"{where}: {name} {value} must be >= 0")
    for name in ("max_charge_kw", "max_discharge_kw", "min_charge_kw", "min_discharge_kw"):
        value = getattr(needs, name)
        if value is not None and value < 0:
            raise ValueError(f"{where}: {name} {value} must be >= 0 (a magnitude)")
