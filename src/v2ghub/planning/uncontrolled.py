"""Uncontrolled charging: full power from arrival until the target is reached."""

from __future__ import annotations

import numpy as np

from v2ghub.model.problem import Problem, Schedule
from v2ghub.planning.stepping import FleetState, apply_step, charge_toward_target, steps_to_plan


class UncontrolledPlanner:
    """What chargers do with no aggregator: charge at once, as fast as the limits allow.

    Site limits still hold (a site's load manager shares its capacity pro rata); there is
    no discharge.
    """

    name = "uncontrolled"

    def plan(self, problem: Problem) -> Schedule:
        """Charge every plugged vehicle at full power until it holds its target energy."""
        steps = steps_to_plan(problem)
        state = FleetState.of(problem)
        power_kw = np.zeros((problem.n_vehicles, steps))
        no_discharge = np.zeros(problem.n_vehicles)
        for step in range(steps):
            charge_kw, _ = charge_toward_target(problem, state, step, price=None)
            power_kw[:, step] = apply_step(
                problem,
                state,
                charge_kw=charge_kw,
                discharge_kw=no_discharge,
                must_charge_kw=charge_kw,
            )
        return Schedule(power_kw=power_kw, planner=self.name)
