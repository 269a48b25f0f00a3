"""Feeder limits for the planners (:mod:`v2ghub.network.feeder_limits`): the linearised caps
hold in the full AC power flow, and no planner that sees them breaks them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from v2ghub.model.fleet import Fleet
from v2ghub.model.problem import Problem
from v2ghub.model.sites import SiteLimits
from v2ghub.model.time_grid import TimeGrid
from v2ghub.network.feeder_limits import SiteCaps, feeder_caps, feeder_shortfall_kwh
from v2ghub.network.feeders import VOLTAGE_BAND_PU, Feeder, attach_sites, feeder_day
from v2ghub.planning import make_planner

START = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)  # 18:00 in Shenzhen
STEPS = 16  # hours: the evening peak and the night
OWN_LIMIT_KW = 350.0
TOLERANCE_KW = 1e-6
# The city's base load over its peak, hour by hour from 18:00: the evening peak, the night.
EVENING = np.array(
    [0.95, 1.0, 1.0, 0.95, 0.85, 0.75, 0.65, 0.6, 0.6, 0.6, 0.6, 0.62, 0.7, 0.8, 0.85, 0.9]
)


def _sites(count: int = 1) -> SiteLimits:
    ids = tuple(f"Town-home-transformer-{k}" for k in range(count))
    limits = np.full(count, OWN_LIMIT_KW)
    return SiteLimits(ids, limits, limits.copy())


@cache
def _feeders(count: int) -> tuple[Feeder, ...]:
    return attach_sites(_sites(count), count, seed=5, city="Town")


def test_charging_at_the_cap_keeps_every_feeder_within_its_ratings_in_ac() -> None:
    sites = _sites(3)
    feeders = _feeders(3)
    caps = feeder_caps(feeders, sites, EVENING)
    for feeder in feeders:
        row = int(feeder.site_rows[0])
        cap = caps.import_cap_kw[row]
        assert np.isfinite(cap).all()
        assert (cap > 0).all()
        # The evening peak leaves the least room.
        assert cap[1] < cap[8]
        power = np.zeros((3, STEPS))
        power[row] = cap
        day = feeder_day(feeder, power, EVENING)
        worst = np.fmax(day.max_trafo_loading, day.max_line_loading)
        assert worst.max() <= 1.0, (feeder.kind, worst.max())
        assert day.min_vm_pu.min() >= VOLTAGE_BAND_PU[0], (feeder.kind, day.min_vm_pu.min())
        # And the cap is not idle: within the margin of a rating or of the band.
        tight = (worst > 0.985) | (day.min_vm_pu < VOLTAGE_BAND_PU[0] + 0.005)
        assert tight.all(), (feeder.kind, worst, day.min_vm_pu)
        # 5% above the cap breaks something.
        over = power.copy()
        over[row] *= 1.05
        hot = feeder_day(feeder, over, EVENING)
        assert hot.overloaded.any() or hot.voltage_out.any()


def test_sites_off_the_feeders_keep_their_limits() -> None:
    sites = SiteLimits(
        ("Town-home-transformer-0", "Town-public-station-0", "Town-open-0"),
        np.array([OWN_LIMIT_KW, 1200.0, np.inf]),
        np.array([OWN_LIMIT_KW, 1200.0, np.inf]),
    )
    caps = feeder_caps(attach_sites(sites, 1, seed=5), sites, EVENING)
    assert caps.reserved_kw[1:].tolist() == np.zeros((2, STEPS)).tolist()
    assert caps.import_limit_kw[1:].tolist() == [1200.0, np.inf]
    assert caps.export_limit_kw[1:].tolist() == [1200.0, np.inf]
    assert np.isinf(caps.import_cap_kw[1:]).all()
    reserved = caps.reserved_kw[0]
    assert reserved.tolist() == pytest.approx(np.maximum(OWN_LIMIT_KW - caps.import_cap_kw[0], 0))
    # The room for discharge never grows: the export limit seen is lowered by the most
    # the cap takes.
    assert caps.export_limit_kw[0] <= OWN_LIMIT_KW - reserved.max() + 1e-9


def _problem(caps: SiteCaps, seed: int, n: int, prices: np.ndarray) -> Problem:
    rng = np.random.default_rng(seed)
    arrival = rng.integers(0, 4, n)
    departure = rng.integers(10, STEPS + 1, n)
    battery = rng.uniform(40, 80, n)
    energy = battery * rng.uniform(0.2, 0.5, n)
    v2g = rng.random(n) < 0.5
    return Problem(
        grid=TimeGrid(START, timedelta(hours=1), STEPS),
        control_steps=STEPS,
        vehicle_index=np.arange(n, dtype=np.int64),
        site_index=np.zeros(n, dtype=np.int64),
        energy_kwh=energy,
        energy_min_kwh=battery * 0.1,
        energy_max_kwh=battery,
        target_energy_kwh=battery * 0.9,
        max_charge_kw=np.full(n, 11.0),
        max_discharge_kw=np.where(v2g, 11.0, 0.0),
        charge_efficiency=np.full(n, 0.93),
        discharge_efficiency=np.full(n, 0.93),
        departure_step=departure.astype(np.int64),
        arrival_step=arrival.astype(np.int64),
        import_limit_kw=caps.import_limit_kw[:1],
        export_limit_kw=caps.export_limit_kw[:1],
        site_load_kw=caps.window(0, STEPS)[:1],
        import_price_cny_per_kwh=prices,
        export_price_cny_per_kwh=prices * 0.9,
        period_kind=np.zeros(STEPS, dtype=np.int8),
        base_load_kw=EVENING * 1000.0,
        renewable_surplus_kw=np.zeros(STEPS),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    vehicles=st.integers(5, 60),
    prices=st.lists(st.floats(0.2, 1.5), min_size=STEPS, max_size=STEPS),
    feeder=st.integers(0, 2),
    planner=st.sampled_from(["fast", "lp", "uncontrolled"]),
)
def test_no_planner_that_sees_the_feeder_breaks_its_linearised_limits(
    seed: int, vehicles: int, prices: list[float], feeder: int, planner: str
) -> None:
    feeders = _feeders(3)
    one = feeders[feeder]
    sites = _sites(1)
    caps = feeder_caps((_moved(one),), sites, EVENING)
    problem = _problem(caps, seed, vehicles, np.array(prices))
    schedule = make_planner(planner).plan(problem)
    site_kw = np.asarray(schedule.power_kw)[:, :STEPS].sum(axis=0)
    assert (site_kw <= caps.import_cap_kw[0] + TOLERANCE_KW).all(), (planner, site_kw)
    # Discharge within what the planners see, which never exceeds the site's own export
    # limit nor what the feeder's voltage allows.
    discharge_room = caps.export_limit_kw[0] + caps.reserved_kw[0]
    assert (site_kw >= -discharge_room - TOLERANCE_KW).all(), (planner, site_kw)
    assert discharge_room.max() <= OWN_LIMIT_KW + 1e-9


def _moved(feeder: Feeder) -> Feeder:
    """``feeder`` under the one site of :func:`_sites` (its first row)."""
    from dataclasses import replace  # noqa: PLC0415

    return replace(feeder, site_rows=np.zeros(1, dtype=np.int64))


def _two_vehicles(charger_kw: float, hours: int) -> Fleet:
    n = 2
    start_s = int(START.timestamp())
    return Fleet(
        site_index=np.zeros(n, dtype=np.int64),
        battery_kwh=np.full(n, 100.0),
        soc_arrival=np.full(n, 0.2),
        soc_target=np.full(n, 0.35),  # 15 kWh each
        soc_min=np.full(n, 0.1),
        soc_max=np.full(n, 1.0),
        max_charge_kw=np.full(n, charger_kw),
        max_discharge_kw=np.zeros(n),
        charge_efficiency=np.ones(n),
        discharge_efficiency=np.ones(n),
        arrival_s=np.full(n, start_s, dtype=np.int64),
        departure_s=np.full(n, start_s + hours * 3600, dtype=np.int64),
        v2g_opt_in=np.zeros(n, dtype=bool),
        charger_kind=np.zeros(n, dtype=np.int8),
    )


def _caps(cap_kw: float, steps: int) -> SiteCaps:
    cap = np.full((1, steps), cap_kw)
    return SiteCaps(
        import_cap_kw=cap,
        import_limit_kw=np.array([OWN_LIMIT_KW]),
        reserved_kw=OWN_LIMIT_KW - cap,
        export_limit_kw=np.array([0.0]),
    )


def test_the_energy_a_feeder_has_no_room_for_is_a_maximum_flow() -> None:
    grid = TimeGrid(START, timedelta(hours=1), 4)
    # Two vehicles needing 15 kWh each over 2 h through a 10 kW cap: 20 kWh fit, 10 do not.
    assert feeder_shortfall_kwh(_two_vehicles(11.0, 2), grid, _caps(10.0, 4)) == pytest.approx(10.0)
    # With 4 h the cap carries all 30 kWh.
    assert feeder_shortfall_kwh(_two_vehicles(11.0, 4), grid, _caps(10.0, 4)) == 0.0
    # A 3 kW charger for 2 h reaches only 6 of its 15 kWh whatever the feeder: that part is
    # the vehicle's own, not the feeder's (12 kWh fit through a 10 kW cap).
    assert feeder_shortfall_kwh(_two_vehicles(3.0, 2), grid, _caps(10.0, 4)) == 0.0
    assert feeder_shortfall_kwh(_two_vehicles(3.0, 2), grid, _caps(5.0, 4)) == pytest.approx(2.0)
