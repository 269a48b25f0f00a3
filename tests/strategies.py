"""Hypothesis strategies for fleets, sites and cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
from hypothesis import strategies as st

from v2ghub.model import CityCase, Fleet, GridSignals, Problem, SiteLimits, TimeGrid
from v2ghub.model.fleet import ChargerKind
from v2ghub.model.tariff import DischargePriceRule, DischargeRuleKind, PeriodKind, Tariff

START = datetime(2025, 7, 16, 0, 0, tzinfo=UTC)
STEP = timedelta(minutes=15)
STEPS = 48  # half a day keeps examples fast


def guangdong_like_tariff(timezone: str = "UTC") -> Tariff:
    """Valley 0-8, flat 8-10 and 12-14 and 19-24, peak 10-12 and 14-19; 1.7:1:0.38."""
    row = []
    for hour in range(24):
        if hour < 8:
            row.append(PeriodKind.VALLEY)
        elif 10 <= hour < 12 or 14 <= hour < 19:
            row.append(PeriodKind.PEAK)
        else:
            row.append(PeriodKind.FLAT)
    ratios = (Decimal("0.38"), Decimal(1), Decimal("1.7"), Decimal("2.125"))
    return Tariff(
        timezone=timezone,
        base_price_cny_per_kwh=Decimal("0.65"),
        period_kinds=tuple(tuple(row) for _ in range(12)),
        ratios=tuple(ratios for _ in range(12)),
        discharge=DischargePriceRule(DischargeRuleKind.TOU_RATIO, Decimal("0.9")),
    )


@st.composite
def cases(draw: st.DrawFn, *, limited_sites: bool | None = None) -> CityCase:
    """A small city case: 1-25 sessions within 12 hours, 1-3 sites, random limits."""
    n = draw(st.integers(1, 25))
    n_sites = draw(st.integers(1, 3))
    unit = st.floats(0.0, 1.0, allow_nan=False)
    rows = draw(
        st.lists(
            st.tuples(
                st.integers(0, STEPS * 15 - 1),  # arrival minute
                st.integers(1, STEPS * 15),  # stay in minutes
                st.floats(10.0, 100.0),  # battery_kwh
                unit,  # soc_arrival
                unit,  # soc_target (scaled into the window below)
                st.floats(0.0, 0.5),  # soc_min
                st.floats(0.5, 1.0),  # soc_max
                st.floats(1.0, 60.0),  # max_charge_kw
                st.floats(0.0, 60.0),  # max_discharge_kw
                st.floats(0.7, 1.0),  # charge_efficiency
                st.floats(0.7, 1.0),  # discharge_efficiency
                st.booleans(),  # v2g_opt_in
                st.integers(0, n_sites - 1),
            ),
            min_size=n,
            max_size=n,
        )
    )
    cols = list(zip(*rows, strict=True))
    arrival_min = np.array(cols[0], dtype=np.int64)
    stay_min = np.array(cols[1], dtype=np.int64)
    soc_max = np.array(cols[6])
    start_s = int(START.timestamp())
    fleet = Fleet(
        site_index=np.array(cols[12], dtype=np.int64),
        battery_kwh=np.array(cols[2]),
        soc_arrival=np.array(cols[3]),
        soc_target=np.array(cols[4]) * soc_max,
        soc_min=np.array(cols[5]),
        soc_max=soc_max,
        max_charge_kw=np.array(cols[7]),
        max_discharge_kw=np.array(cols[8]),
        charge_efficiency=np.array(cols[9]),
        discharge_efficiency=np.array(cols[10]),
        arrival_s=start_s + arrival_min * 60,
        departure_s=start_s + (arrival_min + stay_min) * 60,
        v2g_opt_in=np.array(cols[11], dtype=bool),
        charger_kind=np.full(n, ChargerKind.PUBLIC, dtype=np.int8),
    )
    limited = draw(st.booleans()) if limited_sites is None else limited_sites
    if limited:
        import_kw = np.array(
            draw(st.lists(st.floats(0.0, 200.0), min_size=n_sites, max_size=n_sites))
        )
        export_kw = np.array(
            draw(st.lists(st.floats(0.0, 200.0), min_size=n_sites, max_size=n_sites))
        )
        sites = SiteLimits(tuple(f"s{i}" for i in range(n_sites)), import_kw, export_kw)
    else:
        sites = SiteLimits.unlimited(tuple(f"s{i}" for i in range(n_sites)))
    last_minute = int((arrival_min + stay_min).max())
    grid = TimeGrid(START, STEP, max(STEPS, -(-last_minute // 15)))
    base = np.full(grid.length, 100.0)
    return CityCase(
        city="Testville",
        grid=grid,
        fleet=fleet,
        sites=sites,
        tariff=guangdong_like_tariff(),
        signals=GridSignals(base, np.zeros(grid.length)),
        degradation_cny_per_kwh=draw(st.sampled_from([0.0, 0.2])),
    )


@st.composite
def problems(draw: st.DrawFn, *, limited_sites: bool | None = None, horizon: int = 12) -> Problem:
    """A day-ahead problem: 1-8 vehicles arriving and leaving within ``horizon`` steps."""
    n = draw(st.integers(1, 8))
    n_sites = draw(st.integers(1, 2))
    arrival = np.array(draw(st.lists(st.integers(0, horizon - 1), min_size=n, max_size=n)))
    stay = np.array(draw(st.lists(st.integers(1, horizon), min_size=n, max_size=n)))
    departure = np.minimum(arrival + stay, horizon)
    battery = np.array(draw(st.lists(st.floats(10.0, 80.0), min_size=n, max_size=n)))
    fractions = st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)
    soc_arrival = np.array(draw(fractions))
    soc_min = np.array(draw(st.lists(st.floats(0.0, 0.4), min_size=n, max_size=n)))
    soc_max = np.array(draw(st.lists(st.floats(0.6, 1.0), min_size=n, max_size=n)))
    soc_target = np.array(draw(fractions)) * soc_max
    power = st.lists(st.floats(1.0, 50.0), min_size=n, max_size=n)
    opt_in = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    eff = st.lists(st.floats(0.8, 0.98), min_size=n, max_size=n)
    prices = draw(
        st.lists(st.sampled_from([0.2, 0.3, 0.65, 1.1, 1.4]), min_size=horizon, max_size=horizon)
    )
    import_price = np.array(prices)
    export_price = import_price * draw(st.sampled_from([0.5, 0.7, 1.0]))
    limited = draw(st.booleans()) if limited_sites is None else limited_sites
    if limited:
        limits = st.lists(st.floats(0.0, 100.0), min_size=n_sites, max_size=n_sites)
        import_kw, export_kw = np.array(draw(limits)), np.array(draw(limits))
    else:
        import_kw, export_kw = np.full(n_sites, np.inf), np.full(n_sites, np.inf)
    kinds = np.where(
        import_price >= 1.1,
        PeriodKind.PEAK,
        np.where(import_price <= 0.3, PeriodKind.VALLEY, PeriodKind.FLAT),
    )
    return Problem(
        grid=TimeGrid(START, timedelta(hours=1), horizon),
        control_steps=horizon,
        vehicle_index=np.arange(n, dtype=np.int64),
        site_index=np.array(
            draw(st.lists(st.integers(0, n_sites - 1), min_size=n, max_size=n)), dtype=np.int64
        ),
        energy_kwh=soc_arrival * battery,
        energy_min_kwh=np.minimum(soc_arrival, soc_min) * battery,
        energy_max_kwh=np.maximum(soc_arrival, soc_max) * battery,
        target_energy_kwh=soc_target * battery,
        max_charge_kw=np.array(draw(power)),
        max_discharge_kw=np.where(opt_in, np.array(draw(power)), 0.0),
        charge_efficiency=np.array(draw(eff)),
        discharge_efficiency=np.array(draw(eff)),
        departure_step=departure.astype(np.int64),
        arrival_step=arrival.astype(np.int64),
        import_limit_kw=import_kw,
        export_limit_kw=export_kw,
        import_price_cny_per_kwh=import_price,
        export_price_cny_per_kwh=export_price,
        period_kind=kinds.astype(np.int8),
        base_load_kw=np.array(
            draw(st.lists(st.floats(0.0, 200.0), min_size=horizon, max_size=horizon))
        ),
        renewable_surplus_kw=np.zeros(horizon),
        degradation_cny_per_kwh=draw(st.sampled_from([0.0, 0.2])),
    )
