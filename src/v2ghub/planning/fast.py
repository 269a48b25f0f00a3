"""The planner for millions: an exact battery optimum per vehicle, coupled site by site.

Without site limits the planning LP (:mod:`v2ghub.planning.lp`) falls apart into one small
LP per vehicle: with ``x[t]`` the change of stored energy in step ``t`` (kWh),

    minimise   sum_t f_t(x[t])  +  M * max(target - e[departure], 0)
    subject to e[t+1] = e[t] + x[t],  energy_min <= e[t] <= energy_max,
               -max_discharge_kw * dt_h / discharge_efficiency <= x[t]
                                         <= max_charge_kw * charge_efficiency * dt_h,

where ``f_t(x) = import_price[t] / charge_efficiency * x`` for ``x > 0`` and
``(export_price[t] - degradation) * discharge_efficiency * x`` for ``x < 0`` is the LP's
cost of the step written in stored energy, and ``M`` (above every price) puts delivering
the target first, as the LP's shortfall pass does. Each such problem is solved exactly by
a backward recursion on the convex, piecewise-linear cost-to-go and a forward pass (see
:mod:`v2ghub.planning._fast_kernels`): O(H L) per vehicle for ``L`` distinct price levels,
compiled with numba and parallel over sites. So without site limits the plan is
LP-optimal (cost and every vehicle's shortfall), up to rounding.

Site limits ``-export_limit_kw <= sum_i p[i, t] <= import_limit_kw`` couple the vehicles of
a site. Within a limited site the vehicles are planned one after another (earliest
slack first: the vehicles whose need fills most of their charger's capacity over the stay;
then earliest departure), each exactly within the room the earlier ones leave, and then
re-planned ``passes - 1`` times against all the others (block coordinate descent: the
site's cost never rises and every pass stays within the limits). Equally cheap steps are
shared evenly, which leaves room for the others.

Planning one vehicle after another can hand a later vehicle's only steps to an earlier
one. So when the first pass leaves any vehicle of a limited site short, two charge-only
fills that ignore prices are tried in its place (earliest departure first, each as late
as it can; and step by step, least slack first), and the one that leaves least short is
kept. The later passes never make a vehicle shorter, so that delivery stands while they
bring the cost back down. On random charge-only sites the shortfall then exceeds the LP's
by at most 0.18 kWh (0.41 kWh without the fills; 800 cases); in the twin's Shenzhen day
the fills turn 41 kWh of avoidable shortfall into none. Delivery the LP finds by moving
energy from one parked vehicle to another at a site with almost no import room is
beyond these fills.

With a regulation headroom price or commitment (``Problem.regulation_price_cny_per_kw_h``,
``regulation_commitment_kw``) the planner prices each direction of headroom and balances
them by a few iterations (:mod:`v2ghub.planning.reserve`), as the LP's headroom term does
exactly.

With a peak price ``V`` (CNY per kW of the horizon's highest base load plus fleet load, as
the LP's ``peak_price_cny_per_kw``) the planner generates plans by prices
(:mod:`v2ghub.planning.peak`): each step gets a surcharge on import and export (first
``V`` spread over the steps near the peak, then the duals of the peak rows of a small LP,
the master, that mixes the plans found so far block by block within the site limits), the
fleet is re-planned, and the master mixes the new plan in; the iterations stop when the
master meets its Lagrangian bound, or after ``peak_iterations`` (8), each one more
planning pass. The last mix is kept when it costs less than the plan without surcharge,
so the plan never costs more than ignoring the peak. On day-ahead problems of 1,000
sessions at three tight sites at 0.5 CNY/kW the plan is 0.71% above the LP's objective on
average (1.27% with the former six iterations; ``benchmarks/bench_peak_gap.py``); on the
seeded Shenzhen day at 1 CNY/kW, 1.29% (1.75% before, 6.2% ignoring the peak). Without a
peak price none of this runs.

The result is finally passed through :func:`~v2ghub.planning.stepping.make_feasible`, which
only cuts what would cross a limit; by construction it has (almost) nothing to cut.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np
import numpy.typing as npt

from v2ghub.model.problem import PlannerCapabilities, Problem, Schedule
from v2ghub.model.valley_rule import with_rules_name
from v2ghub.planning._fast_kernels import plan_by_site
from v2ghub.planning.peak import PEAK_ITERATIONS, plan_with_peak_price
from v2ghub.planning.reserve import plan_with_regulation
from v2ghub.planning.stepping import (
    contiguous_floats,
    contiguous_ints,
    guard_departures,
    make_feasible,
)
from v2ghub.planning.valley_rule_prices import ClassPrices, plan_with_valley_rule

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def price_levels(
    problem: Problem, import_offsets_cny_per_kwh: FloatArray | None = None
) -> tuple[IntArray, FloatArray, FloatArray]:
    """The distinct price levels of the horizon and each step's level.

    ``import_offsets_cny_per_kwh`` (price classes x steps, optional) adds to the import
    price of each class of vehicles; without it there is one class.

    Returns
    -------
    (step_level, import_level_cny_per_kwh, export_level_cny_per_kwh): ``step_level[t]`` is
    the index of step ``t``'s level; the two level arrays are classes x levels.
    """
    imports = problem.import_price_cny_per_kwh[None, :]
    if import_offsets_cny_per_kwh is not None:
        imports = imports + import_offsets_cny_per_kwh
    n_classes = imports.shape[0]
    columns = np.vstack((imports, problem.export_price_cny_per_kwh[None, :])).T
    levels, step_level = np.unique(columns, axis=0, return_inverse=True)
    exports = np.broadcast_to(levels[:, n_classes], (n_classes, levels.shape[0]))
    return (
        np.asarray(step_level, dtype=np.int64).reshape(-1),
        np.ascontiguousarray(levels[:, :n_classes].T, dtype=np.float64),
        np.ascontiguousarray(exports, dtype=np.float64),
    )


def site_groups(problem: Problem) -> tuple[IntArray, IntArray]:
    """Vehicles grouped by site, the least slack first within a site.

    Slack is read off ``need / (max_charge_kw * charge_efficiency * dt_h * plugged steps)``
    (highest first), then the earliest departure: the vehicles that can least move their
    charging plan first, so the others fit around them.

    Returns
    -------
    (vehicle_order, site_start): the vehicles of site ``s`` are
    ``vehicle_order[site_start[s]:site_start[s + 1]]``.
    """
    n_sites = problem.import_limit_kw.shape[0]
    steps = problem.departure_step - problem.arrival_step
    need_kwh = np.maximum(problem.target_energy_kwh - problem.energy_kwh, 0.0)
    capacity_kwh = problem.max_charge_kw * problem.charge_efficiency * problem.dt_h * steps
    with np.errstate(divide="ignore", invalid="ignore"):
        tightness = np.where(capacity_kwh > 0, need_kwh / capacity_kwh, 0.0)
    vehicle_order = np.lexsort((problem.departure_step, -tightness, problem.site_index)).astype(
        np.int64
    )
    counts = np.bincount(problem.site_index, minlength=n_sites)
    site_start = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    return vehicle_order, site_start


class FastPlanner:
    """Near-LP-optimal V2G schedules for millions of vehicles (see the module docstring).

    Parameters
    ----------
    passes:
        Planning passes over the vehicles of a limited site: the first plans each vehicle
        within the room the earlier ones leave, each further one re-plans every vehicle
        against all the others. At least 1.
    guard:
        When only the first control steps of a plan are applied, put each vehicle's urgent
        energy first in them (:func:`guard_departures`), as if every vehicle plugged in
        at a shared site wanted to charge at once from now on. Off by default: the site
        repair of the first pass (see the module docstring) already keeps the twin's
        promises, and the guard made the Shenzhen day 10% dearer
        (``benchmarks/bench_twin_planners.py``).
    peak_price_cny_per_kw:
        Price of the peak of base load plus fleet load over the horizon, CNY/kW, as the
        LP's; 0 (the default) leaves it out. With a price the plan comes from a few price
        iterations (:mod:`v2ghub.planning.peak`), each one more planning pass.
    keep_valley_rule:
        Keep the pilots' valley rule the problem carries (``Problem.valley_rule``) by
        pricing it (:mod:`v2ghub.planning.valley_rule_prices`); the planner is then named
        ``fast+rules``.
    peak_iterations:
        Price iterations with a peak price (each one more planning pass).
    """

    name = "fast"

    def __init__(
        self,
        *,
        passes: int = 3,
        guard: bool = False,
        peak_price_cny_per_kw: float = 0.0,
        keep_valley_rule: bool = False,
        peak_iterations: int = PEAK_ITERATIONS,
    ) -> None:
        if passes < 1:
            raise ValueError(f"passes must be >= 1, got {passes}")
        if not (math.isfinite(peak_price_cny_per_kw) and peak_price_cny_per_kw >= 0):
            raise ValueError(
                f"peak_price_cny_per_kw must be a finite number >= 0, got {peak_price_cny_per_kw}"
            )
        if peak_iterations < 0:
            raise ValueError(f"peak_iterations must be >= 0, got {peak_iterations}")
        self.passes = passes
        self.peak_iterations = peak_iterations
        self.guard = guard
        self.peak_price_cny_per_kw = peak_price_cny_per_kw
        self.keep_valley_rule = keep_valley_rule
        # The valley rule's multipliers of the last plan: the next plan's starting bracket.
        self._rule_multipliers = (0.0, 0.0)
        self.name = with_rules_name("fast", keep_valley_rule=keep_valley_rule)
        self.capabilities = PlannerCapabilities(
            peak_price=True, regulation_headroom=True, valley_rule=keep_valley_rule
        )

    def plan(self, problem: Problem) -> Schedule:
        """Plan every vehicle over the whole horizon, within every limit.

        When only the first control steps will be applied (the twin, receding horizon),
        those steps put each vehicle's urgent energy first (:func:`guard_departures`):
        vehicles still to arrive will share the site's cheap hours.
        """
        # Each plan below is a fresh array of the planner's own: cut in place, no copy.
        power_kw = make_feasible(problem, self.solve(problem), overwrite=True)
        if self.guard and problem.control_steps < problem.grid.length:
            # Putting urgent energy first cuts others' charging, which can leave their later
            # planned discharge beyond the energy window: cut again to the exact limits.
            power_kw = make_feasible(
                problem,
                guard_departures(problem, power_kw, problem.control_steps),
                overwrite=True,
            )
        return Schedule(power_kw=power_kw, planner=self.name)

    def solve(self, problem: Problem) -> FloatArray:
        """The planned power (kW, vehicles x horizon) before the final feasibility cut.

        The array is column-major (each step's powers are contiguous), which is what the
        step-by-step feasibility cut reads. With a peak price it is the best plan of the
        price iterations, already cut. With a regulation price or commitment it is the best
        plan of the headroom iterations (:mod:`v2ghub.planning.reserve`), already cut.
        Keeping the valley rule, it is the plan at the rule's least prices
        (:mod:`v2ghub.planning.valley_rule_prices`).
        """
        rule = problem.valley_rule if self.keep_valley_rule else None
        if rule is None:
            return self._solve_priced(problem, None)
        power_kw, self._rule_multipliers = plan_with_valley_rule(
            problem,
            rule,
            solve_energy=lambda prices: make_feasible(
                problem, self.solve_at_prices(problem, prices), overwrite=True
            ),
            solve_full=lambda prices: self._solve_priced(problem, prices),
            hint=self._rule_multipliers,
        )
        return power_kw

    def _solve_priced(self, problem: Problem, prices: ClassPrices | None) -> FloatArray:
        """The plan for the energy prices plus ``prices``, the peak price and headroom."""
        solve = partial(self.solve_at_prices, prices=prices)
        if problem.regulation_price.any() or problem.regulation_commitment.any():
            return plan_with_regulation(
                problem,
                solve=solve,
                peak_price_cny_per_kw=self.peak_price_cny_per_kw,
                plain_kw=self._solve_energy(problem, solve, prices),
            )
        return self._solve_energy(problem, solve, prices)

    def _solve_energy(
        self,
        problem: Problem,
        solve: Callable[[Problem], FloatArray],
        prices: ClassPrices | None = None,
    ) -> FloatArray:
        """The plan for the energy prices and the peak price, headroom ignored."""
        if self.peak_price_cny_per_kw > 0:
            return plan_with_peak_price(
                problem,
                solve=solve,
                peak_price_cny_per_kw=self.peak_price_cny_per_kw,
                iterations=self.peak_iterations,
                prices=prices,
            )
        return solve(problem)

    def solve_at_prices(self, problem: Problem, prices: ClassPrices | None = None) -> FloatArray:
        """As :meth:`solve` at the problem's energy prices alone, whatever the peak price.

        ``prices`` (optional) adds a price per class of vehicles to the import price (the
        valley rule's pricing, :mod:`v2ghub.planning.valley_rule`).
        """
        horizon = problem.grid.length
        power_kw = np.zeros((problem.n_vehicles, horizon), order="F")
        if problem.n_vehicles == 0 or horizon == 0:
            return power_kw
        step_level, import_level, export_level = price_levels(
            problem, prices.import_offsets_cny_per_kwh if prices is not None else None
        )
        price_class = (
            prices.vehicle_class
            if prices is not None
            else np.zeros(problem.n_vehicles, dtype=np.int64)
        )
        vehicle_order, site_start = site_groups(problem)
        site_limited = np.isfinite(problem.import_limit_kw) | np.isfinite(problem.export_limit_kw)

        plan_by_site(
            vehicle_order=vehicle_order,
            site_start=site_start,
            site_limited=np.ascontiguousarray(site_limited),
            import_limit_kw=contiguous_floats(problem.import_limit_kw),
            export_limit_kw=contiguous_floats(problem.export_limit_kw),
            arrival_step=contiguous_ints(problem.arrival_step),
            departure_step=contiguous_ints(problem.departure_step),
            energy_kwh=contiguous_floats(problem.energy_kwh),
            energy_min_kwh=contiguous_floats(problem.energy_min_kwh),
            energy_max_kwh=contiguous_floats(problem.energy_max_kwh),
            target_energy_kwh=contiguous_floats(problem.target_energy_kwh),
            max_charge_kw=contiguous_floats(problem.max_charge_kw),
            max_discharge_kw=contiguous_floats(problem.max_discharge_kw),
            charge_efficiency=contiguous_floats(problem.charge_efficiency),
            discharge_efficiency=contiguous_floats(problem.discharge_efficiency),
            step_level=step_level,
            price_class=contiguous_ints(price_class),
            import_level_cny_per_kwh=import_level,
            export_level_cny_per_kwh=export_level,
            degradation_cny_per_kwh=contiguous_floats(problem.degradation),
            dt_h=problem.dt_h,
            passes=self.passes,
            power_kw=power_kw,
            site_load_kw=problem.site_load_kw,
        )
        return power_kw
