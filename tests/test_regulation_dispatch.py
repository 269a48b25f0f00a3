"""Regulation capacity and dispatch: promises that hold, shares that add up, in the twin."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from v2ghub.model import CityCase
from v2ghub.planning import make_planner
from v2ghub.regulation.capacity import fit_sites, headroom
from v2ghub.regulation.dispatch import changed_setpoints, participation, setpoints
from v2ghub.sim.battery import step_batteries
from v2ghub.sim.engine import Simulator
from v2ghub.sim.metrics import session_outcomes
from v2ghub.sim.regulation_service import RegulationFollower, RegulationOffer

from .strategies import cases

N = 12
FRACTIONS = st.lists(st.floats(0.0, 1.0), min_size=N, max_size=N)
POWERS = st.lists(st.floats(0.0, 60.0), min_size=N, max_size=N)


@settings(max_examples=200, deadline=None)
@given(
    soc=FRACTIONS,
    target=FRACTIONS,
    plan=FRACTIONS,
    charge=POWERS,
    discharge=POWERS,
    stay_h=st.lists(st.floats(0.0, 12.0), min_size=N, max_size=N),
    duration_h=st.sampled_from([0.25, 0.5, 1.0]),
    signal=st.sampled_from([1.0, -1.0]),
)
def test_a_promise_holds_at_full_deflection_for_its_whole_duration(
    *,
    soc: list[float],
    target: list[float],
    plan: list[float],
    charge: list[float],
    discharge: list[float],
    stay_h: list[float],
    duration_h: float,
    signal: float,
) -> None:
    battery = np.full(N, 60.0)
    energy_min = battery * 0.1
    energy_max = battery * 0.95
    energy = energy_min + np.array(soc) * (energy_max - energy_min)
    charge_kw = np.array(charge) + 1.0
    discharge_kw = np.array(discharge)
    # A planned power within the charger's limits.
    planned = -discharge_kw + np.array(plan) * (charge_kw + discharge_kw)
    target_kwh = energy_min + np.array(target) * (energy_max - energy_min)
    eta_c, eta_d = np.full(N, 0.9), np.full(N, 0.92)
    # A plan the battery can hold for the duration on its own (the energy planners' plans
    # are): within the powers that keep the energy window over ``duration_h``.
    low = (energy_min - energy) / duration_h * eta_d
    high = (energy_max - energy) / duration_h / eta_c
    planned = np.clip(planned, low, high)
    stay = np.array(stay_h)
    room = headroom(
        planned_kw=planned,
        energy_kwh=energy,
        energy_min_kwh=energy_min,
        energy_max_kwh=energy_max,
        target_energy_kwh=target_kwh,
        max_charge_kw=charge_kw,
        max_discharge_kw=discharge_kw,
        charge_efficiency=eta_c,
        discharge_efficiency=eta_d,
        hours_to_departure=stay,
        duration_h=duration_h,
    )
    assert np.all(room.raise_kw >= 0)
    assert np.all(room.lower_kw >= 0)
    assert np.all(room.raise_kw[stay < duration_h] == 0)
    # Hold the whole promise in one direction for the whole duration, 60 small steps.
    shares = participation(room, max(room.raise_total_kw, room.lower_total_kw))
    dt_h = duration_h / 60
    e = energy.copy()
    for _ in range(60):
        wanted = setpoints(planned, shares, signal)
        e_next, applied = step_batteries(
            energy_kwh=e,
            setpoint_kw=wanted,
            max_charge_kw=charge_kw,
            max_discharge_kw=discharge_kw,
            charge_efficiency=eta_c,
            discharge_efficiency=eta_d,
            energy_min_kwh=energy_min,
            energy_max_kwh=energy_max,
            dt_h=dt_h,
        )
        # Nothing had to be cut: every vehicle could do what it promised.
        promised = stay >= duration_h
        np.testing.assert_allclose(applied[promised], wanted[promised], atol=1e-6)
        e = e_next
    # And it can still reach its target at full power in the time it has left.
    reachable = e + np.maximum(stay - duration_h, 0.0) * charge_kw * eta_c
    reached_before = energy + np.maximum(stay, 0.0) * charge_kw * eta_c >= target_kwh
    ok = (reachable >= target_kwh - 1e-6) | ~reached_before | (stay < duration_h)
    ok |= (signal > 0) | (room.lower_kw == 0)
    assert np.all(ok)


def test_shares_split_the_capacity_by_headroom() -> None:
    room = headroom(
        planned_kw=np.array([0.0, 3.0, -2.0]),
        energy_kwh=np.array([30.0, 30.0, 30.0]),
        energy_min_kwh=np.zeros(3),
        energy_max_kwh=np.full(3, 60.0),
        target_energy_kwh=np.zeros(3),
        max_charge_kw=np.array([7.0, 7.0, 11.0]),
        max_discharge_kw=np.array([7.0, 0.0, 11.0]),
        charge_efficiency=np.ones(3),
        discharge_efficiency=np.ones(3),
        hours_to_departure=np.full(3, 10.0),
        duration_h=1.0,
    )
    # Up: 7, 4, 13 kW (charger limits); down: 7, 3 (no V2G: stop charging), 9 kW.
    np.testing.assert_allclose(room.raise_kw, [7.0, 4.0, 13.0])
    np.testing.assert_allclose(room.lower_kw, [7.0, 3.0, 9.0])
    shares = participation(room, 12.0)
    np.testing.assert_allclose(shares.raise_share_kw, np.array([7.0, 4.0, 13.0]) * 12 / 24)
    np.testing.assert_allclose(shares.lower_share_kw, np.array([7.0, 3.0, 9.0]) * 12 / 19)
    up = setpoints(np.array([0.0, 3.0, -2.0]), shares, 0.5)
    assert up.sum() - 1.0 == pytest.approx(6.0)  # half of 12 kW more than planned
    down = setpoints(np.array([0.0, 3.0, -2.0]), shares, -1.0)
    assert down.sum() - 1.0 == pytest.approx(-12.0)
    assert changed_setpoints(up, down, tolerance_kw=0.01) == 3
    with pytest.raises(ValueError, match="capacity_kw must be >= 0"):
        participation(room, -1.0)


def test_site_limits_scale_the_headroom() -> None:
    room = headroom(
        planned_kw=np.array([5.0, 5.0]),
        energy_kwh=np.full(2, 30.0),
        energy_min_kwh=np.zeros(2),
        energy_max_kwh=np.full(2, 60.0),
        target_energy_kwh=np.zeros(2),
        max_charge_kw=np.full(2, 11.0),
        max_discharge_kw=np.full(2, 11.0),
        charge_efficiency=np.ones(2),
        discharge_efficiency=np.ones(2),
        hours_to_departure=np.full(2, 5.0),
        duration_h=1.0,
    )
    # The site imports 10 kW of a 16 kW limit and may export 4 kW: raise 6, lower 14.
    fitted = fit_sites(
        room,
        planned_kw=np.array([5.0, 5.0]),
        site_index=np.array([0, 0]),
        import_limit_kw=np.array([16.0]),
        export_limit_kw=np.array([4.0]),
    )
    assert fitted.raise_total_kw == pytest.approx(6.0)
    assert fitted.lower_total_kw == pytest.approx(14.0)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(limited_sites=False))
def test_regulation_in_the_twin_keeps_every_guarantee(case: CityCase) -> None:
    offer = RegulationOffer(hours=tuple(range(24)), step_s=60.0, seed=1)
    follower = RegulationFollower(case.grid, timezone=case.tariff.timezone, offer=offer)
    run = Simulator(case, make_planner("v2g-rules"), regulation=follower).run()
    base = Simulator(case, make_planner("v2g-rules")).run()
    fleet = case.fleet
    assert run.site_limit_violations == 0
    assert np.all(run.energy_final_kwh >= fleet.energy_min_kwh - 1e-6)
    assert np.all(run.energy_final_kwh <= fleet.energy_max_kwh + 1e-6)
    # Regulation never leaves a vehicle short that the plan alone would have served.
    with_regulation = session_outcomes(run).unmet_kwh
    without = session_outcomes(base).unmet_kwh
    assert np.all(with_regulation <= without + 1e-3)
    for hour in run.regulation_hours:
        # Within 1% of the committed capacity whenever the hour's first step committed it.
        first = hour.delivered_kw[: follower.samples_per_step]
        asked = hour.requested_kw[: follower.samples_per_step]
        assert np.all(np.abs(first - asked) <= 0.01 * hour.capacity_kw + 1e-6)


# mpc re-plans every step and keeps the hour's committed headroom at tight sites, which
# costs a few planning passes a step: fewer cases than the other twin properties.
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(limited_sites=True))
def test_regulation_at_limited_sites_keeps_limits_and_window(case: CityCase) -> None:
    # At a shared site a vehicle's refill depends on the others (the promise counts on its
    # share of the site's import only), so departures are checked without site limits.
    offer = RegulationOffer(hours=tuple(range(24)), step_s=60.0, seed=2)
    follower = RegulationFollower(case.grid, timezone=case.tariff.timezone, offer=offer)
    run = Simulator(case, make_planner("mpc"), regulation=follower).run()
    fleet = case.fleet
    assert run.site_limit_violations == 0
    assert np.all(run.energy_final_kwh >= fleet.energy_min_kwh - 1e-6)
    assert np.all(run.energy_final_kwh <= fleet.energy_max_kwh + 1e-6)
