"""The design's guarantees, checked on any schedule of any problem (shared by the tests):
a thin user of :func:`v2ghub.planning.check.check`, the check the twin, ``plan`` and the
live loop run."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from v2ghub.model import Problem, Schedule
from v2ghub.planning.check import check
from v2ghub.planning.objective import final_energy_kwh

TOLERANCE = 1e-5
FloatArray = npt.NDArray[np.float64]


def check_guarantees(problem: Problem, power_kw: FloatArray) -> None:
    """Power only while plugged, within charger limits, SoC window and site limits, over
    the whole horizon."""
    assert power_kw.shape == (problem.n_vehicles, problem.grid.length)
    violations = check(problem, Schedule(power_kw, "under test"), tolerance_kw=TOLERANCE)
    assert violations == [], "; ".join(str(v) for v in violations)


def shortfall_kwh(problem: Problem, power_kw: FloatArray) -> FloatArray:
    """Energy each vehicle would leave short of its target."""
    return np.maximum(problem.target_energy_kwh - final_energy_kwh(problem, power_kw), 0.0)
