"""The capacity market: pay-as-clear clearing and what a commitment pays, by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2ghub.settlement.market import Bid, Offer, clear, commitment_amounts

HOUR = datetime(2025, 7, 16, 11, tzinfo=UTC)


def _d(value: str) -> Decimal:
    return Decimal(value)


def test_the_marginal_offer_sets_the_price_everyone_is_paid() -> None:
    # Demand: 100 kW worth 50 CNY/MW-h, 100 more worth 20. Offers: the aggregator 80 kW at
    # 10, a second seller 60 at 15, a third 100 at 30. The first two fill 140 kW; 30 is
    # above the 20 the rest is worth, so the price is 15 and the third sells nothing.
    cleared = clear(
        start=HOUR,
        product="regulation",
        offers=[
            Offer("aggregator", 80, _d("10")),
            Offer("plant", 60, _d("15")),
            Offer("battery", 100, _d("30")),
        ],
        demand=[Bid(100, _d("50")), Bid(100, _d("20"))],
    )
    assert cleared.price_cny_per_mw_h == Decimal(15)
    assert cleared.cleared_kw == 140
    assert cleared.accepted_kw == {"aggregator": 80, "plant": 60}
    assert cleared.accepted("battery") == 0


def test_offers_at_the_marginal_price_share_pro_rata() -> None:
    # 50 kW of demand over 30 + 60 kW at one price: 16.7 and 33.3, in whole kW 17 and 33
    # (the larger remainder, 1500 mod 90 = 60 against 30, gets the last kW).
    cleared = clear(
        start=HOUR,
        product="demand_response",
        offers=[Offer("a", 30, _d("10")), Offer("b", 60, _d("10"))],
        demand=[Bid(50, _d("40"))],
    )
    assert cleared.accepted_kw == {"a": 17, "b": 33}
    assert cleared.price_cny_per_mw_h == Decimal(10)


def test_nothing_clears_when_every_offer_is_dearer_than_the_demand() -> None:
    cleared = clear(
        start=HOUR,
        product="regulation",
        offers=[Offer("aggregator", 500, _d("60"))],
        demand=[Bid(1000, _d("55"))],
    )
    assert cleared.cleared_kw == 0
    assert cleared.accepted_kw == {}
    assert cleared.price_cny_per_mw_h == Decimal(0)


def test_bad_offers_are_refused() -> None:
    with pytest.raises(ValueError, match=r"an offer's capacity_kw must be >= 0, got -1"):
        Offer("aggregator", -1, _d("1"))
    with pytest.raises(ValueError, match=r"a demand step's price_cny_per_mw_h must be >= 0"):
        Bid(10, _d("-0.5"))


def test_a_commitment_pays_by_performance_less_the_penalty() -> None:
    # 2 MW for an hour at 10 CNY/MW-h with a score of 0.9: 18.00 CNY; 100 kW missed at a
    # 20 CNY/MW-h penalty: 2.00 CNY.
    amounts = commitment_amounts(
        accepted_kw=2000,
        hours=Decimal(1),
        price_cny_per_mw_h=_d("10"),
        performance=_d("0.9"),
        missed_kw=Decimal(100),
        penalty_cny_per_mw_h=_d("20"),
    )
    assert amounts.capacity_cny == _d("18.00")
    assert amounts.penalty_cny == _d("2.00")
    assert amounts.net_cny == _d("16.00")


def test_a_commitment_rounds_each_line_to_the_fen() -> None:
    # 333 kW x 12.345 CNY/MW-h x 1 h = 4.110885 -> 4.11; 7 kW x 15 -> 0.105 -> 0.11 (half up).
    amounts = commitment_amounts(
        accepted_kw=333,
        hours=Decimal(1),
        price_cny_per_mw_h=_d("12.345"),
        performance=Decimal(1),
        missed_kw=Decimal(7),
        penalty_cny_per_mw_h=_d("15"),
    )
    assert amounts.capacity_cny == _d("4.11")
    assert amounts.penalty_cny == _d("0.11")
    with pytest.raises(ValueError, match=r"missed_kw must be within 0..333, got 400"):
        commitment_amounts(
            accepted_kw=333,
            hours=Decimal(1),
            price_cny_per_mw_h=_d("1"),
            performance=Decimal(1),
            missed_kw=Decimal(400),
            penalty_cny_per_mw_h=_d("1"),
        )


PRICES = st.integers(0, 100).map(Decimal)
STEPS = st.tuples(st.integers(0, 500), PRICES)


@settings(max_examples=300, deadline=None)
@given(
    offers=st.lists(st.tuples(st.sampled_from("abcd"), STEPS), max_size=8),
    demand=st.lists(STEPS, max_size=5),
)
def test_clearing_trades_only_what_both_sides_accept(
    offers: list[tuple[str, tuple[int, Decimal]]], demand: list[tuple[int, Decimal]]
) -> None:
    offered = [Offer(seller, kw, price) for seller, (kw, price) in offers]
    bids = [Bid(kw, price) for kw, price in demand]
    cleared = clear(start=HOUR, product="regulation", offers=offered, demand=bids)
    assert sum(cleared.accepted_kw.values()) == cleared.cleared_kw
    assert cleared.cleared_kw <= sum(b.capacity_kw for b in bids)
    for seller in "abcd":
        own = [o for o in offered if o.seller == seller]
        assert cleared.accepted(seller) <= sum(o.capacity_kw for o in own)
        # Every kW offered below the price is sold; nothing above it is.
        below = sum(o.capacity_kw for o in own if o.price_cny_per_mw_h < cleared.price_cny_per_mw_h)
        at_most = sum(
            o.capacity_kw for o in own if o.price_cny_per_mw_h <= cleared.price_cny_per_mw_h
        )
        if cleared.cleared_kw:
            assert below <= cleared.accepted(seller) <= at_most
    # Demand worth at least the price is served unless supply ran out at or below it.
    if cleared.cleared_kw:
        worth = sum(
            b.capacity_kw for b in bids if b.price_cny_per_mw_h > cleared.price_cny_per_mw_h
        )
        cheap = sum(
            o.capacity_kw for o in offered if o.price_cny_per_mw_h <= cleared.price_cny_per_mw_h
        )
        assert cleared.cleared_kw >= min(worth, cheap)
