"""What the web API reads from the store and the live aggregator never does: power history
per site, EVSE statuses, sessions with their vehicles' needs, a local day's energy.

Every function runs inside the caller's read transaction (:class:`~v2ghub.store.repository.Store`
opens it) and turns rows into plain records or arrays; the rules are in the docstrings.

Power history
-------------
The range ``[start, end)`` is cut into intervals of ``interval_s`` seconds from ``start``
(the last one ends at ``end``, shorter if the length does not divide). Per site and
interval:

    measured_kw = sum over the site's meters (station, EVSE) of the mean of the meter's
                  ``power_kw`` readings measured in the interval

and None where no meter of the site has a ``power_kw`` reading in it. A reading without
``power_kw`` (a station that reports only its energy registers) is not counted: a mean
power is not derived from registers here, so such a station shows no measured power (its
energy still counts in settlement and in :func:`day_energy`).

    planned_kw = (1 / T) * integral over the interval's elapsed part (length T) of the
                 sum of the setpoints in force

A setpoint (``setpoints.setpoint_kw``, whatever the station answered: it is what was
planned) is in force from ``sent_at`` until the next setpoint of the same (station, EVSE,
transaction), the end of its transaction, or now, whichever comes first. An interval
wholly after now has no elapsed part and plans 0.
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
from v2ghub.units import SECONDS_PER_DAY

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

UNIX_EPOCH_JULIAN_DAY = 2440587.5
"""SQLite's ``julianday()`` of 1970-01-01T00:00Z."""
POSTGRESQL_WORK_MEM = "64MB"
"""Memory PostgreSQL may use per sort or hash of a history read."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


# Power history -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Intervals:
    """``[start, end)`` cut every ``interval_s`` seconds from ``start``; the last interval
    ends at ``end``."""

    start: datetime
    end: datetime
    interval_s: int

    @property
    def count(self) -> int:
        return -(-(self.end - self.start) // timedelta(seconds=self.interval_s))

    def edges(self) -> list[datetime]:
        """The ``count + 1`` bounds: each interval's start, then ``end``."""
        step = timedelta(seconds=self.interval_s)
        return [self.start + k * step for k in range(self.count)] + [self.end]


@dataclass(frozen=True)
class SitePower:
    """A power per site (rows, sorted by id) and interval (columns), kW."""

    site_ids: tuple[str, ...]
    power_kw: FloatArray

    def row(self, site_id: str, *, missing: float) -> FloatArray:
        """The site's row; ``missing`` throughout for a site not in ``site_ids``."""
        if site_id in self.site_ids:
            return np.asarray(self.power_kw[self.site_ids.index(site_id)], dtype=np.float64)
        return np.full(self.power_kw.shape[1], missing)


def measured_power(
    connection: Connection, intervals: Intervals, *, site_ids: frozenset[str] | None
) -> SitePower:
    """Measured power of the sites of registered stations (of ``site_ids`` only, unless
    None) per interval, NaN where no meter of the site had a ``power_kw`` reading; the
    module docstring states the rule."""
    sites = _sites(connection, site_ids)
    measured_kw = np.full((len(sites), intervals.count), np.nan)
    if sites:
        if connection.dialect.name == "postgresql":
            _tune_postgresql(connection)
        row_of = {site_id: row for row, site_id in enumerate(sites)}
        for site_id, bucket, mean_kw in connection.execute(
            _measured(connection, intervals, site_ids)
        ):
            if mean_kw is not None:  # SQLite sums a site's intervals with no reading to NULL
                measured_kw[row_of[site_id], bucket] = mean_kw
    return SitePower(sites, measured_kw)


def planned_power(
    connection: Connection,
    intervals: Intervals,
    *,
    now: datetime,
    site_ids: frozenset[str] | None,
) -> SitePower:
    """Planned power of the sites of registered stations (of ``site_ids`` only, unless
    None) per interval; the module docstring states the rule."""
    sites = _sites(connection, site_ids)
    if not sites:
        return SitePower(sites, np.zeros((0, intervals.count)))
    if connection.dialect.name == "postgresql":
        _tune_postgresql(connection)
    groups = connection.execute(_planned_groups(connection, intervals, now, site_ids)).all()
    columns: list[tuple[object, ...]] = list(zip(*groups, strict=True)) or [()] * 6
    first, last = (np.array(column, dtype=np.int64) for column in columns[1:3])
    power_kw, power_from_kws, power_until_kws = (
        np.array(column, dtype=np.float64) for column in columns[3:]
    )
    planned_kw = planned_means_kw(
        site_index=np.searchsorted(np.array(sites), np.array(columns[0], dtype=np.str_)),
        first=first,
        last=last,
        power_kw=power_kw,
        power_from_kws=power_from_kws,
        power_until_kws=power_until_kws,
        sites=len(sites),
        intervals=intervals,
        elapsed_s=(min(now, intervals.end) - intervals.start) / timedelta(seconds=1),
    )
    return SitePower(sites, planned_kw)


def _sites(connection: Connection, site_ids: frozenset[str] | None) -> tuple[str, ...]:
    """The sites of registered stations (of ``site_ids`` only, unless None), sorted."""
    stations = schema.stations.c
    query = sa.select(stations.site_id).distinct().order_by(stations.site_id)
    if site_ids is not None:
        query = query.where(stations.site_id.in_(sorted(site_ids)))
    return tuple(connection.scalars(query))


def _tune_postgresql(connection: Connection) -> None:
    """Settings for this read transaction only. A plan made for the range at hand: psycopg
    prepares a statement run often, and PostgreSQL's generic plan for it, made without the
    range, may scan every reading. No JIT: compiling these queries takes longer than
    running them. More memory: with the default 4 MB a range's readings are sorted on
    disk rather than hashed in memory."""
    connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
    connection.exec_driver_sql("SET LOCAL jit = off")
    connection.exec_driver_sql(f"SET LOCAL work_mem = '{POSTGRESQL_WORK_MEM}'")


def planned_means_kw(
    *,
    site_index: IntArray,
    first: IntArray,
    last: IntArray,
    power_kw: FloatArray,
    power_from_kws: FloatArray,
    power_until_kws: FloatArray,
    sites: int,
    intervals: Intervals,
    elapsed_s: float,
) -> FloatArray:
    """Mean planned power per site and interval from setpoint segments grouped by site and
    by the intervals ``first`` and ``last`` their start ``f`` and end ``u`` fall in (times
    in seconds from the range's start, interval ``k`` from ``k * dt``), as the sums
    ``P = sum p``, ``PF = sum p * f`` and ``PU = sum p * u`` of each group.

    The energy of a segment in interval ``k`` is ``p * (min(u, e_{k+1}) - max(f, e_k))``,
    linear in ``f`` and ``u``, so a group adds ``PU - PF`` to ``first`` when it is also
    ``last``; otherwise ``e_{first+1} * P - PF`` to ``first``, ``PU - e_last * P`` to
    ``last`` and ``dt * P`` to every interval between. Each interval's energy is divided by
    its length before ``elapsed_s`` (0 for an interval wholly after it).
    """
    count, step_s = intervals.count, float(intervals.interval_s)
    energy_kws = np.zeros((sites, count + 1))
    # The change in the number of whole intervals each group covers, at each interval.
    whole = np.zeros((sites, count + 1))
    alone = first == last
    np.add.at(
        energy_kws,
        (site_index[alone], first[alone]),
        power_until_kws[alone] - power_from_kws[alone],
    )
    span = ~alone
    site, lo, hi, power = site_index[span], first[span], last[span], power_kw[span]
    np.add.at(energy_kws, (site, lo), (lo + 1) * step_s * power - power_from_kws[span])
    np.add.at(energy_kws, (site, hi), power_until_kws[span] - hi * step_s * power)
    np.add.at(whole, (site, lo + 1), power)
    np.add.at(whole, (site, hi), -power)
    energy_kws += step_s * np.cumsum(whole, axis=1)
    starts_s = np.arange(count) * step_s
    ends_s = np.minimum(starts_s + step_s, (intervals.end - intervals.start) / timedelta(seconds=1))
    length_s = np.clip(np.minimum(ends_s, elapsed_s) - starts_s, 0.0, None)
    safe_s = np.where(length_s > 0, length_s, 1.0)
    return np.where(length_s > 0, energy_kws[:, :count] / safe_s, 0.0)


def epoch_seconds(
    connection: Connection, column: sa.ColumnElement[datetime]
) -> sa.ColumnElement[float]:
    """Seconds since 1970-01-01T00:00Z of a stored time, computed by the database (no
    Python ``datetime`` per row). SQLite keeps times as text, read by ``julianday`` to the
    millisecond."""
    if connection.dialect.name == "postgresql":
        return sa.func.date_part(sa.literal_column("'epoch'"), column, type_=sa.Float)
    julian_day = sa.func.julianday(column, type_=sa.Float)
    return (julian_day - UNIX_EPOCH_JULIAN_DAY) * SECONDS_PER_DAY


def _measured(
    connection: Connection, intervals: Intervals, site_ids: frozenset[str] | None
) -> sa.Select[str, int, float]:
    """(site, interval, sum over its meters of their mean ``power_kw``) where any meter of
    the site has a reading with ``power_kw``.

    PostgreSQL bins the range's readings with ``date_bin`` and groups them by hashing.
    SQLite groups by sorting, which is slow for many rows; there each station's mean power
    in each interval is a subquery on the index ``(station_id, measured_at)``.
    """
    if connection.dialect.name == "postgresql":
        return _measured_postgresql(intervals, site_ids)
    return _measured_sqlite(intervals, site_ids)


def _measured_postgresql(
    intervals: Intervals, site_ids: frozenset[str] | None
) -> sa.Select[str, int, float]:
    values, stations = schema.meter_values.c, schema.stations.c
    start = sa.literal(intervals.start, schema.UtcDateTime())
    step = sa.literal(timedelta(seconds=intervals.interval_s), sa.Interval())
    bin_start = sa.func.date_bin(step, values.measured_at, start, type_=schema.UtcDateTime())
    per_meter = (
        sa.select(
            stations.site_id,
            bin_start.label("bin_start"),
            sa.func.avg(values.power_kw).label("power_kw"),
        )
        .select_from(
            schema.stations.join(schema.meter_values, values.station_id == stations.station_id)
        )
        .where(
            values.measured_at >= intervals.start,
            values.measured_at < intervals.end,
            values.power_kw.is_not(None),
            *_site_condition(site_ids),
        )
        .group_by(stations.site_id, values.station_id, values.evse_id, bin_start)
        .subquery("per_meter")
    )
    since_start = sa.extract("epoch", per_meter.c.bin_start - start)
    interval = sa.cast(sa.func.round(since_start / intervals.interval_s), sa.Integer)
    return sa.select(per_meter.c.site_id, interval, sa.func.sum(per_meter.c.power_kw)).group_by(
        per_meter.c.site_id, per_meter.c.bin_start
    )


def _measured_sqlite(
    intervals: Intervals, site_ids: frozenset[str] | None
) -> sa.Select[str, int, float]:
    values, stations = schema.meter_values.c, schema.stations.c
    edges = intervals.edges()
    bins = (
        sa.values(
            sa.column("k", sa.Integer),
            sa.column("lo", schema.UtcDateTime()),
            sa.column("hi", schema.UtcDateTime()),
            name="bins",
        )
        .data(list(zip(range(intervals.count), edges[:-1], edges[1:], strict=True)))
        .cte("bins")
    )
    per_meter = (
        sa.select(sa.func.avg(values.power_kw).label("power_kw"))
        .where(
            values.station_id == stations.station_id,
            values.measured_at >= bins.c.lo,
            values.measured_at < bins.c.hi,
            values.power_kw.is_not(None),
        )
        .group_by(values.evse_id)
        .correlate(schema.stations, bins)
        .subquery("per_meter")
    )
    station_kw = sa.select(sa.func.sum(per_meter.c.power_kw)).scalar_subquery()
    per_station = (
        sa.select(stations.site_id, bins.c.k, station_kw.label("power_kw"))
        .select_from(schema.stations.join(bins, sa.true()))
        .where(*_site_condition(site_ids))
        .subquery("per_station")
    )
    return sa.select(
        per_station.c.site_id, per_station.c.k, sa.func.sum(per_station.c.power_kw)
    ).group_by(per_station.c.site_id, per_station.c.k)


def _site_condition(site_ids: frozenset[str] | None) -> list[sa.ColumnElement[bool]]:
    """Only the stations of ``site_ids`` (no condition for every site: it would keep the
    database from reading by time alone)."""
    if site_ids is None:
        return []
    return [schema.stations.c.site_id.in_(sorted(site_ids))]


def _planned_groups(
    connection: Connection, intervals: Intervals, now: datetime, site_ids: frozenset[str] | None
) -> sa.Select[str, int, int, float, float, float]:
    """The setpoints' segments, as :func:`planned_means_kw` takes them: (site, first and
    last interval, sum of kW, of kW x start, of kW x end), times in seconds from the range's
    start.

    The segments are those of the setpoints sent in ``[start, min(end, now))`` and of the
    one in force at ``start`` of each transaction open then, each cut to that range. Only a
    transaction's last setpoint can outlast it (the next is sent while it runs), so the
    transaction's end is read for that one alone.
    """
    setpoints, stations, sessions = schema.setpoints.c, schema.stations.c, schema.sessions.c
    stop = min(intervals.end, now)
    earlier = schema.setpoints.alias("earlier")
    open_then = schema.sessions.alias("open_then")
    in_force_at_start = (
        sa.select(earlier.c.id)
        .where(
            earlier.c.station_id == open_then.c.station_id,
            earlier.c.evse_id == open_then.c.evse_id,
            earlier.c.transaction_id == open_then.c.transaction_id,
            earlier.c.sent_at < intervals.start,
        )
        .order_by(earlier.c.sent_at.desc(), earlier.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    needed = (
        setpoints.id,
        setpoints.station_id,
        setpoints.transaction_id,
        setpoints.sent_at,
        setpoints.setpoint_kw,
    )
    open_at_start = (
        sa.select(*needed)
        .select_from(open_then)
        .join(schema.setpoints, setpoints.id == in_force_at_start)
        .where(sa.or_(open_then.c.ended_at.is_(None), open_then.c.ended_at > intervals.start))
    )
    in_range = sa.select(*needed).where(
        setpoints.sent_at >= intervals.start, setpoints.sent_at < stop
    )
    if site_ids is not None:
        visible = sa.select(stations.station_id).where(*_site_condition(site_ids))
        in_range = in_range.where(setpoints.station_id.in_(visible))
        open_at_start = open_at_start.where(open_then.c.station_id.in_(visible))
    chosen = sa.union_all(in_range, open_at_start).subquery("chosen")
    start_s = _seconds(intervals.start)
    sent_s = epoch_seconds(connection, chosen.c.sent_at) - start_s
    stop_s = sa.literal((stop - intervals.start) / timedelta(seconds=1), sa.Float)
    # A transaction is on one EVSE: (station, transaction) is the (station, EVSE,
    # transaction) a setpoint holds for.
    following_s = sa.func.lead(sent_s).over(
        partition_by=(chosen.c.station_id, chosen.c.transaction_id),
        order_by=(chosen.c.sent_at, chosen.c.id),
    )
    # Read only for the last setpoint of each transaction (COALESCE stops at the first
    # value that is not null).
    ended_s = (
        sa.select(epoch_seconds(connection, sessions.ended_at) - start_s)
        .where(
            sessions.station_id == chosen.c.station_id,
            sessions.transaction_id == chosen.c.transaction_id,
        )
        .scalar_subquery()
    )
    # The window makes the database compute this once, into a table of its own.
    cut = (
        sa.select(
            chosen.c.station_id,
            chosen.c.setpoint_kw,
            _greatest(connection, sent_s, sa.literal(0.0, sa.Float)).label("from_s"),
            _least(connection, sa.func.coalesce(following_s, ended_s, stop_s), stop_s).label(
                "until_s"
            ),
        )
        .select_from(chosen)
        .subquery("cut")
    )
    first = _interval(connection, cut.c.from_s, intervals.interval_s).label("first")
    last = _interval(connection, cut.c.until_s, intervals.interval_s).label("last")
    return (
        sa.select(
            stations.site_id,
            first,
            last,
            sa.func.sum(cut.c.setpoint_kw),
            sa.func.sum(cut.c.setpoint_kw * cut.c.from_s),
            sa.func.sum(cut.c.setpoint_kw * cut.c.until_s),
        )
        .select_from(cut.join(schema.stations, stations.station_id == cut.c.station_id))
        .where(cut.c.until_s > cut.c.from_s)
        .group_by(stations.site_id, first, last)
    )


def _least(
    connection: Connection, a: sa.ColumnElement[float], b: sa.ColumnElement[float]
) -> sa.ColumnElement[float]:
    """The lesser of two non-null values, each written once (SQLite's ``min`` of two
    arguments is scalar)."""
    if connection.dialect.name == "postgresql":
        return sa.func.least(a, b, type_=sa.Float)
    return sa.func.min(a, b, type_=sa.Float)


def _greatest(
    connection: Connection, a: sa.ColumnElement[float], b: sa.ColumnElement[float]
) -> sa.ColumnElement[float]:
    if connection.dialect.name == "postgresql":
        return sa.func.greatest(a, b, type_=sa.Float)
    return sa.func.max(a, b, type_=sa.Float)


def _interval(
    connection: Connection, offset_s: sa.ColumnElement[float], interval_s: int
) -> sa.ColumnElement[int]:
    """The interval a time ``offset_s`` >= 0 seconds after the range's start falls in."""
    quotient = offset_s / interval_s
    if connection.dialect.name == "postgresql":  # CAST rounds there
        return sa.cast(sa.func.floor(quotient), sa.Integer)
    return sa.cast(quotient, sa.Integer)  # SQLite's CAST truncates


# EVSEs -------------------------------------------------------------------------------------


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
