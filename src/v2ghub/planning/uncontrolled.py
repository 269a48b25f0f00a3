"""Uncontrolled charging: full power from arrival until the target is reached."""

from __future__ import annotations

from v2ghub.model.problem import Problem, Schedule
from v2ghub.planning.stepping import charge_only_schedule


class UncontrolledPlanner:
    """What chargers do with no aggregator: charge at once, as fast as the limits allow.

    Site limits still hold (a site's load manager shares its capacity pro rata); there is
    no discharge.
    """

    name = "uncontrolled"

    def plan(self, problem: Problem) -> Schedule:
        """Charge every plugged vehicle at full power until it holds its target energy."""
        return charge_only_schedule(problem, name=self.name, price=None, urgent_first=False)
