"""Planners behind one interface: ``plan(Problem) -> Schedule``.

Every planner keeps the guarantees of the design: charger, vehicle and site limits; the SoC
window; departure targets whenever feasible; V2G only for vehicles that opted in.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from v2ghub import choices, defaults
from v2ghub.model.problem import Planner
from v2ghub.model.valley_rule import RULES_SUFFIX, with_rules_name
from v2ghub.planning.check import Violation, ViolationKind, check, plan_safely, safe_plan
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.lp import LpPlanner
from v2ghub.planning.mpc import WHOLE_PLAN_EVERY, RecedingHorizonPlanner
from v2ghub.planning.stepping import make_feasible
from v2ghub.planning.tou import TouPlanner
from v2ghub.planning.uncontrolled import UncontrolledPlanner
from v2ghub.planning.v2g_rules import V2gRulesPlanner

# The day's share of a capacity (demand) charge, so the optimiser also shaves the area's
# peak: a two-part tariff of about 30 CNY per kW and month is about 1 CNY per kW a day.
MPC_PEAK_PRICE_CNY_PER_KW = defaults.MPC_PEAK_PRICE_CNY_PER_KW


def _mpc(
    *,
    peak_price_cny_per_kw: float = MPC_PEAK_PRICE_CNY_PER_KW,
    base_load_error: float = 0.05,
    arrival_error: float = 0.1,
    expected_arrivals: bool = False,
    seed: int = 0,
    keep_valley_rule: bool = False,
    whole_plan_every: int = WHOLE_PLAN_EVERY,
) -> Planner:
    """Receding horizon around ``fast`` with forecasts, shaving the area's peak; between
    whole plans (every ``whole_plan_every``-th instant) only what changed is planned
    (:mod:`v2ghub.planning.mpc`)."""
    return RecedingHorizonPlanner(
        FastPlanner(peak_price_cny_per_kw=peak_price_cny_per_kw, keep_valley_rule=keep_valley_rule),
        base_load_error=base_load_error,
        arrival_error=arrival_error,
        expected_arrivals=expected_arrivals,
        seed=seed,
        name=with_rules_name("mpc", keep_valley_rule=keep_valley_rule),
        whole_plan_every=whole_plan_every,
    )


def _mpc_lp(
    *,
    peak_price_cny_per_kw: float = MPC_PEAK_PRICE_CNY_PER_KW,
    base_load_error: float = 0.05,
    arrival_error: float = 0.1,
    expected_arrivals: bool = False,
    seed: int = 0,
    time_limit_s: float = 300.0,
    keep_valley_rule: bool = False,
) -> Planner:
    """Receding horizon around the exact LP; small fleets."""
    return RecedingHorizonPlanner(
        LpPlanner(
            peak_price_cny_per_kw=peak_price_cny_per_kw,
            time_limit_s=time_limit_s,
            keep_valley_rule=keep_valley_rule,
        ),
        base_load_error=base_load_error,
        arrival_error=arrival_error,
        expected_arrivals=expected_arrivals,
        seed=seed,
        name=with_rules_name("mpc-lp", keep_valley_rule=keep_valley_rule),
    )


PLANNERS: dict[str, Callable[..., Planner]] = {
    "uncontrolled": UncontrolledPlanner,
    "tou": TouPlanner,
    "v2g-rules": V2gRulesPlanner,
    "lp": LpPlanner,  # exact; small fleets (about a thousand plugged vehicles)
    "fast": FastPlanner,  # exact per vehicle, sites by passes; for millions
    # Receding horizon with forecasts of the base load and of the arrivals to come.
    "mpc": _mpc,
    "mpc-lp": _mpc_lp,
}
"""The registered planners: name -> factory taking the planner's keyword arguments."""

KEEPS_VALLEY_RULE = choices.KEEPS_VALLEY_RULE
"""The planners that can keep the pilots' valley rule (``keep_valley_rule=True``), each
also registered as ``<name>+rules``."""


def make_planner(name: str, **options: Any) -> Planner:
    """A new planner registered under ``name``, made with keyword ``options``.

    A misspelt name or option raises :class:`ValueError` naming what is known.

    Examples
    --------
    >>> from v2ghub.planning import make_planner
    >>> planner = make_planner("fast", peak_price_cny_per_kw=1)
    >>> planner.name, planner.capabilities.peak_price
    ('fast', True)
    >>> make_planner("fast", passes=0)
    Traceback (most recent call last):
    ...
    ValueError: passes must be >= 1, got 0
    >>> make_planner("fast+rules").capabilities.valley_rule
    True
    """
    if name.endswith(RULES_SUFFIX) and name.removesuffix(RULES_SUFFIX) in KEEPS_VALLEY_RULE:
        return make_planner(name.removesuffix(RULES_SUFFIX), keep_valley_rule=True, **options)
    try:
        factory = PLANNERS[name]
    except KeyError:
        known = ", ".join([*PLANNERS, *(f"{n}{RULES_SUFFIX}" for n in KEEPS_VALLEY_RULE)])
        raise ValueError(f"unknown planner {name!r} (known: {known})") from None
    accepted = inspect.signature(factory).parameters
    unknown = [key for key in options if key not in accepted]
    if unknown:
        takes = ", ".join(accepted) or "no options"
        raise ValueError(f"planner {name!r} takes no option {unknown[0]!r} (takes: {takes})")
    return factory(**options)


__all__ = [
    "KEEPS_VALLEY_RULE",
    "PLANNERS",
    "FastPlanner",
    "LpPlanner",
    "Planner",
    "RecedingHorizonPlanner",
    "TouPlanner",
    "UncontrolledPlanner",
    "V2gRulesPlanner",
    "Violation",
    "ViolationKind",
    "check",
    "make_feasible",
    "make_planner",
    "plan_safely",
    "safe_plan",
]
