"""Ledger lines for a period's grid services: demand response and day-ahead market sales.

The twin records, per session, the energy it delivered below the baseline in demand
response events over the day (``dr_delivered_kwh`` in ``sessions.parquet``), and, per
city and planner, what its day-ahead market sold (``market.json``: hour, product, what
the sale earned and was charged). Rules, in the order they apply:

1. **Which events pay how.** A session plugged in during an hour in which the market
   sold demand response is paid through that sale (rule 3), for all of its delivered
   energy; any other session with delivered energy answered an event the grid operator
   called, and is paid per kWh (rule 2). So no kWh is paid twice. The twin records a
   session's delivered energy for the day, not per event: a session that answered both a
   called event and a sold hour is paid by the sale alone (the runner keeps the two
   apart in time; with ``--market`` alone there are no called events).
2. **Called demand response.** The grid pays the aggregator each session's delivered
   energy (integer Wh, :func:`~v2ghub.settlement.money.energy_wh`) at the city's demand
   response rate, rounded to the fen per session; shared with the owner and the site's
   operator by contract (stream ``demand_response``).
3. **Market sales.** A sale's ``capacity_cny`` (already performance-scaled and rounded by
   the market) is revenue the grid pays the aggregator: stream ``regulation_capacity``
   for regulation, ``demand_response`` for demand response. It is allocated to sessions
   to the fen by largest remainder (the allocations add up to it exactly; ties go to the
   earlier session), weighted by

   - demand response: each session's delivered energy (Wh) if it was plugged in during
     the sold hour, else 0;
   - regulation: each session's plugged time within the sold hour, so equal per
     vehicle-hour (the twin does not record each vehicle's headroom).

   Each session's part is then shared by contract like any shared stream. If no session
   qualifies, the aggregator keeps the whole payment as its fee (the line's cause says
   so).
4. **Penalties.** A sale's ``penalty_cny`` is paid by the aggregator to the grid in the
   sale's stream, kind ``market-penalty``, and is not shared: the aggregator carries the
   risk of its offers.
5. **Other hourly payments** (`HourPayment`: regulation committed without a market,
   :mod:`~v2ghub.settlement.regulation_hours`) are allocated as a regulation sale is, by
   plugged time in the hour, and shared by contract; the aggregator keeps one that no
   session served. The live aggregator's regulation hours count, instead of plugged time,
   each session's time following the commitment's signal (:func:`add_served_payment`).

Keys: a session's lines carry its id (kinds ``demand_response`` and
``market:PRODUCT:START`` or another payment's id, with ``:owner-share`` /
``:operator-share``); a sale's own lines (penalty, payment kept) carry
``market:PRODUCT:START`` as their id, another payment's its own id. A sale covers
one hour; its lines carry no rate (the clearing price and performance are in the cause).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from v2ghub.settlement.contracts import Contracts
from v2ghub.settlement.market import Product
from v2ghub.settlement.money import amount_fen, energy_wh, fen_to_cny
from v2ghub.settlement.rates import RateCard
from v2ghub.settlement.streams import (
    IntArray,
    LineColumns,
    StrArray,
    add_shared_revenue,
    column_text,
    kwh_text,
    rate_nano_of,
)
from v2ghub.units import MICROSECONDS_PER_SECOND, SECONDS_PER_HOUR

SALE_DURATION = timedelta(hours=1)
"""Every market sale covers one hour (:mod:`v2ghub.sim.market_day`)."""

SESSION_COLUMNS = (
    "session_id",
    "site_id",
    "charger_kind",
    "arrival",
    "departure",
    "dr_delivered_kwh",
)
"""The ``sessions.parquet`` columns the grid-service lines read."""

STREAM_OF_PRODUCT: dict[Product, str] = {
    "regulation": "regulation_capacity",
    "demand_response": "demand_response",
}
PENALTY_KIND = "market-penalty"
KEPT_KIND = "market-capacity"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MICROSECONDS_PER_MILLIHOUR = SECONDS_PER_HOUR * MICROSECONDS_PER_SECOND // 1000
_INT64_SAFE = 2**62


@dataclass(frozen=True)
class MarketSale:
    """One sale of a run's day-ahead market (a row of ``market.json``), typed.

    ``capacity_fen`` is what the sale earned (the capacity payment scaled by performance,
    rounded by the market) and ``penalty_fen`` what it was charged, integer fen.
    """

    city: str
    planner: str
    start: datetime
    product: Product
    sold_kw: int
    price_cny_per_mw_h: Decimal
    performance: Decimal
    missed_kw: Decimal
    capacity_fen: int
    penalty_fen: int

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError(f"start must be timezone-aware, got {self.start!r}")
        if self.product not in STREAM_OF_PRODUCT:
            raise ValueError(f"product must be one of {', '.join(STREAM_OF_PRODUCT)}")
        for name in ("capacity_fen", "penalty_fen"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def stream(self) -> str:
        """The ledger stream the sale pays in."""
        return STREAM_OF_PRODUCT[self.product]

    @property
    def sale_id(self) -> str:
        """The id of the sale's own lines, e.g. ``market:regulation:2025-07-16T10:00:00+08:00``."""
        return f"market:{self.product}:{self.start.isoformat()}"

    @property
    def label(self) -> str:
        """The product and hour as people say it, e.g. ``demand response 18:00-19:00``."""
        end = self.start + SALE_DURATION
        return f"{self.product.replace('_', ' ')} {self.start:%H:%M}-{end:%H:%M}"

    def summary(self) -> str:
        """What was sold and earned, for the causes of its lines."""
        return (
            f"{self.label} sold in the day-ahead market ({self.sold_kw} kW at "
            f"{self.price_cny_per_mw_h} CNY/MW-h, performance {self.performance}: "
            f"{fen_to_cny(self.capacity_fen)} CNY)"
        )

    def plugged_us(self, arrival_us: IntArray, departure_us: IntArray) -> IntArray:
        """Each session's plugged time within the sale's hour, microseconds."""
        return plugged_in_hour_us(self.start, arrival_us, departure_us)

    @property
    def payment(self) -> HourPayment:
        """What the sale earned, as a payment for its hour."""
        return HourPayment(
            payment_id=self.sale_id,
            stream=self.stream,
            start=self.start,
            amount_fen=self.capacity_fen,
            summary=self.summary(),
            kept_kind=KEPT_KIND,
        )


@dataclass(frozen=True)
class HourPayment:
    """A payment the grid makes for one hour of a grid service, to be allocated to the
    sessions that served the hour and shared by contract.

    Attributes
    ----------
    payment_id
        The id of the payment's own lines and the kind of its sessions' lines, e.g.
        ``market:regulation:2025-07-16T10:00:00+08:00``.
    stream
        The ledger stream it pays in.
    start
        The hour's start (timezone-aware); the hour is :data:`SALE_DURATION` long.
    amount_fen
        What the grid pays, integer fen, ``>= 0`` (already rounded once, to the fen).
    summary
        What was delivered and earned, for the causes of its lines.
    kept_kind
        The kind of the line by which the aggregator keeps the payment when no session
        was plugged in during the hour.
    """

    payment_id: str
    stream: str
    start: datetime
    amount_fen: int
    summary: str
    kept_kind: str = "kept"

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError(f"start must be timezone-aware, got {self.start!r}")
        if self.amount_fen < 0:
            raise ValueError(f"amount_fen must be >= 0, got {self.amount_fen}")


def plugged_in_hour_us(start: datetime, arrival_us: IntArray, departure_us: IntArray) -> IntArray:
    """Each session's plugged time within the hour from ``start``, microseconds."""
    start_us = (start - _EPOCH) // _MICROSECOND
    end_us = start_us + SALE_DURATION // _MICROSECOND
    overlap = np.minimum(departure_us, end_us) - np.maximum(arrival_us, start_us)
    return np.asarray(np.maximum(overlap, 0), dtype=np.int64)


def allocate_fen(total_fen: int, weight: IntArray) -> IntArray:
    """``total_fen`` split in whole fen in proportion to ``weight`` (integers >= 0, not all
    0): each gets its exact share cut down to the fen, and the fen left over go one each
    to the largest remainders, the earlier on ties. The parts add up to ``total_fen``."""
    weights = np.asarray(weight, dtype=np.int64)
    whole = int(weights.sum())
    if total_fen < 0 or np.any(weights < 0) or whole <= 0:
        raise ValueError("allocate_fen needs total_fen >= 0 and weights >= 0, not all 0")
    if total_fen * int(weights.max()) > _INT64_SAFE:
        raise ValueError("an allocation is too large to compute exactly")
    exact = total_fen * weights  # fen * weight; / whole is the exact share
    parts = exact // whole
    left = total_fen - int(parts.sum())
    order = np.argsort(-(exact % whole), kind="stable")
    parts[order[:left]] += 1
    return np.asarray(parts, dtype=np.int64)


@dataclass(frozen=True)
class _Sessions:
    """One period's sessions as columns, with their parties as the meter names them."""

    session_id: StrArray
    site_id: StrArray
    charger_kind: StrArray
    arrival_us: IntArray
    departure_us: IntArray
    dr_wh: IntArray

    @staticmethod
    def of(table: pa.Table, dr_wh: IntArray) -> _Sessions:
        return _Sessions(
            session_id=column_text(table, "session_id"),
            site_id=column_text(table, "site_id"),
            charger_kind=column_text(table, "charger_kind"),
            arrival_us=_microseconds(table, "arrival"),
            departure_us=_microseconds(table, "departure"),
            dr_wh=dr_wh,
        )


def _dr_wh(table: pa.Table) -> IntArray:
    """The sessions' delivered demand response (Wh), checked: a number >= 0."""
    missing = [c for c in SESSION_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"session data lacks column(s) {', '.join(missing)}")
    dr_kwh = np.asarray(
        table.column("dr_delivered_kwh").to_numpy(zero_copy_only=False), dtype=np.float64
    )
    if not np.all(np.isfinite(dr_kwh) & (dr_kwh >= 0)):
        row = int(np.flatnonzero(~(np.isfinite(dr_kwh) & (dr_kwh >= 0)))[0])
        raise ValueError(f"session row {row + 1}: dr_delivered_kwh is not a number >= 0")
    return energy_wh(dr_kwh)


def _microseconds(table: pa.Table, name: str) -> IntArray:
    utc_us = table.column(name).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return np.asarray(utc_us.to_numpy(zero_copy_only=False), dtype=np.int64)


def add_service_lines(
    lines: LineColumns,
    *,
    sessions: pa.Table,
    sales: Sequence[MarketSale],
    card: RateCard,
    contracts: Contracts,
    payments: Sequence[HourPayment] = (),
) -> None:
    """Append one period's demand response and market lines (module docstring's rules).

    ``sessions`` are the period's rows of ``sessions.parquet`` (:data:`SESSION_COLUMNS`)
    and ``sales`` its city's and planner's sales. Each of ``payments`` (e.g. regulation
    committed without a market, :mod:`~v2ghub.settlement.regulation_hours`) is allocated
    as a regulation sale is: by plugged time in its hour (rule 3), then shared by contract.
    """
    dr_wh = _dr_wh(sessions)
    if not sales and not payments and not np.any(dr_wh > 0):
        return  # nothing to pay: a million sessions' ids are not even read
    fleet = _Sessions.of(sessions, dr_wh)
    plugged = [sale.plugged_us(fleet.arrival_us, fleet.departure_us) for sale in sales]
    in_sold_hour = np.zeros(fleet.dr_wh.shape[0], dtype=np.bool_)
    for sale, plugged_us in zip(sales, plugged, strict=True):
        if sale.product == "demand_response":
            in_sold_hour |= plugged_us > 0
    called = (fleet.dr_wh > 0) & ~in_sold_hour
    rate = card.demand_response_cny_per_kwh
    rate_text = np.full(int(called.sum()), str(rate))
    dr_wh = fleet.dr_wh[called]
    _add_shared(
        lines,
        fleet,
        chosen=called,
        stream="demand_response",
        kind="demand_response",
        quantity=dr_wh,
        rate=rate_text,
        revenue_fen=amount_fen(dr_wh, rate_nano_of(rate_text)),
        contracts=contracts,
        cause=np.char.add(
            np.char.add("demand response delivered below the baseline: ", kwh_text(dr_wh)),
            f" kWh at {rate} CNY/kWh",
        ),
    )
    for sale, plugged_us in zip(sales, plugged, strict=True):
        _add_shares(lines, fleet, sale.payment, _basis(sale, fleet, plugged_us), contracts)
        _add_payment_line(
            lines,
            sale.payment,
            kind=PENALTY_KIND,
            payer="aggregator",
            payee="grid",
            amount_fen=sale.penalty_fen,
            cause=f"penalty for {sale.label}: {sale.missed_kw} of {sale.sold_kw} kW sold not "
            "delivered; the aggregator carries the risk of its offers",
        )
    for payment in payments:
        plugged_us = plugged_in_hour_us(payment.start, fleet.arrival_us, fleet.departure_us)
        _add_shares(lines, fleet, payment, _plugged_time_basis(plugged_us), contracts)


def add_served_payment(
    lines: LineColumns,
    *,
    sessions: pa.Table,
    payment: HourPayment,
    served_us: IntArray,
    contracts: Contracts,
) -> None:
    """Append ``payment`` allocated by each session's time serving its hour instead of
    its plugged time (rule 5 otherwise): ``served_us`` (microseconds, one per row of
    ``sessions``), equal per vehicle-hour served, then shared by contract; the aggregator
    keeps a payment no session served. The live aggregator's regulation hours are paid so
    (:mod:`~v2ghub.settlement.live_settle`): only the sessions told to follow the
    commitment's signal served it, not every one plugged in."""
    fleet = _Sessions.of(sessions, _dr_wh(sessions))
    weight = np.asarray(served_us, dtype=np.int64)
    if weight.shape != fleet.session_id.shape or np.any(weight < 0):
        raise ValueError("served_us needs one time >= 0 per session")
    basis = _plugged_time_basis(weight, served="following the signal")
    _add_shares(lines, fleet, payment, basis, contracts)


def _add_payment_line(
    lines: LineColumns,
    payment: HourPayment,
    *,
    kind: str,
    payer: str,
    payee: str,
    amount_fen: int,
    cause: str,
) -> None:
    """One line of the payment itself (no session, no quantity, no rate)."""
    lines.add(
        session_id=np.array([payment.payment_id]),
        kind=np.array([kind]),
        payer=np.array([payer]),
        payee=np.array([payee]),
        stream=payment.stream,
        energy_wh=np.zeros(1, dtype=np.int64),
        rate=np.array([""]),
        amount_fen=np.array([amount_fen], dtype=np.int64),
        cause=np.array([cause]),
    )


@dataclass(frozen=True)
class _Basis:
    """How a sale's payment is allocated: a weight per session, the quantity its lines
    state (for the sessions with weight), how the cause puts it, and what it says when no
    session has weight."""

    weight: IntArray
    quantity: IntArray
    text: StrArray
    nobody: str


def _plugged_time_basis(plugged_us: IntArray, *, served: str = "plugged in") -> _Basis:
    """Equal per vehicle-hour plugged in during the hour (quantity 0, as the twin does not
    record each vehicle's headroom); ``served`` says what the time counted is."""
    half = _MICROSECONDS_PER_MILLIHOUR // 2
    millihours = (plugged_us + half) // _MICROSECONDS_PER_MILLIHOUR
    chosen = plugged_us > 0
    return _Basis(
        weight=plugged_us,
        quantity=np.zeros(int(chosen.sum()), dtype=np.int64),
        text=np.char.add(
            f"equally per vehicle-hour {served}: ",
            np.char.add(kwh_text(millihours[chosen]), f" of {_total(millihours)} vehicle-hours"),
        ),
        nobody=f"no session was {served} during the hour",
    )


def _basis(sale: MarketSale, fleet: _Sessions, plugged_us: IntArray) -> _Basis:
    """Regulation: by plugged time (:func:`_plugged_time_basis`); demand response: by the
    energy each session plugged in during the hour delivered (quantity: that energy, Wh)."""
    if sale.product == "regulation":
        return _plugged_time_basis(plugged_us)
    weight = np.asarray(np.where(plugged_us > 0, fleet.dr_wh, 0), dtype=np.int64)
    delivered = weight[weight > 0]
    return _Basis(
        weight=weight,
        quantity=delivered,
        text=np.char.add(
            "by energy delivered: ", np.char.add(kwh_text(delivered), f" of {_total(weight)} kWh")
        ),
        nobody="no session plugged in during the hour delivered energy",
    )


def _total(thousandths: IntArray) -> str:
    """A sum of thousandths as exact text with three decimals."""
    return str(kwh_text(np.array([int(thousandths.sum())]))[0])


def _add_shares(
    lines: LineColumns,
    fleet: _Sessions,
    payment: HourPayment,
    basis: _Basis,
    contracts: Contracts,
) -> None:
    """The payment allocated to the sessions with ``weight > 0`` and shared by contract;
    or, if there are none, kept by the aggregator as its fee."""
    if payment.amount_fen == 0:
        return
    chosen = basis.weight > 0
    if not chosen.any():
        _add_payment_line(
            lines,
            payment,
            kind=payment.kept_kind,
            payer="grid",
            payee="aggregator",
            amount_fen=payment.amount_fen,
            cause=f"{payment.summary}: {basis.nobody}, so the aggregator keeps it",
        )
        lines.fees_fen[payment.stream] = lines.fees_fen.get(payment.stream, 0) + payment.amount_fen
        return
    _add_shared(
        lines,
        fleet,
        chosen=chosen,
        stream=payment.stream,
        kind=payment.payment_id,
        quantity=basis.quantity,
        rate=np.full(basis.quantity.shape[0], ""),
        revenue_fen=allocate_fen(payment.amount_fen, basis.weight[chosen]),
        contracts=contracts,
        cause=np.char.add(f"{payment.summary}, shared ", basis.text),
    )


def _add_shared(
    lines: LineColumns,
    fleet: _Sessions,
    *,
    chosen: npt.NDArray[np.bool_],
    stream: str,
    kind: str,
    quantity: IntArray,
    rate: StrArray,
    revenue_fen: IntArray,
    contracts: Contracts,
    cause: StrArray,
) -> None:
    """Revenue the grid pays the aggregator for the ``chosen`` sessions, shared by contract."""
    session_id = fleet.session_id[chosen]
    site_id = fleet.site_id[chosen]
    share_index, table = contracts.shares(
        stream, site_id=site_id, charger_kind=fleet.charger_kind[chosen]
    )
    add_shared_revenue(
        lines,
        stream=stream,
        session_id=session_id,
        kind=np.full(session_id.shape[0], kind),
        owner=np.char.add("owner:", session_id),
        operator=np.char.add("operator:", site_id),
        quantity=quantity,
        rate=rate,
        revenue_fen=revenue_fen,
        share_index=share_index,
        table=table,
        cause=cause,
    )


__all__ = [
    "SALE_DURATION",
    "SESSION_COLUMNS",
    "STREAM_OF_PRODUCT",
    "HourPayment",
    "MarketSale",
    "add_served_payment",
    "add_service_lines",
    "allocate_fen",
    "plugged_in_hour_us",
]
