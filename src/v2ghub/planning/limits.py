"""Site limits for rule-based planners: scale a step's setpoints into every site's limits."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    """``numerator / denominator`` clipped to [0, 1], 1 where the denominator is 0."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.where(denominator > 0, numerator / denominator, 1.0)
    return np.asarray(np.clip(np.nan_to_num(ratio, nan=1.0, posinf=1.0), 0.0, 1.0))


def site_totals(site_index: IntArray, values: FloatArray, n_sites: int) -> FloatArray:
    """Sum of ``values`` per site."""
    return np.asarray(np.bincount(site_index, weights=values, minlength=n_sites), dtype=np.float64)


def fit_site_limits(
    *,
    charge_kw: FloatArray,
    discharge_kw: FloatArray,
    must_charge_kw: FloatArray,
    site_index: IntArray,
    import_limit_kw: FloatArray,
    export_limit_kw: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Scale one step's charge and discharge powers so every site stays within its limits.

    Per site ``s`` with charging ``C`` and discharging ``D`` (both >= 0, kW):
    ``-export_limit_kw[s] <= C - D <= import_limit_kw[s]``. Discharge is cut first where
    the site would export too much; charging is cut where it would import too much, the
    ``must_charge_kw`` part (energy that cannot wait) last: it keeps its share until the
    optional part is gone.

    Returns
    -------
    (charge_kw, discharge_kw), both >= 0.
    """
    n_sites = import_limit_kw.shape[0]
    total_charge = site_totals(site_index, charge_kw, n_sites)
    total_discharge = site_totals(site_index, discharge_kw, n_sites)

    # Export: discharge may exceed charging by at most the export limit.
    discharge_scale = _ratio(total_charge + export_limit_kw, total_discharge)
    discharge_kw = discharge_kw * discharge_scale[site_index]
    total_discharge = total_discharge * discharge_scale

    # Import: charging may exceed (the remaining) discharge by at most the import limit.
    allowed = import_limit_kw + total_discharge
    must = np.minimum(must_charge_kw, charge_kw)
    total_must = site_totals(site_index, must, n_sites)
    must_scale = _ratio(allowed, total_must)
    optional_scale = _ratio(allowed - total_must, total_charge - total_must)
    optional_scale = np.where(total_must >= allowed, 0.0, optional_scale)
    charge_kw = must * must_scale[site_index] + (charge_kw - must) * optional_scale[site_index]
    return charge_kw, discharge_kw
