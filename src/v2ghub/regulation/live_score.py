"""The live aggregator's regulation scored per committed hour, from what was measured.

The store keeps what regulation needs (:mod:`v2ghub.store.regulation`): commitments
(``capacity_kw`` each way from ``starts_at`` to ``ends_at``), the signal as received
(``-1..1``, + = more charging, in force from its ``at`` until the next sample), and per
EVSE its share (baseline and kW per unit of signal, in force from ``from_at`` until that
EVSE's next share row of the same commitment or the commitment's end). The chargers send
signed power readings (``power_kw``, + charging) every few seconds. This module turns
them into the twin's hourly score (:func:`v2ghub.regulation.scoring.score_hours`).

Rules
-----
- **Committed hours.** A commitment is cut into clock hours (of the time zone asked for;
  for the pilot cities' whole-hour offsets, UTC hours are the same). An hour counts only
  when the commitment holds through all of it: from ``starts_at`` to ``ends_at``, or to
  ``cancelled_at`` once cancelled; a part-hour is neither scored nor paid. Of commitments
  that overlap an hour, the one recorded last takes it (as the control loop follows
  that one); the others lose it.
- **The grid.** Within an hour the score is sampled at ``t_k = hour_start + k * step``,
  ``k = 0 .. 3600 / step - 1``; ``step`` is the twin's regulation signal step
  (:data:`v2ghub.defaults.REGULATION_SIGNAL_STEP_S`, 2 s) unless given.
- **Signal.** ``s_k`` is the last signal sample at or before ``t_k``; 0 (nothing asked)
  before the first one.
- **Who follows.** EVSE ``i`` follows at ``t_k`` when one of its share rows is in force
  then: ``from_at <= t_k < until``.
- **Measured power.** ``P_i(t_k)`` is the last power reading of the share's transaction
  at or before ``t_k`` (of readings at one instant, the last), held for at most
  ``max_reading_age_s`` (default :data:`MAX_READING_AGE_S`, five 2-s readings).
- **Silent chargers.** An EVSE with no reading that recent counts as its baseline: it
  did nothing of what it was asked (``P_i - B_i = 0``), so the fleet's response lacks
  its share of the signal and the score falls by as much; it never counts as following.
  An hour in which no following EVSE reported at all (or none followed) scores 0 in
  every part: nothing measured, nothing credited.
- **Response.**

  .. math:: r_k = \\frac{\\sum_{i \\text{ follows at } t_k} (P_i(t_k) - B_i)}{C}

  with ``B_i`` the baseline (kW) of the share in force and ``C`` the committed capacity
  (kW); then ``score_hours(s, r, capacity_mw=C / 1000, step_s=step)`` gives correlation,
  delay, precision, composite and mileage (MW) as the twin's hours have them.
- **Energies.** Expected: ``sum_k sum_i E_i(t_k) * step_h`` with ``E_i = B_i + s_k *
  raise_i`` for ``s_k >= 0`` and ``B_i + s_k * lower_i`` otherwise (what the EVSEs were
  told); measured: ``sum_k sum_i P_i(t_k) * step_h`` (silent ones at their baseline).
  Both are sampled on the grid, kWh; the meter registers are what bills energy.

Everything per hour is vectorised over (share row, grid sample) pairs; Python loops run
over commitments and hours, and over records once at the edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from v2ghub.defaults import REGULATION_SIGNAL_STEP_S
from v2ghub.regulation.scoring import MAX_DELAY_S, Score, mileage, score_hours
from v2ghub.units import KW_PER_MW, MICROSECONDS_PER_SECOND, SECONDS_PER_HOUR

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MAX_READING_AGE_S = 10.0
"""How long a power reading stands for an EVSE's power: five readings of the 2-s cadence
chargers report at during regulation, so a batch or two late is not yet silence."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_HOUR = timedelta(hours=1)
_HOUR_US = SECONDS_PER_HOUR * MICROSECONDS_PER_SECOND


# --- what is read of the store ------------------------------------------------------------


class CommitmentRecord(Protocol):
    """A stored commitment (:class:`v2ghub.store.regulation.Commitment`)."""

    @property
    def commitment_id(self) -> int: ...
    @property
    def starts_at(self) -> datetime: ...
    @property
    def ends_at(self) -> datetime: ...
    @property
    def capacity_kw(self) -> float: ...
    @property
    def recorded_at(self) -> datetime: ...
    @property
    def cancelled_at(self) -> datetime | None: ...


class SignalRecord(Protocol):
    """A stored signal sample (:class:`v2ghub.store.regulation.SignalSample`)."""

    @property
    def at(self) -> datetime: ...
    @property
    def signal(self) -> float: ...


class ShareRecord(Protocol):
    """A stored share row (:class:`v2ghub.store.regulation.Share`)."""

    @property
    def commitment_id(self) -> int | None: ...
    @property
    def station_id(self) -> str: ...
    @property
    def evse_id(self) -> int: ...
    @property
    def transaction_id(self) -> str: ...
    @property
    def from_at(self) -> datetime: ...
    @property
    def baseline_kw(self) -> float: ...
    @property
    def raise_share_kw(self) -> float: ...
    @property
    def lower_share_kw(self) -> float: ...


class PowerColumns(Protocol):
    """Power readings as columns in pair and time order
    (:class:`v2ghub.store.regulation_readings.PowerReadings`)."""

    @property
    def pair(self) -> IntArray: ...
    @property
    def measured_at_us(self) -> IntArray: ...
    @property
    def power_kw(self) -> FloatArray: ...


class RegulationSource(Protocol):
    """The read-only view of the live store regulation scoring needs (``Store`` has it)."""

    def commitments(
        self, *, overlapping: tuple[datetime, datetime] | None = None
    ) -> Sequence[CommitmentRecord]: ...
    def signals(self, *, start: datetime, end: datetime) -> Sequence[SignalRecord]: ...
    def shares(self, *, commitment_id: int | None = None) -> Sequence[ShareRecord]: ...
    def power_readings(
        self, pairs: Sequence[tuple[str, str]], *, start: datetime, end: datetime
    ) -> PowerColumns: ...


# --- the pure part --------------------------------------------------------------------------


@dataclass(frozen=True)
class ShareColumns:
    """Share rows as columns; times in microseconds since 1970-01-01 UTC.

    Attributes
    ----------
    pair
        Index of the row's ``(station_id, transaction_id)`` among the hour's pairs.
    evse
        Index of the row's EVSE (``(station_id, evse_id)``).
    from_us, until_us
        The row is in force from ``from_us`` until (not including) ``until_us``.
    baseline_kw, raise_share_kw, lower_share_kw
        The EVSE's baseline and its kW per unit of signal up and down.
    """

    pair: IntArray
    evse: IntArray
    from_us: IntArray
    until_us: IntArray
    baseline_kw: FloatArray
    raise_share_kw: FloatArray
    lower_share_kw: FloatArray


@dataclass(frozen=True)
class HourResponse:
    """An hour's signal and the fleet's response on the grid (module docstring).

    Attributes
    ----------
    signal, response
        ``s_k`` and ``r_k``, fractions of the capacity, one per grid sample.
    expected_energy_kwh, measured_energy_kwh
        What the following EVSEs were told and what they did, sampled on the grid, kWh.
    evse_samples
        (EVSE, grid sample) pairs in which an EVSE followed.
    reporting_share
        The share of those with a reading recent enough (0 when there are none).
    evse_count
        EVSEs that followed at some grid sample.
    served_us
        Per pair, how long it had a share in force within the hour, microseconds.
    """

    signal: FloatArray
    response: FloatArray
    expected_energy_kwh: float
    measured_energy_kwh: float
    evse_samples: int
    reporting_share: float
    evse_count: int
    served_us: IntArray


def hour_response(
    *,
    start_us: int,
    step_us: int,
    signal_at_us: IntArray,
    signal: FloatArray,
    shares: ShareColumns,
    readings: PowerColumns,
    pairs: int,
    capacity_kw: float,
    max_reading_age_us: int,
) -> HourResponse:
    """The signal and the response of one hour from ``start_us`` (module docstring).

    ``signal_at_us`` are the signal samples' times in increasing order (``signal`` their
    values); ``readings`` are power readings of the ``pairs`` pairs the shares name.
    """
    if not (math.isfinite(capacity_kw) and capacity_kw > 0):
        raise ValueError(f"capacity_kw must be > 0 kW, got {capacity_kw}")
    if step_us <= 0 or _HOUR_US % step_us or _HOUR_US // step_us < 2:
        raise ValueError(f"an hour must be a whole number (>= 2) of steps, got {step_us} us")
    if max_reading_age_us < 0:
        raise ValueError(f"max_reading_age_us must be >= 0, got {max_reading_age_us}")
    n = _HOUR_US // step_us
    t_us = start_us + step_us * np.arange(n, dtype=np.int64)
    values = np.append(0.0, np.asarray(signal, dtype=np.float64))  # 0 before the first
    s = values[np.searchsorted(signal_at_us, t_us, side="right")]

    # (share row, grid sample) pairs in force: from_us <= t_k < until_us.
    first_k = np.searchsorted(t_us, shares.from_us, side="left")
    end_k = np.searchsorted(t_us, shares.until_us, side="left")
    count = np.maximum(end_k - first_k, 0)
    row = np.repeat(np.arange(count.size), count)
    k = first_k[row] + np.arange(row.size) - np.repeat(np.cumsum(count) - count, count)
    pair = shares.pair[row]
    baseline = shares.baseline_kw[row]

    held = _held_power(
        readings, pair=pair, at_us=t_us[k], pairs=pairs, max_age_us=max_reading_age_us
    )
    fresh = ~np.isnan(held)
    measured = np.where(fresh, held, baseline)
    response = np.bincount(k, weights=measured - baseline, minlength=n) / capacity_kw
    asked = s[k]
    told = baseline + asked * np.where(
        asked >= 0, shares.raise_share_kw[row], shares.lower_share_kw[row]
    )
    step_h = step_us / _HOUR_US
    end_us = start_us + _HOUR_US
    overlap = np.minimum(shares.until_us, end_us) - np.maximum(shares.from_us, start_us)
    served = np.bincount(shares.pair, weights=np.maximum(overlap, 0), minlength=pairs)
    return HourResponse(
        signal=s,
        response=np.asarray(response, dtype=np.float64),
        expected_energy_kwh=float(told.sum() * step_h),
        measured_energy_kwh=float(measured.sum() * step_h),
        evse_samples=int(row.size),
        reporting_share=float(fresh.mean()) if row.size else 0.0,
        evse_count=int(np.unique(shares.evse[count > 0]).size),
        served_us=np.rint(served).astype(np.int64),
    )


def _held_power(
    readings: PowerColumns, *, pair: IntArray, at_us: IntArray, pairs: int, max_age_us: int
) -> FloatArray:
    """Each ``(pair, at_us)``'s last reading at or before ``at_us`` no older than
    ``max_age_us``; NaN where there is none."""
    out = np.full(pair.size, np.nan)
    if not readings.pair.size or not pair.size:
        return out
    r_pair = np.asarray(readings.pair, dtype=np.int64)
    r_at = np.asarray(readings.measured_at_us, dtype=np.int64)
    r_kw = np.asarray(readings.power_kw, dtype=np.float64)
    origin = min(int(r_at.min()), int(at_us.min()))
    span = max(int(r_at.max()), int(at_us.max())) - origin + 1
    shift = span.bit_length()
    if (pairs + 1) << shift >= 2**62:
        raise ValueError("too many transactions over too long a window to look readings up")
    # One sorted key per reading: pair in the high bits, time in the low ones (stable, so
    # readings at one instant keep their order and the last of them is found).
    order = np.lexsort((r_at, r_pair))
    key = (r_pair[order] << shift) + (r_at[order] - origin)
    wanted = (pair << shift) + (at_us - origin)
    index = np.searchsorted(key, wanted, side="right") - 1
    safe = np.maximum(index, 0)
    ok = (index >= 0) & (r_pair[order][safe] == pair) & (at_us - r_at[order][safe] <= max_age_us)
    out[ok] = r_kw[order][safe[ok]]
    return out


def score_response(hour: HourResponse, *, capacity_kw: float, step_s: float) -> Score:
    """The hour's :class:`Score`; all zero (delay at its longest) when nothing was measured
    from a following EVSE (module docstring), the signal's mileage either way."""
    capacity_mw = capacity_kw / KW_PER_MW
    if hour.evse_samples == 0 or hour.reporting_share == 0:
        return Score(
            correlation=0.0,
            delay=0.0,
            precision=0.0,
            composite=0.0,
            delay_s=MAX_DELAY_S,
            mileage_mw=mileage(hour.signal, capacity_mw=capacity_mw),
        )
    return score_hours(hour.signal, hour.response, capacity_mw=capacity_mw, step_s=step_s)[0]


# --- the store's records to hours -----------------------------------------------------------


@dataclass(frozen=True)
class ServedSession:
    """A transaction that followed in an hour, and for how long (microseconds)."""

    station_id: str
    transaction_id: str
    served_us: int


@dataclass(frozen=True)
class LiveRegulationHour:
    """One committed hour of the live aggregator, scored (module docstring).

    Attributes
    ----------
    commitment_id
        The commitment the hour belongs to.
    start
        The hour's start, in the time zone asked for.
    capacity_kw
        The symmetric capacity committed, kW.
    correlation, delay, precision, composite, delay_s, mileage_mw
        The hour's :class:`~v2ghub.regulation.scoring.Score`.
    expected_energy_kwh, measured_energy_kwh
        What the following EVSEs were told and what they did, sampled on the grid, kWh.
    evse_count
        EVSEs that followed at some grid sample.
    samples
        Grid samples in the hour (``3600 / step_s``).
    reporting_share
        Of the (EVSE, sample) pairs in which an EVSE followed, the share with a recent
        reading (the rest counted as their baseline).
    served
        The transactions that had a share in force in the hour, in first-share order.
    """

    commitment_id: int
    start: datetime
    capacity_kw: float
    correlation: float
    delay: float
    precision: float
    composite: float
    delay_s: float
    mileage_mw: float
    expected_energy_kwh: float
    measured_energy_kwh: float
    evse_count: int
    samples: int
    reporting_share: float
    served: tuple[ServedSession, ...]


def committed_hours(
    commitments: Sequence[CommitmentRecord], *, start: datetime, end: datetime, timezone: str
) -> list[tuple[CommitmentRecord, datetime]]:
    """The clock hours of ``timezone`` within ``[start, end)`` that each commitment holds
    through (module docstring), in time order, each with its commitment."""
    zone = ZoneInfo(timezone)
    ranked = sorted(commitments, key=lambda c: (c.recorded_at, c.commitment_id))
    spans = [(c.starts_at, _effective_end(c)) for c in ranked]
    hours: list[tuple[CommitmentRecord, datetime]] = []
    for rank, (commitment, (begins, stops)) in enumerate(zip(ranked, spans, strict=True)):
        hour = _next_local_hour(max(begins, start), zone)
        while hour + _HOUR <= min(stops, end):  # hours, never samples
            later = spans[rank + 1 :]
            if not any(b < hour + _HOUR and s > hour for b, s in later):
                hours.append((commitment, hour.astimezone(zone)))
            hour += _HOUR
    return sorted(hours, key=lambda item: (item[1], item[0].commitment_id))


def live_regulation_hours(
    source: RegulationSource,
    start: datetime,
    end: datetime,
    *,
    timezone: str = "UTC",
    step_s: float = REGULATION_SIGNAL_STEP_S,
    max_reading_age_s: float = MAX_READING_AGE_S,
) -> list[LiveRegulationHour]:
    """Every committed hour within ``[start, end)``, scored from the store (module
    docstring); hours are clock hours of ``timezone``.

    Raises
    ------
    ValueError
        ``start`` or ``end`` is not timezone-aware, the step does not divide an hour, or
        ``max_reading_age_s`` is negative.
    """
    for name, moment in (("start", start), ("end", end)):
        if moment.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware, got {moment.isoformat()}")
    step_us = round(step_s * MICROSECONDS_PER_SECOND)
    if not (math.isfinite(step_s) and step_s > 0) or abs(step_us - step_s * 1e6) > 1e-3:
        raise ValueError(f"step_s must be a positive number of microseconds, got {step_s}")
    if not (math.isfinite(max_reading_age_s) and max_reading_age_s >= 0):
        raise ValueError(f"max_reading_age_s must be >= 0 s, got {max_reading_age_s}")
    age = timedelta(seconds=max_reading_age_s)
    hours = committed_hours(
        source.commitments(overlapping=(start, end)), start=start, end=end, timezone=timezone
    )
    shares_of: dict[int, Sequence[ShareRecord]] = {}
    out = []
    for commitment, hour in hours:  # hours, never samples
        if commitment.commitment_id not in shares_of:
            shares_of[commitment.commitment_id] = source.shares(
                commitment_id=commitment.commitment_id
            )
        columns, keys = share_columns(
            shares_of[commitment.commitment_id], hour=hour, commitment=commitment
        )
        signals = source.signals(start=hour, end=hour + _HOUR)
        readings = source.power_readings(keys, start=hour - age, end=hour + _HOUR)
        response = hour_response(
            start_us=_us(hour),
            step_us=step_us,
            signal_at_us=np.array([_us(s.at) for s in signals], dtype=np.int64),
            signal=np.array([s.signal for s in signals], dtype=np.float64),
            shares=columns,
            readings=readings,
            pairs=len(keys),
            capacity_kw=commitment.capacity_kw,
            max_reading_age_us=round(max_reading_age_s * MICROSECONDS_PER_SECOND),
        )
        score = score_response(response, capacity_kw=commitment.capacity_kw, step_s=step_s)
        out.append(
            LiveRegulationHour(
                commitment_id=commitment.commitment_id,
                start=hour,
                capacity_kw=commitment.capacity_kw,
                correlation=score.correlation,
                delay=score.delay,
                precision=score.precision,
                composite=score.composite,
                delay_s=score.delay_s,
                mileage_mw=score.mileage_mw,
                expected_energy_kwh=response.expected_energy_kwh,
                measured_energy_kwh=response.measured_energy_kwh,
                evse_count=response.evse_count,
                samples=response.signal.size,
                reporting_share=response.reporting_share,
                served=tuple(
                    ServedSession(station, transaction, int(served))
                    for (station, transaction), served in zip(
                        keys, response.served_us.tolist(), strict=True
                    )
                    if served > 0
                ),
            )
        )
    return out


def share_columns(
    shares: Sequence[ShareRecord], *, hour: datetime, commitment: CommitmentRecord
) -> tuple[ShareColumns, list[tuple[str, str]]]:
    """The share rows in force at some time of the hour, as columns, and the pairs they
    name (in first-row order). A row holds until its EVSE's next row or the end."""
    ordered = sorted(shares, key=lambda share: share.from_at)  # stable: the store's id order
    stops = _us(_effective_end(commitment))
    evse_of: dict[tuple[str, int], int] = {}
    evse = np.array(
        [evse_of.setdefault((s.station_id, s.evse_id), len(evse_of)) for s in ordered],
        dtype=np.int64,
    )
    from_us = np.array([_us(s.from_at) for s in ordered], dtype=np.int64)
    until_us = np.full(from_us.size, stops, dtype=np.int64)
    by_evse = np.lexsort((np.arange(evse.size), evse))  # each EVSE's rows in time order
    same = evse[by_evse][1:] == evse[by_evse][:-1]
    until_us[by_evse[:-1][same]] = from_us[by_evse[1:][same]]
    until_us = np.minimum(until_us, stops)
    begins, ends = _us(hour), _us(hour) + _HOUR_US
    chosen = np.flatnonzero((from_us < ends) & (until_us > begins) & (until_us > from_us))
    pair_of: dict[tuple[str, str], int] = {}
    pair = np.array(
        [
            pair_of.setdefault((ordered[i].station_id, ordered[i].transaction_id), len(pair_of))
            for i in chosen.tolist()
        ],
        dtype=np.int64,
    )
    columns = ShareColumns(
        pair=pair,
        evse=evse[chosen],
        from_us=from_us[chosen],
        until_us=until_us[chosen],
        baseline_kw=np.array([ordered[i].baseline_kw for i in chosen.tolist()], dtype=np.float64),
        raise_share_kw=np.array(
            [ordered[i].raise_share_kw for i in chosen.tolist()], dtype=np.float64
        ),
        lower_share_kw=np.array(
            [ordered[i].lower_share_kw for i in chosen.tolist()], dtype=np.float64
        ),
    )
    return columns, list(pair_of)


def _effective_end(commitment: CommitmentRecord) -> datetime:
    """When a commitment stops holding: its end, or its cancellation if earlier."""
    cancelled = commitment.cancelled_at
    return commitment.ends_at if cancelled is None else min(commitment.ends_at, cancelled)


def _next_local_hour(moment: datetime, zone: ZoneInfo) -> datetime:
    """The first start of a clock hour of ``zone`` at or after ``moment`` (UTC)."""
    local = moment.astimezone(zone)
    floor = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    return floor if floor >= moment else floor + _HOUR


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


__all__ = [
    "MAX_READING_AGE_S",
    "CommitmentRecord",
    "HourResponse",
    "LiveRegulationHour",
    "PowerColumns",
    "RegulationSource",
    "ServedSession",
    "ShareColumns",
    "ShareRecord",
    "SignalRecord",
    "committed_hours",
    "hour_response",
    "live_regulation_hours",
    "score_response",
]
