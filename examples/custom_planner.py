"""A planner of your own beside v2ghub's `mpc`, on two pilot cities.

Run: ``.venv/bin/python examples/custom_planner.py [--vehicles 300]``

The planner below ("valley-first") charges each vehicle evenly over the valley-price steps
it is plugged for, and what they cannot hold evenly over its other steps; it never
discharges. Any object
with a ``name`` and ``plan(problem) -> Schedule`` is a planner: the twin checks every
schedule against the guarantees (charger, vehicle and site limits, the SoC window) and
falls back to safe charging, saying so, when one breaks them.
"""

from __future__ import annotations

import argparse

import numpy as np
import numpy.typing as npt

from v2ghub import Problem, Scenario, Schedule, Twin, make_feasible
from v2ghub.model import PeriodKind

FloatArray = npt.NDArray[np.float64]


class ValleyFirst:
    """Spread each vehicle's missing energy over its valley steps (no V2G)."""

    name = "valley-first"

    def plan(self, problem: Problem) -> Schedule:
        steps = np.arange(problem.grid.length)
        plugged = (steps >= problem.arrival_step[:, None]) & (
            steps < problem.departure_step[:, None]
        )
        valley = plugged & (problem.period_kind == PeriodKind.VALLEY)[None, :]
        missing_kwh = np.maximum(problem.target_energy_kwh - problem.energy_kwh, 0.0)
        grid_kwh = missing_kwh / problem.charge_efficiency
        valley_h = valley.sum(axis=1) * problem.dt_h
        valley_kw = np.minimum(_spread(grid_kwh, valley_h), problem.max_charge_kw)
        # What the valley cannot hold is spread over the vehicle's other plugged steps.
        other = plugged & ~valley
        rest_kwh = grid_kwh - valley_kw * valley_h
        other_kw = _spread(rest_kwh, other.sum(axis=1) * problem.dt_h)
        power_kw = np.where(valley, valley_kw[:, None], np.where(other, other_kw[:, None], 0.0))
        # Cut to the exact limits (charger, energy window, sites) as the built-in planners do.
        return Schedule(power_kw=make_feasible(problem, power_kw), planner=self.name)


def _spread(energy_kwh: FloatArray, hours: FloatArray) -> FloatArray:
    """Energy over hours as a power (kW); zero where there are no hours."""
    power_kw = np.zeros_like(energy_kwh)
    np.divide(energy_kwh, hours, out=power_kw, where=hours > 0)
    return power_kw


def main() -> None:
    """Run both planners on Shenzhen and Kunming and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=300, help="vehicles per city")
    args = parser.parse_args()
    scenario = Scenario.pilot_cities(
        cities=["Shenzhen", "Kunming"], vehicles_per_city=args.vehicles
    )
    result = Twin(scenario, planners=["mpc", ValleyFirst()]).run()
    print(
        f"{'city':<10} {'planner':<13} {'peak MW':>8} {'V2G MWh':>8} {'unmet kWh':>9} "
        f"{'owners pay CNY':>14} {'fallbacks':>9}"
    )
    for run in result.runs:
        m = run.metrics
        print(
            f"{m.city:<10} {m.planner:<13} {m.peak_kw / 1000:>8.2f} "
            f"{m.energy_discharged_kwh / 1000:>8.2f} {m.unmet_energy_kwh:>9.1f} "
            f"{m.owner_cost_cny:>14,.2f} {m.fallbacks:>9}"
        )


if __name__ == "__main__":
    main()
