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
``m_V`` are margins for what the linearisation leaves out (loading grows a little faster
than load: losses and the voltage drop), and the cap is never below zero. A site off every
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

from v2ghub.model.sites import SiteLimits
from v2ghub.network.feeders import VOLTAGE_BAND_PU, Feeder
from v2ghub.network.power_flow import FlowResult, bus_powers, solve_day

FloatArray = npt.NDArray[np.float64]

LOADING_MARGIN = 0.03
"""Of each rating, kept free for what the linear model leaves out."""
VOLTAGE_MARGIN_PU = 0.005
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


def _responses(feeder: Feeder, load_scale: FloatArray) -> tuple[FlowResult, list[FlowResult]]:
    """The base case and, per site of the feeder, the case with ``PROBE_KW`` more there."""
    model = feeder.model
    shape = feeder.base_scale * load_scale
    base_mw, base_mvar = bus_powers(model, shape)
    base = solve_day(model, base_mw, base_mvar)
    probes = []
    for column in range(feeder.site_rows.size):
        extra = feeder.site_to_bus_mw[:, column].toarray()[:, 0] * PROBE_KW
        probes.append(solve_day(model, base_mw + extra[:, None], base_mvar))
    return base, probes


def _import_caps(
    base: FlowResult, probes: Sequence[FlowResult], own_limit_kw: FloatArray
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
                    (p.trafo_loading - base.trafo_loading) / PROBE_KW,
                    (p.line_loading - base.line_loading) / PROBE_KW,
                    (base.vm_pu - p.vm_pu) / PROBE_KW,
                ]
            )
            for p in probes
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
        base, probes = _responses(feeder, load_scale)
        rows = feeder.site_rows
        caps = _import_caps(base, probes, sites.import_limit_kw[rows])
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
