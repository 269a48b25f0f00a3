"""Sessions that get no price step: planned at zero power, their need reported as unavoidable
shortfall, counted in one warning line, the rest of the file planned."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from v2ghub.cli import main
from v2ghub.model.sites import SiteLimits
from v2ghub.scenarios.day_ahead import day_ahead_problem
from v2ghub.scenarios.prices_csv import load_prices_csv
from v2ghub.scenarios.sessions_csv import load_sessions_csv

HEADER = (
    "session_id,site_id,arrival,departure,battery_kwh,soc_arrival,soc_target,max_charge_kw,"
    "max_discharge_kw,charge_efficiency,discharge_efficiency\n"
)
# Two steps of 15 min from midnight; s1 needs 2 kWh and has both steps.
PLANNED = "s1,a,2025-07-16T00:00:00+08:00,2025-07-16T00:30:00+08:00,8,0.5,0.75,8,0,1,1\n"
# 00:05-00:25 holds no whole step: 8 kWh x (0.75 - 0.5) = 2 kWh it cannot get.
SHORT = "s2,a,2025-07-16T00:05:00+08:00,2025-07-16T00:25:00+08:00,8,0.5,0.75,8,0,1,1\n"
# A whole day later, entirely outside the prices: 10 kWh x (0.9 - 0.4) = 5 kWh.
OUTSIDE = "s3,a,2025-07-17T00:00:00+08:00,2025-07-17T02:00:00+08:00,10,0.4,0.9,7,7,1,1\n"
PRICES = (
    "start,import_price_cny_per_kwh,export_price_cny_per_kwh\n"
    "2025-07-16T00:00:00+08:00,1.0,0\n"
    "2025-07-16T00:15:00+08:00,0.2,0\n"
)


def _files(tmp_path: Path, *rows: str) -> tuple[Path, Path]:
    sessions, prices = tmp_path / "sessions.csv", tmp_path / "prices.csv"
    sessions.write_text(HEADER + "".join(rows), encoding="utf-8")
    prices.write_text(PRICES, encoding="utf-8")
    return sessions, prices


def _plan(tmp_path: Path, sessions: Path, prices: Path, *extra: str) -> int:
    out, summary = tmp_path / "schedule.csv", tmp_path / "summary.json"
    return main(
        [
            "plan",
            "--sessions",
            str(sessions),
            "--prices",
            str(prices),
            "--out",
            str(out),
            "--summary",
            str(summary),
            *extra,
        ]
    )


def _schedule(tmp_path: Path) -> list[list[str]]:
    with (tmp_path / "schedule.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))[1:]


@pytest.mark.parametrize("planner", ["lp", "fast", "tou", "uncontrolled", "v2g-rules"])
def test_a_session_shorter_than_a_step_is_reported_short_and_the_rest_planned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], planner: str
) -> None:
    sessions, prices = _files(tmp_path, PLANNED, SHORT)
    assert _plan(tmp_path, sessions, prices, "--planner", planner) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line]
    assert warnings == [
        f"warning: {sessions}: 1 session gets no whole price step (1 plugged for less than "
        "one 15-min step, first on row 3: 's2' 2025-07-16T00:05:00+08:00 to "
        "2025-07-16T00:25:00+08:00): planned at zero power, 2 kWh of need unavoidable"
    ]
    rows = _schedule(tmp_path)
    assert {session for session, _, _ in rows} == {"s1"}
    assert len(rows) == 2
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["sessions"] == 2
    assert summary["unmet_energy_kwh"] == pytest.approx(2.0)
    assert summary["sessions_short"] == 1
    assert summary["sessions_without_step"] == [
        {
            "session_id": "s2",
            "row": 3,
            "reason": "plugged for less than one whole step",
            "unavoidable_kwh": 2.0,
        }
    ]
    # The unmet energy printed on the command line counts the short session too.
    assert "unmet energy 2 kWh" in captured.out


def test_sessions_entirely_outside_the_prices_are_counted_in_the_same_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sessions, prices = _files(tmp_path, SHORT, PLANNED, OUTSIDE)
    assert _plan(tmp_path, sessions, prices, "--planner", "fast") == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"warning: {sessions}: 2 sessions get no whole price step")
    assert "1 entirely outside the price steps (2025-07-16T00:00:00+08:00 to " in warnings[0]
    assert warnings[0].endswith("planned at zero power, 7 kWh of need unavoidable")
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["sessions"] == 3
    assert summary["unmet_energy_kwh"] == pytest.approx(7.0)
    assert summary["sessions_short"] == 2
    assert [(s["session_id"], s["row"], s["reason"]) for s in summary["sessions_without_step"]] == [
        ("s2", 2, "plugged for less than one whole step"),
        ("s3", 4, "entirely outside the price steps"),
    ]
    assert {session for session, _, _ in _schedule(tmp_path)} == {"s1"}


def test_only_short_sessions_still_plan_and_write_a_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sessions, prices = _files(tmp_path, SHORT)
    assert _plan(tmp_path, sessions, prices, "--planner", "lp") == 0
    assert "1 session gets no whole price step" in capsys.readouterr().err
    assert _schedule(tmp_path) == []
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert (summary["sessions"], summary["sessions_short"]) == (1, 1)
    assert summary["objective_cny"] == "0.00"


def test_the_problem_leaves_out_sessions_without_a_step(tmp_path: Path) -> None:
    sessions, prices = _files(tmp_path, SHORT, PLANNED, OUTSIDE)
    read = load_sessions_csv(sessions)
    built = day_ahead_problem(
        fleet=read.fleet,
        sites=SiteLimits.unlimited(read.site_ids),
        prices=load_prices_csv(prices),
        degradation_cny_per_kwh=0.0,
        sessions_file=sessions,
        session_rows=read.rows,
    )
    assert built.vehicle_index.tolist() == [1]
    assert (built.arrival_step.tolist(), built.departure_step.tolist()) == ([0], [2])


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        # Partly outside the prices: the prices file most likely misses steps.
        (
            "s4,a,2025-07-16T00:00:00+08:00,2025-07-16T01:00:00+08:00,8,0.5,0.75,8,0,1,1\n",
            "field departure: session 's4' leaves at 2025-07-16T01:00:00+08:00, after the "
            "last price step ends (2025-07-16T00:30:00+08:00)",
        ),
        (
            "s0,a,0001-01-01T00:00:00+08:00,2025-07-16T00:30:00+08:00,8,0.5,0.75,8,0,1,1\n",
            "field arrival: 0001-01-01T00:00:00+08:00 is outside 1970-01-01 to 2199-12-31 (UTC)",
        ),
    ],
)
def test_a_bad_session_is_one_line_naming_file_row_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], row: str, problem: str
) -> None:
    sessions, prices = _files(tmp_path, PLANNED, row)
    assert _plan(tmp_path, sessions, prices) == 2
    assert capsys.readouterr().err.strip() == f"error: {sessions}: row 3, {problem}"
    assert not (tmp_path / "schedule.csv").exists()
