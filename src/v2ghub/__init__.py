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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Where each public name lives. They are imported when first used, so that `v2ghub --help`
# and a command that needs none of them (the live server, settle) do not pay for them all.
_HOMES = {
    "v2ghub.errors": ("InputError", "PlanningError"),
    "v2ghub.model": (
        "DescribedPlanner",
        "Planner",
        "PlannerCapabilities",
        "Problem",
        "Schedule",
        "TimeGrid",
        "capabilities_of",
    ),
    "v2ghub.planning": ("PLANNERS", "make_feasible", "make_planner"),
    "v2ghub.planning.check": ("Violation", "ViolationKind", "check", "plan_checked", "plan_safely"),
    "v2ghub.twin": ("PeriodSettlement", "RunInfo", "Scenario", "Settlement", "Twin", "TwinResult"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


# Defined for the interpreter only: type checkers see the imports above, so a misspelt
# name is still an error to them.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """A public name, imported from its module on first use."""
        module = _HOME_OF.get(name)
        if module is None:
            raise AttributeError(f"module 'v2ghub' has no attribute {name!r}")
        import importlib  # noqa: PLC0415 - only when a public name is first used

        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        """The public names too, before they are first used (for ``dir`` and completion)."""
        return sorted({*globals(), *__all__})


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
