"""Live regulation scoring (:mod:`v2ghub.regulation.live_score`): the fleet's response from
the chargers' power readings, on the signal's grid, scored as the twin's hours are."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2ghub.regulation.live_score import (
    HourResponse,
    ShareColumns,
    committed_hours,
    hour_response,
    live_regulation_hours,
    score_response,
)
from v2ghub.regulation.scoring import score_hours
from v2ghub.regulation.signals import synthetic_signal

T0 = datetime(2026, 7, 16, 2, tzinfo=UTC)  # 10:00 in Beijing
T0_US = int(T0.timestamp()) * 1_000_000
STEP_US = 2_000_000
HOUR_US = 3_600_000_000
N = HOUR_US // STEP_US
GRID_US = T0_US + STEP_US * np.arange(N, dtype=np.int64)
AGE_US = 10_000_000
SIGNAL = synthetic_signal("dynamic", duration_s=3600, step_s=2.0, seed=7, start=T0).values

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Readings:
    pair: IntArray
    measured_at_us: IntArray
    power_kw: FloatArray


def readings(rows: list[tuple[int, int, float]]) -> Readings:
    return Readings(
        pair=np.array([r[0] for r in rows], dtype=np.int64),
        measured_at_us=np.array([r[1] for r in rows], dtype=np.int64),
        power_kw=np.array([r[2] for r in rows], dtype=np.float64),
    )


def shares(
    *rows: tuple[int, int, int, float, float, float],
) -> ShareColumns:
    """Rows of (pair, from_us, until_us, baseline, raise, lower); one EVSE per row."""
    return ShareColumns(
        pair=np.array([r[0] for r in rows], dtype=np.int64),
        evse=np.arange(len(rows), dtype=np.int64),
        from_us=np.array([r[1] for r in rows], dtype=np.int64),
        until_us=np.array([r[2] for r in rows], dtype=np.int64),
        baseline_kw=np.array([r[3] for r in rows], dtype=np.float64),
        raise_share_kw=np.array([r[4] for r in rows], dtype=np.float64),
        lower_share_kw=np.array([r[5] for r in rows], dtype=np.float64),
    )


# Two EVSEs share a 10 kW commitment: 6 kW and 4 kW per unit of signal each way.
TWO = shares(
    (0, T0_US, T0_US + HOUR_US, 5.0, 6.0, 6.0), (1, T0_US, T0_US + HOUR_US, -3.0, 4.0, 4.0)
)


def follow(signal: FloatArray, *, delay_samples: int = 0, silent_after: int = N) -> Readings:
    """Both EVSEs doing what they were told, ``delay_samples`` late; EVSE 1 sends nothing
    from grid sample ``silent_after`` on."""
    acted = np.concatenate((np.zeros(delay_samples), signal[: N - delay_samples]))
    power_0 = 5.0 + 6.0 * acted
    power_1 = -3.0 + 4.0 * acted
    rows = [(0, int(t), float(p)) for t, p in zip(GRID_US, power_0, strict=True)]
    rows += [(1, int(t), float(p)) for t, p in zip(GRID_US[:silent_after], power_1, strict=False)]
    return readings(rows)


def respond(share_columns: ShareColumns, found: Readings, *, pairs: int = 2) -> HourResponse:
    return hour_response(
        start_us=T0_US,
        step_us=STEP_US,
        signal_at_us=GRID_US,
        signal=SIGNAL,
        shares=share_columns,
        readings=found,
        pairs=pairs,
        capacity_kw=10.0,
        max_reading_age_us=AGE_US,
    )


def test_a_perfect_follower_scores_one() -> None:
    hour = respond(TWO, follow(SIGNAL))
    np.testing.assert_allclose(hour.response, SIGNAL, atol=1e-12)
    score = score_response(hour, capacity_kw=10.0, step_s=2.0)
    assert score.composite == pytest.approx(1.0)
    assert (score.delay_s, hour.reporting_share, hour.evse_count) == (0.0, 1.0, 2)
    assert score.mileage_mw == pytest.approx(np.abs(np.diff(SIGNAL)).sum() * 0.010)
    # Told: baselines 5 - 3 kW for an hour plus 10 kW x the signal's mean.
    assert hour.expected_energy_kwh == pytest.approx(2.0 + 10.0 * SIGNAL.mean() * 1.0)
    assert hour.measured_energy_kwh == pytest.approx(hour.expected_energy_kwh)
    assert hour.served_us.tolist() == [HOUR_US, HOUR_US]


def test_a_delayed_follower_loses_its_delay_as_the_formula_says() -> None:
    """20 s late (ten samples): the best correlation is at 20 s, delay (300 - 20) / 300."""
    hour = respond(TWO, follow(SIGNAL, delay_samples=10))
    score = score_response(hour, capacity_kw=10.0, step_s=2.0)
    assert score.delay_s == 20.0
    assert score.delay == pytest.approx(280 / 300)
    assert score.correlation == pytest.approx(1.0)
    assert score.precision < 1.0
    assert score.composite == pytest.approx((score.correlation + score.delay + score.precision) / 3)


def test_a_charger_that_falls_silent_counts_as_its_baseline_and_does_not_score_perfect() -> None:
    """EVSE 1 (4 of the 10 kW) stops reporting half-way: for 10 s its last reading
    stands (held, not following), then it counts as its baseline, so the response is 0.6
    of the signal."""
    hour = respond(TWO, follow(SIGNAL, silent_after=N // 2))
    half = N // 2
    held = half + AGE_US // STEP_US  # the last reading stands for 10 s more
    np.testing.assert_allclose(hour.response[:half], SIGNAL[:half], atol=1e-12)
    np.testing.assert_allclose(
        hour.response[half:held], 0.6 * SIGNAL[half:held] + 0.4 * SIGNAL[half - 1], atol=1e-12
    )
    np.testing.assert_allclose(hour.response[held:], 0.6 * SIGNAL[held:], atol=1e-12)
    assert hour.reporting_share == pytest.approx((N + held) / (2 * N))
    score = score_response(hour, capacity_kw=10.0, step_s=2.0)
    assert score.precision < 0.9
    assert score.composite < 0.97


def test_an_hour_nobody_reported_in_scores_zero_but_keeps_its_mileage() -> None:
    hour = respond(TWO, readings([]))
    score = score_response(hour, capacity_kw=10.0, step_s=2.0)
    assert (score.correlation, score.delay, score.precision, score.composite) == (0, 0, 0, 0)
    assert score.mileage_mw == pytest.approx(np.abs(np.diff(SIGNAL)).sum() * 0.010)
    assert hour.measured_energy_kwh == pytest.approx(2.0)  # both at their baselines


def test_a_small_hour_by_hand() -> None:
    """Steps of 900 s: grid 0, 900, 1800, 2700 s. Signal 0.5 from 0 s, -0.5 from 1000 s,
    so s = [0.5, 0.5, -0.5, -0.5]. Capacity 10 kW.

    EVSE A (pair 0, baseline 4, raise 6, lower 6) all hour: readings 7 kW at -5 s, 7 kW at
    895 s, 1 kW at 1795 s, none later (2700 - 1795 > 60 s: silent, counts as 4).
    EVSE B (pair 1, baseline -2, raise 4, lower 2) from 1000 s: reading -3 kW at 1790 s and
    -3 kW at 2690 s.
    Response: [(7-4)/10, (7-4)/10, ((1-4) + (-3+2))/10, (0 + (-3+2))/10]
            = [0.3, 0.3, -0.4, -0.1].
    Told: A 4+3, 4+3, 4-3, 4-3 and B -2-1, -2-1: 7+7+1+1-3-3 = 10 kW-samples x 0.25 h =
    2.5 kWh. Measured: 7+7+1+4 -3-3 = 13 x 0.25 = 3.25 kWh.
    Precision: 1 - mean(|0.2, 0.2, 0.1, 0.4|) / mean(0.5) = 1 - 0.225 / 0.5 = 0.55.
    Served: A 3,600 s; B 2,600 s.
    """
    second = 1_000_000
    hour = hour_response(
        start_us=T0_US,
        step_us=900 * second,
        signal_at_us=np.array([T0_US, T0_US + 1000 * second], dtype=np.int64),
        signal=np.array([0.5, -0.5]),
        shares=shares(
            (0, T0_US - 60 * second, T0_US + HOUR_US, 4.0, 6.0, 6.0),
            (1, T0_US + 1000 * second, T0_US + 2 * HOUR_US, -2.0, 4.0, 2.0),
        ),
        readings=readings(
            [
                (0, T0_US - 5 * second, 7.0),
                (0, T0_US + 895 * second, 7.0),
                (0, T0_US + 1795 * second, 1.0),
                (1, T0_US + 1790 * second, -3.0),
                (1, T0_US + 2690 * second, -3.0),
            ]
        ),
        pairs=2,
        capacity_kw=10.0,
        max_reading_age_us=60 * second,
    )
    assert hour.signal.tolist() == [0.5, 0.5, -0.5, -0.5]
    np.testing.assert_allclose(hour.response, [0.3, 0.3, -0.4, -0.1], atol=1e-12)
    assert hour.expected_energy_kwh == pytest.approx(2.5)
    assert hour.measured_energy_kwh == pytest.approx(3.25)
    assert hour.evse_samples == 6
    assert hour.reporting_share == pytest.approx(5 / 6)
    assert hour.served_us.tolist() == [3600 * second, 2600 * second]
    score = score_response(hour, capacity_kw=10.0, step_s=900.0)
    assert score.precision == pytest.approx(0.55)


def test_a_step_that_does_not_divide_the_hour_is_refused() -> None:
    with pytest.raises(ValueError, match="an hour must be a whole number"):
        hour_response(
            start_us=T0_US,
            step_us=7_000_000,
            signal_at_us=GRID_US,
            signal=SIGNAL,
            shares=TWO,
            readings=follow(SIGNAL),
            pairs=2,
            capacity_kw=10.0,
            max_reading_age_us=AGE_US,
        )


# --- a property: the response is the hand formula, the composite within 0..1 ------------

HAND_STEP_S = 600
HAND_N = 3600 // HAND_STEP_S


def hand_response(
    share_rows: list[tuple[int, int, int, float, float, float]],
    reading_rows: list[tuple[int, int, float]],
    signal_rows: list[tuple[int, float]],
    *,
    capacity_kw: float,
    age_us: int,
) -> list[float]:
    """The module docstring's formula, one sample and one EVSE at a time."""
    out = []
    for k in range(HAND_N):
        t = T0_US + k * HAND_STEP_S * 1_000_000
        total = 0.0
        for pair, begins, ends, baseline, _, _ in share_rows:
            if not begins <= t < ends:
                continue
            mine = [r for r in reading_rows if r[0] == pair and r[1] <= t]
            latest = max(mine, key=lambda r: r[1]) if mine else None
            if latest is not None:
                # Of several readings at the latest instant, the last given.
                latest = [r for r in mine if r[1] == latest[1]][-1]
            if latest is not None and t - latest[1] <= age_us:
                total += latest[2] - baseline
        out.append(total / capacity_kw)
    return out


minute = st.integers(min_value=-10, max_value=70).map(lambda m: T0_US + m * 60_000_000)
kw = st.floats(min_value=-20, max_value=20, allow_nan=False)


@st.composite
def hours(draw: st.DrawFn) -> dict[str, object]:
    share_rows = []
    for _ in range(draw(st.integers(0, 4))):
        begins, ends = sorted((draw(minute), draw(minute)))
        share_rows.append(
            (
                draw(st.integers(0, 2)),
                begins,
                ends,
                draw(st.floats(-10, 10)),
                draw(st.floats(0, 10)),
                draw(st.floats(0, 10)),
            )
        )
    reading_rows = draw(st.lists(st.tuples(st.integers(0, 2), minute, kw), max_size=20))
    reading_rows.sort(key=lambda r: (r[0], r[1]))  # the store's order; stable on ties
    signal_rows = sorted(
        draw(st.lists(st.tuples(minute, st.floats(-1, 1)), max_size=8, unique_by=lambda r: r[0]))
    )
    return {
        "shares": share_rows,
        "readings": reading_rows,
        "signals": signal_rows,
        "capacity_kw": draw(st.floats(1, 50)),
        "age_us": draw(st.integers(0, 30)) * 60_000_000,
    }


@settings(max_examples=150, deadline=None)
@given(hours())
def test_the_response_is_the_hand_formula_and_the_composite_stays_within_0_1(
    case: dict[str, object],
) -> None:
    share_rows = case["shares"]
    reading_rows = case["readings"]
    signal_rows = case["signals"]
    capacity_kw = case["capacity_kw"]
    age_us = case["age_us"]
    assert isinstance(share_rows, list)
    assert isinstance(reading_rows, list)
    assert isinstance(signal_rows, list)
    assert isinstance(capacity_kw, float)
    assert isinstance(age_us, int)
    hour = hour_response(
        start_us=T0_US,
        step_us=HAND_STEP_S * 1_000_000,
        signal_at_us=np.array([r[0] for r in signal_rows], dtype=np.int64),
        signal=np.array([r[1] for r in signal_rows], dtype=np.float64),
        shares=shares(*share_rows),
        readings=readings(reading_rows),
        pairs=3,
        capacity_kw=capacity_kw,
        max_reading_age_us=age_us,
    )
    expected = hand_response(
        share_rows, reading_rows, signal_rows, capacity_kw=capacity_kw, age_us=age_us
    )
    np.testing.assert_allclose(hour.response, expected, rtol=1e-9, atol=1e-9)
    score = score_response(hour, capacity_kw=capacity_kw, step_s=HAND_STEP_S)
    assert 0.0 <= score.composite <= 1.0
    if hour.evse_samples and hour.reporting_share > 0:
        twin = score_hours(
            hour.signal, hour.response, capacity_mw=capacity_kw / 1000, step_s=HAND_STEP_S
        )[0]
        assert score == twin


# --- committed hours, and the whole read through a source -------------------------------


@dataclass(frozen=True)
class Commitment:
    commitment_id: int
    starts_at: datetime
    ends_at: datetime
    capacity_kw: float
    recorded_at: datetime
    cancelled_at: datetime | None = None


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_committed_hours_are_whole_clock_hours_and_the_last_recorded_takes_an_overlap() -> None:
    """#1 10:30-14:00 (local), cancelled at 13:20; #2 recorded later, 12:00-13:00.
    #1 holds 11-12 (10:30-11 is a part-hour) and loses 12-13 to #2; 13-14 was cancelled."""
    first = Commitment(1, at(30), at(240), 10.0, at(-60), cancelled_at=at(200))
    second = Commitment(2, at(120), at(180), 20.0, at(-30))
    hours = committed_hours([second, first], start=at(-120), end=at(600), timezone="Asia/Shanghai")
    assert [(c.commitment_id, h.isoformat()) for c, h in hours] == [
        (1, "2026-07-16T11:00:00+08:00"),
        (2, "2026-07-16T12:00:00+08:00"),
    ]
    alone = committed_hours([first], start=at(90), end=at(600), timezone="UTC")
    assert [h.isoformat() for _, h in alone] == ["2026-07-16T04:00:00+00:00"]


@dataclass(frozen=True)
class Signal:
    at: datetime
    signal: float


@dataclass(frozen=True)
class Share:
    commitment_id: int | None
    station_id: str
    evse_id: int
    transaction_id: str
    from_at: datetime
    baseline_kw: float
    raise_share_kw: float
    lower_share_kw: float


class Source:
    """One commitment 10:00-11:00 (local) of 10 kW; EVSE S1/1 follows it with T1 until
    10:30, when T2 takes over on the same EVSE; both follow perfectly."""

    def commitments(
        self, *, overlapping: tuple[datetime, datetime] | None = None
    ) -> list[Commitment]:
        return [Commitment(7, T0, T0 + timedelta(hours=1), 10.0, T0 - timedelta(days=1))]

    def signals(self, *, start: datetime, end: datetime) -> list[Signal]:
        return [Signal(T0 + timedelta(seconds=2 * k), float(v)) for k, v in enumerate(SIGNAL)]

    def shares(self, *, commitment_id: int | None = None) -> list[Share]:
        return [
            Share(7, "S1", 1, "T1", T0 - timedelta(minutes=1), 1.0, 10.0, 10.0),
            Share(7, "S1", 1, "T2", at(30), 2.0, 10.0, 10.0),
        ]

    def power_readings(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        start: datetime,
        end: datetime,
    ) -> Readings:
        assert list(pairs) == [("S1", "T1"), ("S1", "T2")]
        assert (start, end) == (T0 - timedelta(seconds=10), T0 + timedelta(hours=1))
        half = N // 2
        return readings(
            [(0, int(t), 1.0 + 10 * s) for t, s in zip(GRID_US[:half], SIGNAL, strict=False)]
            + [
                (1, int(t), 2.0 + 10 * s)
                for t, s in zip(GRID_US[half:], SIGNAL[half:], strict=True)
            ]
        )


def test_live_regulation_hours_reads_a_source_and_scores_its_hours() -> None:
    [hour] = live_regulation_hours(Source(), at(-600), at(600), timezone="Asia/Shanghai")
    assert (hour.commitment_id, hour.start.isoformat(), hour.capacity_kw) == (
        7,
        "2026-07-16T10:00:00+08:00",
        10.0,
    )
    assert hour.composite == pytest.approx(1.0)
    assert (hour.evse_count, hour.samples, hour.reporting_share) == (1, N, 1.0)
    assert [(s.transaction_id, s.served_us) for s in hour.served] == [
        ("T1", HOUR_US // 2),
        ("T2", HOUR_US // 2),
    ]
    assert hour.expected_energy_kwh == pytest.approx(0.5 * 1.0 + 0.5 * 2.0 + 10 * SIGNAL.mean())


def test_times_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="start must be timezone-aware"):
        live_regulation_hours(Source(), datetime(2026, 7, 16), at(600))  # noqa: DTZ001
