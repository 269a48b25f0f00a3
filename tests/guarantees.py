"""The design's guarantees, checked on any schedule of any problem (shared by the tests)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from v2ghub.model import Problem
from v2ghub.planning.objective import final_energy_kwh

TOLERANCE = 1e-5
FloatArray = npt.NDArray[np.float64]


def check_guarantees(problem: Problem, power_kw: FloatArray) -> None:
    """Power only while plugged, within charger limits, SoC window and site limits."""
    steps = np.arange(problem.grid.length)
    plugged = (steps >= problem.arrival_step[:, None]) & (steps < problem.departure_step[:, None])
    assert power_kw.shape == (problem.n_vehicles, problem.grid.length)
    assert np.all(power_kw[~plugged] == 0)
    assert np.all(power_kw <= problem.max_charge_kw[:, None] + TOLERANCE)
    assert np.all(power_kw >= -problem.max_discharge_kw[:, None] - TOLERANCE)
    stored = (
        np.maximum(power_kw, 0) * problem.charge_efficiency[:, None]
        - np.maximum(-power_kw, 0) / problem.discharge_efficiency[:, None]
    ) * problem.dt_h
    path = problem.energy_kwh[:, None] + np.cumsum(stored, axis=1)
    assert np.all(path >= problem.energy_min_kwh[:, None] - TOLERANCE)
    assert np.all(path <= problem.energy_max_kwh[:, None] + TOLERANCE)
    n_sites = problem.import_limit_kw.shape[0]
    for step in range(problem.grid.length):  # steps and sites are few here
        site_kw = np.bincount(problem.site_index, weights=power_kw[:, step], minlength=n_sites)
        assert np.all(site_kw <= problem.import_limit_kw + TOLERANCE)
        assert np.all(site_kw >= -problem.export_limit_kw - TOLERANCE)


def shortfall_kwh(problem: Problem, power_kw: FloatArray) -> FloatArray:
    """Energy each vehicle would leave short of its target."""
    return np.maximum(problem.target_energy_kwh - final_energy_kwh(problem, power_kw), 0.0)
