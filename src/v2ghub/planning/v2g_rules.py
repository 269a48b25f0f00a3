"""Rule-based V2G: discharge at peak down to a safe floor, refill in cheaper hours."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from v2ghub.model.problem import Problem, Schedule
from v2ghub.model.tariff import PeriodKind
from v2ghub.planning.stepping import (
    FleetState,
    apply_step,
    charge_toward_target,
    future_count,
    plugged_at,
    site_derating,
    steps_to_plan,
    stored_to_discharge_kw,
)

FloatArray = npt.NDArray[np.float64]


def cheapest_future_price(
    price: FloatArray, step: int, departure_step: npt.NDArray[np.int64]
) -> FloatArray:
    """Per vehicle, the lowest price over steps ``step < s < departure_step`` (inf if none)."""
    running_min = np.concatenate(
        (np.full(step + 1, np.inf), np.minimum.accumulate(price[step + 1 :]))
    )
    last = np.maximum(departure_step - 1, 0)
    return np.asarray(running_min[last])


class V2gRulesPlanner:
    """Discharge opted-in vehicles at peak (and critical peak) hours, refill off-peak.

    At a peak step a vehicle discharges at full power down to the floor

        floor = max(energy_min_kwh, target - full_step_kwh * #{off-peak steps before departure})

    so that off-peak charging alone can still bring it to its target. It discharges only
    when that pays: export price - degradation > cheapest later import price /
    (charge_efficiency * discharge_efficiency); energy above the target (which needs no
    refill) is sold whenever export price > degradation. Charging follows the TOU rule.
    """

    name = "v2g-rules"

    def plan(self, problem: Problem) -> Schedule:
        """Plan peak discharge and valley refill."""
        steps = steps_to_plan(problem)
        state = FleetState.of(problem)
        price = problem.import_price_cny_per_kwh
        off_peak = problem.period_kind < PeriodKind.PEAK
        round_trip = problem.charge_efficiency * problem.discharge_efficiency
        power_kw = np.zeros((problem.n_vehicles, steps))
        for step in range(steps):
            plugged = plugged_at(problem, step)
            margin = problem.export_price_cny_per_kwh[step] - problem.degradation
            refill_pays = (
                margin > cheapest_future_price(price, step, problem.departure_step) / round_trip
            )
            refill_floor = problem.target_energy_kwh - state.charge_step_kwh * site_derating(
                problem, step
            ) * future_count(off_peak, step, problem.departure_step)
            floor = np.where(
                refill_pays, refill_floor, np.where(margin > 0, problem.target_energy_kwh, np.inf)
            )
            floor = np.maximum(floor, problem.energy_min_kwh)
            discharge_kwh = np.clip(state.energy_kwh - floor, 0.0, state.discharge_step_kwh)
            at_peak = not off_peak[step]
            discharge_kwh = np.where(plugged & at_peak, discharge_kwh, 0.0)
            discharge_kw = stored_to_discharge_kw(discharge_kwh, problem)

            charge_kw, must_kw = charge_toward_target(problem, state, step, price=price)
            discharging = discharge_kw > 0
            charge_kw = np.where(discharging, 0.0, charge_kw)
            must_kw = np.where(discharging, 0.0, must_kw)
            power_kw[:, step] = apply_step(
                problem,
                state,
                step,
                charge_kw=charge_kw,
                discharge_kw=discharge_kw,
                must_charge_kw=must_kw,
            )
        return Schedule(power_kw=power_kw, planner=self.name)
