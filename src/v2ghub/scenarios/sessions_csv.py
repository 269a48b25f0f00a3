"""Load plug-in sessions from a CSV file into a :class:`~v2ghub.model.fleet.Fleet`.

File format
-----------
A UTF-8 text file (a leading byte-order mark, as Excel writes, is accepted) with a header
row naming the columns, in any order, then one row per plug-in session. Column names are
exactly as below (case matters); spaces around a name or a value are ignored. A row whose
cells are all blank is skipped.

=====================  ========  ========  ==========================================
column                 unit      default   meaning
=====================  ========  ========  ==========================================
session_id             text      required  unique id of the session
site_id                text      required  site (station, feeder) the charger is on
arrival                time      required  when the vehicle plugs in
departure              time      required  when it leaves; must be after ``arrival``
battery_kwh            kWh       required  usable battery capacity, > 0
soc_arrival            0-1       required  state of charge (SoC) at arrival
soc_target             0-1       required  SoC the owner wants at departure
soc_min                0-1       0.2       lowest SoC V2G may discharge to
soc_max                0-1       1.0       highest SoC charging may reach
max_charge_kw          kW        required  charger's charging limit, >= 0
max_discharge_kw       kW        required  discharging limit, >= 0; 0 = no V2G
charge_efficiency      (0, 1]    0.92      share of grid energy stored in the battery
discharge_efficiency   (0, 1]    0.92      share of battery energy delivered to grid
charger_kind           text      public    ``home``, ``workplace`` or ``public``
=====================  ========  ========  ==========================================

Optional columns (those with a default) may be left out of the header, or left blank in a
row; either way the default applies. Times are ISO 8601 with a UTC offset, in whole
seconds: ``2025-07-16T18:30:00+08:00`` or ``2025-07-16T10:30:00Z``; a time without an
offset is an error, since the file would mean different instants on different machines.
Rules: ``soc_min <= soc_max`` and ``soc_target <= soc_max``. A session opts in to V2G
when ``max_discharge_kw > 0``.

The efficiency default 0.92 is one-way, grid to battery or back: 3-phase AC chargers
measure 87-93 %, and 0.92² ≈ 0.85 matches the 75-85 % round trip reported for V2G.
A ``soc_min`` above ``soc_arrival`` does not force a discharge floor the vehicle cannot
meet: the fleet uses ``min(soc_arrival, soc_min)`` as the floor.

Example::

    session_id,site_id,arrival,departure,battery_kwh,soc_arrival,soc_target,max_charge_kw,max_discharge_kw
    s1,shenzhen-a,2025-07-16T18:30:00+08:00,2025-07-17T07:45:00+08:00,60,0.35,0.9,7,7
    s2,shenzhen-a,2025-07-16T19:05:00+08:00,2025-07-17T08:10:00+08:00,75,0.5,0.8,11,0

Bounds: values a vehicle cannot have are refused, since they are typos or unit mix-ups
that would otherwise reach the planners (a 1e308 kWh battery):

=====================  ===================================================================
column                 bound
=====================  ===================================================================
battery_kwh            at most 10,000 kWh (ten times a heavy truck's ~1 MWh)
max_charge_kw          at most 5,000 kW (megawatt charging for trucks is 3.75 MW)
max_discharge_kw       at most 5,000 kW
arrival, departure     from 1970-01-01 to 2199-12-31 (UTC)
=====================  ===================================================================

Errors stop at the first bad row (within it, at the first bad value, in the order of the
columns table) and raise :class:`~v2ghub.errors.InputError` naming the file, the row as a
spreadsheet shows it (the header is row 1) and the column.

The file is read column by column (Arrow's CSV reader) and checked with array operations,
so a file of millions of rows loads in seconds and in memory of a few times its size; only
the first bad row found is parsed again, row by row, to say what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from v2ghub import defaults
from v2ghub.errors import InputError
from v2ghub.model.fleet import ChargerKind, Fleet
from v2ghub.scenarios.csv_files import CsvRow, check_header, read_bytes
from v2ghub.scenarios.sessions_table import SessionsTable, read_sessions_table
from v2ghub.units import SECONDS_PER_DAY

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

DEFAULT_SOC_MIN = defaults.SOC_MIN
"""SoC floor for V2G discharge when ``soc_min`` is absent or blank."""
DEFAULT_SOC_MAX = defaults.SOC_MAX
"""SoC ceiling for charging when ``soc_max`` is absent or blank."""
DEFAULT_CHARGE_EFFICIENCY = defaults.CHARGE_EFFICIENCY
"""Grid-to-battery efficiency when ``charge_efficiency`` is absent or blank (AC, 87-93 %)."""
DEFAULT_DISCHARGE_EFFICIENCY = defaults.DISCHARGE_EFFICIENCY
"""Battery-to-grid efficiency when ``discharge_efficiency`` is absent or blank."""
DEFAULT_CHARGER_KIND = ChargerKind.PUBLIC
"""Charger kind when ``charger_kind`` is absent or blank."""

REQUIRED_COLUMNS = (
    "session_id",
    "site_id",
    "arrival",
    "departure",
    "battery_kwh",
    "soc_arrival",
    "soc_target",
    "max_charge_kw",
    "max_discharge_kw",
)
NUMBER_DEFAULTS: dict[str, float] = {
    "soc_min": DEFAULT_SOC_MIN,
    "soc_max": DEFAULT_SOC_MAX,
    "charge_efficiency": DEFAULT_CHARGE_EFFICIENCY,
    "discharge_efficiency": DEFAULT_DISCHARGE_EFFICIENCY,
}
OPTIONAL_COLUMNS = (*NUMBER_DEFAULTS, "charger_kind")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

MAX_BATTERY_KWH = 10_000.0
"""Largest battery accepted, kWh: ten times a heavy truck's (~1 MWh)."""
MAX_POWER_KW = 5_000.0
"""Largest charging or discharging limit accepted, kW: above megawatt charging (3.75 MW)."""
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
"""Earliest arrival or departure accepted."""
LATEST = datetime(2199, 12, 31, 23, 59, 59, tzinfo=UTC)
"""Latest arrival or departure accepted."""

_CHARGER_KINDS = {kind.name.lower(): kind for kind in ChargerKind}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND = timedelta(seconds=1)
_TIME_RANGE = f"{EARLIEST.date()} to {LATEST.date()} (UTC)"

Rule = Callable[[FloatArray], BoolArray]


def _fraction(value: FloatArray) -> BoolArray:
    return np.asarray((value >= 0) & (value <= 1))


def _efficiency(value: FloatArray) -> BoolArray:
    return np.asarray((value > 0) & (value <= 1))


def _positive(value: FloatArray) -> BoolArray:
    return np.asarray(value > 0)


def _non_negative(value: FloatArray) -> BoolArray:
    return np.asarray(value >= 0)


# Numeric columns in the order they are checked, with their rule (on arrays or scalars).
_NUMBER_RULES: dict[str, tuple[Rule, str]] = {
    "battery_kwh": (_positive, "must be > 0"),
    "soc_arrival": (_fraction, "must be within 0-1"),
    "soc_target": (_fraction, "must be within 0-1"),
    "soc_min": (_fraction, "must be within 0-1"),
    "soc_max": (_fraction, "must be within 0-1"),
    "max_charge_kw": (_non_negative, "must be >= 0"),
    "max_discharge_kw": (_non_negative, "must be >= 0"),
    "charge_efficiency": (_efficiency, "must be within (0, 1]"),
    "discharge_efficiency": (_efficiency, "must be within (0, 1]"),
}
UPPER_BOUNDS: dict[str, tuple[float, str]] = {
    "battery_kwh": (MAX_BATTERY_KWH, "kWh, the largest battery accepted"),
    "max_charge_kw": (MAX_POWER_KW, "kW, the largest charger limit accepted"),
    "max_discharge_kw": (MAX_POWER_KW, "kW, the largest charger limit accepted"),
}
"""The bounds of the module docstring's table: value, unit and what it is."""


@dataclass(frozen=True)
class SessionsFile:
    """The sessions of one CSV file.

    Attributes
    ----------
    fleet
        One entry per data row, in file order; times are UTC epoch seconds.
    site_ids
        Distinct ``site_id`` values in order of first appearance;
        ``fleet.site_index`` points into this tuple.
    first_arrival
        The earliest arrival, with the UTC offset it was written with (the first such row
        on a tie).
    rows
        The row of each session as a spreadsheet shows it (header = row 1), for errors
        found after loading.
    """

    fleet: Fleet
    site_ids: tuple[str, ...]
    first_arrival: datetime
    rows: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def load_sessions_csv(path: Path) -> SessionsFile:
    """Read and check a sessions CSV file (format in the module docstring).

    Parameters
    ----------
    path
        The CSV file.

    Returns
    -------
    SessionsFile
        The fleet, its site ids, its first arrival and the row of each session.

    Raises
    ------
    InputError
        At the first problem: the file cannot be read or is not UTF-8, the header lacks,
        repeats or adds a column, or a value is missing, malformed, out of bounds or
        breaks a rule. The message names the file, the row (header = row 1) and the
        column.
    """
    data = read_bytes(path)
    table = read_sessions_table(
        path,
        data,
        check=lambda cells: check_header(cells, path, columns=COLUMNS, required=REQUIRED_COLUMNS),
    )
    if table.n_rows == 0:
        _raise_at(table, path, table.bad_cells_row)
        raise InputError("no sessions: the file has a header but no data rows", file=path, row=2)
    checked = _Checked(table)
    first_bad = checked.first_bad_row()
    if first_bad is not None or table.bad_cells_row is not None:
        _raise_at(table, path, table.bad_cells_row, first_bad, checked)
    return checked.sessions_file()


def _raise_at(
    table: SessionsTable,
    path: Path,
    bad_cells_row: int | None,
    first_bad: int | None = None,
    checked: _Checked | None = None,
) -> None:
    """Raise the error of the earliest fault: a row with the wrong number of cells, or
    data row ``first_bad`` (parsed again, row by row, for its message)."""
    value_row = int(table.rows[first_bad]) if first_bad is not None else None
    if bad_cells_row is not None and (value_row is None or bad_cells_row < value_row):
        raise InputError(table.bad_cells_problem, file=path, row=bad_cells_row)
    if first_bad is None or checked is None or value_row is None:
        return
    cells = table.row_cells(first_bad)
    parser = _RowParser(cells, path, value_row)
    first_row_of_id = checked.first_row_of_same_id(first_bad)
    parser.check(first_row_of_id)
    # The arrays found a fault the row-by-row check does not: say so rather than load.
    raise InputError("a value here cannot be read; check this row", file=path, row=value_row)


class _Checked:
    """The columns of a sessions table as typed arrays, each fault of each row found at
    once with array operations."""

    def __init__(self, table: SessionsTable) -> None:
        self.table = table
        n = table.n_rows
        self.bad = np.zeros(n, dtype=np.bool_)
        self.session_codes, _ = table.encoded("session_id")
        self.bad |= table.blank("session_id")
        self.first_of_code = np.full(int(self.session_codes.max(initial=-1)) + 1, n, np.int64)
        # Dictionary codes follow first appearance, so a row is a repeat when its code was
        # already seen: the first row of each code is where the code first occurs.
        codes, first = np.unique(self.session_codes, return_index=True)
        self.first_of_code[codes] = first
        self.bad |= self.first_of_code[self.session_codes] != np.arange(n)
        self.site_index, sites = table.encoded("site_id")
        self.site_ids: tuple[str, ...] = tuple(sites.to_pylist())
        self.bad |= table.blank("site_id")
        self.arrival_s = self._time("arrival")
        self.departure_s = self._time("departure")
        self.bad |= self.departure_s <= self.arrival_s
        self.numbers: dict[str, FloatArray] = {}
        for name, (rule, _) in _NUMBER_RULES.items():
            values, bad = table.numbers(name, default=NUMBER_DEFAULTS.get(name))
            self.bad |= bad | ~rule(values)
            if name in UPPER_BOUNDS:
                self.bad |= values > UPPER_BOUNDS[name][0]
            self.numbers[name] = values
        self.bad |= self.numbers["soc_min"] > self.numbers["soc_max"]
        self.bad |= self.numbers["soc_target"] > self.numbers["soc_max"]
        kinds, bad_kind = table.choices(
            "charger_kind",
            {name: int(kind) for name, kind in _CHARGER_KINDS.items()},
            default=int(DEFAULT_CHARGER_KIND),
        )
        self.bad |= bad_kind
        self.charger_kind = kinds.astype(np.int8)

    def _time(self, name: str) -> IntArray:
        epoch_s, bad = self.table.times(name)
        self.bad |= bad | (epoch_s < _epoch_seconds(EARLIEST)) | (epoch_s > _epoch_seconds(LATEST))
        return epoch_s

    def first_bad_row(self) -> int | None:
        """Index of the first data row with a fault, or ``None``."""
        if not self.bad.any():
            return None
        return int(np.argmax(self.bad))

    def first_row_of_same_id(self, index: int) -> int | None:
        """The file row where data row ``index``'s session id first occurs, if earlier."""
        first = int(self.first_of_code[self.session_codes[index]])
        return int(self.table.rows[first]) if first < index else None

    def sessions_file(self) -> SessionsFile:
        """The checked sessions."""
        table, numbers = self.table, self.numbers
        max_discharge_kw = numbers["max_discharge_kw"]
        fleet = Fleet(
            site_index=self.site_index,
            battery_kwh=numbers["battery_kwh"],
            soc_arrival=numbers["soc_arrival"],
            soc_target=numbers["soc_target"],
            soc_min=numbers["soc_min"],
            soc_max=numbers["soc_max"],
            max_charge_kw=numbers["max_charge_kw"],
            max_discharge_kw=max_discharge_kw,
            charge_efficiency=numbers["charge_efficiency"],
            discharge_efficiency=numbers["discharge_efficiency"],
            arrival_s=self.arrival_s,
            departure_s=self.departure_s,
            v2g_opt_in=max_discharge_kw > 0,
            charger_kind=self.charger_kind,
            session_ids=table.strings("session_id"),
        )
        first = int(np.argmin(self.arrival_s))  # the first of equal earliest arrivals
        return SessionsFile(
            fleet=fleet,
            site_ids=self.site_ids,
            first_arrival=datetime.fromisoformat(table.cell(first, "arrival")),
            rows=table.rows,
        )


def _epoch_seconds(time: datetime) -> int:
    """Whole UTC epoch seconds of an aware, whole-second time (exact, no float)."""
    return (time - _EPOCH) // _ONE_SECOND


class _RowParser(CsvRow):
    """Typed values of one sessions row: the row-by-row check that words the first fault
    of a row the arrays found faulty."""

    def check(self, first_row_of_id: int | None) -> None:
        """Raise at the row's first fault, in the order of the columns table."""
        session_id = self.required("session_id")
        if first_row_of_id is not None:
            raise self.error(
                f"duplicate session_id {session_id!r} (first on row {first_row_of_id})",
                "session_id",
            )
        self.required("site_id")
        arrival = self.bounded_time("arrival")
        departure = self.bounded_time("departure")
        if departure <= arrival:
            raise self.error(
                f"{departure.isoformat()} is not after arrival {arrival.isoformat()}",
                "departure",
            )
        values = {name: self.number(name) for name in _NUMBER_RULES}
        self.no_more_than("soc_min", "soc_max", values)
        self.no_more_than("soc_target", "soc_max", values)
        self.charger_kind()

    def bounded_time(self, name: str) -> datetime:
        """A time within :data:`EARLIEST` to :data:`LATEST`."""
        time = self.time(name)
        if not EARLIEST <= time <= LATEST:
            raise self.error(f"{time.isoformat()} is outside {_TIME_RANGE}", name)
        return time

    def number(self, name: str) -> float:
        """A finite number obeying its rule; a blank optional cell gives the default."""
        text = self._cells.get(name, "")
        if not text and name in NUMBER_DEFAULTS:
            return NUMBER_DEFAULTS[name]
        text = self.required(name)
        value = self.finite(name, text)
        check, rule = _NUMBER_RULES[name]
        if not check(np.array([value]))[0]:
            raise self.error(f"{rule}, got {text}", name)
        bound, unit = UPPER_BOUNDS.get(name, (np.inf, ""))
        if value > bound:
            raise self.error(f"must be at most {bound:,.0f} {unit}, got {text}", name)
        return value

    def no_more_than(self, name: str, limit: str, values: dict[str, float]) -> None:
        """Check ``values[name] <= values[limit]``, saying which value was a default."""
        if values[name] > values[limit]:
            raise self.error(
                f"{self._shown(name, values)} exceeds {limit} {self._shown(limit, values)}",
                name,
            )

    def _shown(self, name: str, values: dict[str, float]) -> str:
        text = self._cells.get(name, "")
        return text if text else f"{values[name]:g} (default)"

    def charger_kind(self) -> ChargerKind:
        """The optional ``charger_kind`` cell, case-insensitive; blank gives the default."""
        text = self._cells.get("charger_kind", "")
        if not text:
            return DEFAULT_CHARGER_KIND
        kind = _CHARGER_KINDS.get(text.lower())
        if kind is None:
            raise self.error(f"{text!r} is not one of {', '.join(_CHARGER_KINDS)}", "charger_kind")
        return kind


def check_span(sessions: SessionsFile, path: Path, *, max_days: int) -> None:
    """Refuse sessions spanning more than ``max_days`` (first arrival to last departure),
    naming the row and field that stretch the span: of the first arrival and the last
    departure, the one farther from the median arrival (most likely a mistyped date).

    Raises
    ------
    InputError
        Naming ``path``, the session's row and ``arrival`` or ``departure``.
    """
    fleet = sessions.fleet
    first, last = int(np.argmin(fleet.arrival_s)), int(np.argmax(fleet.departure_s))
    earliest_s, latest_s = int(fleet.arrival_s[first]), int(fleet.departure_s[last])
    span_s = latest_s - earliest_s
    if span_s <= max_days * SECONDS_PER_DAY:
        return
    middle_s = float(np.median(fleet.arrival_s))
    if latest_s - middle_s >= middle_s - earliest_s:
        index, name, what = last, "departure", "leaves last"
    else:
        index, name, what = first, "arrival", "arrives first"
    row = int(sessions.rows[index]) if index < sessions.rows.size else index + 2
    raise InputError(
        f"the sessions span {span_s / SECONDS_PER_DAY:,.0f} days (session "
        f"{fleet.label(index)!r} {what}); the twin simulates up to {max_days} days: "
        f"check its {name}",
        file=path,
        row=row,
        field=name,
    )
