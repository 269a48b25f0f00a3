"""Live meter data: a charger's cumulative register readings to the rows settlement bills.

A transaction's meter readings (:class:`v2ghub.store.records.MeterSample`, from OCPP
TransactionEvent and MeterValues) carry two cumulative registers in integer Wh:
``Energy.Active.Import.Register`` (drawn from the grid) and
``Energy.Active.Export.Register`` (given back). :func:`live_meter_table` turns them into
the rows :func:`v2ghub.settlement.meter.meter_lines` settles (:data:`METER_COLUMNS`: one
row per session and price level with energy), so the live aggregator bills exactly as
the twin does.

Rules
-----
- **Readings.** A transaction is ``(station_id, transaction_id)``; its readings are taken
  in ``seq_no`` order. A reading repeated with the same ``seq_no`` (a replay) counts once;
  two different readings under one ``seq_no`` are refused.
- **Increments.** The energy of the interval between two consecutive readings is the
  registers' increment: ``import_wh = import_register[k] - import_register[k - 1]``, and
  likewise export. The first reading is the baseline, so a transaction's import is
  ``last register - first register`` however it is split. A register that goes backwards,
  or a reading measured before the one it follows, is refused with a ``ValueError`` naming
  station, transaction, ``seq_no`` and register.
- **Periods.** The city's TOU tariff is evaluated in its local time: the local hours
  between the first and the last reading are cut into segments of one (month, period
  kind), each a price level (the import and discharge prices of that month and kind). An
  interval's energy goes to the segment it lies in; an interval that crosses a segment
  boundary is split pro rata by time, in whole Wh, by cumulative rounding: with ``E`` Wh
  over ``D`` microseconds, the part up to the end of the ``j``-th piece is
  ``round_half_up(E * t_j / D)`` where ``t_j`` is the time up to that end, and each
  piece gets the difference. The pieces add up to ``E`` exactly and each is within 1 Wh of
  its exact share. Two readings at the same instant put their increment in the period of
  that instant.

Everything after reading the samples' fields is vectorised (numpy over readings and
pieces); the only Python loops run over the samples once at the edge and over the hours
the readings span.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from v2ghub.model.tariff import PeriodKind, Tariff
from v2ghub.settlement.meter import METER_COLUMNS
from v2ghub.store.records import MeterSample
from v2ghub.units import MICROSECONDS_PER_SECOND, SECONDS_PER_HOUR

IMPORT_REGISTER = "Energy.Active.Import.Register"
EXPORT_REGISTER = "Energy.Active.Export.Register"

IntArray = npt.NDArray[np.int64]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_HOUR_US = SECONDS_PER_HOUR * MICROSECONDS_PER_SECOND
_INT64_SAFE = 2**62


@dataclass(frozen=True)
class LiveSession:
    """What settlement needs to know of a transaction besides its readings.

    Attributes
    ----------
    session_id
        The id its ledger lines carry (the owner is ``owner:<session_id>``).
    site_id
        The site of the charger (the operator is ``operator:<site_id>``).
    charger_kind
        ``home``, ``workplace`` or ``public``: which default contract shares apply.
    """

    session_id: str
    site_id: str
    charger_kind: str


@dataclass(frozen=True)
class _Readings:
    """The samples as columns, sorted by transaction and ``seq_no``, replays dropped."""

    transaction: IntArray  # index into the transaction keys
    seq_no: IntArray
    at_us: IntArray
    registers_wh: IntArray  # shape (n, 2): import, export
    keys: list[tuple[str, str]]


def live_meter_table(
    samples: Sequence[MeterSample],
    *,
    sessions: Mapping[tuple[str, str], LiveSession],
    tariff: Tariff,
) -> pa.Table:
    """The meter rows (:data:`METER_COLUMNS`) of live register readings (module docstring).

    Parameters
    ----------
    samples
        Readings of any number of transactions, in any order.
    sessions
        Each transaction's session, by ``(station_id, transaction_id)``.
    tariff
        The city's TOU tariff (with its discharge price rule), evaluated in local time.

    Returns
    -------
    pyarrow.Table
        One row per session and price level with energy, by session (in the order of
        ``sessions``) and then by the level's first hour; energies in integer Wh, prices
        as exact decimal text (CNY/kWh).

    Raises
    ------
    ValueError
        A register went backwards, a reading was measured before the one it follows, a
        ``seq_no`` carries two different readings, a time is not timezone-aware, or a
        transaction has no session; the message names station, transaction and ``seq_no``.
    """
    readings = _readings(samples)
    known = [key in sessions for key in readings.keys]
    if not all(known):
        station, transaction = readings.keys[known.index(False)]
        raise ValueError(f"station {station} transaction {transaction}: no session given for it")
    same = readings.transaction[1:] == readings.transaction[:-1]
    previous = np.flatnonzero(same)  # interval k runs from reading k to reading k + 1
    start_us = readings.at_us[previous]
    end_us = readings.at_us[previous + 1]
    increment_wh = readings.registers_wh[previous + 1] - readings.registers_wh[previous]
    _refuse_going_back(readings, previous, end_us - start_us, increment_wh)

    if previous.size:
        first, last = int(start_us.min()), int(end_us.max())
    else:
        first = last = 0
    boundary_us, level, month, kind = _segments(tariff, first_us=first, last_us=last)
    piece_of, piece_segment, piece_wh = _split(start_us, end_us, increment_wh, boundary_us)
    piece_transaction = readings.transaction[previous][piece_of]
    # Sum per (transaction, level); a level is numbered by its first segment in time.
    n_levels = int(level.max()) + 1  # there is always a segment
    cell = piece_transaction * n_levels + level[piece_segment]
    cells, index = np.unique(cell, return_inverse=True)
    energy_wh = np.zeros((cells.size, 2), dtype=np.int64)
    np.add.at(energy_wh, index.reshape(-1), piece_wh)
    keep = (energy_wh != 0).any(axis=1)
    cells, energy_wh = cells[keep], energy_wh[keep]
    row_transaction, row_level = cells // n_levels, cells % n_levels

    order = {key: position for position, key in enumerate(sessions)}
    rank = np.array([order[key] for key in readings.keys], dtype=np.int64)
    rows = np.lexsort((row_level, rank[row_transaction]))
    row_transaction, row_level, energy_wh = row_transaction[rows], row_level[rows], energy_wh[rows]

    chosen = [sessions[key] for key in readings.keys]  # one per transaction, not per reading
    first_segment = np.unique(level, return_index=True)[1]
    level_kind = kind[first_segment]
    level_month = month[first_segment]
    kinds = [PeriodKind(int(k)) for k in level_kind.tolist()]
    months = level_month.tolist()
    period = np.array([k.name.lower() for k in kinds], dtype=object)
    import_price = np.array(
        [str(tariff.import_price(m, k)) for m, k in zip(months, kinds, strict=True)], dtype=object
    )
    export_price = np.array(
        [str(tariff.export_price(m, k)) for m, k in zip(months, kinds, strict=True)], dtype=object
    )
    session_id = np.array([s.session_id for s in chosen], dtype=object)
    site_id = np.array([s.site_id for s in chosen], dtype=object)
    charger_kind = np.array([s.charger_kind for s in chosen], dtype=object)
    columns = {
        "session_id": session_id[row_transaction],
        "site_id": site_id[row_transaction],
        "charger_kind": charger_kind[row_transaction],
        "period": period[row_level],
        "import_price_cny_per_kwh": import_price[row_level],
        "export_price_cny_per_kwh": export_price[row_level],
    }
    table = {name: pa.array(values, type=pa.string()) for name, values in columns.items()}
    table["import_wh"] = pa.array(energy_wh[:, 0], type=pa.int64())
    table["export_wh"] = pa.array(energy_wh[:, 1], type=pa.int64())
    return pa.table({name: table[name] for name in METER_COLUMNS})


def _readings(samples: Sequence[MeterSample]) -> _Readings:
    """The samples as sorted columns; replays (same ``seq_no``, same reading) dropped."""
    keys: dict[tuple[str, str], int] = {}
    transaction, seq_no, at_us, registers = [], [], [], []
    for sample in samples:  # the edge: objects to columns, once
        key = (sample.station_id, sample.transaction_id)
        if sample.measured_at.utcoffset() is None:
            raise ValueError(f"{_where(key, sample.seq_no)}: measured_at must be timezone-aware")
        transaction.append(keys.setdefault(key, len(keys)))
        seq_no.append(sample.seq_no)
        at_us.append((sample.measured_at - _EPOCH) // _MICROSECOND)
        registers.append((sample.import_register_wh, sample.export_register_wh))
    transaction_index = np.array(transaction, dtype=np.int64)
    seq = np.array(seq_no, dtype=np.int64)
    at = np.array(at_us, dtype=np.int64)
    wh = np.array(registers, dtype=np.int64).reshape(-1, 2)
    order = np.lexsort((seq, transaction_index))  # stable: a replay keeps its first copy
    transaction_index, seq, at, wh = transaction_index[order], seq[order], at[order], wh[order]
    names = list(keys)
    repeat = np.flatnonzero(
        (transaction_index[1:] == transaction_index[:-1]) & (seq[1:] == seq[:-1])
    )
    differs = (at[repeat + 1] != at[repeat]) | (wh[repeat + 1] != wh[repeat]).any(axis=1)
    if differs.any():
        k = int(repeat[np.argmax(differs)])
        raise ValueError(
            f"{_where(names[int(transaction_index[k])], int(seq[k]))}: two different "
            "readings under one seq_no"
        )
    keep = np.ones(seq.size, dtype=np.bool_)
    keep[repeat + 1] = False
    return _Readings(
        transaction=transaction_index[keep],
        seq_no=seq[keep],
        at_us=at[keep],
        registers_wh=wh[keep],
        keys=names,
    )


def _where(key: tuple[str, str], seq_no: int) -> str:
    return f"station {key[0]} transaction {key[1]} seq_no {seq_no}"


def _refuse_going_back(
    readings: _Readings, previous: IntArray, duration_us: IntArray, increment_wh: IntArray
) -> None:
    """The first interval (in transaction and ``seq_no`` order) whose time or a register
    goes backwards is refused, naming the later reading."""
    bad = (duration_us < 0) | (increment_wh < 0).any(axis=1)
    if not bad.any():
        return
    k = int(np.argmax(bad))
    before, after = int(previous[k]), int(previous[k]) + 1
    where = _where(readings.keys[int(readings.transaction[after])], int(readings.seq_no[after]))
    for column, register in ((0, IMPORT_REGISTER), (1, EXPORT_REGISTER)):
        if increment_wh[k, column] < 0:
            raise ValueError(
                f"{where}: {register} went backwards ({readings.registers_wh[after, column]} Wh "
                f"after {readings.registers_wh[before, column]} Wh)"
            )
    measured = [
        datetime.fromtimestamp(int(readings.at_us[i]) / MICROSECONDS_PER_SECOND, UTC)
        for i in (after, before)
    ]
    raise ValueError(
        f"{where}: measured_at went backwards ({measured[0].isoformat()} after "
        f"{measured[1].isoformat()})"
    )


def _segments(
    tariff: Tariff, *, first_us: int, last_us: int
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """The local hours from ``first_us`` to ``last_us`` merged into runs of one (month,
    period kind).

    Returns the segments' boundaries (``n + 1``, microseconds since the epoch; the first
    and last open out to the whole of time), and per segment its level (numbered in order
    of first appearance), local month and :class:`PeriodKind`.
    """
    zone = ZoneInfo(tariff.timezone)
    start = datetime.fromtimestamp(first_us // MICROSECONDS_PER_SECOND, UTC).astimezone(zone)
    hour = start.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    hours_us: list[int] = []
    keys: list[tuple[int, int]] = []
    while True:  # one iteration per local hour spanned, never per reading
        local = hour.astimezone(zone)
        key = (local.month, int(tariff.period_kinds[local.month - 1][local.hour]))
        if not keys or keys[-1] != key:
            hours_us.append((hour - _EPOCH) // _MICROSECOND)
            keys.append(key)
        hour += timedelta(hours=1)
        if (hour - _EPOCH) // _MICROSECOND > last_us:
            break
    boundary = np.array([*hours_us, last_us + 1], dtype=np.int64)
    boundary[0] = min(int(boundary[0]), first_us)
    numbered: dict[tuple[int, int], int] = {}
    level = np.array([numbered.setdefault(key, len(numbered)) for key in keys], dtype=np.int64)
    month = np.array([key[0] for key in keys], dtype=np.int64)
    kind = np.array([key[1] for key in keys], dtype=np.int64)
    return boundary, level, month, kind


def _split(
    start_us: IntArray, end_us: IntArray, energy_wh: IntArray, boundary_us: IntArray
) -> tuple[IntArray, IntArray, IntArray]:
    """Each interval's energy cut at the segment boundaries, pro rata by time, in whole Wh.

    Returns per piece: its interval, its segment and its ``(import, export)`` Wh.
    """
    n_segments = boundary_us.size - 1
    first = np.clip(np.searchsorted(boundary_us, start_us, side="right") - 1, 0, n_segments - 1)
    last = np.clip(np.searchsorted(boundary_us, end_us, side="left") - 1, 0, n_segments - 1)
    last = np.maximum(last, first)
    count = last - first + 1
    interval = np.repeat(np.arange(start_us.size), count)
    offset = np.arange(interval.size) - np.repeat(np.cumsum(count) - count, count)
    segment = first[interval] + offset
    piece_end = np.minimum(end_us[interval], boundary_us[segment + 1])
    duration = (end_us - start_us)[interval]
    elapsed = piece_end - start_us[interval]  # time from the interval's start to the piece's end
    total = energy_wh[interval]
    if total.size and int(total.max()) * max(int(duration.max()), 1) > _INT64_SAFE:
        raise ValueError("a meter interval's energy and duration are too large to split exactly")
    # Energy up to each piece's end, rounded half up (all >= 0); all of it at the last piece.
    safe = np.maximum(duration, 1)[:, None]
    done = np.where((duration > 0)[:, None], (total * elapsed[:, None] + safe // 2) // safe, total)
    before = np.zeros_like(done)
    later = interval[1:] == interval[:-1]
    before[1:][later] = done[:-1][later]
    return interval, segment, np.asarray(done - before, dtype=np.int64)


def registers_at(at_us: IntArray, registers_wh: IntArray, when_us: IntArray) -> IntArray:
    """Both registers at each of ``when_us``: interpolated between the readings around it
    (``r_k + round_half_up(E * t / D)``, ``E`` Wh over ``D`` microseconds from reading
    ``k`` at ``t`` microseconds after it), held before the first and after the last.

    ``at_us`` are a transaction's reading times in measuring order (microseconds since the
    epoch), ``registers_wh`` its ``(import, export)`` registers, shape ``(n, 2)``, never
    going down. At an instant with several readings, the last of them counts. This is the
    rule that cuts a transaction at midnight (:mod:`~v2ghub.settlement.live_settle`) and
    at a demand-response step (:mod:`~v2ghub.settlement.live_demand_response`).
    """
    k = np.clip(np.searchsorted(at_us, when_us, side="right") - 1, 0, at_us.size - 1)
    following = np.minimum(k + 1, at_us.size - 1)
    duration = at_us[following] - at_us[k]
    elapsed = np.clip(when_us - at_us[k], 0, duration)[:, None]
    increment = registers_wh[following] - registers_wh[k]
    if increment.size and int(increment.max()) * max(int(duration.max()), 1) > _INT64_SAFE:
        raise ValueError("a meter interval's energy and duration are too large to split exactly")
    safe = np.maximum(duration, 1)[:, None]
    share = (increment * elapsed + safe // 2) // safe
    return np.asarray(registers_wh[k] + share, dtype=np.int64)


__all__ = ["EXPORT_REGISTER", "IMPORT_REGISTER", "LiveSession", "live_meter_table", "registers_at"]
