"""Regulation hours committed without a market, paid at the city's rate card.

When the twin offers frequency regulation itself (``v2ghub simulate --regulation``), each
offered hour commits a symmetric capacity and is scored (:mod:`v2ghub.sim.regulation_service`);
``regulation.json`` lists those hours (:func:`v2ghub.report.outputs.write_regulation_json`).
An hour sold ahead in the day-ahead market is paid by its sale (``market.json``,
:mod:`~v2ghub.settlement.service_lines`) and never here. Each other hour is paid two
amounts, each rounded once to the fen, half away from zero
(:func:`~v2ghub.settlement.money.round_fen`):

    capacity_cny = capacity_mw x 1 h x regulation_capacity_cny_per_mw_h x performance
    mileage_cny  = mileage_mw x regulation_mileage_cny_per_mw x performance

where ``capacity_mw`` is the capacity committed for the hour and ``mileage_mw`` the
signal's mileage in the hour times it (both in whole kW), ``performance`` the hour's
composite score (0-1, four decimals) and the rates the city's
(:mod:`~v2ghub.settlement.rates`, ``data/settlement.toml``). Each amount is a
`HourPayment` in stream ``regulation_capacity`` or ``regulation_mileage``, allocated to
the sessions by plugged time in the hour and shared by contract as a market's regulation
sale is. Example: 0.250 MW committed at 10 CNY/MW-h with performance 0.8 earns
``0.250 x 10 x 0.8 = 2.00`` CNY; a mileage of 3.200 MW at 12 CNY/MW earns
``3.200 x 12 x 0.8 = 30.72`` CNY.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from v2ghub.settlement.money import FEN, round_fen
from v2ghub.settlement.rates import RateCard
from v2ghub.settlement.service_lines import SALE_DURATION, HourPayment
from v2ghub.units import KW_PER_MW

CAPACITY_STREAM = "regulation_capacity"
MILEAGE_STREAM = "regulation_mileage"


@dataclass(frozen=True)
class CommittedHour:
    """One hour of regulation the twin committed without a market (a row of
    ``regulation.json``), with whole-kW quantities.

    Attributes
    ----------
    city, planner
        The run's city and planner.
    start
        The hour's start, timezone-aware.
    capacity_kw
        The symmetric capacity committed for the hour, whole kW.
    mileage_kw
        The signal's mileage in the hour times the capacity, whole kW.
    performance
        The hour's composite score, 0-1.
    """

    city: str
    planner: str
    start: datetime
    capacity_kw: int
    mileage_kw: int
    performance: Decimal

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError(f"start must be timezone-aware, got {self.start!r}")
        for name in ("capacity_kw", "mileage_kw"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not Decimal(0) <= self.performance <= Decimal(1):
            raise ValueError(f"performance must be within 0..1, got {self.performance}")

    @property
    def label(self) -> str:
        """The hour as people say it, e.g. ``10:00-11:00``."""
        return f"{self.start:%H:%M}-{self.start + SALE_DURATION:%H:%M}"

    def payments(self, card: RateCard) -> tuple[HourPayment, HourPayment]:
        """The hour's capacity and mileage payments at ``card``'s rates (module docstring)."""
        capacity_rate = card.regulation_capacity_cny_per_mw_h
        mileage_rate = card.regulation_mileage_cny_per_mw
        capacity_cny = _paid_cny(self.capacity_kw, capacity_rate, self.performance)
        mileage_cny = _paid_cny(self.mileage_kw, mileage_rate, self.performance)
        when = self.start.isoformat()
        performance = f"performance {self.performance}"
        return (
            HourPayment(
                payment_id=f"regulation:capacity:{when}",
                stream=CAPACITY_STREAM,
                start=self.start,
                amount_fen=int(capacity_cny / FEN),
                summary=(
                    f"regulation {self.label} committed without a market "
                    f"({_mw(self.capacity_kw)} MW for 1 h at {capacity_rate} CNY/MW-h, "
                    f"{performance}: {capacity_cny} CNY)"
                ),
            ),
            HourPayment(
                payment_id=f"regulation:mileage:{when}",
                stream=MILEAGE_STREAM,
                start=self.start,
                amount_fen=int(mileage_cny / FEN),
                summary=(
                    f"regulation mileage {self.label} committed without a market "
                    f"({_mw(self.mileage_kw)} MW at {mileage_rate} CNY/MW, "
                    f"{performance}: {mileage_cny} CNY)"
                ),
            ),
        )


def _paid_cny(quantity_kw: int, rate_per_mw: Decimal, performance: Decimal) -> Decimal:
    """``quantity x rate x performance`` (kW, so over 1000), rounded once to the fen."""
    return round_fen(Decimal(quantity_kw) * rate_per_mw * performance / KW_PER_MW)


def _mw(kw: int) -> str:
    """Whole kW as exact MW text with three decimals (``250`` -> ``"0.250"``)."""
    return str(Decimal(kw).scaleb(-3))


__all__ = ["CAPACITY_STREAM", "MILEAGE_STREAM", "CommittedHour"]
