"""What a planner may know of the sessions still to come: groups, not vehicles.

An aggregator does not know which vehicle will plug in at 19:10 tonight, but it knows, from
experience, roughly how many vehicles arrive at each site in each hour, when they leave and
what they need. The twin gives a planner that asks for it (``capabilities.expected_arrivals``)
exactly that: the sessions that have not arrived yet at the sites with a limit, summed per
(site, arrival hour, departure hour) into one row each. A row arrives at its sessions'
mean arrival step and leaves at their mean departure step, holds their summed energies
and charger power, and never discharges. The planner's forecast error is added by the
planner (:class:`~v2ghub.planning.mpc.RecedingHorizonPlanner`), as for the base load.

Only sites with a limit are covered: at a site without one, later arrivals take nothing
from the vehicles plugged in now.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from v2ghub.model.fleet import Fleet

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ExpectedGroups:
    """Groups of sessions still to come, one entry per group.

    Steps are counted from the planning instant: a group plugs in for steps
    ``arrival_step .. departure_step - 1`` (``arrival_step >= 1``).
    """

    site_index: IntArray
    arrival_step: IntArray
    departure_step: IntArray
    energy_kwh: FloatArray
    energy_min_kwh: FloatArray
    energy_max_kwh: FloatArray
    target_energy_kwh: FloatArray
    max_charge_kw: FloatArray
    charge_efficiency: FloatArray
    discharge_efficiency: FloatArray

    @property
    def n_groups(self) -> int:
        """Number of groups."""
        return int(self.site_index.shape[0])


class ExpectedArrivals:
    """The groups of sessions still to come at each step of a run.

    Parameters
    ----------
    fleet:
        The run's fleet in arrival order.
    first_step, end_step:
        Each session's first plugged step and the step it has left by, on the run's grid
        (``first_step`` ascending).
    site_limited:
        Per site, whether it has an import or export limit.
    steps_per_group:
        Steps per arrival and departure window of a group (an hour).
    """

    def __init__(
        self,
        *,
        fleet: Fleet,
        first_step: IntArray,
        end_step: IntArray,
        site_limited: npt.NDArray[np.bool_],
        steps_per_group: int,
    ) -> None:
        if steps_per_group < 1:
            raise ValueError(f"steps_per_group must be >= 1, got {steps_per_group}")
        if np.any(np.diff(first_step) < 0):
            raise ValueError("first_step must be in ascending (arrival) order")
        self.fleet = fleet
        self.first_step = first_step
        self.end_step = end_step
        self.counted = np.flatnonzero(site_limited[fleet.site_index] & (end_step > first_step))
        windows = int(end_step.max(initial=0)) // steps_per_group + 1
        arrival_window = first_step[self.counted] // steps_per_group
        departure_window = (end_step[self.counted] - 1) // steps_per_group
        site = fleet.site_index[self.counted].astype(np.int64)
        self.key = (site * windows + arrival_window) * windows + departure_window

    def after(self, step: int) -> ExpectedGroups:
        """The groups of the sessions that arrive after ``step``, steps counted from it."""
        start = np.searchsorted(self.first_step[self.counted], step, side="right")
        chosen = self.counted[start:]
        keys, group = np.unique(self.key[start:], return_inverse=True)
        group = group.reshape(-1)
        count = np.bincount(group, minlength=keys.size).astype(np.float64)
        fleet = self.fleet

        def total(values: FloatArray) -> FloatArray:
            return np.bincount(group, weights=values[chosen], minlength=keys.size).astype(
                np.float64
            )

        mean_first = total(self.first_step.astype(np.float64)) / np.maximum(count, 1)
        mean_end = total(self.end_step.astype(np.float64)) / np.maximum(count, 1)
        arrival = np.maximum(np.rint(mean_first) - step, 1)
        departure = np.maximum(np.rint(mean_end) - step, arrival + 1)
        site = np.zeros(keys.size, dtype=np.int64)
        site[group] = fleet.site_index[chosen]
        return ExpectedGroups(
            site_index=site,
            arrival_step=arrival.astype(np.int64),
            departure_step=departure.astype(np.int64),
            energy_kwh=total(fleet.energy_arrival_kwh),
            energy_min_kwh=total(fleet.energy_min_kwh),
            energy_max_kwh=total(fleet.energy_max_kwh),
            target_energy_kwh=total(fleet.target_energy_kwh),
            max_charge_kw=total(fleet.max_charge_kw),
            charge_efficiency=total(fleet.charge_efficiency) / np.maximum(count, 1),
            discharge_efficiency=total(fleet.discharge_efficiency) / np.maximum(count, 1),
        )
