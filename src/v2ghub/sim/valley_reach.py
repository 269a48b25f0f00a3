"""How much of a day's charging could have fallen in valley hours: the pilots' valley rule's
reach, computed in hindsight for a whole city.

Knowing every session of the day in advance, the highest valley share the fleet could
reach, every vehicle still leaving with its target wherever it can, is the linear-fractional
programme

    maximise  V(c) / C(c)   over every plan within the limits that meets the targets,

with ``C`` the charging energy and ``V`` its part in valley steps. Dinkelbach's method
solves it by a sequence of plans at prices: at a trial share ``r`` the plan that maximises
``V - r C`` is the cost-optimal plan when a kWh imported costs ``r - 1`` CNY in a valley
step and ``r`` in any other, discharge is worth nothing and wear is free (targets always
first); its own share is the next trial, and the trials rise to the optimum (finitely, a
plan being a vertex). As every trial in (0, 1) prices the steps in the same order (valley
below zero, the rest above), the first plan is usually already optimal.

Without site limits the programme falls apart into one small programme per vehicle, which
the fast planner solves exactly: per vehicle, the most charging in valley steps and the
least outside them, both at once. Site limits then cap each limited site's valley charging
at its import limit in every valley step (plus what its own V2G vehicles could discharge
then: energy moved between a site's vehicles counts as charged), and what the cap keeps
out of the valley is charged outside it. The reach is an upper bound: exact without site
limits, and a site limit may bind harder than the cap says. A V2G vehicle can raise its
share by discharging before the valley and refilling in it, and the reach counts that, as
the rule counts the energy. The private chargers' reach is the same programme with the
share of their sessions alone in the objective.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from v2ghub.model.case import CityCase
from v2ghub.model.fleet import ChargerKind
from v2ghub.model.problem import Problem
from v2ghub.model.valley_rule import valley_steps
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.stepping import make_feasible
from v2ghub.planning.valley_rule_prices import ClassPrices

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DINKELBACH_ROUNDS = 12
SHARE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class ValleyReach:
    """The highest valley shares a city's day allows: overall and at private chargers."""

    share: float
    private_share: float


def valley_reach(case: CityCase) -> ValleyReach:
    """The hindsight reach of the valley rule in ``case`` (see the module docstring)."""
    problem = day_problem(case)
    private = case.fleet.charger_kind[_planned(case)] == ChargerKind.HOME
    everyone = np.ones(problem.n_vehicles, dtype=np.bool_)
    return ValleyReach(
        share=highest_share(problem, everyone),
        private_share=highest_share(problem, private),
    )


def _planned(case: CityCase) -> npt.NDArray[np.int64]:
    """The sessions plugged for at least one step of the case's grid."""
    first, end = case.grid.plugged_steps(case.fleet.arrival_s, case.fleet.departure_s)
    end = np.minimum(end, case.grid.length)
    return np.flatnonzero(end > first).astype(np.int64)


def day_problem(case: CityCase) -> Problem:
    """The whole day as one problem: every session plugged for a step, known in advance."""
    fleet, grid, signals = case.fleet, case.grid, case.signals
    first, end = grid.plugged_steps(fleet.arrival_s, fleet.departure_s)
    rows = _planned(case)
    zeros = np.zeros(grid.length)
    return Problem(
        grid=grid,
        control_steps=grid.length,
        vehicle_index=rows,
        site_index=fleet.site_index[rows],
        energy_kwh=fleet.energy_arrival_kwh[rows],
        energy_min_kwh=fleet.energy_min_kwh[rows],
        energy_max_kwh=fleet.energy_max_kwh[rows],
        target_energy_kwh=fleet.target_energy_kwh[rows],
        max_charge_kw=fleet.max_charge_kw[rows],
        max_discharge_kw=fleet.discharge_limit_kw[rows],
        charge_efficiency=fleet.charge_efficiency[rows],
        discharge_efficiency=fleet.discharge_efficiency[rows],
        departure_step=np.minimum(end[rows], grid.length).astype(np.int64),
        arrival_step=first[rows].astype(np.int64),
        import_limit_kw=case.sites.import_limit_kw,
        export_limit_kw=case.sites.export_limit_kw,
        import_price_cny_per_kwh=zeros,
        export_price_cny_per_kwh=zeros,
        period_kind=case.tariff.price_levels(grid).kind,
        base_load_kw=np.asarray(signals.base_load_kw[: grid.length]),
        renewable_surplus_kw=np.asarray(signals.renewable_surplus_kw[: grid.length]),
    )


def highest_share(problem: Problem, members: BoolArray) -> float:
    """The highest valley share of the ``members``' charging over the problem (1 when
    they need not charge at all): the module's bound, site limits included as below.

    The problem's own prices are ignored: see the module docstring.
    """
    if not members.any():
        return 1.0
    valley_kwh, other_kwh = _vehicle_bounds(problem, members)
    valley_kwh = np.where(members, valley_kwh, 0.0)
    other_kwh = np.where(members, other_kwh, 0.0)
    # A limited site imports at most its limit in each valley step, plus what its own V2G
    # vehicles could discharge then (energy moved between its vehicles counts as charged),
    # and no more than its plugged members' chargers take. What the cap keeps out of the
    # valley, the members still need, so it is charged outside.
    n_sites = problem.import_limit_kw.shape[0]
    site = problem.site_index
    dt_h = problem.dt_h
    cap_kwh = np.zeros(n_sites)
    for step in np.flatnonzero(valley_steps(problem.period_kind)):  # steps, not vehicles
        plugged = (problem.arrival_step <= step) & (problem.departure_step > step)
        charger_kw = np.bincount(
            site, np.where(plugged & members, problem.max_charge_kw, 0.0), minlength=n_sites
        )
        discharger_kw = np.bincount(
            site, np.where(plugged, problem.max_discharge_kw, 0.0), minlength=n_sites
        )
        cap_kwh += np.minimum(charger_kw, problem.import_limit_kw + discharger_kw) * dt_h
    site_valley = np.minimum(np.bincount(site, valley_kwh, minlength=n_sites), cap_kwh)
    # The least charging each member needs: its target's energy at the charger, or what
    # it can get at all if that is less.
    needed = np.maximum(problem.target_energy_kwh - problem.energy_kwh, 0.0)
    needed = np.minimum(needed / problem.charge_efficiency, valley_kwh + other_kwh)
    need_kwh = np.bincount(site, np.where(members, needed, 0.0), minlength=n_sites)
    site_other = np.maximum(np.bincount(site, other_kwh, minlength=n_sites), need_kwh - site_valley)
    charged = float(site_valley.sum() + site_other.sum())
    return float(site_valley.sum()) / charged if charged > 0 else 1.0


def _vehicle_bounds(problem: Problem, members: BoolArray) -> tuple[FloatArray, FloatArray]:
    """Per row, the most charging in valley steps and the least outside them (kWh) that
    every plan meeting the targets allows, site limits left out (see the module)."""
    planner = FastPlanner()
    valley = valley_steps(problem.period_kind)
    unlimited = np.full(problem.import_limit_kw.shape, np.inf)
    free = replace(
        problem,
        import_price_cny_per_kwh=np.zeros(problem.grid.length),
        export_price_cny_per_kwh=np.zeros(problem.grid.length),
        degradation_cny_per_kwh=0.0,
        import_limit_kw=unlimited,
        export_limit_kw=unlimited,
    )
    dt_h = problem.dt_h
    share = 0.5
    best = -1.0
    bounds = (np.zeros(problem.n_vehicles), np.zeros(problem.n_vehicles))
    for _ in range(DINKELBACH_ROUNDS):
        # Members pay r - valley[t] a kWh; the others (apart without site limits) a small
        # price, so that they charge their needs only.
        prices = ClassPrices(
            vehicle_class=members.astype(np.int64),
            import_offsets_cny_per_kwh=np.vstack(
                (np.full(problem.grid.length, 1e-3), share - valley)
            ),
        )
        charged_kw = np.maximum(make_feasible(free, planner.solve_at_prices(free, prices)), 0.0)
        valley_kwh = charged_kw[:, valley].sum(axis=1) * dt_h
        other_kwh = charged_kw[:, ~valley].sum(axis=1) * dt_h
        charged = float(valley_kwh[members].sum() + other_kwh[members].sum())
        if charged <= 0:
            return valley_kwh, other_kwh
        reached = float(valley_kwh[members].sum()) / charged
        if reached > best:
            best, bounds = reached, (valley_kwh, other_kwh)
        if abs(reached - share) <= SHARE_TOLERANCE:
            break
        share = reached
    return bounds
