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

Errors stop at the first bad value and raise :class:`~v2ghub.errors.InputError` naming
the file, the row as a spreadsheet shows it (the header is row 1) and the column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from v2ghub import defaults
from v2ghub.errors import InputError
from v2ghub.model.fleet import ChargerKind, Fleet
from v2ghub.scenarios.csv_files import CsvRow, check_header, read_rows

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

_CHARGER_KINDS = {kind.name.lower(): kind for kind in ChargerKind}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND = timedelta(seconds=1)


def _fraction(value: float) -> bool:
    return 0 <= value <= 1


def _efficiency(value: float) -> bool:
    return 0 < value <= 1


# Numeric columns in the order they are checked, with their rule.
_NUMBER_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "battery_kwh": (lambda v: v > 0, "must be > 0"),
    "soc_arrival": (_fraction, "must be within 0-1"),
    "soc_target": (_fraction, "must be within 0-1"),
    "soc_min": (_fraction, "must be within 0-1"),
    "soc_max": (_fraction, "must be within 0-1"),
    "max_charge_kw": (lambda v: v >= 0, "must be >= 0"),
    "max_discharge_kw": (lambda v: v >= 0, "must be >= 0"),
    "charge_efficiency": (_efficiency, "must be within (0, 1]"),
    "discharge_efficiency": (_efficiency, "must be within (0, 1]"),
}


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
    rows: tuple[int, ...] = ()


def load_sessions_csv(path: Path) -> SessionsFile:
    """Read and check a sessions CSV file (format in the module docstring).

    Parameters
    ----------
    path
        The CSV file.

    Returns
    -------
    SessionsFile
        The fleet, its site ids and its first arrival.

    Raises
    ------
    InputError
        At the first problem: the file cannot be read or is not UTF-8, the header lacks,
        repeats or adds a column, or a value is missing, malformed or breaks a rule. The
        message names the file, the row (header = row 1) and the column.
    """
    rows = read_rows(path, content="sessions")
    header = check_header(rows[0] if rows else [], path, columns=COLUMNS, required=REQUIRED_COLUMNS)
    numbers: dict[str, list[float]] = {name: [] for name in _NUMBER_RULES}
    arrival_s: list[int] = []
    departure_s: list[int] = []
    site_index: list[int] = []
    charger_kind: list[int] = []
    session_rows: dict[str, int] = {}  # session_id -> row it was first seen on
    site_ids: dict[str, int] = {}  # site_id -> index, in order of first appearance
    first_arrival: datetime | None = None

    for row, cells in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            raise InputError(
                f"has {len(cells)} cells but the header has {len(header)}", file=path, row=row
            )
        parser = _RowParser(dict(zip(header, (c.strip() for c in cells), strict=True)), path, row)

        session_id = parser.text("session_id")
        if session_id in session_rows:
            raise InputError(
                f"duplicate session_id {session_id!r} (first on row {session_rows[session_id]})",
                file=path,
                row=row,
                field="session_id",
            )
        site_id = parser.text("site_id")
        arrival = parser.time("arrival")
        departure = parser.time("departure")
        if departure <= arrival:
            raise InputError(
                f"{departure.isoformat()} is not after arrival {arrival.isoformat()}",
                file=path,
                row=row,
                field="departure",
            )
        values = {name: parser.number(name) for name in _NUMBER_RULES}
        parser.no_more_than("soc_min", "soc_max", values)
        parser.no_more_than("soc_target", "soc_max", values)
        kind = parser.charger_kind()

        session_rows[session_id] = row
        site_index.append(site_ids.setdefault(site_id, len(site_ids)))
        arrival_s.append(_epoch_seconds(arrival))
        departure_s.append(_epoch_seconds(departure))
        if first_arrival is None or arrival < first_arrival:
            first_arrival = arrival
        for name, value in values.items():
            numbers[name].append(value)
        charger_kind.append(int(kind))

    if first_arrival is None:
        raise InputError("no sessions: the file has a header but no data rows", file=path, row=2)
    max_discharge_kw = np.array(numbers["max_discharge_kw"], dtype=np.float64)
    fleet = Fleet(
        site_index=np.array(site_index, dtype=np.int64),
        battery_kwh=np.array(numbers["battery_kwh"], dtype=np.float64),
        soc_arrival=np.array(numbers["soc_arrival"], dtype=np.float64),
        soc_target=np.array(numbers["soc_target"], dtype=np.float64),
        soc_min=np.array(numbers["soc_min"], dtype=np.float64),
        soc_max=np.array(numbers["soc_max"], dtype=np.float64),
        max_charge_kw=np.array(numbers["max_charge_kw"], dtype=np.float64),
        max_discharge_kw=max_discharge_kw,
        charge_efficiency=np.array(numbers["charge_efficiency"], dtype=np.float64),
        discharge_efficiency=np.array(numbers["discharge_efficiency"], dtype=np.float64),
        arrival_s=np.array(arrival_s, dtype=np.int64),
        departure_s=np.array(departure_s, dtype=np.int64),
        v2g_opt_in=max_discharge_kw > 0,
        charger_kind=np.array(charger_kind, dtype=np.int8),
        session_ids=np.array(list(session_rows), dtype=np.str_),
    )
    return SessionsFile(
        fleet=fleet,
        site_ids=tuple(site_ids),
        first_arrival=first_arrival,
        rows=tuple(session_rows.values()),
    )


def _epoch_seconds(time: datetime) -> int:
    """Whole UTC epoch seconds of an aware, whole-second time (exact, no float)."""
    return (time - _EPOCH) // _ONE_SECOND


class _RowParser(CsvRow):
    """Typed values of one sessions row."""

    def text(self, name: str) -> str:
        """A required text cell."""
        return self.required(name)

    def number(self, name: str) -> float:
        """A finite number obeying its rule; a blank optional cell gives the default."""
        text = self._cells.get(name, "")
        if not text and name in NUMBER_DEFAULTS:
            return NUMBER_DEFAULTS[name]
        text = self.required(name)
        value = self.finite(name, text)
        check, rule = _NUMBER_RULES[name]
        if not check(value):
            raise self.error(f"{rule}, got {text}", name)
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
