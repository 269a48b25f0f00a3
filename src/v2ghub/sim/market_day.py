"""The twin's day-ahead market: offer what the fleet can deliver, clear, commit, then settle.

Before a city's day is simulated, the aggregator offers ``offer_share`` of what it
forecasts the fleet can deliver in each traded hour:

- **regulation** (:func:`clear_regulation`, once per city): the symmetric headroom the
  day-ahead plan leaves for the hour (the fast planner on the day-ahead problem: every
  session, as booked), read by :mod:`v2ghub.planning.reserve` with the arithmetic the
  regulation service commits by at the top of the hour; every planner then keeps what
  was sold from the start of the day;
- **demand response** (:func:`clear_demand_response`, per planner): the reduction the
  demand-response allocation itself delivers in every step of the hour, against the
  baseline that planner's run will measure from, forecast by the twin
  (:mod:`v2ghub.sim.market_forecast`). A sale is then delivered in full whenever the fleet
  behaves as forecast; what it does not deliver is forecast error.

Each hour and product clears pay-as-clear against the scenario's demand and other sellers
(:mod:`v2ghub.settlement.market`). What the aggregator sold becomes commitments the run
must then honour: regulation capacity the regulation service follows the signal with,
and demand-response events of the size sold.

After the run each commitment is settled (:func:`market_outcomes`): regulation pays the
accepted capacity times the clearing price times the hour's score, less a penalty for
the capacity the fleet could not hold at the top of the hour; demand response pays it
times the share of the committed energy delivered, less a penalty for the energy short.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

from v2ghub.model.case import CityCase
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.reserve import plan_headroom
from v2ghub.regulation.demand_response import DemandResponseEvent
from v2ghub.scenarios.day_ahead import case_day_ahead_problem
from v2ghub.scenarios.market_config import MarketSettings, ProductMarket
from v2ghub.settlement.market import (
    AGGREGATOR,
    Bid,
    Clearing,
    CommitmentAmounts,
    Offer,
    Product,
    clear,
    commitment_amounts,
)
from v2ghub.sim.demand_response_service import EventResult
from v2ghub.sim.market_forecast import fleet_ceiling_kw
from v2ghub.sim.run_state import SimulationRun
from v2ghub.units import KW_PER_MW

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Traded:
    """One hour and product: what the forecast found the fleet can deliver (kW), the
    aggregator's offer (``offer_share`` of it, whole kW) and how the market cleared."""

    clearing: Clearing
    forecast_kw: float
    offered_kw: int
    penalty_factor: Decimal

    @property
    def sold_kw(self) -> int:
        """kW of the aggregator's offer accepted."""
        return self.clearing.accepted(AGGREGATOR)


@dataclass(frozen=True)
class MarketDay:
    """A city's cleared day: every traded hour and product."""

    traded: tuple[Traded, ...]

    def regulation_commitments(self, timezone: str) -> dict[int, float]:
        """Regulation kW sold, by local hour (hours with a sale only)."""
        zone = ZoneInfo(timezone)
        return {
            t.clearing.start.astimezone(zone).hour: float(t.sold_kw)
            for t in self.traded
            if t.clearing.product == "regulation" and t.sold_kw > 0
        }

    def demand_response_events(self, city: str) -> tuple[DemandResponseEvent, ...]:
        """One event per hour of demand response sold, at the sale's size and price."""
        return tuple(
            DemandResponseEvent(
                start=t.clearing.start,
                end=t.clearing.start + HOUR,
                city=city,
                reduction_kw=float(t.sold_kw),
                price_cny_per_kwh=t.clearing.price_cny_per_mw_h / KW_PER_MW,
            )
            for t in self.traded
            if t.clearing.product == "demand_response" and t.sold_kw > 0
        )


class Forecast(Protocol):
    """What the fleet would deliver of demand response: the ``probes`` (one event an hour,
    at more than the fleet has) as its run would answer them, with ``regulation_kw`` sold
    (kW by local hour). :class:`~v2ghub.sim.market_forecast.TwinForecast` is the twin's."""

    def __call__(
        self, *, regulation_kw: Mapping[int, float], probes: Sequence[DemandResponseEvent]
    ) -> Sequence[EventResult]: ...


def traded_hours(case: CityCase, rules: ProductMarket) -> list[tuple[datetime, int]]:
    """Each traded hour of the case's day that its grid covers: (start, first step)."""
    zone = ZoneInfo(case.tariff.timezone)
    day = case.grid.start.astimezone(zone).date()
    step_s = case.grid.step.total_seconds()
    hours = []
    for hour in rules.hours:  # a few traded hours, never vehicles
        start = datetime(day.year, day.month, day.day, hour, tzinfo=zone)
        step = round((start - case.grid.start).total_seconds() / step_s)
        if 0 <= step < case.grid.length:
            hours.append((start, step))
    return hours


def probe_events(case: CityCase, market: MarketSettings) -> tuple[DemandResponseEvent, ...]:
    """One event per hour of demand response traded, asking for more than the fleet has
    (:func:`~v2ghub.sim.market_forecast.fleet_ceiling_kw`)."""
    if market.demand_response is None:
        return ()
    ceiling = fleet_ceiling_kw(case)
    return tuple(
        DemandResponseEvent(start=start, end=start + HOUR, city=case.city, reduction_kw=ceiling)
        for start, _ in traded_hours(case, market.demand_response)
    )


def _traded(
    case: CityCase,
    *,
    start: datetime,
    product: Product,
    rules: ProductMarket,
    available_kw: float,
    offer_share: float,
) -> Traded:
    """The aggregator's offer of ``offer_share`` of ``available_kw``, cleared."""
    vehicles = case.fleet.n_sessions
    available_kw = max(available_kw, 0.0)
    offered = int(offer_share * available_kw)  # whole kW, rounded down
    offers = [Offer(AGGREGATOR, offered, rules.offer_price_cny_per_mw_h)] + [
        Offer(s.seller, s.capacity_kw(vehicles), s.price_cny_per_mw_h) for s in rules.supply
    ]
    demand = [Bid(s.capacity_kw(vehicles), s.price_cny_per_mw_h) for s in rules.demand]
    clearing = clear(start=start, product=product, offers=offers, demand=demand)
    return Traded(
        clearing=clearing,
        forecast_kw=available_kw,
        offered_kw=offered,
        penalty_factor=rules.penalty_factor,
    )


def clear_regulation(case: CityCase, market: MarketSettings) -> MarketDay:
    """Offer the day-ahead plan's symmetric headroom in every regulation hour and clear."""
    rules = market.regulation
    if rules is None:
        return MarketDay(traded=())
    problem = case_day_ahead_problem(case)
    power_kw = FastPlanner().plan(problem).power_kw
    traded = []
    for start, step in traded_hours(case, rules):
        room = plan_headroom(problem, power_kw, step)
        traded.append(
            _traded(
                case,
                start=start,
                product="regulation",
                rules=rules,
                available_kw=min(room.lower_total_kw, room.raise_total_kw),
                offer_share=market.offer_share,
            )
        )
    return MarketDay(traded=tuple(traded))


def clear_demand_response(
    day: MarketDay, case: CityCase, market: MarketSettings, *, forecast: Forecast
) -> MarketDay:
    """``day`` with every demand-response hour offered at what ``forecast`` says the
    allocation holds through the hour, and cleared."""
    rules = market.demand_response
    probes = probe_events(case, market)
    if rules is None or not probes:
        return day
    answered = forecast(
        regulation_kw=day.regulation_commitments(case.tariff.timezone), probes=probes
    )
    held_kw = {result.start: result.held_kw for result in answered}
    traded = [
        _traded(
            case,
            start=probe.start,
            product="demand_response",
            rules=rules,
            available_kw=held_kw.get(probe.start, 0.0),
            offer_share=market.offer_share,
        )
        for probe in probes
    ]
    return MarketDay(traded=(*day.traded, *traded))


def clear_day(case: CityCase, market: MarketSettings, *, forecast: Forecast) -> MarketDay:
    """Clear regulation (:func:`clear_regulation`), then demand response
    (:func:`clear_demand_response`) with the regulation sold."""
    return clear_demand_response(clear_regulation(case, market), case, market, forecast=forecast)


@dataclass(frozen=True)
class MarketOutcome:
    """A commitment as it turned out, and what it pays (CNY, exact); ``forecast_kw`` is
    what the forecast found the fleet could deliver (the offer is a share of it)."""

    start: datetime
    product: Product
    forecast_kw: float
    offered_kw: int
    sold_kw: int
    price_cny_per_mw_h: Decimal
    performance: Decimal
    missed_kw: Decimal
    amounts: CommitmentAmounts


def market_outcomes(day: MarketDay, run: SimulationRun) -> tuple[MarketOutcome, ...]:
    """Settle every sale of the day against what the run did."""
    regulation = {h.start: h for h in run.regulation_hours}
    events = {e.start: e for e in run.demand_response_events}
    out = []
    for t in day.traded:
        if t.sold_kw == 0:
            continue
        sold = Decimal(t.sold_kw)
        if t.clearing.product == "regulation":
            hour = regulation.get(t.clearing.start)
            score = hour.score.composite if hour is not None and hour.score is not None else 0.0
            held = min(hour.raise_kw, hour.lower_kw) if hour is not None else 0.0
            performance = _fraction(score)
            missed = _kw(max(float(sold) - held, 0.0))
        else:
            event = events.get(t.clearing.start)
            requested = event.requested_kwh if event is not None else 0.0
            delivered = event.delivered_kwh if event is not None else 0.0
            performance = _fraction(delivered / requested if requested > 0 else 0.0)
            missed = _kw(max(requested - delivered, 0.0))  # over one hour: kWh = kW
        missed = min(missed, sold)
        price = t.clearing.price_cny_per_mw_h
        out.append(
            MarketOutcome(
                start=t.clearing.start,
                product=t.clearing.product,
                forecast_kw=t.forecast_kw,
                offered_kw=t.offered_kw,
                sold_kw=t.sold_kw,
                price_cny_per_mw_h=price,
                performance=performance,
                missed_kw=missed,
                amounts=commitment_amounts(
                    accepted_kw=t.sold_kw,
                    hours=Decimal(1),
                    price_cny_per_mw_h=price,
                    performance=performance,
                    missed_kw=missed,
                    penalty_cny_per_mw_h=price * t.penalty_factor,
                ),
            )
        )
    return tuple(out)


def _fraction(value: float) -> Decimal:
    """A 0..1 share as an exact Decimal with four places (scores are not finer)."""
    return Decimal(str(round(min(max(value, 0.0), 1.0), 4)))


def _kw(value: float) -> Decimal:
    """kW to the watt, exact."""
    return Decimal(str(round(value, 3)))
