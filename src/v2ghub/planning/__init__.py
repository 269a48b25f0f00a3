"""Planners behind one interface: ``plan(Problem) -> Schedule``.

Every planner keeps the guarantees of the design: charger, vehicle and site limits; the SoC
window; departure targets whenever feasible; V2G only for vehicles that opted in.
"""

from __future__ import annotations

from collections.abc import Callable

from v2ghub.model.problem import Planner
from v2ghub.planning.check import Violation, ViolationKind, check, plan_safely, safe_plan
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.lp import LpPlanner
from v2ghub.planning.mpc import RecedingHorizonPlanner
from v2ghub.planning.tou import TouPlanner
from v2ghub.planning.uncontrolled import UncontrolledPlanner
from v2ghub.planning.v2g_rules import V2gRulesPlanner

# The day's share of a capacity (demand) charge, so the optimiser also shaves the area's
# peak: a two-part tariff of about 30 CNY per kW and month is about 1 CNY per kW a day.
MPC_PEAK_PRICE_CNY_PER_KW = 1.0

PLANNERS: dict[str, Callable[[], Planner]] = {
    "uncontrolled": UncontrolledPlanner,
    "tou": TouPlanner,
    "v2g-rules": V2gRulesPlanner,
    "lp": LpPlanner,  # exact; small fleets (about a thousand plugged vehicles)
    "fast": FastPlanner,  # exact per vehicle, sites by passes; for millions
    # Receding horizon with forecasts of the base load and of the arrivals to come.
    "mpc": lambda: RecedingHorizonPlanner(
        FastPlanner(peak_price_cny_per_kw=MPC_PEAK_PRICE_CNY_PER_KW), name="mpc"
    ),
    "mpc-lp": lambda: RecedingHorizonPlanner(
        LpPlanner(peak_price_cny_per_kw=MPC_PEAK_PRICE_CNY_PER_KW), name="mpc-lp"
    ),
}


def make_planner(name: str) -> Planner:
    """The planner registered under ``name``."""
    try:
        return PLANNERS[name]()
    except KeyError:
        known = ", ".join(PLANNERS)
        raise ValueError(f"unknown planner {name!r} (known: {known})") from None


__all__ = [
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
    "make_planner",
    "plan_safely",
    "safe_plan",
]
