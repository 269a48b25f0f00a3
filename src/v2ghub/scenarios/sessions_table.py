"""A CSV file read column by column into Arrow arrays, its cells checked with array
operations: the reading half of the sessions loader, for files of millions of rows.

Arrow's CSV reader (:mod:`pyarrow.csv`) splits the file; every cell is read as text and
trimmed as :meth:`str.strip` trims it. Each data row keeps its row number as a spreadsheet
shows it (header = row 1, a quoted cell with a line break is one row, an empty line is a
row), found by one vectorised scan of the bytes (:func:`record_starts`). Rows whose cells
are all blank are dropped, as the row-by-row reader dropped them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from v2ghub.errors import InputError
from v2ghub.scenarios.csv_files import (
    CSV_NUMBER,
    CsvRow,
    record_cells,
    record_is_empty,
    record_starts,
    utf8_error,
)
from v2ghub.units import SECONDS_PER_DAY, SECONDS_PER_HOUR, SECONDS_PER_MINUTE

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
    "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
"""What :meth:`str.strip` strips (every character whose ``isspace()`` is true), so that
Arrow trims cells exactly as Python did."""
_NUMBER = "^" + CSV_NUMBER.pattern + "$"
_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})$"
"""The common form of an ISO 8601 time, parsed with arrays; any other form is parsed row
by row with :meth:`datetime.fromisoformat`, as before."""
_TIME_FIELDS = {"year": (0, 4), "month": (5, 2), "day": (8, 2)} | {
    "hour": (11, 2),
    "minute": (14, 2),
    "second": (17, 2),
    "offset_hour": (20, 2),
    "offset_minute": (23, 2),
}
_DIGIT_ZERO = ord("0")
_TIME_BYTES = 25
_TIME_ROWS = 1 << 18
"""Times parsed at a time (bounds the gather's temporary arrays to ~50 MB)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND = timedelta(seconds=1)
_MINUS = ord("-")
_DAYS_IN_MONTH = np.array([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


@dataclass(frozen=True)
class _BadCells:
    """The first row whose number of cells differs from the header's."""

    row: int
    problem: str


class SessionsTable:
    """The data rows of a CSV file as trimmed text columns (Arrow), with typed views.

    ``rows[i]`` is the file row of data row ``i``. ``bad_cells_row`` is the first row
    with the wrong number of cells (those rows are not in the table), or ``None``.
    """

    def __init__(
        self,
        columns: dict[str, pa.StringArray],
        rows: IntArray,
        header: list[str],
        bad_cells: _BadCells | None,
    ) -> None:
        self._columns = columns
        self._blank_column: pa.StringArray | None = None
        self.rows = rows
        self.header = header
        self._bad_cells = bad_cells

    @property
    def n_rows(self) -> int:
        """Number of data rows (blank rows dropped)."""
        return int(self.rows.size)

    @property
    def bad_cells_row(self) -> int | None:
        """The first row with the wrong number of cells, if any."""
        return None if self._bad_cells is None else self._bad_cells.row

    @property
    def bad_cells_problem(self) -> str:
        """What is wrong with :attr:`bad_cells_row`."""
        return "" if self._bad_cells is None else self._bad_cells.problem

    def _column(self, name: str) -> pa.StringArray:
        """The trimmed cells of column ``name``; all blank if the header lacks it."""
        column = self._columns.get(name)
        if column is not None:
            return column
        if self._blank_column is None:
            self._blank_column = pa.array(np.full(self.n_rows, "", dtype=object), type=pa.string())
        return self._blank_column

    def blank(self, name: str) -> BoolArray:
        """Per row: the cell is blank."""
        lengths = pc.binary_length(self._column(name))
        return np.asarray(lengths.to_numpy(zero_copy_only=False) == 0)

    def strings(self, name: str) -> npt.NDArray[np.str_]:
        """The cells as a NumPy text array."""
        return np.asarray(self._column(name).to_numpy(zero_copy_only=False).astype(np.str_))

    def cell(self, index: int, name: str) -> str:
        """One trimmed cell."""
        return str(self._column(name)[index].as_py())

    def row_cells(self, index: int) -> dict[str, str]:
        """The trimmed cells of data row ``index``, by column."""
        return {name: self.cell(index, name) for name in self.header}

    def encoded(self, name: str) -> tuple[IntArray, pa.StringArray]:
        """Each cell's index into the distinct values, and those values, in order of first
        appearance."""
        encoded = pc.dictionary_encode(self._column(name))
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        return codes, encoded.dictionary

    def numbers(self, name: str, *, default: float | None) -> tuple[FloatArray, BoolArray]:
        """The cells as finite numbers written as :data:`CSV_NUMBER` says, and per row
        whether the cell is not one (blank is a fault without a ``default``)."""
        column = self._column(name)
        blank = self.blank(name)
        written = pc.match_substring_regex(column, _NUMBER).to_numpy(zero_copy_only=False)
        readable = pc.if_else(written, column, pa.scalar("0", type=pa.string()))
        values = pc.cast(readable, pa.float64()).to_numpy(zero_copy_only=False)
        bad = ~written | ~np.isfinite(values)
        if default is not None:
            values = np.where(blank, default, values)
            bad &= ~blank
        return np.asarray(values, dtype=np.float64), np.asarray(bad)

    def choices(
        self, name: str, choices: dict[str, int], *, default: int
    ) -> tuple[IntArray, BoolArray]:
        """Each cell's value among ``choices`` (matched case-insensitively; blank is
        ``default``), and per row whether it is none of them."""
        lower = pc.utf8_lower(self._column(name))
        position = pc.index_in(lower, value_set=pa.array(list(choices), type=pa.string()))
        found = position.to_numpy(zero_copy_only=False)
        known = ~np.isnan(found.astype(np.float64))
        values = np.array(list(choices.values()), dtype=np.int64)
        codes = np.where(known, values[np.where(known, found, 0).astype(np.int64)], default)
        blank = self.blank(name)
        return np.asarray(codes, dtype=np.int64), np.asarray(~known & ~blank)

    def times(self, name: str) -> tuple[IntArray, BoolArray]:
        """The cells as UTC epoch seconds, and per row whether the cell is not an ISO 8601
        time with a UTC offset in whole seconds (:meth:`CsvRow.time` says why)."""
        column = self._column(name)
        common = np.asarray(pc.match_substring_regex(column, _TIME).to_numpy(zero_copy_only=False))
        epoch_s, valid = _common_times(column, common)
        # Other forms fromisoformat reads (a space for T, basic format, ...) row by row:
        # rare in files written by programs, so the loop stays short.
        bad = ~valid
        for index in np.flatnonzero(~valid).tolist():
            try:
                time = CsvRow({name: self.cell(index, name)}, Path(), 0).time(name)
            except InputError:
                continue
            epoch_s[index] = (time - _EPOCH) // _ONE_SECOND
            bad[index] = False
        return epoch_s, bad


def _common_times(column: pa.StringArray, common: BoolArray) -> tuple[IntArray, BoolArray]:
    """Epoch seconds of the cells in :data:`_TIME`'s form (``common``), computed from
    their digits; and per row whether the cell was such a time with valid fields."""
    n = len(column)
    epoch_s = np.zeros(n, dtype=np.int64)
    valid = np.zeros(n, dtype=np.bool_)
    rows = np.flatnonzero(common)
    _, offsets_buffer, data_buffer = column.buffers()
    if not rows.size or data_buffer is None:
        return epoch_s, valid
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[column.offset : column.offset + n]
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    width = np.arange(_TIME_BYTES, dtype=np.int64)
    for low in range(0, rows.size, _TIME_ROWS):
        part = rows[low : low + _TIME_ROWS]
        # One gather of each cell's 25 bytes (a time ending in Z has 20; the rest is read
        # from what follows and ignored), as digits 0-9 where they are digits.
        at = np.minimum(offsets[part].astype(np.int64)[:, None] + width, data.size - 1)
        text = data[at]
        digit = text.astype(np.int64) - _DIGIT_ZERO

        def number(first: int, count: int, digit: IntArray = digit) -> IntArray:
            value = digit[:, first]
            for k in range(first + 1, first + count):
                value = value * 10 + digit[:, k]
            return value

        field = {name: number(*where) for name, where in _TIME_FIELDS.items()}
        utc = text[:, 19] == ord("Z")
        offset_hour = np.where(utc, 0, field["offset_hour"])
        offset_minute = np.where(utc, 0, field["offset_minute"])
        sign = np.where(text[:, 19] == _MINUS, -1, 1)
        year, month, day = field["year"], field["month"], field["day"]
        leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
        month_ok = (month >= 1) & (month <= 12)
        month = np.where(month_ok, month, 1)
        days = _DAYS_IN_MONTH[month] - ((month == 2) & ~leap)
        ok = (
            month_ok
            & (day >= 1)
            & (day <= days)
            & (field["hour"] <= 23)
            & (field["minute"] <= 59)
            & (field["second"] <= 59)
            & (offset_hour <= 23)
            & (offset_minute <= 59)
        )
        seconds = (
            _days_from_civil(year, month, day) * SECONDS_PER_DAY
            + field["hour"] * SECONDS_PER_HOUR
            + field["minute"] * SECONDS_PER_MINUTE
            + field["second"]
            - sign * (offset_hour * SECONDS_PER_HOUR + offset_minute * SECONDS_PER_MINUTE)
        )
        epoch_s[part] = np.where(ok, seconds, 0)
        valid[part] = ok
    return epoch_s, valid


def _days_from_civil(year: IntArray, month: IntArray, day: IntArray) -> IntArray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    shifted = year - (month <= 2)
    era = shifted // 400
    year_of_era = shifted - era * 400
    day_of_year = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return np.asarray(era * 146097 + day_of_era - 719468, dtype=np.int64)


def _check_utf8(path: Path, data: bytes) -> None:
    """Refuse bytes that are not UTF-8, naming the row and column of the first."""
    if data.isascii():
        return
    text = pa.LargeStringArray.from_buffers(
        1, pa.py_buffer(np.array([0, len(data)], dtype=np.int64)), pa.py_buffer(data)
    )
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise utf8_error(path, data, error.start) from error


def read_sessions_table(
    path: Path, data: bytes, *, check: Callable[[list[str]], list[str]]
) -> SessionsTable:
    """The data rows of the CSV ``data`` (from ``path``, named in errors).

    ``check`` turns the header's cells into column names, raising if they are wrong.
    Rows with the wrong number of cells are left out and the first is reported in the
    table (the caller raises it unless an earlier row has a fault).
    """
    _check_utf8(path, data)
    # isspace stops at the first other byte; short files are decoded for Unicode spaces.
    if not data or data.isspace() or (len(data) < 4096 and not data.decode().strip()):
        raise InputError("the file is empty; it needs a header row and sessions", file=path)
    starts = record_starts(data)
    header = check(record_cells(data, starts, 0))
    bad_rows: list[tuple[int, str]] = []
    skipped: list[int] = []

    def invalid(row: pa_csv.InvalidRow) -> str:
        # Arrow numbers the non-empty records from 1 (the header is 1), reading serially.
        skipped.append(int(row.number))
        cells = next(csv.reader(io.StringIO(row.text, newline="")), [])
        if any(cell.strip() for cell in cells):
            problem = f"has {len(cells)} cells but the header has {len(header)}"
            bad_rows.append((int(row.number), problem))
        return "skip"

    try:
        table = pa_csv.read_csv(
            pa.py_buffer(data),
            read_options=pa_csv.ReadOptions(
                use_threads=False, skip_rows=1, column_names=header, block_size=1 << 24
            ),
            parse_options=pa_csv.ParseOptions(
                newlines_in_values=b'"' in data, invalid_row_handler=invalid
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as error:
        problem = str(error).splitlines()[0]
        raise InputError(f"not valid CSV ({problem})", file=path) from None
    non_empty = np.flatnonzero(~record_is_empty(data, starts))
    columns: dict[str, pa.StringArray] = {}
    for name in header:
        raw = table.column(name).combine_chunks()
        columns[name] = pc.utf8_trim(raw, characters=WHITESPACE)
    table = None  # the untrimmed cells are no longer needed
    rows = _data_rows(data, non_empty, skipped, len(columns[header[0]]))
    filled = np.zeros(rows.size, dtype=np.bool_)
    for column in columns.values():
        filled |= pc.binary_length(column).to_numpy(zero_copy_only=False) > 0
    if not filled.all():
        keep = pa.array(filled)
        columns = {name: column.filter(keep) for name, column in columns.items()}
        rows = rows[filled]
    first_bad = None
    if bad_rows:
        number, problem = bad_rows[0]
        record = int(non_empty[number - 1]) if number <= non_empty.size else number - 1
        first_bad = _BadCells(row=record + 1, problem=problem)
    return SessionsTable(columns, rows, header, first_bad)


def _data_rows(data: bytes, non_empty: IntArray, skipped: list[int], n_rows: int) -> IntArray:
    """The file row of each row Arrow read: the non-empty records (``non_empty``, 0-based
    record indices) after the header, less those it skipped (``skipped``: their 1-based
    places among the non-empty records)."""
    keep = np.ones(non_empty.size, dtype=np.bool_)
    keep[:1] = False  # the header
    if skipped:
        keep[np.array(skipped, dtype=np.int64) - 1] = False
    records = non_empty[keep]
    if records.size != n_rows:
        records = _data_rows_by_csv(data, skipped)
    return np.asarray(records + 1, dtype=np.int64)


def _data_rows_by_csv(data: bytes, skipped: list[int]) -> IntArray:
    """:func:`_data_rows` the slow way, with :mod:`csv` itself: for files whose quotes
    the byte scan reads differently (a quote inside an unquoted cell)."""
    text = data.decode("utf-8")
    left_out = set(skipped)
    non_empty = (
        number for number, cells in enumerate(csv.reader(io.StringIO(text, newline=""))) if cells
    )
    records = [
        number
        for place, number in enumerate(non_empty, start=1)
        if place > 1 and place not in left_out
    ]
    return np.array(records, dtype=np.int64)
