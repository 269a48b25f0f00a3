"""One city's simulation input: its fleet, sites, tariff and grid context on a time grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from v2ghub.model.fleet import Fleet
from v2ghub.model.signals import GridSignals
from v2ghub.model.sites import SiteLimits
from v2ghub.model.tariff import Tariff
from v2ghub.model.time_grid import TimeGrid


@dataclass(frozen=True)
class CityCase:
    """Everything the simulator needs for one city.

    ``grid`` starts at local midnight of the reported day and runs until the last session
    has left (sessions may run past midnight). ``signals`` cover ``grid``. ``arrival_days``
    is the number of days over which the sessions arrive: daily curves fold the grid onto
    24 hours and divide by it. ``degradation_cny_per_kwh`` prices battery wear per kWh
    discharged: one price, or one per session (e.g. from the battery ageing model).
    """

    city: str
    grid: TimeGrid
    fleet: Fleet
    sites: SiteLimits
    tariff: Tariff
    signals: GridSignals
    degradation_cny_per_kwh: float | npt.NDArray[np.float64] = 0.0
    arrival_days: int = 1

    def __post_init__(self) -> None:
        if self.signals.base_load_kw.shape != (self.grid.length,):
            raise ValueError(
                f"city {self.city}: signals must cover the grid ({self.grid.length} steps)"
            )
        if self.fleet.n_sessions and int(self.fleet.site_index.max()) >= self.sites.n_sites:
            raise ValueError(f"city {self.city}: a session points to an unknown site")
        if self.arrival_days < 1:
            raise ValueError("arrival_days must be >= 1")
        price = self.degradation_cny_per_kwh
        if isinstance(price, np.ndarray) and price.shape != (self.fleet.n_sessions,):
            raise ValueError(
                f"city {self.city}: degradation_cny_per_kwh must be one price or one per "
                f"session ({self.fleet.n_sessions})"
            )

    @property
    def degradation(self) -> npt.NDArray[np.float64]:
        """Per session, the battery wear price, CNY per kWh discharged."""
        price = self.degradation_cny_per_kwh
        if isinstance(price, np.ndarray):
            return price
        return np.full(self.fleet.n_sessions, float(price))

    def plugged_steps(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Per session, its whole plugged steps ``[first, end)`` clipped to the grid."""
        first, end = self.grid.plugged_steps(self.fleet.arrival_s, self.fleet.departure_s)
        return np.clip(first, 0, self.grid.length), np.clip(end, 0, self.grid.length)

    @property
    def connected_vehicle_steps(self) -> int:
        """How many (vehicle, step) pairs have the vehicle plugged in for the whole step:
        what simulators count when they state vehicle-steps per second (a vehicle not yet
        arrived or gone costs them nothing), not the fleet's size times the grid's."""
        first, end = self.plugged_steps()
        return int((end - first).sum())
