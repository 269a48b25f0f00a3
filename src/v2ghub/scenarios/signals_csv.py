"""Reading regulation signals and grid frequency traces from users' CSV files.

CSV files
---------
UTF-8 (a leading byte-order mark is accepted), a header row, then one row per sample in
time order; spaces around names and values are ignored; blank rows only at the end.

=================  =====  ===================================================
column             unit   meaning
=================  =====  ===================================================
time               time   the sample's instant, ISO 8601 with a UTC offset
signal             1      regulation signal, -1 to 1 (signal files)
frequency_hz       Hz     grid frequency, 45 to 55 Hz (frequency files)
=================  =====  ===================================================

Times are whole seconds; the step is the time from the first row to the second and every
later row must follow by exactly that step, so a file needs at least two rows. Every fault
raises :class:`~v2ghub.errors.InputError` naming the file, the row as a spreadsheet shows
it (the header is row 1, the first sample row 2) and the column.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from v2ghub.errors import InputError
from v2ghub.regulation.signals import FREQUENCY_FILE_RANGE_HZ, FrequencyTrace, RegulationSignal
from v2ghub.scenarios.csv_files import CsvRow, check_header, read_rows, series_rows

FloatArray = npt.NDArray[np.float64]


def load_signal_csv(path: Path) -> RegulationSignal:
    """Read a regulation signal file (columns ``time``, ``signal``; see the module doc).

    Raises
    ------
    InputError
        At the first fault, naming the file, the row (header = row 1) and the column.
    """
    start, step_s, values = _load_series(
        path, column="signal", content="regulation signal samples", low=-1.0, high=1.0, unit=""
    )
    return RegulationSignal(start=start, step_s=step_s, values=values)


def load_frequency_csv(path: Path) -> FrequencyTrace:
    """Read a grid frequency file (columns ``time``, ``frequency_hz``; see the module doc).

    Raises
    ------
    InputError
        At the first fault, naming the file, the row (header = row 1) and the column.
    """
    low, high = FREQUENCY_FILE_RANGE_HZ
    start, step_s, values = _load_series(
        path, column="frequency_hz", content="frequency samples", low=low, high=high, unit=" Hz"
    )
    return FrequencyTrace(start=start, step_s=step_s, frequency_hz=values)


def _load_series(
    path: Path, *, column: str, content: str, low: float, high: float, unit: str
) -> tuple[datetime, float, FloatArray]:
    """First time, step in seconds and values of a two-column time series file."""
    columns = ("time", column)
    rows = read_rows(path, content=content)
    header = check_header(rows[0], path, columns=columns, required=columns)
    times: list[datetime] = []
    values: list[float] = []
    step: timedelta | None = None
    for row, cells in series_rows(path, rows, header, content=content, unit="sample"):
        parser = _RowParser(cells, path, row)
        time = parser.time("time")
        if times:
            step = _check_step(parser, time, times[-1], step, row=row)
        times.append(time)
        values.append(parser.number(column, low=low, high=high, unit=unit))
    if step is None:
        raise InputError(
            "only one sample: the file needs at least two rows to fix the step",
            file=path,
            row=2,
            field="time",
        )
    return times[0], step.total_seconds(), np.array(values, dtype=np.float64)


def _check_step(
    parser: _RowParser, time: datetime, previous: datetime, step: timedelta | None, *, row: int
) -> timedelta:
    """The series' step, checking that ``time`` follows ``previous`` by it."""
    gap = time - previous
    if gap <= timedelta(0):
        raise parser.error(
            f"{time.isoformat()} is not after the previous time {previous.isoformat()} "
            f"(row {row - 1}); times must increase",
            "time",
        )
    if step is not None and gap != step:
        raise parser.error(
            f"{time.isoformat()} is {gap.total_seconds():g} s after the previous time "
            f"(row {row - 1}), but the step is {step.total_seconds():g} s (rows 2-3); "
            "steps must be equal",
            "time",
        )
    return gap


class _RowParser(CsvRow):
    """Typed values of one row of a time series file."""

    example_time = "2025-07-16T00:00:02+08:00"

    def number(self, name: str, *, low: float, high: float, unit: str) -> float:
        """A required finite number within ``low``-``high``."""
        text = self.required(name)
        value = self.finite(name, text)
        if not low <= value <= high:
            raise self.error(f"must be within {low:g} to {high:g}{unit}, got {text}", name)
        return value
