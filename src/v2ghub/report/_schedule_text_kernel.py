"""Compiled core of :func:`v2ghub.report.schedule_files.write_schedule_rows`: the bytes of
``schedule.csv``'s rows for a block of vehicles, in one pass.

A row is ``<session id field>,<start field>,<power>\\n``: the two fields come ready
(UTF-8, quoted as :mod:`csv` quotes them) as one byte array each with offsets, and the
power is the written power in whole 1e-4 kW, formatted here as
:func:`~v2ghub.report.schedule_files.format_power` does (``-7.0005``, ``0.0000``). Millions
of rows a second, where :mod:`csv` writes one row per Python call.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

IntArray = npt.NDArray[np.int64]
ByteArray = npt.NDArray[np.uint8]

FRACTION_DIGITS = 4
"""Digits after the point: the power is written in whole 1e-4 kW."""
_COMMA, _NEWLINE, _MINUS, _POINT, _ZERO = 44, 10, 45, 46, 48


@njit(cache=True)
def _whole_digits(whole: int) -> int:
    """Number of decimal digits of ``whole >= 0`` (1 for 0)."""
    digits = 1
    while whole >= 10:
        whole //= 10
        digits += 1
    return digits


@njit(cache=True)
def _power_width(units: int) -> int:
    """Bytes of the power text of ``units`` (sign, whole part, point, fraction)."""
    magnitude = -units if units < 0 else units
    sign = 1 if units < 0 else 0
    return sign + _whole_digits(magnitude // 10**FRACTION_DIGITS) + 1 + FRACTION_DIGITS


@njit(cache=True)
def _put_power(out: ByteArray, at: int, units: int) -> int:
    """Write the power text of ``units`` at ``out[at:]``; return the position after it."""
    magnitude = -units if units < 0 else units
    if units < 0:
        out[at] = _MINUS
        at += 1
    whole = magnitude // 10**FRACTION_DIGITS
    fraction = magnitude - whole * 10**FRACTION_DIGITS
    digits = _whole_digits(whole)
    for k in range(digits - 1, -1, -1):
        out[at + k] = _ZERO + whole % 10
        whole //= 10
    at += digits
    out[at] = _POINT
    for k in range(FRACTION_DIGITS, 0, -1):
        out[at + k] = _ZERO + fraction % 10
        fraction //= 10
    return at + 1 + FRACTION_DIGITS


@njit(cache=True)
def _put(out: ByteArray, at: int, source: ByteArray, start: int, stop: int) -> int:
    for k in range(start, stop):
        out[at] = source[k]
        at += 1
    return at


@njit(cache=True)
def schedule_rows_bytes(  # noqa: PLR0917 - a compiled kernel takes its arrays positionally
    units: IntArray,
    first_vehicle: int,
    arrival_step: IntArray,
    departure_step: IntArray,
    id_bytes: ByteArray,
    id_offsets: IntArray,
    start_bytes: ByteArray,
    start_offsets: IntArray,
) -> ByteArray:
    """The rows of vehicles ``first_vehicle .. first_vehicle + len(units) - 1``.

    ``units[r, t]`` is the written power of vehicle ``first_vehicle + r`` in step ``t``;
    a vehicle's rows are its steps ``arrival_step .. departure_step - 1`` in order. The
    id field of vehicle ``i`` is ``id_bytes[id_offsets[i]:id_offsets[i + 1]]``, the start
    field of step ``t`` ``start_bytes[start_offsets[t]:start_offsets[t + 1]]``.
    """
    size = 0
    for r in range(units.shape[0]):
        i = first_vehicle + r
        id_width = id_offsets[i + 1] - id_offsets[i]
        for t in range(arrival_step[i], departure_step[i]):
            start_width = start_offsets[t + 1] - start_offsets[t]
            size += id_width + start_width + _power_width(units[r, t]) + 3
    out = np.empty(size, dtype=np.uint8)
    at = 0
    for r in range(units.shape[0]):
        i = first_vehicle + r
        for t in range(arrival_step[i], departure_step[i]):
            at = _put(out, at, id_bytes, id_offsets[i], id_offsets[i + 1])
            out[at] = _COMMA
            at = _put(out, at + 1, start_bytes, start_offsets[t], start_offsets[t + 1])
            out[at] = _COMMA
            at = _put_power(out, at + 1, units[r, t])
            out[at] = _NEWLINE
            at += 1
    return out
