"""Tests of PJM-style performance scoring: hand-worked examples and invariants."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from v2ghub.regulation.scoring import (
    composite_score,
    correlation_score,
    delay_score,
    mileage,
    precision_score,
    score_hours,
)
from v2ghub.regulation.signals import synthetic_signal

HOUR_S = 3600.0


def dynamic_hours(hours: int, *, seed: int = 1) -> np.ndarray:
    return synthetic_signal("dynamic", duration_s=hours * HOUR_S, step_s=2.0, seed=seed).values


# --- hand-worked examples ----------------------------------------------------------------


def test_perfect_follower_scores_one_on_each_part() -> None:
    signal = dynamic_hours(1)
    [score] = score_hours(signal, signal.copy(), capacity_mw=10.0, step_s=2.0)
    assert score.correlation == pytest.approx(1.0, abs=1e-12)
    assert score.delay == 1.0
    assert score.precision == 1.0
    assert score.composite == pytest.approx(1.0, abs=1e-12)
    assert score.delay_s == 0.0


def test_response_20_s_late_is_found_at_20_s() -> None:
    signal = dynamic_hours(1)
    response = np.concatenate([np.zeros(10), signal[:-10]])  # 10 steps of 2 s
    correlation, delay_s = correlation_score(signal, response, step_s=2.0)
    assert delay_s == 20.0
    assert correlation == pytest.approx(1.0, abs=1e-12)
    [score] = score_hours(signal, response, capacity_mw=1.0, step_s=2.0)
    assert score.delay_s == 20.0
    assert score.delay == pytest.approx((300 - 20) / 300)
    assert score.correlation == pytest.approx(1.0, abs=1e-12)
    assert score.precision < 0.9  # compared unshifted, the lag costs precision


def test_delay_between_samples_is_interpolated() -> None:
    signal = synthetic_signal("dynamic", duration_s=HOUR_S, step_s=4.0, seed=2).values
    response = np.concatenate([np.zeros(5), signal[:-5]])  # 20 s at 4 s steps
    correlation, delay_s = correlation_score(signal, response, step_s=4.0)
    assert correlation == pytest.approx(1.0, abs=1e-12)
    assert delay_s == 20.0
    # 10 s is 2.5 steps: the response halfway between its samples 2 and 3 steps later
    signal_10 = 0.5 * (signal[:-3] + signal[1:-2])
    response_10 = np.concatenate([np.zeros(3), signal_10])
    assert correlation_score(signal, response_10, step_s=4.0)[1] == 10.0


def test_half_amplitude_response_has_precision_one_half() -> None:
    signal = dynamic_hours(1)
    [score] = score_hours(signal, 0.5 * signal, capacity_mw=1.0, step_s=2.0)
    assert score.precision == pytest.approx(0.5)
    assert score.correlation == pytest.approx(1.0, abs=1e-12)
    assert score.delay == 1.0
    assert score.composite == pytest.approx(2.5 / 3)


def test_precision_worked_by_hand() -> None:
    signal = [0.5, -0.5, 1.0, -1.0, 0.25, -0.25]  # mean |signal| = 3.5 / 6
    response = [0.4, -0.5, 0.8, -1.0, 0.25, 0.0]  # errors 0.1, 0, 0.2, 0, 0, 0.25: 0.55 / 6
    assert precision_score(signal, response) == pytest.approx(1 - 0.55 / 3.5)  # 59/70
    assert precision_score(signal, response) == pytest.approx(59 / 70)


def test_precision_is_clipped_at_zero() -> None:
    assert precision_score([0.1, -0.1], [1.0, -1.0]) == 0.0  # error 0.9, size 0.1


def test_correlation_worked_by_hand() -> None:
    # delay 0: x = [1, 0, -1, 0], y = [1, 1, -1, -1]: 2 / sqrt(2 * 4) = 0.7071
    # delay 10 s: x = [1, 0, -1], y = [1, -1, -1] (mean -1/3):
    #   sum x*(y - mean) = 4/3 + 2/3 = 2, sum x^2 = 2, sum (y - mean)^2 = 24/9
    #   r = 2 / sqrt(2 * 24/9) = sqrt(3)/2 = 0.8660
    correlation, delay_s = correlation_score(
        [1.0, 0.0, -1.0, 0.0], [1.0, 1.0, -1.0, -1.0], step_s=10.0, max_delay_s=10.0
    )
    assert correlation == pytest.approx(math.sqrt(3) / 2)
    assert delay_s == 10.0


def test_one_step_late_scores_by_hand() -> None:
    signal = [0.0, 1.0, 0.0, -1.0, 0.0, 1.0, 0.0, -1.0]
    response = [0.0, 0.0, 1.0, 0.0, -1.0, 0.0, 1.0, 0.0]
    correlation, delay_s = correlation_score(signal, response, step_s=10.0, max_delay_s=20.0)
    assert correlation == pytest.approx(1.0)
    assert delay_s == 10.0
    assert delay_score(delay_s, max_delay_s=20.0) == 0.5


def test_negative_correlation_scores_zero() -> None:
    # delay 0: r = -1; delay 10 s: x = [1, 0, -1], y = [0, 1, 0]: r = 0
    correlation, delay_s = correlation_score(
        [1.0, 0.0, -1.0, 0.0], [-1.0, 0.0, 1.0, 0.0], step_s=10.0, max_delay_s=10.0
    )
    assert (correlation, delay_s) == (0.0, 10.0)


def test_constant_signal_and_response() -> None:
    zeros = np.zeros(60)
    [idle] = score_hours(zeros, zeros, capacity_mw=5.0, step_s=60.0)
    assert (idle.correlation, idle.delay, idle.precision, idle.mileage_mw) == (1.0, 1.0, 1.0, 0.0)
    wobble = np.tile([0.1, -0.1], 30)
    [busy] = score_hours(zeros, wobble, capacity_mw=5.0, step_s=60.0)
    assert (busy.correlation, busy.precision) == (0.0, 0.0)
    # a flat response to a varying signal does not correlate
    assert correlation_score(wobble, np.full(60, 0.3), step_s=60.0)[0] == 0.0


@pytest.mark.parametrize(
    ("delay_s", "expected"), [(0.0, 1.0), (20.0, 280 / 300), (300.0, 0.0), (450.0, 0.0)]
)
def test_delay_score(delay_s: float, expected: float) -> None:
    assert delay_score(delay_s) == pytest.approx(expected)


def test_composite_is_the_plain_mean() -> None:
    assert composite_score(correlation=0.9, delay=0.6, precision=0.3) == pytest.approx(0.6)


def test_mileage_by_hand() -> None:
    assert mileage([0.0, 0.5, -0.5, 0.0], capacity_mw=10.0) == pytest.approx(20.0)
    assert mileage([0.3], capacity_mw=10.0) == 0.0


# --- hours -------------------------------------------------------------------------------


def test_hours_are_scored_apart_and_the_remainder_dropped() -> None:
    signal = dynamic_hours(3)[:4500]  # 2.5 hours at 2 s
    response = signal.copy()
    response[1800:3600] *= 0.5  # the second hour at half amplitude
    scores = score_hours(signal, response, capacity_mw=10.0, step_s=2.0)
    assert len(scores) == 2
    assert [s.precision for s in scores] == [1.0, pytest.approx(0.5)]
    total = mileage(signal[:3600], capacity_mw=10.0)
    assert sum(s.mileage_mw for s in scores) == pytest.approx(total)
    first_hour = mileage(signal[:1800], capacity_mw=10.0)
    assert scores[0].mileage_mw == pytest.approx(first_hour)
    assert score_hours(signal[:1799], signal[:1799], capacity_mw=1.0, step_s=2.0) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: score_hours([0, 1, 0], [0, 1], capacity_mw=1, step_s=2),
            "same length, got 3 and 2",
        ),
        (lambda: score_hours([0, 1], [0, 1], capacity_mw=1, step_s=7), "whole number .* step_s=7"),
        (lambda: score_hours([0, 1], [0, 1], capacity_mw=1, step_s=0), "step_s must be a positive"),
        (lambda: precision_score([0, 1], [0, np.nan]), "response must be finite"),
        (lambda: mileage([0, 1], capacity_mw=-1), "capacity_mw must be a finite number >= 0"),
        (
            lambda: score_hours([0, 1], [0, 1], capacity_mw=np.inf, step_s=2),
            "capacity_mw must be a finite number >= 0, got inf",
        ),
        (lambda: precision_score([[0, 1]], [[0, 1]]), "signal must be a 1-D array"),
        (lambda: correlation_score([0.5], [0.5], step_s=2), "need at least 2 samples, got 1"),
        (lambda: correlation_score([0, 1], [0, 1], step_s=2, max_delay_s=0), "max_delay_s must"),
        (
            lambda: correlation_score([0, 1], [0, 1], step_s=2, delay_step_s=400),
            "delay_step_s must be > 0 and at most max_delay_s",
        ),
    ],
)
def test_bad_arguments_are_refused(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# --- invariants --------------------------------------------------------------------------


@st.composite
def hours_of_series(draw: st.DrawFn) -> tuple[float, np.ndarray, np.ndarray]:
    """A step (30-120 s), then one or two hours (and a bit) of signal and response.

    The signal is within -1..1; the response within -2..2, since a fleet may overshoot.
    """
    step_s = draw(st.sampled_from([30.0, 60.0, 120.0]))
    length = draw(st.integers(1, 2)) * round(HOUR_S / step_s) + draw(st.integers(0, 5))
    signal = draw(hnp.arrays(np.float64, length, elements=st.floats(-1, 1, allow_subnormal=False)))
    response = draw(
        hnp.arrays(np.float64, length, elements=st.floats(-2, 2, allow_subnormal=False))
    )
    return step_s, signal, response


@settings(deadline=None, max_examples=150)
@given(series=hours_of_series())
def test_scores_stay_within_0_and_1_and_composite_is_the_mean(
    series: tuple[float, np.ndarray, np.ndarray],
) -> None:
    step_s, signal, response = series
    scores = score_hours(signal, response, capacity_mw=2.0, step_s=step_s)
    assert len(scores) == signal.size // round(HOUR_S / step_s)
    for score in scores:
        for part in (score.correlation, score.delay, score.precision, score.composite):
            assert 0.0 <= part <= 1.0
        mean = (score.correlation + score.delay + score.precision) / 3
        assert score.composite == pytest.approx(mean, abs=1e-15)
        assert score.delay == pytest.approx((300 - score.delay_s) / 300)
        assert score.delay_s in set(range(0, 301, 10))
        assert score.mileage_mw >= 0.0


@settings(deadline=None, max_examples=150)
@given(series=hours_of_series())
def test_a_perfect_response_always_scores_one(
    series: tuple[float, np.ndarray, np.ndarray],
) -> None:
    step_s, signal, _ = series
    scores = score_hours(signal, signal.copy(), capacity_mw=1.0, step_s=step_s)
    assert scores
    for score in scores:
        assert score.correlation == pytest.approx(1.0, abs=1e-9)
        assert (score.delay, score.precision, score.delay_s) == (1.0, 1.0, 0.0)
        assert score.composite == pytest.approx(1.0, abs=1e-9)
