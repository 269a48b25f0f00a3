"""Grid events in the store: a site's connection limits for a while.

A grid event is a site limit (``limit``: a curtailment, a new agreement) or a
demand-response request (``demand-response``: the dispatcher asked the site to take
``requested_reduction_kw`` less, recorded as the import limit that achieves it). Both are
rows of ``site_limits`` with who asked (``source``: ``cli``, ``api:TOKEN``), the sender's
own id (``external_id``) and, once cancelled, when and by whom. The control loop reads the
limits in force (:func:`limits_in_force`); whoever writes them, ``v2ghub site limit`` or
the web API, writes the same rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from v2ghub.store import schema
from v2ghub.store.checks import check_aware

SITE_ID_LENGTH = 64


class GridEventKind(StrEnum):
    LIMIT = "limit"
    DEMAND_RESPONSE = "demand-response"


@dataclass(frozen=True)
class GridEvent:
    """One grid event as stored. Limits are kW at the site's connection point, ``None``
    for no limit in that direction; ``ends_at`` ``None`` lasts until replaced."""

    event_id: int
    site_id: str
    kind: GridEventKind
    import_limit_kw: float | None
    export_limit_kw: float | None
    starts_at: datetime
    ends_at: datetime | None
    reason: str
    source: str
    recorded_at: datetime
    external_id: str | None = None
    requested_reduction_kw: float | None = None
    cancelled_at: datetime | None = None
    cancelled_by: str | None = None

    def in_force(self, now: datetime) -> bool:
        return (
            self.cancelled_at is None
            and self.starts_at <= now
            and (self.ends_at is None or self.ends_at > now)
        )


def check_grid_event(
    site_id: str,
    *,
    import_limit_kw: float | None,
    export_limit_kw: float | None,
    starts_at: datetime,
    ends_at: datetime | None,
) -> None:
    """Refuse a grid event that cannot hold: ``ValueError`` naming the field."""
    if not site_id or len(site_id) > SITE_ID_LENGTH:
        raise ValueError(f"site_id: a site id of 1 to {SITE_ID_LENGTH} characters, got {site_id!r}")
    for name, value in (("import_limit_kw", import_limit_kw), ("export_limit_kw", export_limit_kw)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"site {site_id!r}: {name} must be >= 0 kW, got {value}")
    check_aware("starts_at", starts_at)
    if ends_at is not None:
        check_aware("ends_at", ends_at)
        if ends_at <= starts_at:
            raise ValueError(f"site {site_id!r}: the limit ends ({ends_at}) before it starts")


def add_grid_event(
    connection: Connection,
    site_id: str,
    *,
    import_limit_kw: float | None,
    export_limit_kw: float | None,
    starts_at: datetime,
    ends_at: datetime | None,
    reason: str,
    at: datetime,
    kind: GridEventKind = GridEventKind.LIMIT,
    source: str = "cli",
    external_id: str | None = None,
    requested_reduction_kw: float | None = None,
) -> int:
    """Record a grid event; its id."""
    check_grid_event(
        site_id,
        import_limit_kw=import_limit_kw,
        export_limit_kw=export_limit_kw,
        starts_at=starts_at,
        ends_at=ends_at,
    )
    check_aware("at", at)
    result = connection.execute(
        schema.site_limits.insert()
        .values(
            site_id=site_id,
            import_limit_kw=import_limit_kw,
            export_limit_kw=export_limit_kw,
            starts_at=starts_at,
            ends_at=ends_at,
            reason=reason,
            recorded_at=at,
            kind=kind.value,
            source=source,
            external_id=external_id,
            requested_reduction_kw=requested_reduction_kw,
        )
        .returning(schema.site_limits.c.id)
    )
    return int(result.scalar_one())


def cancel_grid_event(connection: Connection, event_id: int, *, by: str, at: datetime) -> bool:
    """Cancel a grid event that is not cancelled yet; whether one was."""
    check_aware("at", at)
    limits = schema.site_limits.c
    result = connection.execute(
        schema.site_limits.update()
        .where(limits.id == event_id, limits.cancelled_at.is_(None))
        .values(cancelled_at=at, cancelled_by=by)
    )
    return result.rowcount == 1


def grid_events(
    connection: Connection,
    *,
    site_ids: frozenset[str] | None = None,
    in_force_at: datetime | None = None,
    since: datetime | None = None,
    event_id: int | None = None,
    limit: int = 500,
) -> list[GridEvent]:
    """Grid events, newest first: of some sites (``None``: all), those in force at
    ``in_force_at``, or those that did not end before ``since``."""
    limits = schema.site_limits.c
    query = sa.select(schema.site_limits).order_by(limits.recorded_at.desc(), limits.id.desc())
    if site_ids is not None:
        query = query.where(limits.site_id.in_(sorted(site_ids)))
    if event_id is not None:
        query = query.where(limits.id == event_id)
    if in_force_at is not None:
        check_aware("in_force_at", in_force_at)
        query = query.where(
            limits.cancelled_at.is_(None),
            limits.starts_at <= in_force_at,
            sa.or_(limits.ends_at.is_(None), limits.ends_at > in_force_at),
        )
    if since is not None:
        check_aware("since", since)
        query = query.where(sa.or_(limits.ends_at.is_(None), limits.ends_at > since))
    return [_grid_event(row) for row in connection.execute(query.limit(limit))]


def limits_in_force(connection: Connection, now: datetime) -> dict[str, tuple[float, float]]:
    """The limits in force at ``now`` per site: (import, export) kW, ``inf`` for none.
    Of several events in force for a site, the one recorded last holds."""
    check_aware("now", now)
    limits = schema.site_limits.c
    query = (
        sa.select(schema.site_limits)
        .where(
            limits.cancelled_at.is_(None),
            limits.starts_at <= now,
            sa.or_(limits.ends_at.is_(None), limits.ends_at > now),
        )
        .order_by(limits.recorded_at, limits.id)
    )
    return {
        row.site_id: (
            math.inf if row.import_limit_kw is None else float(row.import_limit_kw),
            math.inf if row.export_limit_kw is None else float(row.export_limit_kw),
        )
        for row in connection.execute(query)  # the last recorded of a site overwrites
    }


def _grid_event(row: Row[Any]) -> GridEvent:
    return GridEvent(
        event_id=int(row.id),
        site_id=row.site_id,
        kind=GridEventKind(row.kind),
        import_limit_kw=row.import_limit_kw,
        export_limit_kw=row.export_limit_kw,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        reason=row.reason,
        source=row.source,
        recorded_at=row.recorded_at,
        external_id=row.external_id,
        requested_reduction_kw=row.requested_reduction_kw,
        cancelled_at=row.cancelled_at,
        cancelled_by=row.cancelled_by,
    )
