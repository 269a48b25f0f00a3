"""Time-of-use (TOU) tariffs with critical peaks, and the price paid for V2G discharge.

A tariff is a flat (base) price in CNY/kWh and, for every month and local hour, a period
kind (valley, flat, peak, critical peak) whose ratio multiplies the base price:

    import_price_cny_per_kwh(t) = base_price_cny_per_kwh * ratio[month(t), kind(t)]

Discharge (export) prices follow a separate rule, for example Guangdong's
``0.453 CNY/kWh * TOU ratio``. Prices are exact ``Decimal``; planners get float copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import IntEnum, StrEnum
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from v2ghub.model.time_grid import TimeGrid

MONTHS = 12
HOURS_PER_DAY = 24


class PeriodKind(IntEnum):
    """TOU period kinds, ordered from cheapest to dearest."""

    VALLEY = 0
    FLAT = 1
    PEAK = 2
    CRITICAL = 3


class DischargeRuleKind(StrEnum):
    """How the price paid for discharged energy is set."""

    TOU_RATIO = "tou_ratio"  # base_price_cny_per_kwh * the import tariff's ratio
    PER_PERIOD = "per_period"  # an explicit price per period kind
    IMPORT_PRICE = "import_price"  # the same as the import price at that time


@dataclass(frozen=True)
class DischargePriceRule:
    """The price paid per kWh discharged to the grid (measured at the charger)."""

    kind: DischargeRuleKind
    base_price_cny_per_kwh: Decimal = Decimal(0)
    period_prices_cny_per_kwh: tuple[Decimal, Decimal, Decimal, Decimal] | None = None

    def __post_init__(self) -> None:
        if self.base_price_cny_per_kwh < 0:
            raise ValueError(
                f"discharge base_price_cny_per_kwh must be >= 0, got {self.base_price_cny_per_kwh}"
            )
        if self.kind is DischargeRuleKind.PER_PERIOD:
            if self.period_prices_cny_per_kwh is None:
                raise ValueError("discharge rule 'per_period' needs period_prices_cny_per_kwh")
            if any(p < 0 for p in self.period_prices_cny_per_kwh):
                raise ValueError("discharge period prices must be >= 0")


@dataclass(frozen=True)
class Tariff:
    """A TOU tariff in local time.

    Parameters
    ----------
    timezone:
        IANA zone of the city (all nine pilot cities: ``Asia/Shanghai``).
    base_price_cny_per_kwh:
        The flat-period price; every period's price is this times its ratio.
    period_kinds:
        ``(12, 24)`` array: the :class:`PeriodKind` of each (month - 1, local hour).
    ratios:
        ``(12, 4)`` Decimal ratios per month and period kind (flat is usually 1).
    discharge:
        The rule for the price paid for V2G discharge.
    """

    timezone: str
    base_price_cny_per_kwh: Decimal
    period_kinds: tuple[tuple[PeriodKind, ...], ...]
    ratios: tuple[tuple[Decimal, Decimal, Decimal, Decimal], ...]
    discharge: DischargePriceRule
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", ZoneInfo(self.timezone))
        if self.base_price_cny_per_kwh <= 0:
            raise ValueError(
                f"base_price_cny_per_kwh must be > 0, got {self.base_price_cny_per_kwh}"
            )
        if len(self.period_kinds) != MONTHS or any(
            len(row) != HOURS_PER_DAY for row in self.period_kinds
        ):
            raise ValueError("period_kinds must be 12 months x 24 hours")
        if len(self.ratios) != MONTHS or any(len(row) != len(PeriodKind) for row in self.ratios):
            raise ValueError("ratios must be 12 months x 4 period kinds")
        if any(r <= 0 for row in self.ratios for r in row):
            raise ValueError("tariff ratios must be > 0")

    def import_price(self, month: int, kind: PeriodKind) -> Decimal:
        """Exact import price in CNY/kWh for a month (1-12) and period kind."""
        return self.base_price_cny_per_kwh * self.ratios[month - 1][kind]

    def export_price(self, month: int, kind: PeriodKind) -> Decimal:
        """Exact price paid for discharge in CNY/kWh for a month (1-12) and period kind."""
        rule = self.discharge
        if rule.kind is DischargeRuleKind.TOU_RATIO:
            return rule.base_price_cny_per_kwh * self.ratios[month - 1][kind]
        if rule.kind is DischargeRuleKind.PER_PERIOD:
            assert rule.period_prices_cny_per_kwh is not None
            return rule.period_prices_cny_per_kwh[kind]
        return self.import_price(month, kind)

    def month_and_kind(self, grid: TimeGrid) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int8]]:
        """Local month (1-12) and :class:`PeriodKind` of each step, by the step's start."""
        months = np.empty(grid.length, dtype=np.int8)
        kinds = np.empty(grid.length, dtype=np.int8)
        # One Python iteration per time step (hundreds), never per vehicle.
        for k, t in enumerate(grid.step_starts()):
            local = t.astimezone(self._zone)
            months[k] = local.month
            kinds[k] = self.period_kinds[local.month - 1][local.hour]
        return months, kinds

    def price_levels(self, grid: TimeGrid) -> PriceLevels:
        """The distinct (import, export) prices on ``grid`` and the level of each step."""
        months, kinds = self.month_and_kind(grid)
        keys: dict[tuple[int, int], int] = {}
        level = np.empty(grid.length, dtype=np.int16)
        import_prices: list[Decimal] = []
        export_prices: list[Decimal] = []
        level_kinds: list[PeriodKind] = []
        for k in range(grid.length):
            key = (int(months[k]), int(kinds[k]))
            if key not in keys:
                keys[key] = len(keys)
                kind = PeriodKind(key[1])
                import_prices.append(self.import_price(key[0], kind))
                export_prices.append(self.export_price(key[0], kind))
                level_kinds.append(kind)
            level[k] = keys[key]
        return PriceLevels(
            level=level,
            kind=kinds,
            import_price_cny_per_kwh=tuple(import_prices),
            export_price_cny_per_kwh=tuple(export_prices),
            level_kind=tuple(level_kinds),
        )


@dataclass(frozen=True)
class PriceLevels:
    """Prices on a grid, as a few exact levels and the level index of each step."""

    level: npt.NDArray[np.int16]
    kind: npt.NDArray[np.int8]
    import_price_cny_per_kwh: tuple[Decimal, ...]
    export_price_cny_per_kwh: tuple[Decimal, ...]
    level_kind: tuple[PeriodKind, ...]

    @property
    def n_levels(self) -> int:
        """Number of distinct price levels."""
        return len(self.import_price_cny_per_kwh)

    def import_series(self) -> npt.NDArray[np.float64]:
        """Import price of every step as float CNY/kWh (for planners; money stays Decimal)."""
        prices = np.array([float(p) for p in self.import_price_cny_per_kwh], dtype=np.float64)
        return prices[self.level] if prices.size else np.zeros(0)

    def export_series(self) -> npt.NDArray[np.float64]:
        """Discharge price of every step as float CNY/kWh."""
        prices = np.array([float(p) for p in self.export_price_cny_per_kwh], dtype=np.float64)
        return prices[self.level] if prices.size else np.zeros(0)
