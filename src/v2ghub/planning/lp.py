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

    minimise  sum dt_h * (import_price[t] * c - export_price[t] * d + degradation[i] * d)
              + peak_price_cny_per_kw * peak - valley_price_cny_per_kw * floor
              - surplus_price_cny_per_kwh * dt_h * sum absorbed

With ``keep_valley_rule`` and a problem that carries the pilots' valley rule
(:mod:`v2ghub.model.valley_rule`), each of its two groups ``g`` (every row; the private
chargers' rows) with share ``s_g`` gets a row and a miss ``w_g >= 0`` (kWh)::

    sum over i in g, t of dt_h * (valley[t] - s_g) * c[i,t] + w_g >= s_g * C_g - V_g

    minimise  ... + penalty_cny_per_kwh * (w_all + w_private)

with ``V_g``, ``C_g`` the valley and total charging energy metered before the horizon.

The shortfall ``u`` is zero whenever the targets can be met. When they cannot, a first
solve minimises the total shortfall, and the cost is then minimised with each vehicle's
delivery held there. The matrix is built with whole-array operations (no loop over
vehicles or steps) and passed to HiGHS in compressed-column form. No binary variables are
needed to keep a vehicle from charging and discharging in one step: that only pays where
``export_price - degradation > import_price / (charge_efficiency * discharge_efficiency)``
in the same step, so discharge is valued at no more than that bound (a tariff paying more,
such as a discharge price above the import price, is planned as if it paid the bound;
settlement still pays the real price). The schedule is the net power ``c - d``.

Frequency-regulation headroom, only when some step has a regulation price ``pi[t] > 0`` or
a commitment ``K[t] > 0`` (otherwise none of what follows is in the programme). In those
steps every vehicle (never a forecast row) that stays plugged at least
``D = REGULATION_DURATION_H`` longer gets headroom down ``l[i,t] >= 0`` and up
``r[i,t] >= 0`` (kW: how far its power can move from ``c - d`` and hold for ``D``), and
the fleet a symmetric headroom ``R[t] >= 0`` and a missed commitment ``m[t] >= 0``::

    (c - d - l)[i,t] >= -max_discharge_kw,   (c - d + r)[i,t] <= max_charge_kw
    E[i,t+D] - D * l[i,t] * loss[i] >= energy_min_kwh          (V2G vehicles only)
    E[i,t+D] - D * l[i,t] * loss[i] + u[i]
        >= target_energy_kwh - (H[i,t] - D) * max_charge_kw * charge_efficiency
    e[i,t-1] + charge_efficiency * (sum over s in the window of w[s] * (c - d)[i,s]
        + D * r[i,t]) <= energy_max_kwh
    sum over i at site s of (c - d + r)[i,t] <= import_limit_kw[s],
        sum over i at site s of (c - d - l)[i,t] >= -export_limit_kw[s]
    R[t] <= sum_i l[i,t],   R[t] <= sum_i r[i,t],   R[t] + m[t] >= K[t]

    minimise  ... - sum_t dt_h * pi[t] * R[t] + MISSED_COMMITMENT_CNY_PER_KW_H * dt_h * sum m

The window is the ``D`` hours from the start of step ``t``: steps ``t, t+1, ...`` of the
plan, ``w[s]`` the hours of step ``s`` inside it (``dt_h``, the last one possibly less);
``E[i,t+D]`` is the planned stored energy at its end (within a step, interpolated);
``H[i,t]`` is the hours from the start of step ``t`` to departure. The energy top row is
built as ``E[i,t+D] + (1 / discharge_efficiency - charge_efficiency) * sum w d
+ charge_efficiency * D * r``, the same thing. ``MISSED_COMMITMENT_CNY_PER_KW_H`` (100) is
far above any tariff, so a commitment is missed only where it cannot be kept; it never
makes the programme infeasible.

With ``g(p)`` the stored energy per hour at charger power ``p`` (``charge_efficiency * p``
charging, ``p / discharge_efficiency`` discharging), which is concave, the energy rows
are a conservative linearisation. Going down costs at most ``loss = 1 /
discharge_efficiency`` per kW and hour for a V2G vehicle, ``charge_efficiency`` for a
charge-only one (it only charges less, and never goes below the energy it has, so it
needs no floor row). Going up is bounded by the tangent ``g(p + r) <= charge_efficiency *
(p + r)``: from a planned discharge a kW up saves up to ``1 / discharge_efficiency``, so
"adds at most ``charge_efficiency * r``" on top of the planned energy would not be safe.
The departure floor keeps what the plan delivers, ``target - u`` (a vehicle that cannot
reach its target offers nothing that takes it further away), refilled at the vehicle's
own charger power (``refill_kw``'s default in :func:`v2ghub.model.headroom.headroom`;
the twin passes a limited site's share, which can be less).

When a step is at least ``D`` long (hourly plans) ``E[i,t+D]`` is the energy after holding
step ``t``'s power for ``D``, and the rows are those of
:func:`v2ghub.model.headroom.headroom` (fed the planned power and the stored energy at
the start of the step) under the linearisation above. With shorter steps the window
follows the plan's own next steps instead of holding step ``t``'s power, which is what
happens when the plan runs with regulation on top; it is checked at its end, its worst
point when the planned path is monotone over the window. Power is checked in step ``t``.

Every row holds at ``l = r = 0`` for any plan of the energy programme, except the energy
top row of a vehicle that discharges and then recharges to near full within one window.
Headroom never costs delivery: the shortfall pass leaves the term out, and if the cost
pass with the shortfall held is then infeasible with the term, the term is dropped. The
term can make it pay to charge and discharge a vehicle at once (which loses stored energy
at unchanged net power and so frees room up, but which no charger can do): such pairs are
re-solved with one side held at zero (:meth:`LpPlanner._without_burning`). The headroom
reported is checked on the net schedule's stored energy: per vehicle ``l`` and ``r`` are
cut to what the rows allow there, ``R`` to their fleet totals.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, replace

import highspy
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from v2ghub.choices import TWIN_MAX_SESSIONS
from v2ghub.defaults import REGULATION_DURATION_H
from v2ghub.errors import PlanningError
from v2ghub.model.problem import PlannerCapabilities, Problem, Schedule
from v2ghub.model.valley_rule import valley_steps, with_rules_name
from v2ghub.planning.reserve import MISSED_COMMITMENT_CNY_PER_KW_H
from v2ghub.planning.stepping import make_feasible

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

INF = highspy.kHighsInf
SHORTFALL_SLACK_KWH = 1e-6
# Steps per regulation window are counted with this slack, so that 4 x 0.25 h is 1 h.
_WINDOW_TOLERANCE = 1e-9
# Charging and discharging at once above this (kW) is re-solved away, at most this often.
BURNING_TOLERANCE_KW = 1e-6
BURNING_ROUNDS = 4


@dataclass(frozen=True)
class GridTerms:
    """Optional objective terms on the area's load (base load + fleet), all >= 0."""

    peak_price_cny_per_kw: float = 0.0
    valley_price_cny_per_kw: float = 0.0
    surplus_price_cny_per_kwh: float = 0.0
    keep_valley_rule: bool = False

    def __post_init__(self) -> None:
        for name in (
            "peak_price_cny_per_kw",
            "valley_price_cny_per_kw",
            "surplus_price_cny_per_kwh",
        ):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


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
class _Window:
    """The regulation window in steps: ``steps`` steps, the last one ``end_fraction`` in."""

    steps: int
    end_fraction: float

    @staticmethod
    def of(dt_h: float) -> _Window:
        steps = max(math.ceil(REGULATION_DURATION_H / dt_h - _WINDOW_TOLERANCE), 1)
        fraction = (REGULATION_DURATION_H - (steps - 1) * dt_h) / dt_h
        return _Window(steps, 1.0 if fraction > 1.0 - _WINDOW_TOLERANCE else fraction)

    def hours(self, dt_h: float) -> FloatArray:
        """Hours of each of the window's steps inside the window."""
        hours = np.full(self.steps, dt_h)
        hours[-1] = self.end_fraction * dt_h
        return hours


@dataclass(frozen=True)
class _Headroom:
    """Where the regulation headroom term lives in the programme (module docstring)."""

    steps: IntArray  # the steps with a regulation price or commitment
    committed: IntArray  # positions in ``steps`` of those with a commitment
    pairs: IntArray  # per offer (a vehicle-step that can hold for the duration): its pair
    position: IntArray  # per offer: the position of its step in ``steps``
    lower_cols: IntArray  # per offer
    raise_cols: IntArray  # per offer
    fleet_cols: IntArray  # per step in ``steps``: R[t]
    missed_cols: IntArray  # per committed step: m[t]
    window: _Window
    first_row: int  # the term's rows are the programme's last, from here

    @staticmethod
    def columns_for(problem: Problem, layout: _Layout, first_col: int) -> _Headroom | None:
        """The term's columns from ``first_col`` on, or ``None`` if no step asks for it."""
        wanted = (problem.regulation_price > 0) | (problem.regulation_commitment > 0)
        steps = np.flatnonzero(wanted).astype(np.int64)
        if steps.size == 0:
            return None
        window = _Window.of(problem.dt_h)
        position = np.full(problem.grid.length, -1, dtype=np.int64)
        position[steps] = np.arange(steps.size, dtype=np.int64)
        veh, step = layout.vehicle, layout.step
        # Steps left count whole steps, so a vehicle stays for the window exactly when
        # its departure is at least ``window.steps`` steps away.
        stays = problem.departure_step[veh] - step >= window.steps
        pairs = np.flatnonzero(wanted[step] & (veh < problem.n_plugged) & stays).astype(np.int64)
        committed = np.flatnonzero(problem.regulation_commitment[steps] > 0).astype(np.int64)
        n_offers = pairs.size
        lower_cols = first_col + np.arange(n_offers, dtype=np.int64)
        fleet_first = first_col + 2 * n_offers
        return _Headroom(
            steps=steps,
            committed=committed,
            pairs=pairs,
            position=position[step[pairs]],
            lower_cols=lower_cols,
            raise_cols=lower_cols + n_offers,
            fleet_cols=fleet_first + np.arange(steps.size, dtype=np.int64),
            missed_cols=fleet_first + steps.size + np.arange(committed.size, dtype=np.int64),
            window=window,
            first_row=-1,
        )

    @property
    def n_cols(self) -> int:
        return 2 * self.pairs.size + self.steps.size + self.committed.size

    def columns(self) -> IntArray:
        return np.concatenate((self.lower_cols, self.raise_cols, self.fleet_cols, self.missed_cols))


@dataclass(frozen=True)
class LpResult:
    """A solved programme: the schedule and what it costs.

    ``objective_cny`` is the programme's objective: energy cost (and grid terms), less the
    regulation headroom's value, plus ``MISSED_COMMITMENT_CNY_PER_KW_H`` per kW-hour of
    commitment missed. ``regulation_kw`` is, per step, the symmetric headroom ``R[t]`` the
    plan keeps and ``regulation_missed_kw`` the commitment it cannot keep (both zero
    without a regulation price or commitment).
    """

    power_kw: FloatArray
    shortfall_kwh: FloatArray
    objective_cny: float
    solve_seconds: float
    regulation_kw: FloatArray
    regulation_missed_kw: FloatArray


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
    keep_valley_rule:
        Keep the pilots' valley rule the problem carries (``Problem.valley_rule``), as
        rows relaxed at its penalty (see the module docstring); the planner is then
        named ``lp+rules``.

    Notes
    -----
    The regulation headroom term comes with the problem
    (``Problem.regulation_price_cny_per_kw_h``, ``Problem.regulation_commitment_kw``).
    """

    name = "lp"

    def __init__(
        self,
        *,
        peak_price_cny_per_kw: float = 0.0,
        valley_price_cny_per_kw: float = 0.0,
        surplus_price_cny_per_kwh: float = 0.0,
        time_limit_s: float = 300.0,
        solver: str = "ipm",
        keep_valley_rule: bool = False,
    ) -> None:
        self.terms = GridTerms(
            peak_price_cny_per_kw=peak_price_cny_per_kw,
            valley_price_cny_per_kw=valley_price_cny_per_kw,
            surplus_price_cny_per_kwh=surplus_price_cny_per_kwh,
            keep_valley_rule=keep_valley_rule,
        )
        self.name = with_rules_name("lp", keep_valley_rule=keep_valley_rule)
        # The twin calls it at every control instant: small fleets only.
        self.capabilities = PlannerCapabilities(
            max_sessions=TWIN_MAX_SESSIONS,
            peak_price=True,
            regulation_headroom=True,
            valley_rule=keep_valley_rule,
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
            missed = np.maximum(problem.regulation_commitment, 0.0).astype(np.float64)
            return LpResult(
                np.zeros((0, horizon)), np.zeros(0), 0.0, 0.0, np.zeros(horizon), missed
            )
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
        values = self._passes(model, shortfall_upper)
        if model.headroom is not None or model.keeps_valley_rule:
            values = self._without_burning(model, shortfall_upper, values)
        layout = model.layout
        power = np.zeros((n, horizon))
        net = values[layout.charge()] - values[layout.discharge()]
        power[layout.vehicle, layout.step] = net
        kept, missed = np.zeros(horizon), np.maximum(problem.regulation_commitment, 0.0)
        if model.headroom is not None:
            kept = _kept_headroom(problem, model.layout, model.headroom, values, net)
            missed = np.maximum(problem.regulation_commitment - kept, 0.0)
            # Report the objective of the headroom kept, not the programme's own figure.
            values[model.headroom.fleet_cols] = kept[model.headroom.steps]
            committed = model.headroom.steps[model.headroom.committed]
            values[model.headroom.missed_cols] = missed[committed]
        return LpResult(
            power_kw=power,
            shortfall_kwh=np.maximum(values[layout.shortfall(n)], 0.0),
            objective_cny=float(model.cost @ values),
            solve_seconds=time.perf_counter() - started,
            regulation_kw=kept,
            regulation_missed_kw=missed.astype(np.float64),
        )

    def _passes(
        self,
        model: _Model,
        shortfall_upper: FloatArray,
        *,
        with_headroom: bool = True,
        zero_cols: IntArray | None = None,
    ) -> FloatArray:
        """The cost pass; if the targets cannot all be met, the shortfall pass first."""
        values = self._run(
            model,
            shortfall_upper,
            minimise_shortfall=False,
            with_headroom=with_headroom,
            zero_cols=zero_cols,
        )
        if values is not None:
            return values
        # The sites cannot deliver every target: deliver as much as they can first,
        # headroom left out so that it never costs delivery.
        held = self._least_shortfall(model, self.solver)
        values = self._run(
            model, held, minimise_shortfall=False, with_headroom=with_headroom, zero_cols=zero_cols
        )
        if values is None and self.solver != "simplex":
            # The interior point's shortfalls can be off by more than the slack (seen:
            # 1.1e-6 kWh), so that nothing delivers them: the simplex method's are exact.
            held = self._least_shortfall(model, "simplex")
            values = self._run(
                model,
                held,
                minimise_shortfall=False,
                with_headroom=with_headroom,
                zero_cols=zero_cols,
            )
        if values is None and with_headroom and model.headroom is not None:
            # The headroom's rows barred every plan delivering that much: drop the term.
            values = self._run(model, held, minimise_shortfall=False, with_headroom=False)
        if values is None:
            raise PlanningError("HiGHS found no plan with the shortfall held")
        return values

    def _least_shortfall(self, model: _Model, solver: str) -> FloatArray:
        """Per vehicle, the shortfall of a plan that delivers as much as the sites can."""
        values = self._run(
            model,
            model.shortfall_cap,
            minimise_shortfall=True,
            with_headroom=False,
            solver=solver,
        )
        if values is None:
            raise PlanningError("HiGHS found no plan even with shortfalls allowed")
        delivered = values[model.layout.shortfall(model.n_vehicles)] + SHORTFALL_SLACK_KWH
        return np.asarray(np.minimum(delivered, model.shortfall_cap), dtype=np.float64)

    def _without_burning(
        self, model: _Model, shortfall_upper: FloatArray, values: FloatArray
    ) -> FloatArray:
        """Re-solve until no vehicle both charges and discharges in one step.

        Doing both loses stored energy at unchanged net power, which no charger can do
        (it sets one net power) but the programme's energy rows allow; it never pays in
        the energy programme, but room up near a full battery can make it pay, and so can
        the valley rule (charging counted in a valley step). The first
        round holds the smaller side of every such pair at zero, later rounds every
        pair of a vehicle that still does it (the side its net power does not use); if
        some remain after ``BURNING_ROUNDS``, the plan is made without the headroom term.
        """
        layout = model.layout
        charge, discharge = layout.charge(), layout.discharge()
        zero_cols = np.zeros(0, dtype=np.int64)
        for round_ in range(BURNING_ROUNDS):
            both = np.minimum(values[charge], values[discharge]) > BURNING_TOLERANCE_KW
            if not both.any():
                return values
            if round_ > 0:
                both = np.isin(layout.vehicle, layout.vehicle[both])
            net = values[charge] - values[discharge]
            zero_cols = np.union1d(zero_cols, np.where(net >= 0, discharge, charge)[both])
            values = self._passes(model, shortfall_upper, zero_cols=zero_cols)
        if np.any(np.minimum(values[charge], values[discharge]) > BURNING_TOLERANCE_KW):
            values = self._passes(model, shortfall_upper, with_headroom=False)
        return values

    def _run(
        self,
        model: _Model,
        shortfall_upper: FloatArray,
        *,
        minimise_shortfall: bool,
        with_headroom: bool = True,
        zero_cols: IntArray | None = None,
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
        row_lower, row_upper = model.row_lower, model.row_upper
        if not with_headroom and model.headroom is not None:
            # The term's columns at zero and its rows free: the energy programme alone.
            upper[model.headroom.columns()] = 0.0
            row_lower, row_upper = row_lower.copy(), row_upper.copy()
            row_lower[model.headroom.first_row :] = -INF
            row_upper[model.headroom.first_row :] = INF
        elif zero_cols is not None:
            upper[zero_cols] = 0.0
        cost = model.shortfall_cost if minimise_shortfall else model.cost
        lp = highspy.HighsLp()
        lp.num_col_ = model.n_cols
        lp.num_row_ = model.n_rows
        lp.col_cost_ = cost
        lp.col_lower_ = model.col_lower
        lp.col_upper_ = upper
        lp.row_lower_ = row_lower
        lp.row_upper_ = row_upper
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
                model,
                shortfall_upper,
                minimise_shortfall=minimise_shortfall,
                with_headroom=with_headroom,
                zero_cols=zero_cols,
                solver="simplex",
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
    headroom: _Headroom | None
    keeps_valley_rule: bool = False

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
        rule = problem.valley_rule if terms.keep_valley_rule else None
        rule_cols = np.arange(n_cols, n_cols + 2 * (rule is not None), dtype=np.int64)
        n_cols += rule_cols.size
        headroom = _Headroom.columns_for(problem, layout, n_cols)
        if headroom is not None:
            n_cols += headroom.n_cols
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
            problem.import_price_cny_per_kwh[step] / round_trip + problem.degradation[veh],
        )
        cost[d_idx] = dt_h * (problem.degradation[veh] - export_value)
        if with_peak:
            cost[peak_col] = terms.peak_price_cny_per_kw
        if with_valley:
            cost[valley_col] = -terms.valley_price_cny_per_kw
        cost[surplus_cols] = -terms.surplus_price_cny_per_kwh * dt_h
        if rule is not None:
            cost[rule_cols] = rule.penalty_cny_per_kwh
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
        if headroom is not None:
            offered = veh[headroom.pairs]
            reach = problem.max_charge_kw[offered] + problem.max_discharge_kw[offered]
            upper[headroom.lower_cols] = reach
            upper[headroom.raise_cols] = reach
            cost[headroom.fleet_cols] = -problem.regulation_price[headroom.steps] * dt_h
            committed_kw = problem.regulation_commitment[headroom.steps[headroom.committed]]
            cost[headroom.missed_cols] = MISSED_COMMITMENT_CNY_PER_KW_H * dt_h
            upper[headroom.missed_cols] = committed_kw

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
            imports, exports = _site_bounds(problem, limited)
            row_lower.append(exports.reshape(-1))
            row_upper.append(imports.reshape(-1))
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

        # The valley rule, all rows then the private chargers' rows (before the headroom's
        # rows, which must come last).
        if rule is not None:
            valley = valley_steps(problem.period_kind)[step]
            for group, (members, share, valley_kwh, charged_kwh) in enumerate(rule.groups()):
                pairs = np.flatnonzero(members[veh]) if members is not None else np.arange(k)
                rows += [np.full(pairs.size, next_row, dtype=np.int64), np.array([next_row])]
                cols += [c_idx[pairs], rule_cols[group : group + 1]]
                vals += [dt_h * (valley[pairs].astype(np.float64) - share), np.ones(1)]
                row_lower.append(np.array([share * charged_kwh - valley_kwh]))
                row_upper.append(np.array([INF]))
                next_row += 1

        if headroom is not None:
            headroom = replace(headroom, first_row=next_row)
            next_row = _add_headroom_rows(
                problem,
                layout,
                headroom,
                rows=rows,
                cols=cols,
                vals=vals,
                bounds=(row_lower, row_upper),
            )

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
            headroom=headroom,
            keeps_valley_rule=rule is not None,
        )


def _add_headroom_rows(
    problem: Problem,
    layout: _Layout,
    room: _Headroom,
    *,
    rows: list[IntArray],
    cols: list[IntArray],
    vals: list[FloatArray],
    bounds: tuple[list[FloatArray], list[FloatArray]],
) -> int:
    """Append the headroom term's rows from ``room.first_row`` on; return the next row.

    The rows are those of the module docstring, in blocks: power down and up, energy
    floor, energy top and departure need per offer; then the fleet's ``R`` per step,
    the commitments, and the limited sites per step.
    """
    row_lower, row_upper = bounds
    k, dt_h, duration = layout.n_pairs, problem.dt_h, REGULATION_DURATION_H
    pairs = room.pairs
    n_offers = pairs.size
    veh = layout.vehicle[pairs]
    eta_c = problem.charge_efficiency[veh]
    eta_d = problem.discharge_efficiency[veh]
    ones = np.ones(n_offers)
    offer = room.first_row + np.arange(n_offers, dtype=np.int64)
    next_row = room.first_row

    # Power within the chargers' limits at full deflection.
    down, up = offer, offer + n_offers
    rows += [down, down, down, up, up, up]
    cols += [pairs, k + pairs, room.lower_cols, pairs, k + pairs, room.raise_cols]
    vals += [ones, -ones, -ones, ones, -ones, ones]
    row_lower += [-problem.max_discharge_kw[veh], np.full(n_offers, -INF)]
    row_upper += [np.full(n_offers, INF), problem.max_charge_kw[veh].astype(np.float64)]
    next_row += 2 * n_offers

    # Stored energy lost per kW down over the hold: a V2G vehicle may end up discharging
    # (at worst 1 / eta_d per kW); a charge-only one only charges less (eta_c per kW).
    v2g = problem.max_discharge_kw[veh] > 0
    down_kwh_per_kw = duration * np.where(v2g, 1.0 / eta_d, eta_c)
    end_offer, end_col, end_val, end_constant = _window_end_energy(problem, layout, room)

    def rows_at_window_end(which: BoolArray) -> IntArray:
        """Rows for the offers in ``which``, each holding E[t+D] (its constant aside)."""
        row = np.full(n_offers, -1, dtype=np.int64)
        row[which] = next_row + np.arange(int(which.sum()), dtype=np.int64)
        inside = which[end_offer]
        rows.append(row[end_offer[inside]])
        cols.append(end_col[inside])
        vals.append(end_val[inside])
        return row[which]

    # Energy floor (V2G vehicles; a charge-only one never goes below its energy now):
    # E[t+D] - D l / eta_d >= energy_min.
    floor = rows_at_window_end(v2g)
    rows.append(floor)
    cols.append(room.lower_cols[v2g])
    vals.append(-down_kwh_per_kw[v2g])
    row_lower.append(problem.energy_min_kwh[veh[v2g]] - end_constant[v2g])
    row_upper.append(np.full(floor.size, INF))
    next_row += floor.size

    # Energy top: e[t-1] + eta_c (sum over the window of w (c - d) + D r) <= energy_max,
    # written as E[t+D] + (1 / eta_d - eta_c) sum w d + eta_c D r <= energy_max.
    top = rows_at_window_end(np.ones(n_offers, dtype=bool))
    rows.append(top)
    cols.append(room.raise_cols)
    vals.append(eta_c * duration)
    lost = 1.0 / eta_d[v2g] - eta_c[v2g]
    for j, hours in enumerate(room.window.hours(dt_h).tolist()):  # the window's few steps
        rows.append(top[v2g])
        cols.append(k + pairs[v2g] + j)
        vals.append(lost * hours)
    row_lower.append(np.full(n_offers, -INF))
    row_upper.append(problem.energy_max_kwh[veh] - end_constant)
    next_row += n_offers

    # Departure need, where it is above the energy minimum:
    # E[t+D] - D l / eta + u >= target - (H - D) max_charge eta_c.
    hours_left = (problem.departure_step[veh] - layout.step[pairs]) * dt_h
    need = problem.target_energy_kwh[veh] - (
        (hours_left - duration) * problem.max_charge_kw[veh] * eta_c
    )
    needy = need > problem.energy_min_kwh[veh]
    need_rows = rows_at_window_end(needy)
    rows += [need_rows, need_rows]
    cols += [room.lower_cols[needy], layout.shortfall(problem.n_vehicles)[veh[needy]]]
    vals += [-down_kwh_per_kw[needy], ones[needy]]
    row_lower.append(need[needy] - end_constant[needy])
    row_upper.append(np.full(need_rows.size, INF))
    next_row += need_rows.size

    # The fleet: R[t] <= sum_i l[i,t], R[t] <= sum_i r[i,t].
    n_steps = room.steps.size
    fleet = next_row + np.arange(n_steps, dtype=np.int64)
    rows += [fleet, fleet + n_steps, next_row + room.position, next_row + n_steps + room.position]
    cols += [room.fleet_cols, room.fleet_cols, room.lower_cols, room.raise_cols]
    vals += [np.ones(n_steps), np.ones(n_steps), -ones, -ones]
    row_lower.append(np.full(2 * n_steps, -INF))
    row_upper.append(np.zeros(2 * n_steps))
    next_row += 2 * n_steps

    # Commitments: R[t] + m[t] >= K[t].
    n_committed = room.committed.size
    commitment = next_row + np.arange(n_committed, dtype=np.int64)
    rows += [commitment, commitment]
    cols += [room.fleet_cols[room.committed], room.missed_cols]
    vals += [np.ones(n_committed), np.ones(n_committed)]
    row_lower.append(problem.regulation_commitment[room.steps[room.committed]].astype(np.float64))
    row_upper.append(np.full(n_committed, INF))
    next_row += n_committed

    # Limited sites, every vehicle at full deflection at once.
    limited = np.isfinite(problem.import_limit_kw) | np.isfinite(problem.export_limit_kw)
    if limited.any():
        n_limited = int(limited.sum())
        site_row = np.full(limited.size, -1, dtype=np.int64)
        site_row[limited] = np.arange(n_limited, dtype=np.int64)
        position = np.full(problem.grid.length, -1, dtype=np.int64)
        position[room.steps] = np.arange(n_steps, dtype=np.int64)
        pair_site = problem.site_index[layout.vehicle]
        counted = np.flatnonzero((position[layout.step] >= 0) & limited[pair_site])
        site_up = next_row + site_row[pair_site[counted]] * n_steps + position[layout.step[counted]]
        site_down = site_up + n_limited * n_steps
        offer_site = problem.site_index[veh]
        at_limited = limited[offer_site]
        offer_up = next_row + site_row[offer_site[at_limited]] * n_steps + room.position[at_limited]
        ones_counted = np.ones(counted.size)
        rows += [site_up, site_up, site_down, site_down, offer_up, offer_up + n_limited * n_steps]
        cols += [
            counted,
            k + counted,
            counted,
            k + counted,
            room.raise_cols[at_limited],
            room.lower_cols[at_limited],
        ]
        vals += [ones_counted, -ones_counted, ones_counted, -ones_counted]
        vals += [np.ones(int(at_limited.sum())), -np.ones(int(at_limited.sum()))]
        imports, exports = _site_bounds(problem, limited)
        imports, exports = imports[:, room.steps], exports[:, room.steps]
        row_lower += [np.full(n_limited * n_steps, -INF), exports.reshape(-1)]
        row_upper += [imports.reshape(-1), np.full(n_limited * n_steps, INF)]
        next_row += 2 * n_limited * n_steps
    return next_row


def _site_bounds(problem: Problem, limited: BoolArray) -> tuple[FloatArray, FloatArray]:
    """The bounds of the limited sites' summed power, sites x steps: the import limit less
    the site's other load (``Problem.site_load_kw``) and minus the export limit less it;
    HiGHS's infinity where a site has no limit that way."""
    import_room, export_room = problem.site_room_kw()
    imports = np.where(np.isfinite(import_room), import_room, INF)[limited]
    exports = np.where(np.isfinite(export_room), -export_room, -INF)[limited]
    return imports, exports


def _start_energy(
    problem: Problem, layout: _Layout, pairs: IntArray, weight: float
) -> tuple[BoolArray, IntArray, FloatArray]:
    """``weight`` times the stored energy at the start of each of ``pairs``.

    Returns where it is a variable (``e`` of the pair before), that variable's column,
    and the constant it is where not (``weight`` times the arrival energy).
    """
    veh = layout.vehicle[pairs]
    at_arrival = layout.step[pairs] == problem.arrival_step[veh]
    constant = np.where(at_arrival, weight * problem.energy_kwh[veh], 0.0)
    return ~at_arrival, 2 * layout.n_pairs + pairs - 1, constant


def _window_end_energy(
    problem: Problem, layout: _Layout, room: _Headroom
) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """The planned stored energy at the end of each offer's window.

    As entries ``(offer, column, value)`` plus a constant per offer: ``e`` after the
    window's last step, or, when the window ends inside it, the interpolation between the
    energy at that step's start and after it.
    """
    offer = np.arange(room.pairs.size, dtype=np.int64)
    last = room.pairs + room.window.steps - 1
    fraction = room.window.end_fraction
    after_col = 2 * layout.n_pairs + last
    if fraction == 1.0:
        return offer, after_col, np.ones(offer.size), np.zeros(offer.size)
    inside, start_col, constant = _start_energy(problem, layout, last, 1.0 - fraction)
    return (
        np.concatenate((offer, offer[inside])),
        np.concatenate((after_col, start_col[inside])),
        np.concatenate((np.full(offer.size, fraction), np.full(int(inside.sum()), 1.0 - fraction))),
        constant,
    )


def _kept_headroom(
    problem: Problem, layout: _Layout, room: _Headroom, values: FloatArray, net_kw: FloatArray
) -> FloatArray:
    """Per step, the symmetric headroom the net schedule keeps, kW (0 where not asked).

    The programme's stored energy ``e`` falls below the net schedule's where a pair both
    charges and discharges (which the headroom's value can make worth it); so each
    vehicle's ``l`` and ``r`` are cut to what the headroom rows allow on the stored energy
    of the net power ``c - d``, and ``R`` to the fleet's totals of those.
    """
    dt_h, duration = problem.dt_h, REGULATION_DURATION_H
    every = layout.vehicle
    stored = dt_h * np.where(
        net_kw >= 0,
        problem.charge_efficiency[every] * net_kw,
        net_kw / problem.discharge_efficiency[every],
    )
    total = np.cumsum(stored)
    first = layout.last - (problem.departure_step - problem.arrival_step) + 1
    before = total[first] - stored[first]
    after = problem.energy_kwh[every] + total - before[every]
    start = after - stored

    pairs = room.pairs
    veh = every[pairs]
    eta_c = problem.charge_efficiency[veh]
    last = pairs + room.window.steps - 1
    end = start[last] + room.window.end_fraction * (after[last] - start[last])
    hours_left = (problem.departure_step[veh] - layout.step[pairs]) * dt_h
    delivered = np.minimum(problem.target_energy_kwh[veh], after[layout.last[veh]])
    need = delivered - (hours_left - duration) * problem.max_charge_kw[veh] * eta_c
    v2g = problem.max_discharge_kw[veh] > 0
    floor = np.where(v2g, np.maximum(problem.energy_min_kwh[veh], need), need)
    down_kwh_per_kw = duration * np.where(v2g, 1.0 / problem.discharge_efficiency[veh], eta_c)
    window_kwh = np.zeros(pairs.size)
    for j, hours in enumerate(room.window.hours(dt_h).tolist()):  # the window's few steps
        window_kwh += hours * net_kw[pairs + j]
    lower = np.minimum.reduce(
        [
            values[room.lower_cols],
            net_kw[pairs] + problem.max_discharge_kw[veh],
            (end - floor) / down_kwh_per_kw,
        ]
    )
    upper = np.minimum.reduce(
        [
            values[room.raise_cols],
            problem.max_charge_kw[veh] - net_kw[pairs],
            ((problem.energy_max_kwh[veh] - start[pairs]) / eta_c - window_kwh) / duration,
        ]
    )
    n_steps = room.steps.size
    fleet_lower = np.bincount(room.position, weights=np.maximum(lower, 0.0), minlength=n_steps)
    fleet_raise = np.bincount(room.position, weights=np.maximum(upper, 0.0), minlength=n_steps)
    kept = np.zeros(problem.grid.length)
    fleet = np.minimum.reduce([values[room.fleet_cols], fleet_lower, fleet_raise])
    kept[room.steps] = np.maximum(fleet, 0.0)
    return kept
