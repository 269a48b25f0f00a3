"""What a schedule costs under a problem's prices: the yardstick every planner is held to.

Float CNY, for comparing plans; money that is paid is settled exactly elsewhere
(:mod:`v2ghub.settlement.money`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from v2ghub.model.problem import Problem

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ScheduleCost:
    """The parts of the planning objective (CNY) and the peak it reaches (kW)."""

    energy_cost_cny: float
    export_revenue_cny: float
    degradation_cost_cny: float
    peak_kw: float
    peak_cost_cny: float

    @property
    def objective_cny(self) -> float:
        """``energy cost - export revenue + degradation + peak cost``."""
        return (
            self.energy_cost_cny
            - self.export_revenue_cny
            + self.degradation_cost_cny
            + self.peak_cost_cny
        )


def schedule_cost(
    problem: Problem, power_kw: FloatArray, *, peak_price_cny_per_kw: float = 0.0
) -> ScheduleCost:
    """Cost of ``power_kw`` (vehicles x steps, from the problem's first step).

    ``sum dt_h * (import_price * max(p, 0) - export_price * max(-p, 0)
    + degradation_i * max(-p, 0)) + peak_price * max_t (base_load + sum_i p)``.
    """
    steps = power_kw.shape[1]
    dt_h = problem.dt_h
    charge_kwh = np.maximum(power_kw, 0.0).sum(axis=0) * dt_h
    discharge_kw = np.maximum(-power_kw, 0.0)
    discharge_kwh = discharge_kw.sum(axis=0) * dt_h
    net_kw = power_kw.sum(axis=0)
    peak_kw = float(np.max(problem.base_load_kw[:steps] + net_kw)) if steps else 0.0
    return ScheduleCost(
        energy_cost_cny=float(charge_kwh @ problem.import_price_cny_per_kwh[:steps]),
        export_revenue_cny=float(discharge_kwh @ problem.export_price_cny_per_kwh[:steps]),
        degradation_cost_cny=float(discharge_kw.sum(axis=1) @ problem.degradation * dt_h),
        peak_kw=peak_kw,
        peak_cost_cny=peak_price_cny_per_kw * peak_kw if peak_price_cny_per_kw > 0 else 0.0,
    )


def final_energy_kwh(
    problem: Problem, power_kw: FloatArray, *, first_vehicle: int = 0
) -> FloatArray:
    """Stored energy each vehicle would leave with under ``power_kw``.

    ``e_i + dt_h * sum_{arrival_i <= t < departure_i} (eta_c,i * max(p, 0) - max(-p, 0) /
    eta_d,i)``. ``power_kw`` holds the rows of vehicles ``first_vehicle ..
    first_vehicle + len(power_kw) - 1`` (all of them by default): a large plan can be
    taken a block of vehicles at a time, each vehicle's sum the same as at once.
    """
    rows = slice(first_vehicle, first_vehicle + power_kw.shape[0])
    dt_h = problem.dt_h
    stored = (
        np.maximum(power_kw, 0.0) * problem.charge_efficiency[rows, None]
        - np.maximum(-power_kw, 0.0) / problem.discharge_efficiency[rows, None]
    ) * dt_h
    steps = np.arange(power_kw.shape[1])
    plugged = (steps[None, :] < problem.departure_step[rows, None]) & (
        steps[None, :] >= problem.arrival_step[rows, None]
    )
    return np.asarray(problem.energy_kwh[rows] + np.where(plugged, stored, 0.0).sum(axis=1))
