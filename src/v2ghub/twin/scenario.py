"""The public :class:`Scenario`: what the twin simulates, from the nine pilot cities, a TOML
file or a user's own sessions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from v2ghub.choices import with_rule_keepers
from v2ghub.errors import InputError
from v2ghub.model.case import CityCase
from v2ghub.model.sites import SiteLimits
from v2ghub.scenarios.build import (
    arrival_day_count,
    city_case,
    iter_synthetic_cases,
    local_midnight,
)
from v2ghub.scenarios.config import Scenario as ScenarioSettings
from v2ghub.scenarios.config import (
    ScenarioFile,
    default_scenario,
    load_scenario,
    resolve,
)
from v2ghub.scenarios.sessions_csv import SessionsFile, check_span, load_sessions_csv
from v2ghub.scenarios.sites_csv import load_sites_csv

MAX_SPAN_DAYS = 31
"""A month of sessions; a longer span is most likely a mistyped date."""


@dataclass(frozen=True)
class UserSessions:
    """A user's sessions file, read and checked, with its sites' limits."""

    path: Path
    sessions: SessionsFile
    sites: SiteLimits


@dataclass(frozen=True)
class Scenario:
    """What the twin simulates: settings, city data, and either synthetic fleets (one a
    city, seeded) or a user's sessions in one city.

    Build one with :meth:`pilot_cities`, :meth:`from_toml` or :meth:`from_sessions`, and
    change it with :meth:`replace`; it is immutable.

    Examples
    --------
    >>> from v2ghub import Scenario
    >>> scenario = Scenario.pilot_cities(cities=["Shenzhen"], vehicles_per_city=200)
    >>> scenario.cities, scenario.vehicles_per_city, scenario.seed
    (('Shenzhen',), 200, 2025)
    >>> scenario.replace(seed=7).seed
    7
    """

    settings: ScenarioSettings
    sessions: UserSessions | None = None
    file: Path | None = None

    @classmethod
    def pilot_cities(
        cls,
        *,
        cities: Sequence[str] | None = None,
        vehicles_per_city: int | None = None,
        seed: int | None = None,
        date: dt.date | None = None,
    ) -> Scenario:
        """The shipped scenario (a weekday in the nine pilot cities, 10,000 synthetic
        vehicles each, seed 2025), with the given settings changed."""
        return cls(default_scenario()).replace(
            cities=cities, vehicles_per_city=vehicles_per_city, seed=seed, date=date
        )

    @classmethod
    def from_toml(cls, path: Path | str) -> Scenario:
        """A scenario file (see ``examples/scenario.toml``); a bad one raises
        :class:`~v2ghub.errors.InputError` naming the file and field."""
        path = Path(path)
        return cls(load_scenario(path), file=path)

    @classmethod
    def from_sessions(
        cls,
        path: Path | str,
        *,
        city: str,
        sites: Path | str | None = None,
        base: Scenario | None = None,
    ) -> Scenario:
        """A user's sessions CSV in ``city`` (whose tariff and load apply), with the site
        limits of ``sites`` (a CSV; sites not listed have no limit). ``base`` gives the
        other settings (default: the shipped ones). The file is read and checked now."""
        path = Path(path)
        scenario = (base if base is not None else cls(default_scenario())).replace(cities=[city])
        sessions = load_sessions_csv(path)
        check_span(sessions, path, max_days=MAX_SPAN_DAYS)
        limits = (
            load_sites_csv(Path(sites), site_ids=sessions.site_ids)
            if sites is not None
            else SiteLimits.unlimited(sessions.site_ids)
        )
        return replace(scenario, sessions=UserSessions(path, sessions, limits))

    def replace(
        self,
        *,
        cities: Sequence[str] | None = None,
        vehicles_per_city: int | None = None,
        seed: int | None = None,
        date: dt.date | None = None,
        planners: Sequence[str] | None = None,
        wear: str | None = None,
        pilot_rules: bool | None = None,
        feeders: int | None = None,
        feeder_network: Path | None = None,
    ) -> Scenario:
        """This scenario with the given settings changed (``None`` keeps one); a bad value
        raises :class:`~v2ghub.errors.InputError`. A city's overrides and its
        demand-response events go with it when it is dropped."""
        updates: dict[str, Any] = {}
        if vehicles_per_city is not None:
            updates["vehicles_per_city"] = vehicles_per_city
        if seed is not None:
            updates["seed"] = seed
        if date is not None:
            updates["date"] = date
        if planners is not None:
            updates["planners"] = tuple(planners)
        if cities is not None:
            updates["cities"] = tuple(cities)
        if wear is not None:
            updates["wear"] = wear
        if pilot_rules is not None:
            updates["pilot_rules"] = pilot_rules
        if feeders is not None:
            updates["feeders"] = feeders
        if feeder_network is not None:
            updates["feeder_network"] = feeder_network
        if not updates:
            return self
        settings = self.settings.simulation.model_dump() | updates
        current = self.settings
        overrides = {name: data.model_dump() for name, data in current.city_data.items()}
        try:
            raw = ScenarioFile.model_validate(
                {
                    "simulation": settings,
                    "fleet": current.fleet.model_dump(),
                    "grid": current.grid.model_dump(),
                    "cities": {k: v for k, v in overrides.items() if k in settings["cities"]},
                    "vehicles": [m.model_dump() for m in current.vehicle_models],
                    "demand_response": [
                        e.model_dump()
                        for e in current.demand_response
                        if e.city is None or e.city in settings["cities"]
                    ],
                }
            )
        except Exception as error:
            raise InputError(f"bad option: {error}".splitlines()[0]) from None
        return Scenario(resolve(raw), sessions=self.sessions, file=self.file)

    @property
    def cities(self) -> tuple[str, ...]:
        """The simulated cities."""
        return tuple(self.settings.simulation.cities)

    @property
    def vehicles_per_city(self) -> int | None:
        """Synthetic vehicles per city, or ``None`` for a user's sessions."""
        return None if self.sessions is not None else self.settings.simulation.vehicles_per_city

    @property
    def seed(self) -> int:
        """The random seed: the same seed gives the same fleets and signals."""
        return self.settings.simulation.seed

    @property
    def planners(self) -> tuple[str, ...]:
        """The planners the scenario names (used when a :class:`Twin` is given none); with
        ``pilot_rules``, each that can keep the valley rule followed by ``<name>+rules``."""
        simulation = self.settings.simulation
        if simulation.pilot_rules:
            return with_rule_keepers(tuple(simulation.planners))
        return tuple(simulation.planners)

    @property
    def largest_fleet(self) -> int:
        """Sessions of the largest city fleet."""
        if self.sessions is not None:
            return self.sessions.sessions.fleet.n_sessions
        return self.settings.simulation.vehicles_per_city

    def days(self) -> dict[str, dt.date]:
        """The simulated (local) day of each city."""
        if self.sessions is None:
            return dict.fromkeys(self.cities, self.settings.simulation.date)
        city = self.cities[0]
        first = self.sessions.sessions.first_arrival
        return {city: local_midnight(first, self.settings.city_data[city].timezone).date()}

    def cases(self) -> Iterable[CityCase]:
        """The cities' cases: synthetic fleets are generated one city at a time, as a run
        reaches them (memory holds one city); a user's sessions make one case."""
        if self.sessions is None:
            return iter_synthetic_cases(self.settings)
        return [self._sessions_case(self.sessions)]

    def _sessions_case(self, user: UserSessions) -> CityCase:
        if len(self.cities) != 1:
            raise InputError("--sessions needs --city NAME (the city whose tariff applies)")
        data = self.settings.city_data[self.cities[0]]
        fleet = user.sessions.fleet
        return city_case(
            data=data,
            scenario=self.settings,
            fleet=fleet,
            sites=user.sites,
            midnight=local_midnight(user.sessions.first_arrival, data.timezone),
            arrival_days=arrival_day_count(fleet, data.timezone),
        )

    def notes(self) -> list[str]:
        """What a reader of the results should know: synthetic shapes, assumed data."""
        notes = [
            "Base load and renewable surplus are synthetic shapes built from each city's "
            "TOU hours; they are not measured data.",
            "Daily curves fold the simulated hours onto one day: sessions that arrive in "
            "the evening and leave the next morning fill the early hours, as the previous "
            "night's would.",
            "Money is exact: each session's bill is rounded once to the fen; totals add them.",
        ]
        if self.sessions is None:
            settings = self.settings.simulation
            notes.append(
                f"Fleets are synthetic ({settings.vehicles_per_city:,} vehicles per "
                f"city, seed {settings.seed}); see v2ghub.scenarios.synthetic."
            )
        for city in self.cities:
            data = self.settings.city_data[city]
            flags = []
            if data.tariff_assumed:
                flags.append("TOU tariff")
            if data.base_price_assumed:
                flags.append(f"base price {data.base_price_cny_per_kwh} CNY/kWh")
            if data.discharge.assumed:
                flags.append("discharge price")
            if flags:
                notes.append(f"{city}: assumed {', '.join(flags)} (see data/cities.toml).")
        return notes
