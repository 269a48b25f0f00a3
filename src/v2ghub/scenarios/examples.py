"""Small hand-made planning problems, for docstring examples and first experiments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from v2ghub.model.problem import Problem
from v2ghub.model.tariff import PeriodKind
from v2ghub.model.time_grid import TimeGrid


def small_problem() -> Problem:
    """Three vehicles at two sites over eight hourly steps from 16:00 UTC+8.

    Vehicle 0 (60 kWh, V2G) at site 0 stays all evening; vehicle 1 (50 kWh, no V2G) at
    site 0 arrives at step 2 and leaves at step 6; vehicle 2 (75 kWh, V2G) at site 1
    stays steps 0-5. Site 0 may import 12 kW and export 7 kW; site 1 has no limit. The
    price is peak (1.2 CNY/kWh) from 18:00 to 21:00, flat (0.7) before and valley (0.3)
    after; a discharged kWh earns 0.9 CNY at peak.

    Examples
    --------
    >>> problem = small_problem()
    >>> problem.n_vehicles, problem.grid.length, problem.dt_h
    (3, 8, 1.0)
    """
    horizon = 8
    start = datetime(2025, 7, 16, 8, tzinfo=UTC)  # 16:00 in China Standard Time
    kinds = np.array([PeriodKind.FLAT] * 2 + [PeriodKind.PEAK] * 3 + [PeriodKind.VALLEY] * 3)
    import_price = np.array([0.7, 0.7, 1.2, 1.2, 1.2, 0.3, 0.3, 0.3])
    export_price = np.where(kinds == PeriodKind.PEAK, 0.9, 0.0)
    battery_kwh = np.array([60.0, 50.0, 75.0])
    return Problem(
        grid=TimeGrid(start, timedelta(hours=1), horizon),
        control_steps=1,
        vehicle_index=np.arange(3, dtype=np.int64),
        site_index=np.array([0, 0, 1], dtype=np.int64),
        energy_kwh=battery_kwh * np.array([0.5, 0.3, 0.8]),
        energy_min_kwh=battery_kwh * 0.2,
        energy_max_kwh=battery_kwh * 0.95,
        target_energy_kwh=battery_kwh * np.array([0.8, 0.6, 0.8]),
        max_charge_kw=np.array([7.0, 7.0, 11.0]),
        max_discharge_kw=np.array([7.0, 0.0, 11.0]),
        charge_efficiency=np.full(3, 0.95),
        discharge_efficiency=np.full(3, 0.95),
        departure_step=np.array([8, 6, 6], dtype=np.int64),
        arrival_step=np.array([0, 2, 0], dtype=np.int64),
        import_limit_kw=np.array([12.0, np.inf]),
        export_limit_kw=np.array([7.0, np.inf]),
        import_price_cny_per_kwh=import_price,
        export_price_cny_per_kwh=export_price,
        period_kind=kinds.astype(np.int8),
        base_load_kw=np.full(horizon, 50.0),
        renewable_surplus_kw=np.zeros(horizon),
        degradation_cny_per_kwh=0.2,
    )
