"""The store as the live aggregator sees it: typed protocols of the methods it uses.

:class:`~v2ghub.store.repository.Store` implements both; tests may pass a small fake. The
methods are synchronous: the OCPP server runs the writes in the store's single writer
thread (:meth:`v2ghub.live.csms.StationHub.write`), the control loop in worker threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from v2ghub.store.grid_prices import PriceEvent
from v2ghub.store.records import (
    Event,
    EvNeeds,
    MeterSample,
    OcppVersion,
    PluggedSession,
    Setpoint,
    Station,
    StatusReport,
    StoredEvent,
    TransactionEventRecord,
)
from v2ghub.store.site_power import SitePowerRecord


class ControlStore(Protocol):
    """What the control loop reads and writes."""

    def plugged(self, now: datetime) -> list[PluggedSession]:
        """Open transactions at ``now`` with their latest needs."""
        ...

    def record_setpoints(self, setpoints: Sequence[Setpoint]) -> None: ...

    def record_site_power(self, records: Sequence[SitePowerRecord]) -> None:
        """Each site's measured and planned power at one control instant."""
        ...

    def record_event(self, event: Event) -> None: ...

    def site_limits(self, now: datetime) -> dict[str, tuple[float, float]]:
        """Grid events in force: (import, export) kW per site, ``inf`` for no limit."""
        ...


@runtime_checkable
class PriceStore(Protocol):
    """A store that also keeps price events (:class:`~v2ghub.store.repository.Store` does):
    the control loop prices the steps they cover; with any other store it plans on the
    city's tariff alone."""

    def prices_overlapping(self, start: datetime, end: datetime) -> list[PriceEvent]:
        """Price events in force at some time in ``[start, end)``, oldest recorded first."""
        ...


class LiveStore(ControlStore, Protocol):
    """What the OCPP server and the control loop read and write."""

    def station(self, station_id: str) -> Station | None: ...

    def record_boot(
        self,
        station_id: str,
        *,
        ocpp_version: OcppVersion,
        vendor: str | None,
        model: str | None,
        at: datetime,
    ) -> None: ...

    def set_evse_status(self, station_id: str, evse_id: int, status: str, at: datetime) -> None: ...

    def set_evse_statuses(self, rows: Sequence[StatusReport]) -> list[None]:
        """Several EVSEs' statuses in one database transaction."""
        ...

    def transaction_events(self, events: Sequence[TransactionEventRecord]) -> list[StoredEvent]:
        """Store TransactionEvents in one database transaction, one result each."""
        ...

    def latest_export_wh(self, station_id: str, transaction_id: str) -> int: ...

    def evse_export_wh(self, station_id: str, evse_id: int) -> int: ...

    def add_meter_values(
        self, station_id: str, evse_id: int, samples: Sequence[MeterSample], *, at: datetime
    ) -> None: ...

    def record_needs(self, needs: EvNeeds) -> None: ...

    def session_start(self, station_id: str, transaction_id: str) -> tuple[int, datetime] | None:
        """A transaction's EVSE and start, or None when it is not stored."""
        ...

    def last_export_wh(self, station_id: str, evse_id: int) -> int | None:
        """The export register of the EVSE's latest transaction (None: it had none)."""
        ...

    def stations(self) -> list[Station]: ...
