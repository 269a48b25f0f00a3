"""A city's synthetic fleet drawn in fixed blocks of sites, so that it can be sharded.

A city of ``N`` vehicles is drawn as ``ceil(N / BLOCK_VEHICLES)`` *shard blocks*: block
``k`` holds

    n_k = min(BLOCK_VEHICLES, N - k * BLOCK_VEHICLES)

sessions, drawn by :func:`~v2ghub.scenarios.synthetic.generate_fleet` from its own stream,

    block 0:   numpy.random.default_rng([seed, city_number])
    block k:   numpy.random.default_rng([seed, city_number, k])     (k >= 1)

so block 0 is exactly the fleet drawn before blocks existed: every city of up to
``BLOCK_VEHICLES`` vehicles (the default day, every small scenario) is unchanged. A block
groups its own sessions into its own sites (transformers, workplaces, stations), so a site
never spans two blocks; site ids of block ``k >= 1`` read ``CITY-block<k>-...`` and are thus
unique in the city. Sessions are numbered across the city: block ``k``'s first session is
number ``sum_{j<k} n_j``.

The city's fleet is the blocks one after the other (:func:`city_fleet`), whatever runs it:
one process with the whole city, or workers that each take whole blocks
(:mod:`v2ghub.scale`). The sessions are the same either way, whatever the number of
workers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from v2ghub.model.fleet import Fleet
from v2ghub.model.sites import SiteLimits
from v2ghub.model.time_grid import TimeGrid
from v2ghub.scenarios.config import Scenario
from v2ghub.scenarios.synthetic import SyntheticFleet, generate_fleet

BLOCK_VEHICLES = 25_000
"""Most sessions in a shard block: the unit a worker takes (memory grows with it)."""


def block_sizes(n_vehicles: int, *, block_vehicles: int = BLOCK_VEHICLES) -> tuple[int, ...]:
    """Sessions in each block of a city of ``n_vehicles`` (none for an empty city)."""
    if block_vehicles < 1:
        raise ValueError(f"block_vehicles must be >= 1, got {block_vehicles}")
    full, rest = divmod(n_vehicles, block_vehicles)
    return (block_vehicles,) * full + ((rest,) if rest else ())


def block_rng(seed: int, city_number: int, block: int) -> np.random.Generator:
    """The stream of block ``block`` of the city numbered ``city_number`` (see above)."""
    key = [seed, city_number] if block == 0 else [seed, city_number, block]
    return np.random.default_rng(key)


def city_midnight(scenario: Scenario, city: str) -> datetime:
    """Local midnight at the start of the scenario's day in ``city``."""
    day: date = scenario.simulation.date
    zone = ZoneInfo(scenario.city_data[city].timezone)
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def generate_block(
    scenario: Scenario,
    *,
    city_number: int,
    block: int,
    numbered: bool = False,
    block_vehicles: int = BLOCK_VEHICLES,
) -> SyntheticFleet:
    """Block ``block`` of the city numbered ``city_number`` in ``scenario.simulation.cities``.

    With ``numbered``, the sessions carry their city-wide ids (``CITY-<number>``, as the
    whole city's table numbers them), so that a block's table reads as the city's rows.
    """
    settings = scenario.simulation
    city = settings.cities[city_number]
    sizes = block_sizes(settings.vehicles_per_city, block_vehicles=block_vehicles)
    if not 0 <= block < len(sizes):
        raise ValueError(f"{city} has {len(sizes)} block(s), not block {block}")
    # generate_fleet names sites after its `city`: block k >= 1 prefixes its own.
    label = city if block == 0 else f"{city}-block{block}"
    generated = generate_fleet(
        n_vehicles=sizes[block],
        city=label,
        day=settings.date,
        timezone=scenario.city_data[city].timezone,
        mix=scenario.fleet,
        models=scenario.vehicle_models,
        rng=block_rng(settings.seed, city_number, block),
    )
    if not numbered:
        return generated
    first = sum(sizes[:block])
    numbers = np.arange(first, first + sizes[block], dtype=np.int64).astype(np.str_)
    ids = np.char.add(f"{city}-", numbers)
    return replace(generated, fleet=replace(generated.fleet, session_ids=ids))


def concatenate(parts: list[SyntheticFleet]) -> SyntheticFleet:
    """Blocks one after the other: sessions in order, each block's sites after the last's."""
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + [p.sites.n_sites for p in parts[:-1]])
    joined: dict[str, Any] = {}
    for f in fields(Fleet):
        values = [getattr(p.fleet, f.name) for p in parts]
        if f.name == "site_index":
            values = [v + offset for v, offset in zip(values, offsets, strict=True)]
        joined[f.name] = None if values[0] is None else np.concatenate(values)
    sites = SiteLimits(
        tuple(site for p in parts for site in p.sites.site_ids),
        np.concatenate([p.sites.import_limit_kw for p in parts]),
        np.concatenate([p.sites.export_limit_kw for p in parts]),
    )
    return SyntheticFleet(fleet=Fleet(**joined), sites=sites)


def city_fleet(
    scenario: Scenario, *, city_number: int, block_vehicles: int = BLOCK_VEHICLES
) -> SyntheticFleet:
    """The whole city's fleet: its blocks one after the other (block 0 alone: as drawn
    before blocks existed)."""
    sizes = block_sizes(scenario.simulation.vehicles_per_city, block_vehicles=block_vehicles)
    return concatenate(
        [
            generate_block(
                scenario, city_number=city_number, block=k, block_vehicles=block_vehicles
            )
            for k in range(len(sizes))
        ]
    )


@dataclass(frozen=True)
class CityLayout:
    """What every shard of a city must agree on, found without holding the city's fleet.

    ``grid`` is the city's time grid (local midnight to the last departure of any block,
    at least a day), ``block_sessions`` the sessions of each block and ``n_vehicles`` their
    sum (what the city's base load is scaled to), ``block_vehicles`` the block size drawn.
    """

    city: str
    city_number: int
    grid: TimeGrid
    block_sessions: tuple[int, ...]
    block_vehicles: int = BLOCK_VEHICLES

    @property
    def n_vehicles(self) -> int:
        """Sessions in the city."""
        return sum(self.block_sessions)

    @property
    def n_blocks(self) -> int:
        """Blocks in the city."""
        return len(self.block_sessions)


def city_layout(
    scenario: Scenario, *, city_number: int, block_vehicles: int = BLOCK_VEHICLES
) -> CityLayout:
    """The layout of a city: each block is drawn once, its last departure kept, and
    dropped (memory holds one block)."""
    settings = scenario.simulation
    city = settings.cities[city_number]
    sizes = block_sizes(settings.vehicles_per_city, block_vehicles=block_vehicles)
    midnight = city_midnight(scenario, city)
    last_s = int(midnight.timestamp())
    for k in range(len(sizes)):
        fleet = generate_block(
            scenario, city_number=city_number, block=k, block_vehicles=block_vehicles
        ).fleet
        last_s = max(last_s, int(fleet.departure_s.max()))
    last = datetime.fromtimestamp(last_s, tz=midnight.tzinfo)
    step = timedelta(minutes=settings.step_minutes)
    grid = TimeGrid.covering(midnight, max(last, midnight + timedelta(days=1)), step)
    return CityLayout(
        city=city,
        city_number=city_number,
        grid=grid,
        block_sessions=sizes,
        block_vehicles=block_vehicles,
    )
