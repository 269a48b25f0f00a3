"""Synthetic base load and renewable surplus per city, labelled ``synthetic``.

No verified public hourly load data exists for the pilot cities, so the base load is built
from the city's TOU windows, which the grid companies draw around their load: each local
hour gets a level by its period (valley 0.6, flat 0.8, peak 1.0, critical peak 1.05 of the
peak), smoothed with a circular moving average of ``smoothing_hours`` and scaled so that
its maximum is ``base_peak_kw_per_vehicle * n_vehicles`` (the area the fleet sits in).
Cities whose tariff has a midday valley (solar) get it in the load shape too.

Solar output is a clear-sky bell from 6:00 to 19:00 peaking at ``solar_peak_share`` of the
base peak; the grid absorbs solar up to ``solar_hosting_share`` of the base load and the
rest is the renewable surplus the fleet can soak up.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from v2ghub.model.signals import GridSignals
from v2ghub.model.tariff import PeriodKind, Tariff
from v2ghub.model.time_grid import TimeGrid
from v2ghub.scenarios.config import GridShape
from v2ghub.units import MINUTES_PER_HOUR

FloatArray = npt.NDArray[np.float64]

LEVEL_BY_KIND = {
    PeriodKind.VALLEY: 0.6,
    PeriodKind.FLAT: 0.8,
    PeriodKind.PEAK: 1.0,
    PeriodKind.CRITICAL: 1.05,
}
SUNRISE_H = 6.0
SUNSET_H = 19.0


def _smooth_circular(values: FloatArray, window: int) -> FloatArray:
    if window <= 1:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate((values[-window:], values, values[:window]))
    smoothed = np.convolve(padded, kernel, mode="same")
    return np.asarray(smoothed[window:-window])


def grid_signals(
    *,
    grid: TimeGrid,
    tariff: Tariff,
    shape: GridShape,
    n_vehicles: int,
    solar_peak_share: float,
) -> GridSignals:
    """Base load and renewable surplus for every step of ``grid`` (kW)."""
    steps_per_day = round(24 / grid.dt_h)
    # One day's shape from its TOU periods, repeated over the grid (which may pass midnight).
    _, kinds = tariff.month_and_kind(TimeGrid(grid.start, grid.step, steps_per_day))
    levels = np.array([LEVEL_BY_KIND[PeriodKind(int(k))] for k in kinds])
    steps_per_hour = max(1, round(1 / grid.dt_h))
    shaped = _smooth_circular(levels, max(1, round(shape.smoothing_hours * steps_per_hour)))
    base_peak_kw = shape.base_peak_kw_per_vehicle * n_vehicles
    day_kw = base_peak_kw * shaped / shaped.max()
    base_load_kw = np.resize(day_kw, grid.length)

    offset_h = grid.start.hour + grid.start.minute / MINUTES_PER_HOUR
    hour_of_day = (offset_h + (np.arange(grid.length) + 0.5) * grid.dt_h) % 24
    daylight = np.clip((hour_of_day - SUNRISE_H) / (SUNSET_H - SUNRISE_H), 0.0, 1.0)
    solar_kw = solar_peak_share * base_peak_kw * np.sin(np.pi * daylight) ** 1.5
    surplus_kw = np.maximum(solar_kw - shape.solar_hosting_share * base_load_kw, 0.0)
    return GridSignals(
        base_load_kw=base_load_kw.astype(np.float64),
        renewable_surplus_kw=np.asarray(surplus_kw, dtype=np.float64),
        label="synthetic",
    )
