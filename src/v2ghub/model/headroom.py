"""How far each vehicle's power can move from its plan and hold there: headroom that lasts.

Regulation capacity (:mod:`v2ghub.regulation.capacity`), the planners' regulation term
(:mod:`v2ghub.planning.reserve`), the flexibility envelope and demand response all read
it from here.

Directions in the project's sign convention (+ charging, - discharging):

- ``raise_kw``: how far a vehicle's power can go *up* from its planned power (more
  charging, less discharging): the grid's "regulation down";
- ``lower_kw``: how far it can go *down* (less charging, more discharging): the grid's
  "regulation up".

A vehicle offers only what it can hold at full deflection for the whole ``duration_h``
on top of its planned power ``planned_kw``, and only if it stays plugged that long:

- power: ``raise <= max_charge_kw - planned``; ``lower <= planned + max_discharge_kw``
  (``max_discharge_kw`` is 0 for a vehicle that did not opt in to V2G);
- energy: after ``duration_h`` at ``planned - lower`` the stored energy stays at or above
  its floor, the larger of ``energy_min_kwh`` and what the vehicle needs then to still
  reach its target by departure at the power it can count on (``refill_kw``: its
  charger's, or its share of a limited site's); at ``planned + raise`` it stays at or
  below ``energy_max_kwh``.

With ``g(p) = charge_efficiency * p`` for ``p >= 0`` and ``p / discharge_efficiency``
below (stored energy per hour at charger power ``p``), the energy bounds are
``planned - lower >= g^-1((floor - e) / duration_h)`` and
``planned + raise <= g^-1((energy_max - e) / duration_h)``. A promise built from these
holds for any signal within -1..1 of it for the whole duration: no vehicle leaves its SoC
window or ends below its departure need because of regulation. A vehicle that could not
reach its target at ``refill_kw`` from now on offers nothing downwards.

Sites (:func:`fit_sites`): at a site with planned net power ``P`` and limits
``-export_limit <= P <= import_limit``, all its vehicles raising at once may add at most
``import_limit - P`` and all lowering at once may take at most ``P + export_limit``; each
vehicle's headroom is scaled by its site's ratio, ``min(1, allowed / wanted)``. At a
limited site a vehicle refills at its share of the site (:func:`site_share`),
``refill_kw = max_charge_kw * min(1, import_limit / sum of the site's chargers)``.
:func:`site_headroom` is the whole recipe, for a :class:`PluggedFleet`.

This module is the one home of this arithmetic (and of ``g``, :func:`stored_rate_kwh_per_h`
and its inverse :func:`power_for_stored_rate`): the regulation service, the flexibility
envelope, demand response and the planners' headroom term call it; the fast planner's
compiled kernels repeat ``g`` in scalar form (:mod:`v2ghub.planning._fast_kernels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from v2ghub.model.problem import Problem

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Headroom:
    """Per vehicle, kW it can move its power by and hold for the duration."""

    raise_kw: FloatArray
    lower_kw: FloatArray

    @property
    def raise_total_kw(self) -> float:
        """The fleet's headroom upwards (the grid's regulation down), kW."""
        return float(self.raise_kw.sum())

    @property
    def lower_total_kw(self) -> float:
        """The fleet's headroom downwards (the grid's regulation up), kW."""
        return float(self.lower_kw.sum())


@dataclass(frozen=True)
class PluggedFleet:
    """The plugged vehicles at one moment, as headroom reads them (arrays of the same rows),
    and the limits of the sites ``site_index`` points into."""

    planned_kw: FloatArray
    energy_kwh: FloatArray
    energy_min_kwh: FloatArray
    energy_max_kwh: FloatArray
    target_energy_kwh: FloatArray
    max_charge_kw: FloatArray
    max_discharge_kw: FloatArray
    charge_efficiency: FloatArray
    discharge_efficiency: FloatArray
    site_index: IntArray
    import_limit_kw: FloatArray
    export_limit_kw: FloatArray

    @staticmethod
    def of(
        problem: Problem, planned_kw: FloatArray, energy_kwh: FloatArray | None = None
    ) -> PluggedFleet:
        """The first ``planned_kw.size`` rows of ``problem`` (its plugged vehicles, or all
        of its rows) at ``planned_kw``, holding ``energy_kwh`` (default: the problem's
        energy now), and the problem's site limits."""
        rows = slice(0, planned_kw.size)
        return PluggedFleet(
            planned_kw=planned_kw.astype(np.float64),
            energy_kwh=problem.energy_kwh[rows] if energy_kwh is None else energy_kwh,
            energy_min_kwh=problem.energy_min_kwh[rows],
            energy_max_kwh=problem.energy_max_kwh[rows],
            target_energy_kwh=problem.target_energy_kwh[rows],
            max_charge_kw=problem.max_charge_kw[rows],
            max_discharge_kw=problem.max_discharge_kw[rows],
            charge_efficiency=problem.charge_efficiency[rows],
            discharge_efficiency=problem.discharge_efficiency[rows],
            site_index=problem.site_index[rows],
            import_limit_kw=problem.import_limit_kw,
            export_limit_kw=problem.export_limit_kw,
        )


def stored_rate_kwh_per_h(
    power_kw: FloatArray, charge_efficiency: FloatArray, discharge_efficiency: FloatArray
) -> FloatArray:
    """Stored energy gained per hour at charger power ``power_kw``: ``g(p)``.

    ``g(p) = charge_efficiency * max(p, 0) - max(-p, 0) / discharge_efficiency``.
    """
    return np.asarray(
        np.maximum(power_kw, 0.0) * charge_efficiency
        - np.maximum(-power_kw, 0.0) / discharge_efficiency
    )


def power_for_stored_rate(
    rate_kwh_per_h: FloatArray, charge_efficiency: FloatArray, discharge_efficiency: FloatArray
) -> FloatArray:
    """Charger power that changes stored energy at ``rate_kwh_per_h``: ``g^-1``.

    ``g^-1(r) = r / charge_efficiency`` for ``r >= 0``, ``r * discharge_efficiency`` below.
    """
    return np.where(
        rate_kwh_per_h >= 0,
        rate_kwh_per_h / charge_efficiency,
        rate_kwh_per_h * discharge_efficiency,
    )


def headroom(
    *,
    planned_kw: FloatArray,
    energy_kwh: FloatArray,
    energy_min_kwh: FloatArray,
    energy_max_kwh: FloatArray,
    target_energy_kwh: FloatArray,
    max_charge_kw: FloatArray,
    max_discharge_kw: FloatArray,
    charge_efficiency: FloatArray,
    discharge_efficiency: FloatArray,
    hours_to_departure: FloatArray,
    duration_h: float,
    refill_kw: FloatArray | None = None,
) -> Headroom:
    """What each vehicle can promise for ``duration_h`` (see the module docstring).

    ``refill_kw`` is the charging power a vehicle can count on after the commitment to
    reach its target (default its charger's; less at a shared site, where the others
    charge too).
    """
    if duration_h <= 0:
        raise ValueError(f"duration_h must be > 0, got {duration_h}")
    stays = hours_to_departure >= duration_h
    after_h = np.maximum(hours_to_departure - duration_h, 0.0)
    refill = max_charge_kw if refill_kw is None else refill_kw
    need_floor = target_energy_kwh - after_h * refill * charge_efficiency
    floor = np.maximum(energy_min_kwh, need_floor)
    lowest_kw = power_for_stored_rate(
        (floor - energy_kwh) / duration_h, charge_efficiency, discharge_efficiency
    )
    highest_kw = power_for_stored_rate(
        (energy_max_kwh - energy_kwh) / duration_h, charge_efficiency, discharge_efficiency
    )
    # A vehicle behind the refill curve already (it could not reach its target at the
    # refill power from now on) counts on its plan for it: it offers nothing down. Every
    # other vehicle's room down then shrinks as the hold grows.
    behind = energy_kwh + hours_to_departure * refill * charge_efficiency < target_energy_kwh
    lower = np.where(behind, 0.0, np.minimum(planned_kw + max_discharge_kw, planned_kw - lowest_kw))
    upper = np.minimum(max_charge_kw - planned_kw, highest_kw - planned_kw)
    return Headroom(
        raise_kw=np.where(stays, np.maximum(upper, 0.0), 0.0),
        lower_kw=np.where(stays, np.maximum(lower, 0.0), 0.0),
    )


def fit_sites(
    room: Headroom,
    *,
    planned_kw: FloatArray,
    site_index: IntArray,
    import_limit_kw: FloatArray,
    export_limit_kw: FloatArray,
) -> Headroom:
    """Headroom scaled down site by site so that no deflection breaks a site limit.

    At a site with planned net power ``P``, all its vehicles raising at once may add at
    most ``import_limit - P``, and all lowering at once may take at most
    ``P + export_limit``; each vehicle's headroom is scaled by its site's ratio.
    """
    n_sites = import_limit_kw.shape[0]

    def total(values: FloatArray) -> FloatArray:
        return np.bincount(site_index, weights=values, minlength=n_sites).astype(np.float64)

    net = total(planned_kw)

    def ratio(allowed: FloatArray, wanted: FloatArray) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            scale = np.where(wanted > 0, np.maximum(allowed, 0.0) / wanted, 1.0)
        return np.asarray(np.clip(np.nan_to_num(scale, nan=1.0, posinf=1.0), 0.0, 1.0))

    raise_scale = ratio(import_limit_kw - net, total(room.raise_kw))
    lower_scale = ratio(net + export_limit_kw, total(room.lower_kw))
    return Headroom(
        raise_kw=room.raise_kw * raise_scale[site_index],
        lower_kw=room.lower_kw * lower_scale[site_index],
    )


def site_share(
    site_index: IntArray, max_charge_kw: FloatArray, import_limit_kw: FloatArray
) -> FloatArray:
    """Per vehicle, the share of its charger's power its site gives all at once:
    ``min(1, import_limit / sum of the site's chargers)``."""
    connected = np.bincount(site_index, weights=max_charge_kw, minlength=import_limit_kw.size)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        share = np.where(connected > 0, import_limit_kw / connected, 1.0)
    return np.asarray(np.clip(np.nan_to_num(share, nan=1.0), 0.0, 1.0)[site_index])


def site_headroom(
    fleet: PluggedFleet, *, hours_to_departure: FloatArray, duration_h: float
) -> Headroom:
    """What each vehicle can promise at its site: :func:`headroom` refilled at the
    vehicle's share of a limited site (:func:`site_share`), then :func:`fit_sites`."""
    room = headroom(
        planned_kw=fleet.planned_kw,
        energy_kwh=fleet.energy_kwh,
        energy_min_kwh=fleet.energy_min_kwh,
        energy_max_kwh=fleet.energy_max_kwh,
        target_energy_kwh=fleet.target_energy_kwh,
        max_charge_kw=fleet.max_charge_kw,
        max_discharge_kw=fleet.max_discharge_kw,
        charge_efficiency=fleet.charge_efficiency,
        discharge_efficiency=fleet.discharge_efficiency,
        hours_to_departure=hours_to_departure,
        duration_h=duration_h,
        refill_kw=fleet.max_charge_kw
        * site_share(fleet.site_index, fleet.max_charge_kw, fleet.import_limit_kw),
    )
    return fit_sites(
        room,
        planned_kw=fleet.planned_kw,
        site_index=fleet.site_index,
        import_limit_kw=fleet.import_limit_kw,
        export_limit_kw=fleet.export_limit_kw,
    )
