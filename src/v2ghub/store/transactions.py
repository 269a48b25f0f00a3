"""Writing transactions and their meter values: one session row per transaction, each
event stored once, registers that never go backwards.

Registers never go backwards in two orders. In measurement time, for every reading of a
transaction (its events' and the MeterValues of its EVSE while it ran) and for the
readings an EVSE sends outside any transaction: a reading must be at or above the latest
stored at or before its instant and at or below the earliest stored after it. In
``seq_no`` order, for a transaction's events: an event's readings must be at or above
those of the event before it and at or below those of the event after it. A transaction
that ended takes no reading measured after its end.

The session keeps its latest reading in time (``last_meter_at`` and its registers), so a
reading measured after every stored one is checked without a query; an older one is
checked against its neighbours with two indexed queries (``meter_values`` is indexed by
transaction and time, and by EVSE and time for readings outside a transaction).

These functions run inside the caller's database transaction (one per :class:`Store`
write), so a refusal leaves nothing of the message behind.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from v2ghub.store import schema
from v2ghub.store.checks import Registers, check_event_registers, latest_changes
from v2ghub.store.records import MeterSample, TransactionEventRecord

UNKNOWN_EVSE_ID = 0
"""The EVSE of a transaction first seen in an event that named none (OCPP sends it once)."""

Neighbour = Callable[[datetime, bool], Registers | None]
"""The registers of the stored reading next to an instant: the latest at or before it
(``True``) or the earliest after it (``False``); ``None`` when there is none."""


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
    where = f"station {station_id!r}, transaction {transaction_id!r}, seq_no {seq_no}"
    _check_before_the_end(session, ordered, where=where)
    # Usually the newest event, measured after every stored reading: the session's latest
    # registers are at or above every stored reading, those of earlier seq_no included.
    # A late one (replayed out of order, or measured before a stored reading) must fit
    # between the readings of the events before and after it.
    in_order = seq_no > session.last_seq_no
    late = session.last_meter_at is not None and any(
        sample.measured_at < session.last_meter_at for sample in ordered
    )
    floor = _latest(session) if in_order and not late else _earlier(connection, session, seq_no)
    check_event_registers(
        ordered,
        floor=floor,
        ceiling=None if in_order else _later(connection, session, seq_no),
        where=where,
    )
    newer = _check_in_time(
        ordered,
        latest=_latest(session),
        latest_at=session.last_meter_at,
        neighbour=lambda instant, before: _in_time(connection, session, instant, before=before),
        where=where,
    )
    evse = session.evse_id if evse_id is None else evse_id
    rows = [_sample_row(sample, station_id, transaction_id, seq_no, evse) for sample in ordered]
    _insert_readings(connection, rows)
    changes: dict[str, Any] = {"last_seq_no": max(seq_no, session.last_seq_no)}
    # Of two samples at one instant the first is stored (the key has the time): it counts.
    changes.update(latest_changes(_first_of_each_instant(newer)))
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
    """Store checked MeterValues samples (time order) with the EVSE's transaction at ``at``
    (the first sample's time).

    A sample measured after that transaction ended, or when the next one had started,
    belongs to the transaction open on the EVSE when it was measured, or to none.
    """
    require_station(connection, station_id)
    remaining, lookup_at = list(ordered), at
    while remaining:
        times = [sample.measured_at for sample in remaining]
        session = _session_on_evse(connection, station_id, evse_id, lookup_at)
        if session is None:
            # Samples from the next transaction's start on are its (asked only when a
            # sample is measured later than lookup_at).
            next_start = None
            if times[-1] > lookup_at:
                next_start = _next_start(connection, station_id, evse_id, lookup_at)
            count = len(times) if next_start is None else bisect.bisect_left(times, next_start)
            _store_outside(connection, station_id, evse_id, remaining[:count])
        else:
            ended_at = session.ended_at
            count = len(times) if ended_at is None else bisect.bisect_right(times, ended_at)
            _store_with_session(connection, session, evse_id, remaining[:count])
        remaining = remaining[count:]
        if remaining:
            lookup_at = remaining[0].measured_at


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


def _session_on_evse(
    connection: Connection, station_id: str, evse_id: int, at: datetime
) -> Row[Any] | None:
    """The transaction open on the EVSE at ``at`` (the latest started), locked; or None."""
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
    return connection.execute(query).first()


def _next_start(
    connection: Connection, station_id: str, evse_id: int, at: datetime
) -> datetime | None:
    """When the EVSE's first transaction started after ``at``; None when none has."""
    sessions = schema.sessions.c
    query = (
        sa.select(sessions.started_at)
        .where(
            sessions.station_id == station_id,
            sessions.evse_id == evse_id,
            # Said of ended_at too (it is never before the start): the index has it.
            sa.or_(sessions.ended_at.is_(None), sessions.ended_at > at),
            sessions.started_at > at,
        )
        .order_by(sessions.started_at.asc())
        .limit(1)
    )
    started_at: datetime | None = connection.scalar(query)
    return started_at


def _store_with_session(
    connection: Connection, session: Row[Any], evse_id: int, ordered: Sequence[MeterSample]
) -> None:
    """Store MeterValues samples (time order) as readings of the transaction ``session``."""
    station_id, transaction_id = session.station_id, session.transaction_id
    fresh = _new_readings(
        connection,
        station_id,
        transaction_id,
        evse_id,
        ordered,
        latest_at=session.last_meter_at,
    )
    newer = _check_in_time(
        fresh,
        latest=_latest(session),
        latest_at=session.last_meter_at,
        neighbour=lambda instant, before: _in_time(connection, session, instant, before=before),
        where=f"station {station_id!r}, transaction {transaction_id!r}, MeterValues",
    )
    if newer:
        connection.execute(
            schema.sessions.update()
            .where(_session_key(station_id, transaction_id))
            .values(**latest_changes(newer))
        )
    rows = [
        _sample_row(sample, station_id, transaction_id, schema.METER_VALUES_SEQ_NO, evse_id)
        for sample in fresh
    ]
    _insert_readings(connection, rows)


def _store_outside(
    connection: Connection, station_id: str, evse_id: int, ordered: Sequence[MeterSample]
) -> None:
    """Store MeterValues samples (time order) taken while no transaction ran on the EVSE."""
    if connection.dialect.name == "postgresql":
        # The station's row orders two writers of its readings outside a transaction (a
        # transaction's have its session's row; SQLite's writer holds the whole database).
        # "NO KEY": rows that only refer to the station are still written meanwhile.
        stations = schema.stations.c
        connection.execute(
            sa.select(stations.station_id)
            .where(stations.station_id == station_id)
            .with_for_update(key_share=True)
        )
    latest = _outside_reading(connection, station_id, evse_id, None)
    fresh = _new_readings(
        connection,
        station_id,
        schema.NO_TRANSACTION,
        evse_id,
        ordered,
        latest_at=None if latest is None else latest[1],
    )
    _check_in_time(
        fresh,
        latest=None if latest is None else latest[0],
        latest_at=None if latest is None else latest[1],
        neighbour=lambda instant, before: _outside_registers(
            connection, station_id, evse_id, instant, before=before
        ),
        where=f"station {station_id!r}, EVSE {evse_id}, no transaction, MeterValues",
    )
    rows = [
        _sample_row(sample, station_id, schema.NO_TRANSACTION, schema.METER_VALUES_SEQ_NO, evse_id)
        for sample in fresh
    ]
    _insert_readings(connection, rows)


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


def _insert_readings(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        connection.execute(
            insert_on_conflict(connection, schema.meter_values).on_conflict_do_nothing(), rows
        )


def _new_readings(
    connection: Connection,
    station_id: str,
    transaction_id: str,
    evse_id: int,
    ordered: Sequence[MeterSample],
    *,
    latest_at: datetime | None,
) -> list[MeterSample]:
    """The MeterValues samples not stored before, the first of each instant: a replay
    stays as it was. Only one measured at or before the latest stored reading
    (``latest_at``) can be a replay: those are looked up (one query on the primary key)."""
    times = [s.measured_at for s in ordered if latest_at is not None and s.measured_at <= latest_at]
    if not times:
        return _first_of_each_instant(ordered)
    values = schema.meter_values.c
    query = sa.select(values.measured_at).where(
        values.station_id == station_id,
        values.transaction_id == transaction_id,
        values.seq_no == schema.METER_VALUES_SEQ_NO,
        values.evse_id == evse_id,
        values.measured_at.in_(times),
    )
    return _first_of_each_instant(ordered, known=set(connection.scalars(query)))


def _first_of_each_instant(
    ordered: Sequence[MeterSample], *, known: set[datetime] | None = None
) -> list[MeterSample]:
    """The first sample of each instant (the one a key with the time keeps), but those
    ``known``."""
    seen = set() if known is None else set(known)
    firsts = []
    for sample in ordered:
        if sample.measured_at not in seen:
            seen.add(sample.measured_at)
            firsts.append(sample)
    return firsts


def _latest(session: Row[Any]) -> Registers | None:
    if session.import_register_wh is None:
        return None
    return Registers(session.import_register_wh, session.export_register_wh)


def _check_before_the_end(session: Row[Any], ordered: Sequence[MeterSample], *, where: str) -> None:
    """A transaction that ended takes no reading measured after its end."""
    ended_at = session.ended_at
    if ended_at is None or not ordered or ordered[-1].measured_at <= ended_at:
        return
    at = ordered[-1].measured_at.isoformat()
    raise ValueError(
        f"{where} at {at}: measured after the transaction ended at {ended_at.isoformat()}"
    )


def _check_in_time(
    ordered: Sequence[MeterSample],
    *,
    latest: Registers | None,
    latest_at: datetime | None,
    neighbour: Neighbour,
    where: str,
) -> list[MeterSample]:
    """Check readings (time order) against their neighbours in measurement time; return
    those measured at or after the latest stored one (``latest`` at ``latest_at``), which
    become the latest.

    A reading measured at or after the latest needs no query; an older one is held
    between the stored reading at or before its instant and the first after it (two
    queries through ``neighbour``). Each is also held above the one before it in
    ``ordered``.
    """
    newer: list[MeterSample] = []
    previous: Registers | None = None
    for sample in ordered:
        registers = Registers.of(sample)
        if latest_at is None or sample.measured_at >= latest_at:
            lower, upper = [latest], None
            latest, latest_at = registers, sample.measured_at
            newer.append(sample)
        else:
            lower = [neighbour(sample.measured_at, True)]
            upper = neighbour(sample.measured_at, False)
        at = sample.measured_at.isoformat()
        for floor in (*lower, previous):
            if floor is not None and (problem := registers.below(floor)):
                raise ValueError(f"{where} at {at}: {problem} measured before it")
        if upper is not None and (problem := upper.below(registers)):
            raise ValueError(f"{where} at {at}: a later reading's {problem}")
        previous = registers
    return newer


def _in_time(
    connection: Connection, session: Row[Any], instant: datetime, *, before: bool
) -> Registers | None:
    """The registers of the session's stored reading at or before ``instant`` (the
    highest of that instant's) or the first after it (the lowest of that instant's)."""
    values = schema.meter_values.c
    key = (
        values.station_id == session.station_id,
        values.transaction_id == session.transaction_id,
    )
    if before:
        side, order = values.measured_at <= instant, values.measured_at.desc()
    else:
        side, order = values.measured_at > instant, values.measured_at.asc()
    # Two index seeks (transaction, measured_at): the instant, then its few readings.
    nearest = sa.select(values.measured_at).where(*key, side).order_by(order).limit(1)
    return _registers_where(
        connection, sa.and_(*key, values.measured_at == nearest.scalar_subquery()), highest=before
    )


def _outside_reading(
    connection: Connection, station_id: str, evse_id: int, instant: datetime | None
) -> tuple[Registers, datetime] | None:
    """The EVSE's latest reading outside any transaction (at or before ``instant`` when
    given) and when it was measured; None when there is none."""
    values = schema.meter_values.c
    query = (
        sa.select(values.import_register_wh, values.export_register_wh, values.measured_at)
        .where(*_outside_key(station_id, evse_id))
        .order_by(values.measured_at.desc())
        .limit(1)
    )
    if instant is not None:
        query = query.where(values.measured_at <= instant)
    row = connection.execute(query).first()
    return None if row is None else (Registers(row[0], row[1]), row[2])


def _outside_registers(
    connection: Connection, station_id: str, evse_id: int, instant: datetime, *, before: bool
) -> Registers | None:
    """The registers of the EVSE's reading outside any transaction at or before
    ``instant``, or the first after it (one reading an instant: the key says so)."""
    if before:
        found = _outside_reading(connection, station_id, evse_id, instant)
        return None if found is None else found[0]
    values = schema.meter_values.c
    row = connection.execute(
        sa.select(values.import_register_wh, values.export_register_wh)
        .where(*_outside_key(station_id, evse_id), values.measured_at > instant)
        .order_by(values.measured_at.asc())
        .limit(1)
    ).first()
    return None if row is None else Registers(row[0], row[1])


def _outside_key(station_id: str, evse_id: int) -> tuple[sa.ColumnElement[bool], ...]:
    values = schema.meter_values.c
    return (
        values.station_id == station_id,
        # Written out, not bound: the partial index on readings outside a transaction is
        # chosen only when the query says its condition itself.
        values.transaction_id == sa.literal_column(repr(schema.NO_TRANSACTION)),
        values.evse_id == evse_id,
    )


def _later(connection: Connection, session: Row[Any], seq_no: int) -> Registers | None:
    """The lowest registers of the session's first event after ``seq_no`` that stored any."""
    values = schema.meter_values.c
    side, order = values.seq_no > seq_no, values.seq_no.asc()
    return _event_registers(connection, session, side, order, highest=False)


def _earlier(connection: Connection, session: Row[Any], seq_no: int) -> Registers | None:
    """The highest registers of the session's last event before ``seq_no`` that stored any."""
    values = schema.meter_values.c
    side = sa.and_(values.seq_no >= 0, values.seq_no < seq_no)
    return _event_registers(connection, session, side, values.seq_no.desc(), highest=True)


def _event_registers(
    connection: Connection,
    session: Row[Any],
    side: sa.ColumnElement[bool],
    order: sa.UnaryExpression[Any],
    *,
    highest: bool,
) -> Registers | None:
    """The highest (or lowest) registers of the session's nearest event on ``side`` in
    ``order``: registers never go back in ``seq_no`` order, so it bounds all on that side
    (two seeks on the primary key, which starts with station, transaction, seq_no)."""
    values = schema.meter_values.c
    key = (
        values.station_id == session.station_id,
        values.transaction_id == session.transaction_id,
    )
    nearest = sa.select(values.seq_no).where(*key, side).order_by(order).limit(1)
    condition = sa.and_(*key, values.seq_no == nearest.scalar_subquery())
    return _registers_where(connection, condition, highest=highest)


def _registers_where(
    connection: Connection, condition: sa.ColumnElement[bool], *, highest: bool
) -> Registers | None:
    """The highest (or lowest) registers of the readings that meet ``condition``;
    ``None`` when there are none."""
    values = schema.meter_values.c
    pick = sa.func.max if highest else sa.func.min
    row = connection.execute(
        sa.select(pick(values.import_register_wh), pick(values.export_register_wh)).where(condition)
    ).one()
    return None if row[0] is None else Registers(row[0], row[1])
