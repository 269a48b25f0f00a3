"""Smart charging into the cheapest (valley) hours, still meeting every departure target."""

from __future__ import annotations

import numpy as np

from v2ghub.model.problem import Problem, Schedule
from v2ghub.planning.stepping import FleetState, apply_step, charge_toward_target, steps_to_plan


class TouPlanner:
    """Charge-only TOU planner: the cheapest steps first, spread evenly within a price.

    At each step a vehicle leaves to the strictly cheaper steps before its departure what
    they can hold, and spreads the rest evenly over the steps as cheap as this one (see
    :func:`~v2ghub.planning.stepping.charge_toward_target`). Without site limits the
    energy bought at each price is the cost-optimal charge-only amount; the spreading keeps
    the start of the valley from becoming a new peak.
    """

    name = "tou"

    def plan(self, problem: Problem) -> Schedule:
        """Plan charging into valley hours."""
        steps = steps_to_plan(problem)
        state = FleetState.of(problem)
        price = problem.import_price_cny_per_kwh
        power_kw = np.zeros((problem.n_vehicles, steps))
        no_discharge = np.zeros(problem.n_vehicles)
        for step in range(steps):
            charge_kw, must_kw = charge_toward_target(problem, state, step, price=price)
            power_kw[:, step] = apply_step(
                problem,
                state,
                charge_kw=charge_kw,
                discharge_kw=no_discharge,
                must_charge_kw=must_kw,
            )
        return Schedule(power_kw=power_kw, planner=self.name)
