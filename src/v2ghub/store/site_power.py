"""Power per site over time: what the control loop recorded at each instant, and its means
over the intervals of a history.

At every control instant the loop records one row per site (``site_power``): the site's
measured net power then (the sum of its plugged vehicles' latest metered powers; None when
none had a reading), its planned net power (the sum of the setpoints of that instant) and
its limits in force. A history reads these few rows (sites times instants: 14,400 a day for
ten sites at one instant a minute), never the raw meter values, so it costs the same
whether a site has ten chargers or ten thousand.

Means (:func:`interval_means`). A row's values hold from its ``at`` until the site's next
row, but at most :data:`HOLD` (a loop that stopped leaves a gap, not a flat line), and not
beyond ``now``. Over an interval ``[a, b)`` the mean is

    mean = integral of the held value over [a, b) / time covered by rows within [a, b)

and None where no row covers any of the interval. So the measured mean is the mean of the
loop's samples of the site's metered power (one a control instant), weighted by how long
each held; the planned mean is exact: setpoints change only at control instants.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from v2ghub.store import schema
from v2ghub.store.checks import check_aware
from v2ghub.units import SECONDS_PER_DAY

FloatArray = npt.NDArray[np.float64]

UNIX_EPOCH_JULIAN_DAY = 2440587.5
"""SQLite's ``julianday()`` of 1970-01-01T00:00Z."""
HOLD = timedelta(minutes=15)
"""How long a row's values hold at most when no later row follows."""


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

    def edges_s(self) -> FloatArray:
        """The bounds in seconds from ``start``."""
        return np.array([(edge - self.start).total_seconds() for edge in self.edges()])


@dataclass(frozen=True)
class SitePowerRecord:
    """A site at one control instant: kW, + charging; limits ``inf`` for none."""

    site_id: str
    at: datetime
    measured_kw: float | None
    planned_kw: float
    import_limit_kw: float
    export_limit_kw: float
    plugged: int


def record_site_power(connection: Connection, records: Sequence[SitePowerRecord]) -> None:
    """Insert one control instant's rows."""
    if not records:
        return
    for record in records:
        check_aware("at", record.at)
    connection.execute(
        schema.site_power.insert(),
        [
            {
                "site_id": r.site_id,
                "at": r.at,
                "measured_kw": r.measured_kw,
                "planned_kw": r.planned_kw,
                "import_limit_kw": None if math.isinf(r.import_limit_kw) else r.import_limit_kw,
                "export_limit_kw": None if math.isinf(r.export_limit_kw) else r.export_limit_kw,
                "plugged": r.plugged,
            }
            for r in records
        ],
    )


def site_power_records(connection: Connection, *, since: datetime) -> list[SitePowerRecord]:
    """Every row from ``since`` on, in time order (to remember the recent hours)."""
    check_aware("since", since)
    columns = schema.site_power.c
    query = sa.select(schema.site_power).where(columns.at >= since).order_by(columns.at, columns.id)
    return [
        SitePowerRecord(
            site_id=row.site_id,
            at=row.at,
            measured_kw=row.measured_kw,
            planned_kw=row.planned_kw,
            import_limit_kw=math.inf if row.import_limit_kw is None else row.import_limit_kw,
            export_limit_kw=math.inf if row.export_limit_kw is None else row.export_limit_kw,
            plugged=row.plugged,
        )
        for row in connection.execute(query)
    ]


@dataclass(frozen=True)
class SiteSeries:
    """One site's rows in time order (seconds since ``origin``)."""

    site_id: str
    at_s: FloatArray
    measured_kw: FloatArray
    """NaN where the row had no measured power."""
    planned_kw: FloatArray


def site_power_series(
    connection: Connection,
    *,
    start: datetime,
    end: datetime,
    origin: datetime,
    site_ids: frozenset[str] | None,
) -> list[SiteSeries]:
    """The rows that can hold within ``[start, end)`` (from ``start - HOLD``), per site
    (of ``site_ids`` only, unless None), sorted by site."""
    check_aware("start", start)
    check_aware("end", end)
    columns = schema.site_power.c
    query = (
        sa.select(
            columns.site_id,
            _epoch_s(connection, columns.at),
            columns.measured_kw,
            columns.planned_kw,
        )
        .where(columns.at >= start - HOLD, columns.at < end)
        .order_by(columns.site_id, columns.at, columns.id)
    )
    if site_ids is not None:
        query = query.where(columns.site_id.in_(sorted(site_ids)))
    rows = connection.execute(query).all()
    series: list[SiteSeries] = []
    if not rows:
        return series
    # Column by column: a history reads thousands of rows, and a datetime per row would
    # cost more than the rest of the request.
    sites, epoch_s, measured_kw, planned_kw = zip(*rows, strict=True)
    site = np.array(sites, dtype=np.str_)
    # julianday() is a double of days: good to tens of microseconds; a millisecond will do.
    at_s = np.round(np.array(epoch_s, dtype=np.float64) - origin.timestamp(), 3)
    measured = np.array(measured_kw, dtype=np.float64)  # None becomes NaN
    planned = np.array(planned_kw, dtype=np.float64)
    bounds = np.flatnonzero(site[1:] != site[:-1]) + 1
    for part in np.split(np.arange(site.size), bounds):
        series.append(SiteSeries(str(site[part[0]]), at_s[part], measured[part], planned[part]))
    return series


def _epoch_s(connection: Connection, column: sa.ColumnElement[datetime]) -> sa.ColumnElement[float]:
    """Seconds since 1970 (UTC) of a time column, computed by the database."""
    if connection.dialect.name == "postgresql":
        return sa.cast(sa.extract("epoch", column), sa.Float)
    # SQLite keeps the UTC time as text; julianday() reads it.
    return (sa.func.julianday(column) - UNIX_EPOCH_JULIAN_DAY) * SECONDS_PER_DAY


def interval_means(
    at_s: FloatArray, value: FloatArray, *, edges_s: FloatArray, now_s: float, hold_s: float
) -> FloatArray:
    """Per interval ``[edges_s[k], edges_s[k+1])`` the time-weighted mean of a step series
    (``value[i]`` from ``at_s[i]`` to the next ``at_s``, at most ``hold_s``, never past
    ``now_s``); NaN where nothing covers the interval. Rows with a NaN value cover nothing.

    >>> means = interval_means(
    ...     np.array([0.0, 600.0]), np.array([4.0, 10.0]),
    ...     edges_s=np.array([0.0, 900.0, 1800.0, 2700.0]), now_s=1e9, hold_s=900.0,
    ... )
    >>> means.round(3).tolist()
    [6.0, 10.0, nan]
    """
    if at_s.size == 0:
        return np.full(edges_s.size - 1, np.nan)
    following = np.append(at_s[1:], np.inf)
    stop = np.minimum(np.minimum(following, at_s + hold_s), now_s)
    length = np.maximum(stop - at_s, 0.0)
    known = ~np.isnan(value)
    length = np.where(known, length, 0.0)
    held = np.where(known, value, 0.0)
    integral = _integral_at(at_s, length, held, edges_s)
    covered = _integral_at(at_s, length, np.ones_like(held), edges_s)
    amount = np.diff(integral)
    time_s = np.diff(covered)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(time_s > 1e-9, amount / time_s, np.nan)


def _integral_at(
    start_s: FloatArray, length_s: FloatArray, value: FloatArray, at_s: FloatArray
) -> FloatArray:
    """The integral of the segments (``value`` over ``[start, start + length)``, sorted and
    not overlapping) from the first up to each of ``at_s``."""
    before = np.concatenate(([0.0], np.cumsum(value * length_s)))
    segment = np.searchsorted(start_s, at_s, side="right") - 1
    inside = segment >= 0
    index = np.where(inside, segment, 0)
    partial = value[index] * np.clip(at_s - start_s[index], 0.0, length_s[index])
    return np.where(inside, before[index] + partial, 0.0)
