"""Primary frequency response: droop with a deadband, for the fleet and for each vehicle.

Outside the deadband, a resource moves its power in proportion to the frequency error:
with the error beyond the deadband ``e = f - f_nominal - sign(f - f_nominal) * deadband``
(0 inside it), the fleet's response as a fraction of its rated response power is

    fraction = clip(e / f_nominal / droop, -1, 1)

in the project's sign convention: frequency above nominal (too much generation) makes
the fleet charge more (+), below nominal it charges less or discharges (-). A 5% droop
gives the full rated response at a 5% frequency error beyond the deadband; at 50 Hz,
0.1 Hz beyond the deadband asks 0.1 / 50 / 0.05 = 4% of it.

Defaults (:mod:`v2ghub.defaults`; FACTS.md, grid [M]): deadband 0.05 Hz; droop 5%, within
the 2-10% asked of new resources. Each vehicle gives its share of the fraction exactly as it
follows a regulation signal (:func:`v2ghub.regulation.dispatch.setpoints`): shares by headroom, set
once per interval.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from v2ghub.defaults import DROOP, FREQUENCY_DEADBAND_HZ
from v2ghub.regulation.dispatch import Participation, setpoints

FloatArray = npt.NDArray[np.float64]

NOMINAL_FREQUENCY_HZ = 50.0
DEFAULT_DEADBAND_HZ = FREQUENCY_DEADBAND_HZ
DEFAULT_DROOP = DROOP


def droop_fraction(
    frequency_hz: npt.ArrayLike,
    *,
    deadband_hz: float = DEFAULT_DEADBAND_HZ,
    droop: float = DEFAULT_DROOP,
    nominal_hz: float = NOMINAL_FREQUENCY_HZ,
) -> FloatArray:
    """The response asked at each frequency, as a fraction (-1..1) of the rated response."""
    if not 0 < droop <= 1:
        raise ValueError(f"droop must be in (0, 1], got {droop}")
    if deadband_hz < 0:
        raise ValueError(f"deadband_hz must be >= 0, got {deadband_hz}")
    error = np.asarray(frequency_hz, dtype=np.float64) - nominal_hz
    beyond = np.sign(error) * np.maximum(np.abs(error) - deadband_hz, 0.0)
    return np.asarray(np.clip(beyond / nominal_hz / droop, -1.0, 1.0))


def fleet_response_kw(
    frequency_hz: npt.ArrayLike,
    *,
    rated_kw: float,
    deadband_hz: float = DEFAULT_DEADBAND_HZ,
    droop: float = DEFAULT_DROOP,
) -> FloatArray:
    """The fleet's change of power (kW, + = more charging) at each frequency sample."""
    return droop_fraction(frequency_hz, deadband_hz=deadband_hz, droop=droop) * rated_kw


def vehicle_setpoints(
    planned_kw: FloatArray, shares: Participation, fraction: float, *, out: FloatArray | None = None
) -> FloatArray:
    """Every vehicle's setpoint for one frequency sample's ``fraction`` (see the docstring)."""
    return setpoints(planned_kw, shares, fraction, out=out)
