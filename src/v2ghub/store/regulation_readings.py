"""Power readings of some transactions, as columns: what regulation scoring measures.

Chargers that follow a regulation signal send a signed power reading (``power_kw`` of
``meter_values``, + charging) every few seconds. Scoring an hour needs the readings of
the EVSEs that had a share in it (:mod:`v2ghub.regulation.live_score`), thousands of rows
per EVSE, so they come back as numpy columns from one query, not one object per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from v2ghub.store import schema
from v2ghub.store.checks import check_aware

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_PAIRS_PER_QUERY = 5_000
"""Pairs per ``IN`` list (each pair is two bound parameters; databases cap them): more
pairs than this are read by a few statements in one read transaction."""


@dataclass(frozen=True)
class PowerReadings:
    """Power readings in ``(pair, measured_at, seq_no)`` order.

    Attributes
    ----------
    pair
        Index into the ``(station_id, transaction_id)`` pairs asked for.
    measured_at_us
        When each was measured, microseconds since 1970-01-01 UTC.
    power_kw
        The power, kW (+ charging, - discharging).
    """

    pair: npt.NDArray[np.int64]
    measured_at_us: npt.NDArray[np.int64]
    power_kw: npt.NDArray[np.float64]


def power_readings(
    connection: Connection,
    pairs: Sequence[tuple[str, str]],
    *,
    start: datetime,
    end: datetime,
) -> PowerReadings:
    """The readings with a power of the transactions ``pairs`` measured in ``[start, end)``.

    Readings without a power (registers only) are left out. Of several readings at one
    instant all are returned, in ``seq_no`` order (a MeterValues reading, ``seq_no`` -1,
    before a TransactionEvent's): whoever holds the last reading at an instant takes the
    last of them.
    """
    check_aware("start", start)
    check_aware("end", end)
    keys = list(dict.fromkeys(pairs))
    index = {key: position for position, key in enumerate(keys)}
    values = schema.meter_values.c
    pair: list[int] = []
    at_us: list[int] = []
    power: list[float] = []
    for first in range(0, len(keys), _PAIRS_PER_QUERY):
        query = (
            sa.select(
                values.station_id,
                values.transaction_id,
                values.measured_at,
                values.power_kw,
            )
            .where(
                sa.tuple_(values.station_id, values.transaction_id).in_(
                    keys[first : first + _PAIRS_PER_QUERY]
                ),
                values.measured_at >= start,
                values.measured_at < end,
                values.power_kw.is_not(None),
            )
            .order_by(values.station_id, values.transaction_id, values.measured_at, values.seq_no)
        )
        for row in connection.execute(query):  # the edge: rows to columns, once
            pair.append(index[(row.station_id, row.transaction_id)])
            at_us.append((row.measured_at - _EPOCH) // _MICROSECOND)
            power.append(float(row.power_kw))
    pair_array = np.array(pair, dtype=np.int64)
    at_array = np.array(at_us, dtype=np.int64)
    # The database orders by station and transaction text; the caller's pair order and
    # time within a pair are what the scoring needs (stable: seq_no order is kept).
    order = np.lexsort((at_array, pair_array))
    return PowerReadings(
        pair=pair_array[order],
        measured_at_us=at_array[order],
        power_kw=np.array(power, dtype=np.float64)[order],
    )


__all__ = ["PowerReadings", "power_readings"]
