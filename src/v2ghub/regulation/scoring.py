"""PJM-style performance scores of a fleet's response to a regulation signal, per hour.

Units and sign
--------------
``signal`` and ``response`` are fractions of the committed capacity on the same time steps
and in the same sign convention (:mod:`v2ghub.regulation.signals`): +1 = the fleet's power
moved by +capacity (more charging). The response is what the fleet did:
``(power_kw - baseline_power_kw) / capacity_kw``; it may overshoot +-1.

Scores (each 0 to 1)
--------------------
correlation
    The highest Pearson correlation of the signal with the response looked at ``delay``
    seconds later, for delays 0, 10, 20, ... 300 s; negative correlations score 0.
delay
    ``(max_delay_s - delay_s) / max_delay_s`` for the delay of that best correlation.
precision
    ``1 - mean(|response - signal|) / mean(|signal|)``, clipped to 0-1, on the samples as
    they are (no delay).
composite
    ``(correlation + delay + precision) / 3``: PJM weighs the three equally.

Mileage is ``sum(|signal[k] - signal[k-1]|) * capacity_mw``, in MW: how far the signal
asked the fleet to move. Everything is vectorised over samples; only delays are looped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from v2ghub.units import SECONDS_PER_HOUR

FloatArray = npt.NDArray[np.float64]

MAX_DELAY_S = 300.0
"""Longest delay tried for the correlation (PJM: five minutes)."""
DELAY_STEP_S = 10.0
"""Spacing of the delays tried (PJM: ten seconds)."""
_TIE = 1e-9  # correlations this close count as equal; the shorter delay wins


@dataclass(frozen=True)
class Score:
    """Performance of a response over one hour (all scores 0 to 1).

    Attributes
    ----------
    correlation
        Best correlation of signal and delayed response (negative counts as 0).
    delay
        ``(max_delay_s - delay_s) / max_delay_s``.
    precision
        ``1 - mean(|response - signal|) / mean(|signal|)``, clipped to 0-1.
    composite
        ``(correlation + delay + precision) / 3``.
    delay_s
        The delay of the best correlation, seconds.
    mileage_mw
        The signal's mileage in the hour times the capacity, MW.
    """

    correlation: float
    delay: float
    precision: float
    composite: float
    delay_s: float
    mileage_mw: float


def correlation_score(
    signal: npt.ArrayLike,
    response: npt.ArrayLike,
    *,
    step_s: float,
    max_delay_s: float = MAX_DELAY_S,
    delay_step_s: float = DELAY_STEP_S,
) -> tuple[float, float]:
    """The best correlation of ``signal`` with ``response`` delayed, and that delay.

    For each delay ``d`` in ``0, delay_step_s, ...`` up to ``max_delay_s`` the signal at
    ``t`` is paired with the response at ``t + d`` (linearly interpolated between samples
    when ``d`` is not a whole number of steps), over the samples where both exist; delays
    that leave fewer than two pairs are skipped. The Pearson correlation is taken for
    each; the highest wins, ties (within 1e-9) going to the shorter delay.

    Where the signal is constant over the pairs of a delay the correlation is undefined
    and that delay is skipped. A signal constant over the whole window scores 1 with a
    constant response (nothing asked, nothing done; any level, which precision judges)
    and 0 with a varying one, at delay 0; a constant response to a varying signal scores
    0. Negative correlations score 0.

    Returns
    -------
    tuple[float, float]
        The correlation (0-1) and the delay in seconds.
    """
    signal_2d, response_2d = _pair(signal, response)
    _check_step(step_s)
    delays_s = _delays(max_delay_s=max_delay_s, delay_step_s=delay_step_s)
    correlation, delay_s = _best_correlations(signal_2d, response_2d, step_s, delays_s)
    return float(correlation[0]), float(delay_s[0])


def delay_score(delay_s: float, *, max_delay_s: float = MAX_DELAY_S) -> float:
    """``(max_delay_s - delay_s) / max_delay_s``, clipped to 0-1 (delays in seconds)."""
    if not max_delay_s > 0:
        raise ValueError(f"max_delay_s must be > 0, got {max_delay_s}")
    return float(np.clip((max_delay_s - delay_s) / max_delay_s, 0.0, 1.0))


def precision_score(signal: npt.ArrayLike, response: npt.ArrayLike) -> float:
    """``1 - mean(|response - signal|) / mean(|signal|)``, clipped to 0-1.

    For a signal that is zero throughout the score is 1 if the response is zero too,
    else 0.
    """
    signal_2d, response_2d = _pair(signal, response)
    return float(_precisions(signal_2d, response_2d)[0])


def composite_score(*, correlation: float, delay: float, precision: float) -> float:
    """The mean of the three scores; PJM weighs them equally."""
    return (correlation + delay + precision) / 3


def mileage(values: npt.ArrayLike, *, capacity_mw: float) -> float:
    """Regulation mileage in MW: ``sum(|values[k] - values[k-1]|) * capacity_mw``.

    ``values`` are fractions of the capacity (-1 to 1); ``[0, 0.5, -0.5, 0]`` at 10 MW
    moves 0.5 + 1 + 0.5 = 2 capacities, 20 MW.
    """
    series = _series(values, "values")
    _check_capacity(capacity_mw)
    return float(np.abs(np.diff(series)).sum() * capacity_mw)


def score_hours(
    signal: npt.ArrayLike,
    response: npt.ArrayLike,
    *,
    capacity_mw: float,
    step_s: float,
    max_delay_s: float = MAX_DELAY_S,
    delay_step_s: float = DELAY_STEP_S,
) -> list[Score]:
    """Score each whole hour of ``response`` against ``signal`` (module docstring).

    Hours count from the first sample; a trailing part of an hour is not scored (so a
    series shorter than an hour gives an empty list). Delays are looked for within the
    hour. An hour's mileage includes the change from the previous hour's last sample, so
    the hours' mileages add up to :func:`mileage` of the scored samples.

    Parameters
    ----------
    signal, response
        Fractions of the committed capacity, one per step, same length.
    capacity_mw
        The committed capacity, MW (for the mileage).
    step_s
        Seconds between samples; an hour must be a whole number of steps.
    max_delay_s, delay_step_s
        The delays tried for the correlation, seconds.
    """
    signal_2d, response_2d = _pair(signal, response)
    _check_step(step_s)
    _check_capacity(capacity_mw)
    per_hour = SECONDS_PER_HOUR / step_s
    if abs(per_hour - round(per_hour)) > 1e-9 or round(per_hour) < 2:
        raise ValueError(f"an hour must be a whole number (>= 2) of steps, got step_s={step_s}")
    per_hour_n = round(per_hour)
    hours = signal_2d.size // per_hour_n
    if hours == 0:
        return []
    signal_h = signal_2d[0, : hours * per_hour_n].reshape(hours, per_hour_n)
    response_h = response_2d[0, : hours * per_hour_n].reshape(hours, per_hour_n)
    delays_s = _delays(max_delay_s=max_delay_s, delay_step_s=delay_step_s)
    correlation, delay_s = _best_correlations(signal_h, response_h, step_s, delays_s)
    delay = np.clip((max_delay_s - delay_s) / max_delay_s, 0.0, 1.0)  # delay_score, per hour
    precision = _precisions(signal_h, response_h)
    composite = (correlation + delay + precision) / 3
    changes = np.abs(np.diff(signal_h.ravel(), prepend=signal_h[0, 0]))
    mileage_mw = changes.reshape(hours, per_hour_n).sum(axis=1) * capacity_mw
    return [
        Score(
            correlation=float(correlation[h]),
            delay=float(delay[h]),
            precision=float(precision[h]),
            composite=float(composite[h]),
            delay_s=float(delay_s[h]),
            mileage_mw=float(mileage_mw[h]),
        )
        for h in range(hours)  # one object per hour, after the vectorised work
    ]


# --- vectorised work: rows are windows (hours), columns samples --------------------------


def _best_correlations(
    signal: FloatArray, response: FloatArray, step_s: float, delays_s: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per row: the best correlation (0-1) over ``delays_s`` and its delay in seconds."""
    rows, n = signal.shape
    table = np.full((rows, delays_s.size), -np.inf)
    for j, delay_s in enumerate(delays_s):  # delays, never samples
        shift = delay_s / step_s
        whole = math.floor(shift + 1e-9)
        fraction = shift - whole if shift - whole > 1e-9 else 0.0  # whole steps: no blend
        pairs = n - whole - (1 if fraction else 0)
        if pairs < 2:
            break  # longer delays leave even fewer pairs
        delayed = response[:, whole : whole + pairs]
        if fraction:
            delayed = (1 - fraction) * delayed + fraction * response[
                :, whole + 1 : whole + 1 + pairs
            ]
        table[:, j] = _pearson(signal[:, :pairs], delayed)
    table[np.isnan(table)] = -np.inf  # undefined: a constant stretch of signal
    best = table.max(axis=1)
    chosen = np.argmax(table >= best[:, None] - _TIE, axis=1)  # first, i.e. shortest, delay
    delay_s = delays_s[chosen]
    # Only a signal constant over the whole window has no defined correlation at any delay
    # (delay 0 pairs the whole window): nothing asked, and the response is judged as is.
    flat = np.isneginf(best)
    best[flat] = np.where(np.ptp(response[flat], axis=1) == 0, 1.0, 0.0)
    delay_s[flat] = 0.0
    return np.clip(best, 0.0, 1.0), delay_s


def _pearson(x: FloatArray, y: FloatArray) -> FloatArray:
    """Row-wise Pearson correlation: NaN where ``x`` is constant, 0 where only ``y`` is."""
    x_constant = np.ptp(x, axis=1) == 0  # not variance == 0: rounding blurs a constant's mean
    y_constant = np.ptp(y, axis=1) == 0
    x_scaled = _centred_and_scaled(x)  # r does not change with scale; this avoids underflow
    y_scaled = _centred_and_scaled(y)
    numerator = (x_scaled * y_scaled).sum(axis=1)
    denominator = np.sqrt((x_scaled * x_scaled).sum(axis=1) * (y_scaled * y_scaled).sum(axis=1))
    varying = ~x_constant & ~y_constant
    r = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=varying)
    return np.where(x_constant, np.nan, r)


def _centred_and_scaled(x: FloatArray) -> FloatArray:
    """Each row minus its mean, divided by its largest magnitude (rows of zeros stay)."""
    centred = x - x.mean(axis=1, keepdims=True)
    largest = np.abs(centred).max(axis=1, keepdims=True)
    scaled: FloatArray = np.divide(centred, largest, out=np.zeros_like(centred), where=largest > 0)
    return scaled


def _precisions(signal: FloatArray, response: FloatArray) -> FloatArray:
    error = np.abs(response - signal).mean(axis=1)
    size = np.abs(signal).mean(axis=1)
    fallback = np.where(error == 0, 0.0, 1.0).astype(np.float64)  # for an all-zero signal
    with np.errstate(over="ignore"):  # a tiny signal: the ratio is huge, precision 0
        ratio: FloatArray = np.divide(error, size, out=fallback, where=size > 0)
    return np.clip(1 - ratio, 0.0, 1.0)


def _delays(*, max_delay_s: float, delay_step_s: float) -> FloatArray:
    if not (math.isfinite(max_delay_s) and max_delay_s > 0):
        raise ValueError(f"max_delay_s must be > 0, got {max_delay_s}")
    if not (math.isfinite(delay_step_s) and 0 < delay_step_s <= max_delay_s):
        raise ValueError(
            f"delay_step_s must be > 0 and at most max_delay_s ({max_delay_s}), got {delay_step_s}"
        )
    count = math.floor(max_delay_s / delay_step_s + 1e-9) + 1
    return np.arange(count, dtype=np.float64) * delay_step_s


def _check_step(step_s: float) -> None:
    if not (math.isfinite(step_s) and step_s > 0):
        raise ValueError(f"step_s must be a positive number of seconds, got {step_s}")


def _check_capacity(capacity_mw: float) -> None:
    if not (math.isfinite(capacity_mw) and capacity_mw >= 0):
        raise ValueError(f"capacity_mw must be a finite number >= 0, got {capacity_mw}")


def _series(values: npt.ArrayLike, name: str) -> FloatArray:
    series = np.asarray(values, dtype=np.float64)
    if series.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {series.shape}")
    if not np.all(np.isfinite(series)):
        raise ValueError(f"{name} must be finite")
    return series


def _pair(signal: npt.ArrayLike, response: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Signal and response as one-row 2-D arrays, checked: same length, at least 2."""
    signal_1d = _series(signal, "signal")
    response_1d = _series(response, "response")
    if signal_1d.shape != response_1d.shape:
        raise ValueError(
            f"signal and response must have the same length, got {signal_1d.size} "
            f"and {response_1d.size}"
        )
    if signal_1d.size < 2:
        raise ValueError(f"need at least 2 samples, got {signal_1d.size}")
    return signal_1d[None, :], response_1d[None, :]
