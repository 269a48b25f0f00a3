"""Keeping regulation headroom in the fast planner: a price on each direction, balanced.

A problem may pay ``pi[t]`` CNY per kW of symmetric regulation headroom kept in step
``t`` (``Problem.regulation_price_cny_per_kw_h``) and may hold a commitment ``K[t]`` kW
(``Problem.regulation_commitment_kw``). The fleet's symmetric headroom in a step is
``min(L, R)``: the total of each vehicle's room downwards (``lower``) and upwards
(``raise``) that lasts an hour (:mod:`v2ghub.model.headroom`).

Within its power limits a vehicle at power ``p`` has ``lower = p + max_discharge_kw``
and ``raise = max_charge_kw - p``. For any split of the price between the directions,
``lambda * pi`` on ``lower`` and ``(1 - lambda) * pi`` on ``raise``, the reward
``lambda pi lower + (1 - lambda) pi raise`` is a constant plus ``(2 lambda - 1) pi p``:
linear in power, so it is an energy price the fast planner takes as it is. Charging in
the step costs ``(2 lambda - 1) pi`` CNY/kWh less, discharging earns that much less.
At ``lambda = 1/2`` nothing changes; ``lambda -> 1`` makes the fleet charge more in the
step (more room downwards), ``lambda -> 0`` less.

One such price moves every vehicle the same way, so taken alone it overshoots (the
fleet swings from short of room down to short of room up). As the peak price does
(:mod:`v2ghub.planning.peak`), each iteration re-plans the fleet once at the prices
and a small LP (the restricted master) mixes the plans block by block (a limited site, or
one vehicle): it maximises the priced ``min(L, R)`` of the mix less its energy cost,
with ``L`` and ``R`` of a mix taken as the mix of the plans' (exact for the power limits,
an estimate for the energy ones). Its duals on the two headroom rows are the next
iteration's prices per direction. The first iteration puts the whole price on the
direction the plan without a price is short of.

Steps with a commitment carry ``COMMITMENT_PRICE_CNY_PER_KW_H`` on top of their price,
more than a day's spread of energy prices, so the headroom wins over arbitrage there.

Every plan is scored by its true objective: energy cost (and peak cost) minus ``pi``
times the symmetric headroom it keeps, plus ``MISSED_COMMITMENT_CNY_PER_KW_H`` per kW of
commitment it misses; the best is returned, the plan without any headroom price
included, so keeping headroom never costs more than ignoring it, and no plan leaves more
energy short than that one. The headroom counted here is what the twin's regulation
service will find (the same arithmetic), with energy limits and departure needs; the
linear price sees only the power limits, which is why plans are scored, not trusted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import cast

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from v2ghub import defaults
from v2ghub.model.headroom import Headroom, PluggedFleet, site_headroom, stored_rate_kwh_per_h
from v2ghub.model.problem import Problem
from v2ghub.planning.objective import schedule_cost
from v2ghub.planning.peak import BlockPlan, PlanBlocks
from v2ghub.planning.stepping import make_feasible

FloatArray = npt.NDArray[np.float64]

REGULATION_DURATION_H = defaults.REGULATION_DURATION_H
"""How long a regulation promise must hold at full deflection (one market hour)."""
RESERVE_ITERATIONS = 6
COMMITMENT_PRICE_CNY_PER_KW_H = 2.0
"""Added to the headroom price of a committed step: above any day's energy price spread."""
MISSED_COMMITMENT_CNY_PER_KW_H = 100.0
"""What a plan is charged, when scored, per kW and hour of commitment it cannot hold."""
SHORTFALL_TOLERANCE_KWH = 1e-6
RESPONSES_KEPT = 2


def stored_energy_at_steps(problem: Problem, power_kw: FloatArray) -> FloatArray:
    """Stored energy of each row at the start of every step under ``power_kw`` (kWh).

    Before its arrival a row holds its arrival energy.
    """
    dt_h = problem.dt_h
    steps = power_kw.shape[1]
    columns = np.arange(steps)
    plugged = (columns[None, :] >= problem.arrival_step[:, None]) & (
        columns[None, :] < problem.departure_step[:, None]
    )
    rate = stored_rate_kwh_per_h(
        power_kw, problem.charge_efficiency[:, None], problem.discharge_efficiency[:, None]
    )
    stored = np.where(plugged, rate * dt_h, 0.0)
    before = np.zeros_like(stored)
    np.cumsum(stored[:, :-1], axis=1, out=before[:, 1:])
    return np.asarray(problem.energy_kwh[:, None] + before)


def plan_headroom(
    problem: Problem,
    power_kw: FloatArray,
    step: int,
    *,
    energy_kwh: FloatArray | None = None,
    duration_h: float = REGULATION_DURATION_H,
) -> Headroom:
    """Each row's headroom at ``step`` of a plan, held for ``duration_h``, sites fitted.

    ``energy_kwh`` is the stored energy at the start of the step (computed from the plan
    when not given). Forecast rows and vehicles not plugged at the step have none.
    """
    if energy_kwh is None:
        energy_kwh = stored_energy_at_steps(problem, power_kw[:, : step + 1])[:, step]
    planned = power_kw[:, step]
    real = np.arange(problem.n_vehicles) < problem.n_plugged
    plugged = real & (problem.arrival_step <= step) & (problem.departure_step > step)
    dt_h = problem.dt_h
    # Other rows' planned power still loads the site (forecast groups included).
    fleet = PluggedFleet.of(problem, planned, energy_kwh)
    hours_to_departure = np.where(plugged, (problem.departure_step - step) * dt_h, 0.0)
    return site_headroom(
        fleet, hours_to_departure=hours_to_departure.astype(np.float64), duration_h=duration_h
    )


@dataclass(frozen=True)
class FleetHeadroom:
    """Per priced step of a plan: the fleet's total room down and up, kW."""

    lower_kw: FloatArray
    raise_kw: FloatArray

    @property
    def symmetric_kw(self) -> FloatArray:
        """What the fleet can offer both ways: ``min(lower, raise)`` per step."""
        return np.minimum(self.lower_kw, self.raise_kw)


def fleet_headroom(
    problem: Problem, power_kw: FloatArray, steps: npt.NDArray[np.int64]
) -> FleetHeadroom:
    """The fleet's headroom at each of ``steps`` of a plan (a loop over steps, not vehicles)."""
    energy = stored_energy_at_steps(problem, power_kw[:, : int(steps.max(initial=0)) + 1])
    lower = np.zeros(steps.size)
    upper = np.zeros(steps.size)
    for k, step in enumerate(steps.tolist()):
        room = plan_headroom(problem, power_kw, step, energy_kwh=energy[:, step])
        lower[k] = room.lower_total_kw
        upper[k] = room.raise_total_kw
    return FleetHeadroom(lower_kw=lower, raise_kw=upper)


def regulation_objective(
    problem: Problem,
    power_kw: FloatArray,
    steps: npt.NDArray[np.int64],
    *,
    peak_price_cny_per_kw: float = 0.0,
) -> tuple[float, FleetHeadroom]:
    """A plan's true objective with the headroom term (CNY), and the headroom it keeps."""
    room = fleet_headroom(problem, power_kw, steps)
    kept = room.symmetric_kw
    dt_h = problem.dt_h
    price = problem.regulation_price[steps]
    missed = np.maximum(problem.regulation_commitment[steps] - kept, 0.0)
    cost = schedule_cost(problem, power_kw, peak_price_cny_per_kw=peak_price_cny_per_kw)
    value = float(price @ kept) * dt_h - MISSED_COMMITMENT_CNY_PER_KW_H * float(missed.sum()) * dt_h
    return cost.objective_cny - value, room


def plan_with_regulation(
    problem: Problem,
    *,
    solve: Callable[[Problem], FloatArray],
    peak_price_cny_per_kw: float = 0.0,
    iterations: int = RESERVE_ITERATIONS,
    plain_kw: FloatArray | None = None,
) -> FloatArray:
    """The fleet's plan with regulation headroom priced (see the module docstring).

    ``solve`` plans the problem's fleet at its energy prices; ``plain_kw``, the plan
    without any headroom price, defaults to ``solve(problem)`` (with a peak price, pass
    the peak-priced plan: the responses are then planned without the peak price, which
    the master still prices). Returns the best plan found, through ``make_feasible``.
    """
    plain_kw = make_feasible(problem, solve(problem) if plain_kw is None else plain_kw)
    steps = np.flatnonzero(
        (problem.regulation_price > 0) | (problem.regulation_commitment > 0)
    ).astype(np.int64)
    if steps.size == 0 or problem.n_plugged == 0:
        return plain_kw
    blocks = PlanBlocks(problem)
    plain = _described(problem, blocks, plain_kw, steps)
    shortfall_limit = plain.plan.shortfall_kwh + SHORTFALL_TOLERANCE_KWH * problem.n_vehicles
    best_kw = plain_kw
    best_cny, room = regulation_objective(
        problem, plain_kw, steps, peak_price_cny_per_kw=peak_price_cny_per_kw
    )
    if not problem.regulation_price[steps].any() and np.all(
        room.symmetric_kw >= problem.regulation_commitment[steps]
    ):
        return plain_kw  # nothing to earn, and the commitments hold already
    price = problem.regulation_price[steps] + COMMITMENT_PRICE_CNY_PER_KW_H * (
        problem.regulation_commitment[steps] > 0
    )
    # The first prices: all of it on the direction the plan is short of.
    short_down = room.lower_kw < room.raise_kw
    down_price = np.where(short_down, price, 0.0)
    up_price = np.where(short_down, 0.0, price)
    current = plain
    responses: list[_Described] = []
    for _ in range(iterations):
        shift = np.zeros(problem.grid.length)
        shift[steps] = down_price - up_price
        priced = replace(
            problem,
            import_price_cny_per_kwh=problem.import_price_cny_per_kwh - shift,
            export_price_cny_per_kwh=problem.export_price_cny_per_kwh - shift,
        )
        response = _described(problem, blocks, make_feasible(problem, solve(priced)), steps)
        responses = [*responses[-(RESPONSES_KEPT - 1) :], response]
        mixed = _mix(
            problem,
            blocks,
            [plain, current, *responses],
            steps=steps,
            price_cny_per_kw_h=price,
            peak_price_cny_per_kw=peak_price_cny_per_kw,
        )
        if mixed is None:  # the master failed (never seen): keep the best plan so far
            break
        mix_kw, down_price, up_price = mixed
        candidate = make_feasible(problem, mix_kw)
        current = _described(problem, blocks, candidate, steps)
        candidate_cny, _ = regulation_objective(
            problem, candidate, steps, peak_price_cny_per_kw=peak_price_cny_per_kw
        )
        if candidate_cny < best_cny and current.plan.shortfall_kwh <= shortfall_limit:
            best_kw, best_cny = candidate, candidate_cny
    return best_kw


@dataclass(frozen=True)
class _Described:
    """A plan with its blocks' costs and loads and their headroom at the priced steps."""

    plan: BlockPlan
    lower_kw: FloatArray  # blocks x priced steps
    raise_kw: FloatArray


def _described(
    problem: Problem, blocks: PlanBlocks, power_kw: FloatArray, steps: npt.NDArray[np.int64]
) -> _Described:
    energy = stored_energy_at_steps(problem, power_kw[:, : int(steps.max()) + 1])
    lower = np.empty((blocks.n_blocks, steps.size))
    upper = np.empty((blocks.n_blocks, steps.size))
    for k, step in enumerate(steps.tolist()):  # priced steps, never vehicles
        room = plan_headroom(problem, power_kw, step, energy_kwh=energy[:, step])
        lower[:, k] = np.bincount(blocks.block, room.lower_kw, minlength=blocks.n_blocks)
        upper[:, k] = np.bincount(blocks.block, room.raise_kw, minlength=blocks.n_blocks)
    return _Described(plan=blocks.describe(power_kw), lower_kw=lower, raise_kw=upper)


def _mix(
    problem: Problem,
    blocks: PlanBlocks,
    plans: list[_Described],
    *,
    steps: npt.NDArray[np.int64],
    price_cny_per_kw_h: FloatArray,
    peak_price_cny_per_kw: float,
) -> tuple[FloatArray, FloatArray, FloatArray] | None:
    """The block-wise mix of ``plans`` that keeps headroom best, and the master's prices.

    Variables: weights ``w[b, j]`` (``b * J + j``), then per priced step the symmetric
    headroom ``z`` and the commitment missed ``m``, then the peak when priced. Minimise
    ``sum w cost - dt sum price z + dt M sum m + V peak`` subject to
    ``z <= sum w lower``, ``z <= sum w raise``, ``z + m >= commitment``,
    ``peak >= base + sum w load`` and ``sum_j w[b, j] = 1``.

    Returns the mix (vehicles x steps) and, per priced step, the master's value of a kW
    more room down and up, as CNY per kWh of charging (``dual / dt_h``).
    """
    n_blocks, n_plans, n_steps = blocks.n_blocks, len(plans), steps.size
    dt_h = problem.dt_h
    horizon = problem.grid.length
    n_weights = n_blocks * n_plans
    with_peak = peak_price_cny_per_kw > 0
    n_cols = n_weights + 2 * n_steps + int(with_peak)
    cost = np.zeros(n_cols)
    cost[:n_weights] = np.stack([p.plan.cost_cny for p in plans], axis=1).reshape(-1)
    z = n_weights + np.arange(n_steps)
    cost[z] = -price_cny_per_kw_h * dt_h
    cost[z + n_steps] = MISSED_COMMITMENT_CNY_PER_KW_H * dt_h
    lower = np.stack([p.lower_kw for p in plans], axis=1).reshape(n_weights, n_steps)
    upper = np.stack([p.raise_kw for p in plans], axis=1).reshape(n_weights, n_steps)
    n_rows = 3 * n_steps + horizon * int(with_peak)
    rows = np.zeros((n_rows, n_cols))  # a few hundred rows: dense is simplest
    diagonal = np.arange(n_steps)
    rows[:n_steps, :n_weights] = -lower.T
    rows[n_steps : 2 * n_steps, :n_weights] = -upper.T
    rows[diagonal, z] = 1.0
    rows[n_steps + diagonal, z] = 1.0
    rows[2 * n_steps + diagonal, z] = -1.0
    rows[2 * n_steps + diagonal, z + n_steps] = -1.0
    bounds_ub = [np.zeros(2 * n_steps), -problem.regulation_commitment[steps]]
    if with_peak:
        cost[-1] = peak_price_cny_per_kw
        loads = np.stack([p.plan.load_kw for p in plans], axis=1).reshape(n_weights, horizon)
        rows[3 * n_steps :, :n_weights] = loads.T
        rows[3 * n_steps :, -1] = -1.0
        bounds_ub.append(-problem.base_load_kw)
    weight = np.arange(n_weights)
    one_per_block = sp.csr_array(
        (np.ones(n_weights), (weight // n_plans, weight)), shape=(n_blocks, n_cols)
    )
    from scipy.optimize import linprog  # noqa: PLC0415 - 0.4 s to import

    result = linprog(
        cost,
        A_ub=rows,
        b_ub=np.concatenate(bounds_ub),
        A_eq=cast("FloatArray", one_per_block),
        b_eq=np.ones(n_blocks),
        bounds=[(0.0, None)] * (n_weights + 2 * n_steps) + [(None, None)] * int(with_peak),
        method="highs",
    )
    if result.status != 0 or result.x is None:
        return None
    weights = np.clip(result.x[:n_weights], 0.0, 1.0).reshape(n_blocks, n_plans)
    duals = np.maximum(-np.asarray(result.ineqlin.marginals, dtype=np.float64), 0.0)
    return (
        blocks.blend([p.plan for p in plans], weights),
        duals[:n_steps] / dt_h,
        duals[n_steps : 2 * n_steps] / dt_h,
    )
