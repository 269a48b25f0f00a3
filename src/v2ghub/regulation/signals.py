"""Regulation signals and grid frequency traces: types, seeded synthetic ones, CSV files.

Sign convention
---------------
A regulation signal is a fraction of the fleet's committed regulation capacity, -1 to 1,
in the project's power convention (positive = charging, :mod:`v2ghub.units`):

    requested_power_kw = baseline_power_kw + signal * capacity_kw

so **+1 asks the fleet to move its power by +capacity** (charge more or discharge less:
it absorbs surplus power, "regulation down" in grid terms) and **-1 by -capacity** (charge
less or discharge more: "regulation up"). Frequency above 50 Hz therefore goes with a
positive signal.

CSV files of signals and frequency traces are read by :mod:`v2ghub.scenarios.signals_csv`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

NOMINAL_FREQUENCY_HZ = 50.0
"""Nominal grid frequency in China."""
FREQUENCY_LIMIT_HZ = 0.2
"""Allowed deviation from nominal (GB/T 15945-2008); synthetic traces stay within it."""
DEADBAND_HZ = 0.05
"""Typical primary-response deadband (FACTS.md): deviations within it ask for nothing."""
FREQUENCY_FILE_RANGE_HZ = (45.0, 55.0)
"""Frequencies a file may hold: anything outside is not a 50 Hz grid measurement."""
NEUTRAL_WINDOW_S = 900.0
"""Dynamic signals are energy-neutral over each window of this length from the start."""
DEFAULT_START = datetime(2025, 7, 16, tzinfo=UTC)
"""Start of synthetic series unless one is given."""

# Synthetic shapes (seconds and fractions of capacity). Each noise component is white
# noise through two identical first-order low-pass filters of time constant tau, scaled to
# unit variance; its autocorrelation is (1 + |lag|/tau) * exp(-|lag|/tau), 1/e at 2.15 tau.
DYNAMIC_TAU_S = 20.0
DYNAMIC_SCALE = 0.7  # standard deviation before clipping at +-1
TRADITIONAL_TAU_S = 90.0
TRADITIONAL_SCALE = 0.3
TRADITIONAL_DRIFT_TAU_S = 900.0  # a slow drift that gives hours a non-zero mean
TRADITIONAL_DRIFT_SCALE = 0.25
FREQUENCY_TAU_S = 30.0
MAX_FREQUENCY_STD_HZ = 0.1
_NEUTRALITY_PASSES = 8
_WARM_UP_TAUS = 10.0


@dataclass(frozen=True)
class RegulationSignal:
    """A regulation signal sampled every ``step_s`` seconds from ``start``.

    Attributes
    ----------
    start
        Instant of the first sample (timezone-aware).
    step_s
        Seconds between samples (> 0); sample ``k`` holds from ``start + k * step_s``.
    values
        Fractions of the committed capacity, -1 to 1; +1 moves the fleet's power by
        +capacity (more charging), -1 by -capacity. A read-only copy of what was given.
    """

    start: datetime
    step_s: float
    values: FloatArray

    def __post_init__(self) -> None:
        _check_time_base("RegulationSignal", self.start, self.step_s)
        values = _frozen_series("RegulationSignal.values", self.values)
        if np.any(np.abs(values) > 1.0):
            raise ValueError("RegulationSignal.values must be within -1 to 1")
        object.__setattr__(self, "values", values)

    @property
    def duration_s(self) -> float:
        """Seconds covered: number of samples times ``step_s``."""
        return self.values.size * self.step_s


@dataclass(frozen=True)
class FrequencyTrace:
    """Grid frequency sampled every ``step_s`` seconds from ``start``.

    Attributes
    ----------
    start
        Instant of the first sample (timezone-aware).
    step_s
        Seconds between samples (> 0).
    frequency_hz
        Measured frequency in Hz, each within 45-55 Hz. A read-only copy of what was given.
    """

    start: datetime
    step_s: float
    frequency_hz: FloatArray

    def __post_init__(self) -> None:
        _check_time_base("FrequencyTrace", self.start, self.step_s)
        frequency_hz = _frozen_series("FrequencyTrace.frequency_hz", self.frequency_hz)
        low, high = FREQUENCY_FILE_RANGE_HZ
        if np.any((frequency_hz < low) | (frequency_hz > high)):
            raise ValueError(f"FrequencyTrace.frequency_hz must be within {low}-{high} Hz")
        object.__setattr__(self, "frequency_hz", frequency_hz)

    @property
    def deviation_hz(self) -> FloatArray:
        """Frequency minus the 50 Hz nominal, Hz (positive = surplus generation)."""
        return self.frequency_hz - NOMINAL_FREQUENCY_HZ


def synthetic_signal(
    kind: Literal["dynamic", "traditional"],
    *,
    duration_s: float,
    step_s: float = 2.0,
    seed: int,
    start: datetime = DEFAULT_START,
) -> RegulationSignal:
    """A seeded synthetic regulation signal, ``floor(duration_s / step_s)`` samples long.

    ``"dynamic"`` (like PJM's RegD): smoothed noise with tau = 20 s, scaled to a standard
    deviation of 0.7 and clipped at +-1, then made energy-neutral over each 900 s window
    from ``start`` (a trailing part window too): eight passes subtract the window's mean
    times a raised-cosine weight (zero at the window's edges, so no step appears between
    windows) and re-clip; then the larger side of the window (positive or negative) is
    scaled down to match the other, so each window's mean is zero to rounding (below
    1e-12). Measured over 20 seeds x 24 h at 2 s: std 0.58; autocorrelation falls to 1/e
    at ~41 s; |signal| >= 0.99 on ~9% of samples, reached ~12 times an hour (about half
    at +1, half at -1); mileage ~83 a hour (sum of |change|, in units of capacity); steps
    below 0.33 a 2 s sample.

    ``"traditional"`` (like PJM's RegA): 0.3 times smoothed noise with tau = 90 s plus
    0.25 times a drift with tau = 900 s, clipped at +-1, not neutralised. Measured as
    above: std 0.38; autocorrelation 1/e at ~560 s; |signal| >= 0.99 on ~1% of samples;
    hourly means with a spread (std) of 0.2, up to about +-0.6; mileage ~9.5 a hour,
    about a ninth of the dynamic signal's.

    Each noise component is white noise through two identical first-order low-pass
    filters, scaled to unit variance (autocorrelation ``(1 + |lag|/tau) exp(-|lag|/tau)``).
    The statistics are in seconds whatever ``step_s``; the same ``seed`` gives the same
    signal. No loop runs over samples.

    Raises
    ------
    ValueError
        For an unknown ``kind``, a non-positive ``step_s`` or a duration under one step.
    """
    n = _sample_count(duration_s=duration_s, step_s=step_s)
    rng = np.random.default_rng(seed)
    if kind == "dynamic":
        raw = DYNAMIC_SCALE * _smooth_noise(rng, n, step_s=step_s, tau_s=DYNAMIC_TAU_S)
        values = _neutralise(np.clip(raw, -1.0, 1.0), step_s=step_s)
    elif kind == "traditional":
        fast = _smooth_noise(rng, n, step_s=step_s, tau_s=TRADITIONAL_TAU_S)
        drift = _smooth_noise(rng, n, step_s=step_s, tau_s=TRADITIONAL_DRIFT_TAU_S)
        raw = TRADITIONAL_SCALE * fast + TRADITIONAL_DRIFT_SCALE * drift
        values = np.clip(raw, -1.0, 1.0)
    else:
        raise ValueError(f"kind must be 'dynamic' or 'traditional', got {kind!r}")
    return RegulationSignal(start=start, step_s=float(step_s), values=values)


def synthetic_frequency(
    *,
    duration_s: float,
    step_s: float = 1.0,
    seed: int,
    std_hz: float = 0.03,
    start: datetime = DEFAULT_START,
) -> FrequencyTrace:
    """A seeded synthetic grid frequency around 50 Hz, ``floor(duration_s / step_s)`` long.

    The deviation is smoothed noise with tau = 30 s (autocorrelation 1/e at ~64 s) and
    standard deviation ``std_hz``, capped at +-0.2 Hz (GB/T 15945-2008). Measured at the
    default 0.03 Hz (20 seeds x 24 h at 1 s): it leaves the +-0.05 Hz deadband on ~9.5%
    of samples, in ~9.5 excursions an hour lasting ~36 s on average (median 28 s, 90% under
    76 s); the largest deviation in a day is ~0.11 Hz, so the cap is practically never
    reached.

    Raises
    ------
    ValueError
        For a non-positive ``step_s``, a duration under one step, or ``std_hz`` outside
        (0, 0.1] Hz (at 0.1 Hz about 5% of samples already sit at the +-0.2 Hz cap).
    """
    n = _sample_count(duration_s=duration_s, step_s=step_s)
    if not 0.0 < std_hz <= MAX_FREQUENCY_STD_HZ:
        raise ValueError(f"std_hz must be within (0, {MAX_FREQUENCY_STD_HZ}] Hz, got {std_hz}")
    rng = np.random.default_rng(seed)
    deviation_hz = std_hz * _smooth_noise(rng, n, step_s=step_s, tau_s=FREQUENCY_TAU_S)
    deviation_hz = np.clip(deviation_hz, -FREQUENCY_LIMIT_HZ, FREQUENCY_LIMIT_HZ)
    return FrequencyTrace(
        start=start, step_s=float(step_s), frequency_hz=NOMINAL_FREQUENCY_HZ + deviation_hz
    )


# --- synthetic shapes --------------------------------------------------------------------


def _sample_count(*, duration_s: float, step_s: float) -> int:
    if not (math.isfinite(step_s) and step_s > 0):
        raise ValueError(f"step_s must be a positive number of seconds, got {step_s}")
    if not (math.isfinite(duration_s) and duration_s >= step_s):
        raise ValueError(f"duration_s must be at least one step ({step_s} s), got {duration_s}")
    return math.floor(duration_s / step_s + 1e-9)  # 3600 / 0.1 is 35999.99...


def _smooth_noise(rng: np.random.Generator, n: int, *, step_s: float, tau_s: float) -> FloatArray:
    """``n`` samples of stationary unit-variance noise, twice low-pass filtered (tau_s).

    The filter is ``(1 - a)^2 / (1 - a z^-1)^2`` with ``a = exp(-step_s / tau_s)``; its
    output variance for unit white noise is ``(1 - a)^4 (1 + a^2) / (1 - a^2)^3``, which
    scales it to one. Ten time constants of warm-up are drawn and dropped, so the start
    is already stationary.
    """
    from scipy.signal import lfilter  # noqa: PLC0415 - 0.9 s to import; regulation runs only

    a = math.exp(-step_s / tau_s)
    warm_up = math.ceil(_WARM_UP_TAUS * tau_s / step_s)
    white = rng.standard_normal(n + warm_up)
    filtered = np.asarray(lfilter([(1 - a) ** 2], [1.0, -2 * a, a * a], white), np.float64)
    variance = (1 - a) ** 4 * (1 + a * a) / (1 - a * a) ** 3
    return filtered[warm_up:] / math.sqrt(variance)


def _neutralise(values: FloatArray, *, step_s: float) -> FloatArray:
    """``values`` (within +-1) made zero-mean over each window of NEUTRAL_WINDOW_S."""
    n = values.size
    window = (np.arange(n) * step_s // NEUTRAL_WINDOW_S).astype(np.int64)
    count = np.bincount(window).astype(np.float64)
    first = np.cumsum(count) - count
    position = np.arange(n) - first[window]
    weight = 1.0 - np.cos(2 * np.pi * (position + 0.5) / count[window])
    weight /= (np.bincount(window, weights=weight) / count)[window]  # mean 1 per window
    for _ in range(_NEUTRALITY_PASSES):  # passes, not samples: each is vectorised
        mean = np.bincount(window, weights=values) / count
        values = np.clip(values - mean[window] * weight, -1.0, 1.0)
    positive = np.bincount(window, weights=np.maximum(values, 0.0))
    negative = np.bincount(window, weights=np.maximum(-values, 0.0))
    shrink_positive = np.divide(negative, positive, out=np.ones_like(positive), where=positive > 0)
    shrink_negative = np.divide(positive, negative, out=np.ones_like(negative), where=negative > 0)
    factor = np.where(
        values > 0,
        np.minimum(shrink_positive, 1.0)[window],
        np.minimum(shrink_negative, 1.0)[window],
    )
    return values * factor


# --- checks and files --------------------------------------------------------------------


def _check_time_base(owner: str, start: datetime, step_s: float) -> None:
    if start.utcoffset() is None:
        raise ValueError(f"{owner}.start must be timezone-aware, got {start!r}")
    if not (math.isfinite(step_s) and step_s > 0):
        raise ValueError(f"{owner}.step_s must be a positive number of seconds, got {step_s}")


def _frozen_series(name: str, values: npt.ArrayLike) -> FloatArray:
    series = np.array(values, dtype=np.float64)  # a copy: the caller's array stays theirs
    if series.ndim != 1 or series.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {series.shape}")
    if not np.all(np.isfinite(series)):
        raise ValueError(f"{name} must be finite")
    series.setflags(write=False)
    return series
