"""Site limits over the day that keep the feeders within their ratings, from a feeder model
linearised around each step's base case.

For each feeder and step ``t``, the AC power flow of the loads alone (the base case, no
charging) gives each transformer's and line's loading ``L_e(t)`` and each bus's voltage
``V_b(t)``; solving again with ``dP`` more at each of the feeder's sites in turn gives the
sensitivities ``s_ej(t) = dL_e / dP_j`` and ``u_bj(t) = -dV_b / dP_j`` (per kW of site
``j``'s net power, charging positive). Site ``j`` may then import, at step ``t``::

    P_j(t) <= min over e of  w_ej(t) (1 - m - L_e(t)) / s_ej(t)
                        and  w_bj(t) (V_b(t) - V_min - m_V) / u_bj(t)

over the elements it moves (``s > 0``), where ``w`` shares an element's headroom among the
sites that move it in proportion to ``s_ej I_j`` (``I_j`` its own import limit), ``m`` and
``m_V`` are small margins, and the cap is never below zero. Loading and the voltage drop
grow a little faster than load (losses, and the current a lower voltage needs for the
same power), so the sensitivities are then taken again along the chord from the base
case to that first cap, and the lower cap kept: the chord is steeper than the tangent at
the base, so the cap stands just below the true limit. A site off every
feeder keeps its limits. Discharge (V2G) back into the feeder is held within the site's
export limit and within the voltage rise the same sensitivities allow at every step.

The planners that see the feeders get these caps through :class:`SiteCaps`: the room a cap
takes from the site's own import limit is load at the site that is not theirs to plan
(``Problem.site_load_kw``, which every planner honours), and the export limit they see is
lowered by the most that load takes in the day, so the room for discharge never grows.
The twin then checks every run with the full AC power flow and reports what is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from v2ghub import defaults
from v2ghub.model.fleet import Fleet
from v2ghub.model.sites import SiteLimits
from v2ghub.model.time_grid import TimeGrid
from v2ghub.network.feeders import VOLTAGE_BAND_PU, Feeder
from v2ghub.network.power_flow import FlowResult, bus_powers, solve_day
from v2ghub.units import WH_PER_KWH

FloatArray = npt.NDArray[np.float64]

LOADING_MARGIN = defaults.FEEDER_LOADING_MARGIN
"""Of each rating, kept free for what the linear model leaves out."""
VOLTAGE_MARGIN_PU = defaults.FEEDER_VOLTAGE_MARGIN_PU
PROBE_KW = 50.0
"""The step of the finite differences: about what a few home chargers draw."""
MOVES = 1e-9
"""Sensitivities below this (per kW) do not tie a site to an element."""


@dataclass(frozen=True)
class SiteCaps:
    """What the feeders allow each site, for the planners that see them."""

    import_cap_kw: FloatArray
    """Sites x steps: the most the site's vehicles may import (``inf``: no feeder)."""
    import_limit_kw: FloatArray
    """Per site, the import limit the planners see: the site's own, or for a site with
    none under a feeder, the highest its cap reaches."""
    reserved_kw: FloatArray
    """Sites x steps: the room the cap takes from ``import_limit_kw`` (0 where none):
    the planners' ``site_load_kw``."""
    export_limit_kw: FloatArray
    """Per site, the export limit the planners see: within the feeder's voltage rise at
    every step, less the most ``reserved_kw`` takes in the day."""

    def window(self, step: int, horizon: int) -> FloatArray:
        """``reserved_kw`` over ``horizon`` steps from ``step`` (zeros past the day)."""
        out = np.zeros((self.reserved_kw.shape[0], horizon))
        available = max(min(horizon, self.reserved_kw.shape[1] - step), 0)
        out[:, :available] = self.reserved_kw[:, step : step + available]
        return out


def _responses(
    feeder: Feeder, load_scale: FloatArray, probe_kw: FloatArray
) -> tuple[FlowResult, list[FlowResult]]:
    """The base case and, per site of the feeder, the case with ``probe_kw`` (sites of the
    feeder x steps) more there."""
    model = feeder.model
    shape = feeder.base_scale * load_scale
    base_mw, base_mvar = bus_powers(model, shape)
    base = solve_day(model, base_mw, base_mvar)
    probes = []
    for column in range(feeder.site_rows.size):
        spread = feeder.site_to_bus_mw[:, column].toarray()[:, 0]
        extra = spread[:, None] * probe_kw[column][None, :]
        probes.append(solve_day(model, base_mw + extra, base_mvar))
    return base, probes


def _import_caps(
    base: FlowResult, probes: Sequence[FlowResult], probe_kw: FloatArray, own_limit_kw: FloatArray
) -> FloatArray:
    """Per site of the feeder and step, the import the linear model allows (see module)."""
    low = VOLTAGE_BAND_PU[0] + VOLTAGE_MARGIN_PU
    loading = np.concatenate([base.trafo_loading, base.line_loading])
    headroom = np.concatenate(
        [np.nan_to_num(1.0 - LOADING_MARGIN - loading, nan=0.0), base.vm_pu - low]
    )
    headroom = np.nan_to_num(headroom, nan=0.0)
    sensitivity = np.stack(
        [
            np.concatenate(
                [
                    (p.trafo_loading - base.trafo_loading) / probe[None],
                    (p.line_loading - base.line_loading) / probe[None],
                    (base.vm_pu - p.vm_pu) / probe[None],
                ]
            )
            for p, probe in zip(probes, probe_kw, strict=True)
        ]
    )  # sites x elements x steps
    sensitivity = np.nan_to_num(sensitivity, nan=0.0)
    moves = sensitivity > MOVES
    limits = np.where(np.isfinite(own_limit_kw), own_limit_kw, 1.0)
    weight = np.where(moves, sensitivity * limits[:, None, None], 0.0)
    share = weight / np.maximum(weight.sum(axis=0, keepdims=True), MOVES)
    with np.errstate(divide="ignore", invalid="ignore"):
        allowed = np.where(moves, share * np.maximum(headroom, 0.0)[None] / sensitivity, np.inf)
    return np.asarray(np.maximum(allowed.min(axis=1), 0.0), dtype=np.float64)


def _export_caps(base: FlowResult, probes: Sequence[FlowResult]) -> FloatArray:
    """Per site of the feeder, the discharge the voltage rise allows at every step."""
    high = VOLTAGE_BAND_PU[1] - VOLTAGE_MARGIN_PU
    rise_room = np.nan_to_num(high - base.vm_pu, nan=0.0)
    caps = []
    for probe in probes:
        rise = np.nan_to_num((base.vm_pu - probe.vm_pu) / PROBE_KW, nan=0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            allowed = np.where(rise > MOVES, np.maximum(rise_room, 0.0) / rise, np.inf)
        caps.append(float(allowed.min()) if allowed.size else np.inf)
    return np.asarray(caps, dtype=np.float64)


def feeder_caps(feeders: Sequence[Feeder], sites: SiteLimits, load_scale: FloatArray) -> SiteCaps:
    """The caps of every site over ``load_scale``'s steps (the city's base load per step
    over its peak), as the module says."""
    steps = load_scale.size
    import_cap = np.full((sites.n_sites, steps), np.inf)
    export_limit = sites.export_limit_kw.astype(np.float64).copy()
    for feeder in feeders:
        rows = feeder.site_rows
        own = sites.import_limit_kw[rows]
        first = np.full((rows.size, steps), PROBE_KW)
        base, probes = _responses(feeder, load_scale, first)
        tangent = _import_caps(base, probes, first, own)
        # Loading and voltage drop grow faster than load: the slope of the chord from the
        # base case to the first estimate is steeper than at the base, and the cap it
        # gives stands below the true limit, close to it.
        chord = np.where(np.isfinite(tangent) & (tangent > PROBE_KW), tangent, PROBE_KW)
        _, chords = _responses(feeder, load_scale, chord)
        caps = np.minimum(tangent, _import_caps(base, chords, chord, own))
        import_cap[rows] = np.minimum(import_cap[rows], caps)
        export_limit[rows] = np.minimum(export_limit[rows], _export_caps(base, probes))
    own = sites.import_limit_kw.astype(np.float64)
    limited = np.isfinite(import_cap)
    # An unlimited site under a feeder is limited by it: the cap's highest value stands
    # for its own limit.
    highest = np.where(limited, import_cap, 0.0).max(axis=1, initial=0.0)
    ceiling = np.where(np.isfinite(own), own, np.where(limited.any(axis=1), highest, np.inf))
    ceiling = ceiling[:, None]
    with np.errstate(invalid="ignore"):  # inf - inf off the feeders, where 0 is taken
        reserved = np.where(limited, np.clip(ceiling - import_cap, 0.0, ceiling), 0.0)
    export_seen = np.maximum(export_limit - reserved.max(axis=1, initial=0.0), 0.0)
    return SiteCaps(
        import_cap_kw=import_cap,
        import_limit_kw=np.asarray(ceiling[:, 0], dtype=np.float64),
        reserved_kw=np.asarray(reserved, dtype=np.float64),
        export_limit_kw=np.asarray(export_seen, dtype=np.float64),
    )


def feeder_shortfall_kwh(fleet: Fleet, grid: TimeGrid, caps: SiteCaps) -> float:
    """Energy short at departure (battery side, kWh) that the feeders' caps leave no room
    for, beyond what each vehicle's own plugged time and charger make unavoidable.

    Per capped site, a maximum flow in Wh on the grid side: source -> each vehicle (its
    need the charger could meet, over its efficiency) -> each step it is plugged (its
    charger's energy in a step) -> the step (the cap's energy) -> sink. What the flow
    cannot carry is the feeder's; it is given back on the battery side at the site's
    need-weighted charging efficiency.
    """
    first, end = grid.plugged_steps(fleet.arrival_s, fleet.departure_s)
    end = np.minimum(end, grid.length)
    steps = np.clip(end - first, 0, None)
    reachable = np.minimum(
        fleet.energy_max_kwh,
        fleet.energy_arrival_kwh
        + fleet.max_charge_kw * fleet.charge_efficiency * grid.dt_h * steps,
    )
    need_kwh = np.maximum(
        np.minimum(fleet.target_energy_kwh, reachable) - fleet.energy_arrival_kwh, 0.0
    )
    capped = np.flatnonzero(np.isfinite(caps.import_cap_kw).any(axis=1))
    short_kwh = 0.0
    for site in capped:  # a few per thousand vehicles: one small flow each
        rows = np.flatnonzero((fleet.site_index == site) & (need_kwh > 0))
        if not rows.size:
            continue
        cap_wh = caps.import_cap_kw[site, : grid.length] * grid.dt_h * WH_PER_KWH
        need_wh = need_kwh[rows] / fleet.charge_efficiency[rows] * WH_PER_KWH
        carried_wh = _max_flow_wh(
            need_wh,
            fleet.max_charge_kw[rows] * grid.dt_h * WH_PER_KWH,
            first[rows],
            end[rows],
            cap_wh,
        )
        short_grid_wh = max(float(need_wh.sum()) - carried_wh, 0.0)
        efficiency = float(np.average(fleet.charge_efficiency[rows], weights=need_wh))
        short_kwh += short_grid_wh * efficiency / WH_PER_KWH
    return short_kwh


def _max_flow_wh(
    need_wh: FloatArray,
    step_wh: FloatArray,
    first: npt.NDArray[np.int64],
    end: npt.NDArray[np.int64],
    cap_wh: FloatArray,
) -> float:
    """The most energy (Wh, rounded down to whole Wh) the vehicles can take through the
    site's steps: the maximum flow of the network the caller describes."""
    from scipy.sparse import csr_array  # noqa: PLC0415
    from scipy.sparse.csgraph import maximum_flow  # noqa: PLC0415

    n, horizon = need_wh.size, cap_wh.size
    source, sink = 0, 1 + n + horizon
    counts = np.maximum(end - first, 0)
    vehicle = np.repeat(np.arange(n), counts)
    step = first[vehicle] + (
        np.arange(vehicle.size) - np.repeat(np.cumsum(counts) - counts, counts)
    )
    tails = np.concatenate([np.full(n, source), 1 + vehicle, 1 + n + np.arange(horizon)])
    heads = np.concatenate([1 + np.arange(n), 1 + n + step, np.full(horizon, sink)])
    capacity = np.concatenate([need_wh, step_wh[vehicle], np.maximum(cap_wh, 0.0)])
    graph = csr_array(
        (np.floor(np.minimum(capacity, 2**31 - 1)).astype(np.int32), (tails, heads)),
        shape=(sink + 1, sink + 1),
    )
    return float(maximum_flow(graph, source, sink).flow_value)
