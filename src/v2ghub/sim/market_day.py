"""The twin's day-ahead market: offer the fleet's headroom, clear, commit, then settle.

Before a city's day is simulated, the aggregator plans the whole day ahead (the fast
planner on the day-ahead problem: every session, as booked) and reads, at the top of each
traded hour, the headroom that plan leaves for an hour (:mod:`v2ghub.planning.reserve`,
the same arithmetic the regulation service commits by). It offers ``offer_share`` of it:
the symmetric capacity for regulation, the room downwards for demand response. Each hour
and product clears pay-as-clear against the scenario's demand and other sellers
(:mod:`v2ghub.settlement.market`). What the aggregator sold becomes commitments every
planner of the city must then honour: regulation capacity the regulation service follows
the signal with (and the planner keeps from the start of the day), and demand-response
events of the size sold.

After the run each commitment is settled (:func:`market_outcomes`): regulation pays the
accepted capacity times the clearing price times the hour's score, less a penalty for
the capacity the fleet could not hold at the top of the hour; demand response pays it
times the share of the committed energy delivered, less a penalty for the energy short.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
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
from v2ghub.sim.run_state import SimulationRun
from v2ghub.units import KW_PER_MW

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Traded:
    """One hour and product: the aggregator's offer and how the market cleared."""

    clearing: Clearing
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


def clear_day(case: CityCase, market: MarketSettings) -> MarketDay:
    """Offer the city's day-ahead headroom in every traded hour and clear it."""
    problem = case_day_ahead_problem(case)
    power_kw = FastPlanner().plan(problem).power_kw
    zone = ZoneInfo(case.tariff.timezone)
    day = case.grid.start.astimezone(zone).date()
    step_s = case.grid.step.total_seconds()
    vehicles = case.fleet.n_sessions
    traded = []
    products: tuple[tuple[Product, ProductMarket | None], ...] = (
        ("regulation", market.regulation),
        ("demand_response", market.demand_response),
    )
    for product, rules in products:
        if rules is None:
            continue
        for hour in rules.hours:  # a few traded hours, never vehicles
            start = datetime(day.year, day.month, day.day, hour, tzinfo=zone)
            step = round((start - case.grid.start).total_seconds() / step_s)
            if not 0 <= step < problem.grid.length:
                continue
            room = plan_headroom(problem, power_kw, step)
            available = (
                min(room.lower_total_kw, room.raise_total_kw)
                if product == "regulation"
                else room.lower_total_kw
            )
            offered = int(market.offer_share * available)  # whole kW, rounded down
            offers = [Offer(AGGREGATOR, offered, rules.offer_price_cny_per_mw_h)] + [
                Offer(s.seller, s.capacity_kw(vehicles), s.price_cny_per_mw_h) for s in rules.supply
            ]
            demand = [Bid(s.capacity_kw(vehicles), s.price_cny_per_mw_h) for s in rules.demand]
            clearing = clear(start=start, product=product, offers=offers, demand=demand)
            traded.append(
                Traded(clearing=clearing, offered_kw=offered, penalty_factor=rules.penalty_factor)
            )
    return MarketDay(traded=tuple(traded))


@dataclass(frozen=True)
class MarketOutcome:
    """A commitment as it turned out, and what it pays (CNY, exact)."""

    start: datetime
    product: Product
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
