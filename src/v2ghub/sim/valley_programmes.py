"""The linear programmes behind the valley rule's reach (:mod:`v2ghub.sim.valley_reach`).

A day's sessions fall apart into blocks that share nothing: each limited site's sessions
(its limits bind them together), and the sessions of unlimited sites in groups of up to
``UNLIMITED_BLOCK_SESSIONS``. Each block is one programme, built once and kept, in the
variables of :mod:`v2ghub.planning.lp` (per session ``i`` and plugged step ``t``: charge
``c[i,t]``, discharge ``d[i,t]``, stored energy ``e[i,t]``; a shortfall ``u[i]``)::

    e[i,t] = e[i,t-1] + charge_efficiency * c[i,t] * dt_h - d[i,t] * dt_h / discharge_efficiency
    0 <= c[i,t] <= max_charge_kw,   0 <= d[i,t] <= max_discharge_kw
    c[i,t] / max_charge_kw + d[i,t] / max_discharge_kw <= 1          (V2G sessions)
    energy_min_kwh <= e[i,t] <= energy_max_kwh
    e[i,last] + u[i] >= min(target_energy_kwh, what the session reaches alone at full power)
    -export_limit_kw[s] <= site_load_kw[s,t] + sum over i at site s of (c - d)[i,t]
                         <= import_limit_kw[s]

A charger sets one power a step, charging or discharging: the row on ``c / max + d / max``
is that choice's convex hull, which lets a V2G session split a step between charging and
discharging (as a plan with shorter steps could) but no more. Programmes that also hold
``d = 0`` in valley steps are plans a charger follows step by step as they stand.

The programmes minimise, with a weight ``w[i] >= 0`` and an offset ``o[i]`` per session,

    sum over pairs with w[i] > 0 of dt_h * (o[i] - w[i] * valley[t]) * c[i,t]
    + OTHERS_PRICE_CNY_PER_KWH * dt_h * (the other sessions' charging)
    + SHORTFALL_PRICE_CNY_PER_KWH * sum u:

at ``w = 1``, ``o = r`` on a group's sessions that is maximising ``V - r C`` of the group
(Dinkelbach's step at a trial share ``r``); weights on two groups at once weigh both rules.
Every session is left as short as the sites force it and no shorter: a kWh short costs
far more than the most a kWh of charging changes the rest (a few CNY), so delivery comes
first. The other sessions pay a token price, so that they charge what they need and no
more, where it leaves the counted ones the most room. Each programme is solved again from
its last basis when only the costs or bounds change, so the later trials cost little.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import highspy
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from v2ghub.model.problem import Problem
from v2ghub.model.valley_rule import valley_steps
from v2ghub.planning.lp import _quiet_highs

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

INF = highspy.kHighsInf
UNLIMITED_BLOCK_SESSIONS = 100  # sessions of unlimited sites per programme
SHORTFALL_PRICE_CNY_PER_KWH = 100.0
OTHERS_PRICE_CNY_PER_KWH = 1e-4


@dataclass
class _Block:
    """One programme, the basis of its last solve, and where its pairs (session-steps)
    live. HiGHS holds a solved programme in several megabytes, so a block keeps the
    programme's arrays and basis only and solves in a fresh instance each time."""

    lp: highspy.HighsLp
    basis: highspy.HighsBasis | None
    n_cols: int
    rows: IntArray  # the problem rows of the block's sessions
    pair_session: IntArray  # per pair: its session's position in ``rows``
    pair_valley: BoolArray  # per pair: a valley step
    valley_discharge_cols: npt.NDArray[np.int32]  # d of V2G pairs in valley steps


class ReachProgrammes:
    """The day's programmes (see the module docstring), built once for many trials."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.blocks = [_build(problem, rows) for rows in _block_rows(problem)]
        self.valley_discharge = True

    def forbid_valley_discharge(self) -> None:
        """From now on no session discharges in a valley step (``d = 0`` there)."""
        for block in self.blocks:
            if block.valley_discharge_cols.size:
                upper = np.array(block.lp.col_upper_)
                upper[block.valley_discharge_cols] = 0.0
                block.lp.col_upper_ = upper
        self.valley_discharge = False

    def charging_kwh(self, weight: FloatArray, offset: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Per problem row, the valley and total charging (kWh) of the plan minimising

            sum over pairs of dt_h * (offset[i] - weight[i] * valley[t]) * c[i,t]

        (rows of zero weight pay the token price instead; see the module docstring);
        zeros for the rows of blocks where every weight is zero, which are not solved.
        At ``weight = 1``, ``offset = r`` on the members it is Dinkelbach's trial at ``r``.
        """
        dt_h = self.problem.dt_h
        valley_kwh = np.zeros(self.problem.n_vehicles)
        charged_kwh = np.zeros(self.problem.n_vehicles)
        for block in self.blocks:
            pair_weight = weight[block.rows][block.pair_session]
            if not (pair_weight > 0).any():
                continue  # nothing the block plans counts
            k = block.pair_session.size
            counted = pair_weight > 0
            cost = np.zeros(block.n_cols)
            cost[:k] = dt_h * np.where(
                counted,
                offset[block.rows][block.pair_session] - pair_weight * block.pair_valley,
                OTHERS_PRICE_CNY_PER_KWH,
            )
            cost[-block.rows.size :] = SHORTFALL_PRICE_CNY_PER_KWH
            pair_kwh = _solve(block, cost)[:k] * dt_h
            n = block.rows.size
            charged_kwh[block.rows] = np.bincount(block.pair_session, pair_kwh, minlength=n)
            valley_kwh[block.rows] = np.bincount(
                block.pair_session, np.where(block.pair_valley, pair_kwh, 0.0), minlength=n
            )
        return valley_kwh, charged_kwh


def _solve(block: _Block, cost: FloatArray) -> FloatArray:
    """The block's optimum at ``cost``, from its last basis where it has one."""
    block.lp.col_cost_ = cost
    highs = _quiet_highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("solver", "simplex")
    highs.passModel(block.lp)
    if block.basis is not None:
        highs.setBasis(block.basis)
    highs.run()
    status = highs.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        # Every programme has a plan (shortfalls are free to take): this is HiGHS failing.
        raise RuntimeError(
            f"the valley reach programme stopped with status {highs.modelStatusToString(status)}"
        )
    block.basis = highs.getBasis()
    return np.asarray(highs.getSolution().col_value, dtype=np.float64)


def _block_rows(problem: Problem) -> Iterator[IntArray]:
    """Each block's problem rows: a limited site's, or a group of unlimited sites' rows."""
    site = problem.site_index
    limited = (np.isfinite(problem.import_limit_kw) | np.isfinite(problem.export_limit_kw))[site]
    order = np.argsort(site[limited], kind="stable")
    rows = np.flatnonzero(limited)[order]
    cuts = np.flatnonzero(np.diff(site[rows])) + 1
    yield from np.split(rows, cuts) if rows.size else ()
    free = np.flatnonzero(~limited)
    yield from (
        free[start : start + UNLIMITED_BLOCK_SESSIONS]
        for start in range(0, free.size, UNLIMITED_BLOCK_SESSIONS)
    )


def _build(problem: Problem, rows: IntArray) -> _Block:
    """The block's programme (module docstring), at zero costs.

    Columns: ``c`` for every pair first, then ``d`` and ``e`` for the pairs of V2G
    sessions, then ``u`` per session. A session that cannot discharge only ever gains
    energy, so its floor never binds and its energy rows reduce to two on its total:
    ``sum eta_c dt_h c + u >= target - energy`` and ``sum eta_c dt_h c <= energy_max -
    energy``.
    """
    n = rows.size
    dt_h = problem.dt_h
    arrival = problem.arrival_step[rows]
    stay = (problem.departure_step[rows] - arrival).astype(np.int64)
    k = int(stay.sum())
    session = np.repeat(np.arange(n, dtype=np.int64), stay)
    starts = np.concatenate(([0], np.cumsum(stay)[:-1])).astype(np.int64)
    step = np.arange(k, dtype=np.int64) - starts[session] + arrival[session]
    pair_row = rows[session]
    charge_kw = problem.max_charge_kw[pair_row]
    v2g = problem.max_discharge_kw[rows] > 0
    v2g_pairs = np.flatnonzero(v2g[session])
    m = v2g_pairs.size
    c_col = np.arange(k, dtype=np.int64)
    d_col = k + np.arange(m, dtype=np.int64)  # per V2G pair
    e_col = d_col + m
    u_col = k + 2 * m + np.arange(n, dtype=np.int64)
    n_cols = k + 2 * m + n
    v2g_row = pair_row[v2g_pairs]

    lower = np.zeros(n_cols)
    upper = np.full(n_cols, INF)
    upper[c_col] = charge_kw
    upper[d_col] = problem.max_discharge_kw[v2g_row]
    lower[e_col] = problem.energy_min_kwh[v2g_row]
    upper[e_col] = problem.energy_max_kwh[v2g_row]
    energy_kwh = problem.energy_kwh[rows]
    alone_kwh = np.minimum(
        problem.energy_max_kwh[rows],
        energy_kwh + problem.max_charge_kw[rows] * problem.charge_efficiency[rows] * dt_h * stay,
    )
    target_kwh = np.minimum(problem.target_energy_kwh[rows], alone_kwh)
    upper[u_col] = np.maximum(target_kwh - problem.energy_min_kwh[rows], 0.0)

    gain = problem.charge_efficiency[pair_row] * dt_h  # stored kWh per kW charged a step
    entries_row: list[IntArray] = []
    entries_col: list[IntArray] = []
    entries: list[FloatArray] = []
    row_lower: list[FloatArray] = []
    row_upper: list[FloatArray] = []
    n_rows = 0
    # V2G pairs, energy balance: e[t] - e[t-1] - eta_c dt c + dt / eta_d d = energy or 0.
    v2g_session = session[v2g_pairs]
    first = step[v2g_pairs] == arrival[v2g_session]
    balance = np.arange(m, dtype=np.int64)
    entries_row += [balance, balance[~first], balance, balance]
    entries_col += [e_col, e_col[~first] - 1, c_col[v2g_pairs], d_col]
    entries += [
        np.ones(m),
        -np.ones(int((~first).sum())),
        -gain[v2g_pairs],
        dt_h / problem.discharge_efficiency[v2g_row],
    ]
    arrival_kwh = np.where(first, problem.energy_kwh[v2g_row], 0.0)
    row_lower.append(arrival_kwh)
    row_upper.append(arrival_kwh.copy())
    n_rows += m
    # Departure of a V2G session: e[last] + u >= target.
    last_pair = np.full(n, -1, dtype=np.int64)
    last_pair[v2g_session] = np.arange(m, dtype=np.int64)  # the last write is the last step
    v2g_sessions = np.flatnonzero(v2g & (stay > 0))
    departure = n_rows + np.arange(v2g_sessions.size, dtype=np.int64)
    entries_row += [departure, departure]
    entries_col += [e_col[last_pair[v2g_sessions]], u_col[v2g_sessions]]
    entries += [np.ones(v2g_sessions.size), np.ones(v2g_sessions.size)]
    row_lower.append(target_kwh[v2g_sessions])
    row_upper.append(np.full(v2g_sessions.size, INF))
    n_rows += v2g_sessions.size
    # A charge-only session's total: sum gain c + u >= target - energy, and
    # sum gain c <= energy_max - energy.
    plain = np.flatnonzero(~v2g)
    plain_row = np.full(n, -1, dtype=np.int64)
    plain_row[plain] = n_rows + np.arange(plain.size, dtype=np.int64)
    plain_pairs = np.flatnonzero(~v2g[session])
    entries_row += [plain_row[session[plain_pairs]], plain_row[plain]]
    entries_col += [c_col[plain_pairs], u_col[plain]]
    entries += [gain[plain_pairs], np.ones(plain.size)]
    row_lower.append(target_kwh[plain] - energy_kwh[plain])
    row_upper.append(np.full(plain.size, INF))
    n_rows += plain.size
    cap_row = np.full(n, -1, dtype=np.int64)
    cap_row[plain] = n_rows + np.arange(plain.size, dtype=np.int64)
    entries_row.append(cap_row[session[plain_pairs]])
    entries_col.append(c_col[plain_pairs])
    entries.append(gain[plain_pairs])
    row_lower.append(np.full(plain.size, -INF))
    row_upper.append(problem.energy_max_kwh[rows][plain] - energy_kwh[plain])
    n_rows += plain.size
    # The site's limits, one row a step (a limited block holds one site).
    site = int(problem.site_index[rows[0]]) if n else 0
    if n and np.isfinite([problem.import_limit_kw[site], problem.export_limit_kw[site]]).any():
        limit_row = n_rows + step
        entries_row += [limit_row, limit_row[v2g_pairs]]
        entries_col += [c_col, d_col]
        entries += [np.ones(k), -np.ones(m)]
        # The limits bound the site's other load plus the sessions' power.
        load_kw = (
            np.zeros(problem.grid.length)
            if problem.site_load_kw is None
            else problem.site_load_kw[site]
        )
        row_lower.append(-problem.export_limit_kw[site] - load_kw)
        row_upper.append(problem.import_limit_kw[site] - load_kw)
        n_rows += problem.grid.length
    # One power a step: c / max_charge + d / max_discharge <= 1 for V2G pairs.
    hull_row = n_rows + np.arange(m, dtype=np.int64)
    entries_row += [hull_row, hull_row]
    entries_col += [c_col[v2g_pairs], d_col]
    entries += [1.0 / charge_kw[v2g_pairs], 1.0 / problem.max_discharge_kw[v2g_row]]
    row_lower.append(np.full(m, -INF))
    row_upper.append(np.ones(m))
    n_rows += m

    matrix = sp.csc_matrix(
        (np.concatenate(entries), (np.concatenate(entries_row), np.concatenate(entries_col))),
        shape=(n_rows, n_cols),
    )
    matrix.sum_duplicates()
    lp = highspy.HighsLp()
    lp.num_col_ = n_cols
    lp.num_row_ = n_rows
    lp.col_cost_ = np.zeros(n_cols)
    lp.col_lower_ = lower
    lp.col_upper_ = upper
    lp.row_lower_ = np.concatenate(row_lower)
    lp.row_upper_ = np.concatenate(row_upper)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = matrix.indptr
    lp.a_matrix_.index_ = matrix.indices
    lp.a_matrix_.value_ = matrix.data
    valley = valley_steps(problem.period_kind)[step]
    return _Block(
        lp=lp,
        basis=None,
        n_cols=n_cols,
        rows=rows,
        pair_session=session,
        pair_valley=valley,
        valley_discharge_cols=d_col[valley[v2g_pairs]].astype(np.int32),
    )
