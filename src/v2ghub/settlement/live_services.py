"""The grid services of a live day, read from the store and turned into ledger lines.

``v2ghub settle --live`` (:mod:`~v2ghub.settlement.live_settle`) pays, besides the meter
streams, what the live aggregator's grid services earned on the day:

- **Regulation.** Each committed hour within the day, scored from what the chargers
  measured (:func:`v2ghub.regulation.live_score.live_regulation_hours`, clock hours of the
  city's time zone), is paid as the twin pays a regulation hour committed without a
  market (:class:`~v2ghub.settlement.regulation_hours.CommittedHour`): capacity in whole
  kW and mileage in whole kW (half away from zero), performance the composite score to
  four decimals, ``capacity_kw x 1 h x capacity rate x performance`` and
  ``mileage_kw x mileage rate x performance`` each rounded once to the fen. Each amount
  is allocated to the sessions by vehicle-hours served, a session's time in the hour
  being the shorter of its time with a share of the commitment in force and its plugged
  time (:func:`~v2ghub.settlement.service_lines.add_served_payment`), then shared by
  contract; the aggregator keeps an hour nobody served.
- **Demand response.** Each demand-response event with a baseline that held within the
  day is measured from the site's meter registers
  (:mod:`~v2ghub.settlement.live_demand_response`); each session's part of the delivered
  energy over the day is paid at the city's demand-response rate, rounded once per
  session, and shared by contract, as the twin pays called demand response
  (:func:`~v2ghub.settlement.service_lines.add_service_lines`, rule 2).

The store is read through :class:`LiveServicesSource`, a read-only protocol that
:class:`v2ghub.store.repository.Store` satisfies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from v2ghub.regulation.live_score import (
    LiveRegulationHour,
    RegulationSource,
    live_regulation_hours,
)
from v2ghub.settlement.contracts import Contracts
from v2ghub.settlement.live_demand_response import (
    DEMAND_RESPONSE_KIND,
    NEVER_US,
    BaselineColumns,
    DeliveredEvent,
    EventWindow,
    Transaction,
    delivered_events,
    microseconds,
    session_delivered_wh,
)
from v2ghub.settlement.live_meter import LiveSession
from v2ghub.settlement.money import fen_to_cny
from v2ghub.settlement.rates import RateCard
from v2ghub.settlement.regulation_hours import CommittedHour
from v2ghub.settlement.service_lines import (
    HourPayment,
    add_served_payment,
    add_service_lines,
    plugged_in_hour_us,
)
from v2ghub.settlement.streams import LineColumns
from v2ghub.units import KW_PER_MW, WH_PER_KWH

_EVENTS_READ = 100_000
"""Grid events read at most for one day (the store's read is newest first, limited)."""


class GridEventRecord(Protocol):
    """A stored grid event (:class:`v2ghub.store.grid_events.GridEvent`)."""

    @property
    def event_id(self) -> int: ...
    @property
    def site_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def starts_at(self) -> datetime: ...
    @property
    def ends_at(self) -> datetime | None: ...
    @property
    def cancelled_at(self) -> datetime | None: ...
    @property
    def requested_reduction_kw(self) -> float | None: ...


class BaselineRecord(Protocol):
    """A stored baseline step (:class:`v2ghub.store.regulation.BaselineStep`)."""

    @property
    def event_id(self) -> int: ...
    @property
    def at(self) -> datetime: ...
    @property
    def baseline_kw(self) -> float: ...
    @property
    def step_s(self) -> int: ...


@runtime_checkable
class LiveServicesSource(RegulationSource, Protocol):
    """What settlement reads of the live store's grid services (``Store`` has it)."""

    def grid_events(
        self, *, since: datetime | None = None, limit: int = 500
    ) -> Sequence[GridEventRecord]: ...
    def baselines(self, event_ids: Sequence[int]) -> Sequence[BaselineRecord]: ...


@dataclass(frozen=True)
class LiveServices:
    """A live day's grid services, measured: the regulation hours with what each pays,
    and the demand-response events."""

    regulation: tuple[LiveRegulationHour, ...]
    payments: tuple[tuple[HourPayment, HourPayment], ...]
    demand_response: tuple[DeliveredEvent, ...]


def read_live_services(
    source: LiveServicesSource,
    *,
    start: datetime,
    end: datetime,
    city: str,
    planner: str,
    timezone: str,
    card: RateCard,
    transactions: Mapping[tuple[str, str], Transaction],
) -> LiveServices:
    """The grid services of ``[start, end)`` (module docstring); ``transactions`` are the
    day's, with their readings."""
    hours = live_regulation_hours(source, start, end, timezone=timezone)
    payments = tuple(committed_hour(h, city=city, planner=planner).payments(card) for h in hours)
    events = [
        event
        for event in source.grid_events(since=start, limit=_EVENTS_READ)
        if event.kind == DEMAND_RESPONSE_KIND and event.starts_at < end
    ]
    events.sort(key=lambda event: event.event_id)
    columns: dict[int, BaselineColumns] = {}
    steps = source.baselines([event.event_id for event in events])
    for event_id in sorted({step.event_id for step in steps}):
        own = [step for step in steps if step.event_id == event_id]
        columns[event_id] = BaselineColumns(
            at_us=np.array([microseconds(step.at) for step in own], dtype=np.int64),
            step_s=np.array([step.step_s for step in own], dtype=np.int64),
            baseline_kw=np.array([step.baseline_kw for step in own], dtype=np.float64),
        )
    delivered = delivered_events(
        [_window(event) for event in events],
        columns,
        transactions,
        period_start_us=microseconds(start),
        period_end_us=microseconds(end),
    )
    return LiveServices(
        regulation=tuple(hours), payments=payments, demand_response=tuple(delivered)
    )


def committed_hour(hour: LiveRegulationHour, *, city: str, planner: str) -> CommittedHour:
    """A scored live hour as the twin's rate card pays it: capacity and mileage in whole
    kW (half away from zero), performance to four decimals (as ``regulation.json``)."""
    composite = min(max(hour.composite, 0.0), 1.0)
    return CommittedHour(
        city=city,
        planner=planner,
        start=hour.start,
        capacity_kw=int(np.floor(hour.capacity_kw + 0.5)),
        mileage_kw=int(np.floor(hour.mileage_mw * KW_PER_MW + 0.5)),
        performance=Decimal(f"{composite:.4f}"),
    )


def add_live_service_lines(
    lines: LineColumns,
    services: LiveServices,
    *,
    sessions: Mapping[tuple[str, str], LiveSession],
    transactions: Mapping[tuple[str, str], Transaction],
    card: RateCard,
    contracts: Contracts,
) -> None:
    """Append the day's demand response and regulation lines (module docstring)."""
    keys = list(sessions)
    if not keys:
        return
    arrival_us = np.array([transactions[key].started_us for key in keys], dtype=np.int64)
    departure_us = np.array([transactions[key].ended_us for key in keys], dtype=np.int64)
    dr_wh = session_delivered_wh(services.demand_response)
    table = pa.table(
        {
            "session_id": pa.array([sessions[key].session_id for key in keys], pa.string()),
            "site_id": pa.array([sessions[key].site_id for key in keys], pa.string()),
            "charger_kind": pa.array([sessions[key].charger_kind for key in keys], pa.string()),
            "arrival": pa.array(arrival_us, pa.timestamp("us", tz="UTC")),
            "departure": pa.array(np.minimum(departure_us, 2**62), pa.timestamp("us", tz="UTC")),
            "dr_delivered_kwh": pa.array(
                [dr_wh.get(key, 0) / WH_PER_KWH for key in keys], pa.float64()
            ),
        }
    )
    if dr_wh:
        add_service_lines(lines, sessions=table, sales=(), card=card, contracts=contracts)
    for hour, payments in zip(services.regulation, services.payments, strict=True):
        served = {(s.station_id, s.transaction_id): s.served_us for s in hour.served}
        served_us = np.array([served.get(key, 0) for key in keys], dtype=np.int64)
        plugged_us = plugged_in_hour_us(hour.start, arrival_us, departure_us)
        for payment in payments:
            add_served_payment(
                lines,
                sessions=table,
                payment=payment,
                served_us=np.minimum(served_us, plugged_us),
                contracts=contracts,
            )


def services_json(services: LiveServices) -> dict[str, Any]:
    """What ``settlement.json`` says of the day's grid services."""
    return {
        "regulation": [
            {
                "commitment_id": hour.commitment_id,
                "start": hour.start.isoformat(),
                "capacity_kw": round(hour.capacity_kw, 3),
                "mileage_mw": round(hour.mileage_mw, 6),
                "correlation": round(hour.correlation, 4),
                "delay": round(hour.delay, 4),
                "precision": round(hour.precision, 4),
                "composite": round(hour.composite, 4),
                "delay_s": hour.delay_s,
                "expected_energy_kwh": round(hour.expected_energy_kwh, 3),
                "measured_energy_kwh": round(hour.measured_energy_kwh, 3),
                "evse_count": hour.evse_count,
                "samples": hour.samples,
                "reporting_share": round(hour.reporting_share, 4),
                "capacity_cny": str(fen_to_cny(capacity.amount_fen)),
                "mileage_cny": str(fen_to_cny(mileage.amount_fen)),
            }
            for hour, (capacity, mileage) in zip(
                services.regulation, services.payments, strict=True
            )
        ],
        "demand_response": [
            {
                "event_id": event.event_id,
                "site_id": event.site_id,
                "steps": event.steps,
                "baseline_kwh": event.baseline_wh / WH_PER_KWH,
                "measured_kwh": event.measured_wh / WH_PER_KWH,
                "requested_kwh": None
                if event.requested_wh < 0
                else event.requested_wh / WH_PER_KWH,
                "delivered_kwh": event.delivered_wh / WH_PER_KWH,
                "paid_kwh": sum(event.sessions.values()) / WH_PER_KWH,
            }
            for event in services.demand_response
        ],
    }


def _window(event: GridEventRecord) -> EventWindow:
    stop = NEVER_US if event.ends_at is None else microseconds(event.ends_at)
    if event.cancelled_at is not None:
        stop = min(stop, microseconds(event.cancelled_at))
    return EventWindow(
        event_id=event.event_id,
        site_id=event.site_id,
        start_us=microseconds(event.starts_at),
        stop_us=stop,
        requested_kw=event.requested_reduction_kw,
    )


__all__ = [
    "BaselineRecord",
    "GridEventRecord",
    "LiveServices",
    "LiveServicesSource",
    "add_live_service_lines",
    "committed_hour",
    "read_live_services",
    "services_json",
]
