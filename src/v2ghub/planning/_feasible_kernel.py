"""Compiled kernel (numba) of :func:`v2ghub.planning.stepping.make_feasible`.

One pass over the steps; per step two passes over the vehicles: clip each setpoint to the
charger and to the battery's energy window, add it up per site, then scale each site's
discharge into its export limit and its charging into its import limit (plus what the
remaining discharge frees) and roll the energy on. A loop over vehicles is fine here: it
is compiled, and it reads each step's column of a column-major array in order.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@njit(cache=True)
def _share(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` clipped to [0, 1]; 1 when nothing asks (denominator 0)."""
    if denominator <= 0.0:
        return 1.0
    share = numerator / denominator
    if math.isnan(share):
        return 1.0
    return min(max(share, 0.0), 1.0)


@njit(cache=True)
def feasible_power(  # noqa: PLR0917 - numba kernels take no keyword-only arguments
    power_kw: FloatArray,
    arrival_step: IntArray,
    departure_step: IntArray,
    max_charge_kw: FloatArray,
    max_discharge_kw: FloatArray,
    charge_efficiency: FloatArray,
    discharge_efficiency: FloatArray,
    energy_kwh: FloatArray,
    energy_min_kwh: FloatArray,
    energy_max_kwh: FloatArray,
    site_index: IntArray,
    import_limit_kw: FloatArray,
    export_limit_kw: FloatArray,
    site_load_kw: FloatArray,
    dt_h: float,
) -> FloatArray:
    """The feasible power (vehicles x steps, column-major); ``site_load_kw`` (sites x at
    least the steps) is load at the sites besides these vehicles'."""
    n, steps = power_kw.shape
    n_sites = import_limit_kw.shape[0]
    out = np.zeros((steps, n)).T  # column-major
    energy = energy_kwh.copy()
    charge = np.zeros(n)
    discharge = np.zeros(n)
    site_charge = np.zeros(n_sites)
    site_discharge = np.zeros(n_sites)
    charge_share = np.ones(n_sites)
    discharge_share = np.ones(n_sites)
    for t in range(steps):
        site_charge[:] = 0.0
        site_discharge[:] = 0.0
        for i in range(n):
            p = power_kw[i, t] if arrival_step[i] <= t < departure_step[i] else 0.0
            p = min(max(p, -max_discharge_kw[i]), max_charge_kw[i])
            room = max(energy_max_kwh[i] - energy[i], 0.0)
            available = max(energy[i] - energy_min_kwh[i], 0.0)
            c = min(max(p, 0.0), room / (charge_efficiency[i] * dt_h))
            d = min(max(-p, 0.0), available * discharge_efficiency[i] / dt_h)
            charge[i] = c
            discharge[i] = d
            site_charge[site_index[i]] += c
            site_discharge[site_index[i]] += d
        for s in range(n_sites):
            load = site_load_kw[s, t]
            discharge_share[s] = _share(
                site_charge[s] + export_limit_kw[s] + load, site_discharge[s]
            )
            kept_discharge = site_discharge[s] * discharge_share[s]
            charge_share[s] = _share(import_limit_kw[s] - load + kept_discharge, site_charge[s])
        for i in range(n):
            c = charge[i] * charge_share[site_index[i]]
            d = discharge[i] * discharge_share[site_index[i]]
            energy[i] += c * charge_efficiency[i] * dt_h - d * dt_h / discharge_efficiency[i]
            out[i, t] = c - d
    return out
