"""Scenario settings and the scenario file (TOML), validated with clear errors.

A scenario file has up to four tables, all optional::

    [simulation]            # what to run: date, step, cities, planners, fleet size, seed
    [fleet]                 # the synthetic fleet mix (see FleetMix)
    [grid]                  # synthetic base load and solar shapes (see GridShape)
    [cities.NAME]           # overrides of a shipped city's data, or a whole new city
    [[vehicles]]            # replaces the shipped vehicle models (shares must sum to 1)

Every key is checked: an unknown key, an unknown city or planner, or a value out of range
ends with one line naming the file and the field.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from v2ghub.errors import InputError
from v2ghub.scenarios.catalog import (
    CityData,
    VehicleModelData,
    VehicleTable,
    pilot_cities,
    vehicle_models,
)
from v2ghub.toml_files import read_toml
from v2ghub.units import MINUTES_PER_DAY

Share = Annotated[float, Field(ge=0, le=1)]
PositiveKw = Annotated[float, Field(gt=0)]

PILOT_CITIES = (
    "Shanghai",
    "Changzhou",
    "Hefei",
    "Huaibei",
    "Guangzhou",
    "Shenzhen",
    "Haikou",
    "Chongqing",
    "Kunming",
)
DEFAULT_PLANNERS = ("uncontrolled", "tou", "v2g-rules", "mpc")
MAX_VEHICLES = 10_000_000
# Battery wear per kWh discharged: an LFP pack of ~600 CNY/kWh over 3,000 cycles
# (FACTS.md, degradation [M]); a parameter, overridable in a scenario or on `v2ghub plan`.
DEFAULT_DEGRADATION_CNY_PER_KWH = "0.2"


class Settings(BaseModel):
    """Base for settings: unknown keys are errors; values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SimulationSettings(Settings):
    """What to simulate."""

    date: dt.date = dt.date(2025, 7, 16)  # a Wednesday in summer, when critical peaks apply
    step_minutes: Annotated[int, Field(ge=1, le=60)] = 15
    control_interval_minutes: Annotated[int, Field(ge=1, le=1440)] = 15
    seed: int = 2025
    vehicles_per_city: Annotated[int, Field(ge=10, le=MAX_VEHICLES)] = 10_000
    cities: tuple[str, ...] = PILOT_CITIES
    planners: tuple[str, ...] = DEFAULT_PLANNERS
    degradation_cny_per_kwh: Annotated[float, Field(ge=0)] = float(DEFAULT_DEGRADATION_CNY_PER_KWH)

    @model_validator(mode="after")
    def _whole_steps(self) -> SimulationSettings:
        if MINUTES_PER_DAY % self.step_minutes:
            raise ValueError("step_minutes must divide a day (1440 minutes)")
        if self.control_interval_minutes % self.step_minutes:
            raise ValueError("control_interval_minutes must be a multiple of step_minutes")
        if not self.cities:
            raise ValueError("cities must name at least one city")
        if not self.planners:
            raise ValueError("planners must name at least one planner")
        return self

    @property
    def control_steps(self) -> int:
        """Steps between two planning calls."""
        return self.control_interval_minutes // self.step_minutes


class FleetMix(Settings):
    """The synthetic fleet: who charges where, with which chargers and limits.

    Defaults are assumptions for a pilot district, documented in
    :mod:`v2ghub.scenarios.synthetic`.
    """

    home_share: Share = 0.6
    workplace_share: Share = 0.25
    public_share: Share = 0.15
    home_opt_in: Share = 0.4
    workplace_opt_in: Share = 0.5
    public_opt_in: Share = 0.2
    home_charger_kw: PositiveKw = 7.0
    workplace_charger_kw: PositiveKw = 20.0
    public_charger_kw: PositiveKw = 60.0
    ac_efficiency: Annotated[float, Field(gt=0, le=1)] = 0.90
    dc_efficiency: Annotated[float, Field(gt=0, le=1)] = 0.92
    soc_min: Share = 0.3
    soc_max: Share = 1.0
    home_soc_target: Share = 0.9
    away_soc_target: Share = 0.8
    homes_per_transformer: Annotated[int, Field(ge=1)] = 100
    home_transformer_share: Annotated[float, Field(gt=0)] = 0.5
    workplace_chargers_per_site: Annotated[int, Field(ge=1)] = 50
    workplace_site_share: Annotated[float, Field(gt=0)] = 0.6
    public_sessions_per_station: Annotated[int, Field(ge=1)] = 60
    public_station_limit_kw: PositiveKw = 1200.0

    @model_validator(mode="after")
    def _shares(self) -> FleetMix:
        total = self.home_share + self.workplace_share + self.public_share
        if abs(total - 1) > 1e-9:
            raise ValueError(
                f"home_share + workplace_share + public_share must be 1, got {total:g}"
            )
        if self.soc_min > self.soc_max:
            raise ValueError("soc_min must not exceed soc_max")
        if max(self.home_soc_target, self.away_soc_target) > self.soc_max:
            raise ValueError("SoC targets must not exceed soc_max")
        return self


class GridShape(Settings):
    """Synthetic base load and solar, scaled to the fleet (see load_shapes)."""

    base_peak_kw_per_vehicle: PositiveKw = 4.0
    solar_hosting_share: Share = 0.3
    smoothing_hours: Annotated[float, Field(ge=0, le=12)] = 2.0


class ScenarioFile(Settings):
    """The whole scenario file."""

    simulation: SimulationSettings = SimulationSettings()
    fleet: FleetMix = FleetMix()
    grid: GridShape = GridShape()
    cities: dict[str, dict[str, Any]] = {}
    vehicles: list[VehicleModelData] | None = None

    @field_validator("vehicles")
    @classmethod
    def _vehicle_shares(
        cls, vehicles: list[VehicleModelData] | None
    ) -> list[VehicleModelData] | None:
        if vehicles is not None:
            VehicleTable.check_shares(vehicles)
        return vehicles


class Scenario(Settings):
    """A validated scenario: settings and the city data it uses (shipped or overridden)."""

    simulation: SimulationSettings
    fleet: FleetMix
    grid: GridShape
    city_data: dict[str, CityData]
    vehicle_models: tuple[VehicleModelData, ...]


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _value(error: Any) -> str:
    value = error.get("input")
    return "" if isinstance(value, dict) else f" (got {value!r})"


def _problem(error: Any) -> str:
    """Pydantic's message without its "Value error, " prefix, and the value given."""
    return str(error["msg"]).removeprefix("Value error, ") + _value(error)


def resolve(raw: ScenarioFile, *, file: Path | str | None = None) -> Scenario:
    """Merge city overrides into the shipped data and check every name."""
    from v2ghub.planning import PLANNERS  # noqa: PLC0415 - planning sits above scenarios

    shipped = pilot_cities()
    for name in raw.simulation.planners:
        if name not in PLANNERS:
            raise InputError(
                f"unknown planner {name!r} (known: {', '.join(PLANNERS)})",
                file=file,
                field="simulation.planners",
            )
    city_data: dict[str, CityData] = {}
    for name in raw.simulation.cities:
        override = raw.cities.get(name)
        if name not in shipped and override is None:
            raise InputError(
                f"unknown city {name!r} (shipped: {', '.join(shipped)}; define others "
                f"under [cities.{name}])",
                file=file,
                field="simulation.cities",
            )
        base = shipped[name].model_dump() if name in shipped else {"name": name}
        merged = {**base, **(override or {}), "name": name}
        try:
            city_data[name] = CityData.model_validate(merged)
        except ValidationError as error:
            first = error.errors()[0]
            raise InputError(
                _problem(first),
                file=file,
                field=_field(("cities", name, *first["loc"])),
            ) from None
    for name in raw.cities:
        if name not in raw.simulation.cities:
            raise InputError(
                f"city {name!r} is defined but not listed in simulation.cities",
                file=file,
                field=f"cities.{name}",
            )
    models = tuple(raw.vehicles) if raw.vehicles is not None else vehicle_models()
    return Scenario(
        simulation=raw.simulation,
        fleet=raw.fleet,
        grid=raw.grid,
        city_data=city_data,
        vehicle_models=models,
    )


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file."""
    data = read_toml(path, what="scenario file")
    try:
        raw = ScenarioFile.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        raise InputError(_problem(first), file=path, field=_field(first["loc"])) from None
    return resolve(raw, file=path)


def default_scenario() -> Scenario:
    """The main job's scenario: one weekday, the nine pilot cities, the four planners."""
    return resolve(ScenarioFile())
