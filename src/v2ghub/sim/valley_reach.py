"""How much of a day's charging could have fallen in valley hours: the pilots' valley rule's
reach, computed in hindsight for a whole city.

Knowing every session of the day in advance, the highest valley share the fleet could
reach, every vehicle still leaving with its target wherever the sites let it, is the
linear-fractional programme

    maximise  V(c) / C(c)   over every plan within the limits that meets the targets,

with ``C`` the charging energy and ``V`` its part in valley steps. Dinkelbach's method
solves it by a sequence of plans: at a trial share ``r`` the plan that maximises
``V - r C``; its own share is the next trial, and the trials rise to the optimum
(finitely, a plan being a vertex). As every trial in (0, 1) prices the steps in the same
order (valley below zero, the rest above), the second plan is usually the first again.

Each plan is exact, site limits included: the linear programmes of
:mod:`v2ghub.sim.valley_programmes`, one per limited site (and per group of sessions of
unlimited sites), which the share alone couples. In them a V2G charger may split a step
between charging and discharging; every plan a charger can follow is one of them, so no
planner reaches more than ``share``: where it is below the rule, the rule was out of
reach. The split only matters for V2G batteries cycled within the valley hours (the rule
counts every kWh charged, so charging, discharging and charging again in the valley
raises the share).

Where both shares reach the rule, :func:`stepwise_plan_meets_rule` looks for one plan that
meets both rules at once among plans with no discharge in valley steps, which a charger
follows step by step as they stand: where it finds one, the day allowed the rule.

The private chargers' reach is the same programme with the share of their sessions alone
in the objective. On the default day (10,000 sessions a city) the two shares cost 7-16 s
of CPU time a city (Kunming 6.8 s, Shenzhen 14.8 s, Shanghai 16.3 s, on a busy machine;
the quick estimate below 0.2-0.5 s), most of it in the home transformers' programmes, and
the search for a plan meeting both rules about 3 s more where it runs; above
``EXACT_MAX_SESSIONS`` sessions a city gets :func:`bounded_share` instead, a quick
estimate from above: per-vehicle plans at whole steps without site limits, each limited
site's valley import then capped at its limit plus what its own V2G vehicles could
discharge. It ignores what a V2G vehicle must charge before it can give, so it can be far
above the reach (Kunming's default day: 82% at private chargers against 57%), and it is
not a bound on plans that split steps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from v2ghub.model.case import CityCase
from v2ghub.model.fleet import ChargerKind
from v2ghub.model.problem import Problem
from v2ghub.model.valley_rule import (
    VALLEY_SHARE_RULE,
    VALLEY_SHARE_RULE_PRIVATE,
    valley_steps,
)
from v2ghub.network.feeder_limits import SiteCaps
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.stepping import make_feasible
from v2ghub.planning.valley_rule_prices import ClassPrices
from v2ghub.sim.valley_programmes import ReachProgrammes

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DINKELBACH_ROUNDS = 12
SHARE_TOLERANCE = 1e-7
CHARGED_TOLERANCE_KWH = 1e-9
CERTIFICATE_ROUNDS = 8
RULE_TOLERANCE = 1e-9  # of the charging energy: rounding of the plans
EXACT_MAX_SESSIONS = 50_000  # above: the quick bound (see the module docstring)


@dataclass(frozen=True)
class ValleyReach:
    """The highest valley shares a city's day allows: overall and at private chargers.

    ``exact``: from the programmes with the site limits, which bound every plan a charger
    can follow; otherwise from :func:`bounded_share`, a looser upper bound.
    ``stepwise_plan_meets_rule``: whether a plan that chargers follow step by step meets
    both rules at once; looked for only where ``exact`` and both shares reach the rule
    (``None`` otherwise).
    """

    share: float
    private_share: float
    exact: bool = False
    stepwise_plan_meets_rule: bool | None = None


def valley_reach(
    case: CityCase,
    *,
    exact_max_sessions: int = EXACT_MAX_SESSIONS,
    settle: bool = True,
    caps: SiteCaps | None = None,
) -> ValleyReach:
    """The hindsight reach of the valley rule in ``case`` (see the module docstring).

    ``settle``: also look for a plan at whole steps that meets both rules, where both
    shares reach the rule (else leave that to :func:`settled`, for a city where some
    planner missed the rule: the search costs as much as the shares again). ``caps``: the
    feeders' caps on the sites, step by step, which every plan then keeps too.
    """
    problem = day_problem(case, caps)
    private = case.fleet.charger_kind[_planned(case)] == ChargerKind.HOME
    everyone = np.ones(problem.n_vehicles, dtype=np.bool_)
    if case.fleet.n_sessions > exact_max_sessions:
        return ValleyReach(
            share=bounded_share(problem, everyone),
            private_share=bounded_share(problem, private),
        )
    programmes = ReachProgrammes(problem)
    reach = ValleyReach(
        share=_highest(programmes, everyone),
        private_share=_highest(programmes, private),
        exact=True,
    )
    return _settle(programmes, private, reach) if settle else reach


def settled(case: CityCase, reach: ValleyReach, caps: SiteCaps | None = None) -> ValleyReach:
    """``reach`` with the search for a plan at whole steps done, where it is wanted."""
    if not _unsettled(reach):
        return reach
    private = case.fleet.charger_kind[_planned(case)] == ChargerKind.HOME
    return _settle(ReachProgrammes(day_problem(case, caps)), private, reach)


def _unsettled(reach: ValleyReach) -> bool:
    return (
        reach.exact
        and reach.stepwise_plan_meets_rule is None
        and reach.share >= VALLEY_SHARE_RULE
        and reach.private_share >= VALLEY_SHARE_RULE_PRIVATE
    )


def _settle(programmes: ReachProgrammes, private: BoolArray, reach: ValleyReach) -> ValleyReach:
    if not _unsettled(reach):
        return reach
    programmes.forbid_valley_discharge()
    return replace(reach, stepwise_plan_meets_rule=stepwise_plan_meets_rule(programmes, private))


def highest_share(problem: Problem, members: BoolArray, *, valley_discharge: bool = True) -> float:
    """The highest valley share of the ``members``' charging over the problem (1 when
    they need not charge at all), site limits included; without ``valley_discharge``,
    of plans that discharge no vehicle in a valley step. The problem's prices are
    ignored: see the module docstring."""
    programmes = ReachProgrammes(problem)
    if not valley_discharge:
        programmes.forbid_valley_discharge()
    return _highest(programmes, members)


def _highest(
    programmes: ReachProgrammes, members: BoolArray, *, start: float = VALLEY_SHARE_RULE
) -> float:
    """Dinkelbach's method on the programmes (module docstring), from the trial ``start``."""
    if not members.any():
        return 1.0
    weight = members.astype(np.float64)
    share = start
    best = 0.0
    for _ in range(DINKELBACH_ROUNDS):
        valley_kwh, charged_kwh = programmes.charging_kwh(weight, share * weight)
        charged = float(charged_kwh[members].sum())
        if charged <= CHARGED_TOLERANCE_KWH:
            # The best plan charges nothing: no valley kWh is worth charging and the
            # members need none.
            return 1.0
        reached = float(valley_kwh[members].sum()) / charged
        best = max(best, reached)
        if abs(reached - share) <= SHARE_TOLERANCE:
            break
        share = reached
    return best


def stepwise_plan_meets_rule(programmes: ReachProgrammes, private: BoolArray) -> bool:
    """Whether one plan of the programmes meets both rules at once.

    With ``g_all = V - 0.6 C`` and ``g_private = V_private - 0.8 C_private``, a plan
    meets both when both are >= 0. The plan maximising ``l g_all + (1 - l) g_private``
    is made for weights ``l`` found by bisection (more weight on the rule the last plan
    missed); if a plan misses both, the weighted maximum is below zero and no plan meets
    both. After ``CERTIFICATE_ROUNDS`` plans without either answer it says no: none found.
    """
    low, high = 0.0, 1.0
    for _ in range(CERTIFICATE_ROUNDS):
        overall = 0.5 * (low + high)
        weight = np.where(private, 1.0, overall)
        offset = overall * VALLEY_SHARE_RULE + np.where(
            private, (1.0 - overall) * VALLEY_SHARE_RULE_PRIVATE, 0.0
        )
        valley_kwh, charged_kwh = programmes.charging_kwh(weight, offset)
        tolerance = RULE_TOLERANCE * float(charged_kwh.sum())
        overall_met = valley_kwh.sum() >= VALLEY_SHARE_RULE * charged_kwh.sum() - tolerance
        private_met = (
            valley_kwh[private].sum()
            >= VALLEY_SHARE_RULE_PRIVATE * charged_kwh[private].sum() - tolerance
        )
        if overall_met and private_met:
            return True
        if not (overall_met or private_met):
            return False
        if overall_met:
            high = overall
        else:
            low = overall
    return False


def _planned(case: CityCase) -> npt.NDArray[np.int64]:
    """The sessions plugged for at least one step of the case's grid."""
    first, end = case.grid.plugged_steps(case.fleet.arrival_s, case.fleet.departure_s)
    end = np.minimum(end, case.grid.length)
    return np.flatnonzero(end > first).astype(np.int64)


def day_problem(case: CityCase, caps: SiteCaps | None = None) -> Problem:
    """The whole day as one problem: every session plugged for a step, known in advance;
    with ``caps``, the sites' limits are the feeders' (their room as load at the sites,
    as the planners see them)."""
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
        import_limit_kw=case.sites.import_limit_kw if caps is None else caps.import_limit_kw,
        export_limit_kw=case.sites.export_limit_kw if caps is None else caps.export_limit_kw,
        site_load_kw=None if caps is None else caps.window(0, grid.length),
        import_price_cny_per_kwh=zeros,
        export_price_cny_per_kwh=zeros,
        period_kind=case.tariff.price_levels(grid).kind,
        base_load_kw=np.asarray(signals.base_load_kw[: grid.length]),
        renewable_surplus_kw=np.asarray(signals.renewable_surplus_kw[: grid.length]),
    )


def bounded_share(problem: Problem, members: BoolArray) -> float:
    """An upper bound on :func:`highest_share`, quick at any size (module docstring)."""
    if not members.any():
        return 1.0
    valley_kwh, other_kwh = _vehicle_bounds(problem, members)
    valley_kwh = np.where(members, valley_kwh, 0.0)
    other_kwh = np.where(members, other_kwh, 0.0)
    # A limited site imports at most its limit in each valley step (less the load there
    # that is not the fleet's), plus what its own V2G vehicles could discharge then
    # (energy moved between its vehicles counts as charged), and no more than its plugged
    # members' chargers take. What the cap keeps out of the valley, the members still
    # need, so it is charged outside.
    room_kw, _ = problem.site_room_kw()
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
        cap_kwh += np.minimum(charger_kw, np.maximum(room_kw[:, step], 0.0) + discharger_kw) * dt_h
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
