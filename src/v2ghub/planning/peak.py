"""The peak price for the fast planner: column generation on the fleet's plans.

The LP (:mod:`v2ghub.planning.lp`) minimises, with a peak price ``V`` (CNY/kW),

    energy cost + degradation + V * max_t (base_load_kw[t] + sum_i p[i, t]).

The peak term couples every vehicle, which the fast planner's per-vehicle programme cannot
hold. Its Lagrangian can: for step weights ``lambda_t >= 0`` with ``sum_t lambda_t = V``,
``V * max_t y_t >= sum_t lambda_t * y_t`` for any net load ``y``, with equality for the
right weights, and ``sum_t lambda_t * y_t`` is a price: ``lambda_t / dt_h`` CNY per kWh on
top of the import price (charging raises the load) and of the export price (discharging
lowers it). The fleet's plan at these prices (the *response*) is one fast planning pass.

The plans are combined by Dantzig-Wolfe decomposition (column generation). The fleet is
cut into blocks of vehicles (at most about ``MAX_BLOCKS``): a vehicle at a site without
limits is a block of its own (or shares one beyond ``MAX_BLOCKS``); the vehicles of a
limited site make one block when there are many limited sites, and are spread over
several blocks (never mixed with another site's) when there are at most
``MAX_SPLIT_SITES``, where one weight per site would leave the master too little to mix.
The *master*, a HiGHS LP, picks weights ``w[b, j] >= 0`` summing to 1 per block over the
plans ``j`` kept so far:

    minimise   sum_{b,j} w[b, j] * cost[b, j] + V * z
    subject to z >= base[t] + sum_{b,j} w[b, j] * load[b, j, t]        for every step t,
               -export_limit[s] <= sum_{b in s, j} w[b, j] * load[b, j, t] <= import_limit[s]
                                        for each split site s and step t where needed,

where ``cost[b, j]`` is block ``b``'s energy cost in plan ``j`` plus a penalty on its
shortfall and ``load[b, j, t]`` its net power. A mix of plans that each keep a site's
limits with one weight keeps them; with several weights per site the site rows do, added
only for the (site, step) pairs where a mix crossed a limit, and the master solved again
from its last basis. Stored energy is concave in power, so a mix keeps every target and
energy floor its plans keep (what it stores above the ceiling is cut by
:func:`~v2ghub.planning.stepping.make_feasible`); cost and shortfall are convex, so the
master's value bounds the mix's from above.

Each iteration prices the steps by the duals ``lambda_t`` of the master's peak rows (``>=
0``, summing to ``V``: what a kW more at step ``t`` would cost the mix), re-plans the fleet
at these prices and adds the response as a new plan of every block (new columns: HiGHS
goes on from the last basis). The response also gives the Lagrangian bound

    L(lambda) = sum_t lambda_t base[t] + sum_b (cost[b, r] + sum_t lambda_t load[b, r, t]),

below every mix when the response is each block's optimum at ``lambda`` (it is per
vehicle; at a limited site the passes come close, so there it is an estimate). The
iterations stop when the master's value is within ``GAP_SHARE`` of the objective above the
best bound, or after ``iterations``. Two measures keep the count and the cost small:

- the prices are smoothed towards those of the best bound so far (``SMOOTHING``: the
  master's duals alone jump from one end of the peak's plateau to the other), and
- they are rounded to ``PRICE_STEPS`` fractions of the largest, as the compiled kernel's
  work grows with the number of distinct prices
  (:func:`~v2ghub.planning.fast.price_levels`).

The first prices spread ``V`` evenly over the steps within ``BAND_SHARE`` of the load's
range below the peak of the plan without surcharge. Memory: the plans kept for the master
(vehicles x steps each; as many as fit in ``PLANS_BYTES``, between 3 and ``MAX_PLANS``);
when full, the master starts again from the current mix as one plan and the latest plans
(restricted simplicial decomposition: the master can always keep its mix, so its value
never rises).

The last mix is passed through ``make_feasible`` and priced exactly
(:func:`~v2ghub.planning.objective.schedule_cost`); it is returned when it costs less than
the plan without surcharge and leaves no more energy short, and that plan otherwise, so
the result never costs more than ignoring the peak.

Measured (``benchmarks/bench_peak_gap.py``, peak price 0.5 CNY/kW, against the exact LP,
four seeds; mean and worst, in brackets the former six band iterations mixed with one
weight per site): day-ahead problems at three tight sites, 1,000 sessions 0.71%, 1.19%
(1.27%, 2.03%), 3,000 sessions 0.91%, 1.44% (1.15%, 1.48%); the twin's Shenzhen fleet as a
day-ahead problem, 1,000 vehicles, 1.27%, 1.50% (1.34%, 1.52%), of which 0.76% is the
plan's gap without the peak price. Eight iterations are what a day of ``mpc`` (which runs
them at every control instant) can afford: 10 gave 0.48%, 1.02% at 1,000 sessions but
made the Shenzhen day of 10,000 vehicles 23% longer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import highspy
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from v2ghub.model.problem import Problem
from v2ghub.planning.objective import schedule_cost
from v2ghub.planning.stepping import make_feasible
from v2ghub.planning.valley_rule_prices import ClassPrices, class_price_cost_cny

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Most price iterations after the plan without surcharge (fewer when the bounds meet).
PEAK_ITERATIONS = 8
# Stop when the master's value is within this share of the objective of the best bound.
GAP_SHARE = 0.002
# The first band: steps within 5% of the load's range below its peak carry the surcharge.
BAND_SHARE = 0.05
# Weight of the best bound's prices in the next prices (the master's duals have the rest).
SMOOTHING = 0.5
# Prices rounded to this many fractions of the largest: at most as many surcharge values.
PRICE_STEPS = 2
# Plans kept for the master (vehicles x steps each): as many as fit, within 3..MAX_PLANS.
PLANS_BYTES = 256e6
MAX_PLANS = 8
# The master has one weight per block and plan; beyond this many blocks, vehicles share.
MAX_BLOCKS = 1024
# Blocks (about) when the limited sites are split: more mix better, but with the site rows
# the master grows slow (Shenzhen's 15 sites, 1,000 vehicles at 1 CNY/kW: 0.6% above the LP
# in 2 s with 512 blocks and 10 iterations, 0.35% in 18 s with 1,000).
SPLIT_BLOCKS = 512
# Limited sites are split into blocks only when there are at most this many.
MAX_SPLIT_SITES = 16
# Master penalty per kWh short, over every price: a mix never trades a target for money.
SHORTFALL_PENALTY_CNY_PER_KWH = 1e3
# Shortfall (kWh per vehicle) a plan may add over the plan without surcharge: rounding.
SHORTFALL_TOLERANCE_KWH = 1e-6
# A site row is added when a mix crosses the site's limit by more than this.
LIMIT_ROUNDING_KW = 1e-6
# Most rounds of site rows added to one master solve.
MAX_ROW_ROUNDS = 20
# Loads below this are left out of the master (HiGHS would drop them with a warning).
SMALLEST_LOAD_KW = 1e-9
# HiGHS's dual simplex (its simplex_strategy 1): on the site rows' degenerate masters
# the primal simplex took seconds where the dual takes a fraction of one.
DUAL_SIMPLEX = 1


@dataclass(frozen=True)
class BlockPlan:
    """A whole-fleet plan and what the master needs of it, per block."""

    power_kw: FloatArray  # vehicles x steps, column-major
    load_kw: FloatArray  # blocks x steps: the block's net power
    cost_cny: FloatArray  # blocks: energy cost + degradation - export revenue + penalty
    shortfall_kwh: float  # the fleet's total


class PlanBlocks:
    """The blocks of a problem and the per-plan sums the master reads.

    By default a limited site is one block (its limits hold for a common weight) and every
    other vehicle is a block of its own, blocks shared beyond ``MAX_BLOCKS``. With
    ``split_sites``, and at most ``MAX_SPLIT_SITES`` limited sites, the vehicles of a
    limited site are spread over several blocks too (about ``SPLIT_BLOCKS`` in all, in
    proportion to each site's share of the fleet), which the master's site rows then hold
    within the limits; ``block_site`` names each block's limited site (-1: none).
    """

    def __init__(
        self, problem: Problem, prices: ClassPrices | None = None, *, split_sites: bool = False
    ) -> None:
        self.problem = problem
        self.prices = prices
        n = problem.n_vehicles
        limited = np.isfinite(problem.import_limit_kw) | np.isfinite(problem.export_limit_kw)
        n_sites = problem.import_limit_kw.shape[0]
        vehicle_limited = limited[problem.site_index]
        group = np.where(vehicle_limited, problem.site_index, n_sites)
        counts = np.bincount(group, minlength=n_sites + 1)
        self.split = split_sites and int(np.count_nonzero(counts[:n_sites])) <= MAX_SPLIT_SITES
        if self.split:
            # Blocks per group in proportion to its vehicles, at least one, at most one each.
            share = np.floor(SPLIT_BLOCKS * counts / max(n, 1)).astype(np.int64)
            per_group = np.minimum(np.maximum(share, counts > 0), counts)
            first_block = np.concatenate(([0], np.cumsum(per_group)[:-1]))
            order = np.argsort(group, kind="stable")
            group_start = np.concatenate(([0], np.cumsum(counts)[:-1]))
            rank = np.empty(n, dtype=np.int64)
            rank[order] = np.arange(n) - group_start[group[order]]
            self.block: IntArray = (
                first_block[group] + rank % np.maximum(per_group[group], 1)
            ).astype(np.int64)
            self.n_blocks = int(per_group.sum())
            self.block_site: IntArray = np.repeat(
                np.where(np.arange(n_sites + 1) < n_sites, np.arange(n_sites + 1), -1),
                per_group,
            ).astype(np.int64)
        else:
            # A limited site mixes as one (its limits hold for a common weight); other
            # vehicles mix alone.
            key = np.where(vehicle_limited, problem.site_index, n_sites + np.arange(n))
            _, dense = np.unique(key, return_inverse=True)
            self.block = (dense.reshape(-1) % MAX_BLOCKS).astype(np.int64)
            self.n_blocks = int(self.block.max()) + 1 if n else 0
            self.block_site = np.full(self.n_blocks, -1, dtype=np.int64)

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


@dataclass(frozen=True)
class MasterSolution:
    """The master's mix and what it says of the peak."""

    weights: FloatArray  # blocks x plans
    value_cny: float  # the master's objective (penalties included)
    step_weights: FloatArray  # lambda_t, CNY/kW: the duals of the peak rows, summing to V


class Master:
    """The restricted master LP (see the module docstring), grown a plan at a time.

    Columns: the peak ``z``, then plan ``j``'s block weights at ``1 + j * blocks + b``.
    Rows: the peak rows (one per step), one convexity row per block, then the site rows,
    added when a mix crosses a limit (HiGHS goes on from its last basis each time).
    """

    def __init__(
        self,
        blocks: PlanBlocks,
        peak_price_cny_per_kw: float,
        site_rows: list[tuple[int, int]] | None = None,
    ) -> None:
        # lp.py imports the reserve module, which imports this one.
        from v2ghub.planning.lp import _quiet_highs  # noqa: PLC0415

        self.blocks = blocks
        self.plans: list[BlockPlan] = []
        self.highs = _quiet_highs()
        self.highs.setOptionValue("output_flag", False)
        self.highs.setOptionValue("simplex_strategy", DUAL_SIMPLEX)
        problem = blocks.problem
        horizon = problem.grid.length
        self.site_rows: list[tuple[int, int]] = []  # (site, step) of each site row
        inf = highspy.kHighsInf
        n_blocks = blocks.n_blocks
        self.highs.addRows(
            horizon + n_blocks,
            np.concatenate((np.full(horizon, -inf), np.ones(n_blocks))),
            np.concatenate((-problem.base_load_kw, np.ones(n_blocks))),
            0,
            np.zeros(horizon + n_blocks, dtype=np.int32),
            np.zeros(0, dtype=np.int32),
            np.zeros(0),
        )
        self.highs.addCols(
            1,
            np.array([peak_price_cny_per_kw]),
            np.array([-inf]),
            np.array([inf]),
            horizon,
            np.zeros(1, dtype=np.int32),
            np.arange(horizon, dtype=np.int32),
            -np.ones(horizon),
        )
        if site_rows:  # a master started again keeps the rows its predecessor needed
            sites = np.array([site for site, _ in site_rows], dtype=np.int64)
            steps = np.array([step for _, step in site_rows], dtype=np.int64)
            import_room, export_room = problem.site_room_kw()
            self.highs.addRows(
                sites.size,
                -export_room[sites, steps],
                import_room[sites, steps],
                0,
                np.zeros(sites.size, dtype=np.int32),
                np.zeros(0, dtype=np.int32),
                np.zeros(0),
            )
            self.site_rows = list(site_rows)

    def add(self, plan: BlockPlan) -> None:
        """Add ``plan``'s block weights as columns."""
        blocks, horizon = self.blocks, self.blocks.problem.grid.length
        n_blocks = blocks.n_blocks
        block, step = np.nonzero(np.abs(plan.load_kw) > SMALLEST_LOAD_KW)
        rows = [step, horizon + np.arange(n_blocks)]
        cols = [block, np.arange(n_blocks)]
        data = [plan.load_kw[block, step], np.ones(n_blocks)]
        for k, (site, row_step) in enumerate(self.site_rows):
            in_site = np.flatnonzero(blocks.block_site == site)
            rows.append(np.full(in_site.size, horizon + n_blocks + k))
            cols.append(in_site)
            loads = plan.load_kw[in_site, row_step]
            data.append(np.where(np.abs(loads) > SMALLEST_LOAD_KW, loads, 0.0))
        matrix = sp.csc_array(
            (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
            shape=(horizon + n_blocks + len(self.site_rows), n_blocks),
        )
        self.highs.addCols(
            n_blocks,
            plan.cost_cny,
            np.zeros(n_blocks),
            np.full(n_blocks, highspy.kHighsInf),
            matrix.nnz,
            matrix.indptr[:-1].astype(np.int32),
            matrix.indices.astype(np.int32),
            matrix.data,
        )
        self.plans.append(plan)

    def solve(self) -> MasterSolution | None:
        """The best weights of the plans added; None if HiGHS does not find them."""
        blocks, problem = self.blocks, self.blocks.problem
        horizon, n_blocks = problem.grid.length, blocks.n_blocks
        for _ in range(MAX_ROW_ROUNDS):
            self.highs.run()
            if self.highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                # Seen once: HiGHS stopped with an error on a warm start after new
                # columns. Solved from scratch, the same master is optimal.
                self.highs.clearSolver()
                self.highs.run()
            if self.highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                return None
            solution = self.highs.getSolution()
            weights = np.clip(np.asarray(solution.col_value)[1:], 0.0, 1.0)
            weights = weights.reshape(len(self.plans), n_blocks).T
            if not self._add_site_rows(weights):
                break
        # The duals are the objective's sensitivity to the right-hand side -base_load.
        step_weights = np.maximum(-np.asarray(solution.row_dual)[:horizon], 0.0)
        return MasterSolution(
            weights=weights,
            value_cny=float(self.highs.getInfo().objective_function_value),
            step_weights=step_weights,
        )

    def _add_site_rows(self, weights: FloatArray) -> bool:
        """Add the rows of the (site, step) pairs where the mix crosses a limit."""
        blocks, problem = self.blocks, self.blocks.problem
        in_site = np.flatnonzero(blocks.block_site >= 0)
        if in_site.size == 0:
            return False
        n_sites = problem.import_limit_kw.shape[0]
        mixed = sum(
            w[in_site, None] * p.load_kw[in_site]
            for w, p in zip(weights.T, self.plans, strict=True)
        )
        site_load = np.zeros((n_sites, problem.grid.length))
        np.add.at(site_load, blocks.block_site[in_site], mixed)
        # Each site's room: its limits less the load there that is not planned here.
        import_room, export_room = problem.site_room_kw()
        crossing = (site_load > import_room + LIMIT_ROUNDING_KW) | (
            site_load < -export_room - LIMIT_ROUNDING_KW
        )
        sites, steps = np.nonzero(crossing)
        if sites.size == 0:
            return False
        n_blocks = blocks.n_blocks
        rows, cols, data = [], [], []
        # A few rows (sites x steps at most), each over the site's blocks of every plan.
        for k, (site, step) in enumerate(zip(sites.tolist(), steps.tolist(), strict=True)):
            members = np.flatnonzero(blocks.block_site == site)
            for j, plan in enumerate(self.plans):
                rows.append(np.full(members.size, k))
                cols.append(1 + j * n_blocks + members)
                loads = plan.load_kw[members, step]
                data.append(np.where(np.abs(loads) > SMALLEST_LOAD_KW, loads, 0.0))
        matrix = sp.csr_array(
            (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
            shape=(sites.size, 1 + len(self.plans) * n_blocks),
        )
        self.highs.addRows(
            sites.size,
            -export_room[sites, steps],
            import_room[sites, steps],
            matrix.nnz,
            matrix.indptr[:-1].astype(np.int32),
            matrix.indices.astype(np.int32),
            matrix.data,
        )
        self.site_rows += list(zip(sites.tolist(), steps.tolist(), strict=True))
        return True


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
        Most price iterations after the plan without surcharge; each re-plans the fleet
        once. They stop sooner when the master's value meets the lower bound.
    prices:
        Import prices added per class of vehicles, which ``solve`` plans against too (the
        valley rule's): the master and the choice of the best plan count them.

    Returns
    -------
    The last mix (column-major, already through ``make_feasible``) when its
    ``schedule_cost(..., peak_price_cny_per_kw=V).objective_cny`` is below the plan's
    without surcharge and it leaves no more energy short; that plan otherwise.
    """
    unpriced_kw = make_feasible(problem, solve(problem))
    if problem.n_vehicles == 0 or problem.grid.length == 0 or iterations <= 0:
        return unpriced_kw
    fleet = PlanBlocks(problem, prices, split_sites=True)

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
    bytes_per_plan = 8.0 * problem.n_vehicles * problem.grid.length
    plans_kept = int(min(MAX_PLANS, max(3, PLANS_BYTES // bytes_per_plan)))
    master = Master(fleet, peak_price_cny_per_kw)
    master.add(current)
    solution: MasterSolution | None = None
    mixed_plans: list[BlockPlan] = []  # the plans of the solution's weights
    step_weights = _band_weights(problem, current.power_kw, peak_price_cny_per_kw)
    best_bound_cny = -np.inf
    bound_weights = step_weights
    for _ in range(iterations):
        surcharge = step_weights / problem.dt_h
        priced = replace(
            problem,
            import_price_cny_per_kwh=problem.import_price_cny_per_kwh + surcharge,
            export_price_cny_per_kwh=problem.export_price_cny_per_kwh + surcharge,
        )
        response = fleet.describe(solve(priced))
        bound_cny = float(
            step_weights @ problem.base_load_kw
            + response.cost_cny.sum()
            + step_weights @ response.load_kw.sum(axis=0)
        )
        if bound_cny > best_bound_cny:
            best_bound_cny, bound_weights = bound_cny, step_weights
        if solution is not None and len(master.plans) >= plans_kept:
            # Full: start again from the current mix, which the new master can keep, and
            # the latest plans.
            current = fleet.describe(
                make_feasible(problem, fleet.blend(mixed_plans, solution.weights))
            )
            latest = master.plans[-(plans_kept // 2) :]
            master = Master(fleet, peak_price_cny_per_kw, master.site_rows)
            for plan in (current, *latest):
                master.add(plan)
        master.add(response)
        solved = master.solve()
        if solved is None:  # HiGHS failed twice (never seen): keep the last mix
            break
        solution, mixed_plans = solved, list(master.plans)
        if solution.value_cny - best_bound_cny <= GAP_SHARE * abs(best_cny):
            break
        step_weights = _rounded(
            SMOOTHING * bound_weights + (1.0 - SMOOTHING) * solution.step_weights,
            peak_price_cny_per_kw,
        )
    if solution is not None:
        candidate = make_feasible(problem, fleet.blend(mixed_plans, solution.weights))
        candidate_cny = objective_cny(candidate)
        if (
            candidate_cny < best_cny
            and fleet.describe(candidate).shortfall_kwh <= shortfall_limit_kwh
        ):
            best_power_kw = candidate
    return best_power_kw


def _band_weights(problem: Problem, power_kw: FloatArray, total: float) -> FloatArray:
    """``total`` spread evenly over the steps near the plan's peak that a vehicle can move.

    The steps within ``BAND_SHARE`` of the net load's range below its peak, the band
    doubled until a vehicle is plugged in at one of them.
    """
    load_kw = problem.base_load_kw + power_kw.sum(axis=0)
    peak_kw = float(load_kw.max())
    spread_kw = peak_kw - float(load_kw.min())
    plugged = _plugged_count(problem) > 0
    band = BAND_SHARE
    near_peak = load_kw >= peak_kw - band * spread_kw
    while not plugged[near_peak].any() and band < 1.0:
        band *= 2.0
        near_peak = load_kw >= peak_kw - band * spread_kw
    return np.where(near_peak, total / int(near_peak.sum()), 0.0)


def _rounded(step_weights: FloatArray, total: float) -> FloatArray:
    """``step_weights`` rounded to ``PRICE_STEPS`` fractions of the largest, rescaled to
    sum to ``total``: at most ``PRICE_STEPS`` surcharge values, each adding at most one
    price level per existing level it meets."""
    largest = float(step_weights.max())
    if not largest > 0:
        return np.zeros_like(step_weights)
    rounded = np.round(step_weights / largest * PRICE_STEPS) / PRICE_STEPS
    return np.asarray(rounded * (total / rounded.sum()), dtype=np.float64)


def _plugged_count(problem: Problem) -> IntArray:
    """Vehicles plugged in at each step of the horizon."""
    change = np.bincount(problem.arrival_step, minlength=problem.grid.length + 1) - np.bincount(
        problem.departure_step, minlength=problem.grid.length + 1
    )
    return np.cumsum(change[:-1]).astype(np.int64)
