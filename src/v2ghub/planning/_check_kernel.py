"""Compiled core of :func:`v2ghub.planning.check.check`: one pass over a schedule.

Each element is visited once (in memory order: rows within steps for a column-major
schedule, steps within rows otherwise); the kernel counts the cases of every per-row
guarantee broken, keeps the worst of each, and sums the power per site and step for the
site limits, which the caller compares. No temporary of the schedule's size is made, so a
million vehicles are checked in milliseconds a step.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# The per-row kinds, in the order of the arrays the kernel returns.
NOT_FINITE, UNPLUGGED, CHARGE, DISCHARGE, BELOW, ABOVE = range(6)
ROW_KINDS = 6


@njit(cache=True)
def _note(  # noqa: PLR0917 - a compiled kernel takes its arrays positionally
    kind: int,
    excess: float,
    row: int,
    step: int,
    counts: IntArray,
    worst: FloatArray,
    rows: IntArray,
    steps: IntArray,
) -> None:
    counts[kind] += 1
    if excess > worst[kind]:
        worst[kind] = excess
        rows[kind] = row
        steps[kind] = step


@njit(cache=True)
def check_rows(  # noqa: PLR0917 - a compiled kernel takes its arrays positionally
    power_kw: FloatArray,
    energy_start_kwh: FloatArray,
    arrival_step: IntArray,
    departure_step: IntArray,
    max_charge_kw: FloatArray,
    max_discharge_kw: FloatArray,
    charge_efficiency: FloatArray,
    discharge_efficiency: FloatArray,
    energy_min_kwh: FloatArray,
    energy_max_kwh: FloatArray,
    site_index: IntArray,
    n_sites: int,
    dt_h: float,
    tolerance_kw: float,
    slack_kwh: float,
    column_major: bool,
) -> tuple[IntArray, FloatArray, IntArray, IntArray, FloatArray, bool]:
    """Per-row kinds: (counts, worst excess, its row, its step); the power per site and
    step (kW); whether every value was finite. ``column_major``: walk rows within steps
    (the memory order of a column-major schedule)."""
    n, k = power_kw.shape
    counts = np.zeros(ROW_KINDS, dtype=np.int64)
    worst = np.full(ROW_KINDS, -np.inf)
    rows = np.full(ROW_KINDS, -1, dtype=np.int64)
    steps = np.full(ROW_KINDS, -1, dtype=np.int64)
    site_kw = np.zeros((n_sites, k))
    energy = energy_start_kwh.copy()
    finite = True
    outer, inner = (k, n) if column_major else (n, k)
    for a in range(outer):
        for b in range(inner):
            i, t = (b, a) if column_major else (a, b)
            p = power_kw[i, t]
            if not math.isfinite(p):
                _note(NOT_FINITE, 1.0, i, t, counts, worst, rows, steps)
                finite = False
                continue
            site_kw[site_index[i], t] += p
            if p == 0.0:
                continue
            if t < arrival_step[i] or t >= departure_step[i]:
                _note(UNPLUGGED, abs(p), i, t, counts, worst, rows, steps)
            if p > 0.0:
                if p - max_charge_kw[i] > tolerance_kw:
                    _note(CHARGE, p - max_charge_kw[i], i, t, counts, worst, rows, steps)
                energy[i] += p * charge_efficiency[i] * dt_h
                above = energy[i] - energy_max_kwh[i]
                if above > slack_kwh:
                    _note(ABOVE, above, i, t, counts, worst, rows, steps)
            else:
                if -p - max_discharge_kw[i] > tolerance_kw:
                    _note(DISCHARGE, -p - max_discharge_kw[i], i, t, counts, worst, rows, steps)
                energy[i] += p / discharge_efficiency[i] * dt_h
                below = energy_min_kwh[i] - energy[i]
                if below > slack_kwh:
                    _note(BELOW, below, i, t, counts, worst, rows, steps)
    return counts, worst, rows, steps, site_kw, finite
