"""Reading users' CSV files: the parts every table shares.

Rows count as a spreadsheet shows them (the header is row 1); every fault is an
:class:`~v2ghub.errors.InputError` naming the file, the row and the column.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from v2ghub.errors import InputError

IntArray = npt.NDArray[np.int64]

CSV_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
"""A number as a CSV file writes one: ``60``, ``-0.5``, ``.5``, ``1e3``. Python's own
syntax beyond that (``6_0``, non-ASCII digits) is refused: a spreadsheet never writes it,
so it is most likely a typo."""
_NON_FINITE = frozenset({"nan", "inf", "infinity"})
_LINE_FEED, _CARRIAGE_RETURN, _QUOTE = 10, 13, 34
_SCAN_BYTES = 1 << 24
"""Bytes scanned at a time for record ends (bounds the scan's temporary arrays)."""


def csv_number(text: str) -> float | None:
    """``text`` as a number if it is written as :data:`CSV_NUMBER` says, else ``None``
    (the value may be infinite: ``1e400``)."""
    return float(text) if CSV_NUMBER.fullmatch(text) else None


def number_problem(text: str) -> str | None:
    """Why ``text`` is not a finite CSV number, or ``None`` when it is one."""
    value = csv_number(text)
    if value is not None and math.isfinite(value):
        return None
    if value is not None or text.lower().lstrip("+-") in _NON_FINITE:
        return f"{text!r} is not a finite number"
    return f"{text!r} is not a number"


def read_bytes(path: Path) -> bytes:
    """The file's bytes without a leading UTF-8 byte-order mark (as spreadsheets write)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise InputError("no such file", file=path) from error
    except OSError as error:
        raise InputError(f"cannot read the file ({error.strerror})", file=path) from error
    return data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data


def record_starts(data: bytes) -> IntArray:
    """Byte offset at which each record of ``data`` starts: record ``k`` is row ``k + 1``.

    A record ends at a line feed, a carriage return + line feed, or a lone carriage
    return, except within a quoted cell (an odd number of quotes before it), as
    :mod:`csv` reads it. Vectorised and scanned in blocks, so a file of millions of rows
    takes a fraction of a second and little memory beside itself.
    """
    buffer = np.frombuffer(data, dtype=np.uint8)
    size = buffer.size
    ends: list[IntArray] = []
    quotes: list[IntArray] = []
    for low in range(0, size, _SCAN_BYTES):
        block = buffer[low : low + _SCAN_BYTES]
        line_feed = np.flatnonzero(block == _LINE_FEED) + low
        carriage = np.flatnonzero(block == _CARRIAGE_RETURN) + low
        # A carriage return ends a record only where no line feed follows it.
        following = np.minimum(carriage + 1, size - 1)
        lone = carriage[(carriage + 1 >= size) | (buffer[following] != _LINE_FEED)]
        ends.append(np.sort(np.concatenate([line_feed, lone])).astype(np.int64))
        quotes.append(np.flatnonzero(block == _QUOTE).astype(np.int64) + low)
    end = np.concatenate(ends) if ends else np.zeros(0, dtype=np.int64)
    quote = np.concatenate(quotes) if quotes else np.zeros(0, dtype=np.int64)
    if quote.size:
        end = end[np.searchsorted(quote, end) % 2 == 0]
    starts = np.concatenate([np.zeros(1, dtype=np.int64), end + 1])
    return starts[starts < size] if size else starts[:0]


def record_is_empty(data: bytes, starts: IntArray) -> npt.NDArray[np.bool_]:
    """Per record of :func:`record_starts`: it holds no byte but its line ending."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    after = np.append(starts[1:], buffer.size)
    length = after - starts
    first = buffer[np.minimum(starts, max(buffer.size - 1, 0))] if buffer.size else after
    second = buffer[np.minimum(starts + 1, max(buffer.size - 1, 0))] if buffer.size else after
    ending = (first == _LINE_FEED) | (first == _CARRIAGE_RETURN)
    crlf = (first == _CARRIAGE_RETURN) & (second == _LINE_FEED)
    return np.asarray((length == 0) | (ending & (length == 1)) | (crlf & (length == 2)))


def record_cells(data: bytes, starts: IntArray, record: int) -> list[str]:
    """The cells of one record (undecodable bytes replaced), as :mod:`csv` reads them."""
    low = int(starts[record])
    high = int(starts[record + 1]) if record + 1 < starts.size else len(data)
    text = data[low:high].decode("utf-8", errors="replace")
    return next(csv.reader(io.StringIO(text, newline="")), [])


def utf8_error(path: Path, data: bytes, position: int) -> InputError:
    """The error for the byte at ``position`` that is not UTF-8: its row and column."""
    starts = record_starts(data)
    record = max(int(np.searchsorted(starts, position, side="right")) - 1, 0)
    low = int(starts[record])
    # The cells of the record up to the bad byte: the last one holds it.
    before = data[low:position].decode("utf-8", errors="replace") + "?"
    cells = next(csv.reader(io.StringIO(before, newline="")), [""])
    header = [cell.strip() for cell in record_cells(data, starts, 0)]
    column = len(cells) - 1
    field = header[column] if record and column < len(header) and header[column] else None
    if field is None and record:
        field = f"column {column + 1}"
    byte = data[position : position + 1]
    return InputError(
        f"not UTF-8 text (byte 0x{byte.hex()}); save the file as CSV UTF-8",
        file=path,
        row=record + 1,
        field=field,
    )


def decode_utf8(path: Path, data: bytes) -> str:
    """``data`` as text; a byte that is not UTF-8 raises naming its row and column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise utf8_error(path, data, error.start) from error


def read_rows(path: Path, *, content: str) -> list[list[str]]:
    """All records of the file, header first; a record's index + 1 is its row.

    ``content`` names what the rows hold, for the message about an empty file.
    A leading UTF-8 byte-order mark (as spreadsheets write) is dropped.
    """
    data = read_bytes(path)
    text = decode_utf8(path, data)
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
        """``text`` (column ``name``'s cell) as a finite number written as
        :data:`CSV_NUMBER` says."""
        problem = number_problem(text)
        if problem is not None:
            raise self.error(problem, name)
        return float(text)

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
