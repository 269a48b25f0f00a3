"""What ``/api/v1/grid/regulation`` reads: the commitment in force, the control loop's last
assignment and the broadcaster's counts (from memory), the last day's committed hours
scored (:func:`v2ghub.regulation.live_score.live_regulation_hours`) and the signal against
the fleet's measured response on the score's grid, for a plot.

Scoring an hour reads its shares, its signal and every power reading of its followers (at
2-s readings, 1,800 per EVSE): a dashboard that asks every few seconds must not read them
again. An hour that ended more than :data:`SETTLED_AFTER` ago no longer changes (its
readings are in), so its score is kept in the context and read once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from v2ghub.api.context import ApiContext, RegulationLive
from v2ghub.api.regulation_models import (
    CommitmentOut,
    RegulationHourOut,
    RegulationNow,
    RegulationResponse,
    ResponseSegment,
)
from v2ghub.defaults import REGULATION_SIGNAL_STEP_S
from v2ghub.regulation.live_score import (
    MAX_READING_AGE_S,
    HourResponse,
    LiveRegulationHour,
    committed_hours,
    hour_response,
    live_regulation_hours,
    share_columns,
)
from v2ghub.store.regulation import Commitment, Share
from v2ghub.units import MICROSECONDS_PER_SECOND

HOUR = timedelta(hours=1)
SCORED_WINDOW = timedelta(hours=24)
"""The committed hours ``GET /api/v1/grid/regulation`` scores: the last day's."""
SETTLED_AFTER = timedelta(seconds=2 * MAX_READING_AGE_S + 60)
"""How long after its end an hour's score is kept as final (late batches of readings)."""
MAX_POINTS = 2000
"""At most this many samples per series in a response plot."""
MAX_WINDOW = timedelta(hours=24)
"""The longest window a response plot may ask for."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def commitment_out(api: ApiContext, commitment: Commitment, now: datetime) -> CommitmentOut:
    return CommitmentOut(
        commitment_id=commitment.commitment_id,
        starts_at=api.local(commitment.starts_at),
        ends_at=api.local(commitment.ends_at),
        capacity_kw=commitment.capacity_kw,
        source=commitment.source,
        external_id=commitment.external_id,
        recorded_at=api.local(commitment.recorded_at),
        cancelled_at=None
        if commitment.cancelled_at is None
        else api.local(commitment.cancelled_at),
        cancelled_by=commitment.cancelled_by,
        in_force=commitment.in_force(now),
    )


def signal_in_force(api: ApiContext, now: datetime) -> tuple[float | None, datetime | None]:
    """The recorded signal at ``now`` (the last sample at or before it) and its time."""
    samples = api.store.signals(start=now + timedelta(microseconds=1), end=now)
    if not samples:
        return None, None
    return samples[-1].signal, api.local(samples[-1].at)


# --- the scores ---------------------------------------------------------------------------


def scored_hours(api: ApiContext, now: datetime) -> list[LiveRegulationHour]:
    """The whole committed hours of the last :data:`SCORED_WINDOW`, scored; those settled
    are scored once and kept."""
    start = now - SCORED_WINDOW
    zone = api.timezone.key
    hours = committed_hours(
        api.store.commitments(overlapping=(start, now)), start=start, end=now, timezone=zone
    )
    kept = api.regulation_hours
    out = []
    for commitment, hour in hours:  # hours, never samples
        key = (commitment.commitment_id, hour.astimezone(UTC))
        found = kept.get(key)
        if found is None:
            scored = live_regulation_hours(api.store, hour, hour + HOUR, timezone=zone)
            found = next((h for h in scored if h.commitment_id == commitment.commitment_id), None)
            if found is None:
                continue
            if hour + HOUR + SETTLED_AFTER <= now:
                kept[key] = found
        out.append(found)
    # Requests run on several threads: list() copies the keys at once, pop() may miss.
    for key in [k for k in list(kept) if k[1] < start - HOUR]:  # forget the days before
        kept.pop(key, None)
    return out


def hour_out(api: ApiContext, hour: LiveRegulationHour) -> RegulationHourOut:
    return RegulationHourOut(
        commitment_id=hour.commitment_id,
        start=api.local(hour.start),
        capacity_kw=hour.capacity_kw,
        correlation=hour.correlation,
        delay=hour.delay,
        precision=hour.precision,
        composite=hour.composite,
        delay_s=hour.delay_s,
        mileage_mw=hour.mileage_mw,
        expected_energy_kwh=hour.expected_energy_kwh,
        measured_energy_kwh=hour.measured_energy_kwh,
        evse_count=hour.evse_count,
        reporting_share=hour.reporting_share,
    )


def regulation_now(api: ApiContext) -> RegulationNow:
    """The body of ``GET /api/v1/grid/regulation`` (a worker thread's reads)."""
    now = api.now()
    commitment = api.store.commitment_in_force(now)
    live = None if api.control is None else api.control.regulation()
    figures = live or RegulationLive()
    hours = scored_hours(api, now)
    sent_at = figures.last_signal_at
    return RegulationNow(
        at=api.local(now),
        commitment=None if commitment is None else commitment_out(api, commitment, now),
        mode=figures.mode,
        capacity_kw=figures.capacity_kw,
        participants=figures.participants,
        following_stations=figures.following_stations,
        raise_kw=figures.raise_kw,
        lower_kw=figures.lower_kw,
        left_out_kw=figures.left_out_kw,
        last_signal=figures.last_signal,
        last_signal_at=None if sent_at is None else api.local(sent_at),
        broadcasts=figures.broadcasts,
        messages=figures.messages,
        answers=dict(figures.answers),
        hours=[hour_out(api, hour) for hour in hours],
        live=live is not None,
    )


# --- the response plot ----------------------------------------------------------------------


def default_window(api: ApiContext, now: datetime) -> tuple[datetime, datetime]:
    """The current committed clock hour up to now or, with none in force, the last one
    of the past day; ``(now, now)`` when there is none."""
    commitments = api.store.commitments(overlapping=(now - SCORED_WINDOW, now))
    ends = [min(_stops(c), now) for c in commitments if _stops(c) > c.starts_at]
    ends = [end for end in ends if end > now - SCORED_WINDOW]
    if not ends:
        return now, now
    end = max(ends)
    start = _floor_hour(end - timedelta(microseconds=1))
    return start, end


def response_series(
    api: ApiContext, start: datetime, end: datetime, *, step_s: float = REGULATION_SIGNAL_STEP_S
) -> RegulationResponse:
    """The signal and the measured response within ``[start, min(end, now))`` on the
    score's grid, one segment per committed clock hour (or its part), every ``stride``-th
    sample so that at most :data:`MAX_POINTS` are drawn."""
    now = api.now()
    stop = min(end, now)
    commitments = api.store.commitments(overlapping=(start, stop)) if stop > start else []
    ranked = sorted(commitments, key=lambda c: (c.recorded_at, c.commitment_id))
    step_us = round(step_s * MICROSECONDS_PER_SECOND)
    shares_of: dict[int, list[Share]] = {}
    pieces: list[tuple[Commitment, datetime, HourResponse, int, int]] = []
    hour = _floor_hour(start)
    while hour < stop:  # hours, never samples
        # Of the commitments holding in the hour, the one recorded last takes it (as the
        # control loop follows that one and the score counts it).
        holding = [c for c in ranked if c.starts_at < hour + HOUR and _stops(c) > hour]
        if holding:
            commitment = holding[-1]
            if commitment.commitment_id not in shares_of:
                shares_of[commitment.commitment_id] = api.store.shares(
                    commitment_id=commitment.commitment_id
                )
            series = _hour(api, commitment, hour, shares_of[commitment.commitment_id], step_us)
            begins = max(start, commitment.starts_at, hour)
            ends = min(stop, _stops(commitment), hour + HOUR)
            first = math.ceil(_us(begins - hour) / step_us)
            last = math.ceil(_us(ends - hour) / step_us)  # exclusive
            if last > first:
                pieces.append((commitment, hour, series, first, last))
        hour += HOUR
    total = sum(last - first for *_, first, last in pieces)
    stride = max(1, math.ceil(total / MAX_POINTS))
    segments = []
    for commitment, hour, series, first, last in pieces:
        picked = slice(first, last, stride)
        segments.append(
            ResponseSegment(
                commitment_id=commitment.commitment_id,
                capacity_kw=commitment.capacity_kw,
                first_at=api.local(hour + timedelta(microseconds=first * step_us)),
                step_s=step_s * stride,
                signal=np.round(series.signal[picked], 4).tolist(),
                response=np.round(series.response[picked], 4).tolist(),
            )
        )
    return RegulationResponse(
        start=api.local(start), end=api.local(end), stride=stride, segments=segments
    )


def _hour(
    api: ApiContext, commitment: Commitment, hour: datetime, shares: Sequence[Share], step_us: int
) -> HourResponse:
    """One clock hour's signal and response, as :func:`live_regulation_hours` makes them."""
    columns, keys = share_columns(shares, hour=hour, commitment=commitment)
    signals = api.store.signals(start=hour, end=hour + HOUR)
    age = timedelta(seconds=MAX_READING_AGE_S)
    readings = api.store.power_readings(keys, start=hour - age, end=hour + HOUR)
    return hour_response(
        start_us=_us(hour - _EPOCH),
        step_us=step_us,
        signal_at_us=np.array([_us(s.at - _EPOCH) for s in signals], dtype=np.int64),
        signal=np.array([s.signal for s in signals], dtype=np.float64),
        shares=columns,
        readings=readings,
        pairs=len(keys),
        capacity_kw=commitment.capacity_kw,
        max_reading_age_us=round(MAX_READING_AGE_S * MICROSECONDS_PER_SECOND),
    )


def _stops(commitment: Commitment) -> datetime:
    """When a commitment stops holding: its end, or its cancellation if earlier."""
    cancelled = commitment.cancelled_at
    return commitment.ends_at if cancelled is None else min(commitment.ends_at, cancelled)


def _floor_hour(moment: datetime) -> datetime:
    """The start of the UTC clock hour of ``moment`` (the pilot cities' offsets are whole
    hours, so it is the city's clock hour too)."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _us(span: timedelta) -> int:
    return span // timedelta(microseconds=1)
