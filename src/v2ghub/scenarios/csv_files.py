"""Reading users' CSV files: the parts every table shares.

Rows count as a spreadsheet shows them (the header is row 1); every fault is an
:class:`~v2ghub.errors.InputError` naming the file, the row and the column.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from v2ghub.errors import InputError


def read_rows(path: Path, *, content: str) -> list[list[str]]:
    """All records of the file, header first; a record's index + 1 is its row.

    ``content`` names what the rows hold, for the message about an empty file.
    A leading UTF-8 byte-order mark (as spreadsheets write) is dropped.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise InputError("no such file", file=path) from error
    except OSError as error:
        raise InputError(f"cannot read the file ({error.strerror})", file=path) from error
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        row = data[: error.start].count(b"\n") + 1
        byte = data[error.start : error.start + 1]
        raise InputError(
            f"not UTF-8 text (byte 0x{byte.hex()}); save the file as CSV UTF-8",
            file=path,
            row=row,
        ) from error
    if not text.strip():
        raise InputError(f"the file is empty; it needs a header row and {content}", file=path)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[list[str]] = []
    try:
        rows.extend(reader)
    except csv.Error as error:
        raise InputError(f"not valid CSV ({error})", file=path, row=len(rows) + 1) from error
    return rows


def check_header(
    cells: list[str], path: Path, *, columns: Sequence[str], required: Sequence[str]
) -> list[str]:
    """The header's column names, stripped, each known, none twice, every required one."""
    header = [cell.strip() for cell in cells]
    if not any(header):
        raise InputError(
            f"the first row is blank; it must be the header ({', '.join(required)})",
            file=path,
            row=1,
        )
    seen: dict[str, int] = {}
    for number, name in enumerate(header, start=1):
        if not name:
            raise InputError(f"column {number} has no name", file=path, row=1)
        if name in seen:
            raise InputError(
                f"duplicate column (columns {seen[name]} and {number})",
                file=path,
                row=1,
                field=name,
            )
        if name not in columns:
            raise InputError(
                f"unknown column {name!r}; the columns are {', '.join(columns)}",
                file=path,
                row=1,
                field=name,
            )
        seen[name] = number
    for name in required:
        if name not in seen:
            raise InputError("missing column", file=path, row=1, field=name)
    return header


class CsvRow:
    """Typed values of one data row, raising :class:`InputError` at the row's first fault."""

    example_time = "2025-07-16T18:30:00+08:00"

    def __init__(self, cells: dict[str, str], path: Path, row: int) -> None:
        self._cells = cells
        self._path = path
        self._row = row

    def finite(self, name: str, text: str) -> float:
        """``text`` (column ``name``'s cell) as a finite number."""
        try:
            value = float(text)
        except ValueError:
            raise self.error(f"{text!r} is not a number", name) from None
        if not math.isfinite(value):
            raise self.error(f"{text!r} is not a finite number", name)
        return value

    def error(self, problem: str, name: str) -> InputError:
        """An error about column ``name`` of this row."""
        return InputError(problem, file=self._path, row=self._row, field=name)

    def required(self, name: str) -> str:
        """The cell's text; blank is an error."""
        text = self._cells[name]
        if not text:
            raise self.error("blank; a value is required", name)
        return text

    def time(self, name: str) -> datetime:
        """A required ISO 8601 time with a UTC offset, in whole seconds."""
        text = self.required(name)
        try:
            time = datetime.fromisoformat(text)
        except ValueError:
            raise self.error(
                f"{text!r} is not an ISO 8601 time like {self.example_time}", name
            ) from None
        if time.utcoffset() is None:
            raise self.error(
                f"{text!r} has no UTC offset; add one, as in {self.example_time} or Z", name
            )
        if time.microsecond:
            raise self.error(f"{text!r} has fractional seconds; give whole seconds", name)
        return time


def series_rows(
    path: Path, rows: list[list[str]], header: Sequence[str], *, content: str, unit: str
) -> Iterator[tuple[int, dict[str, str]]]:
    """The data rows of a time series file as ``(row number, cells by column)``.

    Trailing blank rows are dropped (spreadsheets save them); a blank row inside the
    series, a row with the wrong number of cells, or no data at all is refused.
    ``unit`` names what a row is (``step``, ``sample``) in the messages.
    """
    data = rows[1:]
    while data and not any(cell.strip() for cell in data[-1]):
        data.pop()
    if not data:
        raise InputError(f"no {content}: the file has a header but no data rows", file=path, row=2)
    for row, cells in enumerate(data, start=2):
        if not any(cell.strip() for cell in cells):
            raise InputError(
                f"blank row inside the series; delete it (a {unit} cannot be skipped)",
                file=path,
                row=row,
            )
        if len(cells) != len(header):
            raise InputError(
                f"has {len(cells)} cells but the header has {len(header)}", file=path, row=row
            )
        yield row, dict(zip(header, (c.strip() for c in cells), strict=True))
