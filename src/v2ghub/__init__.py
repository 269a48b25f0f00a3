"""v2ghub: vehicle-to-grid aggregation, as a digital twin and a live aggregator.

The public Python API: build a :class:`Scenario`, run it in a :class:`Twin` with planner
objects of your own or registered ones (:func:`make_planner`), and settle, write or report
the :class:`TwinResult`. Every plan goes through one checked path (:func:`plan_safely`).

Sign convention everywhere: positive power charges the vehicle (import from the grid),
negative power discharges it (vehicle-to-grid export). See :mod:`v2ghub.units`.

Examples
--------
>>> import v2ghub
>>> sorted(v2ghub.PLANNERS)[:3]
['fast', 'lp', 'mpc']
"""

__version__ = "0.1.0"

from v2ghub.errors import InputError, PlanningError
from v2ghub.model import (
    DescribedPlanner,
    Planner,
    PlannerCapabilities,
    Problem,
    Schedule,
    TimeGrid,
    capabilities_of,
)
from v2ghub.planning import PLANNERS, make_feasible, make_planner
from v2ghub.planning.check import Violation, ViolationKind, check, plan_checked, plan_safely
from v2ghub.twin import PeriodSettlement, RunInfo, Scenario, Settlement, Twin, TwinResult

__all__ = [
    "PLANNERS",
    "DescribedPlanner",
    "InputError",
    "PeriodSettlement",
    "Planner",
    "PlannerCapabilities",
    "PlanningError",
    "Problem",
    "RunInfo",
    "Scenario",
    "Schedule",
    "Settlement",
    "TimeGrid",
    "Twin",
    "TwinResult",
    "Violation",
    "ViolationKind",
    "__version__",
    "capabilities_of",
    "check",
    "make_feasible",
    "make_planner",
    "plan_checked",
    "plan_safely",
]
