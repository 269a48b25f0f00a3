"""Build the simulator's input (:class:`~v2ghub.model.case.CityCase`) for each city."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from v2ghub.model.case import CityCase
from v2ghub.model.fleet import Fleet
from v2ghub.model.sites import SiteLimits
from v2ghub.model.time_grid import TimeGrid
from v2ghub.scenarios.ageing_data import planning_wear_price
from v2ghub.scenarios.catalog import CityData
from v2ghub.scenarios.config import Scenario
from v2ghub.scenarios.load_shapes import grid_signals
from v2ghub.scenarios.synthetic import generate_fleet
from v2ghub.units import SECONDS_PER_DAY


def _grid_until_last_departure(midnight: datetime, fleet: Fleet, step: timedelta) -> TimeGrid:
    last_s = int(fleet.departure_s.max()) if fleet.n_sessions else int(midnight.timestamp())
    last = datetime.fromtimestamp(last_s, tz=midnight.tzinfo)
    # At least a whole day, so that daily curves cover 24 hours.
    return TimeGrid.covering(midnight, max(last, midnight + timedelta(days=1)), step)


def city_case(
    *,
    data: CityData,
    scenario: Scenario,
    fleet: Fleet,
    sites: SiteLimits,
    midnight: datetime,
    arrival_days: int = 1,
) -> CityCase:
    """A city's case for a fleet whose sessions start on or after local ``midnight``."""
    step = timedelta(minutes=scenario.simulation.step_minutes)
    grid = _grid_until_last_departure(midnight, fleet, step)
    tariff = data.tariff()
    signals = grid_signals(
        grid=grid,
        tariff=tariff,
        shape=scenario.grid,
        n_vehicles=max(1, fleet.n_sessions // arrival_days),
        solar_peak_share=data.solar_peak_share,
    )
    return CityCase(
        city=data.name,
        grid=grid,
        fleet=fleet,
        sites=sites,
        tariff=tariff,
        signals=signals,
        degradation_cny_per_kwh=planning_wear_price(
            fleet,
            wear=scenario.simulation.wear,
            flat_cny_per_kwh=scenario.simulation.degradation_cny_per_kwh,
        ),
        arrival_days=arrival_days,
    )


def iter_synthetic_cases(scenario: Scenario) -> Iterator[CityCase]:
    """One seeded synthetic case per city of the scenario, generated when asked for."""
    settings = scenario.simulation
    for number, name in enumerate(settings.cities):
        data = scenario.city_data[name]
        midnight = datetime(
            settings.date.year,
            settings.date.month,
            settings.date.day,
            tzinfo=ZoneInfo(data.timezone),
        )
        # Each city draws from its own stream: adding a city never changes another's fleet.
        rng = np.random.default_rng([settings.seed, number])
        generated = generate_fleet(
            n_vehicles=settings.vehicles_per_city,
            city=name,
            day=settings.date,
            timezone=data.timezone,
            mix=scenario.fleet,
            models=scenario.vehicle_models,
            rng=rng,
        )
        yield city_case(
            data=data,
            scenario=scenario,
            fleet=generated.fleet,
            sites=generated.sites,
            midnight=midnight,
        )


def synthetic_cases(scenario: Scenario) -> list[CityCase]:
    """All the scenario's synthetic cases at once (small fleets; tests and notebooks)."""
    return list(iter_synthetic_cases(scenario))


def local_midnight(moment: datetime, timezone: str) -> datetime:
    """Local midnight at the start of the day of ``moment`` in ``timezone``."""
    local = moment.astimezone(ZoneInfo(timezone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def arrival_day_count(fleet: Fleet, timezone: str) -> int:
    """Number of distinct local dates on which sessions arrive."""
    zone = ZoneInfo(timezone)
    # The offset at the first arrival: exact for zones without daylight saving (all of China).
    offset = datetime.fromtimestamp(int(fleet.arrival_s.min()), tz=zone).utcoffset()
    offset_s = int(offset.total_seconds()) if offset is not None else 0
    days = np.unique((fleet.arrival_s + offset_s) // SECONDS_PER_DAY)
    return int(days.size)
