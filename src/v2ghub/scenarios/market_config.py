"""The ``[market]`` table of a scenario file: what the grid operator buys, and from whom else.

::

    [market]
    offer_share = 0.8                  # of what the fleet can deliver, as forecast
    forecast = "expected"              # or "perfect": the day's regulation signal known

    [market.regulation]                # symmetric capacity, CNY per MW and hour
    hours = [10, 11, 19, 20]           # local hours traded
    offer_price_cny_per_mw_h = "5"     # the aggregator's price
    penalty_factor = 2                 # per MW-h not delivered, times the clearing price
    demand = [ { capacity_kw_per_vehicle = 0.4, price_cny_per_mw_h = "30" } ]
    supply = [ { seller = "thermal units", capacity_mw = 1.5, price_cny_per_mw_h = "8" } ]

    [market.demand_response]           # load reduction, CNY per MW and hour (= per MWh)
    hours = [18]
    ...

What the fleet can deliver is forecast a day ahead (:mod:`v2ghub.sim.market_day`): the
regulation headroom of the day-ahead plan, and the reduction the demand-response
allocation holds through each hour in a run of the planner itself. The one thing a day
ahead cannot know is the day's regulation signal and frequency: ``forecast = "expected"``
follows none (a signal averages out); ``"perfect"`` follows the day's own, as the twin
will live it, so that every sale is delivered in full and the difference measures what
forecast error costs.

A step's size is either ``capacity_mw`` or ``capacity_kw_per_vehicle`` (times the city's
fleet size, so one file serves every fleet size). The default market (``v2ghub simulate
--market`` without a ``[market]`` table) is ``data/market.toml``.
"""

from __future__ import annotations

from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from v2ghub.errors import InputError
from v2ghub.toml_files import read_toml
from v2ghub.units import KW_PER_MW

Price = Annotated[Decimal, Field(ge=0)]
NonNegative = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Step(_Strict):
    """A step of a curve: a size and a price."""

    capacity_mw: NonNegative | None = None
    capacity_kw_per_vehicle: NonNegative | None = None
    price_cny_per_mw_h: Price
    seller: str = "other sellers"

    @model_validator(mode="after")
    def _one_size(self) -> Step:
        if (self.capacity_mw is None) == (self.capacity_kw_per_vehicle is None):
            raise ValueError("give exactly one of capacity_mw and capacity_kw_per_vehicle")
        return self

    def capacity_kw(self, vehicles: int) -> int:
        """The step's size in whole kW for a fleet of ``vehicles``."""
        if self.capacity_mw is not None:
            return round(self.capacity_mw * KW_PER_MW)
        assert self.capacity_kw_per_vehicle is not None
        return round(self.capacity_kw_per_vehicle * vehicles)


class ProductMarket(_Strict):
    """One product's market: the hours traded, the operator's demand, other sellers."""

    hours: tuple[Annotated[int, Field(ge=0, le=23)], ...]
    demand: tuple[Step, ...]
    supply: tuple[Step, ...] = ()
    offer_price_cny_per_mw_h: Price = Decimal(0)
    penalty_factor: Annotated[Decimal, Field(ge=0)] = Decimal(2)

    @model_validator(mode="after")
    def _some_hours(self) -> ProductMarket:
        if not self.hours:
            raise ValueError("hours must name at least one local hour")
        if len(set(self.hours)) != len(self.hours):
            raise ValueError("hours must not repeat")
        return self


class MarketSettings(_Strict):
    """The ``[market]`` table."""

    offer_share: Annotated[float, Field(gt=0, le=1)] = 0.8
    forecast: Literal["expected", "perfect"] = "expected"
    regulation: ProductMarket | None = None
    demand_response: ProductMarket | None = None

    @model_validator(mode="after")
    def _apart(self) -> MarketSettings:
        if self.regulation is not None and self.demand_response is not None:
            both = set(self.regulation.hours) & set(self.demand_response.hours)
            if both:
                raise ValueError(
                    f"an hour is traded for regulation or demand response, not both: {sorted(both)}"
                )
        return self


def default_market() -> MarketSettings:
    """The shipped market (``data/market.toml``)."""
    source = resources.files("v2ghub.data").joinpath("market.toml")
    with resources.as_file(source) as path:
        return load_market(Path(path))


def load_market(path: Path) -> MarketSettings:
    """A market file (the ``[market]`` table's layout, at its top level)."""
    raw = read_toml(path, what="market file")
    raw.pop("kind", None)
    try:
        return MarketSettings.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "market"
        raise InputError(first["msg"], file=path, field=field) from None
