"""The OpenADR VEN's events in the store: its view of each VTN event, and the rows an event
becomes.

A VTN event the VEN opted in to becomes grid events (``site_limits`` rows, kind
``demand-response``, :mod:`v2ghub.store.grid_events`) and price events (``grid_prices``,
:mod:`v2ghub.store.grid_prices`), each with ``source`` ``openadr:VEN`` and ``external_id``
``EVENT/MODIFICATION/INTERVAL``. :func:`apply_vtn_event` writes one modification of an
event in one database transaction: it cancels the rows of every earlier modification,
writes the new rows (none for an event opted out of, cancelled or completed) and keeps the
VEN's view (``openadr_events``): whoever reads the store sees the old limits or the new
ones, never both or neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from v2ghub.store import schema
from v2ghub.store.checks import check_aware
from v2ghub.store.grid_events import GridEventKind, add_grid_event, cancel_grid_event
from v2ghub.store.grid_prices import add_price_event, cancel_price_events


@dataclass(frozen=True)
class VtnEventView:
    """What the VEN knows of one VTN event: its latest modification and our answer.

    ``opt_state`` is ``optIn`` or ``optOut``; ``status`` is the VTN's (``far``, ``near``,
    ``active``, ``completed``, ``cancelled``); ``site_ids`` are our sites it names.
    """

    source: str
    vtn_event_id: str
    modification_number: int
    signal_name: str
    site_ids: tuple[str, ...]
    starts_at: datetime
    ends_at: datetime
    opt_state: str
    opt_reason: str
    status: str
    received_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class EventLimit:
    """One interval of a dispatch, control or SIMPLE event at one site: an import limit."""

    site_id: str
    starts_at: datetime
    ends_at: datetime
    import_limit_kw: float | None
    external_id: str
    reason: str
    requested_reduction_kw: float | None = None


@dataclass(frozen=True)
class EventPrice:
    """One interval of a price event at one site: the import price, CNY/kWh."""

    site_id: str
    starts_at: datetime
    ends_at: datetime
    import_price_cny_per_kwh: float
    external_id: str


def apply_vtn_event(
    connection: Connection,
    view: VtnEventView,
    *,
    limits: Sequence[EventLimit] = (),
    prices: Sequence[EventPrice] = (),
    at: datetime,
) -> None:
    """Keep ``view`` and replace the event's rows by ``limits`` and ``prices`` (every row of
    an earlier modification is cancelled, by ``view.source``), in the caller's transaction.
    """
    check_aware("at", at)
    prefix = f"{view.vtn_event_id}/"
    limit_rows = schema.site_limits.c
    earlier = connection.execute(
        sa.select(limit_rows.id).where(
            limit_rows.source == view.source,
            limit_rows.external_id.startswith(prefix, autoescape=True),
            limit_rows.cancelled_at.is_(None),
        )
    )
    for (event_id,) in list(earlier):
        cancel_grid_event(connection, int(event_id), by=view.source, at=at)
    cancel_price_events(
        connection, source=view.source, external_prefix=prefix, by=view.source, at=at
    )
    for limit in limits:
        add_grid_event(
            connection,
            limit.site_id,
            import_limit_kw=limit.import_limit_kw,
            export_limit_kw=None,
            starts_at=limit.starts_at,
            ends_at=limit.ends_at,
            reason=limit.reason,
            at=at,
            kind=GridEventKind.DEMAND_RESPONSE,
            source=view.source,
            external_id=limit.external_id,
            requested_reduction_kw=limit.requested_reduction_kw,
        )
    for price in prices:
        add_price_event(
            connection,
            price.site_id,
            starts_at=price.starts_at,
            ends_at=price.ends_at,
            import_price_cny_per_kwh=price.import_price_cny_per_kwh,
            source=view.source,
            at=at,
            external_id=price.external_id,
        )
    _keep_view(connection, view)


def _keep_view(connection: Connection, view: VtnEventView) -> None:
    table = schema.openadr_events
    values = {
        "modification_number": view.modification_number,
        "signal_name": view.signal_name[:64],
        "site_ids": ",".join(view.site_ids),
        "starts_at": view.starts_at,
        "ends_at": view.ends_at,
        "opt_state": view.opt_state,
        "opt_reason": view.opt_reason,
        "status": view.status,
        "updated_at": view.updated_at,
    }
    updated = connection.execute(
        table.update()
        .where(table.c.source == view.source, table.c.vtn_event_id == view.vtn_event_id)
        .values(**values)
    )
    if updated.rowcount == 0:
        connection.execute(
            table.insert().values(
                source=view.source,
                vtn_event_id=view.vtn_event_id,
                received_at=view.received_at,
                **values,
            )
        )


def vtn_event(connection: Connection, source: str, vtn_event_id: str) -> VtnEventView | None:
    """The VEN's view of one VTN event, or None when it never saw it."""
    table = schema.openadr_events
    row = connection.execute(
        sa.select(table).where(table.c.source == source, table.c.vtn_event_id == vtn_event_id)
    ).first()
    return None if row is None else _view(row)


def vtn_events(connection: Connection, *, source: str | None = None) -> list[VtnEventView]:
    """The VEN's view of every VTN event (of ``source``, if given), first received first."""
    table = schema.openadr_events
    query = sa.select(table).order_by(table.c.received_at, table.c.id)
    if source is not None:
        query = query.where(table.c.source == source)
    return [_view(row) for row in connection.execute(query)]


def _view(row: Row[Any]) -> VtnEventView:
    return VtnEventView(
        source=row.source,
        vtn_event_id=row.vtn_event_id,
        modification_number=int(row.modification_number),
        signal_name=row.signal_name,
        site_ids=tuple(site for site in row.site_ids.split(",") if site),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        opt_state=row.opt_state,
        opt_reason=row.opt_reason,
        status=row.status,
        received_at=row.received_at,
        updated_at=row.updated_at,
    )
