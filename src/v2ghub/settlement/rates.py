"""The rates that pay grid services, per city, with their sources (``data/settlement.toml``).

Charging and discharge energy are paid at the prices the meter data carries (the city's
TOU tariff and discharge price rule, :mod:`v2ghub.model.tariff`). The other streams are
paid at a city's rate card: demand response per kWh delivered against the baseline,
regulation capacity per MW-h offered and mileage per MW moved (both scaled by the
performance score), and battery-wear compensation to owners per kWh discharged. A rates
file with the shipped layout overrides any of them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from v2ghub.errors import InputError
from v2ghub.toml_files import read_toml

NonNegative = Annotated[Decimal, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rates(_Strict):
    """A city's rates, or (``[defaults]``) those of every city that does not name its own."""

    demand_response_cny_per_kwh: NonNegative | None = None
    demand_response_source: str = ""
    demand_response_assumed: bool = False
    degradation_compensation_cny_per_kwh: NonNegative | None = None
    degradation_source: str = ""
    degradation_assumed: bool = False
    regulation_mileage_cny_per_mw: NonNegative | None = None
    regulation_mileage_source: str = ""
    regulation_mileage_assumed: bool = False
    regulation_capacity_cny_per_mw_h: NonNegative | None = None
    regulation_capacity_source: str = ""
    regulation_capacity_assumed: bool = False


class RateFile(_Strict):
    """The layout of ``data/settlement.toml`` and of a user's rates file."""

    kind: Literal["settlement"] = "settlement"
    defaults: Rates = Rates()
    cities: dict[str, Rates] = {}
    # The default contract shares by charger kind; read by :mod:`~v2ghub.settlement.contracts`.
    default_shares: dict[str, dict[str, Decimal]] = {}


@dataclass(frozen=True)
class RateCard:
    """The rates one city's settlement pays, exact, with where each comes from."""

    city: str
    demand_response_cny_per_kwh: Decimal
    regulation_capacity_cny_per_mw_h: Decimal
    regulation_mileage_cny_per_mw: Decimal
    degradation_compensation_cny_per_kwh: Decimal
    sources: dict[str, str]
    assumed: frozenset[str]


_STREAMS = {
    "demand_response": "demand_response_cny_per_kwh",
    "regulation_capacity": "regulation_capacity_cny_per_mw_h",
    "regulation_mileage": "regulation_mileage_cny_per_mw",
    "degradation": "degradation_compensation_cny_per_kwh",
}


def _read(path: Path | None) -> RateFile:
    if path is None:
        text = resources.files("v2ghub.data").joinpath("settlement.toml").read_text("utf-8")
        data = tomllib.loads(text)
    else:
        data = read_toml(path, what="rates file")
    try:
        return RateFile.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise InputError(first["msg"], file=path, field=field) from None


def _merged(
    shipped: dict[str, Any], override: dict[str, Any], *, origin: str | None = None
) -> dict[str, Any]:
    """``override`` over ``shipped``; a rate overridden without its own source is
    attributed to ``origin`` (the overriding file) and no longer marked assumed."""
    merged = {**shipped, **override}
    if origin is not None:
        for stream, field in _STREAMS.items():
            prefix = "degradation" if stream == "degradation" else stream
            if field in override and f"{prefix}_source" not in override:
                merged[f"{prefix}_source"] = origin
                merged[f"{prefix}_assumed"] = override.get(f"{prefix}_assumed", False)
    return merged


def rate_cards(cities: list[str], *, overrides: Path | None = None) -> dict[str, RateCard]:
    """Each city's rate card: the shipped rates, then the overrides file's, if given."""
    shipped = _read(None)
    extra = _read(overrides) if overrides is not None else RateFile()
    origin = f"rates file {overrides}" if overrides is not None else None
    defaults = _merged(
        shipped.defaults.model_dump(exclude_unset=True),
        extra.defaults.model_dump(exclude_unset=True),
        origin=origin,
    )
    cards = {}
    for city in cities:
        values = _merged(
            _merged(defaults, shipped.cities.get(city, Rates()).model_dump(exclude_unset=True)),
            extra.cities.get(city, Rates()).model_dump(exclude_unset=True),
            origin=origin,
        )
        sources: dict[str, str] = {}
        assumed: set[str] = set()
        rates: dict[str, Decimal] = {}
        for stream, field in _STREAMS.items():
            prefix = "degradation" if stream == "degradation" else stream
            rate = values.get(field)
            if rate is None:
                raise InputError(
                    f"no {field} for {city}",
                    file=overrides if overrides is not None else "settlement.toml",
                    field=f"cities.{city}.{field}",
                )
            rates[field] = Decimal(rate)
            sources[stream] = str(values.get(f"{prefix}_source", ""))
            if values.get(f"{prefix}_assumed", False):
                assumed.add(stream)
        cards[city] = RateCard(
            city=city,
            demand_response_cny_per_kwh=rates["demand_response_cny_per_kwh"],
            regulation_capacity_cny_per_mw_h=rates["regulation_capacity_cny_per_mw_h"],
            regulation_mileage_cny_per_mw=rates["regulation_mileage_cny_per_mw"],
            degradation_compensation_cny_per_kwh=rates["degradation_compensation_cny_per_kwh"],
            sources=sources,
            assumed=frozenset(assumed),
        )
    return cards
