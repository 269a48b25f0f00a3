"""The sessions loader on what real files hold: numbers as CSV writes them, values a vehicle
cannot have, times out of range, rows counted as a spreadsheet counts them whatever the
line endings, and the faults of a large file found at their row."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2ghub.errors import InputError
from v2ghub.scenarios.csv_files import record_starts
from v2ghub.scenarios.sessions_csv import (
    COLUMNS,
    MAX_BATTERY_KWH,
    MAX_POWER_KW,
    REQUIRED_COLUMNS,
    load_sessions_csv,
)
from v2ghub.scenarios.sessions_table import WHITESPACE

GOOD = {
    "session_id": "s1",
    "site_id": "a",
    "arrival": "2025-07-16T18:30:00+08:00",
    "departure": "2025-07-17T07:45:00+08:00",
    "battery_kwh": "60",
    "soc_arrival": "0.35",
    "soc_target": "0.9",
    "max_charge_kw": "7",
    "max_discharge_kw": "7",
}


def _line(**cells: str) -> str:
    return ",".join((GOOD | cells)[c] for c in REQUIRED_COLUMNS)


def _write(tmp_path: Path, text: str, name: str = "sessions.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def _where(path: Path, row: int, field: str) -> str:
    return "^" + re.escape(f"{path}: row {row}, field {field}: ")


def _file(tmp_path: Path, *lines: str) -> Path:
    return _write(tmp_path, "\n".join([",".join(REQUIRED_COLUMNS), *lines]) + "\n")


@pytest.mark.parametrize(
    ("column", "text"),
    [
        ("battery_kwh", "6_0"),
        ("max_charge_kw", "1_1"),
        ("soc_target", "0.9_0"),
        ("battery_kwh", "٦٠"),  # Arabic-Indic digits, which float() reads as 60
        ("max_discharge_kw", "0x7"),
    ],
)
def test_python_number_syntax_is_not_a_csv_number(tmp_path: Path, column: str, text: str) -> None:
    path = _file(tmp_path, _line(), _line(session_id="s2", **{column: text}))
    problem = re.escape(f"{text!r} is not a number")
    with pytest.raises(InputError, match=_where(path, 3, column) + problem):
        load_sessions_csv(path)


@pytest.mark.parametrize(
    ("column", "text", "bound"),
    [
        ("battery_kwh", "1e308", f"must be at most {MAX_BATTERY_KWH:,.0f} kWh"),
        ("battery_kwh", "10000.5", f"must be at most {MAX_BATTERY_KWH:,.0f} kWh"),
        ("max_charge_kw", "7e6", f"must be at most {MAX_POWER_KW:,.0f} kW"),
        ("max_discharge_kw", "5001", f"must be at most {MAX_POWER_KW:,.0f} kW"),
    ],
)
def test_physically_absurd_values_are_refused_with_their_bound(
    tmp_path: Path, column: str, text: str, bound: str
) -> None:
    path = _file(tmp_path, _line(session_id="s2", **{column: text}))
    with pytest.raises(InputError, match=_where(path, 2, column) + re.escape(bound)):
        load_sessions_csv(path)


def test_values_at_the_bounds_are_accepted(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        _line(battery_kwh="10000", max_charge_kw="5000", max_discharge_kw="5e3"),
    )
    fleet = load_sessions_csv(path).fleet
    assert fleet.battery_kwh.tolist() == [MAX_BATTERY_KWH]
    assert fleet.max_charge_kw.tolist() == [MAX_POWER_KW]
    assert fleet.max_discharge_kw.tolist() == [MAX_POWER_KW]


@pytest.mark.parametrize(
    ("column", "text"),
    [
        ("arrival", "0001-01-01T00:00:00+08:00"),
        ("arrival", "1969-12-31T23:59:59Z"),
        ("departure", "2200-01-01T00:00:00Z"),
        ("departure", "9999-12-31T23:59:59+00:00"),
    ],
)
def test_times_outside_the_bounds_name_row_and_field(
    tmp_path: Path, column: str, text: str
) -> None:
    path = _file(tmp_path, _line(), _line(session_id="s2", **{column: text}))
    shown = datetime.fromisoformat(text).isoformat()
    problem = re.escape(f"{shown} is outside 1970-01-01 to 2199-12-31 (UTC)")
    with pytest.raises(InputError, match=_where(path, 3, column) + problem):
        load_sessions_csv(path)


@pytest.mark.parametrize(
    "text",
    [
        "2025-07-16 18:30:00+08:00",  # a space for T
        "2025-07-16T18:30:00+0800",  # basic offset
        "20250716T183000+08:00",  # basic format
        "2025-07-16T18:30+08:00",  # no seconds
        "2025-07-16T10:30:00+00:00",
        "2025-07-16T10:30:00.000+00:00",
    ],
)
def test_other_iso_forms_read_as_fromisoformat_reads_them(tmp_path: Path, text: str) -> None:
    path = _file(tmp_path, _line(arrival=text))
    loaded = load_sessions_csv(path)
    assert loaded.fleet.arrival_s.tolist() == [int(datetime.fromisoformat(text).timestamp())]
    assert loaded.first_arrival == datetime.fromisoformat(text)


@settings(deadline=None, max_examples=200)
@given(
    seconds=st.integers(0, int(datetime(2199, 12, 30, tzinfo=UTC).timestamp())),
    offset_min=st.integers(-23 * 60 - 59, 23 * 60 + 59),
    zulu=st.booleans(),
)
def test_common_times_are_exact(
    tmp_path_factory: pytest.TempPathFactory, seconds: int, offset_min: int, zulu: bool
) -> None:
    zone = UTC if zulu else timezone(timedelta(minutes=offset_min))
    arrival = datetime.fromtimestamp(seconds, UTC).astimezone(zone)
    text = arrival.isoformat().replace("+00:00", "Z") if zulu else arrival.isoformat()
    departure = (arrival + timedelta(hours=1)).isoformat()
    folder = tmp_path_factory.mktemp("times")
    path = _file(folder, _line(arrival=text, departure=departure))
    fleet = load_sessions_csv(path).fleet
    assert fleet.arrival_s.tolist() == [seconds]
    assert fleet.departure_s.tolist() == [seconds + 3600]


@pytest.mark.parametrize(
    "text",
    [
        "2025-02-29T00:00:00Z",
        "2025-04-31T00:00:00Z",
        "2025-07-16T24:00:00Z",
        "2025-07-16T18:60:00Z",
    ],
)
def test_impossible_dates_in_the_common_form_are_refused(tmp_path: Path, text: str) -> None:
    path = _file(tmp_path, _line(arrival=text))
    problem = re.escape(f"{text!r} is not an ISO 8601 time")
    with pytest.raises(InputError, match=_where(path, 2, "arrival") + problem):
        load_sessions_csv(path)


def test_leap_day_reads(tmp_path: Path) -> None:
    path = _file(tmp_path, _line(arrival="2024-02-29T12:00:00Z"))
    arrival = datetime(2024, 2, 29, 12, tzinfo=UTC)
    assert load_sessions_csv(path).fleet.arrival_s.tolist() == [int(arrival.timestamp())]


# --- rows as a spreadsheet counts them -------------------------------------------------


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_rows_count_with_any_line_ending_and_blank_lines(tmp_path: Path, ending: str) -> None:
    lines = [",".join(REQUIRED_COLUMNS), "", _line(), " ", ",,", _line(session_id="s2"), ""]
    lines += [_line(session_id="s3", battery_kwh="x")]
    path = _write(tmp_path, ending.join(lines) + ending)
    with pytest.raises(InputError, match=_where(path, 8, "battery_kwh")):
        load_sessions_csv(path)


def test_rows_of_a_good_file_skip_blank_rows(tmp_path: Path) -> None:
    lines = [",".join(REQUIRED_COLUMNS), _line(), "", ",,,,,,,,", '"",,,,,,,,']
    lines += ['"s2\nstill s2"' + _line()[2:], "\t", _line(session_id="s3")]
    path = _write(tmp_path, "\r\n".join(lines))
    loaded = load_sessions_csv(path)
    assert loaded.rows.tolist() == [2, 6, 8]
    assert loaded.fleet.session_ids is not None
    assert loaded.fleet.session_ids.tolist() == ["s1", "s2\nstill s2", "s3"]


def test_an_earlier_bad_value_wins_over_a_later_row_with_too_few_cells(tmp_path: Path) -> None:
    path = _file(tmp_path, _line(soc_arrival="2"), "s9,a")
    with pytest.raises(InputError, match=_where(path, 2, "soc_arrival")):
        load_sessions_csv(path)


def test_a_row_with_too_few_cells_wins_over_a_later_bad_value(tmp_path: Path) -> None:
    path = _file(tmp_path, _line(), "s9,a", _line(session_id="s3", soc_arrival="2"))
    problem = re.escape("has 2 cells but the header has 9")
    with pytest.raises(InputError, match="^" + re.escape(f"{path}: row 3: ") + problem):
        load_sessions_csv(path)


@pytest.mark.parametrize(
    ("where", "field", "row"),
    [("header", None, 1), ("site_id", "site_id", 3), ("last", "max_discharge_kw", 3)],
)
def test_a_byte_that_is_not_utf8_names_row_and_field(
    tmp_path: Path, where: str, field: str | None, row: int
) -> None:
    header = ",".join(REQUIRED_COLUMNS).encode()
    good = _line().encode()
    bad = _line(session_id="s2").encode()
    if where == "header":
        header = header.replace(b"site_id", b"site\xe9id")
    elif where == "site_id":
        bad = bad.replace(b",a,", b",caf\xe9,")
    else:
        bad += b"\xff"
    path = tmp_path / "sessions.csv"
    path.write_bytes(b"\n".join([header, good, bad]) + b"\n")
    location = f"row {row}" if field is None else f"row {row}, field {field}"
    with pytest.raises(InputError, match="^" + re.escape(f"{path}: {location}: not UTF-8 text")):
        load_sessions_csv(path)


LINE_PARTS = st.lists(
    st.sampled_from(["good", "blank", "spaces", "commas", "quoted"]), min_size=1, max_size=12
)


@settings(deadline=None, max_examples=100)
@given(parts=LINE_PARTS, ending=st.sampled_from(["\n", "\r\n", "\r"]), final=st.booleans())
def test_row_numbers_match_the_csv_module(
    tmp_path_factory: pytest.TempPathFactory, parts: list[str], ending: str, final: bool
) -> None:
    lines = [",".join(REQUIRED_COLUMNS)]
    for number, part in enumerate(parts):
        session = f"s{number}"
        lines.append(
            {
                "good": _line(session_id=session),
                "blank": "",
                "spaces": "  ",
                "commas": ",,,",
                "quoted": _line(session_id=f'"{session}{ending}more"'),
            }[part]
        )
    text = ending.join(lines) + (ending if final else "")
    path = _write(tmp_path_factory.mktemp("rows"), text)
    records = list(csv.reader(io.StringIO(text, newline="")))
    expected = [
        row
        for row, cells in enumerate(records, start=1)
        if row > 1 and any(cell.strip() for cell in cells)
    ]
    if not expected:
        with pytest.raises(InputError, match="no sessions"):
            load_sessions_csv(path)
        return
    loaded = load_sessions_csv(path)
    assert loaded.rows.tolist() == expected
    starts = record_starts(text.encode())
    assert starts.size == len(records)


def test_whitespace_is_what_str_strip_strips() -> None:
    spaces = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
    assert spaces == WHITESPACE


def test_a_large_file_names_its_bad_last_row(tmp_path: Path) -> None:
    rows = 20_000
    zone = timezone(timedelta(hours=8))
    start = datetime(2025, 7, 16, 18, tzinfo=zone)
    lines = [",".join(COLUMNS)]
    for i in range(rows):
        arrival = start + timedelta(minutes=i % 600)
        departure = arrival + timedelta(hours=8)
        lines.append(
            f"s{i},site-{i % 7},{arrival.isoformat()},{departure.isoformat()},60,0.3,0.9,"
            f"7,{i % 2 * 7},0.2,1,0.9,0.9,home"
        )
    lines[-1] = lines[-1].replace(",0.9,0.9,home", ",0.9,0.9,garage")
    path = _write(tmp_path, "\n".join(lines) + "\n")
    problem = re.escape("'garage' is not one of home, workplace, public")
    with pytest.raises(InputError, match=_where(path, rows + 1, "charger_kind") + problem):
        load_sessions_csv(path)
    path = _write(tmp_path, "\n".join(lines[:-1]) + "\n", "good.csv")
    loaded = load_sessions_csv(path)
    assert loaded.fleet.n_sessions == rows - 1
    assert loaded.rows.tolist() == list(range(2, rows + 1))
    assert loaded.site_ids == tuple(f"site-{k}" for k in range(7))
    np.testing.assert_array_equal(loaded.fleet.site_index, np.arange(rows - 1) % 7)
    assert loaded.fleet.max_discharge_kw.tolist() == [i % 2 * 7.0 for i in range(rows - 1)]
    assert loaded.first_arrival == start


def test_prices_and_sites_files_refuse_python_number_syntax(tmp_path: Path) -> None:
    from v2ghub.scenarios.prices_csv import load_prices_csv  # noqa: PLC0415
    from v2ghub.scenarios.sites_csv import load_sites_csv  # noqa: PLC0415

    prices = _write(
        tmp_path,
        "start,import_price_cny_per_kwh,export_price_cny_per_kwh\n"
        "2025-07-16T00:00:00+08:00,0.5,0.3\n"
        "2025-07-16T00:15:00+08:00,0_5,0.3\n",
        "prices.csv",
    )
    problem = re.escape("'0_5' is not a number")
    with pytest.raises(InputError, match=_where(prices, 3, "import_price_cny_per_kwh") + problem):
        load_prices_csv(prices)
    sites = _write(tmp_path, "site_id,import_limit_kw,export_limit_kw\na,1_000,0\n", "sites.csv")
    problem = re.escape("not a number (got '1_000')")
    with pytest.raises(InputError, match=_where(sites, 2, "import_limit_kw") + problem):
        load_sites_csv(sites, site_ids=("a",))
