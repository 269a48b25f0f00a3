"""The flexibility envelope: hand-worked figures, and a longer hold is never larger."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2ghub.model.headroom import PluggedFleet
from v2ghub.regulation.envelope import fleet_envelope

START = datetime(2025, 7, 16, 19, tzinfo=UTC)


def _two_cars(import_limit_kw: float = np.inf, export_limit_kw: float = np.inf) -> PluggedFleet:
    """A V2G car and a charge-only car at one site, both lossless, 11 kW chargers."""
    return PluggedFleet(
        planned_kw=np.array([0.0, 5.0]),
        energy_kwh=np.array([40.0, 30.0]),
        energy_min_kwh=np.array([10.0, 0.0]),
        energy_max_kwh=np.array([60.0, 60.0]),
        target_energy_kwh=np.array([0.0, 0.0]),
        max_charge_kw=np.array([11.0, 11.0]),
        max_discharge_kw=np.array([11.0, 0.0]),
        charge_efficiency=np.ones(2),
        discharge_efficiency=np.ones(2),
        site_index=np.zeros(2, dtype=np.int64),
        import_limit_kw=np.array([import_limit_kw]),
        export_limit_kw=np.array([export_limit_kw]),
    )


TEN_HOURS = np.array([10.0, 10.0])


def test_the_envelope_of_two_cars_by_hand() -> None:
    envelope = fleet_envelope(
        _two_cars(), start=START, hours_to_departure=TEN_HOURS, durations_h=(0.25, 1.0, 4.0)
    )
    # Up: car 1 can add 11 kW (20 kWh of room lasts), car 2 6 kW: 17 kW for 15 min and 1 h;
    # for 4 h car 1 has room for 20 / 4 = 5 kW more and car 2 for 30 / 4 = 7.5 kW in all,
    # 2.5 more than its 5 kW plan: 7.5 kW.
    np.testing.assert_allclose(envelope.raise_kw, [17.0, 17.0, 7.5])
    # Down: car 1 can discharge 11 kW while 30 kWh above its floor last (all three
    # durations but 4 h: 30 / 4 = 7.5 kW); car 2 can only stop charging, 5 kW.
    np.testing.assert_allclose(envelope.lower_kw, [16.0, 16.0, 12.5])
    assert envelope.planned_kw == pytest.approx(5.0)
    assert envelope.plugged == 2


def test_a_site_limit_caps_the_envelope() -> None:
    # 5 kW planned under a 12 kW import limit leaves 7 kW up; 2 kW export allows 7 down.
    envelope = fleet_envelope(
        _two_cars(import_limit_kw=12.0, export_limit_kw=2.0),
        start=START,
        hours_to_departure=TEN_HOURS,
        durations_h=(1.0,),
    )
    np.testing.assert_allclose(envelope.raise_kw, [7.0])
    np.testing.assert_allclose(envelope.lower_kw, [7.0])


def test_a_car_leaving_within_the_hold_offers_nothing() -> None:
    envelope = fleet_envelope(
        _two_cars(), start=START, hours_to_departure=np.array([0.5, 10.0]), durations_h=(0.25, 1.0)
    )
    np.testing.assert_allclose(envelope.raise_kw, [17.0, 6.0])
    np.testing.assert_allclose(envelope.lower_kw, [16.0, 5.0])


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 30),
    seed=st.integers(0, 2**31),
    limit=st.one_of(st.just(np.inf), st.floats(0.0, 200.0)),
)
def test_a_longer_hold_is_never_larger(n: int, seed: int, limit: float) -> None:
    rng = np.random.default_rng(seed)
    battery = rng.uniform(20, 80, n)
    maximum = rng.uniform(0.6, 1.0, n) * battery
    minimum = rng.uniform(0.0, 0.3, n) * battery
    energy = rng.uniform(minimum, maximum)
    charge = rng.uniform(3, 22, n)
    discharge = np.where(rng.random(n) < 0.5, rng.uniform(3, 22, n), 0.0)
    fleet = PluggedFleet(
        planned_kw=rng.uniform(-discharge, charge),
        energy_kwh=energy,
        energy_min_kwh=minimum,
        energy_max_kwh=maximum,
        target_energy_kwh=rng.uniform(0, maximum),
        max_charge_kw=charge,
        max_discharge_kw=discharge,
        charge_efficiency=rng.uniform(0.85, 0.97, n),
        discharge_efficiency=rng.uniform(0.85, 0.97, n),
        site_index=rng.integers(0, 3, n),
        import_limit_kw=np.full(3, limit),
        export_limit_kw=np.full(3, limit),
    )
    envelope = fleet_envelope(
        fleet,
        start=START,
        hours_to_departure=rng.uniform(0, 12, n),
        durations_h=(0.25, 0.5, 1.0, 2.0, 4.0, 8.0),
    )
    assert np.all(np.diff(envelope.raise_kw) <= 1e-9)
    assert np.all(np.diff(envelope.lower_kw) <= 1e-9)
    assert np.all(envelope.raise_kw >= 0)
    assert np.all(envelope.lower_kw >= 0)
