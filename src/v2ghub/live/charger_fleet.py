"""The physics of many simulated stations at once: every plugged vehicle as a row of
arrays, stepped together by :func:`v2ghub.sim.battery.step_batteries`, with the meter
registers that count what really flowed.
"""

from __future__ import annotations

import numpy as np

from v2ghub.live.charger_frequency import FrequencyModes
from v2ghub.sim.battery import FloatArray, step_batteries
from v2ghub.units import WH_PER_KWH


class BatteryBank:
    """The vehicles at ``count`` stations (one EVSE each) and the stations' meters.

    ``command_kw`` is what the charger is told: NaN when no profile applies (the charger
    then charges at full power up to the owner's target, as a real one does), else a
    signed power (+ charge, - discharge; ``inf`` = charge at full power).
    ``follows_setpoint`` lets a setpoint charge up to the full battery; without it a car
    stops at the owner's target, its own charge limit. ``frequency`` holds the EVSEs in an
    OCPP 2.1 frequency mode, whose commands the fleet sets from a signal or the grid
    frequency (:mod:`v2ghub.live.charger_frequency`); the physics is the same for them.

    Registers count energy at the charger (grid side), in Wh, never falling:

        import_wh += max(p, 0) * dt_h * 1000        export_wh += max(-p, 0) * dt_h * 1000

    so stored energy changes by ``charge_efficiency * import - export / discharge_efficiency``.
    """

    def __init__(
        self, count: int, *, charge_efficiency: float, discharge_efficiency: float
    ) -> None:
        if not (0 < charge_efficiency <= 1 and 0 < discharge_efficiency <= 1):
            raise ValueError(
                "efficiencies must be in (0, 1], got "
                f"charge {charge_efficiency}, discharge {discharge_efficiency}"
            )
        self.plugged = np.zeros(count, dtype=bool)
        self.energy_kwh = np.zeros(count)
        self.capacity_kwh = np.ones(count)
        self.floor_kwh = np.zeros(count)
        self.target_kwh = np.zeros(count)
        self.max_charge_kw = np.zeros(count)
        self.max_discharge_kw = np.zeros(count)
        self.command_kw = np.full(count, np.nan)
        self.follows_setpoint = np.zeros(count, dtype=bool)
        self.power_kw = np.zeros(count)
        self.import_wh = np.zeros(count)
        self.export_wh = np.zeros(count)
        self._charge_efficiency = np.full(count, charge_efficiency)
        self._discharge_efficiency = np.full(count, discharge_efficiency)
        self.frequency = FrequencyModes(count)

    def plug(
        self,
        index: int,
        *,
        energy_kwh: float,
        capacity_kwh: float,
        floor_kwh: float,
        target_kwh: float,
        max_charge_kw: float,
        max_discharge_kw: float,
    ) -> None:
        """A vehicle arrives at station ``index``."""
        self.plugged[index] = True
        self.energy_kwh[index] = energy_kwh
        self.capacity_kwh[index] = capacity_kwh
        self.floor_kwh[index] = floor_kwh
        self.target_kwh[index] = target_kwh
        self.max_charge_kw[index] = max_charge_kw
        self.max_discharge_kw[index] = max_discharge_kw
        self.power_kw[index] = 0.0

    def unplug(self, index: int) -> None:
        """The vehicle leaves; the station's registers keep their values."""
        self.plugged[index] = False
        self.power_kw[index] = 0.0
        self.command_kw[index] = np.nan
        self.follows_setpoint[index] = False
        self.frequency.clear(index)

    def soc(self, index: int) -> float | None:
        """State of charge (0-1) of the vehicle at ``index``, ``None`` when none is plugged."""
        if not self.plugged[index]:
            return None
        return float(self.energy_kwh[index] / self.capacity_kwh[index])

    def step(self, dt_h: float) -> None:
        """Apply the commands for ``dt_h`` hours to every plugged vehicle."""
        if dt_h <= 0:
            return
        default = np.isnan(self.command_kw)
        setpoint_kw: FloatArray = np.where(default, self.max_charge_kw, self.command_kw)
        ceiling_kwh: FloatArray = np.where(
            self.follows_setpoint & ~default, self.capacity_kwh, self.target_kwh
        )
        energy_after, power_kw = step_batteries(
            energy_kwh=self.energy_kwh,
            setpoint_kw=setpoint_kw,
            max_charge_kw=np.where(self.plugged, self.max_charge_kw, 0.0),
            max_discharge_kw=np.where(self.plugged, self.max_discharge_kw, 0.0),
            charge_efficiency=self._charge_efficiency,
            discharge_efficiency=self._discharge_efficiency,
            energy_min_kwh=self.floor_kwh,
            energy_max_kwh=ceiling_kwh,
            dt_h=dt_h,
        )
        self.energy_kwh = energy_after
        self.power_kw = power_kw
        self.import_wh += np.maximum(power_kw, 0.0) * (dt_h * WH_PER_KWH)
        self.export_wh += np.maximum(-power_kw, 0.0) * (dt_h * WH_PER_KWH)
