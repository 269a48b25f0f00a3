"""Pure domain types: no I/O, no imports of other v2ghub packages but :mod:`v2ghub.units`."""

from v2ghub.model.case import CityCase
from v2ghub.model.fleet import ChargerKind, Fleet
from v2ghub.model.problem import Problem, Schedule
from v2ghub.model.signals import GridSignals
from v2ghub.model.sites import SiteLimits
from v2ghub.model.tariff import DischargePriceRule, PeriodKind, Tariff
from v2ghub.model.time_grid import TimeGrid

__all__ = [
    "ChargerKind",
    "CityCase",
    "DischargePriceRule",
    "Fleet",
    "GridSignals",
    "PeriodKind",
    "Problem",
    "Schedule",
    "SiteLimits",
    "Tariff",
    "TimeGrid",
]
