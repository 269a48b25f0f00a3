"""Settle a day of the live aggregator's meter data: ``v2ghub settle --live``.

The live store's transactions and their cumulative register readings
(:class:`~v2ghub.store.records.MeterSample`) are cut to one local day of the city, turned
into the meter rows twin runs settle (:func:`~v2ghub.settlement.live_meter.live_meter_table`)
and posted through the same :func:`~v2ghub.settlement.settle.settle_period`: one ledger
period ``DATE/CITY/live``, the same ``statements.csv`` and ``settlement.json``.

Rules
-----
- **The day.** ``day`` is the city's local calendar day (``[00:00, 24:00)`` in the tariff's
  time zone; 23 or 25 hours across a clock change). Every transaction that overlaps it
  (open, or ended at or after its start, and started before its end) contributes the
  energy measured within it.
- **Cutting at midnight.** A transaction's readings are taken in the order they were
  measured (time, then ``seq_no``: the store's order, where the readings of one
  TransactionEvent share a ``seq_no`` and MeterValues readings carry -1). Its registers at
  the day's start and end are interpolated between the readings around them, pro rata by
  time in whole Wh rounded half up, exactly as
  :mod:`~v2ghub.settlement.live_meter` splits an interval at a tariff boundary; before its
  first reading and after its last a register stays put. So two consecutive days' energy
  adds up to the transaction's, to the Wh.
- **Bad data is refused whole.** A register lower than the reading before it is refused
  with one line naming station, transaction, ``seq_no`` and register, before anything is
  written; a day with no transaction is refused too. The ledger posts the period in one
  database transaction, so nothing is ever half-posted.
- **Parties.** A session is ``STATION/TRANSACTION``; its owner ``owner:STATION/TRANSACTION``
  and its operator ``operator:SITE`` (the station's site). Stations carry no charger kind
  yet, so every session takes the ``public`` contract (:data:`DEFAULT_CHARGER_KIND`); a
  contracts file may still match a site id.
- **What is settled.** Charging at the TOU tariff, V2G discharge at the discharge price
  shared by contract, battery-wear compensation: the meter streams. And the grid services
  measured live (:mod:`~v2ghub.settlement.live_services`): each committed regulation hour
  of the day, scored from the chargers' power readings
  (:mod:`v2ghub.regulation.live_score`), paid capacity and mileage times performance at
  the city's rates as the twin pays an hour committed without a market, by vehicle-hours
  following the signal; and each demand-response event's energy delivered below its
  baseline, measured from the registers of the site's transactions
  (:mod:`~v2ghub.settlement.live_demand_response`), paid per kWh at the city's rate as
  the twin pays called demand response. Both are shared by contract. Day-ahead market
  sales are not metered live yet and are not settled here. A source that keeps no grid
  services (one with the meter reads of :class:`LiveMeterSource` alone) settles the
  meter streams only.
- **KPIs.** Discharged energy and valley share come from the day's meter rows; the
  discharge capacity is the highest hourly fleet discharge (the hour's exported Wh over
  one hour), a lower bound of the instantaneous peak.

Settlement reads the store through :class:`LiveMeterSource`, a read-only protocol that
:class:`v2ghub.store.repository.Store` satisfies, so this module imports no database code
and no part of the live aggregator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from v2ghub.errors import InputError
from v2ghub.model.tariff import Tariff
from v2ghub.settlement.contracts import Contracts
from v2ghub.settlement.kpis import PilotKpis, pilot_kpis
from v2ghub.settlement.ledger import Ledger
from v2ghub.settlement.live_demand_response import NEVER_US, Transaction
from v2ghub.settlement.live_meter import (
    EXPORT_REGISTER,
    IMPORT_REGISTER,
    LiveSession,
    live_meter_table,
    registers_at,
)
from v2ghub.settlement.live_services import (
    LiveServicesSource,
    add_live_service_lines,
    read_live_services,
    services_json,
)
from v2ghub.settlement.meter import meter_lines
from v2ghub.settlement.rates import rate_cards
from v2ghub.settlement.settle import (
    prepare_output_folder,
    rates_json,
    settle_period,
    statement_rows,
    write_settlement_json,
    write_statements_csv,
)
from v2ghub.store.records import MeterSample, Station
from v2ghub.units import MICROSECONDS_PER_SECOND, SECONDS_PER_HOUR, WH_PER_KWH

LIVE_PLANNER = "live"
"""The planner part of a live period's name: ``DATE/CITY/live``."""
DEFAULT_CHARGER_KIND = "public"
"""The charger kind of every live session: stations carry no kind yet."""
NOT_SETTLED = (
    "day-ahead market sales are not metered live yet: charging, V2G discharge, battery "
    "wear, regulation hours committed live and demand response delivered live are settled"
)

IntArray = npt.NDArray[np.int64]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_HOUR_US = SECONDS_PER_HOUR * MICROSECONDS_PER_SECOND


class LiveTransaction(Protocol):
    """What settlement reads of a stored transaction."""

    @property
    def station_id(self) -> str: ...
    @property
    def transaction_id(self) -> str: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def ended_at(self) -> datetime | None: ...


class LiveMeterSource(Protocol):
    """The read-only view of the live store settlement needs (``Store`` has it)."""

    def stations(self) -> Sequence[Station]: ...
    def sessions(self, *, since: datetime | None = None) -> Sequence[LiveTransaction]: ...
    def meter_samples(self, station_id: str, transaction_id: str) -> Sequence[MeterSample]: ...


@dataclass(frozen=True)
class LiveDay:
    """A local day's meter data, cut at its midnights, as settlement bills it.

    Attributes
    ----------
    start, end
        The day's bounds (UTC).
    sessions
        Each transaction that overlaps the day, by ``(station_id, transaction_id)``.
    samples
        Their readings within the day, with readings interpolated at its bounds;
        ``seq_no`` numbers them per transaction in time order.
    hourly_export_wh
        The fleet's exported energy in each local hour of the day (Wh).
    transactions
        Each of ``sessions``' transactions with all its readings (not cut) and plugged
        time, for measuring grid services.
    """

    start: datetime
    end: datetime
    sessions: dict[tuple[str, str], LiveSession]
    samples: tuple[MeterSample, ...]
    hourly_export_wh: IntArray
    transactions: dict[tuple[str, str], Transaction] = field(default_factory=dict)


def local_day(day: date, timezone: str) -> tuple[datetime, datetime]:
    """The UTC start and end of ``day`` in ``timezone`` (local midnight to midnight)."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, time(), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), zone).astimezone(UTC)
    return start, end


def read_live_day(source: LiveMeterSource, *, day: date, tariff: Tariff) -> LiveDay:
    """The transactions of ``source`` that overlap the local ``day``, cut to it.

    Raises
    ------
    InputError
        A register goes backwards (naming station, transaction, ``seq_no`` and register),
        or a transaction's station is not registered.
    """
    start, end = local_day(day, tariff.timezone)
    start_us, end_us = _us(start), _us(end)
    hours_us = np.append(np.arange(start_us, end_us, _HOUR_US, dtype=np.int64), end_us)
    site_of = {station.station_id: station.site_id for station in source.stations()}
    sessions: dict[tuple[str, str], LiveSession] = {}
    transactions: dict[tuple[str, str], Transaction] = {}
    samples: list[MeterSample] = []
    hourly = np.zeros(hours_us.size - 1, dtype=np.int64)
    for record in source.sessions(since=start):  # the edge: one store read per transaction
        if record.started_at >= end:
            continue
        key = (record.station_id, record.transaction_id)
        if record.station_id not in site_of:
            raise InputError(
                f"station {record.station_id} transaction {record.transaction_id}: "
                "the station is not registered"
            )
        stored = source.meter_samples(*key)
        if not stored:
            continue
        readings = sorted(stored, key=lambda sample: (sample.measured_at, sample.seq_no))
        at_us = np.array([_us(sample.measured_at) for sample in readings], dtype=np.int64)
        registers_wh = np.array(
            [(s.import_register_wh, s.export_register_wh) for s in readings], dtype=np.int64
        ).reshape(-1, 2)
        _refuse_going_back(readings, registers_wh)
        try:
            at_bounds = registers_at(at_us, registers_wh, hours_us)
        except ValueError as error:
            raise InputError(str(error)) from None
        hourly += np.diff(at_bounds[:, 1])
        inside = np.flatnonzero((at_us > start_us) & (at_us < end_us))
        times = np.concatenate(([start_us], at_us[inside], [end_us]))
        values = np.concatenate((at_bounds[:1], registers_wh[inside], at_bounds[-1:]))
        session_id = f"{record.station_id}/{record.transaction_id}"
        sessions[key] = LiveSession(
            session_id=session_id,
            site_id=site_of[record.station_id],
            charger_kind=DEFAULT_CHARGER_KIND,
        )
        transactions[key] = Transaction(
            site_id=site_of[record.station_id],
            at_us=at_us,
            registers_wh=registers_wh,
            started_us=_us(record.started_at),
            ended_us=NEVER_US if record.ended_at is None else _us(record.ended_at),
        )
        samples.extend(
            MeterSample(
                station_id=record.station_id,
                transaction_id=record.transaction_id,
                seq_no=index,
                measured_at=_EPOCH + int(at) * _MICROSECOND,
                import_register_wh=int(wh[0]),
                export_register_wh=int(wh[1]),
            )
            for index, (at, wh) in enumerate(zip(times.tolist(), values.tolist(), strict=True))
        )
    return LiveDay(
        start=start,
        end=end,
        sessions=sessions,
        samples=tuple(samples),
        hourly_export_wh=hourly,
        transactions=transactions,
    )


def settle_live(
    source: LiveMeterSource,
    *,
    day: date,
    city: str,
    tariff: Tariff,
    out: Path,
    contracts: Contracts | None = None,
    rates_file: Path | None = None,
    ledger_path: Path | None = None,
    store_name: str = "",
) -> dict[str, Any]:
    """Settle the local ``day`` of ``city`` (whose ``tariff`` applies) into ``out``.

    Writes ``statements.csv``, ``settlement.json`` and posts period ``DATE/CITY/live`` to
    the ledger (``out/ledger.sqlite`` unless ``ledger_path``); returns what
    ``settlement.json`` holds, with the grid services measured (``services``: per
    regulation hour its score and payments, per demand-response event its energies;
    ``None`` for a source without grid services). Every check runs before anything is
    written.

    Raises
    ------
    InputError
        The day has no metered transaction, or its data is bad (module docstring).
    """
    live = read_live_day(source, day=day, tariff=tariff)
    if not live.sessions:
        raise InputError(
            f"no metered transaction of {city} on {day.isoformat()} (local day "
            f"{live.start.isoformat()} to {live.end.isoformat()}) in the store {store_name}"
        )
    try:
        meter = live_meter_table(list(live.samples), sessions=live.sessions, tariff=tariff)
    except ValueError as error:
        raise InputError(str(error)) from None
    contracts = contracts if contracts is not None else Contracts()
    card = rate_cards([city], overrides=rates_file)[city]
    columns = meter_lines(meter, card=card, contracts=contracts)
    services = None
    if isinstance(source, LiveServicesSource):
        try:
            services = read_live_services(
                source,
                start=live.start,
                end=live.end,
                city=city,
                planner=LIVE_PLANNER,
                timezone=tariff.timezone,
                card=card,
                transactions=live.transactions,
            )
        except ValueError as error:
            raise InputError(str(error)) from None
        add_live_service_lines(
            columns,
            services,
            sessions=live.sessions,
            transactions=live.transactions,
            card=card,
            contracts=contracts,
        )
    period = f"{day.isoformat()}/{city}/{LIVE_PLANNER}"
    prepare_output_folder(out)
    with contextlib.ExitStack() as stack:
        ledger = stack.enter_context(
            Ledger.open(ledger_path if ledger_path is not None else out / "ledger.sqlite")
        )
        entry, lines = settle_period(
            period, columns, ledger=ledger, kpis=_kpis(meter, live, city=city)
        )
    write_statements_csv(out, statement_rows(period, lines))
    document: dict[str, Any] = {
        "live": store_name,
        "date": day.isoformat(),
        "day_utc": [live.start.isoformat(), live.end.isoformat()],
        "not_settled": NOT_SETTLED,
        "services": services_json(services) if services is not None else None,
        "charger_kind": f"{DEFAULT_CHARGER_KIND} for every session (stations have no kind yet)",
        "rates": {city: rates_json(card)},
        "periods": {
            period: {
                "city": city,
                "planner": LIVE_PLANNER,
                "sessions": len(live.sessions),
                **entry,
            }
        },
    }
    write_settlement_json(out, document)
    return document


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _refuse_going_back(readings: Sequence[MeterSample], registers_wh: IntArray) -> None:
    """Registers never go down in measuring order; the first that does is refused."""
    bad = np.flatnonzero((np.diff(registers_wh, axis=0) < 0).any(axis=1))
    if not bad.size:
        return
    before, after = int(bad[0]), int(bad[0]) + 1
    sample = readings[after]
    column = 0 if registers_wh[after, 0] < registers_wh[before, 0] else 1
    register = (IMPORT_REGISTER, EXPORT_REGISTER)[column]
    at, earlier = (r.measured_at.astimezone(UTC).isoformat() for r in (sample, readings[before]))
    raise InputError(
        f"station {sample.station_id} transaction {sample.transaction_id} seq_no "
        f"{sample.seq_no}: {register} went backwards ({registers_wh[after, column]} Wh at "
        f"{at} after {registers_wh[before, column]} Wh at {earlier})"
    )


def _kpis(meter: pa.Table, live: LiveDay, *, city: str) -> PilotKpis:
    """The pilot KPIs of the day's meter rows (module docstring)."""
    import_wh = np.asarray(meter.column("import_wh").to_numpy(), dtype=np.int64)
    export_wh = np.asarray(meter.column("export_wh").to_numpy(), dtype=np.int64)
    valley = np.asarray(meter.column("period").to_numpy(zero_copy_only=False)) == "valley"
    kind = np.asarray(meter.column("charger_kind").to_numpy(zero_copy_only=False))
    private = kind == "home"
    peak_wh = int(live.hourly_export_wh.max()) if live.hourly_export_wh.size else 0
    return pilot_kpis(
        city=city,
        planner=LIVE_PLANNER,
        peak_discharge_kw=peak_wh / WH_PER_KWH,  # Wh in one hour = average W
        discharged_kwh_per_day=int(export_wh.sum()) / WH_PER_KWH,
        valley_share=_share(int(import_wh[valley].sum()), int(import_wh.sum())),
        valley_share_private=_share(
            int(import_wh[valley & private].sum()), int(import_wh[private].sum())
        ),
    )


def _share(part: int, whole: int) -> float:
    """``part / whole``; 1 when there is nothing to share (no rule broken)."""
    return part / whole if whole > 0 else 1.0


__all__ = [
    "DEFAULT_CHARGER_KIND",
    "LIVE_PLANNER",
    "NOT_SETTLED",
    "LiveDay",
    "LiveMeterSource",
    "LiveTransaction",
    "local_day",
    "read_live_day",
    "settle_live",
]
