"""Writing transactions and their meter values: one session row per transaction, each
event stored once, registers that never go backwards.

These functions run inside the caller's database transaction (one per :class:`Store`
write), so a refusal leaves nothing of the message behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from v2ghub.store import schema
from v2ghub.store.checks import (
    Registers,
    check_event_registers,
    latest_changes,
    meter_value_registers,
)
from v2ghub.store.records import MeterSample, TransactionEventRecord

UNKNOWN_EVSE_ID = 0
"""The EVSE of a transaction first seen in an event that named none (OCPP sends it once)."""


def store_event(
    connection: Connection, event: TransactionEventRecord, ordered: Sequence[MeterSample]
) -> bool:
    """Store one checked TransactionEvent (``ordered``: its samples in time order);
    ``False`` for a replay."""
    station_id, transaction_id, seq_no = event.station_id, event.transaction_id, event.seq_no
    evse_id, at = event.evse_id, event.at
    events = schema.transaction_events.c
    known = sa.select(events.seq_no).where(
        events.station_id == station_id,
        events.transaction_id == transaction_id,
        events.seq_no == seq_no,
    )
    # A replay is answered without taking a lock (on PostgreSQL a lock costs a WAL flush);
    # the INSERT .. ON CONFLICT below still decides when two copies race.
    if connection.execute(known).first() is not None:
        return False
    session = _lock_session(connection, station_id, transaction_id)
    if session is None:
        require_station(connection, station_id)
        connection.execute(
            insert_on_conflict(connection, schema.sessions)
            .values(
                station_id=station_id,
                transaction_id=transaction_id,
                evse_id=UNKNOWN_EVSE_ID if evse_id is None else evse_id,
                started_at=at,
                last_seq_no=-1,
            )
            .on_conflict_do_nothing()
        )
        session = _lock_session(connection, station_id, transaction_id)
        assert session is not None
    stored = connection.execute(
        insert_on_conflict(connection, schema.transaction_events)
        .values(
            station_id=station_id,
            transaction_id=transaction_id,
            seq_no=seq_no,
            event_type=event.event_type,
            trigger_reason=event.trigger_reason,
            at=at,
            offline=event.offline,
        )
        .on_conflict_do_nothing()
        .returning(schema.transaction_events.c.seq_no)
    ).first()
    if stored is None:
        return False
    # Usually the newest event; a late one (replayed out of order) must fit between
    # the readings of the events before and after it.
    in_order = seq_no > session.last_seq_no
    floor = _latest(session) if in_order else _earlier(connection, session, seq_no)
    check_event_registers(
        ordered,
        floor=floor,
        ceiling=None if in_order else _later(connection, session, seq_no),
        where=f"station {station_id!r}, transaction {transaction_id!r}, seq_no {seq_no}",
    )
    evse = session.evse_id if evse_id is None else evse_id
    _insert_samples(connection, evse, ordered)
    changes: dict[str, Any] = {"last_seq_no": max(seq_no, session.last_seq_no)}
    if in_order:
        changes.update(latest_changes(ordered))
    # The start registers are those of the lowest seq_no that carried a reading.
    earliest = session.start_import_register_wh is None if in_order else floor is None
    if ordered and earliest:
        changes["start_import_register_wh"] = ordered[0].import_register_wh
        changes["start_export_register_wh"] = ordered[0].export_register_wh
    if at < session.started_at:
        changes["started_at"] = at
    if evse_id is not None and session.evse_id == UNKNOWN_EVSE_ID:
        changes["evse_id"] = evse_id
    if event.id_token is not None:
        changes["id_token"] = event.id_token
    if event.event_type == "Ended":
        changes["ended_at"] = at
        changes["stopped_reason"] = event.stopped_reason
    connection.execute(
        schema.sessions.update().where(_session_key(station_id, transaction_id)).values(**changes)
    )
    return True


def store_meter_values(
    connection: Connection,
    station_id: str,
    evse_id: int,
    ordered: Sequence[MeterSample],
    *,
    at: datetime,
) -> None:
    """Store checked MeterValues samples (time order) with the EVSE's transaction at ``at``."""
    require_station(connection, station_id)
    sessions = schema.sessions.c
    query = (
        sa.select(schema.sessions)
        .where(
            sessions.station_id == station_id,
            sessions.evse_id == evse_id,
            sessions.started_at <= at,
            sa.or_(sessions.ended_at.is_(None), sessions.ended_at >= at),
        )
        .order_by(sessions.started_at.desc())
        .limit(1)
        .with_for_update()
    )
    session = connection.execute(query).first()
    transaction_id = schema.NO_TRANSACTION if session is None else session.transaction_id
    rows = [
        _sample_row(sample, station_id, transaction_id, schema.METER_VALUES_SEQ_NO, evse_id)
        for sample in ordered
    ]
    if session is not None:
        where = f"station {station_id!r}, transaction {transaction_id!r}, MeterValues"
        latest_at = session.last_meter_at
        for sample in ordered:
            if latest_at is not None and sample.measured_at < latest_at:
                _check_between_in_time(connection, session, sample, where=where)
        newer = meter_value_registers(
            ordered, latest=_latest(session), latest_at=latest_at, where=where
        )
        if newer:
            connection.execute(
                schema.sessions.update()
                .where(_session_key(station_id, transaction_id))
                .values(**latest_changes(newer))
            )
    if rows:
        connection.execute(
            insert_on_conflict(connection, schema.meter_values).on_conflict_do_nothing(), rows
        )


def insert_on_conflict(
    connection: Connection, table: sa.Table
) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can say ON CONFLICT (both back ends spell it the same way)."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def require_station(connection: Connection, station_id: str) -> None:
    query = sa.select(schema.stations.c.station_id).where(
        schema.stations.c.station_id == station_id
    )
    if connection.execute(query).first() is None:
        raise ValueError(f"station {station_id!r} is not registered")


def _session_key(station_id: str, transaction_id: str) -> sa.ColumnElement[bool]:
    columns = schema.sessions.c
    return sa.and_(columns.station_id == station_id, columns.transaction_id == transaction_id)


def _lock_session(connection: Connection, station_id: str, transaction_id: str) -> Row[Any] | None:
    """The session's row, locked until commit on PostgreSQL (SQLite locks the database)."""
    query = (
        sa.select(schema.sessions).where(_session_key(station_id, transaction_id)).with_for_update()
    )
    return connection.execute(query).first()


def _sample_row(
    sample: MeterSample, station_id: str, transaction_id: str, seq_no: int, evse_id: int
) -> dict[str, Any]:
    return {
        "station_id": station_id,
        "transaction_id": transaction_id,
        "seq_no": seq_no,
        "measured_at": sample.measured_at,
        "evse_id": evse_id,
        "import_register_wh": sample.import_register_wh,
        "export_register_wh": sample.export_register_wh,
        "power_kw": sample.power_kw,
        "soc": sample.soc,
    }


def _insert_samples(connection: Connection, evse_id: int, ordered: Sequence[MeterSample]) -> None:
    if not ordered:
        return
    rows = [
        _sample_row(sample, sample.station_id, sample.transaction_id, sample.seq_no, evse_id)
        for sample in ordered
    ]
    connection.execute(
        insert_on_conflict(connection, schema.meter_values).on_conflict_do_nothing(), rows
    )


def _latest(session: Row[Any]) -> Registers | None:
    if session.import_register_wh is None:
        return None
    return Registers(session.import_register_wh, session.export_register_wh)


def _check_between_in_time(
    connection: Connection, session: Row[Any], sample: MeterSample, *, where: str
) -> None:
    """A late reading must fit between the stored readings measured before and after it."""
    values = schema.meter_values.c
    before = _bound(connection, session, values.measured_at <= sample.measured_at, highest=True)
    after = _bound(connection, session, values.measured_at > sample.measured_at, highest=False)
    registers = Registers.of(sample)
    at = sample.measured_at.isoformat()
    if before is not None and (problem := registers.below(before)):
        raise ValueError(f"{where} at {at}: {problem} measured before it")
    if after is not None and (problem := after.below(registers)):
        raise ValueError(f"{where} at {at}: a later reading's {problem}")


def _later(connection: Connection, session: Row[Any], seq_no: int) -> Registers | None:
    """The lowest registers stored by the session's events after ``seq_no``."""
    return _bound(connection, session, schema.meter_values.c.seq_no > seq_no, highest=False)


def _earlier(connection: Connection, session: Row[Any], seq_no: int) -> Registers | None:
    """The highest registers stored by the session's events before ``seq_no``."""
    values = schema.meter_values.c
    condition = sa.and_(values.seq_no >= 0, values.seq_no < seq_no)
    return _bound(connection, session, condition, highest=True)


def _bound(
    connection: Connection,
    session: Row[Any],
    condition: sa.ColumnElement[bool],
    *,
    highest: bool,
) -> Registers | None:
    """The highest (or lowest) registers of the session's stored readings that meet
    ``condition``; ``None`` when there are none."""
    values = schema.meter_values.c
    pick = sa.func.max if highest else sa.func.min
    row = connection.execute(
        sa.select(pick(values.import_register_wh), pick(values.export_register_wh)).where(
            values.station_id == session.station_id,
            values.transaction_id == session.transaction_id,
            condition,
        )
    ).one()
    return None if row[0] is None else Registers(row[0], row[1])
