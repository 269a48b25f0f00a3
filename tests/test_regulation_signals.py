"""Tests of regulation signals and frequency traces: synthetic statistics and CSV files."""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest

from v2ghub.errors import InputError
from v2ghub.regulation.scoring import mileage
from v2ghub.regulation.signals import (
    FrequencyTrace,
    RegulationSignal,
    synthetic_frequency,
    synthetic_signal,
)
from v2ghub.scenarios.signals_csv import load_frequency_csv, load_signal_csv

DAY_S = 86_400.0
HOUR_S = 3600.0
QUARTER_S = 900.0
SEEDS = (0, 1, 2, 3, 4)


def one_over_e_lag_s(values: np.ndarray, step_s: float) -> float:
    """The first lag (s) at which the sample autocorrelation falls below 1/e."""
    centred = values - values.mean()
    spectrum = np.fft.rfft(centred, 2 * centred.size)
    autocovariance = np.fft.irfft(spectrum * np.conj(spectrum))[: centred.size]
    correlation = autocovariance / autocovariance[0]
    return float(np.argmax(correlation < np.exp(-1)) * step_s)


# --- dynamic (RegD-like) -----------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("step_s", [2.0, 4.0])
def test_dynamic_is_energy_neutral_over_every_quarter_hour(seed: int, step_s: float) -> None:
    signal = synthetic_signal("dynamic", duration_s=6 * HOUR_S, step_s=step_s, seed=seed)
    quarters = signal.values.reshape(24, -1)
    assert np.abs(quarters.mean(axis=1)).max() < 1e-12


def test_dynamic_trailing_part_window_is_neutral_too() -> None:
    signal = synthetic_signal("dynamic", duration_s=QUARTER_S + 300, step_s=2.0, seed=7)
    assert signal.values.size == 600
    assert abs(signal.values[:450].mean()) < 1e-12
    assert abs(signal.values[450:].mean()) < 1e-12


@pytest.mark.parametrize("seed", SEEDS)
def test_dynamic_stays_within_bounds_and_reaches_both_in_every_hour(seed: int) -> None:
    values = synthetic_signal("dynamic", duration_s=6 * HOUR_S, seed=seed).values
    assert np.abs(values).max() <= 1.0
    hours = values.reshape(6, -1)
    assert np.all(hours.max(axis=1) >= 0.99)
    assert np.all(hours.min(axis=1) <= -0.99)
    assert 0.04 < np.mean(np.abs(values) >= 0.99) < 0.2


def test_dynamic_statistics_match_the_docstring() -> None:
    values = synthetic_signal("dynamic", duration_s=DAY_S, seed=11).values
    assert 0.53 < values.std() < 0.63
    assert 30.0 <= one_over_e_lag_s(values, 2.0) <= 55.0
    assert 70.0 < mileage(values, capacity_mw=1.0) / 24 < 95.0
    assert np.abs(np.diff(values)).max() < 0.4  # no jumps at the quarter-hour boundaries


def test_statistics_are_in_seconds_whatever_the_step() -> None:
    at_2_s = synthetic_signal("dynamic", duration_s=DAY_S, step_s=2.0, seed=5).values
    at_4_s = synthetic_signal("dynamic", duration_s=DAY_S, step_s=4.0, seed=5).values
    assert at_4_s.size == at_2_s.size // 2
    assert at_4_s.std() == pytest.approx(at_2_s.std(), abs=0.03)
    assert one_over_e_lag_s(at_4_s, 4.0) == pytest.approx(one_over_e_lag_s(at_2_s, 2.0), abs=8)


# --- traditional (RegA-like) -------------------------------------------------------------


def test_traditional_is_slow_bounded_and_carries_hourly_means() -> None:
    values = synthetic_signal("traditional", duration_s=DAY_S, seed=11).values
    assert np.abs(values).max() <= 1.0
    assert 0.3 < values.std() < 0.5
    assert one_over_e_lag_s(values, 2.0) > 200.0
    hourly_means = values.reshape(24, -1).mean(axis=1)
    assert np.abs(hourly_means).max() > 0.15
    assert 0.1 < hourly_means.std() < 0.35


@pytest.mark.parametrize("seed", SEEDS)
def test_dynamic_has_several_times_the_mileage_of_traditional(seed: int) -> None:
    dynamic = synthetic_signal("dynamic", duration_s=4 * HOUR_S, seed=seed)
    traditional = synthetic_signal("traditional", duration_s=4 * HOUR_S, seed=seed)
    ratio = mileage(dynamic.values, capacity_mw=1.0) / mileage(traditional.values, capacity_mw=1.0)
    assert ratio > 4.0


# --- both kinds --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dynamic", "traditional"])
def test_same_seed_same_signal_other_seed_other_signal(
    kind: Literal["dynamic", "traditional"],
) -> None:
    def make(seed: int) -> RegulationSignal:
        return synthetic_signal(kind, duration_s=HOUR_S, seed=seed)

    np.testing.assert_array_equal(make(3).values, make(3).values)
    assert not np.allclose(make(3).values, make(4).values)


def test_length_step_and_start() -> None:
    start = datetime(2025, 7, 16, 8, tzinfo=timezone(timedelta(hours=8)))
    signal = synthetic_signal("dynamic", duration_s=3601, step_s=2.0, seed=0, start=start)
    assert signal.values.size == 1800
    assert signal.step_s == 2.0
    assert signal.start == start
    assert signal.duration_s == 3600.0
    default = synthetic_signal("traditional", duration_s=10, seed=0)
    assert default.start == datetime(2025, 7, 16, tzinfo=UTC)
    assert default.values.size == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "fast"}, "kind must be 'dynamic' or 'traditional', got 'fast'"),
        ({"step_s": 0.0}, "step_s must be a positive number of seconds, got 0.0"),
        ({"step_s": float("nan")}, "step_s must be a positive number of seconds, got nan"),
        ({"duration_s": 1.0}, re.escape("duration_s must be at least one step (2.0 s), got 1.0")),
    ],
)
def test_synthetic_signal_refuses_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"kind": "dynamic", "duration_s": HOUR_S, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=message):
        synthetic_signal(**arguments)


# --- the types ---------------------------------------------------------------------------


def test_signal_values_are_a_read_only_copy() -> None:
    given = np.array([0.0, 0.5, -1.0])
    signal = RegulationSignal(start=datetime(2025, 1, 1, tzinfo=UTC), step_s=2.0, values=given)
    given[0] = 0.9
    assert signal.values.tolist() == [0.0, 0.5, -1.0]
    with pytest.raises(ValueError, match="read-only"):
        signal.values[0] = 1.0


@pytest.mark.parametrize(
    ("start", "step_s", "values", "message"),
    [
        (datetime(2025, 1, 1), 2.0, [0.0], "start must be timezone-aware"),  # noqa: DTZ001
        (datetime(2025, 1, 1, tzinfo=UTC), -2.0, [0.0], "step_s must be a positive number"),
        (datetime(2025, 1, 1, tzinfo=UTC), 2.0, [0.0, 1.01], "values must be within -1 to 1"),
        (datetime(2025, 1, 1, tzinfo=UTC), 2.0, [0.0, np.nan], "values must be finite"),
        (datetime(2025, 1, 1, tzinfo=UTC), 2.0, [], "non-empty 1-D array, got shape \\(0,\\)"),
    ],
)
def test_regulation_signal_refuses_bad_fields(
    start: datetime, step_s: float, values: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RegulationSignal(start=start, step_s=step_s, values=np.array(values))


def test_frequency_trace_refuses_values_outside_45_to_55_hz() -> None:
    with pytest.raises(ValueError, match=re.escape("frequency_hz must be within 45.0-55.0 Hz")):
        FrequencyTrace(
            start=datetime(2025, 1, 1, tzinfo=UTC), step_s=1.0, frequency_hz=np.array([50, 60])
        )


# --- frequency ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_frequency_stays_within_the_limit_and_leaves_the_deadband_at_times(seed: int) -> None:
    trace = synthetic_frequency(duration_s=6 * HOUR_S, seed=seed)
    deviation = trace.frequency_hz - 50.0
    np.testing.assert_allclose(trace.deviation_hz, deviation)
    assert 49.8 <= trace.frequency_hz.min() < trace.frequency_hz.max() <= 50.2
    beyond = np.abs(deviation) > 0.05
    assert 0.02 < beyond.mean() < 0.2
    assert 0.025 < deviation.std() < 0.035
    excursions = np.count_nonzero(np.diff(beyond.astype(np.int8)) == 1)
    assert excursions >= 10  # occasional, not one long stay outside


def test_frequency_std_and_seed() -> None:
    wide = synthetic_frequency(duration_s=DAY_S, seed=2, std_hz=0.06)
    assert wide.deviation_hz.std() == pytest.approx(0.06, rel=0.1)
    assert 49.8 <= wide.frequency_hz.min() < wide.frequency_hz.max() <= 50.2
    again = synthetic_frequency(duration_s=DAY_S, seed=2, std_hz=0.06)
    np.testing.assert_array_equal(wide.frequency_hz, again.frequency_hz)
    other = synthetic_frequency(duration_s=DAY_S, seed=3, std_hz=0.06)
    assert not np.allclose(wide.frequency_hz, other.frequency_hz)
    assert wide.frequency_hz.size == 86_400
    assert wide.step_s == 1.0


@pytest.mark.parametrize("std_hz", [0.0, -0.01, 0.11])
def test_frequency_refuses_a_spread_the_limit_would_clip(std_hz: float) -> None:
    with pytest.raises(
        ValueError, match=re.escape(f"std_hz must be within (0, 0.1] Hz, got {std_hz}")
    ):
        synthetic_frequency(duration_s=HOUR_S, seed=0, std_hz=std_hz)


# --- CSV files ---------------------------------------------------------------------------

Loader = Callable[[Path], object]
LOADERS: list[tuple[Loader, str, str]] = [
    (load_signal_csv, "signal", "0.25"),
    (load_frequency_csv, "frequency_hz", "50.01"),
]
loaders = pytest.mark.parametrize(("load", "column", "good"), LOADERS)
GOOD = {column: good for _, column, good in LOADERS}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "series.csv"
    path.write_text(text, encoding="utf-8")
    return path


def series_text(column: str, values: list[str], *, step_s: int = 2) -> str:
    """Header and one row per value, every ``step_s`` seconds from 08:00 +08:00."""
    start = datetime(2025, 7, 16, 8, tzinfo=timezone(timedelta(hours=8)))
    rows = [
        f"{(start + timedelta(seconds=k * step_s)).isoformat()},{v}" for k, v in enumerate(values)
    ]
    return "\n".join([f"time,{column}", *rows]) + "\n"


def where(path: Path, row: int, field: str | None = None) -> str:
    location = f"row {row}" if field is None else f"row {row}, field {field}"
    return "^" + re.escape(f"{path}: {location}: ")


def test_signal_file_round_trip(tmp_path: Path) -> None:
    text = series_text("signal", ["0", " 0.5 ", "-1", "1"], step_s=4)
    path = write(tmp_path, codecs.BOM_UTF8.decode("utf-8") + text + "\n,\n")
    signal = load_signal_csv(path)
    assert signal.start == datetime(2025, 7, 16, 0, tzinfo=UTC)
    assert signal.start.utcoffset() == timedelta(hours=8)
    assert signal.step_s == 4.0
    assert signal.values.tolist() == [0.0, 0.5, -1.0, 1.0]


def test_frequency_file_round_trip(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "frequency_hz,time\n50.02,2025-07-16T00:00:00Z\n49.97,2025-07-16T08:00:01+08:00\n",
    )
    trace = load_frequency_csv(path)
    assert trace.start == datetime(2025, 7, 16, tzinfo=UTC)
    assert trace.step_s == 1.0
    assert trace.frequency_hz.tolist() == [50.02, 49.97]


@loaders
def test_missing_file(tmp_path: Path, load: Loader, column: str, good: str) -> None:
    path = tmp_path / "nowhere.csv"
    with pytest.raises(InputError, match="^" + re.escape(f"{path}: no such file")):
        load(path)


@loaders
def test_empty_file(tmp_path: Path, load: Loader, column: str, good: str) -> None:
    path = write(tmp_path, "\n")
    with pytest.raises(InputError, match="^" + re.escape(f"{path}: the file is empty")):
        load(path)


@loaders
def test_missing_and_unknown_columns(tmp_path: Path, load: Loader, column: str, good: str) -> None:
    path = write(tmp_path, "time\n2025-07-16T00:00:00Z\n")
    with pytest.raises(InputError, match=where(path, 1, column) + "missing column$"):
        load(path)
    path = write(tmp_path, f"time,{column},note\n2025-07-16T00:00:00Z,{good},x\n")
    with pytest.raises(InputError, match=where(path, 1, "note") + "unknown column 'note'"):
        load(path)


@loaders
def test_header_only(tmp_path: Path, load: Loader, column: str, good: str) -> None:
    path = write(tmp_path, f"time,{column}\n\n")
    with pytest.raises(InputError, match=where(path, 2) + "no .* samples: the file has a header"):
        load(path)


@loaders
def test_one_row_cannot_fix_the_step(tmp_path: Path, load: Loader, column: str, good: str) -> None:
    path = write(tmp_path, series_text(column, [good]))
    with pytest.raises(InputError, match=where(path, 2, "time") + "only one sample"):
        load(path)


@loaders
def test_blank_row_inside(tmp_path: Path, load: Loader, column: str, good: str) -> None:
    lines = series_text(column, [good, good, good]).splitlines()
    path = write(tmp_path, "\n".join([*lines[:3], ",", lines[3]]) + "\n")
    with pytest.raises(InputError, match=where(path, 4) + "blank row inside the series"):
        load(path)


@loaders
def test_wrong_number_of_cells(tmp_path: Path, load: Loader, column: str, good: str) -> None:
    path = write(tmp_path, series_text(column, [good, f"{good},1"]))
    with pytest.raises(InputError, match=where(path, 3) + "has 3 cells but the header has 2"):
        load(path)


@pytest.mark.parametrize(("load", "column"), [(load, column) for load, column, _ in LOADERS])
@pytest.mark.parametrize(
    ("time", "problem"),
    [
        ("2025-07-16 08:00:04", "'2025-07-16 08:00:04' has no UTC offset; add one"),
        ("16/07/2025 08:00", "'16/07/2025 08:00' is not an ISO 8601 time like"),
        ("2025-07-16T08:00:04.5+08:00", "'2025-07-16T08:00:04.5+08:00' has fractional seconds"),
        (
            "2025-07-16T08:00:02+08:00",
            "2025-07-16T08:00:02+08:00 is not after the previous time "
            "2025-07-16T08:00:02+08:00 (row 3); times must increase",
        ),
        (
            "2025-07-16T00:00:06Z",
            "2025-07-16T00:00:06+00:00 is 4 s after the previous time (row 3), "
            "but the step is 2 s (rows 2-3); steps must be equal",
        ),
        ("", "blank; a value is required"),
    ],
)
def test_bad_time_on_row_4(
    tmp_path: Path, load: Loader, column: str, time: str, problem: str
) -> None:
    good = GOOD[column]
    lines = series_text(column, [good, good, good]).splitlines()
    lines[3] = f"{time},{good}"
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(InputError, match=where(path, 4, "time") + re.escape(problem)):
        load(path)


@pytest.mark.parametrize(
    ("load", "column", "text", "problem"),
    [
        (load_signal_csv, "signal", "high", "'high' is not a number"),
        (load_signal_csv, "signal", "nan", "'nan' is not a finite number"),
        (load_signal_csv, "signal", "-inf", "'-inf' is not a finite number"),
        (load_signal_csv, "signal", "1.5", "must be within -1 to 1, got 1.5"),
        (load_signal_csv, "signal", "-1.0001", "must be within -1 to 1, got -1.0001"),
        (load_frequency_csv, "frequency_hz", "50,0", "has 3 cells but the header has 2"),
        (load_frequency_csv, "frequency_hz", "44.9", "must be within 45 to 55 Hz, got 44.9"),
        (load_frequency_csv, "frequency_hz", "500", "must be within 45 to 55 Hz, got 500"),
        (load_frequency_csv, "frequency_hz", "NaN", "'NaN' is not a finite number"),
        (load_frequency_csv, "frequency_hz", " ", "blank; a value is required"),
    ],
)
def test_bad_value_on_row_3(
    tmp_path: Path, load: Loader, column: str, text: str, problem: str
) -> None:
    good = "0" if column == "signal" else "50"
    path = write(tmp_path, series_text(column, [good, text, good]))
    field = None if "cells" in problem else column
    with pytest.raises(InputError, match=where(path, 3, field) + re.escape(problem) + "$"):
        load(path)
