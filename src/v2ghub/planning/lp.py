"""The exact optimiser: one linear programme over every plugged vehicle, solved by HiGHS.

Per vehicle ``i`` and step ``t`` before its departure: charge power ``c[i,t] >= 0`` and
discharge power ``d[i,t] >= 0`` at the charger, and the stored energy ``e[i,t]`` after the
step (``e[i,-1]`` is the energy now)::

    e[i,t] = e[i,t-1] + charge_efficiency * c[i,t] * dt_h - d[i,t] * dt_h / discharge_efficiency
    0 <= c[i,t] <= max_charge_kw,   0 <= d[i,t] <= max_discharge_kw (0 without V2G opt-in)
    energy_min_kwh <= e[i,t] <= energy_max_kwh
    e[i,last] + u[i] >= target_energy_kwh                 (u: shortfall, reported)
    -export_limit_kw[s] <= sum over i at site s of (c - d)[i,t] <= import_limit_kw[s]
    peak >= base_load_kw[t] + sum over i of (c - d)[i,t]  (only with a peak price)
    floor <= base_load_kw[t] + sum over i of (c - d)[i,t] (only with a valley price)
    0 <= absorbed[t] <= renewable_surplus_kw[t],  absorbed[t] <= sum over i of (c - d)[i,t]

    minimise  sum dt_h * (import_price[t] * c - export_price[t] * d + degradation * d)
              + peak_price_cny_per_kw * peak - valley_price_cny_per_kw * floor
              - surplus_price_cny_per_kwh * dt_h * sum absorbed

The shortfall ``u`` is zero whenever the targets can be met. When they cannot, a first
solve minimises the total shortfall, and the cost is then minimised with each vehicle's
delivery held there. The matrix is built with whole-array operations (no loop over
vehicles or steps) and passed to HiGHS in compressed-column form. No binary variables are
needed to keep a vehicle from charging and discharging in one step: that only pays where
``export_price - degradation > import_price / (charge_efficiency * discharge_efficiency)``
in the same step, so discharge is valued at no more than that bound (a tariff paying more,
such as a discharge price above the import price, is planned as if it paid the bound;
settlement still pays the real price). The schedule is the net power ``c - d``.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import highspy
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from v2ghub.model.problem import Problem, Schedule
from v2ghub.planning.stepping import make_feasible

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

INF = highspy.kHighsInf
# The twin calls a planner at every control instant: beyond this many sessions per city
# the LP takes minutes a call (about 5 s at 1,000 vehicles, ~N^1.7).
TWIN_MAX_SESSIONS = 2_000
SHORTFALL_SLACK_KWH = 1e-6


@dataclass(frozen=True)
class GridTerms:
    """Optional objective terms on the area's load (base load + fleet), all >= 0."""

    peak_price_cny_per_kw: float = 0.0
    valley_price_cny_per_kw: float = 0.0
    surplus_price_cny_per_kwh: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "peak_price_cny_per_kw",
            "valley_price_cny_per_kw",
            "surplus_price_cny_per_kwh",
        ):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


class PlanningError(RuntimeError):
    """The optimiser could not produce a plan (infeasible, time limit, solver error)."""


@dataclass(frozen=True)
class _Layout:
    """Where each vehicle-step lives in the flat variable vector."""

    n_pairs: int  # sum over vehicles of plugged steps
    vehicle: IntArray  # per pair
    step: IntArray  # per pair
    last: IntArray  # per vehicle: its last pair

    @staticmethod
    def of(problem: Problem) -> _Layout:
        steps = (problem.departure_step - problem.arrival_step).astype(np.int64)
        n_pairs = int(steps.sum())
        vehicle = np.repeat(np.arange(problem.n_vehicles, dtype=np.int64), steps)
        starts = np.concatenate(([0], np.cumsum(steps)[:-1])).astype(np.int64)
        step = np.arange(n_pairs, dtype=np.int64) - starts[vehicle] + problem.arrival_step[vehicle]
        return _Layout(n_pairs, vehicle, step, starts + steps - 1)

    def charge(self) -> IntArray:
        return np.arange(self.n_pairs, dtype=np.int64)

    def discharge(self) -> IntArray:
        return self.n_pairs + np.arange(self.n_pairs, dtype=np.int64)

    def energy(self) -> IntArray:
        return 2 * self.n_pairs + np.arange(self.n_pairs, dtype=np.int64)

    def shortfall(self, n_vehicles: int) -> IntArray:
        return 3 * self.n_pairs + np.arange(n_vehicles, dtype=np.int64)


@dataclass(frozen=True)
class LpResult:
    """A solved programme: the schedule and what it costs."""

    power_kw: FloatArray
    shortfall_kwh: FloatArray
    objective_cny: float
    solve_seconds: float


class LpPlanner:
    """Cost-optimal V2G schedule for the plugged fleet (see the module docstring).

    Parameters
    ----------
    peak_price_cny_per_kw:
        Price of the peak of base load plus fleet load over the horizon; 0 leaves it out.
    valley_price_cny_per_kw:
        Reward per kW of the lowest base load plus fleet load (valley filling); 0 = none.
    surplus_price_cny_per_kwh:
        Reward per kWh of renewable surplus the fleet's net charging absorbs; 0 = none.
    time_limit_s:
        HiGHS time limit; when it is hit the planner raises and the caller falls back.
    solver:
        ``"ipm"`` (interior point, crossover off: fastest measured here), ``"simplex"``
        or ``"choose"``.
    """

    name = "lp"
    twin_max_sessions = TWIN_MAX_SESSIONS  # the twin calls it at every control instant

    def __init__(
        self,
        *,
        peak_price_cny_per_kw: float = 0.0,
        valley_price_cny_per_kw: float = 0.0,
        surplus_price_cny_per_kwh: float = 0.0,
        time_limit_s: float = 300.0,
        solver: str = "ipm",
    ) -> None:
        self.terms = GridTerms(
            peak_price_cny_per_kw=peak_price_cny_per_kw,
            valley_price_cny_per_kw=valley_price_cny_per_kw,
            surplus_price_cny_per_kwh=surplus_price_cny_per_kwh,
        )
        self.peak_price_cny_per_kw = peak_price_cny_per_kw
        self.time_limit_s = time_limit_s
        self.solver = solver

    def plan(self, problem: Problem) -> Schedule:
        """Solve and return the whole-horizon schedule, exactly within every limit."""
        power_kw = make_feasible(problem, self.solve(problem).power_kw)
        return Schedule(power_kw=power_kw, planner=self.name)

    def solve(self, problem: Problem) -> LpResult:
        """Solve the programme; raises :class:`PlanningError` if HiGHS finds no optimum."""
        started = time.perf_counter()
        n, horizon = problem.n_vehicles, problem.grid.length
        if n == 0:
            return LpResult(np.zeros((0, horizon)), np.zeros(0), 0.0, 0.0)
        model = _Model.build(problem, self.terms)
        # Shortfall no charger could avoid, even alone at full power, is known up front.
        reachable = np.minimum(
            problem.energy_max_kwh,
            problem.energy_kwh
            + problem.max_charge_kw
            * problem.charge_efficiency
            * problem.dt_h
            * (problem.departure_step - problem.arrival_step),
        )
        unavoidable = np.maximum(problem.target_energy_kwh - reachable, 0.0)
        shortfall_upper = unavoidable + SHORTFALL_SLACK_KWH * (unavoidable > 0)
        values = self._run(model, shortfall_upper, minimise_shortfall=False)
        if values is None:
            # The sites cannot deliver every target: deliver as much as they can first.
            values = self._run(model, model.shortfall_cap, minimise_shortfall=True)
            if values is None:
                raise PlanningError("HiGHS found no plan even with shortfalls allowed")
            delivered = values[model.layout.shortfall(n)] + SHORTFALL_SLACK_KWH
            values = self._run(
                model, np.minimum(delivered, model.shortfall_cap), minimise_shortfall=False
            )
            if values is None:
                raise PlanningError("HiGHS found no plan with the shortfall held")
        layout = model.layout
        power = np.zeros((n, horizon))
        net = values[layout.charge()] - values[layout.discharge()]
        power[layout.vehicle, layout.step] = net
        return LpResult(
            power_kw=power,
            shortfall_kwh=np.maximum(values[layout.shortfall(n)], 0.0),
            objective_cny=float(model.cost @ values),
            solve_seconds=time.perf_counter() - started,
        )

    def _run(
        self,
        model: _Model,
        shortfall_upper: FloatArray,
        *,
        minimise_shortfall: bool,
        solver: str | None = None,
    ) -> FloatArray | None:
        solver = solver or self.solver
        highs = _quiet_highs()
        highs.setOptionValue("output_flag", False)
        highs.setOptionValue("time_limit", float(self.time_limit_s))
        highs.setOptionValue("solver", solver)
        if solver == "ipm":
            highs.setOptionValue("run_crossover", "off")
        upper = model.col_upper.copy()
        upper[model.layout.shortfall(model.n_vehicles)] = shortfall_upper
        cost = model.shortfall_cost if minimise_shortfall else model.cost
        lp = highspy.HighsLp()
        lp.num_col_ = model.n_cols
        lp.num_row_ = model.n_rows
        lp.col_cost_ = cost
        lp.col_lower_ = model.col_lower
        lp.col_upper_ = upper
        lp.row_lower_ = model.row_lower
        lp.row_upper_ = model.row_upper
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = model.matrix.indptr
        lp.a_matrix_.index_ = model.matrix.indices
        lp.a_matrix_.value_ = model.matrix.data
        highs.passModel(lp)
        highs.run()
        status = highs.getModelStatus()
        if status == highspy.HighsModelStatus.kOptimal:
            return np.asarray(highs.getSolution().col_value, dtype=np.float64)
        if status in (
            highspy.HighsModelStatus.kInfeasible,
            highspy.HighsModelStatus.kUnboundedOrInfeasible,
        ):
            return None
        if solver == "ipm" and status != highspy.HighsModelStatus.kTimeLimit:
            # Without crossover the interior point can end undecided on a degenerate
            # problem; the simplex method settles it.
            return self._run(
                model, shortfall_upper, minimise_shortfall=minimise_shortfall, solver="simplex"
            )
        raise PlanningError(f"HiGHS stopped with status {highs.modelStatusToString(status)}")


def _quiet_highs() -> highspy.Highs:
    """A HiGHS instance, without the banner its first construction prints to stdout.

    The banner comes from C++ straight to file descriptor 1, so Python's ``sys.stdout``
    cannot catch it: the descriptor is pointed at /dev/null for the construction only.
    """
    try:
        stdout_fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no real descriptor (captured output)
        return highspy.Highs()
    sys.stdout.flush()
    saved = os.dup(stdout_fd)
    try:
        with open(os.devnull, "w", encoding="utf-8") as null:
            os.dup2(null.fileno(), stdout_fd)
            highs = highspy.Highs()
    finally:
        os.dup2(saved, stdout_fd)
        os.close(saved)
    return highs


@dataclass(frozen=True)
class _Model:
    """The programme's arrays, built once and solved once or twice."""

    layout: _Layout
    n_vehicles: int
    n_cols: int
    n_rows: int
    cost: FloatArray
    shortfall_cost: FloatArray
    col_lower: FloatArray
    col_upper: FloatArray
    shortfall_cap: FloatArray
    row_lower: FloatArray
    row_upper: FloatArray
    matrix: sp.csc_matrix

    @staticmethod
    def build(problem: Problem, terms: GridTerms) -> _Model:
        layout = _Layout.of(problem)
        n, horizon, dt_h = problem.n_vehicles, problem.grid.length, problem.dt_h
        k = layout.n_pairs
        veh, step = layout.vehicle, layout.step
        with_peak = terms.peak_price_cny_per_kw > 0
        with_valley = terms.valley_price_cny_per_kw > 0
        with_surplus = terms.surplus_price_cny_per_kwh > 0
        n_cols = 3 * k + n
        peak_col = valley_col = n_cols
        if with_peak:
            peak_col, n_cols = n_cols, n_cols + 1
        if with_valley:
            valley_col, n_cols = n_cols, n_cols + 1
        surplus_cols = np.arange(n_cols, n_cols + horizon * with_surplus, dtype=np.int64)
        n_cols += surplus_cols.size
        c_idx, d_idx, e_idx = layout.charge(), layout.discharge(), layout.energy()
        u_idx = layout.shortfall(n)

        cost = np.zeros(n_cols)
        cost[c_idx] = dt_h * problem.import_price_cny_per_kwh[step]
        # Charging and discharging a vehicle in one step (which no charger does: it sets
        # one net power) must never pay, so discharge is valued at no more than what
        # buying the energy back in the same step would cost.
        round_trip = problem.charge_efficiency[veh] * problem.discharge_efficiency[veh]
        export_value = np.minimum(
            problem.export_price_cny_per_kwh[step],
            problem.import_price_cny_per_kwh[step] / round_trip + problem.degradation_cny_per_kwh,
        )
        cost[d_idx] = dt_h * (problem.degradation_cny_per_kwh - export_value)
        if with_peak:
            cost[peak_col] = terms.peak_price_cny_per_kw
        if with_valley:
            cost[valley_col] = -terms.valley_price_cny_per_kw
        cost[surplus_cols] = -terms.surplus_price_cny_per_kwh * dt_h
        shortfall_cost = np.zeros(n_cols)
        shortfall_cost[u_idx] = 1.0

        lower = np.zeros(n_cols)
        upper = np.full(n_cols, INF)
        upper[c_idx] = problem.max_charge_kw[veh]
        upper[d_idx] = problem.max_discharge_kw[veh]
        lower[e_idx] = problem.energy_min_kwh[veh]
        upper[e_idx] = problem.energy_max_kwh[veh]
        cap = np.maximum(problem.target_energy_kwh - problem.energy_min_kwh, 0.0)
        upper[u_idx] = cap
        if with_peak:
            lower[peak_col] = -INF
        if with_valley:
            lower[valley_col] = -INF
        upper[surplus_cols] = problem.renewable_surplus_kw[: surplus_cols.size]

        rows: list[IntArray] = []
        cols: list[IntArray] = []
        vals: list[FloatArray] = []
        row_lower: list[FloatArray] = []
        row_upper: list[FloatArray] = []

        # Energy balance, one row per vehicle-step: e[t] - e[t-1] - eta_c dt c + dt/eta_d d = 0.
        balance = np.arange(k, dtype=np.int64)
        first = step == problem.arrival_step[veh]
        rows += [balance, balance[~first], balance, balance]
        cols += [e_idx, e_idx[~first] - 1, c_idx, d_idx]
        vals += [
            np.ones(k),
            -np.ones(int((~first).sum())),
            -problem.charge_efficiency[veh] * dt_h,
            dt_h / problem.discharge_efficiency[veh],
        ]
        rhs = np.where(first, problem.energy_kwh[veh], 0.0)
        row_lower.append(rhs)
        row_upper.append(rhs.copy())
        next_row = k

        # Departure: e[last] + u >= target.
        departure = next_row + np.arange(n, dtype=np.int64)
        rows += [departure, departure]
        cols += [e_idx[layout.last], u_idx]
        vals += [np.ones(n), np.ones(n)]
        row_lower.append(problem.target_energy_kwh.astype(np.float64))
        row_upper.append(np.full(n, INF))
        next_row += n

        # Sites with a finite limit: one row per site and step.
        site = problem.site_index[veh]
        limited = np.isfinite(problem.import_limit_kw) | np.isfinite(problem.export_limit_kw)
        if limited.any():
            site_row = np.full(problem.import_limit_kw.shape[0], -1, dtype=np.int64)
            site_row[limited] = np.arange(int(limited.sum()), dtype=np.int64)
            in_limited = limited[site]
            r = next_row + site_row[site[in_limited]] * horizon + step[in_limited]
            rows += [r, r]
            cols += [c_idx[in_limited], d_idx[in_limited]]
            vals += [np.ones(r.size), -np.ones(r.size)]
            imports = np.where(np.isfinite(problem.import_limit_kw), problem.import_limit_kw, INF)
            exports = np.where(np.isfinite(problem.export_limit_kw), -problem.export_limit_kw, -INF)
            row_lower.append(np.repeat(exports[limited], horizon))
            row_upper.append(np.repeat(imports[limited], horizon))
            next_row += int(limited.sum()) * horizon

        # Peak: peak - sum(c - d)[t] >= base_load[t].
        if with_peak:
            peak_rows = next_row + np.arange(horizon, dtype=np.int64)
            rows += [peak_rows, next_row + step, next_row + step]
            cols += [np.full(horizon, peak_col, dtype=np.int64), c_idx, d_idx]
            vals += [np.ones(horizon), -np.ones(k), np.ones(k)]
            row_lower.append(problem.base_load_kw.astype(np.float64))
            row_upper.append(np.full(horizon, INF))
            next_row += horizon

        # Valley filling: floor - sum(c - d)[t] <= base_load[t]; the floor is rewarded.
        if with_valley:
            valley_rows = next_row + np.arange(horizon, dtype=np.int64)
            rows += [valley_rows, next_row + step, next_row + step]
            cols += [np.full(horizon, valley_col, dtype=np.int64), c_idx, d_idx]
            vals += [np.ones(horizon), -np.ones(k), np.ones(k)]
            row_lower.append(np.full(horizon, -INF))
            row_upper.append(problem.base_load_kw.astype(np.float64))
            next_row += horizon

        # Surplus absorbed: absorbed[t] - sum(c - d)[t] <= 0, absorbed[t] <= surplus[t].
        if with_surplus:
            surplus_rows = next_row + np.arange(horizon, dtype=np.int64)
            rows += [surplus_rows, next_row + step, next_row + step]
            cols += [surplus_cols, c_idx, d_idx]
            vals += [np.ones(horizon), -np.ones(k), np.ones(k)]
            row_lower.append(np.full(horizon, -INF))
            row_upper.append(np.zeros(horizon))
            next_row += horizon

        matrix = sp.csc_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(next_row, n_cols),
        )
        matrix.sum_duplicates()
        return _Model(
            layout=layout,
            n_vehicles=n,
            n_cols=n_cols,
            n_rows=next_row,
            cost=cost,
            shortfall_cost=shortfall_cost,
            col_lower=lower,
            col_upper=upper,
            shortfall_cap=cap,
            row_lower=np.concatenate(row_lower),
            row_upper=np.concatenate(row_upper),
            matrix=matrix,
        )
