"""The pilots' valley rule kept by prices, for the planners that plan by prices.

The rule (:mod:`v2ghub.model.valley_rule`) is one linear constraint per group ``g`` (every
session; the private chargers' sessions) with share ``s_g``::

    sum over i in g, t of dt_h * (valley[t] - s_g) * c[i,t] >= s_g * C_g - V_g

Its Lagrangian adds ``lambda_g * (s_g - valley[t])`` CNY to every kWh a vehicle of ``g``
imports in step ``t``: a surcharge of ``lambda_g * s_g`` outside valley hours and a rebate
of ``lambda_g * (1 - s_g)`` in them. So a planner that plans exactly against prices (the
fast planner's per-vehicle optimum) keeps the rule by planning against those prices with
the least multipliers ``lambda_all``, ``lambda_private`` that meet it. Private vehicles see
both groups' terms, the others the first only: two price classes.

The multipliers are found on the planner's plain energy solve (no peak or headroom
iterations, one compiled pass each): first the private group's, by bisection with the
other at zero, then the overall one's with the private one held. A receding-horizon
planner plans again every few minutes with nearly the same multipliers, so the last ones
(``hint``) bracket the bisection and, a tenth lower, floor the first full plan's (so
that they fall while they still work); when the rule bound last time, the plan without
its prices is made only if no priced plan keeps it. The full plan (peak and
headroom iterations included) is then made at those prices; where it still misses (the
peak price moved charging out of the valley) the multipliers grow geometrically up to the
penalty, and the first that meets the rule is refined by one step back towards the last
that missed.
A multiplier never exceeds the rule's penalty (``ValleyRule.penalty_cny_per_kwh``): that
is the relaxation, exactly as the LP's miss column priced at the penalty. Of all the plans
made, the first that meets the rule is kept; if none does, the one that misses it least,
the plan without the rule's prices included, so keeping the rule never misses it by more
than planning without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from v2ghub.model.problem import Problem
from v2ghub.model.valley_rule import ValleyRule, valley_steps

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BISECTION_STEPS = 10  # the multiplier to within penalty / 2**10 (0.005 CNY/kWh at 5)
HINTED_STEPS = 5  # from a bracket [hint / 4, hint] or [hint, 2 hint]: to within hint / 40
HINT_DECAY = 0.9  # the last full plan's multipliers, this much lower, floor the next's
# Full plans after the first, each at multipliers GROWTH_FACTOR times as high plus
# GROWTH_STEP_SHARE of the penalty: 0 -> 0.1 -> 0.35 -> 0.98 -> 2.5 -> 5 CNY/kWh at a
# penalty of 5, so that a peak price that holds charging out of the valley (worth up to
# 4 V CNY per kWh moved into one 15-minute step) is outbid within the rounds.
GROWTH_ROUNDS = 5
GROWTH_FACTOR = 2.5
GROWTH_STEP_SHARE = 0.02
# A rule counts as met within this many kWh of valley charging (rounding of the plans).
MET_TOLERANCE_KWH = 1e-6


@dataclass(frozen=True)
class ClassPrices:
    """Import prices added per class of vehicles.

    ``vehicle_class`` has one entry per problem row; ``import_offsets_cny_per_kwh`` has one
    row per class and one column per step: CNY added to each kWh imported.
    """

    vehicle_class: IntArray
    import_offsets_cny_per_kwh: FloatArray


def class_price_cost_cny(prices: ClassPrices, power_kw: FloatArray, dt_h: float) -> FloatArray:
    """Per row, what the class prices add to the cost of ``power_kw`` (charging only)."""
    charged_kw = np.maximum(power_kw, 0.0)
    cost = np.zeros(power_kw.shape[0])
    steps = power_kw.shape[1]
    for price_class, offsets in enumerate(prices.import_offsets_cny_per_kwh):  # classes
        rows = prices.vehicle_class == price_class
        cost[rows] = charged_kw[rows] @ offsets[:steps] * dt_h
    return cost


def rule_prices(
    problem: Problem, rule: ValleyRule, *, overall_cny_per_kwh: float, private_cny_per_kwh: float
) -> ClassPrices:
    """The rule's Lagrangian prices for multipliers of the two groups (see the module)."""
    valley = valley_steps(problem.period_kind).astype(np.float64)
    overall = overall_cny_per_kwh * (rule.share - valley)
    private = overall + private_cny_per_kwh * (rule.private_share - valley)
    return ClassPrices(
        vehicle_class=rule.private.astype(np.int64),
        import_offsets_cny_per_kwh=np.vstack((overall, private)),
    )


def rule_miss_kwh(problem: Problem, rule: ValleyRule, power_kw: FloatArray) -> tuple[float, float]:
    """By how much a plan misses each rule (all, private), kWh of valley charging."""
    charged_kw = np.maximum(power_kw, 0.0)
    valley = valley_steps(problem.period_kind)[: power_kw.shape[1]]
    dt_h = problem.dt_h
    return rule.missing_kwh(charged_kw.sum(axis=1) * dt_h, charged_kw[:, valley].sum(axis=1) * dt_h)


def plan_with_valley_rule(
    problem: Problem,
    rule: ValleyRule,
    *,
    solve_energy: Callable[[ClassPrices | None], FloatArray],
    solve_full: Callable[[ClassPrices | None], FloatArray],
    hint: tuple[float, float] = (0.0, 0.0),
) -> tuple[FloatArray, tuple[float, float]]:
    """The plan that keeps the valley rule at the least price (see the module docstring),
    and the multipliers (overall, private; CNY per kWh) it was made at.

    ``solve_energy`` plans at the energy prices plus the given class prices (one quick
    pass); ``solve_full`` makes the planner's whole plan at them. ``hint``: the multipliers
    of the last plan, if any (zeros: none).
    """
    cap = rule.penalty_cny_per_kwh

    def misses(power_kw: FloatArray) -> tuple[float, float]:
        return rule_miss_kwh(problem, rule, power_kw)

    def met(miss: tuple[float, float]) -> bool:
        return miss[0] <= MET_TOLERANCE_KWH and miss[1] <= MET_TOLERANCE_KWH

    def full(multipliers: tuple[float, float]) -> tuple[FloatArray, tuple[float, float]]:
        if multipliers == (0.0, 0.0):
            power_kw = solve_full(None)
        else:
            overall, private = multipliers
            power_kw = solve_full(
                rule_prices(problem, rule, overall_cny_per_kwh=overall, private_cny_per_kwh=private)
            )
        return power_kw, misses(power_kw)

    tried: list[tuple[FloatArray, tuple[float, float], tuple[float, float]]] = []
    if hint == (0.0, 0.0):
        # The rule did not bind last time (or there was none): it may not bind now.
        power_kw, miss = full((0.0, 0.0))
        if met(miss):
            return power_kw, (0.0, 0.0)
        tried.append((power_kw, miss, (0.0, 0.0)))

    def least(meets: Callable[[float], bool], hint: float) -> float:
        """The least multiplier in [0, cap] at which ``meets`` holds (cap if none)."""
        if meets(0.0):
            return 0.0
        low, high, steps = 0.0, cap, BISECTION_STEPS
        if 0.0 < hint < cap:
            if meets(hint):
                low, high = (0.0, hint / 4) if meets(hint / 4) else (hint / 4, hint)
                steps = HINTED_STEPS
            elif meets(min(2.0 * hint, cap)):
                low, high, steps = hint, min(2.0 * hint, cap), HINTED_STEPS
            else:
                low = min(2.0 * hint, cap)
        for _ in range(steps):
            middle = 0.5 * (low + high)
            if meets(middle):
                high = middle
            else:
                low = middle
        return high

    def energy_misses(overall: float, private: float) -> tuple[float, float]:
        prices = rule_prices(
            problem, rule, overall_cny_per_kwh=overall, private_cny_per_kwh=private
        )
        return misses(solve_energy(prices))

    private = least(lambda value: energy_misses(0.0, value)[1] <= MET_TOLERANCE_KWH, hint[1])
    overall = least(lambda value: energy_misses(value, private)[0] <= MET_TOLERANCE_KWH, hint[0])
    # The peak and headroom iterations move charging too, which the quick plans leave out:
    # the last full plan's multipliers, a little lower, are the floor of the first full plan.
    overall = max(overall, HINT_DECAY * hint[0])
    private = max(private, HINT_DECAY * hint[1])
    below: tuple[float, float] | None = None  # the highest multipliers seen to miss
    for _ in range(1 + GROWTH_ROUNDS):
        power_kw, miss = full((overall, private))
        if met(miss):
            if below is None:
                return power_kw, (overall, private)
            # One step back towards the last that missed: less than the growth overshot.
            middle = (0.5 * (below[0] + overall), 0.5 * (below[1] + private))
            middle_kw, middle_miss = full(middle)
            if met(middle_miss):
                return middle_kw, middle
            return power_kw, (overall, private)
        tried.append((power_kw, miss, (overall, private)))
        if overall >= cap and private >= cap:
            break
        below = (overall, private)
        if miss[0] > MET_TOLERANCE_KWH:
            overall = min(cap, GROWTH_FACTOR * overall + GROWTH_STEP_SHARE * cap)
        if miss[1] > MET_TOLERANCE_KWH:
            private = min(cap, GROWTH_FACTOR * private + GROWTH_STEP_SHARE * cap)
    if all(multipliers != (0.0, 0.0) for _, _, multipliers in tried):
        power_kw, miss = full((0.0, 0.0))
        tried.append((power_kw, miss, (0.0, 0.0)))
    power_kw, _, multipliers = min(tried, key=lambda plan: sum(plan[1]))
    return power_kw, multipliers
