"""The peak price for the fast planner: a few price iterations, their plans mixed site by site.

The LP (:mod:`v2ghub.planning.lp`) minimises, with a peak price ``V`` (CNY/kW),

    energy cost + degradation + V * max_t (base_load_kw[t] + sum_i p[i, t]).

The peak term couples every vehicle, which the fast planner's per-vehicle programme cannot
hold. Its subgradient can: for any weights ``lambda_t >= 0`` with ``sum_t lambda_t = V``
that sit on the steps of the highest net load, ``sum_t lambda_t * (base + sum_i p[i, t])``
is the term near the current plan, and it is a price: ``lambda_t / dt_h`` CNY per kWh on
top of the import price (charging raises the load) and of the export price (discharging
lowers it). So each iteration

1. takes the current plan's net load ``y`` (base + fleet) and the steps ``S`` within a band
   of its peak, ``y_t >= max(y) - band * (max(y) - min(y))``;
2. spreads ``V`` evenly over ``S``: a surcharge of ``V / (|S| dt_h)`` CNY/kWh on each step
   of ``S``. One surcharge value adds at most one price level per (import, export) level
   met in ``S``, and the kernel's work grows with the number of levels
   (:func:`~v2ghub.planning.fast.price_levels`);
3. re-plans the fleet at these prices (the response);
4. mixes, block by block (a site with limits, or one vehicle at a site without), the
   current plan with the last responses: weights ``w[b, j] >= 0`` summing to 1 per block,
   chosen by a small LP (the restricted master of simplicial decomposition) that minimises

       sum_{b,j} w[b, j] * cost[b, j] + V * z
       subject to  z >= base[t] + sum_{b,j} w[b, j] * load[b, j, t]  for every step t,

   where ``cost[b, j]`` is block ``b``'s energy cost in plan ``j`` plus a penalty on its
   shortfall and ``load[b, j, t]`` its net power. A mix of plans that each keep a site's
   limits keeps them; stored energy is concave in power, so a mix keeps every target and
   energy floor its plans keep (what it stores above the ceiling is cut in step 5); cost
   and shortfall are convex, so the master's value bounds the mix's from above;
5. passes the mix through :func:`~v2ghub.planning.stepping.make_feasible` and evaluates
   its true objective with :func:`~v2ghub.planning.objective.schedule_cost`.

One price response pushes every vehicle the same way (all move their charging off the
peak at once), so taken alone it overshoots and makes a new peak elsewhere; mixed, the
plans shave the peak down to a plateau. When an iteration does not improve, the band
doubles (water-filling style: the plateau and its neighbours share the surcharge) and the
next iteration prices the steps by the master's own weights instead: the duals of its
peak rows (``>= 0``, summing to ``V``), rounded up to half or all of the largest so that
they add at most two price levels. Those weights are what the mix lacks: a plain band
spreads ``V`` evenly where the optimum does not.

The best plan found is returned, the plan without a surcharge included, so the result
never costs more than ignoring the peak, nor leaves more energy short. Memory: the current
plan and ``RESPONSES_KEPT`` responses, each a vehicles x steps array, besides the mix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import cast

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from v2ghub.model.problem import Problem
from v2ghub.planning.objective import schedule_cost
from v2ghub.planning.stepping import make_feasible
from v2ghub.planning.valley_rule_prices import ClassPrices, class_price_cost_cny

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PEAK_ITERATIONS = 6
# The first band: steps within 5% of the load's range below its peak carry the surcharge.
BAND_SHARE = 0.05
# Responses kept for the mix besides the current plan (each is a vehicles x steps array).
RESPONSES_KEPT = 2
# The master has one weight per block and plan; beyond this many blocks, blocks share.
MAX_BLOCKS = 1024
# Master penalty per kWh short, over every price: a mix never trades a target for money.
SHORTFALL_PENALTY_CNY_PER_KWH = 1e3
# Shortfall (kWh per vehicle) a plan may add over the plan without surcharge: rounding.
SHORTFALL_TOLERANCE_KWH = 1e-6


@dataclass(frozen=True)
class BlockPlan:
    """A whole-fleet plan and what the master needs of it, per block."""

    power_kw: FloatArray  # vehicles x steps, column-major
    load_kw: FloatArray  # blocks x steps: the block's net power
    cost_cny: FloatArray  # blocks: energy cost + degradation - export revenue + penalty
    shortfall_kwh: float  # the fleet's total


class PlanBlocks:
    """The blocks of a problem and the per-plan sums the master reads."""

    def __init__(self, problem: Problem, prices: ClassPrices | None = None) -> None:
        self.problem = problem
        self.prices = prices
        n = problem.n_vehicles
        limited = np.isfinite(problem.import_limit_kw) | np.isfinite(problem.export_limit_kw)
        n_sites = problem.import_limit_kw.shape[0]
        # A limited site mixes as one (its limits hold for a common weight); other vehicles
        # mix alone.
        key = np.where(limited[problem.site_index], problem.site_index, n_sites + np.arange(n))
        _, dense = np.unique(key, return_inverse=True)
        self.block: IntArray = (dense.reshape(-1) % MAX_BLOCKS).astype(np.int64)
        self.n_blocks = int(self.block.max()) + 1 if n else 0

    def describe(self, power_kw: FloatArray) -> BlockPlan:
        """Block loads, block costs and the fleet's shortfall of ``power_kw``."""
        problem = self.problem
        dt_h = problem.dt_h
        ones = np.ones(problem.grid.length)
        charge_kw = np.maximum(power_kw, 0.0)
        # Per vehicle: (CNY paid, kWh charged) and (CNY earned, kWh discharged), over dt_h.
        bought = charge_kw @ np.stack((problem.import_price_cny_per_kwh, ones), axis=1)
        charge_kw -= power_kw  # now the discharge power, >= 0
        sold = charge_kw @ np.stack((problem.export_price_cny_per_kwh, ones), axis=1)
        cost_cny = dt_h * (bought[:, 0] - sold[:, 0] + problem.degradation * sold[:, 1])
        # The planners keep power at zero outside each stay, so sums over all steps do.
        stored_kwh = dt_h * (
            bought[:, 1] * problem.charge_efficiency - sold[:, 1] / problem.discharge_efficiency
        )
        short_kwh = np.maximum(problem.target_energy_kwh - problem.energy_kwh - stored_kwh, 0.0)
        cost_cny += SHORTFALL_PENALTY_CNY_PER_KWH * short_kwh
        if self.prices is not None:
            cost_cny += class_price_cost_cny(self.prices, power_kw, dt_h)
        load_kw = np.empty((self.n_blocks, problem.grid.length))
        for step in range(problem.grid.length):  # columns are contiguous (column-major)
            load_kw[:, step] = np.bincount(self.block, power_kw[:, step], minlength=self.n_blocks)
        return BlockPlan(
            power_kw=power_kw,
            load_kw=load_kw,
            cost_cny=np.bincount(self.block, cost_cny, minlength=self.n_blocks).astype(np.float64),
            shortfall_kwh=float(short_kwh.sum()),
        )

    def blend(self, plans: list[BlockPlan], weights: FloatArray) -> FloatArray:
        """Each block's weighted sum of the plans (``weights``: blocks x plans)."""
        vehicle_weights = weights[self.block]
        mixed = vehicle_weights[:, :1] * plans[0].power_kw
        term = np.empty_like(mixed)
        for j, plan in enumerate(plans[1:], start=1):
            np.multiply(vehicle_weights[:, j : j + 1], plan.power_kw, out=term)
            mixed += term
        return mixed

    def mix(
        self, plans: list[BlockPlan], peak_price_cny_per_kw: float
    ) -> tuple[FloatArray, FloatArray] | None:
        """The block-wise mix of ``plans`` that the master finds best; None if it fails.

        Returns the mix (vehicles x steps, kW) and the master's step weights ``lambda_t``
        (CNY/kW, the duals of its peak rows: ``>= 0``, summing to ``V``).

        Variables: the weight ``w[b, j]`` of plan ``j`` in block ``b`` at ``b * J + j``,
        then the peak ``z``. Rows: ``sum w[b, j] load[b, j, t] - z <= -base[t]`` per step
        and ``sum_j w[b, j] = 1`` per block.
        """
        n_blocks, n_plans = self.n_blocks, len(plans)
        horizon = self.problem.grid.length
        n_weights = n_blocks * n_plans
        cost = np.append(
            np.stack([plan.cost_cny for plan in plans], axis=1).reshape(-1), peak_price_cny_per_kw
        )
        loads = np.stack([plan.load_kw for plan in plans], axis=1).reshape(n_weights, horizon)
        peak_rows = np.hstack((loads.T, -np.ones((horizon, 1))))
        weight = np.arange(n_weights)
        one_per_block = sp.csr_array(
            (np.ones(n_weights), (weight // n_plans, weight)), shape=(n_blocks, n_weights + 1)
        )
        from scipy.optimize import linprog  # noqa: PLC0415 - 0.4 s to import

        result = linprog(
            cost,
            A_ub=peak_rows,
            b_ub=-self.problem.base_load_kw,
            # SciPy's HiGHS methods take sparse constraints; its type stubs name only arrays.
            A_eq=cast("FloatArray", one_per_block),
            b_eq=np.ones(n_blocks),
            bounds=[(0.0, None)] * n_weights + [(None, None)],
            method="highs",
        )
        if result.status != 0 or result.x is None:
            return None
        weights = np.clip(result.x[:n_weights], 0.0, 1.0).reshape(n_blocks, n_plans)
        mixed = self.blend(plans, weights)
        # The duals are the objective's sensitivity to the right-hand side -base_load.
        step_weights = np.maximum(-np.asarray(result.ineqlin.marginals, dtype=np.float64), 0.0)
        return mixed, step_weights


def plan_with_peak_price(
    problem: Problem,
    *,
    solve: Callable[[Problem], FloatArray],
    peak_price_cny_per_kw: float,
    iterations: int = PEAK_ITERATIONS,
    prices: ClassPrices | None = None,
) -> FloatArray:
    """The fleet's plan with the peak priced (see the module docstring); within every limit.

    Parameters
    ----------
    solve:
        Plans the problem's fleet at the problem's prices (the fast planner's exact
        per-vehicle optimum, sites by passes): vehicles x steps, kW.
    peak_price_cny_per_kw:
        ``V`` > 0, CNY per kW of the horizon's highest base load plus fleet load.
    iterations:
        Price iterations after the plan without surcharge; each re-plans the fleet once.
    prices:
        Import prices added per class of vehicles, which ``solve`` plans against too (the
        valley rule's): the master and the choice of the best plan count them.

    Returns
    -------
    The best plan found (column-major, already through ``make_feasible``): the lowest
    ``schedule_cost(..., peak_price_cny_per_kw=V).objective_cny`` among the plan without
    surcharge and the mixes, none leaving more energy short than the plan without.
    """
    unpriced_kw = make_feasible(problem, solve(problem))
    if problem.n_vehicles == 0 or problem.grid.length == 0:
        return unpriced_kw
    fleet = PlanBlocks(problem, prices)

    def objective_cny(power_kw: FloatArray) -> float:
        cost = schedule_cost(problem, power_kw, peak_price_cny_per_kw=peak_price_cny_per_kw)
        if prices is None:
            return cost.objective_cny
        return cost.objective_cny + float(
            class_price_cost_cny(prices, power_kw, problem.dt_h).sum()
        )

    current = fleet.describe(unpriced_kw)
    shortfall_limit_kwh = current.shortfall_kwh + SHORTFALL_TOLERANCE_KWH * problem.n_vehicles
    best_power_kw = current.power_kw
    best_cny = objective_cny(current.power_kw)
    plugged = _plugged_count(problem)
    band = BAND_SHARE
    responses: list[BlockPlan] = []
    # After an iteration that did not improve: the master's own step weights.
    stalled_weights: FloatArray | None = None
    for _ in range(iterations):
        if stalled_weights is not None:
            step_weights = _two_levels(stalled_weights, peak_price_cny_per_kw)
        else:
            load_kw = problem.base_load_kw + current.power_kw.sum(axis=0)
            peak_kw = float(load_kw.max())
            near_peak = load_kw >= peak_kw - band * (peak_kw - float(load_kw.min()))
            if not plugged[near_peak].any():  # no vehicle can move this peak: look wider
                band *= 2.0
                continue
            step_weights = np.where(near_peak, peak_price_cny_per_kw / int(near_peak.sum()), 0.0)
        surcharge = step_weights / problem.dt_h
        priced = replace(
            problem,
            import_price_cny_per_kwh=problem.import_price_cny_per_kwh + surcharge,
            export_price_cny_per_kwh=problem.export_price_cny_per_kwh + surcharge,
        )
        responses = [*responses[-(RESPONSES_KEPT - 1) :], fleet.describe(solve(priced))]
        mixed = fleet.mix([current, *responses], peak_price_cny_per_kw)
        if mixed is None:  # the master failed (never seen): keep the best plan so far
            break
        candidate = make_feasible(problem, mixed[0])
        current = fleet.describe(candidate)
        candidate_cny = objective_cny(candidate)
        if candidate_cny < best_cny and current.shortfall_kwh <= shortfall_limit_kwh:
            best_power_kw, best_cny = candidate, candidate_cny
            stalled_weights = None
        else:
            band *= 2.0
            stalled_weights = mixed[1]
    return best_power_kw


def _two_levels(step_weights: FloatArray, total: float) -> FloatArray:
    """``step_weights`` rounded up to half or all of the largest, rescaled to sum to ``total``.

    Two surcharge values add at most two price levels per existing level they meet.
    """
    largest = float(step_weights.max())
    if not largest > 0:
        return np.zeros_like(step_weights)
    rounded = np.ceil(step_weights / largest * 2.0 - 1e-9) / 2.0
    return np.asarray(rounded * (total / rounded.sum()), dtype=np.float64)


def _plugged_count(problem: Problem) -> IntArray:
    """Vehicles plugged in at each step of the horizon."""
    change = np.bincount(problem.arrival_step, minlength=problem.grid.length + 1) - np.bincount(
        problem.departure_step, minlength=problem.grid.length + 1
    )
    return np.cumsum(change[:-1]).astype(np.int64)
