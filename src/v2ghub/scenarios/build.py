"""Build the simulator's input (:class:`~v2ghub.model.case.CityCase`) for each city."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from v2ghub.model.case import CityCase
from v2ghub.model.fleet import Fleet
from v2ghub.model.signals import GridSignals
from v2ghub.model.sites import SiteLimits
from v2ghub.model.time_grid import TimeGrid
from v2ghub.scenarios.ageing_data import planning_wear_price
from v2ghub.scenarios.catalog import CityData
from v2ghub.scenarios.config import Scenario
from v2ghub.scenarios.load_shapes import grid_signals
from v2ghub.scenarios.shards import (
    BLOCK_VEHICLES,
    CityLayout,
    city_fleet,
    city_midnight,
    generate_block,
)
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


def iter_synthetic_cases(
    scenario: Scenario, *, block_vehicles: int = BLOCK_VEHICLES
) -> Iterator[CityCase]:
    """One seeded synthetic case per city of the scenario, generated when asked for.

    Each city draws from its own streams, so adding a city never changes another's fleet;
    a city is drawn in shard blocks (:mod:`v2ghub.scenarios.shards`), whose first is the
    whole city up to ``BLOCK_VEHICLES`` vehicles.
    """
    settings = scenario.simulation
    for number, name in enumerate(settings.cities):
        generated = city_fleet(scenario, city_number=number, block_vehicles=block_vehicles)
        yield city_case(
            data=scenario.city_data[name],
            scenario=scenario,
            fleet=generated.fleet,
            sites=generated.sites,
            midnight=city_midnight(scenario, name),
        )


def city_signals(scenario: Scenario, layout: CityLayout) -> GridSignals:
    """The city's base load and renewable surplus on its grid, scaled to its whole fleet
    (as :func:`city_case` makes them for the city's fleet in one piece)."""
    data = scenario.city_data[layout.city]
    return grid_signals(
        grid=layout.grid,
        tariff=data.tariff(),
        shape=scenario.grid,
        n_vehicles=max(1, layout.n_vehicles),
        solar_peak_share=data.solar_peak_share,
    )


def block_case(scenario: Scenario, layout: CityLayout, *, block: int) -> CityCase:
    """The case of one shard block of a city: the block's sessions and sites on the city's
    grid, with the city's base load and renewable surplus (scaled to the whole city's
    fleet, ``layout.n_vehicles``), so that every block sees the same grid context."""
    data = scenario.city_data[layout.city]
    generated = generate_block(
        scenario,
        city_number=layout.city_number,
        block=block,
        numbered=True,
        block_vehicles=layout.block_vehicles,
    )
    fleet = generated.fleet
    return CityCase(
        city=layout.city,
        grid=layout.grid,
        fleet=fleet,
        sites=generated.sites,
        tariff=data.tariff(),
        signals=city_signals(scenario, layout),
        degradation_cny_per_kwh=planning_wear_price(
            fleet,
            wear=scenario.simulation.wear,
            flat_cny_per_kwh=scenario.simulation.degradation_cny_per_kwh,
        ),
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
