"""The shipped battery ageing data (``v2ghub/data/battery_ageing.toml``) as an
:class:`~v2ghub.model.battery_ageing.AgeingModel`, and the wear price planners see.

The file carries every coefficient's source; this module only checks its shape and
ranges and builds the model's frozen dataclasses.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from v2ghub.model.battery_ageing import (
    AgeingModel,
    LfpAgeing,
    NmcAgeing,
    WearAssumptions,
    wear_price_cny_per_kwh,
)
from v2ghub.model.fleet import Fleet
from v2ghub.scenarios.catalog import Strict
from v2ghub.toml_files import read_shipped_toml

Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class LfpTable(Strict):
    """Naumann et al.'s LFP/graphite coefficients (see the data file)."""

    calendar_k_ref_per_sqrt_s: Positive
    calendar_activation_j_per_mol: Positive
    calendar_soc_cubic: float
    calendar_soc_offset: Positive
    cycle_c_rate_slope: float
    cycle_c_rate_offset: Positive
    cycle_dod_cubic: float
    cycle_dod_offset: Positive


class NmcTable(Strict):
    """Schmalstieg et al.'s NMC/graphite coefficients and cell voltage table."""

    calendar_voltage_slope: Positive
    calendar_voltage_offset: float
    calendar_temperature_k: float
    calendar_time_exponent: Annotated[float, Field(gt=0, le=1)]
    cycle_voltage_quadratic: float
    cycle_voltage_centre_v: Positive
    cycle_offset: float
    cycle_dod_slope: float
    cell_capacity_ah: Positive
    ocv_soc: list[Fraction]
    ocv_v: list[Positive]

    @model_validator(mode="after")
    def _voltage_table(self) -> NmcTable:
        if len(self.ocv_soc) != len(self.ocv_v) or len(self.ocv_soc) < 2:
            raise ValueError("ocv_soc and ocv_v must have the same length, at least 2")
        if any(b <= a for a, b in zip(self.ocv_soc, self.ocv_soc[1:], strict=False)):
            raise ValueError("ocv_soc must increase")
        return self


class AgeingTable(Strict):
    """The file ``data/battery_ageing.toml``."""

    temperature_c: Annotated[float, Field(gt=-50, lt=80)]
    end_of_life_fade: Annotated[float, Field(gt=0, lt=1)]
    pack_price_usd_per_kwh: Annotated[Decimal, Field(gt=0)]
    cny_per_usd: Annotated[Decimal, Field(gt=0)]
    age_years: Positive
    annual_driving_km: Positive
    consumption_kwh_per_km: Positive
    source: str
    lfp: LfpTable
    nmc: NmcTable
    kind: Literal["battery_ageing"] = "battery_ageing"

    def to_model(self) -> AgeingModel:
        """The domain model of this table."""
        nmc = self.nmc.model_dump()
        nmc["ocv_soc"], nmc["ocv_v"] = tuple(self.nmc.ocv_soc), tuple(self.nmc.ocv_v)
        return AgeingModel(
            lfp=LfpAgeing(**self.lfp.model_dump()),
            nmc=NmcAgeing(**nmc),
            assumptions=WearAssumptions(
                temperature_c=self.temperature_c,
                end_of_life_fade=self.end_of_life_fade,
                replacement_cny_per_kwh=self.pack_price_usd_per_kwh * self.cny_per_usd,
                age_years=self.age_years,
                annual_driving_km=self.annual_driving_km,
                consumption_kwh_per_km=self.consumption_kwh_per_km,
            ),
        )


@cache
def ageing_model() -> AgeingModel:
    """The shipped ageing model (coefficients per chemistry, stated assumptions)."""
    return AgeingTable.model_validate(read_shipped_toml("battery_ageing.toml")).to_model()


WEAR_PRICINGS = ("flat", "model")
"""How planners price battery wear: a flat CNY/kWh, or the ageing model's price."""


def planning_wear_price(
    fleet: Fleet, *, wear: str, flat_cny_per_kwh: float
) -> float | npt.NDArray[np.float64]:
    """The battery wear price (CNY per kWh discharged) a city's planners see.

    ``wear = "flat"``: ``flat_cny_per_kwh`` for every vehicle. ``wear = "model"``: per
    session, the ageing model's marginal wear price
    (:func:`~v2ghub.model.battery_ageing.wear_price_cny_per_kwh`).
    """
    if wear == "flat":
        return flat_cny_per_kwh
    if wear != "model":
        raise ValueError(f"wear must be one of {', '.join(WEAR_PRICINGS)}, not {wear!r}")
    return wear_price_cny_per_kwh(fleet, ageing_model())
