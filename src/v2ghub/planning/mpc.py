"""Receding horizon (model-predictive) planning around any planner.

At every control instant the wrapped planner plans the whole horizon from what is known
now: the vehicles plugged in, their needs, the prices, a *forecast* of the area's base load
and renewable surplus and, when the caller supplies them, the groups of sessions expected
to arrive later at the sites with a limit (``Problem.expected_count``; the twin's
:mod:`v2ghub.sim.expected_arrivals`). Which vehicle arrives when is unknown until it does.
Only the first control interval of the plan is applied; the next instant plans again with
fresh information.

Forecast error: the base load and the surplus ``k`` steps ahead are the true values times
``1 + base_load_error * sqrt(k / steps_per_hour) * z_k``, and each expected group's
energies and charger power are scaled by ``max(0, 1 + arrival_error * z_g)``, with ``z``
standard normal seeded by the instant, so the error grows with lead time and a run is
repeatable.

The pilots' valley rule (``Problem.valley_rule``, for an inner planner that keeps it) is
planned with its shares raised by ``valley_rule_margin``: each instant's plan keeps the
rule over the day so far and the plan, but the plans that follow move charging again as
prices, the peak and new arrivals come, and the day's share drifts below what each plan
promised. Measured on the Shenzhen day (2,000 vehicles, ``mpc+rules``): 59.7% of charging
in valley hours with no margin, 61.8% with the default 2 points.

Incremental planning: re-planning every plugged vehicle at every instant costs the fleet
size times the instants, though between two instants little changes: a few arrivals, and
the forecasts. So only every ``whole_plan_every``-th instant plans the whole fleet; the
others plan only what changed (:mod:`v2ghub.planning.held_plan`): the new arrivals and the
vehicles whose energy is not what the last plan expected, against the area's base load
plus the plan the other vehicles hold (which stands for the rest of their stay), within
the room that plan leaves at each site. The held plan is the warm start, and the peak it
shaved is the base the changes are planned on. Where that room leaves a changed vehicle
shorter than its charger could avoid, and it leaves before the next whole plan, its
site's vehicles are all planned again at once.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt

from v2ghub import defaults
from v2ghub.model.problem import Planner, Problem, Schedule, capabilities_of
from v2ghub.planning.held_plan import HeldPlan, PartialProblem, short_sites
from v2ghub.planning.stepping import make_feasible

FloatArray = npt.NDArray[np.float64]

VALLEY_RULE_MARGIN = defaults.MPC_VALLEY_RULE_MARGIN  # see the module docstring
# Whole re-plans: at every this many-th instant (see the module docstring).
WHOLE_PLAN_EVERY = defaults.MPC_WHOLE_PLAN_EVERY
# Beyond this share of the plugged vehicles free to move, an instant re-plans them all.
MOST_FREE_SHARE = 1.0


class RecedingHorizonPlanner:
    """Plan the horizon on forecasts with ``inner``, apply the first control interval.

    Parameters
    ----------
    inner:
        The planner that solves each instant's problem (``lp``, ``fast``, a rule planner).
    base_load_error:
        Relative standard deviation of the base-load forecast one hour ahead (0 = perfect).
    arrival_error:
        Relative standard deviation of each expected group of arrivals (0 = perfect).
    expected_arrivals:
        Ask the caller for the groups of sessions expected to arrive
        (``capabilities.expected_arrivals``), so that the plugged vehicles leave room for them.
        Off by default: in the synthetic cities the fast planner's own site repair already
        delivers every target it can, and the reservation only cost money (measured in
        ``benchmarks/bench_twin_planners.py``).
    seed:
        Seed of the forecast errors.
    valley_rule_margin:
        Added to the valley rule's shares (0-1) when the inner planner keeps the rule.
    whole_plan_every:
        Re-plan every plugged vehicle at every this many-th instant; at the others only
        what changed (:mod:`v2ghub.planning.held_plan`). 1: every instant re-plans all.
    most_free_share:
        An instant at which more than this share of the vehicles changed re-plans all.
    """

    def __init__(
        self,
        inner: Planner,
        *,
        base_load_error: float = 0.05,
        arrival_error: float = 0.1,
        expected_arrivals: bool = False,
        seed: int = 0,
        name: str | None = None,
        valley_rule_margin: float = VALLEY_RULE_MARGIN,
        whole_plan_every: int = WHOLE_PLAN_EVERY,
        most_free_share: float = MOST_FREE_SHARE,
    ) -> None:
        if base_load_error < 0:
            raise ValueError(f"base_load_error must be >= 0, got {base_load_error}")
        if arrival_error < 0:
            raise ValueError(f"arrival_error must be >= 0, got {arrival_error}")
        if not 0 <= valley_rule_margin <= 1:
            raise ValueError(f"valley_rule_margin must lie within 0..1, got {valley_rule_margin}")
        if whole_plan_every < 1:
            raise ValueError(f"whole_plan_every must be >= 1, got {whole_plan_every}")
        if not 0 <= most_free_share <= 1:
            raise ValueError(f"most_free_share must lie within 0..1, got {most_free_share}")
        self.inner = inner
        self.whole_plan_every = whole_plan_every
        self.most_free_share = most_free_share
        # The last plan over the whole horizon, and the instants planned since a whole plan.
        self._held: HeldPlan | None = None
        self._since_whole = 0
        # Instants planned whole and by what changed, since the planner was made.
        self.whole_plans = 0
        self.partial_plans = 0
        self.valley_rule_margin = valley_rule_margin
        self.base_load_error = base_load_error
        self.arrival_error = arrival_error
        self.seed = seed
        self.name = name or f"mpc-{inner.name}"
        # As many sessions as the wrapped planner can take at every control instant.
        self.capabilities = replace(capabilities_of(inner), expected_arrivals=expected_arrivals)

    def forecast(self, problem: Problem) -> Problem:
        """The problem with base load, surplus and expected arrivals replaced by forecasts."""
        rng = np.random.default_rng([self.seed, problem.grid.start_s])
        horizon = problem.grid.length
        steps_per_hour = max(1.0, 1.0 / problem.dt_h)
        lead = np.sqrt(np.arange(horizon) / steps_per_hour)
        load_factor = 1.0 + self.base_load_error * lead * rng.standard_normal(horizon)
        groups = problem.expected_count
        group_factor = np.ones(problem.n_vehicles)
        if groups:
            group_factor[problem.n_plugged :] = np.maximum(
                1.0 + self.arrival_error * rng.standard_normal(groups), 0.0
            )
        rule = problem.valley_rule
        if rule is not None and self.valley_rule_margin > 0:
            rule = replace(
                rule,
                share=min(1.0, rule.share + self.valley_rule_margin),
                private_share=min(1.0, rule.private_share + self.valley_rule_margin),
            )
        return replace(
            problem,
            valley_rule=rule,
            base_load_kw=problem.base_load_kw * load_factor,
            renewable_surplus_kw=np.maximum(problem.renewable_surplus_kw * load_factor, 0.0),
            energy_kwh=problem.energy_kwh * group_factor,
            energy_min_kwh=problem.energy_min_kwh * group_factor,
            energy_max_kwh=problem.energy_max_kwh * group_factor,
            target_energy_kwh=problem.target_energy_kwh * group_factor,
            max_charge_kw=problem.max_charge_kw * group_factor,
        )

    def plan(self, problem: Problem) -> Schedule:
        """Plan on the forecast (what changed, or everything when due); return the control
        interval, exactly within the limits."""
        forecast = self.forecast(problem)
        power_kw, fallback_reason = self._plan_horizon(forecast)
        keep = min(problem.control_steps, problem.grid.length, power_kw.shape[1])
        power_kw = np.array(power_kw[:, :keep], dtype=np.float64)
        # The expected groups only reserve room: none of their power is ever applied.
        power_kw[problem.n_plugged :] = 0.0
        power_kw = make_feasible(forecast, power_kw)
        return Schedule(power_kw=power_kw, planner=self.name, fallback_reason=fallback_reason)

    def _plan_horizon(self, forecast: Problem) -> tuple[FloatArray, str | None]:
        """The plan of the whole horizon (rows of ``forecast``) and the inner planner's
        fallback reason; held for the next instant."""
        partial = None
        if (
            self._held is not None
            and self._since_whole + 1 < self.whole_plan_every
            and forecast.regulation_price_cny_per_kw_h is None
            and forecast.regulation_commitment_kw is None
        ):
            partial = self._held.partial(forecast, most_free_share=self.most_free_share)
        if partial is None:
            schedule = self.inner.plan(forecast)
            power_kw = _whole_horizon(schedule.power_kw, forecast.grid.length)
            self._since_whole = 0
            self.whole_plans += 1
        else:
            power_kw, schedule = self._plan_partial(forecast, partial)
            self._since_whole += 1
            self.partial_plans += 1
        # A fallback plan is a safe plan, not one to hold: the next instant plans anew.
        self._held = HeldPlan.of(forecast, power_kw) if schedule.fallback_reason is None else None
        return power_kw, schedule.fallback_reason

    def _plan_partial(
        self, forecast: Problem, partial: PartialProblem
    ) -> tuple[FloatArray, Schedule]:
        """The whole horizon's plan with only ``partial``'s free rows planned; where that
        leaves a free vehicle shorter than it must be (the room the held ones left was too
        little), its site's vehicles are all planned again."""
        horizon = forecast.grid.length
        if not partial.free_rows.size:
            return partial.held_power_kw, Schedule(
                power_kw=partial.held_power_kw[:0], planner=self.inner.name
            )
        schedule = self.inner.plan(partial.problem)
        # A vehicle short now is planned again with its site at the next whole plan, at
        # the latest this many steps on: only those that leave before then cannot wait.
        next_whole = (self.whole_plan_every - 1 - self._since_whole) * forecast.control_steps
        sites = short_sites(
            partial.problem, _whole_horizon(schedule.power_kw, horizon), leaving_by=next_whole
        )
        if sites.size and self._held is not None:
            wider = self._held.partial(
                forecast, most_free_share=self.most_free_share, free_sites=sites
            )
            if wider is None:  # too much to plan by parts: plan it all
                whole = self.inner.plan(forecast)
                return _whole_horizon(whole.power_kw, horizon), whole
            partial = wider
            schedule = self.inner.plan(partial.problem)
        power_kw = partial.held_power_kw
        power_kw[partial.free_rows] = _whole_horizon(schedule.power_kw, horizon)
        return power_kw, schedule


def _whole_horizon(power_kw: FloatArray, horizon: int) -> FloatArray:
    """``power_kw`` over ``horizon`` steps (zero where a schedule stops short)."""
    whole = np.zeros((power_kw.shape[0], horizon))
    steps = min(horizon, power_kw.shape[1])
    whole[:, :steps] = power_kw[:, :steps]
    return whole
