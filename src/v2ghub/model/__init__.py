"""Pure domain types: no I/O, no imports of other v2ghub packages but :mod:`v2ghub.units`."""

from v2ghub.model.case import CityCase
from v2ghub.model.fleet import ChargerKind, Fleet
from v2ghub.model.problem import (
    DescribedPlanner,
    Planner,
    PlannerCapabilities,
    Problem,
    Schedule,
    capabilities_of,
)
from v2ghub.model.signals import GridSignals
from v2ghub.model.sites import SiteLimits
from v2ghub.model.tariff import DischargePriceRule, PeriodKind, Tariff
from v2ghub.model.time_grid import TimeGrid

__all__ = [
    "ChargerKind",
    "CityCase",
    "DescribedPlanner",
    "DischargePriceRule",
    "Fleet",
    "GridSignals",
    "PeriodKind",
    "Planner",
    "PlannerCapabilities",
    "Problem",
    "Schedule",
    "SiteLimits",
    "Tariff",
    "TimeGrid",
    "capabilities_of",
]
