"""Battery physics of one step, for any number of vehicles at once."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def step_batteries(
    *,
    energy_kwh: FloatArray,
    setpoint_kw: FloatArray,
    max_charge_kw: FloatArray,
    max_discharge_kw: FloatArray,
    charge_efficiency: FloatArray,
    discharge_efficiency: FloatArray,
    energy_min_kwh: FloatArray,
    energy_max_kwh: FloatArray,
    dt_h: float,
) -> tuple[FloatArray, FloatArray]:
    """Apply charger setpoints for one step, as a charger and battery would.

    The charger holds its power limits and the battery management system its energy
    window: a setpoint beyond either is cut, never obeyed. With ``p`` the applied power:

        stored_after = stored + charge_efficiency * max(p, 0) * dt_h
                              + min(p, 0) * dt_h / discharge_efficiency

    Returns
    -------
    (energy_after_kwh, applied_power_kw)
    """
    power_kw = np.clip(setpoint_kw, -max_discharge_kw, max_charge_kw)
    charge_kw = np.maximum(power_kw, 0.0)
    discharge_kw = np.maximum(-power_kw, 0.0)
    room_kwh = np.maximum(energy_max_kwh - energy_kwh, 0.0)
    available_kwh = np.maximum(energy_kwh - energy_min_kwh, 0.0)
    charge_kw = np.minimum(charge_kw, room_kwh / (charge_efficiency * dt_h))
    discharge_kw = np.minimum(discharge_kw, available_kwh * discharge_efficiency / dt_h)
    energy_after = (
        energy_kwh
        + charge_kw * charge_efficiency * dt_h
        - discharge_kw * dt_h / discharge_efficiency
    )
    # Rounding must not leave the window the cuts above respect.
    energy_after = np.clip(
        energy_after, np.minimum(energy_min_kwh, energy_kwh), np.maximum(energy_max_kwh, energy_kwh)
    )
    return energy_after, charge_kw - discharge_kw
