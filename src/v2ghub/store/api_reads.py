"""What the web API reads from the store and the live aggregator never does: EVSE
statuses, sessions with their vehicles' needs, a local day's energy.

Every function runs inside the caller's read transaction (:class:`~v2ghub.store.repository.Store`
opens it) and turns rows into plain records or arrays; the rules are in the docstrings.

The power history per site is :mod:`v2ghub.store.site_power`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from v2ghub.store import schema
from v2ghub.store.plugged import NEEDS_BEFORE_START

IntArray = npt.NDArray[np.int64]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class EvseStatus:
    """An EVSE's latest status (StatusNotification's connector status)."""

    station_id: str
    evse_id: int
    status: str
    updated_at: datetime


def evse_statuses(
    connection: Connection, station_ids: Sequence[str] | None = None
) -> list[EvseStatus]:
    """The EVSEs of ``station_ids`` (all when None), by station and EVSE."""
    evses = schema.evses.c
    query = sa.select(schema.evses).order_by(evses.station_id, evses.evse_id)
    if station_ids is not None:
        query = query.where(evses.station_id.in_(list(station_ids)))
    return [
        EvseStatus(row.station_id, row.evse_id, row.status, row.updated_at)
        for row in connection.execute(query)
    ]


# Sessions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionView:
    """A transaction as the web API shows it.

    ``delivered_wh`` and ``exported_wh`` follow ``SessionRecord.imported_wh`` and
    ``exported_wh``: latest minus start register, 0 before the first reading.
    ``energy_asked_kwh`` is :func:`energy_asked_kwh` of the latest needs of the
    transaction (as :mod:`v2ghub.store.plugged` finds them); ``soc`` the latest reading's.
    """

    station_id: str
    evse_id: int
    transaction_id: str
    site_id: str
    id_token: str | None
    started_at: datetime
    ended_at: datetime | None
    delivered_wh: int
    exported_wh: int
    soc: float | None
    energy_asked_kwh: float | None

    @property
    def session_id(self) -> str:
        """The session's id in the settlement ledger."""
        return live_session_id(self.station_id, self.transaction_id)


def live_session_id(station_id: str, transaction_id: str) -> str:
    """``STATION/TRANSACTION``: a live session's id in the settlement ledger."""
    return f"{station_id}/{transaction_id}"


def energy_asked_kwh(
    *, target_energy_kwh: float | None, soc: float | None, battery_kwh: float | None
) -> float | None:
    """What a vehicle asked for on top of what it held when it sent its needs:
    ``target_energy_kwh - soc * battery_kwh`` (kWh; negative when the target is below it);
    None unless all three are known."""
    if target_energy_kwh is None or soc is None or battery_kwh is None:
        return None
    return target_energy_kwh - soc * battery_kwh


@dataclass(frozen=True)
class SessionFilter:
    """Which sessions to read; every condition given must hold."""

    site_ids: frozenset[str] | None = None
    """None: every site."""
    owner_id: str | None = None
    """Only sessions whose id token is this."""
    since: datetime | None = None
    """Only sessions still open or ended at or after this."""
    open: bool | None = None
    """True: only open ones; False: only ended ones."""
    key: tuple[str, str] | None = None
    """Only this (station, transaction)."""


def session_views(
    connection: Connection, where: SessionFilter, *, now: datetime, limit: int | None
) -> list[SessionView]:
    """The sessions ``where`` selects, newest start first, at most ``limit``.

    A session's needs are the latest received on its EVSE up to its end (or ``now``) for
    its transaction or none, and no earlier than :data:`NEEDS_BEFORE_START` before it
    started (as the control loop takes them).
    """
    sessions, stations = schema.sessions.c, schema.stations.c
    order = (sessions.started_at.desc(), sessions.station_id, sessions.transaction_id)
    chosen = (
        sa.select(
            schema.sessions,
            stations.site_id,
            sa.func.coalesce(
                sessions.import_register_wh - sessions.start_import_register_wh, 0
            ).label("delivered_wh"),
            sa.func.coalesce(
                sessions.export_register_wh - sessions.start_export_register_wh, 0
            ).label("exported_wh"),
        )
        .join(schema.stations, stations.station_id == sessions.station_id)
        .where(*_conditions(where))
        .order_by(*order)
        .limit(limit)
        .subquery("chosen")
    )
    needs = schema.ev_needs.c
    rank = sa.func.row_number().over(
        partition_by=(chosen.c.station_id, chosen.c.transaction_id),
        order_by=(needs.received_at.desc(), needs.id.desc()),
    )
    ranked = (
        sa.select(
            chosen.c.station_id,
            chosen.c.transaction_id,
            needs.received_at,
            needs.target_energy_kwh,
            needs.soc,
            needs.battery_kwh,
            rank.label("rank"),
        )
        .join(
            chosen,
            sa.and_(
                needs.station_id == chosen.c.station_id,
                needs.evse_id == chosen.c.evse_id,
                needs.received_at
                <= sa.func.coalesce(chosen.c.ended_at, sa.literal(now, schema.UtcDateTime())),
                sa.or_(
                    needs.transaction_id.is_(None),
                    needs.transaction_id == chosen.c.transaction_id,
                ),
            ),
        )
        .subquery("ranked")
    )
    latest = sa.select(ranked).where(ranked.c.rank == 1).subquery("latest")
    query = (
        sa.select(
            chosen,
            latest.c.received_at.label("needs_at"),
            latest.c.target_energy_kwh,
            latest.c.soc.label("needs_soc"),
            latest.c.battery_kwh,
        )
        .outerjoin(
            latest,
            sa.and_(
                latest.c.station_id == chosen.c.station_id,
                latest.c.transaction_id == chosen.c.transaction_id,
            ),
        )
        .order_by(chosen.c.started_at.desc(), chosen.c.station_id, chosen.c.transaction_id)
    )
    stored = [name for name in SessionView.__dataclass_fields__ if name != "energy_asked_kwh"]
    views = []
    for row in connection.execute(query):
        asked = None
        if row.needs_at is not None and row.needs_at >= row.started_at - NEEDS_BEFORE_START:
            asked = energy_asked_kwh(
                target_energy_kwh=row.target_energy_kwh,
                soc=row.needs_soc,
                battery_kwh=row.battery_kwh,
            )
        views.append(
            SessionView(**{name: row._mapping[name] for name in stored}, energy_asked_kwh=asked)
        )
    return views


def _conditions(where: SessionFilter) -> list[sa.ColumnElement[bool]]:
    sessions, stations = schema.sessions.c, schema.stations.c
    conditions: list[sa.ColumnElement[bool]] = []
    if where.site_ids is not None:
        conditions.append(stations.site_id.in_(sorted(where.site_ids)))
    if where.owner_id is not None:
        conditions.append(sessions.id_token == where.owner_id)
    if where.since is not None:
        conditions.append(sa.or_(sessions.ended_at.is_(None), sessions.ended_at >= where.since))
    if where.open is not None:
        ended = sessions.ended_at.is_(None)
        conditions.append(ended if where.open else sa.not_(ended))
    if where.key is not None:
        conditions.append(sessions.station_id == where.key[0])
        conditions.append(sessions.transaction_id == where.key[1])
    return conditions


# A day's energy ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DayEnergy:
    """Energy metered between a day's start and now, over the sessions that overlap it."""

    delivered_wh: int
    exported_wh: int
    session_ids: tuple[str, ...]
    """``STATION/TRANSACTION`` of each session counted."""


def day_energy(
    connection: Connection,
    *,
    start: datetime,
    now: datetime,
    site_ids: frozenset[str] | None,
    owner_id: str | None,
) -> DayEnergy:
    """The energy each session open at some time in ``[start, now]`` (of ``site_ids``,
    and of ``owner_id`` if given) metered since ``start``: its latest registers minus its
    registers at ``start``.

    A session that started before ``start`` has its registers at ``start`` interpolated
    between its last reading at or before it and its first after it,
    ``r_b + round_half_up((r_a - r_b) * (start - t_b) / (t_a - t_b))`` in whole Wh (held
    when only one side has a reading), as settlement cuts a day
    (:mod:`v2ghub.settlement.live_settle`); for one that started later they are its first
    reading's. A session with no reading metered nothing.
    """
    sessions = schema.sessions.c
    spanning = sessions.started_at < start
    around = [
        sa.case((spanning, _reading_next_to(start, column, before=before)))
        for before in (True, False)
        for column in ("measured_at", "import_register_wh", "export_register_wh")
    ]
    overlapping = (
        sa.select(
            sessions.station_id,
            sessions.transaction_id,
            sessions.start_import_register_wh,
            sessions.start_export_register_wh,
            sessions.import_register_wh,
            sessions.export_register_wh,
            *around,
        )
        .join(schema.stations, schema.stations.c.station_id == sessions.station_id)
        .where(
            *_conditions(SessionFilter(site_ids=site_ids, owner_id=owner_id, since=start)),
            sessions.started_at <= now,
        )
        .order_by(sessions.station_id, sessions.transaction_id)
    )
    rows = connection.execute(overlapping).all()
    columns: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) or [()] * 12
    first_wh, latest_wh, before_wh, after_wh = (
        _registers(columns[first], columns[first + 1]) for first in (2, 4, 7, 10)
    )
    metered, has_before, has_after = (
        np.array([value is not None for value in columns[index]], dtype=np.bool_)
        for index in (4, 6, 9)
    )
    before_us, after_us = (
        np.array([0 if at is None else _microseconds(at) for at in columns[index]], np.int64)
        for index in (6, 9)
    )
    duration_us = np.maximum(after_us - before_us, 1)[:, None]
    elapsed_us = (_microseconds(start) - before_us)[:, None]
    between_wh = before_wh + ((after_wh - before_wh) * elapsed_us + duration_us // 2) // duration_us
    held_wh = np.where(
        has_before[:, None], before_wh, np.where(has_after[:, None], after_wh, first_wh)
    )
    at_start_wh = np.where((has_before & has_after)[:, None], between_wh, held_wh)
    energy_wh = np.where(metered[:, None], latest_wh - at_start_wh, 0)
    return DayEnergy(
        delivered_wh=int(energy_wh[:, 0].sum()),
        exported_wh=int(energy_wh[:, 1].sum()),
        session_ids=tuple(live_session_id(r.station_id, r.transaction_id) for r in rows),
    )


def _registers(import_wh: Sequence[int | None], export_wh: Sequence[int | None]) -> IntArray:
    """Both registers per session (rows), 0 where unknown."""
    pairs = [(i or 0, e or 0) for i, e in zip(import_wh, export_wh, strict=True)]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _reading_next_to(at: datetime, column: str, *, before: bool) -> sa.ScalarSelect[Any]:
    """``column`` of a session's last reading at or before ``at`` (or first after it),
    for a query over ``sessions``. Registers never go down in time within a transaction
    (the store refuses it), so of several readings at one instant the highest registers
    are the last."""
    values, sessions = schema.meter_values.c, schema.sessions.c
    value = values[column]
    if before:
        side, order = values.measured_at <= at, (values.measured_at.desc(), value.desc())
    else:
        side, order = values.measured_at > at, (values.measured_at.asc(), value.asc())
    return (
        sa.select(value)
        .where(
            values.station_id == sessions.station_id,
            values.transaction_id == sessions.transaction_id,
            side,
        )
        .order_by(*order)
        .limit(1)
        .scalar_subquery()
    )


def _microseconds(at: datetime) -> int:
    return (at - _EPOCH) // _MICROSECOND


def _seconds(at: datetime) -> float:
    return (at - _EPOCH) / timedelta(seconds=1)
