"""Regulation in the store: commitments, the signal as received, what each EVSE was told to
follow, and the baselines demand response is measured against.

- A **commitment** (``regulation_commitments``) is a symmetric capacity (kW) the fleet
  follows the regulation signal with from ``starts_at`` to ``ends_at``; ``source`` says who
  committed it (``api:TOKEN``, ``file:NAME``, ``cli``). A cancelled one no longer holds.
- A **signal** row (``regulation_signals``) is the signal (-1..1, + = more charging, as a
  fraction of the committed capacity: :mod:`v2ghub.regulation.signals`) in force from
  ``at`` until the next row.
- A **share** row (``regulation_shares``) is what one EVSE was told from ``from_at``:
  its baseline (kW) and its kW per unit of signal each way, in ``CentralFrequency`` mode
  (following a commitment's signal) or ``LocalFrequency`` (droop on the local frequency,
  no commitment); it holds until that EVSE's next row or its commitment's end.
- A **baseline** row (``grid_event_baselines``) is a site's planned power for one step of a
  grid event, from the plan in force when the event arrived, without it.

Everything here is checked before it is written: a bad value raises ``ValueError`` naming
the field, and nothing is written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from v2ghub.store import schema
from v2ghub.store.checks import check_aware


class RegulationMode(StrEnum):
    """How an EVSE follows: OCPP 2.1's operation modes."""

    CENTRAL_FREQUENCY = "CentralFrequency"
    LOCAL_FREQUENCY = "LocalFrequency"


@dataclass(frozen=True)
class Commitment:
    """A regulation commitment as stored: ``capacity_kw`` each way."""

    commitment_id: int
    starts_at: datetime
    ends_at: datetime
    capacity_kw: float
    source: str
    recorded_at: datetime
    external_id: str | None = None
    cancelled_at: datetime | None = None
    cancelled_by: str | None = None

    def in_force(self, now: datetime) -> bool:
        return self.cancelled_at is None and self.starts_at <= now < self.ends_at


@dataclass(frozen=True)
class SignalSample:
    """The regulation signal (-1..1) in force from ``at``."""

    at: datetime
    signal: float


@dataclass(frozen=True)
class Share:
    """What one EVSE follows from ``from_at``: ``power = baseline_kw + s * raise_share_kw``
    for a signal ``s >= 0``, ``baseline_kw + s * lower_share_kw`` for ``s < 0``."""

    mode: RegulationMode
    commitment_id: int | None
    station_id: str
    evse_id: int
    transaction_id: str
    from_at: datetime
    baseline_kw: float
    raise_share_kw: float
    lower_share_kw: float
    status: str


@dataclass(frozen=True)
class BaselineStep:
    """A site's planned power (kW) for one step of a grid event, without the event."""

    event_id: int
    site_id: str
    at: datetime
    baseline_kw: float
    step_s: int


def check_commitment(*, starts_at: datetime, ends_at: datetime, capacity_kw: float) -> None:
    """Refuse a commitment that cannot hold: ``ValueError`` naming the field."""
    check_aware("starts_at", starts_at)
    check_aware("ends_at", ends_at)
    if ends_at <= starts_at:
        raise ValueError(f"ends_at {ends_at.isoformat()} is not after starts_at")
    if not (math.isfinite(capacity_kw) and capacity_kw > 0):
        raise ValueError(f"capacity_kw must be > 0 kW, got {capacity_kw}")


def add_commitment(
    connection: Connection,
    *,
    starts_at: datetime,
    ends_at: datetime,
    capacity_kw: float,
    source: str,
    at: datetime,
    external_id: str | None = None,
) -> int:
    """Record a commitment; its id."""
    check_commitment(starts_at=starts_at, ends_at=ends_at, capacity_kw=capacity_kw)
    check_aware("at", at)
    result = connection.execute(
        schema.regulation_commitments.insert()
        .values(
            starts_at=starts_at,
            ends_at=ends_at,
            capacity_kw=capacity_kw,
            source=source,
            external_id=external_id,
            recorded_at=at,
        )
        .returning(schema.regulation_commitments.c.id)
    )
    return int(result.scalar_one())


def cancel_commitment(connection: Connection, commitment_id: int, *, by: str, at: datetime) -> bool:
    """Cancel a commitment not cancelled yet; whether one was."""
    check_aware("at", at)
    columns = schema.regulation_commitments.c
    result = connection.execute(
        schema.regulation_commitments.update()
        .where(columns.id == commitment_id, columns.cancelled_at.is_(None))
        .values(cancelled_at=at, cancelled_by=by)
    )
    return result.rowcount == 1


def commitments(
    connection: Connection,
    *,
    overlapping: tuple[datetime, datetime] | None = None,
    commitment_id: int | None = None,
    include_cancelled: bool = True,
) -> list[Commitment]:
    """Commitments in start order: those overlapping ``[start, end)``, or one by id."""
    columns = schema.regulation_commitments.c
    query = sa.select(schema.regulation_commitments).order_by(columns.starts_at, columns.id)
    if overlapping is not None:
        start, end = overlapping
        check_aware("start", start)
        check_aware("end", end)
        query = query.where(columns.starts_at < end, columns.ends_at > start)
    if commitment_id is not None:
        query = query.where(columns.id == commitment_id)
    if not include_cancelled:
        query = query.where(columns.cancelled_at.is_(None))
    return [_commitment(row) for row in connection.execute(query)]


def commitment_in_force(connection: Connection, now: datetime) -> Commitment | None:
    """The commitment in force at ``now`` (of overlapping ones, the one recorded last)."""
    check_aware("now", now)
    columns = schema.regulation_commitments.c
    query = (
        sa.select(schema.regulation_commitments)
        .where(columns.cancelled_at.is_(None), columns.starts_at <= now, columns.ends_at > now)
        .order_by(columns.recorded_at.desc(), columns.id.desc())
        .limit(1)
    )
    row = connection.execute(query).first()
    return None if row is None else _commitment(row)


def check_signal(sample: SignalSample) -> None:
    check_aware("at", sample.at)
    if not (math.isfinite(sample.signal) and -1.0 <= sample.signal <= 1.0):
        raise ValueError(
            f"signal at {sample.at.isoformat()} must be within -1..1, got {sample.signal}"
        )


def add_signals(
    connection: Connection, samples: Sequence[SignalSample], *, source: str, at: datetime
) -> int:
    """Record signal samples (all checked first); how many."""
    check_aware("at", at)
    for sample in samples:
        check_signal(sample)
    if samples:
        connection.execute(
            schema.regulation_signals.insert(),
            [
                {"at": s.at, "signal": s.signal, "source": source, "recorded_at": at}
                for s in samples
            ],
        )
    return len(samples)


def signals(connection: Connection, *, start: datetime, end: datetime) -> list[SignalSample]:
    """The samples that hold within ``[start, end)``, in time order: the last one before
    ``start`` (it holds at ``start``) and every one from ``start`` to ``end``. Of samples
    with the same time, the one recorded last."""
    check_aware("start", start)
    check_aware("end", end)
    columns = schema.regulation_signals.c
    order = (columns.at, columns.id)
    before = (
        sa.select(columns.at, columns.signal)
        .where(columns.at < start)
        .order_by(columns.at.desc(), columns.id.desc())
        .limit(1)
    )
    within = (
        sa.select(columns.at, columns.signal)
        .where(columns.at >= start, columns.at < end)
        .order_by(*order)
    )
    rows = list(connection.execute(before)) + list(connection.execute(within))
    latest: dict[datetime, float] = {}
    for row in rows:
        latest[row.at] = float(row.signal)  # a later id at the same time overwrites
    return [SignalSample(at, value) for at, value in sorted(latest.items())]


def record_shares(connection: Connection, shares: Sequence[Share]) -> None:
    """Record what EVSEs were told to follow."""
    for share in shares:
        check_aware("from_at", share.from_at)
        for name in ("baseline_kw", "raise_share_kw", "lower_share_kw"):
            value = getattr(share, name)
            if not math.isfinite(value):
                raise ValueError(
                    f"station {share.station_id!r}: {name} must be finite, got {value}"
                )
    if shares:
        connection.execute(
            schema.regulation_shares.insert(),
            [
                {
                    "commitment_id": s.commitment_id,
                    "mode": s.mode.value,
                    "station_id": s.station_id,
                    "evse_id": s.evse_id,
                    "transaction_id": s.transaction_id,
                    "from_at": s.from_at,
                    "baseline_kw": s.baseline_kw,
                    "raise_share_kw": s.raise_share_kw,
                    "lower_share_kw": s.lower_share_kw,
                    "status": s.status[:255],
                }
                for s in shares
            ],
        )


def shares(
    connection: Connection,
    *,
    commitment_id: int | None = None,
    mode: RegulationMode | None = None,
    since: datetime | None = None,
) -> list[Share]:
    """Shares in time order: of one commitment, one mode, or from ``since``."""
    columns = schema.regulation_shares.c
    query = sa.select(schema.regulation_shares).order_by(columns.from_at, columns.id)
    if commitment_id is not None:
        query = query.where(columns.commitment_id == commitment_id)
    if mode is not None:
        query = query.where(columns.mode == mode.value)
    if since is not None:
        check_aware("since", since)
        query = query.where(columns.from_at >= since)
    return [
        Share(
            mode=RegulationMode(row.mode),
            commitment_id=row.commitment_id,
            station_id=row.station_id,
            evse_id=int(row.evse_id),
            transaction_id=row.transaction_id,
            from_at=row.from_at,
            baseline_kw=float(row.baseline_kw),
            raise_share_kw=float(row.raise_share_kw),
            lower_share_kw=float(row.lower_share_kw),
            status=row.status,
        )
        for row in connection.execute(query)
    ]


def record_baselines(connection: Connection, steps: Sequence[BaselineStep]) -> None:
    """Record grid events' baselines; an event's baseline is kept once (later copies of
    a step already stored are ignored: the baseline is the plan when the event arrived)."""
    for step in steps:
        check_aware("at", step.at)
        if not math.isfinite(step.baseline_kw) or step.step_s <= 0:
            raise ValueError(
                f"grid event {step.event_id}: baseline {step.baseline_kw} kW over "
                f"{step.step_s} s is not a baseline"
            )
    if not steps:
        return
    columns = schema.grid_event_baselines.c
    known = {
        (row.event_id, _utc_key(row.at))
        for row in connection.execute(
            sa.select(columns.event_id, columns.at).where(
                columns.event_id.in_(sorted({s.event_id for s in steps}))
            )
        )
    }
    new = [s for s in steps if (s.event_id, _utc_key(s.at)) not in known]
    if new:
        connection.execute(
            schema.grid_event_baselines.insert(),
            [
                {
                    "event_id": s.event_id,
                    "at": s.at,
                    "site_id": s.site_id,
                    "baseline_kw": s.baseline_kw,
                    "step_s": s.step_s,
                }
                for s in new
            ],
        )


def baselines(connection: Connection, event_ids: Sequence[int]) -> list[BaselineStep]:
    """The baselines of some grid events, in event and time order."""
    if not event_ids:
        return []
    columns = schema.grid_event_baselines.c
    query = (
        sa.select(schema.grid_event_baselines)
        .where(columns.event_id.in_(sorted(set(event_ids))))
        .order_by(columns.event_id, columns.at)
    )
    return [
        BaselineStep(
            event_id=int(row.event_id),
            site_id=row.site_id,
            at=row.at,
            baseline_kw=float(row.baseline_kw),
            step_s=int(row.step_s),
        )
        for row in connection.execute(query)
    ]


def baselined_event_ids(connection: Connection, event_ids: Sequence[int]) -> set[int]:
    """Which of ``event_ids`` have a baseline already."""
    if not event_ids:
        return set()
    columns = schema.grid_event_baselines.c
    query = sa.select(columns.event_id).where(columns.event_id.in_(sorted(set(event_ids))))
    return {int(row.event_id) for row in connection.execute(query.distinct())}


def _utc_key(at: datetime) -> float:
    return at.timestamp()


def _commitment(row: Row[Any]) -> Commitment:
    return Commitment(
        commitment_id=int(row.id),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        capacity_kw=float(row.capacity_kw),
        source=row.source,
        recorded_at=row.recorded_at,
        external_id=row.external_id,
        cancelled_at=row.cancelled_at,
        cancelled_by=row.cancelled_by,
    )
