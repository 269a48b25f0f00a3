"""Scenario settings and the scenario file (TOML), validated with clear errors.

A scenario file has up to four tables, all optional::

    [simulation]            # what to run: date, step, cities, planners, fleet size, seed
    [fleet]                 # the synthetic fleet mix (see FleetMix)
    [grid]                  # synthetic base load and solar shapes (see GridShape)
    [cities.NAME]           # overrides of a shipped city's data, or a whole new city
    [[vehicles]]            # replaces the shipped vehicle models (shares must sum to 1)
    [[demand_response]]     # grid operator's demand-response events (see DemandResponseEntry)
    [market]                # a day-ahead capacity market (see scenarios/market_config.py)

Every key is checked: an unknown key, an unknown city or planner, or a value out of range
ends with one line naming the file and the field.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from v2ghub import defaults
from v2ghub.choices import KEEPS_VALLEY_RULE, MAX_VEHICLES, RULES_SUFFIX, is_planner_name
from v2ghub.errors import InputError
from v2ghub.regulation.demand_response import DemandResponseEvent
from v2ghub.scenarios.catalog import (
    CityData,
    Strict,
    VehicleModelData,
    VehicleTable,
    pilot_cities,
    vehicle_models,
)
from v2ghub.scenarios.market_config import MarketSettings
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
DEFAULT_PLANNERS = defaults.PLANNERS
MAX_FEEDERS = 100_000
# Battery wear per kWh discharged (the table in v2ghub.defaults says why); a parameter,
# overridable in a scenario or on `v2ghub plan`.
DEFAULT_DEGRADATION_CNY_PER_KWH = defaults.DEGRADATION_CNY_PER_KWH


class Settings(Strict):
    """Base for settings: unknown keys are errors; values are frozen; a number is never
    ``true`` or ``false``."""


class SimulationSettings(Settings):
    """What to simulate."""

    date: dt.date = defaults.SIMULATION_DATE
    step_minutes: Annotated[int, Field(ge=1, le=60)] = defaults.STEP_MINUTES
    control_interval_minutes: Annotated[int, Field(ge=1, le=1440)] = (
        defaults.CONTROL_INTERVAL_MINUTES
    )
    seed: Annotated[int, Field(ge=0)] = defaults.SEED
    vehicles_per_city: Annotated[int, Field(ge=10, le=MAX_VEHICLES)] = defaults.VEHICLES_PER_CITY
    cities: tuple[str, ...] = PILOT_CITIES
    planners: tuple[str, ...] = DEFAULT_PLANNERS
    degradation_cny_per_kwh: Annotated[float, Field(ge=0)] = float(DEFAULT_DEGRADATION_CNY_PER_KWH)
    # How planners price battery wear: "flat" at degradation_cny_per_kwh, or "model" at
    # the battery ageing model's marginal price (v2ghub.scenarios.ageing_data).
    wear: Literal["flat", "model"] = "flat"
    # Run each planner that can keep the pilots' valley rule also as "<name>+rules".
    pilot_rules: bool = False
    # Distribution feeders under each city's compounds, with AC power flow at every step
    # (v2ghub.network.feeders): how many a city (0: none), and optionally one pandapower
    # JSON network for all of them instead of the standard feeders.
    feeders: Annotated[int, Field(ge=0, le=MAX_FEEDERS)] = 0
    feeder_network: Path | None = None

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
    ac_efficiency: Annotated[float, Field(gt=0, le=1)] = defaults.SYNTHETIC_AC_EFFICIENCY
    dc_efficiency: Annotated[float, Field(gt=0, le=1)] = defaults.SYNTHETIC_DC_EFFICIENCY
    soc_min: Share = defaults.SYNTHETIC_SOC_MIN
    soc_max: Share = defaults.SYNTHETIC_SOC_MAX
    home_soc_target: Share = defaults.HOME_SOC_TARGET
    away_soc_target: Share = defaults.AWAY_SOC_TARGET
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


EventTime = dt.time | dt.datetime
Kilowatts = Annotated[float, Field(allow_inf_nan=False)]
NonNegativeKw = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class DemandResponseEntry(Settings):
    """One ``[[demand_response]]`` event of a scenario file.

    ``start`` and ``end``: both ``"HH:MM"`` local times on the simulated day (in each
    city's own time zone), or both ISO 8601 datetimes (with a UTC offset; without one, a
    local time in each city). An event past midnight needs datetimes. Give exactly one
    size (see :class:`~v2ghub.regulation.demand_response.DemandResponseEvent`):
    ``reduction_kw``, ``reduction_kw_per_vehicle`` (per vehicle plugged in at each step)
    or ``target_net_kw`` (the fleet's net load to come down to). ``city``: one of the
    simulated cities, or none for every city. ``price_cny_per_kwh``: default the city's
    demand-response rate (``data/settlement.toml``)::

        [[demand_response]]
        start = "18:00"
        end = "19:00"
        reduction_kw_per_vehicle = 0.5
    """

    city: str | None = None
    start: EventTime
    end: EventTime
    reduction_kw: NonNegativeKw | None = None
    reduction_kw_per_vehicle: NonNegativeKw | None = None
    target_net_kw: Kilowatts | None = None
    price_cny_per_kwh: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)] | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _moment(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            try:
                if "T" in text or " " in text or "-" in text[:5]:
                    return dt.datetime.fromisoformat(text)
                return dt.time.fromisoformat(text)
            except ValueError:
                raise ValueError("must be a local time HH:MM or an ISO 8601 datetime") from None
        if isinstance(value, dt.time) and value.tzinfo is not None:
            raise ValueError("a local time takes no UTC offset; give a full datetime")
        return value

    @field_validator("end")
    @classmethod
    def _after_start(cls, end: EventTime, info: ValidationInfo) -> EventTime:
        start = info.data.get("start")
        if start is None:  # start itself was invalid: its error is reported
            return end
        if isinstance(start, dt.datetime) != isinstance(end, dt.datetime):
            raise ValueError("start and end must both be local times HH:MM or both datetimes")
        if isinstance(start, dt.datetime) and isinstance(end, dt.datetime):
            if (start.tzinfo is None) != (end.tzinfo is None):
                raise ValueError("start and end must both carry a UTC offset or neither")
            if end <= start:
                raise ValueError(f"end must be after start ({start.isoformat()})")
        elif isinstance(start, dt.time) and isinstance(end, dt.time) and end <= start:
            raise ValueError(f"end must be after start ({start.isoformat('minutes')})")
        return end

    @model_validator(mode="after")
    def _one_size(self) -> DemandResponseEntry:
        # The event's own rules (exactly one size), on any day.
        self.event(city=self.city or "", day=dt.date(2025, 1, 1), timezone="UTC")
        return self

    def event(self, *, city: str, day: dt.date, timezone: str) -> DemandResponseEvent:
        """The event in ``city`` (time zone ``timezone``) when the simulated day is ``day``."""
        zone = ZoneInfo(timezone)

        def moment(value: EventTime) -> dt.datetime:
            if isinstance(value, dt.datetime):
                return value if value.tzinfo is not None else value.replace(tzinfo=zone)
            return dt.datetime.combine(day, value, tzinfo=zone)

        return DemandResponseEvent(
            start=moment(self.start),
            end=moment(self.end),
            city=city,
            reduction_kw=self.reduction_kw,
            reduction_kw_per_vehicle=self.reduction_kw_per_vehicle,
            target_net_kw=self.target_net_kw,
            price_cny_per_kwh=self.price_cny_per_kwh,
        )


# What `v2ghub simulate --demand-response` adds to each city when the scenario has no
# event: an ASSUMPTION, not a programme's rule: the first hour of the evening peak (about
# 18-22 h in most provinces, FACTS.md), half a kW below the baseline per plugged vehicle.
DEFAULT_DEMAND_RESPONSE = DemandResponseEntry(
    start=dt.time(defaults.DEMAND_RESPONSE_START_HOUR),
    end=dt.time(defaults.DEMAND_RESPONSE_END_HOUR),
    reduction_kw_per_vehicle=defaults.DEMAND_RESPONSE_KW_PER_VEHICLE,
)


class ScenarioFile(Settings):
    """The whole scenario file."""

    simulation: SimulationSettings = SimulationSettings()
    fleet: FleetMix = FleetMix()
    grid: GridShape = GridShape()
    cities: dict[str, dict[str, Any]] = Field(default_factory=dict)
    vehicles: list[VehicleModelData] | None = None
    demand_response: tuple[DemandResponseEntry, ...] = ()
    market: MarketSettings | None = None

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
    demand_response: tuple[DemandResponseEntry, ...] = ()
    market: MarketSettings | None = None

    def demand_response_events(self, city: str, day: dt.date) -> tuple[DemandResponseEvent, ...]:
        """The events of ``city`` when the simulated (local) day is ``day``."""
        timezone = self.city_data[city].timezone
        return tuple(
            entry.event(city=city, day=day, timezone=timezone)
            for entry in self.demand_response
            if entry.city in (None, city)
        )


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
        if not is_planner_name(name):
            raise InputError(
                f"unknown planner {name!r} (known: {', '.join(PLANNERS)}, or "
                f"{', '.join(n + RULES_SUFFIX for n in KEEPS_VALLEY_RULE)})",
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
    scenario = Scenario(
        simulation=raw.simulation,
        fleet=raw.fleet,
        grid=raw.grid,
        city_data=city_data,
        vehicle_models=models,
        demand_response=raw.demand_response,
        market=raw.market,
    )
    _check_events(scenario, file=file)
    return scenario


def _check_events(scenario: Scenario, *, file: Path | str | None) -> None:
    """Every event names a simulated city (or none) and no two overlap in a city."""
    cities = scenario.simulation.cities
    for number, entry in enumerate(scenario.demand_response):
        if entry.city is not None and entry.city not in cities:
            raise InputError(
                f"city {entry.city!r} is not simulated (simulation.cities: {', '.join(cities)})",
                file=file,
                field=f"demand_response.{number}.city",
            )
    for city in cities:
        numbers = [n for n, e in enumerate(scenario.demand_response) if e.city in (None, city)]
        events = scenario.demand_response_events(city, scenario.simulation.date)
        for later, (number, event) in enumerate(zip(numbers, events, strict=True)):
            for other, earlier in zip(numbers[:later], events[:later], strict=True):
                if event.start < earlier.end and earlier.start < event.end:
                    raise InputError(
                        f"overlaps demand_response.{other} in {city}",
                        file=file,
                        field=f"demand_response.{number}",
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
