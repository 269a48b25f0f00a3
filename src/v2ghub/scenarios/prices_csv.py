"""Load a price series (and, optionally, the area's base load) from a CSV file.

File format
-----------
A UTF-8 text file (a leading byte-order mark, as Excel writes, is accepted) with a header
row naming the columns, in any order, then one row per time step, in time order. Column
names are exactly as below (case matters); spaces around a name or a value are ignored.

=========================  =======  ========  ============================================
column                     unit     default   meaning
=========================  =======  ========  ============================================
start                      time     required  when the step starts
import_price_cny_per_kwh   CNY/kWh  required  price of energy drawn from the grid
export_price_cny_per_kwh   CNY/kWh  required  price paid for energy discharged to the grid
base_load_kw               kW       none      the area's load without the fleet (for peaks)
=========================  =======  ========  ============================================

Times are ISO 8601 with a UTC offset, in whole seconds (``2025-07-16T00:00:00+08:00`` or
``...Z``); a time without an offset is an error, since the file would mean different
instants on different machines. Steps are equal: the step length is the time from the
first start to the second, every later start must follow its predecessor by exactly that
much, and the last row's step ends one step after its start. So the file needs at least
two rows. Step ``k`` of the series is on row ``k + 2`` (the header is row 1): blank rows
are ignored only at the end of the file, since one inside the series is most likely a
step left out.

Prices are exact decimals (read as ``Decimal``, never float), finite, at most 9 decimals
(money is settled in integer nano-CNY per kWh) and below 1,000 CNY/kWh (far above any
tariff; it keeps exact integer billing within 64 bits). ``base_load_kw`` may be left out;
if its column is there, every row needs a finite value (it may be negative, for an area
that exports).

Prices must not be negative. The exact planner (:mod:`v2ghub.planning.lp`) gives each
vehicle a charging and a discharging power, both >= 0, and writes out their difference;
that is only what the charger does if charging and discharging in the same step never
pays. At a negative import price it would: drawing power and sending it straight back
burns energy in the conversion losses, for money, which a charger cannot do. A negative
export price is refused alike: the tariff model holds discharge prices >= 0 (the grid
pays for V2G energy), and at such a price no planner would discharge anyway.

Example::

    start,import_price_cny_per_kwh,export_price_cny_per_kwh,base_load_kw
    2025-07-16T00:00:00+08:00,0.247,0.17214,520.5
    2025-07-16T00:15:00+08:00,0.247,0.17214,512.0

Errors stop at the first bad value and raise :class:`~v2ghub.errors.InputError` naming
the file, the row as a spreadsheet shows it (the header is row 1) and the column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import numpy.typing as npt

from v2ghub.errors import InputError
from v2ghub.model.time_grid import TimeGrid
from v2ghub.scenarios.csv_files import (
    CsvRow,
    check_header,
    number_problem,
    read_rows,
    series_rows,
)
from v2ghub.units import SECONDS_PER_MINUTE

FloatArray = npt.NDArray[np.float64]

REQUIRED_COLUMNS = ("start", "import_price_cny_per_kwh", "export_price_cny_per_kwh")
OPTIONAL_COLUMNS = ("base_load_kw",)
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
PRICE_COLUMNS = ("import_price_cny_per_kwh", "export_price_cny_per_kwh")

PRICE_DECIMALS = 9
"""Most decimals a price may have: money is exact in integer nano-CNY per kWh."""
MAX_PRICE_CNY_PER_KWH = Decimal(1000)
"""Prices must be below this: far above any tariff, and exact billing stays within int64."""
_NANO = Decimal(10) ** PRICE_DECIMALS


@dataclass(frozen=True)
class PriceSeries:
    """Prices (and optionally base load) on a regular grid of steps.

    Attributes
    ----------
    grid
        The steps; ``grid.start`` keeps the UTC offset of the file's first start.
    import_price_cny_per_kwh
        Exact price of energy drawn from the grid in each step, CNY/kWh (>= 0).
    export_price_cny_per_kwh
        Exact price paid for energy discharged to the grid in each step, CNY/kWh (>= 0).
    base_load_kw
        The area's load without the fleet in each step, kW; ``None`` if the file has none.
        Read-only.
    utc_offsets_s
        The UTC offset each step's start was written in, s east of UTC (it changes where
        the file crosses a daylight-saving change), so that outputs write each start as the
        file did; ``None``: every start in ``grid.start``'s offset.
    """

    grid: TimeGrid
    import_price_cny_per_kwh: tuple[Decimal, ...]
    export_price_cny_per_kwh: tuple[Decimal, ...]
    base_load_kw: FloatArray | None = None
    utc_offsets_s: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        n = self.grid.length
        for name in PRICE_COLUMNS:
            prices: tuple[Decimal, ...] = getattr(self, name)
            if len(prices) != n:
                raise ValueError(f"PriceSeries.{name} must have {n} prices, got {len(prices)}")
            if any(not p.is_finite() or p < 0 for p in prices):
                raise ValueError(f"PriceSeries.{name} must be finite and >= 0")
        if self.utc_offsets_s is not None and len(self.utc_offsets_s) != n:
            raise ValueError(f"PriceSeries.utc_offsets_s must have {n} offsets")
        if self.base_load_kw is not None:
            if self.base_load_kw.shape != (n,):
                raise ValueError(f"PriceSeries.base_load_kw must have shape ({n},)")
            self.base_load_kw.setflags(write=False)

    def import_series(self) -> FloatArray:
        """Import price of every step as float CNY/kWh (for planners; money stays exact)."""
        return np.array([float(p) for p in self.import_price_cny_per_kwh], dtype=np.float64)

    def export_series(self) -> FloatArray:
        """Export price of every step as float CNY/kWh (for planners; money stays exact)."""
        return np.array([float(p) for p in self.export_price_cny_per_kwh], dtype=np.float64)


def load_prices_csv(path: Path) -> PriceSeries:
    """Read and check a prices CSV file (format in the module docstring).

    Parameters
    ----------
    path
        The CSV file.

    Returns
    -------
    PriceSeries
        The grid of steps, the exact prices per step (CNY/kWh) and the base load (kW) if
        the file has it.

    Raises
    ------
    InputError
        At the first problem: the file cannot be read or is not UTF-8, the header lacks,
        repeats or adds a column, a value is missing, malformed, negative or has too many
        decimals, or the starts are not equally spaced. The message names the file, the
        row (header = row 1) and the column.
    """
    rows = read_rows(path, content="prices")
    header = check_header(rows[0], path, columns=COLUMNS, required=REQUIRED_COLUMNS)
    has_base_load = "base_load_kw" in header
    starts: list[datetime] = []
    import_prices: list[Decimal] = []
    export_prices: list[Decimal] = []
    base_load_kw: list[float] = []
    step: timedelta | None = None

    for row, cells in series_rows(path, rows, header, content="prices", unit="step"):
        parser = _RowParser(cells, path, row)
        start = parser.time("start")
        if starts:
            gap = start - starts[-1]
            if gap <= timedelta(0):
                raise parser.error(
                    f"{start.isoformat()} is not after the previous start "
                    f"{starts[-1].isoformat()} (row {row - 1}); starts must increase",
                    "start",
                )
            if step is None:
                step = gap
            elif gap != step:
                raise parser.error(
                    f"{start.isoformat()} is {_duration(gap)} after the previous start "
                    f"(row {row - 1}), but the step is {_duration(step)} (rows 2-3); "
                    "steps must be equal",
                    "start",
                )
        starts.append(start)
        import_prices.append(parser.price("import_price_cny_per_kwh"))
        export_prices.append(parser.price("export_price_cny_per_kwh"))
        if has_base_load:
            base_load_kw.append(parser.number("base_load_kw"))

    if step is None:
        raise InputError(
            "only one step: the file needs at least two rows to fix the step length",
            file=path,
            row=2,
            field="start",
        )
    return PriceSeries(
        grid=TimeGrid(start=starts[0], step=step, length=len(starts)),
        import_price_cny_per_kwh=tuple(import_prices),
        export_price_cny_per_kwh=tuple(export_prices),
        base_load_kw=np.array(base_load_kw, dtype=np.float64) if has_base_load else None,
        utc_offsets_s=tuple(_offset_s(start) for start in starts),
    )


def _offset_s(time: datetime) -> int:
    """The UTC offset ``time`` was written in, s east of UTC (every start has one)."""
    offset = time.utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def _duration(length: timedelta) -> str:
    """``15 min`` or ``90 s``: a step length as people write it."""
    seconds = int(length.total_seconds())
    if seconds % SECONDS_PER_MINUTE == 0:
        return f"{seconds // SECONDS_PER_MINUTE} min"
    return f"{seconds} s"


class _RowParser(CsvRow):
    """Typed values of one prices row."""

    example_time = "2025-07-16T00:00:00+08:00"

    def price(self, name: str) -> Decimal:
        """A required exact price: finite, >= 0, below the maximum, at most 9 decimals."""
        text = self.required(name)
        problem = number_problem(text)  # CSV numbers only: Decimal would read "6_0" as 60
        if problem is not None:
            raise self.error(problem, name)
        value = Decimal(text)
        if value < 0:
            raise self.error(
                f"must be >= 0, got {text}: at a negative price charging and discharging "
                "at once would pay, which the LP planner cannot represent",
                name,
            )
        if value >= MAX_PRICE_CNY_PER_KWH:
            raise self.error(f"must be below {MAX_PRICE_CNY_PER_KWH} CNY/kWh, got {text}", name)
        nano = value * _NANO
        if nano != nano.to_integral_value():
            raise self.error(f"{text} has more than {PRICE_DECIMALS} decimals", name)
        return abs(value) if value == 0 else value  # no "-0" price

    def number(self, name: str) -> float:
        """A required finite number."""
        text = self.required(name)
        value = self.finite(name, text)
        return value
