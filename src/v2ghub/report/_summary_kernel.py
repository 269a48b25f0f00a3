"""Compiled core of :func:`v2ghub.report.schedule_files.plan_summary`: one pass over a
block of vehicles' powers for everything the summary adds up per vehicle.

Per vehicle ``i`` and step ``t`` it takes the written power ``u = rint(p * 1e4)`` (whole
1e-4 kW, as :func:`~v2ghub.report.schedule_files.written_power`), meters it as integer Wh
half away from zero (``(2 |u| step_s + 36000) // 72000``, as
:func:`~v2ghub.report.schedule_files.metered_wh`) into the vehicle's import Wh at the
step's import price level when charging and its export Wh at the export level when
discharging, and writes the stored energy the step adds,
``(max(p, 0) eta_c - max(-p, 0) / eta_d) dt_h``, where the vehicle is plugged (else 0),
for the caller to sum each row as :func:`~v2ghub.planning.objective.final_energy_kwh`
does. The same arithmetic, element by element, as those NumPy expressions.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_UNITS_PER_KW = 10_000.0
_TWICE_UNIT_SECONDS_PER_WH = 72_000
"""Twice the (1e-4 kW x s) in a Wh: the divisor of rounding half away from zero."""


@njit(cache=True)
def meter_block(  # noqa: PLR0917 - a compiled kernel takes its arrays positionally
    power_kw: FloatArray,
    first_vehicle: int,
    import_level: IntArray,
    export_level: IntArray,
    step_s: int,
    arrival_step: IntArray,
    departure_step: IntArray,
    charge_efficiency: FloatArray,
    discharge_efficiency: FloatArray,
    dt_h: float,
    import_wh: IntArray,
    export_wh: IntArray,
    stored_kwh: FloatArray,
) -> None:
    """Fill ``import_wh`` and ``export_wh`` (block rows x levels, zeroed by the caller)
    and ``stored_kwh`` (block rows x steps) for vehicles ``first_vehicle ..
    first_vehicle + len(power_kw) - 1``."""
    rows, steps = power_kw.shape
    for t in range(steps):
        for r in range(rows):
            i = first_vehicle + r
            p = power_kw[r, t]
            units = np.int64(np.rint(p * _UNITS_PER_KW))
            if units > 0:
                twice = 2 * units * step_s + _TWICE_UNIT_SECONDS_PER_WH // 2
                import_wh[r, import_level[t]] += twice // _TWICE_UNIT_SECONDS_PER_WH
            elif units < 0:
                twice = 2 * -units * step_s + _TWICE_UNIT_SECONDS_PER_WH // 2
                export_wh[r, export_level[t]] += twice // _TWICE_UNIT_SECONDS_PER_WH
            if arrival_step[i] <= t < departure_step[i]:
                stored_kwh[r, t] = (
                    max(p, 0.0) * charge_efficiency[i] - max(-p, 0.0) / discharge_efficiency[i]
                ) * dt_h
            else:
                stored_kwh[r, t] = 0.0


@njit(cache=True)
def written_kw(power_kw: FloatArray, out_kw: FloatArray) -> None:
    """``out_kw[i] = rint(power_kw[i] * 1e4) / 1e4``: each power as written, kW (a step's
    column, for NumPy to sum as it sums a whole column-major schedule's columns)."""
    for i in range(power_kw.shape[0]):
        out_kw[i] = np.float64(np.int64(np.rint(power_kw[i] * _UNITS_PER_KW))) / _UNITS_PER_KW
