"""The report's grid services: ``envelope.csv``, the "Grid services" section and its figures.

Runs are made by hand (a 36-hour grid from local midnight in Shenzhen) so every number
in the files and the page can be worked out here.
"""

from __future__ import annotations

import csv
from dataclasses import fields
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib.pyplot as plt
import numpy as np
import pytest

from v2ghub.model.time_grid import TimeGrid
from v2ghub.regulation.demand_response import DemandResponseEvent
from v2ghub.regulation.envelope import EnvelopeHour
from v2ghub.regulation.scoring import Score
from v2ghub.report.html import render_html
from v2ghub.report.outputs import (
    duration_label,
    summary_document,
    write_envelope_csv,
)
from v2ghub.report.plots import (
    daily_envelope,
    demand_response_png,
    envelope_png,
    regulation_png,
    service_runs,
)
from v2ghub.sim.demand_response_service import EventResult
from v2ghub.sim.metrics import CityMetrics, DailyCurves, RunSummary
from v2ghub.sim.regulation_service import HourResult

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIMEZONE = "Asia/Shanghai"
ZONE = ZoneInfo(TIMEZONE)
MIDNIGHT = datetime(2025, 7, 16, tzinfo=ZONE)
GRID = TimeGrid(start=MIDNIGHT, step=timedelta(minutes=15), length=144)
DURATIONS_H = (0.25, 1.0, 4.0)


# Zero of each field's type: the page and the files need values, but only the services'
# matter here.
_ZERO: dict[str, Any] = {
    "str": "",
    "int": 0,
    "float": 0.0,
    "bool": True,
    "Decimal": Decimal(0),
    "Decimal | None": None,
}


def _metrics(city: str, planner: str, services: dict[str, Any]) -> CityMetrics:
    zeros = {f.name: _ZERO[str(f.type)] for f in fields(CityMetrics)}
    return CityMetrics(**(zeros | {"city": city, "planner": planner, "sessions": 10} | services))


def _run(
    city: str,
    planner: str,
    *,
    envelope: tuple[EnvelopeHour, ...] = (),
    hours: tuple[HourResult, ...] = (),
    events: tuple[EventResult, ...] = (),
    services: dict[str, Any] | None = None,
) -> RunSummary:
    steps = np.arange(96)
    base_kw = 600.0 + 300.0 * np.sin(steps / 96 * 2 * np.pi)
    ev_kw = np.where(steps < 28, 80.0, 0.0)  # charging until 07:00
    return RunSummary(
        city=city,
        planner=planner,
        grid=GRID,
        timezone=TIMEZONE,
        metrics=_metrics(city, planner, services or {}),
        curves=DailyCurves(
            base_load_kw=base_kw,
            ev_load_kw=ev_kw,
            charge_kw=ev_kw,
            discharge_kw=np.zeros(96),
            renewable_surplus_kw=np.zeros(96),
        ),
        mean_soc=np.linspace(0.4, 0.8, GRID.length),
        soc_sample=np.tile(np.linspace(0.3, 0.9, GRID.length), (3, 1)),
        bill_sample_fen=np.array([1000, 2000, 3120]),
        total_bill_fen=6120,
        envelope=envelope,
        regulation_hours=hours,
        demand_response_events=events,
    )


def _hour(
    offset_h: int, planned_kw: float, raise_kw: list[float], lower_kw: list[float]
) -> EnvelopeHour:
    return EnvelopeHour(
        start=MIDNIGHT + timedelta(hours=offset_h),
        planned_kw=planned_kw,
        durations_h=DURATIONS_H,
        raise_kw=np.array(raise_kw),
        lower_kw=np.array(lower_kw),
        plugged=7,
    )


ENVELOPE = (
    _hour(19, 120.0, [61.25, 50.0, 12.3456], [200.0, 180.5, 90.0]),
    _hour(26, -35.5, [140.0, 140.0, 100.0], [20.0, 10.0, 0.0]),  # 02:00 the next day
)


def _regulation_hour() -> HourResult:
    samples = np.arange(1800)  # an hour of 2-s samples
    requested = 400.0 * np.sin(samples / 90.0)
    return HourResult(
        start=MIDNIGHT + timedelta(hours=19),
        capacity_kw=400.0,
        raise_kw=450.0,
        lower_kw=520.0,
        requested_kw=requested,
        delivered_kw=np.concatenate(([0.0], requested[:-1])),
        score=Score(
            correlation=0.99, delay=1.0, precision=0.9, composite=0.963, delay_s=0.0, mileage_mw=8.0
        ),
        frequency_kw=np.zeros(1800),
    )


def _event() -> EventResult:
    start = MIDNIGHT + timedelta(hours=18)
    return EventResult(
        event=DemandResponseEvent(start=start, end=start + timedelta(hours=1), reduction_kw=100.0),
        first_step=72,
        step_h=0.25,
        price_cny_per_kwh=Decimal("3.00"),
        requested_kw=np.full(4, 100.0),
        baseline_kw=np.array([300.0, 320.0, 310.0, 290.0]),
        delivered_kw=np.array([100.0, 120.0, 60.0, 100.0]),  # 120 counts as 100
    )


SERVICES = {
    "regulation_hours": 4,
    "regulation_capacity_up_mw": 0.52,
    "regulation_capacity_down_mw": 0.45,
    "regulation_committed_mw": 0.4,
    "regulation_score": 0.963,
    "regulation_mileage_mw": 32.25,
    "dr_events": 1,
    "dr_requested_kwh": 100.0,
    "dr_delivered_kwh": 90.0,
}


@pytest.fixture
def with_services() -> list[RunSummary]:
    """Two cities; the uncontrolled runs have nothing, the mpc runs every service."""
    return [
        run
        for city in ("Shenzhen", "Kunming")
        for run in (
            _run(city, "uncontrolled"),
            _run(
                city,
                "mpc",
                envelope=ENVELOPE,
                hours=(_regulation_hour(),),
                events=(_event(),),
                services=SERVICES,
            ),
        )
    ]


@pytest.fixture
def without_services() -> list[RunSummary]:
    return [_run(city, planner) for city in ("Shenzhen", "Kunming") for planner in ("tou", "mpc")]


# --------------------------------------------------------------------------- envelope.csv


ENVELOPE_HEADER = [
    "city",
    "planner",
    "hour_start",
    "plugged",
    "planned_kw",
    "raise_kw_15min",
    "raise_kw_1h",
    "raise_kw_4h",
    "lower_kw_15min",
    "lower_kw_1h",
    "lower_kw_4h",
]


def _envelope_rows(folder: Path, runs: list[RunSummary]) -> list[list[str]]:
    """``envelope.csv`` of ``runs`` as read back, header first."""
    path = folder / "envelope.csv"
    write_envelope_csv(path, runs)
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def test_envelope_csv_has_a_row_per_city_planner_and_hour(
    tmp_path: Path, with_services: list[RunSummary]
) -> None:
    rows = _envelope_rows(tmp_path, with_services)
    assert rows[0] == ENVELOPE_HEADER
    shenzhen = [
        "Shenzhen",
        "mpc",
        "2025-07-16T19:00:00+08:00",
        "7",
        "120.000",
        "61.250",
        "50.000",
        "12.346",
        "200.000",
        "180.500",
        "90.000",
    ]
    next_morning = ["2025-07-17T02:00:00+08:00", "7", "-35.500", "140.000", "140.000"]
    assert rows[1] == shenzhen
    assert rows[2][:2] == ["Shenzhen", "mpc"]
    assert rows[2][2:7] == next_morning
    assert rows[2][7:] == ["100.000", "20.000", "10.000", "0.000"]
    assert rows[3] == ["Kunming", *shenzhen[1:]]
    assert len(rows) == 5  # the uncontrolled runs have no envelope: no rows


def test_envelope_csv_in_utc_reads_local_time(tmp_path: Path) -> None:
    hour = _hour(19, 1.0, [1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    utc = EnvelopeHour(
        start=hour.start.astimezone(ZoneInfo("UTC")),
        planned_kw=hour.planned_kw,
        durations_h=hour.durations_h,
        raise_kw=hour.raise_kw,
        lower_kw=hour.lower_kw,
        plugged=hour.plugged,
    )
    rows = _envelope_rows(tmp_path, [_run("Shenzhen", "mpc", envelope=(utc,))])
    assert rows[1][2] == "2025-07-16T19:00:00+08:00"


def test_envelope_csv_without_envelopes_is_the_header_alone(
    tmp_path: Path, without_services: list[RunSummary]
) -> None:
    assert _envelope_rows(tmp_path, without_services) == [ENVELOPE_HEADER]


@pytest.mark.parametrize(
    ("duration_h", "label"),
    [(0.25, "15min"), (0.5, "30min"), (1.0, "1h"), (1.5, "90min"), (4.0, "4h")],
)
def test_duration_label(duration_h: float, label: str) -> None:
    assert duration_label(duration_h) == label


# --------------------------------------------------------------------------- folding


def test_daily_envelope_folds_the_next_morning_onto_the_day() -> None:
    before = EnvelopeHour(
        start=MIDNIGHT - timedelta(hours=1),
        planned_kw=1000.0,
        durations_h=DURATIONS_H,
        raise_kw=np.full(3, 1000.0),
        lower_kw=np.full(3, 1000.0),
        plugged=1,
    )
    hours = (*ENVELOPE, _hour(2, 10.0, [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]), before)
    folded = daily_envelope(hours, day_start=MIDNIGHT)
    assert folded.durations_h == DURATIONS_H
    expected_planned = np.zeros(24)
    expected_planned[19] = 120.0
    expected_planned[2] = 10.0 - 35.5  # 02:00 of the day and of the next morning
    np.testing.assert_allclose(folded.planned_kw, expected_planned)
    np.testing.assert_allclose(folded.raise_kw[2], [141.0, 142.0, 103.0])
    np.testing.assert_allclose(folded.lower_kw[19], [200.0, 180.5, 90.0])
    assert folded.raise_kw.shape == (24, 3)
    assert folded.raise_kw.sum() == pytest.approx(141 + 142 + 103 + 61.25 + 50 + 12.3456)
    halved = daily_envelope(hours, day_start=MIDNIGHT, days=2)
    np.testing.assert_allclose(halved.lower_kw, folded.lower_kw / 2)


def test_daily_envelope_of_nothing_is_zero() -> None:
    folded = daily_envelope((), day_start=MIDNIGHT)
    np.testing.assert_array_equal(folded.planned_kw, np.zeros(24))
    assert folded.raise_kw.shape == (24, 0)


def test_daily_envelope_refuses_mixed_durations() -> None:
    other = EnvelopeHour(
        start=MIDNIGHT,
        planned_kw=0.0,
        durations_h=(1.0,),
        raise_kw=np.zeros(1),
        lower_kw=np.zeros(1),
        plugged=0,
    )
    with pytest.raises(ValueError, match="different durations"):
        daily_envelope((ENVELOPE[0], other), day_start=MIDNIGHT)


def test_service_runs_prefer_the_last_planner_with_data() -> None:
    runs = [
        _run("Shenzhen", "tou", envelope=ENVELOPE),
        _run("Shenzhen", "v2g-rules", envelope=ENVELOPE),
        _run("Shenzhen", "mpc"),
        _run("Kunming", "tou", envelope=ENVELOPE),
        _run("Haikou", "tou"),
    ]
    chosen = service_runs(runs, lambda r: bool(r.envelope))
    assert [(r.city, r.planner) for r in chosen] == [("Shenzhen", "v2g-rules"), ("Kunming", "tou")]
    chosen = service_runs(runs, lambda r: bool(r.envelope), planner="tou")
    assert [(r.city, r.planner) for r in chosen] == [("Shenzhen", "tou"), ("Kunming", "tou")]


# --------------------------------------------------------------------------- the page


def _section(page: str) -> str:
    start = page.index('<section id="grid-services">')
    return page[start : page.index("</section>", start)]


def test_the_page_shows_grid_services_with_their_numbers(with_services: list[RunSummary]) -> None:
    page = render_html(with_services, title="Services", notes=[])
    section = _section(page)
    assert "<h2>Grid services</h2>" in section
    assert "regulation up means the fleet takes less from the grid" in section
    mpc_cells = [
        ">4<",  # regulation hours
        ">0.52<",  # up offered, MW
        ">0.45<",  # down offered
        ">0.40<",  # committed
        ">0.96<",  # score
        ">32.2<",  # mileage (32.25 rounds half to even)
        ">1<",  # DR events
        ">100.0<",  # requested kWh
        ">90.0<",  # delivered kWh
        ">90.0%<",  # delivered share
    ]
    row = section[section.index(">mpc<") :]
    row = row[: row.index("</tr>")]
    positions = [row.index(cell) for cell in mpc_cells]
    assert positions == sorted(positions)  # in the order of the columns
    assert section.count('rowspan="2">Shenzhen<') == 1
    assert section.count('rowspan="2">Kunming<') == 1
    # The uncontrolled runs had nothing: no numbers, dashes.
    quiet = section[section.index(">uncontrolled<") :]
    quiet = quiet[: quiet.index("</tr>")]
    assert quiet.count("\N{EN DASH}") == 8
    assert section.count("data:image/png;base64,") == 3  # envelope, regulation, DR
    assert page.count("data:image/png;base64,") == 8  # and the five usual figures


def test_the_page_without_grid_services_is_unchanged(without_services: list[RunSummary]) -> None:
    page = render_html(without_services, title="Plain", notes=[])
    assert "Grid services" not in page
    assert "grid-services" not in page
    assert page.count("data:image/png;base64,") == 5


def test_a_section_with_only_an_envelope_has_only_its_figure() -> None:
    runs = [_run("Shenzhen", "mpc", envelope=ENVELOPE)]
    section = _section(render_html(runs, title="Envelope", notes=[]))
    assert section.count("data:image/png;base64,") == 1
    assert "Flexibility envelope" in section
    assert "Demand response." not in section


# --------------------------------------------------------------------------- figures


PLOTS = (envelope_png, regulation_png, demand_response_png)


@pytest.mark.parametrize("plot", PLOTS, ids=lambda plot: plot.__name__)
def test_grid_service_plots_are_pngs(plot: Any, with_services: list[RunSummary]) -> None:
    png = plot(with_services)
    assert png is not None
    assert png.startswith(PNG_SIGNATURE)
    assert plot(with_services, planner="mpc") == png  # the last planner is mpc
    assert plt.get_fignums() == []


@pytest.mark.parametrize("plot", PLOTS, ids=lambda plot: plot.__name__)
def test_grid_service_plots_of_nothing_are_none(
    plot: Any, without_services: list[RunSummary], with_services: list[RunSummary]
) -> None:
    assert plot(()) is None
    assert plot(without_services) is None
    assert plot(with_services, planner="uncontrolled") is None
    assert plt.get_fignums() == []


# --------------------------------------------------------------------------- summary.json


def test_summary_json_carries_the_service_metrics(with_services: list[RunSummary]) -> None:
    document = summary_document(with_services, planners=["uncontrolled", "mpc"], scenario={})
    mpc = document["planners"]["mpc"]
    assert mpc["cities"]["Shenzhen"] | SERVICES == mpc["cities"]["Shenzhen"]
    assert document["planners"]["uncontrolled"]["cities"]["Kunming"]["dr_events"] == 0
    assert mpc["total"]["regulation_hours"] == 8
    assert mpc["total"]["dr_delivered_kwh"] == 180.0
    assert mpc["total"]["regulation_score"] == 0.963
