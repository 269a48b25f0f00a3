"""Tests of the report: figures are real PNGs, the HTML is complete, escaped and atomic."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from io import BytesIO
from pathlib import Path

import matplotlib as mpl
import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
import pytest

from v2ghub.errors import InputError
from v2ghub.planning import make_planner
from v2ghub.report.html import planner_totals, write_html_report
from v2ghub.report.plots import (
    discharge_by_hour_mwh,
    discharge_by_hour_png,
    load_curves_png,
    owner_cost_png,
    soc_band,
    soc_png,
    valley_share_png,
)
from v2ghub.scenarios.build import synthetic_cases
from v2ghub.scenarios.config import ScenarioFile, SimulationSettings, resolve
from v2ghub.sim import metrics
from v2ghub.sim.engine import Simulator
from v2ghub.sim.metrics import RunSummary, evaluate, summarise

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CITIES = ("Shenzhen", "Kunming")
PLOTS: tuple[Callable[[Sequence[RunSummary]], bytes], ...] = (
    load_curves_png,
    soc_png,
    discharge_by_hour_png,
    owner_cost_png,
    valley_share_png,
)
NOTES = ["Base load and solar are synthetic", "Tariffs are <b>assumed</b> & simplified"]


@pytest.fixture(scope="module")
def results() -> list[RunSummary]:
    """Every default planner in two cities, 200 vehicles each, from the real simulator."""
    settings = SimulationSettings(vehicles_per_city=200, cities=CITIES)
    scenario = resolve(ScenarioFile(simulation=settings))
    return [
        summarise(evaluate(Simulator(case, make_planner(planner)).run()))
        for case in synthetic_cases(scenario)
        for planner in scenario.simulation.planners
    ]


@pytest.fixture(scope="module")
def report(results: list[RunSummary], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of ``results``, written once, alone in its directory."""
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_html_report(path, results, title="Pilot <cities> & V2G", notes=NOTES)
    return path


def _image(png: bytes) -> npt.NDArray[np.float64]:
    return np.asarray(matplotlib.image.imread(BytesIO(png), format="png"), dtype=np.float64)


@pytest.mark.parametrize("plot", PLOTS, ids=lambda plot: plot.__name__)
def test_plot_is_a_png_of_report_size(
    plot: Callable[[Sequence[RunSummary]], bytes], results: list[RunSummary]
) -> None:
    style_before = dict(mpl.rcParams)
    png = plot(results)
    assert png.startswith(PNG_SIGNATURE)
    image = _image(png)
    height, width, channels = image.shape
    assert 300 <= height <= 2000
    assert 600 <= width <= 2000
    assert channels in (3, 4)
    assert image.std() > 0.05  # something is drawn, not a blank canvas
    assert plt.get_fignums() == []  # the figure is closed
    assert dict(mpl.rcParams) == style_before  # the report style does not leak


@pytest.mark.parametrize("plot", PLOTS, ids=lambda plot: plot.__name__)
def test_plot_of_a_single_run(
    plot: Callable[[Sequence[RunSummary]], bytes], results: list[RunSummary]
) -> None:
    assert _image(plot(results[:1])).shape[0] >= 300


@pytest.mark.parametrize("plot", PLOTS, ids=lambda plot: plot.__name__)
def test_plot_refuses_no_runs(plot: Callable[[Sequence[RunSummary]], bytes]) -> None:
    with pytest.raises(ValueError, match="no runs to plot"):
        plot([])


def test_discharge_by_hour_by_hand() -> None:
    # 15-minute steps: 1 MW through 01:00-02:00 is 1 MWh; 0.4 MW in the last step 0.1 MWh.
    discharge_kw = np.zeros(96)
    discharge_kw[4:8] = 1000.0
    discharge_kw[95] = 400.0
    energy_mwh = discharge_by_hour_mwh(discharge_kw, dt_h=0.25)
    expected = np.zeros(24)
    expected[1] = 1.0
    expected[23] = 0.1
    np.testing.assert_allclose(energy_mwh, expected)


def test_discharge_by_hour_counts_a_step_in_the_hour_it_starts() -> None:
    # 45-minute steps straddle hours: the step starting 00:45 counts in hour 0.
    discharge_kw = np.zeros(32)
    discharge_kw[1] = 800.0  # 00:45-01:30
    discharge_kw[2] = 800.0  # 01:30-02:15
    energy_mwh = discharge_by_hour_mwh(discharge_kw, dt_h=0.75)
    assert energy_mwh[0] == pytest.approx(0.6)
    assert energy_mwh[1] == pytest.approx(0.6)
    assert energy_mwh.sum() == pytest.approx(1.2)


def test_discharge_by_hour_matches_the_run(results: list[RunSummary]) -> None:
    discharged = [r for r in results if r.metrics.energy_discharged_kwh > 1.0]
    assert discharged, "the v2g planner should discharge in the test case"
    for result in results:
        dt_h = result.grid.dt_h
        by_hour = discharge_by_hour_mwh(result.curves.discharge_kw, dt_h=dt_h)
        assert by_hour.shape == (24,)
        assert by_hour.sum() == pytest.approx(result.curves.discharge_kw.sum() * dt_h / 1000)
        # One arrival day: the folded day holds all of the run's discharge.
        assert by_hour.sum() * 1000 == pytest.approx(result.metrics.energy_discharged_kwh)


def test_soc_band_skips_unplugged_steps_without_warnings() -> None:
    sample = np.array(
        [
            [np.nan, 0.2, 0.5, np.nan],
            [np.nan, 0.4, np.nan, np.nan],
            [np.nan, 0.6, np.nan, np.nan],
        ]
    )
    band = soc_band(sample, low=10, high=90)
    assert band.shape == (2, 4)
    assert np.isnan(band[:, 0]).all()
    assert np.isnan(band[:, 3]).all()
    np.testing.assert_allclose(band[:, 1], [0.24, 0.56])
    np.testing.assert_allclose(band[:, 2], [0.5, 0.5])


def test_planner_totals(results: list[RunSummary]) -> None:
    totals = planner_totals(results)
    reference = {r.metrics.city: r.metrics.peak_kw for r in results if r.planner == "uncontrolled"}
    assert [t.planner for t in totals] == ["uncontrolled", "tou", "v2g-rules", "mpc"]
    assert totals[0].peak_reduction_kw == 0.0
    for total in totals:
        runs = [r.metrics for r in results if r.metrics.planner == total.planner]
        assert total.cities == len(CITIES)
        assert total.owner_cost_cny == sum((m.owner_cost_cny for m in runs), Decimal(0))
        assert total.peak_reduction_kw == pytest.approx(
            sum(reference[m.city] - m.peak_kw for m in runs)
        )
        assert total.energy_charged_mwh == pytest.approx(
            sum(m.energy_charged_kwh for m in runs) / 1000
        )
        assert 0 <= total.valley_share <= 1


def test_report_holds_every_city_planner_and_cost(report: Path, results: list[RunSummary]) -> None:
    text = report.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    for city in CITIES:
        assert city in text
    for planner in ("uncontrolled", "tou", "v2g-rules", "mpc"):
        assert planner in text
    for result in results:
        assert f">{result.metrics.owner_cost_cny}<" in text  # the exact Decimal string
    assert "2025-07-16" in text
    assert "15-minute steps" in text


def test_report_escapes_text(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert "About these figures" in text
    assert NOTES[0] in text
    assert html.escape(NOTES[1]) in text
    assert "&lt;b&gt;assumed&lt;/b&gt; &amp; simplified" in text
    assert "<b>" not in text
    assert "<title>Pilot &lt;cities&gt; &amp; V2G</title>" in text


def test_report_is_self_contained(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    # Five figures, the flexibility envelope of the grid services (every run has one) and
    # the owners' battery wear (the fixture's v2g-rules run discharges).
    assert len(images) == 7
    assert text.count("data:image/png;base64,") == 7
    assert "<script" not in text
    assert not re.search(r'(src|href)="(https?:)?//', text)  # no external assets


def test_report_leaves_no_temporary_file(report: Path) -> None:
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.html"]


def test_report_replaces_an_old_one(tmp_path: Path, results: list[RunSummary]) -> None:
    path = tmp_path / "report.html"
    path.write_text("old", encoding="utf-8")
    write_html_report(path, results[:3], title="New", notes=[])
    assert "<title>New</title>" in path.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_failed_write_keeps_the_old_report(
    tmp_path: Path, results: list[RunSummary], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "report.html"
    path.write_text("old", encoding="utf-8")

    def failing_replace(source: str, target: Path) -> None:  # the move into place fails
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(InputError, match=r"report\.html: cannot write the file \(disk full\)"):
        write_html_report(path, results[:1], title="New", notes=[])
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_report_refuses_no_runs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no runs to report"):
        write_html_report(tmp_path / "report.html", [], title="Empty", notes=[])
    assert list(tmp_path.iterdir()) == []


def test_summary_samples_bills_but_keeps_the_exact_total(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = resolve(
        ScenarioFile(simulation=SimulationSettings(vehicles_per_city=300, cities=("Haikou",)))
    )
    result = evaluate(Simulator(synthetic_cases(scenario)[0], make_planner("tou")).run())
    summary = summarise(result)
    assert summary.total_bill_fen == int(result.outcomes.bill_fen.sum())
    np.testing.assert_array_equal(summary.bill_sample_fen, result.outcomes.bill_fen)
    monkeypatch.setattr(metrics, "BILL_SAMPLE_SIZE", 50)
    sampled = summarise(result)
    assert sampled.bill_sample_fen.size == 50
    assert set(sampled.bill_sample_fen.tolist()) <= set(result.outcomes.bill_fen.tolist())
    assert sampled.total_bill_fen == summary.total_bill_fen
