"""Tests of the sessions CSV loader: every error names file, row and field; values survive."""

from __future__ import annotations

import codecs
import csv
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2ghub.errors import InputError
from v2ghub.model.fleet import ChargerKind
from v2ghub.scenarios import sessions_csv
from v2ghub.scenarios.sessions_csv import (
    COLUMNS,
    DEFAULT_CHARGE_EFFICIENCY,
    DEFAULT_DISCHARGE_EFFICIENCY,
    DEFAULT_SOC_MAX,
    DEFAULT_SOC_MIN,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    load_sessions_csv,
)

# A valid session with every column filled; tests change one cell of it.
GOOD = {
    "session_id": "s1",
    "site_id": "shenzhen-a",
    "arrival": "2025-07-16T18:30:00+08:00",
    "departure": "2025-07-17T07:45:00+08:00",
    "battery_kwh": "60",
    "soc_arrival": "0.35",
    "soc_target": "0.9",
    "soc_min": "0.25",
    "soc_max": "0.95",
    "max_charge_kw": "7",
    "max_discharge_kw": "7",
    "charge_efficiency": "0.9",
    "discharge_efficiency": "0.91",
    "charger_kind": "home",
}


def write_text(tmp_path: Path, text: str) -> Path:
    """Write ``text`` to ``sessions.csv`` in ``tmp_path``."""
    path = tmp_path / "sessions.csv"
    path.write_text(text, encoding="utf-8")
    return path


def write_sessions(tmp_path: Path, rows: list[dict[str, str]], columns: tuple[str, ...]) -> Path:
    """A file with ``columns`` as header and one line per row (cells joined by commas)."""
    lines = [",".join(columns)] + [",".join(row.get(c, "") for c in columns) for row in rows]
    return write_text(tmp_path, "\n".join(lines) + "\n")


def with_bad_second_row(tmp_path: Path, **cells: str) -> Path:
    """Two sessions, all columns; the second (row 3) has ``cells`` replaced."""
    second = GOOD | {"session_id": "s2"} | cells
    return write_sessions(tmp_path, [GOOD, second], COLUMNS)


def where(path: Path, row: int, field: str | None = None) -> str:
    """Regex for the start of an error message about ``path``, ``row`` and ``field``."""
    location = f"row {row}" if field is None else f"row {row}, field {field}"
    return "^" + re.escape(f"{path}: {location}: ")


# --- the file as a whole -----------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.csv"
    with pytest.raises(InputError, match="^" + re.escape(f"{path}: no such file")):
        load_sessions_csv(path)


def test_directory_is_not_readable_as_a_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="^" + re.escape(f"{tmp_path}: cannot read the file")):
        load_sessions_csv(tmp_path)


@pytest.mark.parametrize("text", ["", "\n", "  \n\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = write_text(tmp_path, text)
    with pytest.raises(InputError, match="^" + re.escape(f"{path}: the file is empty")):
        load_sessions_csv(path)


def test_not_utf8_names_the_row_and_field_of_the_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "sessions.csv"
    lines = [",".join(COLUMNS), ",".join(GOOD[c] for c in COLUMNS)]
    lines.append(",".join((GOOD | {"session_id": "s2", "site_id": "café"})[c] for c in COLUMNS))
    path.write_bytes("\n".join(lines).encode("latin-1"))
    problem = r"not UTF-8 text \(byte 0xe9\)"
    with pytest.raises(InputError, match=where(path, 3, "site_id") + problem):
        load_sessions_csv(path)


@pytest.mark.parametrize(
    "text", [",".join(REQUIRED_COLUMNS) + "\n", ",".join(COLUMNS) + "\n\n,,\n"]
)
def test_header_without_sessions(tmp_path: Path, text: str) -> None:
    path = write_text(tmp_path, text)
    with pytest.raises(InputError, match=where(path, 2) + "no sessions"):
        load_sessions_csv(path)


# --- the header --------------------------------------------------------------------------


@pytest.mark.parametrize("column", REQUIRED_COLUMNS)
def test_missing_column(tmp_path: Path, column: str) -> None:
    columns = tuple(c for c in COLUMNS if c != column)
    path = write_sessions(tmp_path, [GOOD], columns)
    with pytest.raises(InputError, match=where(path, 1, column) + "missing column$"):
        load_sessions_csv(path)


def test_unknown_column(tmp_path: Path) -> None:
    path = write_sessions(tmp_path, [GOOD | {"socmin": "0.1"}], (*REQUIRED_COLUMNS, "socmin"))
    with pytest.raises(InputError, match=where(path, 1, "socmin") + "unknown column 'socmin'"):
        load_sessions_csv(path)


def test_column_names_are_case_sensitive(tmp_path: Path) -> None:
    columns = tuple(c.upper() if c == "site_id" else c for c in REQUIRED_COLUMNS)
    path = write_sessions(tmp_path, [GOOD | {"SITE_ID": "a"}], columns)
    with pytest.raises(InputError, match=where(path, 1, "SITE_ID") + "unknown column"):
        load_sessions_csv(path)


def test_duplicate_column(tmp_path: Path) -> None:
    path = write_sessions(tmp_path, [GOOD], (*REQUIRED_COLUMNS, "soc_min", "soc_min"))
    problem = re.escape("duplicate column (columns 10 and 11)")
    with pytest.raises(InputError, match=where(path, 1, "soc_min") + problem):
        load_sessions_csv(path)


def test_blank_column_name(tmp_path: Path) -> None:
    path = write_text(tmp_path, ",".join(REQUIRED_COLUMNS) + ",\n")
    with pytest.raises(InputError, match=where(path, 1) + "column 10 has no name"):
        load_sessions_csv(path)


def test_blank_first_row(tmp_path: Path) -> None:
    path = write_text(tmp_path, "\n" + ",".join(REQUIRED_COLUMNS) + "\n")
    with pytest.raises(InputError, match=where(path, 1) + "the first row is blank"):
        load_sessions_csv(path)


# --- rows and cells ----------------------------------------------------------------------


@pytest.mark.parametrize("extra", [",x", ""])
def test_wrong_number_of_cells(tmp_path: Path, extra: str) -> None:
    good = ",".join((GOOD | {"session_id": "s0"})[c] for c in REQUIRED_COLUMNS)
    bad = ",".join(GOOD[c] for c in REQUIRED_COLUMNS)
    bad = bad + extra if extra else bad.rsplit(",", 1)[0]
    text = "\n".join([",".join(REQUIRED_COLUMNS), good, bad])
    path = write_text(tmp_path, text)
    cells = 10 if extra else 8
    with pytest.raises(
        InputError, match=where(path, 3) + f"has {cells} cells but the header has 9"
    ):
        load_sessions_csv(path)


@pytest.mark.parametrize("column", REQUIRED_COLUMNS)
def test_blank_required_value(tmp_path: Path, column: str) -> None:
    path = with_bad_second_row(tmp_path, **{column: "  "})
    with pytest.raises(InputError, match=where(path, 3, column) + "blank; a value is required"):
        load_sessions_csv(path)


@pytest.mark.parametrize(
    ("column", "text"),
    [("battery_kwh", "sixty"), ("soc_arrival", "35%"), ("max_charge_kw", "7kW"), ("soc_min", "-")],
)
def test_unparsable_number(tmp_path: Path, column: str, text: str) -> None:
    path = with_bad_second_row(tmp_path, **{column: text})
    problem = re.escape(f"{text!r} is not a number")
    with pytest.raises(InputError, match=where(path, 3, column) + problem):
        load_sessions_csv(path)


@pytest.mark.parametrize(
    ("column", "text"),
    [
        ("battery_kwh", "nan"),
        ("soc_target", "NaN"),
        ("max_discharge_kw", "inf"),
        ("soc_max", "-Infinity"),
    ],
)
def test_non_finite_number(tmp_path: Path, column: str, text: str) -> None:
    path = with_bad_second_row(tmp_path, **{column: text})
    problem = re.escape(f"{text!r} is not a finite number")
    with pytest.raises(InputError, match=where(path, 3, column) + problem):
        load_sessions_csv(path)


@pytest.mark.parametrize(
    ("column", "text"),
    [("arrival", "tomorrow"), ("departure", "2025-13-01T00:00:00+08:00"), ("arrival", "18:30")],
)
def test_unparsable_time(tmp_path: Path, column: str, text: str) -> None:
    path = with_bad_second_row(tmp_path, **{column: text})
    problem = re.escape(f"{text!r} is not an ISO 8601 time")
    with pytest.raises(InputError, match=where(path, 3, column) + problem):
        load_sessions_csv(path)


@pytest.mark.parametrize(
    ("column", "text"), [("arrival", "2025-07-16T18:30:00"), ("departure", "2025-07-17")]
)
def test_time_without_offset(tmp_path: Path, column: str, text: str) -> None:
    path = with_bad_second_row(tmp_path, **{column: text})
    problem = re.escape(f"{text!r} has no UTC offset")
    with pytest.raises(InputError, match=where(path, 3, column) + problem):
        load_sessions_csv(path)


def test_fractional_seconds(tmp_path: Path) -> None:
    text = "2025-07-16T18:30:00.5+08:00"
    path = with_bad_second_row(tmp_path, arrival=text)
    problem = re.escape(f"{text!r} has fractional seconds")
    with pytest.raises(InputError, match=where(path, 3, "arrival") + problem):
        load_sessions_csv(path)


@pytest.mark.parametrize(
    "departure",
    [
        "2025-07-16T18:30:00+08:00",  # the same as arrival
        "2025-07-16T10:30:00Z",  # the same instant, written in UTC
        "2025-07-16T18:29:59+08:00",
    ],
)
def test_departure_not_after_arrival(tmp_path: Path, departure: str) -> None:
    path = with_bad_second_row(tmp_path, departure=departure)
    problem = re.escape(f"is not after arrival {GOOD['arrival']}")
    with pytest.raises(InputError, match=where(path, 3, "departure") + ".*" + problem):
        load_sessions_csv(path)


OUT_OF_RANGE = [
    *[
        (column, value, "must be within 0-1")
        for column in ("soc_arrival", "soc_target", "soc_min", "soc_max")
        for value in ("-0.1", "1.5")
    ],
    ("battery_kwh", "0", "must be > 0"),
    ("battery_kwh", "-60", "must be > 0"),
    ("max_charge_kw", "-7", "must be >= 0"),
    ("max_discharge_kw", "-0.5", "must be >= 0"),
    *[
        (column, value, "must be within (0, 1]")
        for column in ("charge_efficiency", "discharge_efficiency")
        for value in ("0", "-0.9", "1.01")
    ],
]


@pytest.mark.parametrize(("column", "text", "rule"), OUT_OF_RANGE)
def test_value_out_of_range(tmp_path: Path, column: str, text: str, rule: str) -> None:
    path = with_bad_second_row(tmp_path, **{column: text})
    problem = re.escape(f"{rule}, got {text}") + "$"
    with pytest.raises(InputError, match=where(path, 3, column) + problem):
        load_sessions_csv(path)


def test_soc_min_above_soc_max(tmp_path: Path) -> None:
    path = with_bad_second_row(tmp_path, soc_min="0.6", soc_max="0.5", soc_target="0.5")
    with pytest.raises(InputError, match=where(path, 3, "soc_min") + "0.6 exceeds soc_max 0.5$"):
        load_sessions_csv(path)


def test_default_soc_min_above_soc_max_says_it_is_the_default(tmp_path: Path) -> None:
    path = with_bad_second_row(tmp_path, soc_min="", soc_max="0.1", soc_target="0.1")
    problem = re.escape("0.2 (default) exceeds soc_max 0.1")
    with pytest.raises(InputError, match=where(path, 3, "soc_min") + problem):
        load_sessions_csv(path)


def test_soc_target_above_soc_max(tmp_path: Path) -> None:
    path = with_bad_second_row(tmp_path, soc_target="0.96")
    problem = "0.96 exceeds soc_max 0.95$"
    with pytest.raises(InputError, match=where(path, 3, "soc_target") + problem):
        load_sessions_csv(path)


def test_duplicate_session_id(tmp_path: Path) -> None:
    path = with_bad_second_row(tmp_path, session_id=GOOD["session_id"])
    problem = re.escape("duplicate session_id 's1' (first on row 2)")
    with pytest.raises(InputError, match=where(path, 3, "session_id") + problem):
        load_sessions_csv(path)


def test_unknown_charger_kind(tmp_path: Path) -> None:
    path = with_bad_second_row(tmp_path, charger_kind="depot")
    problem = re.escape("'depot' is not one of home, workplace, public")
    with pytest.raises(InputError, match=where(path, 3, "charger_kind") + problem):
        load_sessions_csv(path)


def test_first_error_wins(tmp_path: Path) -> None:
    first = GOOD | {"battery_kwh": "-1", "soc_arrival": "2"}
    second = GOOD | {"session_id": "s2", "arrival": "soon"}
    path = write_sessions(tmp_path, [first, second], COLUMNS)
    with pytest.raises(InputError, match=where(path, 2, "battery_kwh")):
        load_sessions_csv(path)


def test_rows_count_quoted_records_not_lines(tmp_path: Path) -> None:
    # A spreadsheet shows a quoted cell with a line break as one row.
    first = GOOD | {"site_id": '"line one\nline two"'}
    second = GOOD | {"session_id": "s2", "battery_kwh": "x"}
    path = write_sessions(tmp_path, [first, second], COLUMNS)
    with pytest.raises(InputError, match=where(path, 3, "battery_kwh")):
        load_sessions_csv(path)


# --- a good file -------------------------------------------------------------------------


def test_good_file_round_trips_exact_values(tmp_path: Path) -> None:
    columns = ("arrival", *reversed(REQUIRED_COLUMNS[:2]), *REQUIRED_COLUMNS[3:], "soc_min")
    columns = (*columns, "charger_kind")
    rows = [
        GOOD | {"site_id": " shenzhen-a ", "charger_kind": "Workplace"},
        GOOD
        | {
            "session_id": "s2",
            "site_id": "深圳-b",
            "arrival": "2025-07-16T10:00:00Z",
            "departure": "2025-07-16T23:45:00Z",
            "max_discharge_kw": "0",
            "soc_min": "",
            "charger_kind": "",
        },
        {},  # a blank row is skipped but still counted
        GOOD | {"session_id": "s3", "battery_kwh": "75.5", "arrival": "2025-07-16T19:00:00+08:00"},
    ]
    path = write_sessions(tmp_path, rows, columns)
    path.write_bytes(codecs.BOM_UTF8 + path.read_bytes())

    loaded = load_sessions_csv(path)
    fleet = loaded.fleet

    assert loaded.site_ids == ("shenzhen-a", "深圳-b")
    assert fleet.site_index.tolist() == [0, 1, 0]
    assert fleet.session_ids is not None
    assert fleet.session_ids.tolist() == ["s1", "s2", "s3"]
    # 2025-07-16T18:30:00+08:00 is 10:30 UTC: 1,752,624,000 s at midnight + 10.5 h.
    assert fleet.arrival_s.dtype == np.int64
    assert fleet.arrival_s.tolist() == [1752661800, 1752660000, 1752663600]
    assert fleet.departure_s.tolist() == [1752709500, 1752709500, 1752709500]
    assert fleet.battery_kwh.tolist() == [60.0, 60.0, 75.5]
    assert fleet.soc_arrival.tolist() == [0.35] * 3
    assert fleet.soc_target.tolist() == [0.9] * 3
    assert fleet.soc_min.tolist() == [0.25, DEFAULT_SOC_MIN, 0.25]
    assert fleet.soc_max.tolist() == [DEFAULT_SOC_MAX] * 3
    assert fleet.max_charge_kw.tolist() == [7.0] * 3
    assert fleet.max_discharge_kw.tolist() == [7.0, 0.0, 7.0]
    assert fleet.v2g_opt_in.tolist() == [True, False, True]
    assert fleet.charge_efficiency.tolist() == [DEFAULT_CHARGE_EFFICIENCY] * 3
    assert fleet.discharge_efficiency.tolist() == [DEFAULT_DISCHARGE_EFFICIENCY] * 3
    assert fleet.charger_kind.tolist() == [
        ChargerKind.WORKPLACE,
        ChargerKind.PUBLIC,
        ChargerKind.HOME,
    ]
    assert loaded.first_arrival == datetime(2025, 7, 16, 10, 0, tzinfo=UTC)
    assert loaded.first_arrival.utcoffset() == timedelta(0)


def test_charger_kind_defaults_to_public_without_the_column(tmp_path: Path) -> None:
    path = write_sessions(tmp_path, [GOOD], REQUIRED_COLUMNS)
    loaded = load_sessions_csv(path)
    assert loaded.fleet.charger_kind.tolist() == [ChargerKind.PUBLIC]
    assert loaded.first_arrival.isoformat() == GOOD["arrival"]


def test_docstring_documents_every_column_and_default() -> None:
    doc = sessions_csv.__doc__
    assert doc is not None
    # The table's cells are separated by two or more spaces: column, unit, default, meaning.
    table = [re.split(r"\s{2,}", line) for line in doc.splitlines()]
    documented = {cells[0]: cells[2] for cells in table if len(cells) == 4 and cells[0][0] != "="}
    assert documented.pop("column") == "default"
    expected = dict.fromkeys(REQUIRED_COLUMNS, "required")
    expected |= {column: str(default) for column, default in sessions_csv.NUMBER_DEFAULTS.items()}
    expected["charger_kind"] = sessions_csv.DEFAULT_CHARGER_KIND.name.lower()
    assert documented == expected
    assert set(OPTIONAL_COLUMNS) == set(COLUMNS) - set(REQUIRED_COLUMNS)


# --- property: what is written is what is read ------------------------------------------


@dataclass(frozen=True)
class Session:
    """One session as written; ``None`` in an optional field means blank or absent."""

    session_id: str
    site_id: str
    arrival: datetime
    departure: datetime
    numbers: dict[str, float | None]
    charger_kind: ChargerKind | None


@dataclass(frozen=True)
class SessionsTable:
    """Sessions and the columns (in file order) they are written with."""

    columns: tuple[str, ...]
    sessions: list[Session]


NAMES = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")),
    min_size=1,
    max_size=8,
).map(str.strip)
NAMES = NAMES.filter(bool)
OFFSETS = st.integers(-12 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
EPOCH_2000_S = 946684800
EPOCH_2100_S = 4102444800


def fractions(high: float = 1.0) -> st.SearchStrategy[float]:
    """Floats within 0-``high``."""
    return st.floats(0.0, high)


@st.composite
def sessions_tables(draw: st.DrawFn) -> SessionsTable:
    """Valid sessions, with a random subset of optional columns in a random order."""
    optional = draw(st.lists(st.sampled_from(OPTIONAL_COLUMNS), unique=True))
    columns = tuple(draw(st.permutations((*REQUIRED_COLUMNS, *optional))))
    ids = draw(st.lists(NAMES, min_size=1, max_size=6, unique=True))
    sites = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))

    def maybe(column: str, values: st.SearchStrategy[float]) -> float | None:
        return draw(st.none() | values) if column in optional else None

    sessions = []
    for session_id in ids:
        arrival_s = draw(st.integers(EPOCH_2000_S, EPOCH_2100_S))
        stay_s = draw(st.integers(1, 14 * 86400))
        arrival = datetime.fromtimestamp(arrival_s, draw(OFFSETS))
        departure = datetime.fromtimestamp(arrival_s + stay_s, draw(OFFSETS))
        # Without a soc_min column the default floor applies, so soc_max must not be below it.
        lowest_max = 0.0 if "soc_min" in optional else DEFAULT_SOC_MIN
        soc_max = maybe("soc_max", st.floats(lowest_max, 1.0))
        top = DEFAULT_SOC_MAX if soc_max is None else soc_max
        if top < DEFAULT_SOC_MIN:
            soc_min: float | None = draw(fractions(top))
        else:
            soc_min = maybe("soc_min", fractions(top))
        efficiencies = st.floats(0.0, 1.0, exclude_min=True)
        numbers = {
            "battery_kwh": draw(st.floats(0.0, 1e4, exclude_min=True)),
            "soc_arrival": draw(fractions()),
            "soc_target": draw(fractions(top)),
            "soc_min": soc_min,
            "soc_max": soc_max,
            "max_charge_kw": draw(st.floats(0.0, 1e3)),
            "max_discharge_kw": draw(st.just(0.0) | st.floats(0.0, 1e3)),
            "charge_efficiency": maybe("charge_efficiency", efficiencies),
            "discharge_efficiency": maybe("discharge_efficiency", efficiencies),
        }
        kind = (
            draw(st.none() | st.sampled_from(ChargerKind)) if "charger_kind" in optional else None
        )
        site_id = draw(st.sampled_from(sites))
        sessions.append(Session(session_id, site_id, arrival, departure, numbers, kind))
    return SessionsTable(columns, sessions)


def cell(session: Session, column: str) -> str:
    """The text a spreadsheet would write for ``column`` of ``session``."""
    if column in ("session_id", "site_id"):
        return str(getattr(session, column))
    if column in ("arrival", "departure"):
        time: datetime = getattr(session, column)
        text = time.isoformat()
        # Write UTC both ways the format allows, chosen by a digit already random.
        return text.replace("+00:00", "Z") if time.second % 2 else text
    if column == "charger_kind":
        return "" if session.charger_kind is None else session.charger_kind.name.lower()
    value = session.numbers[column]
    return "" if value is None else repr(value)


@settings(deadline=None, max_examples=50)
@given(table=sessions_tables())
def test_valid_sessions_load_back_unchanged(
    tmp_path_factory: pytest.TempPathFactory, table: SessionsTable
) -> None:
    path = tmp_path_factory.mktemp("sessions") / "sessions.csv"
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(table.columns)
        writer.writerows([cell(s, c) for c in table.columns] for s in table.sessions)

    loaded = load_sessions_csv(path)
    fleet = loaded.fleet
    sessions = table.sessions

    assert fleet.session_ids is not None
    assert fleet.session_ids.tolist() == [s.session_id for s in sessions]
    assert [loaded.site_ids[i] for i in fleet.site_index] == [s.site_id for s in sessions]
    assert list(loaded.site_ids) == list(dict.fromkeys(s.site_id for s in sessions))
    assert fleet.arrival_s.tolist() == [int(s.arrival.timestamp()) for s in sessions]
    assert fleet.departure_s.tolist() == [int(s.departure.timestamp()) for s in sessions]
    defaults = sessions_csv.NUMBER_DEFAULTS
    for name in sessions[0].numbers:
        expected = [s.numbers[name] for s in sessions]
        expected = [defaults[name] if v is None else v for v in expected]
        assert getattr(fleet, name).tolist() == expected, name
    assert fleet.v2g_opt_in.tolist() == [s.numbers["max_discharge_kw"] != 0 for s in sessions]
    kinds = [ChargerKind.PUBLIC if s.charger_kind is None else s.charger_kind for s in sessions]
    assert fleet.charger_kind.tolist() == kinds
    first = min(sessions, key=lambda s: s.arrival)
    assert loaded.first_arrival == first.arrival
    assert loaded.first_arrival.utcoffset() == first.arrival.utcoffset()
