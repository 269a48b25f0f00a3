"""Primary frequency response: droop with a deadband, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2ghub.regulation.capacity import Headroom
from v2ghub.regulation.dispatch import participation
from v2ghub.regulation.frequency_response import (
    droop_fraction,
    fleet_response_kw,
    vehicle_setpoints,
)


def test_droop_by_hand() -> None:
    # 5% droop, 0.05 Hz deadband, 50 Hz: 50.10 Hz is 0.05 Hz beyond the band,
    # 0.05 / 50 / 0.05 = 2% of the rated response, charging more; 49.90 Hz the opposite.
    fraction = droop_fraction([50.10, 49.90, 50.03, 49.96, 47.0, 52.6])
    np.testing.assert_allclose(fraction, [0.02, -0.02, 0.0, 0.0, -1.0, 1.0], atol=1e-12)
    # 10 MW rated at a 2% droop: 50.15 Hz is 0.1 Hz beyond, 0.1 / 50 / 0.02 = 10%: 1 MW.
    response = fleet_response_kw([50.15], rated_kw=10_000.0, droop=0.02)
    assert response[0] == pytest.approx(1_000.0)


def test_each_vehicle_gives_its_share() -> None:
    shares = participation(
        Headroom(raise_kw=np.array([6.0, 2.0]), lower_kw=np.array([1.0, 3.0])), 4.0
    )
    planned = np.array([3.0, -1.0])
    # Frequency low by 0.25 Hz beyond the band at 5% droop: -10% of 4 kW, split 1:3.
    fraction = float(droop_fraction([49.70])[0])
    assert fraction == pytest.approx(-0.1)
    np.testing.assert_allclose(vehicle_setpoints(planned, shares, fraction), [2.9, -1.3])


def test_bad_droop_and_deadband_are_refused() -> None:
    with pytest.raises(ValueError, match=r"droop must be in \(0, 1\], got 0"):
        droop_fraction([50.0], droop=0.0)
    with pytest.raises(ValueError, match=r"deadband_hz must be >= 0, got -0\.1"):
        droop_fraction([50.0], deadband_hz=-0.1)


@given(
    frequency=st.lists(st.floats(45.0, 55.0), min_size=1, max_size=50),
    deadband=st.floats(0.0, 0.5),
    droop=st.floats(0.02, 0.1),
)
def test_response_is_bounded_odd_and_silent_in_the_band(
    frequency: list[float], deadband: float, droop: float
) -> None:
    f = np.array(frequency)
    fraction = droop_fraction(f, deadband_hz=deadband, droop=droop)
    assert np.all(np.abs(fraction) <= 1.0)
    assert np.all(fraction[np.abs(f - 50.0) <= deadband] == 0.0)
    mirrored = droop_fraction(100.0 - f, deadband_hz=deadband, droop=droop)
    np.testing.assert_allclose(mirrored, -fraction, atol=1e-9)
    # More frequency never asks for less charging.
    order = np.argsort(f)
    assert np.all(np.diff(fraction[order]) >= -1e-12)
