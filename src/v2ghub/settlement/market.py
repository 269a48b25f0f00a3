"""A capacity market for grid services: offers, pay-as-clear clearing, what a commitment pays.

Each market interval (an hour) and product (``regulation``: symmetric capacity;
``demand_response``: load reduction) the grid operator buys capacity along a demand
curve (steps of kW it would take at up to a price) and sellers offer steps of kW at a
price. Clearing is pay-as-clear (uniform price):

1. offers are taken in price order (cheapest first) and the demand steps in the order the
   operator values them (dearest first), as long as the next offer's price is at most the
   value of the demand step it would serve;
2. the clearing price is the price of the last offer taken (the marginal offer); every
   accepted kW is paid that price;
3. offers at the marginal price share what the marginal demand leaves, pro rata to their
   kW (in whole kW, the remainder to the larger offers first).

Quantities are whole kW, prices exact ``Decimal`` CNY per MW and hour; a commitment of
``kW`` for ``h`` hours at price ``P`` is worth ``kW * P * h / 1000`` CNY, rounded to the
fen once per line (:mod:`v2ghub.settlement.money`).

What a commitment earns (:func:`commitment_amounts`): the capacity payment scaled by
performance (the regulation score, or for demand response the share of the committed
energy delivered), less a penalty per kW-hour not delivered. Both rates are data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from v2ghub.settlement.money import round_fen
from v2ghub.units import KW_PER_MW

Product = Literal["regulation", "demand_response"]
PRODUCTS: tuple[Product, ...] = ("regulation", "demand_response")
AGGREGATOR = "aggregator"


@dataclass(frozen=True)
class Offer:
    """A seller's step: up to ``capacity_kw`` at ``price_cny_per_mw_h`` or more."""

    seller: str
    capacity_kw: int
    price_cny_per_mw_h: Decimal

    def __post_init__(self) -> None:
        if self.capacity_kw < 0:
            raise ValueError(f"an offer's capacity_kw must be >= 0, got {self.capacity_kw}")
        if self.price_cny_per_mw_h < 0:
            raise ValueError(
                f"an offer's price_cny_per_mw_h must be >= 0, got {self.price_cny_per_mw_h}"
            )


@dataclass(frozen=True)
class Bid:
    """A step of the operator's demand: up to ``capacity_kw`` at up to the price."""

    capacity_kw: int
    price_cny_per_mw_h: Decimal

    def __post_init__(self) -> None:
        if self.capacity_kw < 0:
            raise ValueError(f"a demand step's capacity_kw must be >= 0, got {self.capacity_kw}")
        if self.price_cny_per_mw_h < 0:
            raise ValueError(
                f"a demand step's price_cny_per_mw_h must be >= 0, got {self.price_cny_per_mw_h}"
            )


@dataclass(frozen=True)
class Clearing:
    """One interval and product, cleared: the uniform price and what each seller sold."""

    start: datetime
    product: Product
    price_cny_per_mw_h: Decimal
    cleared_kw: int
    accepted_kw: dict[str, int]

    def accepted(self, seller: str) -> int:
        """kW of ``seller``'s offers accepted (0 if none)."""
        return self.accepted_kw.get(seller, 0)


def clear(
    *, start: datetime, product: Product, offers: Sequence[Offer], demand: Sequence[Bid]
) -> Clearing:
    """Clear one interval (see the module docstring)."""
    supply = sorted((o for o in offers if o.capacity_kw > 0), key=lambda o: o.price_cny_per_mw_h)
    wanted = sorted((b for b in demand if b.capacity_kw > 0), key=lambda b: -b.price_cny_per_mw_h)
    # Walk the two curves: how many kW can be traded, and the marginal offer's price.
    cleared = 0
    price = Decimal(0)
    demand_left = [b.capacity_kw for b in wanted]
    d = 0
    for offer in supply:  # offers and demand steps are few: a walk is clearest
        left = offer.capacity_kw
        while left > 0 and d < len(wanted):
            if offer.price_cny_per_mw_h > wanted[d].price_cny_per_mw_h:
                d = len(wanted)  # this offer is dearer than any demand left
                break
            take = min(left, demand_left[d])
            left -= take
            demand_left[d] -= take
            cleared += take
            price = offer.price_cny_per_mw_h
            if demand_left[d] == 0:
                d += 1
        if d >= len(wanted):
            break
    accepted: dict[str, int] = {}
    if cleared > 0:
        below = [o for o in supply if o.price_cny_per_mw_h < price]
        marginal = [o for o in supply if o.price_cny_per_mw_h == price]
        for o in below:
            accepted[o.seller] = accepted.get(o.seller, 0) + o.capacity_kw
        rest = cleared - sum(o.capacity_kw for o in below)
        for o, kw in zip(marginal, _pro_rata(rest, [o.capacity_kw for o in marginal]), strict=True):
            if kw:
                accepted[o.seller] = accepted.get(o.seller, 0) + kw
    return Clearing(
        start=start,
        product=product,
        price_cny_per_mw_h=price,
        cleared_kw=cleared,
        accepted_kw=accepted,
    )


def _pro_rata(total: int, sizes: Sequence[int]) -> list[int]:
    """``total`` split in whole units in proportion to ``sizes`` (largest remainders first,
    then the larger size, then the earlier)."""
    whole = sum(sizes)
    if whole == 0:
        return [0 for _ in sizes]
    shares = [total * s // whole for s in sizes]
    remainders = sorted(
        range(len(sizes)), key=lambda i: (-(total * sizes[i] % whole), -sizes[i], i)
    )
    for i in remainders[: total - sum(shares)]:
        shares[i] += 1
    return shares


@dataclass(frozen=True)
class CommitmentAmounts:
    """What one accepted commitment pays: the payment earned and the penalty, CNY."""

    capacity_cny: Decimal
    penalty_cny: Decimal

    @property
    def net_cny(self) -> Decimal:
        """Payment less penalty."""
        return self.capacity_cny - self.penalty_cny


def commitment_amounts(
    *,
    accepted_kw: int,
    hours: Decimal,
    price_cny_per_mw_h: Decimal,
    performance: Decimal,
    missed_kw: Decimal,
    penalty_cny_per_mw_h: Decimal,
) -> CommitmentAmounts:
    """The capacity payment ``accepted * price * hours * performance`` and the penalty
    ``missed * penalty * hours`` (kW, so each over 1000), each rounded to the fen.

    ``performance`` is within 0..1 (the regulation score; for demand response, the
    energy delivered over the energy committed, at most 1); ``missed_kw`` is the
    capacity not delivered (0..accepted).
    """
    if not Decimal(0) <= performance <= Decimal(1):
        raise ValueError(f"performance must be within 0..1, got {performance}")
    if not Decimal(0) <= missed_kw <= accepted_kw:
        raise ValueError(f"missed_kw must be within 0..{accepted_kw}, got {missed_kw}")
    per_mw = Decimal(KW_PER_MW)
    return CommitmentAmounts(
        capacity_cny=round_fen(accepted_kw * price_cny_per_mw_h * hours * performance / per_mw),
        penalty_cny=round_fen(missed_kw * penalty_cny_per_mw_h * hours / per_mw),
    )
