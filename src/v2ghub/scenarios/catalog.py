"""The shipped data (``v2ghub/data/*.toml``): pilot cities, tariffs and vehicle models.

Every figure carries its source in the data file; figures that could not be found are
flagged ``assumed = true`` with the reasoning in ``note``. These schemas validate both the
shipped files and a user's overrides in a scenario file.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from v2ghub.errors import InputError
from v2ghub.model.tariff import (
    HOURS_PER_DAY,
    MONTHS,
    DischargePriceRule,
    DischargeRuleKind,
    PeriodKind,
    Tariff,
)
from v2ghub.toml_files import read_shipped_toml

PositiveDecimal = Annotated[Decimal, Field(gt=0)]
NonNegativeDecimal = Annotated[Decimal, Field(ge=0)]
Hour = Annotated[int, Field(ge=0, le=23)]
Month = Annotated[int, Field(ge=1, le=12)]


def _takes(annotation: Any, kinds: tuple[type, ...]) -> bool:
    """Whether ``annotation`` (or a type within it: a union, a tuple) is one of ``kinds``."""
    if annotation in kinds:
        return True
    return any(_takes(inner, kinds) for inner in get_args(annotation))


class Strict(BaseModel):
    """Base for data tables: unknown keys are errors, values are frozen, and ``true`` or
    ``false`` is refused where a number belongs (pydantic would read them as 1 and 0)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_flag_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is None:
            return value
        annotation = cls.model_fields[info.field_name].annotation
        values = value if isinstance(value, list | tuple) else [value]
        flags = any(isinstance(v, bool) for v in values)
        if flags and _takes(annotation, (int, float, Decimal)) and not _takes(annotation, (bool,)):
            raise ValueError("true or false is not a number")
        return value


class TouHours(Strict):
    """Which local hours are valley, flat, peak and critical peak, for some months."""

    months: list[Month]
    valley: list[Hour] = []
    flat: list[Hour] = []
    peak: list[Hour] = []
    critical: list[Hour] = []

    @model_validator(mode="after")
    def _every_hour_once(self) -> TouHours:
        hours = self.valley + self.flat + self.peak + self.critical
        if sorted(hours) != list(range(HOURS_PER_DAY)):
            missing = sorted(set(range(HOURS_PER_DAY)) - set(hours))
            repeated = sorted({h for h in hours if hours.count(h) > 1})
            raise ValueError(
                f"every hour 0-23 must be in exactly one period (missing {missing}, "
                f"repeated {repeated})"
            )
        return self


class TouRatios(Strict):
    """Price ratios over the base (flat) price, for some months."""

    months: list[Month]
    valley: PositiveDecimal
    flat: PositiveDecimal = Decimal(1)
    peak: PositiveDecimal
    critical: PositiveDecimal


class DischargeRuleData(Strict):
    """The price rule for V2G discharge, with its source."""

    rule: DischargeRuleKind
    base_price_cny_per_kwh: NonNegativeDecimal = Decimal(0)
    valley: NonNegativeDecimal | None = None
    flat: NonNegativeDecimal | None = None
    peak: NonNegativeDecimal | None = None
    critical: NonNegativeDecimal | None = None
    source: str
    assumed: bool = False
    note: str = ""

    @model_validator(mode="after")
    def _prices_for_rule(self) -> DischargeRuleData:
        per_period = (self.valley, self.flat, self.peak, self.critical)
        if self.rule is DischargeRuleKind.PER_PERIOD and any(p is None for p in per_period):
            raise ValueError("rule 'per_period' needs valley, flat, peak and critical prices")
        if self.rule is DischargeRuleKind.TOU_RATIO and self.base_price_cny_per_kwh <= 0:
            raise ValueError("rule 'tou_ratio' needs base_price_cny_per_kwh > 0")
        return self

    def to_rule(self) -> DischargePriceRule:
        """The domain rule."""
        prices = None
        if self.rule is DischargeRuleKind.PER_PERIOD:
            prices = (
                _given(self.valley),
                _given(self.flat),
                _given(self.peak),
                _given(self.critical),
            )
        return DischargePriceRule(
            kind=self.rule,
            base_price_cny_per_kwh=self.base_price_cny_per_kwh,
            period_prices_cny_per_kwh=prices,
        )


def _given(price: Decimal | None) -> Decimal:
    if price is None:  # the validator above makes this unreachable
        raise ValueError("a per-period discharge price is missing")
    return price


def _months_once(groups: list[TouHours] | list[TouRatios], what: str) -> None:
    months = [m for g in groups for m in g.months]
    if sorted(months) != list(range(1, MONTHS + 1)):
        raise ValueError(f"{what}: every month 1-12 must appear in exactly one group")


class CityData(Strict):
    """One city: where it is, its TOU tariff and discharge price, and their sources."""

    name: str
    name_zh: str = ""
    province: str
    timezone: str = "Asia/Shanghai"
    pilot: bool = True
    pilot_source: str = ""
    base_price_cny_per_kwh: PositiveDecimal
    base_price_source: str
    base_price_assumed: bool = False
    tou: list[TouHours]
    ratios: list[TouRatios]
    tariff_source: str
    tariff_assumed: bool = False
    tariff_note: str = ""
    discharge: DischargeRuleData
    midday_solar_valley: bool = False
    solar_peak_share: Annotated[float, Field(ge=0, le=5)] = 0.35

    @model_validator(mode="after")
    def _complete_year(self) -> CityData:
        _months_once(self.tou, f"city {self.name} tou")
        _months_once(self.ratios, f"city {self.name} ratios")
        return self

    def tariff(self) -> Tariff:
        """The domain tariff."""
        kinds: list[tuple[PeriodKind, ...]] = [()] * MONTHS
        for group in self.tou:
            row = [PeriodKind.FLAT] * HOURS_PER_DAY
            for kind, hours in (
                (PeriodKind.VALLEY, group.valley),
                (PeriodKind.FLAT, group.flat),
                (PeriodKind.PEAK, group.peak),
                (PeriodKind.CRITICAL, group.critical),
            ):
                for h in hours:
                    row[h] = kind
            for m in group.months:
                kinds[m - 1] = tuple(row)
        ratios: list[tuple[Decimal, Decimal, Decimal, Decimal]] = [
            (Decimal(0), Decimal(0), Decimal(0), Decimal(0))
        ] * MONTHS
        for r in self.ratios:
            for m in r.months:
                ratios[m - 1] = (r.valley, r.flat, r.peak, r.critical)
        return Tariff(
            timezone=self.timezone,
            base_price_cny_per_kwh=self.base_price_cny_per_kwh,
            period_kinds=tuple(kinds),
            ratios=tuple(ratios),
            discharge=self.discharge.to_rule(),
        )


class VehicleModelData(Strict):
    """A vehicle model in the synthetic fleet mix."""

    model: str
    battery_kwh: Annotated[float, Field(gt=0)]
    ac_max_kw: Annotated[float, Field(gt=0)]
    dc_max_kw: Annotated[float, Field(gt=0)]
    v2g_capable: bool
    share: Annotated[float, Field(gt=0, le=1)]
    source: str
    assumed: bool = False
    note: str = ""
    # The cell chemistry picks the ageing model (v2ghub.model.battery_ageing); a model
    # that does not say is LFP, as most Chinese EVs are.
    chemistry: Literal["LFP", "NMC"] = "LFP"


class CityTable(Strict):
    """The file ``data/cities.toml``."""

    city: list[CityData]
    kind: Literal["cities"] = "cities"


class VehicleTable(Strict):
    """The file ``data/vehicles.toml``."""

    vehicle: list[VehicleModelData]
    kind: Literal["vehicles"] = "vehicles"

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> VehicleTable:
        self.check_shares(self.vehicle)
        return self

    @staticmethod
    def check_shares(vehicles: list[VehicleModelData]) -> None:
        """Refuse a mix whose shares do not sum to 1."""
        total = sum(v.share for v in vehicles)
        if abs(total - 1) > 1e-6:
            raise ValueError(f"vehicle shares must sum to 1, got {total:g}")


@cache
def pilot_cities() -> dict[str, CityData]:
    """The shipped cities, by name (the nine pilot cities first)."""
    table = CityTable.model_validate(read_shipped_toml("cities.toml"))
    return {c.name: c for c in table.city}


@cache
def vehicle_models() -> tuple[VehicleModelData, ...]:
    """The shipped vehicle models of the synthetic fleet mix."""
    return tuple(VehicleTable.model_validate(read_shipped_toml("vehicles.toml")).vehicle)


def city_name(name: str) -> str:
    """A shipped city's name, matched without regard to case.

    Examples
    --------
    >>> city_name("shenzhen")
    'Shenzhen'
    """
    known = {city.lower(): city for city in pilot_cities()}
    try:
        return known[name.lower()]
    except KeyError:
        raise InputError(
            f"unknown city {name!r}; known: {', '.join(sorted(known.values()))}"
        ) from None
