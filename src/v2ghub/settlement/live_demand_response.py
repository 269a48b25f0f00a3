"""Demand response the live aggregator delivered, measured against each event's baseline.

A demand-response grid event (a ``site_limits`` row of kind ``demand-response``) asks one
site to draw ``requested_reduction_kw`` less than it would have; its baseline is the
site's planned net power per step without the event (``grid_event_baselines``, from the
plan in force when the event arrived). What the site delivered is measured from the meter
registers of its transactions.

Rules
-----
- **When it counts.** The event is in force from ``starts_at`` to ``ends_at`` (or
  without end), or to ``cancelled_at`` once cancelled (a cancel before the start leaves
  nothing). A baseline step ``[at, at + step_s)`` counts for the part of it within the
  event in force and within the period settled (a local day): ``[a, b)``. Time the
  baseline does not cover is not measured.
- **Baseline energy** of a step: ``B = baseline_kw * (b - a)`` in integer Wh, rounded
  half away from zero (:func:`~v2ghub.settlement.money.energy_wh`).
- **Measured energy** of a step: the site's net import ``M = sum over its transactions
  of (import(b) - import(a)) - (export(b) - export(a))``, Wh, each register at ``a`` and
  ``b`` interpolated between the readings around it, pro rata by time in whole Wh
  rounded half up, held before the first reading and after the last
  (:func:`~v2ghub.settlement.live_meter.registers_at`: the rule that cuts a transaction
  at midnight).
- **Delivered**, the twin's rule (:mod:`v2ghub.sim.demand_response_service`), so the
  twin and the live aggregator pay the same response alike::

      delivered_wh = max(sum over steps of min(B - M, R), 0)

  with ``R = requested_reduction_kw * (b - a)`` in integer Wh (no cap when the event
  names no reduction). Overshoot, a step's reduction beyond ``R``, is not credited; a step
  above the baseline (``B - M < 0``) counts against the event's other steps; an event
  never owes (its total is at least 0). A sum of positive parts alone would pay the
  noise of a site's load around its baseline as if it were a response.
- **Sessions.** An event's delivered Wh is shared among the site's transactions in
  proportion to each one's plugged time within the counted steps (the store keeps no
  per-vehicle baseline, so no vehicle's own reduction can be told apart), in whole Wh by
  largest remainder (:func:`~v2ghub.settlement.service_lines.allocate_fen`); the parts
  add up to the event's. An event with delivered energy but no transaction plugged in at
  the site during it is not paid: nothing the aggregator meters answered it.

Vectorised over an event's steps and the site's transactions' readings; Python loops run
over events and transactions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from v2ghub.settlement.live_meter import registers_at
from v2ghub.settlement.money import energy_wh
from v2ghub.settlement.service_lines import allocate_fen
from v2ghub.units import MICROSECONDS_PER_SECOND, SECONDS_PER_HOUR

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

DEMAND_RESPONSE_KIND = "demand-response"
"""The ``site_limits.kind`` of a demand-response event."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_HOUR_US = SECONDS_PER_HOUR * MICROSECONDS_PER_SECOND

NEVER_US = 2**62
"""The ``stop_us`` / ``ended_us`` of what has no end: far beyond any period."""


@dataclass(frozen=True)
class EventWindow:
    """A demand-response event as measured: the site, when it held, what it asked.

    Attributes
    ----------
    event_id, site_id
        The event and its site.
    start_us, stop_us
        When it held (from start to end or cancellation), microseconds since the epoch;
        ``stop_us`` is far in the future for an event without end.
    requested_kw
        The reduction asked, kW (``None``: not said, no cap).
    """

    event_id: int
    site_id: str
    start_us: int
    stop_us: int
    requested_kw: float | None


@dataclass(frozen=True)
class BaselineColumns:
    """An event's baseline steps as columns: start (microseconds since the epoch), length
    (seconds) and planned net power (kW)."""

    at_us: IntArray
    step_s: IntArray
    baseline_kw: FloatArray


@dataclass(frozen=True)
class Transaction:
    """A transaction's readings as settlement reads them, and when it was plugged in.

    ``at_us`` in measuring order (microseconds since the epoch), ``registers_wh`` its
    ``(import, export)`` registers, shape ``(n, 2)``; ``started_us`` to ``ended_us``
    (far in the future while open) its plugged time.
    """

    site_id: str
    at_us: IntArray
    registers_wh: IntArray
    started_us: int
    ended_us: int


@dataclass(frozen=True)
class DeliveredEvent:
    """One event measured over the period (module docstring).

    Attributes
    ----------
    event_id, site_id
        The event and its site.
    steps
        Baseline steps counted (with some time within the event and the period).
    baseline_wh, measured_wh, requested_wh
        Totals over the counted steps, Wh (``requested_wh`` -1 when not said).
    delivered_wh
        ``max(sum(min(B - M, R)), 0)``, Wh.
    sessions
        Each transaction's part of ``delivered_wh``, by ``(station_id, transaction_id)``;
        only transactions with a part, in the order given. What is paid: empty when no
        transaction was plugged in at the site during the counted steps.
    """

    event_id: int
    site_id: str
    steps: int
    baseline_wh: int
    measured_wh: int
    requested_wh: int
    delivered_wh: int
    sessions: dict[tuple[str, str], int]


def delivered_event(
    event: EventWindow,
    baseline: BaselineColumns,
    transactions: Mapping[tuple[str, str], Transaction],
    *,
    period_start_us: int,
    period_end_us: int,
) -> DeliveredEvent:
    """What ``event`` delivered within ``[period_start_us, period_end_us)`` (module
    docstring); ``transactions`` may include other sites' (they are left out)."""
    lower = max(event.start_us, period_start_us)
    upper = min(event.stop_us, period_end_us)
    a = np.maximum(baseline.at_us, lower)
    b = np.minimum(baseline.at_us + baseline.step_s * MICROSECONDS_PER_SECOND, upper)
    counted = b > a
    a, b, kw = a[counted], b[counted], baseline.baseline_kw[counted]
    hours = (b - a) / _HOUR_US
    baseline_wh = energy_wh(kw * hours)
    site = [key for key, t in transactions.items() if t.site_id == event.site_id]
    measured_wh = np.zeros(a.size, dtype=np.int64)
    plugged_us = np.zeros(len(site), dtype=np.int64)
    for index, key in enumerate(site):  # transactions, never readings
        transaction = transactions[key]
        if transaction.at_us.size:
            at_a = registers_at(transaction.at_us, transaction.registers_wh, a)
            at_b = registers_at(transaction.at_us, transaction.registers_wh, b)
            net = (at_b - at_a) @ np.array([1, -1], dtype=np.int64)
            measured_wh += np.asarray(net, dtype=np.int64)
        overlap = np.minimum(b, transaction.ended_us) - np.maximum(a, transaction.started_us)
        plugged_us[index] = int(np.maximum(overlap, 0).sum())
    reduction_wh = baseline_wh - measured_wh
    if event.requested_kw is None:
        requested_wh = np.full(a.size, -1, dtype=np.int64)
        credited = reduction_wh
    else:
        requested_wh = energy_wh(event.requested_kw * hours)
        credited = np.minimum(reduction_wh, requested_wh)
    delivered = max(int(credited.sum()), 0)
    parts: dict[tuple[str, str], int] = {}
    if delivered > 0 and plugged_us.sum() > 0:
        allocated = allocate_fen(delivered, plugged_us)
        parts = {key: int(wh) for key, wh in zip(site, allocated.tolist(), strict=True) if wh}
    return DeliveredEvent(
        event_id=event.event_id,
        site_id=event.site_id,
        steps=int(a.size),
        baseline_wh=int(baseline_wh.sum()),
        measured_wh=int(measured_wh.sum()),
        requested_wh=-1 if event.requested_kw is None else int(requested_wh.sum()),
        delivered_wh=delivered,
        sessions=parts,
    )


def delivered_events(
    events: Sequence[EventWindow],
    baselines: Mapping[int, BaselineColumns],
    transactions: Mapping[tuple[str, str], Transaction],
    *,
    period_start_us: int,
    period_end_us: int,
) -> list[DeliveredEvent]:
    """:func:`delivered_event` of each event with a baseline, in the order given."""
    return [
        delivered_event(
            event,
            baselines[event.event_id],
            transactions,
            period_start_us=period_start_us,
            period_end_us=period_end_us,
        )
        for event in events  # events, never readings
        if event.event_id in baselines
    ]


def session_delivered_wh(events: Sequence[DeliveredEvent]) -> dict[tuple[str, str], int]:
    """Each transaction's delivered Wh over all ``events``."""
    total: dict[tuple[str, str], int] = {}
    for event in events:
        for key, wh in event.sessions.items():
            total[key] = total.get(key, 0) + wh
    return total


def microseconds(moment: datetime) -> int:
    """A timezone-aware time as microseconds since 1970-01-01 UTC."""
    return (moment - _EPOCH) // _MICROSECOND


__all__ = [
    "DEMAND_RESPONSE_KIND",
    "NEVER_US",
    "BaselineColumns",
    "DeliveredEvent",
    "EventWindow",
    "Transaction",
    "delivered_event",
    "delivered_events",
    "microseconds",
    "session_delivered_wh",
]
