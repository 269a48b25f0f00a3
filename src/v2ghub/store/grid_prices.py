"""Price events in the store: a site's import price for a while, instead of its tariff.

An OpenADR ``ELECTRICITY_PRICE`` event (:mod:`v2ghub.live.openadr_ven`) becomes one row per
site and interval: ``import_price_cny_per_kwh`` from ``starts_at`` to ``ends_at``, who sent
it (``source``: ``openadr:VEN``) and the sender's own id (``external_id``); a cancelled row
no longer holds. The control loop reads the rows that overlap its horizon
(:func:`prices_overlapping`) and prices the steps they cover
(:func:`v2ghub.live.live_problem.build_problem`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from v2ghub.store import schema
from v2ghub.store.checks import check_aware
from v2ghub.store.grid_events import SITE_ID_LENGTH


@dataclass(frozen=True)
class PriceEvent:
    """One price event as stored: CNY/kWh imported at ``site_id`` in [starts_at, ends_at)."""

    price_id: int
    site_id: str
    starts_at: datetime
    ends_at: datetime
    import_price_cny_per_kwh: float
    source: str
    recorded_at: datetime
    external_id: str | None = None
    cancelled_at: datetime | None = None
    cancelled_by: str | None = None


def add_price_event(
    connection: Connection,
    site_id: str,
    *,
    starts_at: datetime,
    ends_at: datetime,
    import_price_cny_per_kwh: float,
    source: str,
    at: datetime,
    external_id: str | None = None,
) -> int:
    """Record a price event; its id. ``ValueError`` naming the field for one that cannot
    hold (a bad site id, a price not finite, naive times, an end before the start)."""
    if not site_id or len(site_id) > SITE_ID_LENGTH:
        raise ValueError(f"site_id: a site id of 1 to {SITE_ID_LENGTH} characters, got {site_id!r}")
    if not math.isfinite(import_price_cny_per_kwh):
        raise ValueError(
            f"site {site_id!r}: import_price_cny_per_kwh must be finite, "
            f"got {import_price_cny_per_kwh}"
        )
    check_aware("starts_at", starts_at)
    check_aware("ends_at", ends_at)
    check_aware("at", at)
    if ends_at <= starts_at:
        raise ValueError(f"site {site_id!r}: the price ends ({ends_at}) before it starts")
    result = connection.execute(
        schema.grid_prices.insert()
        .values(
            site_id=site_id,
            starts_at=starts_at,
            ends_at=ends_at,
            import_price_cny_per_kwh=import_price_cny_per_kwh,
            source=source,
            external_id=external_id,
            recorded_at=at,
        )
        .returning(schema.grid_prices.c.id)
    )
    return int(result.scalar_one())


def cancel_price_events(
    connection: Connection, *, source: str, external_prefix: str, by: str, at: datetime
) -> int:
    """Cancel the price events of ``source`` whose ``external_id`` starts with
    ``external_prefix`` and that are not cancelled yet; how many were."""
    check_aware("at", at)
    prices = schema.grid_prices.c
    result = connection.execute(
        schema.grid_prices.update()
        .where(
            prices.source == source,
            prices.external_id.startswith(external_prefix, autoescape=True),
            prices.cancelled_at.is_(None),
        )
        .values(cancelled_at=at, cancelled_by=by)
    )
    return int(result.rowcount)


def prices_overlapping(
    connection: Connection, *, start: datetime, end: datetime
) -> list[PriceEvent]:
    """The price events not cancelled that overlap ``[start, end)``, oldest recorded first
    (so that, where two overlap, the one recorded last is applied last and holds)."""
    check_aware("start", start)
    check_aware("end", end)
    prices = schema.grid_prices.c
    query = (
        sa.select(schema.grid_prices)
        .where(prices.cancelled_at.is_(None), prices.starts_at < end, prices.ends_at > start)
        .order_by(prices.recorded_at, prices.id)
    )
    return [_price_event(row) for row in connection.execute(query)]


def price_events(connection: Connection, *, source: str | None = None) -> list[PriceEvent]:
    """Every price event (of ``source``, if given), oldest recorded first."""
    prices = schema.grid_prices.c
    query = sa.select(schema.grid_prices).order_by(prices.recorded_at, prices.id)
    if source is not None:
        query = query.where(prices.source == source)
    return [_price_event(row) for row in connection.execute(query)]


def _price_event(row: Row[Any]) -> PriceEvent:
    return PriceEvent(
        price_id=int(row.id),
        site_id=row.site_id,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        import_price_cny_per_kwh=float(row.import_price_cny_per_kwh),
        source=row.source,
        recorded_at=row.recorded_at,
        external_id=row.external_id,
        cancelled_at=row.cancelled_at,
        cancelled_by=row.cancelled_by,
    )
