"""Receding horizon (model-predictive) planning around any planner.

At every control instant the wrapped planner plans the whole horizon from what is known
now: the vehicles plugged in (later arrivals are unknown until they come), their needs, the
prices, and a *forecast* of the area's base load and renewable surplus. Only the first
control interval of the plan is applied; the next instant plans again with fresh
information. The twin's simulator calls planners this way; this wrapper adds the forecast
(the base load is not known exactly ahead of time) and keeps only the applied steps.

Forecast error: the base load and the surplus ``k`` steps ahead are the true values times
``1 + base_load_error * sqrt(k / steps_per_hour) * z_k`` with ``z_k`` standard normal,
seeded by the instant, so the error grows with lead time and a run is repeatable.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from v2ghub.model.problem import Planner, Problem, Schedule
from v2ghub.planning.stepping import make_feasible


class RecedingHorizonPlanner:
    """Plan the horizon on forecasts with ``inner``, apply the first control interval.

    Parameters
    ----------
    inner:
        The planner that solves each instant's problem (``lp``, ``fast``, a rule planner).
    base_load_error:
        Relative standard deviation of the base-load forecast one hour ahead (0 = perfect).
    seed:
        Seed of the forecast errors.
    """

    def __init__(
        self,
        inner: Planner,
        *,
        base_load_error: float = 0.05,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        if base_load_error < 0:
            raise ValueError(f"base_load_error must be >= 0, got {base_load_error}")
        self.inner = inner
        self.base_load_error = base_load_error
        self.seed = seed
        self.name = name or f"mpc-{inner.name}"
        # As many sessions as the wrapped planner can take at every control instant.
        self.twin_max_sessions: int | None = getattr(inner, "twin_max_sessions", None)

    def forecast(self, problem: Problem) -> Problem:
        """The problem with base load and surplus replaced by their forecasts."""
        if self.base_load_error == 0:
            return problem
        horizon = problem.grid.length
        steps_per_hour = max(1.0, 1.0 / problem.dt_h)
        lead = np.sqrt(np.arange(horizon) / steps_per_hour)
        rng = np.random.default_rng([self.seed, problem.grid.start_s])
        factor = 1.0 + self.base_load_error * lead * rng.standard_normal(horizon)
        return replace(
            problem,
            base_load_kw=problem.base_load_kw * factor,
            renewable_surplus_kw=np.maximum(problem.renewable_surplus_kw * factor, 0.0),
        )

    def plan(self, problem: Problem) -> Schedule:
        """Plan on the forecast; return the control interval, exactly within the limits."""
        schedule = self.inner.plan(self.forecast(problem))
        keep = min(problem.control_steps, problem.grid.length, schedule.n_steps)
        power_kw = make_feasible(problem, schedule.power_kw[:, :keep])
        return Schedule(
            power_kw=power_kw, planner=self.name, fallback_reason=schedule.fallback_reason
        )
