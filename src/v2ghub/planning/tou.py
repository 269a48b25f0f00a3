"""Smart charging into the cheapest (valley) hours, still meeting every departure target."""

from __future__ import annotations

from v2ghub.model.problem import Problem, Schedule
from v2ghub.planning.stepping import charge_only_schedule


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
        return charge_only_schedule(
            problem, name=self.name, price=problem.import_price_cny_per_kwh, urgent_first=True
        )
