"""The plan a receding-horizon planner holds between instants, and what changed since.

At instant ``t0`` the planner plans the whole horizon and applies only its first control
interval. At the next instant ``t0 + k`` steps, a vehicle whose situation is what that plan
expected (same departure, and stored energy equal to the plan's after ``k`` steps,

    e[k] = e[0] + dt_h * sum_{t < k} (charge_efficiency * max(p[t], 0)
                                      + min(p[t], 0) / discharge_efficiency),

within ``ENERGY_TOLERANCE_KWH``) still has a plan for the rest of its stay: the old plan
from step ``k`` on. What changed is then

- the vehicles that arrived, or whose energy or departure is not what the plan expected
  (a demand-response cut, regulation, a limit cut, an owner's new need): *changed*, and
  free to move;
- at the sites the caller names (``free_sites``: e.g. where a changed vehicle could not
  get its energy in the room the others left), every vehicle: free too.

:meth:`HeldPlan.partial` returns the problem of the free rows alone, with the held rows'
planned load added to the base load (so the area's peak the inner planner prices is
``base + held + free``, as in the whole problem), to each site's load
(``Problem.site_load_kw``: the free rows get the room the held ones leave, step by step)
and their planned charging to the valley rule's metered charging; the held rows keep
their plan. This is block coordinate
descent on the free rows, one block per instant: it is exact for the free rows given the
held ones, and the held ones were optimal for the forecast of an earlier instant, so the
receding-horizon planner re-plans everything every few instants to let the held rows
answer the newer forecasts and the arrivals since.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from v2ghub.model.problem import Problem
from v2ghub.model.valley_rule import valley_steps

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# A held vehicle whose energy differs from its plan's by more than this is re-planned.
ENERGY_TOLERANCE_KWH = 1e-6
# A free vehicle this much shorter than it must be frees its whole site (short_sites).
SHORT_TOLERANCE_KWH = 1e-3


@dataclass(frozen=True)
class PartialProblem:
    """The free rows' problem, which rows of the whole problem they are, and the held
    rows' plan over the whole problem's horizon (zero on the free rows)."""

    problem: Problem
    free_rows: IntArray
    held_power_kw: FloatArray


@dataclass(frozen=True)
class HeldPlan:
    """A whole-horizon plan as planned at one instant, for the instants that follow."""

    start_s: int
    step_s: int
    vehicle_index: IntArray  # sorted
    power_kw: FloatArray  # rows (in vehicle_index order) x steps
    energy_kwh: FloatArray
    departure_step: IntArray
    charge_efficiency: FloatArray
    discharge_efficiency: FloatArray

    @classmethod
    def of(cls, problem: Problem, power_kw: FloatArray) -> HeldPlan:
        """Hold ``power_kw`` (the plugged rows of ``problem``, any number of steps)."""
        n = problem.n_plugged
        order = np.argsort(problem.vehicle_index[:n], kind="stable")
        return cls(
            start_s=problem.grid.start_s,
            step_s=problem.grid.step_s,
            vehicle_index=problem.vehicle_index[order],
            power_kw=np.ascontiguousarray(power_kw[order]),
            energy_kwh=problem.energy_kwh[order],
            departure_step=problem.departure_step[order],
            charge_efficiency=problem.charge_efficiency[order],
            discharge_efficiency=problem.discharge_efficiency[order],
        )

    def offset(self, problem: Problem) -> int | None:
        """Whole steps from this plan's start to ``problem``'s (None if not on its grid or
        not later)."""
        elapsed = problem.grid.start_s - self.start_s
        if problem.grid.step_s != self.step_s or elapsed <= 0 or elapsed % self.step_s:
            return None
        return elapsed // self.step_s

    def partial(
        self,
        problem: Problem,
        *,
        most_free_share: float,
        free_sites: IntArray | None = None,
    ) -> PartialProblem | None:
        """The problem of what changed (module docstring), or None when the whole problem
        is better planned anew: not on this plan's grid, or more than ``most_free_share``
        of the rows free. Every vehicle of ``free_sites`` is free, and so is every forecast
        row (a plan holds vehicles only: the groups expected later are forecast afresh at
        every instant)."""
        k = self.offset(problem)
        if k is None or k >= self.power_kw.shape[1]:
            return None
        n, horizon = problem.n_vehicles, problem.grid.length
        held, row = self._known(problem.vehicle_index)
        changed = ~held
        rows = row[held]
        expected_kwh = self.energy_kwh[rows] + problem.dt_h * self._stored_kwh_per_h(rows, k)
        changed[held] = (np.abs(expected_kwh - problem.energy_kwh[held]) > ENERGY_TOLERANCE_KWH) | (
            self.departure_step[rows] - k != problem.departure_step[held]
        )
        held_power_kw = np.zeros((n, horizon))
        kept = np.flatnonzero(~changed)
        steps = min(horizon, self.power_kw.shape[1] - k)
        held_power_kw[kept, :steps] = self.power_kw[row[kept], k : k + steps]
        free = changed
        if free_sites is not None and free_sites.size:
            free = changed | np.isin(problem.site_index, free_sites)
        if free.sum() > most_free_share * n:
            return None
        free_rows = np.flatnonzero(free)
        held_power_kw[free_rows] = 0.0
        return PartialProblem(
            problem=_with_held_load(problem, free_rows, held_power_kw),
            free_rows=free_rows,
            held_power_kw=held_power_kw,
        )

    def _known(self, vehicle_index: IntArray) -> tuple[BoolArray, IntArray]:
        """Which of ``vehicle_index`` this plan holds, and their rows in it."""
        row = np.searchsorted(self.vehicle_index, vehicle_index)
        row = np.minimum(row, max(self.vehicle_index.size - 1, 0))
        known = (
            self.vehicle_index[row] == vehicle_index
            if self.vehicle_index.size
            else np.zeros(vehicle_index.size, dtype=np.bool_)
        )
        return known, row

    def _stored_kwh_per_h(self, rows: IntArray, k: int) -> FloatArray:
        """Per row, the stored energy the plan's first ``k`` steps add, per hour of step."""
        power_kw = self.power_kw[rows, :k]
        charge = np.maximum(power_kw, 0.0).sum(axis=1)
        discharge = np.minimum(power_kw, 0.0).sum(axis=1)
        return np.asarray(
            self.charge_efficiency[rows] * charge + discharge / self.discharge_efficiency[rows],
            dtype=np.float64,
        )


def _with_held_load(problem: Problem, free_rows: IntArray, held_power_kw: FloatArray) -> Problem:
    """The free rows' problem, seeing the held rows' load as part of the area's and their
    planned charging as metered for the valley rule."""
    held_load_kw = held_power_kw.sum(axis=0)
    free = problem.rows(free_rows)
    rule = problem.valley_rule
    if rule is not None:
        charged_kwh = np.maximum(held_power_kw, 0.0) * problem.dt_h
        all_kwh = charged_kwh.sum(axis=1)
        valley_kwh = charged_kwh[:, valley_steps(problem.period_kind)].sum(axis=1)
        private = rule.private
        rule = replace(
            rule,
            private=private[free_rows],
            valley_kwh=rule.valley_kwh + float(valley_kwh.sum()),
            charged_kwh=rule.charged_kwh + float(all_kwh.sum()),
            private_valley_kwh=rule.private_valley_kwh + float(valley_kwh[private].sum()),
            private_charged_kwh=rule.private_charged_kwh + float(all_kwh[private].sum()),
        )
    n, n_sites = problem.n_vehicles, problem.import_limit_kw.shape[0]
    at_site = sp.csr_array((np.ones(n), (problem.site_index, np.arange(n))), shape=(n_sites, n))
    site_load_kw = problem.site_load + at_site @ held_power_kw
    return replace(
        free,
        base_load_kw=free.base_load_kw + held_load_kw,
        renewable_surplus_kw=np.maximum(free.renewable_surplus_kw - held_load_kw, 0.0),
        valley_rule=rule,
        site_load_kw=site_load_kw,
    )


def short_sites(
    problem: Problem, power_kw: FloatArray, *, leaving_by: int | None = None
) -> IntArray:
    """The limited sites where a vehicle of ``problem`` planned at ``power_kw`` leaves
    short of its target by more than its charger could ever have avoided: where the room
    the held vehicles left (``Problem.site_load_kw``) may have cost it energy. With
    ``leaving_by``, only the vehicles that leave by that step count (the others will be
    planned again with their whole site before they leave)."""
    dt_h = problem.dt_h
    stored_kwh = dt_h * (
        problem.charge_efficiency * np.maximum(power_kw, 0.0).sum(axis=1)
        + np.minimum(power_kw, 0.0).sum(axis=1) / problem.discharge_efficiency
    )
    short_kwh = problem.target_energy_kwh - problem.energy_kwh - stored_kwh
    plugged_h = (problem.departure_step - problem.arrival_step) * dt_h
    reachable_kwh = np.minimum(
        problem.energy_max_kwh,
        problem.energy_kwh + problem.charge_efficiency * problem.max_charge_kw * plugged_h,
    )
    unavoidable_kwh = np.maximum(problem.target_energy_kwh - reachable_kwh, 0.0)
    limited = np.isfinite(problem.import_limit_kw) | np.isfinite(problem.export_limit_kw)
    cost_energy = (short_kwh > unavoidable_kwh + SHORT_TOLERANCE_KWH) & limited[problem.site_index]
    cost_energy[problem.n_plugged :] = False  # a forecast row is no vehicle
    if leaving_by is not None:
        cost_energy &= problem.departure_step <= leaving_by
    return np.unique(problem.site_index[cost_energy])
