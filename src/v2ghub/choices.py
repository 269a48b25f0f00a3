"""What a user may choose, and up to how much: the planners' names, the shipped cities, the
sizes the twin accepts.

The command line builds its parser (and every ``--help``) from these without importing the
planners, pydantic or the solvers, so it starts at once. Each name is defined here only:
:mod:`v2ghub.scenarios.config`, :mod:`v2ghub.planning.lp` and
:mod:`v2ghub.workflows.day_ahead_plan` import theirs from this module, and a test holds
:data:`PLANNER_NAMES` equal to the registry :data:`v2ghub.planning.PLANNERS`.

Like :mod:`v2ghub.defaults`, this module imports nothing heavy.
"""

from __future__ import annotations

from v2ghub.toml_files import read_shipped_toml

PLANNER_NAMES = ("uncontrolled", "tou", "v2g-rules", "lp", "fast", "mpc", "mpc-lp")
"""The names of the registered planners, in the registry's order."""
RULES_SUFFIX = "+rules"
KEEPS_VALLEY_RULE = ("lp", "fast", "mpc", "mpc-lp")
"""The planners that can keep the pilots' valley rule, each also named ``<name>+rules``."""


def is_planner_name(name: str) -> bool:
    """Whether ``name`` is a registered planner or a rule-keeping one (``fast+rules``)."""
    base = name.removesuffix(RULES_SUFFIX)
    return name in PLANNER_NAMES or (base != name and base in KEEPS_VALLEY_RULE)


def with_rule_keepers(planners: tuple[str, ...]) -> tuple[str, ...]:
    """``planners`` with each that can keep the valley rule followed by its rule-keeping
    twin (``mpc`` -> ``mpc``, ``mpc+rules``), so the report compares them city by city."""
    chosen: list[str] = []
    for name in planners:
        keeper = f"{name}{RULES_SUFFIX}"
        chosen += [name, keeper] if name in KEEPS_VALLEY_RULE else [name]
    return tuple(dict.fromkeys(chosen))


PLAN_PLANNERS = tuple(
    name for name in dict.fromkeys(("lp", *PLANNER_NAMES)) if not name.startswith("mpc")
)
"""Planners of ``v2ghub plan``: the exact LP, the fast planner and the rule planners
(``mpc`` and ``mpc-lp`` re-plan a running day; a day-ahead plan is a single solve)."""
MAX_VEHICLES = 10_000_000
"""The most synthetic vehicles a city may have in a scenario."""
# The twin calls a planner at every control instant: beyond this many sessions per city
# the LP takes minutes a call (about 5 s at 1,000 vehicles, ~N^1.7).
TWIN_MAX_SESSIONS = 2_000


def shipped_city_names() -> tuple[str, ...]:
    """The names of the shipped cities (``data/cities.toml``), in the file's order: the keys
    of :func:`v2ghub.scenarios.catalog.pilot_cities`, read without validating the file."""
    return tuple(city["name"] for city in read_shipped_toml("cities.toml")["city"])
