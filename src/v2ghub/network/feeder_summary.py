"""What the report and ``summary.json`` keep of a city's feeders under one planner: counts
of feeder-steps outside the limits, the worst values, the duration curves and the worst
feeders. Small whatever the number of feeders."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from v2ghub.network.feeders import Feeder, FeederDay, feeder_day

FloatArray = npt.NDArray[np.float64]

DURATION_POINTS = 400
"""Points kept of each duration curve (quantiles of every feeder-step)."""
WORST_FEEDERS = 5


@dataclass(frozen=True)
class FeederWorst:
    """One of the feeders that fared worst (by its highest loading)."""

    name: str
    kind: str
    worst_loading: float
    """The highest transformer or line loading of its day (1.0 = its rating)."""
    min_vm_pu: float
    overloaded_steps: int
    voltage_out_steps: int


@dataclass(frozen=True)
class FeederSummary:
    """A city's feeders through one planner's day (every step of the run)."""

    feeders: int
    feeder_steps: int
    overloaded_steps: int
    """Feeder-steps with a transformer or line above its rating (or no power flow)."""
    voltage_out_steps: int
    """Feeder-steps with a bus voltage outside the band (or no power flow)."""
    unsolved_steps: int
    """Feeder-steps whose load no power flow could carry (counted in both above)."""
    feeders_overloaded: int
    feeders_voltage_out: int
    worst_loading: float
    min_vm_pu: float
    max_vm_pu: float
    power_flow_seconds: float
    loading_duration: FloatArray = field(default_factory=lambda: np.zeros(0))
    """Each feeder-step's highest loading, as quantiles from the highest down."""
    min_vm_duration: FloatArray = field(default_factory=lambda: np.zeros(0))
    """Each feeder-step's lowest voltage, as quantiles from the lowest up."""
    worst: tuple[FeederWorst, ...] = ()


def _quantiles(values: FloatArray, *, descending: bool) -> FloatArray:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return np.zeros(0)
    points = np.linspace(0.0, 1.0, min(DURATION_POINTS, finite.size))
    curve = np.quantile(finite, 1.0 - points if descending else points)
    return np.asarray(curve, dtype=np.float64)


def _extreme(values: FloatArray, reduce: str) -> float:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return float("nan")
    return float(finite.max() if reduce == "max" else finite.min())


def summarise_days(days: Sequence[FeederDay], *, seconds: float = 0.0) -> FeederSummary:
    """The summary of feeder-days already solved."""
    if not days:
        return FeederSummary(0, 0, 0, 0, 0, 0, 0, float("nan"), float("nan"), float("nan"), seconds)
    loading = np.stack([np.fmax(d.max_trafo_loading, d.max_line_loading) for d in days])
    min_vm = np.stack([d.min_vm_pu for d in days])
    max_vm = np.stack([d.max_vm_pu for d in days])
    overloaded = np.stack([d.overloaded for d in days])
    voltage_out = np.stack([d.voltage_out for d in days])
    unsolved = ~np.stack([d.converged for d in days])
    worst_order = np.argsort(-np.nan_to_num(np.nanmax(loading, axis=1, initial=0.0), nan=np.inf))
    worst = tuple(
        FeederWorst(
            name=days[k].name,
            kind=days[k].kind,
            worst_loading=_extreme(loading[k], "max"),
            min_vm_pu=_extreme(min_vm[k], "min"),
            overloaded_steps=int(overloaded[k].sum()),
            voltage_out_steps=int(voltage_out[k].sum()),
        )
        for k in worst_order[:WORST_FEEDERS]
    )
    return FeederSummary(
        feeders=len(days),
        feeder_steps=int(loading.size),
        overloaded_steps=int(overloaded.sum()),
        voltage_out_steps=int(voltage_out.sum()),
        unsolved_steps=int(unsolved.sum()),
        feeders_overloaded=int(overloaded.any(axis=1).sum()),
        feeders_voltage_out=int(voltage_out.any(axis=1).sum()),
        worst_loading=_extreme(loading, "max"),
        min_vm_pu=_extreme(min_vm, "min"),
        max_vm_pu=_extreme(max_vm, "max"),
        power_flow_seconds=seconds,
        loading_duration=_quantiles(loading.ravel(), descending=True),
        min_vm_duration=_quantiles(min_vm.ravel(), descending=False),
        worst=worst,
    )


def summarise_feeders(
    feeders: Sequence[Feeder], site_power_kw: FloatArray, load_scale: FloatArray
) -> FeederSummary:
    """Solve every feeder's day (``site_power_kw``: the run's sites x steps) and summarise."""
    began = time.process_time()
    days = [feeder_day(feeder, site_power_kw, load_scale) for feeder in feeders]
    return summarise_days(days, seconds=time.process_time() - began)
