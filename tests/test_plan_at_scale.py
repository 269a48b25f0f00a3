"""``v2ghub plan``'s outputs made a block of vehicles at a time are the very bytes the
obvious whole-array way writes: ``schedule.csv`` row by row through :mod:`csv`, and the
summary from arrays of the whole schedule. The obvious way is kept here as the oracle."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2ghub.model.problem import Planner, Problem, Schedule
from v2ghub.model.sites import SiteLimits
from v2ghub.planning import stepping
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.objective import final_energy_kwh, schedule_cost
from v2ghub.planning.stepping import make_feasible
from v2ghub.planning.tou import TouPlanner
from v2ghub.report import schedule_files
from v2ghub.report.schedule_files import (
    PEAK_DECIMALS,
    POWER_UNITS_PER_KW,
    SCHEDULE_COLUMNS,
    SHORTFALL_TOLERANCE_KWH,
    format_power,
    metered_wh,
    plan_summary,
    plugged_pairs,
    start_texts,
    write_schedule_csv,
    write_schedule_rows,
    written_power,
)
from v2ghub.scenarios.day_ahead import day_ahead_problem, sessions_without_step
from v2ghub.scenarios.prices_csv import PriceSeries, load_prices_csv
from v2ghub.scenarios.sessions_csv import REQUIRED_COLUMNS, load_sessions_csv
from v2ghub.settlement.money import bills_fen, fen_to_cny, round_fen
from v2ghub.units import SECONDS_PER_MINUTE, WH_PER_KWH
from v2ghub.workflows.day_ahead_plan import plan_files

from .strategies import problems

PRICES = Path(__file__).resolve().parent.parent / "examples" / "prices.csv"
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# --- The oracle: the whole-array way, one csv row per Python call. ---------------------


def oracle_schedule_text(
    problem: Problem,
    power_kw: FloatArray,
    session_ids: Sequence[str],
    utc_offsets_s: Sequence[int] | None = None,
) -> str:
    handle = io.StringIO()
    vehicle, step = plugged_pairs(problem)
    power = written_power(power_kw[vehicle, step])
    starts = start_texts(problem.grid, utc_offsets_s)
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(SCHEDULE_COLUMNS)
    for v, k, p in zip(vehicle.tolist(), step.tolist(), power.tolist(), strict=True):
        writer.writerow((str(session_ids[v]), starts[k], format_power(p)))
    return handle.getvalue()


def _oracle_cost_fen(energy_wh: IntArray, prices: Sequence[Decimal]) -> int:
    levels: dict[Decimal, int] = {}
    level = np.array([levels.setdefault(p, len(levels)) for p in prices], dtype=np.int64)
    one_hot = np.zeros((len(prices), len(levels)), dtype=np.int64)
    one_hot[np.arange(len(prices)), level] = 1
    by_level = np.asarray(energy_wh @ one_hot, dtype=np.int64)
    bills = bills_fen(
        import_wh=by_level,
        export_wh=np.zeros_like(by_level),
        import_price_cny_per_kwh=tuple(levels),
        export_price_cny_per_kwh=tuple(levels),
    )
    return int(bills.sum())


def oracle_summary(
    problem: Problem, power_kw: FloatArray, prices: PriceSeries, peak_price_cny_per_kw: float
) -> dict[str, Any]:
    """The figures of :func:`plan_summary` that depend on the schedule, from whole arrays."""
    written = written_power(power_kw)
    step_s = problem.grid.step_s
    charged_wh = metered_wh(np.maximum(written, 0), step_s=step_s)
    discharged_wh = metered_wh(np.maximum(-written, 0), step_s=step_s)
    energy_cost = fen_to_cny(_oracle_cost_fen(charged_wh, prices.import_price_cny_per_kwh))
    export_revenue = fen_to_cny(_oracle_cost_fen(discharged_wh, prices.export_price_cny_per_kwh))
    degradation = Decimal(repr(float(problem.degradation.max(initial=0.0))))
    degradation_cost = round_fen(Decimal(int(discharged_wh.sum())) * degradation / WH_PER_KWH)
    written_kw = written.astype(np.float64) / POWER_UNITS_PER_KW
    peak_kw = round(schedule_cost(problem, written_kw).peak_kw, PEAK_DECIMALS) + 0.0
    peak_price = Decimal(repr(float(peak_price_cny_per_kw)))
    peak_cost = round_fen(peak_price * Decimal(f"{peak_kw:.{PEAK_DECIMALS}f}"))
    short_kwh = np.maximum(problem.target_energy_kwh - final_energy_kwh(problem, power_kw), 0.0)
    short_kwh = np.where(short_kwh > SHORTFALL_TOLERANCE_KWH, short_kwh, 0.0)
    return {
        "energy_charged_kwh": int(charged_wh.sum()) / WH_PER_KWH,
        "energy_discharged_kwh": int(discharged_wh.sum()) / WH_PER_KWH,
        "energy_cost_cny": str(energy_cost),
        "export_revenue_cny": str(export_revenue),
        "degradation_cost_cny": str(degradation_cost),
        "peak_kw": peak_kw,
        "peak_cost_cny": str(peak_cost),
        "objective_cny": str(
            round_fen(energy_cost - export_revenue + degradation_cost + peak_cost)
        ),
        "unmet_energy_kwh": round(float(short_kwh.sum()), 6),
        "sessions_short": int(np.count_nonzero(short_kwh)),
        "step_minutes": int(problem.grid.step_s // SECONDS_PER_MINUTE),
    }


# --- Inputs ---------------------------------------------------------------------------

ODD_IDS = ("a,b", 'say "hi"', "multi\nline", "naïve-车", "tab\there", " spaced ")


def write_sessions(path: Path, *, rows: int, seed: int) -> list[str]:
    """A sessions file over the example prices' horizon (some ids that need quoting, some
    sessions shorter than a step); returns the ids in file order."""
    rng = np.random.default_rng(seed)
    ids = [ODD_IDS[i] if i < len(ODD_IDS) else f"s{i:06d}" for i in range(rows)]
    arrival_min = rng.integers(6 * 60, 22 * 60, size=rows)
    stay_min = np.where(rng.random(rows) < 0.02, 5, rng.integers(60, 12 * 60, size=rows))
    departure_min = np.minimum(arrival_min + stay_min, 36 * 60)
    battery = rng.choice([38.9, 60.0, 82.6], size=rows)
    soc_arrival = np.round(rng.uniform(0.2, 0.6, size=rows), 2)
    soc_target = np.round(np.maximum(soc_arrival, rng.uniform(0.7, 0.95, size=rows)), 2)
    charge_kw = rng.choice([3.7, 7, 11, 20], size=rows)
    discharge_kw = np.where(rng.random(rows) < 0.4, charge_kw, 0)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(REQUIRED_COLUMNS)
        for i in range(rows):
            day = np.datetime64("2025-07-16T00:00")
            writer.writerow(
                (
                    ids[i],
                    f"site-{i % 7}",
                    f"{day + np.timedelta64(int(arrival_min[i]), 'm')}:00+08:00",
                    f"{day + np.timedelta64(int(departure_min[i]), 'm')}:00+08:00",
                    f"{battery[i]:g}",
                    f"{soc_arrival[i]:g}",
                    f"{soc_target[i]:g}",
                    f"{charge_kw[i]:g}",
                    f"{discharge_kw[i]:g}",
                )
            )
    return ids


def problem_of(path: Path) -> tuple[Problem, PriceSeries, list[str]]:
    """The day-ahead problem of a sessions file over the example prices, and its ids."""
    read = load_sessions_csv(path)
    prices = load_prices_csv(PRICES)
    problem = day_ahead_problem(
        fleet=read.fleet,
        sites=SiteLimits.unlimited(read.site_ids),
        prices=prices,
        degradation_cny_per_kwh=0.05,
        sessions_file=path,
        session_rows=read.rows,
    )
    assert read.fleet.session_ids is not None
    ids = [str(read.fleet.session_ids[i]) for i in problem.vehicle_index]
    return problem, prices, ids


class Recording:
    """A planner that keeps the problem it was given and the schedule it returned."""

    def __init__(self, planner: Planner) -> None:
        self.planner = planner
        self.name = planner.name
        self.seen: list[tuple[Problem, Schedule]] = []

    def plan(self, problem: Problem) -> Schedule:
        schedule = self.planner.plan(problem)
        self.seen.append((problem, schedule))
        return schedule


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 7 vehicles (over 144 steps), so that a few thousand sessions make hundreds."""
    monkeypatch.setattr(schedule_files, "BLOCK_VALUES", 7 * 144)


# --- Tests ----------------------------------------------------------------------------


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("planner", [FastPlanner(), TouPlanner()], ids=["fast", "tou"])
def test_plan_files_write_what_the_whole_array_way_writes(tmp_path: Path, planner: Planner) -> None:
    """Thousands of sessions, blocks of 7: ``fast`` plans column-major, ``tou`` row-major."""
    sessions = tmp_path / "sessions.csv"
    write_sessions(sessions, rows=3000, seed=7)
    recording = Recording(planner)
    out, summary = tmp_path / "schedule.csv", tmp_path / "summary.json"
    plan_files(
        sessions=sessions,
        prices=PRICES,
        out=out,
        summary=summary,
        planner=recording,
        degradation_cny_per_kwh="0.05",
    )
    ((problem, schedule),) = recording.seen
    read = load_sessions_csv(sessions)
    _, prices, ids = problem_of(sessions)
    assert problem.n_vehicles < 3000  # the sessions shorter than a step are left out
    expected = oracle_schedule_text(problem, schedule.power_kw, ids, prices.utc_offsets_s)
    assert out.read_bytes() == expected.encode("utf-8")
    figures = plan_summary(
        problem=problem,
        power_kw=schedule.power_kw,
        prices=prices,
        planner=planner.name,
        solve_seconds=0.0,
    ) | oracle_summary(problem, schedule.power_kw, prices, 0.0)
    assert read.fleet.session_ids is not None
    unplanned = sessions_without_step(fleet=read.fleet, grid=prices.grid, session_rows=read.rows)
    expected_summary = unplanned.add_to_summary(figures, session_ids=read.fleet.session_ids)
    written = json.loads(summary.read_text(encoding="utf-8"))
    assert written | {"solve_seconds": 0.0} == json.loads(json.dumps(expected_summary))
    assert written["sessions_short"] >= unplanned.count > 0
    assert written["energy_discharged_kwh"] > 0 or planner.name == "tou"


@pytest.mark.usefixtures("small_blocks")
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    layout=st.sampled_from(["C", "F", "strided", "float32"]),
    peak_price=st.sampled_from([0.0, 0.37]),
)
def test_blocks_match_the_whole_schedule_to_the_last_digit(
    sessions_file: Path, seed: int, layout: str, peak_price: float
) -> None:
    """Any powers (halfway between two written values, tiny, negative, beyond the plugged
    steps) in any memory layout: the same bytes and the same summary."""
    problem, prices, ids = _problem_cache(sessions_file)
    rng = np.random.default_rng(seed)
    n, steps = problem.n_vehicles, problem.grid.length
    units = rng.integers(-200_000, 200_000, size=(n, steps))
    power_kw = (units + rng.choice([0.0, 0.5, 0.49999, 1e-9], size=(n, steps))) / 10_000
    power_kw[rng.random((n, steps)) < 0.3] = 0.0
    if layout == "F":
        power_kw = np.asfortranarray(power_kw)
    elif layout == "strided":
        power_kw = np.asfortranarray(np.repeat(power_kw, 2, axis=1))[:, ::2]
    elif layout == "float32":
        power_kw = power_kw.astype(np.float32)
    handle = io.StringIO()
    rows = write_schedule_rows(
        handle,
        problem=problem,
        power_kw=power_kw,
        session_ids=np.array(ids),
        grid=problem.grid,
        utc_offsets_s=prices.utc_offsets_s,
    )
    assert handle.getvalue() == oracle_schedule_text(problem, power_kw, ids, prices.utc_offsets_s)
    assert rows == int((problem.departure_step - problem.arrival_step).sum())
    summary = plan_summary(
        problem=problem,
        power_kw=power_kw,
        prices=prices,
        planner="any",
        solve_seconds=0.0,
        peak_price_cny_per_kw=peak_price,
    )
    oracle = oracle_summary(problem, power_kw, prices, peak_price)
    assert {key: summary[key] for key in oracle} == oracle


_PROBLEMS: dict[Path, tuple[Problem, PriceSeries, list[str]]] = {}


def _problem_cache(path: Path) -> tuple[Problem, PriceSeries, list[str]]:
    if path not in _PROBLEMS:
        _PROBLEMS[path] = problem_of(path)
    return _PROBLEMS[path]


@pytest.fixture(scope="module")
def sessions_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sessions") / "sessions.csv"
    write_sessions(path, rows=300, seed=3)
    return path


def test_the_file_is_written_as_bytes_and_the_same(sessions_file: Path, tmp_path: Path) -> None:
    """Through a real file (the binary buffer) as through a string handle (decoded)."""
    problem, prices, ids = _problem_cache(sessions_file)
    power_kw = np.asfortranarray(
        np.random.default_rng(1).normal(0.0, 5.0, (problem.n_vehicles, problem.grid.length))
    )
    out = tmp_path / "schedule.csv"
    rows = write_schedule_csv(
        out,
        problem=problem,
        power_kw=power_kw,
        session_ids=ids,
        grid=problem.grid,
        utc_offsets_s=prices.utc_offsets_s,
    )
    expected = oracle_schedule_text(problem, power_kw, ids, prices.utc_offsets_s)
    assert out.read_bytes() == expected.encode("utf-8")
    assert rows == int((problem.departure_step - problem.arrival_step).sum())
    assert b'"a,b",' in out.read_bytes()
    assert b'"say ""hi""",' in out.read_bytes()


def test_no_vehicles_write_the_header_alone(sessions_file: Path) -> None:
    problem, prices, _ = _problem_cache(sessions_file)
    read = load_sessions_csv(sessions_file)
    empty = day_ahead_problem(
        fleet=read.fleet.take(np.zeros(0, dtype=np.int64)),
        sites=SiteLimits.unlimited(read.site_ids),
        prices=prices,
        degradation_cny_per_kwh=0.05,
        sessions_file=sessions_file,
    )
    handle = io.StringIO()
    power_kw = np.zeros((0, problem.grid.length))
    rows = write_schedule_rows(
        handle, problem=empty, power_kw=power_kw, session_ids=[], grid=problem.grid
    )
    assert (rows, handle.getvalue()) == (0, "session_id,start,power_kw\n")
    summary = plan_summary(
        problem=empty, power_kw=power_kw, prices=prices, planner="any", solve_seconds=0.0
    )
    assert summary["peak_kw"] == round(float(np.max(problem.base_load_kw)), PEAK_DECIMALS)
    assert (summary["energy_cost_cny"], summary["sessions_short"]) == ("0.00", 0)


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_float_sums_by_blocks_are_bitwise_those_of_the_whole(
    sessions_file: Path, layout: str
) -> None:
    """The two float sums of the summary, whose rounding depends on the order of the
    additions: the fleet's written power per step (over vehicles) and each vehicle's final
    energy (over steps). Rounded to 4 and 6 decimals they would hide a last-bit
    difference; here none is allowed."""
    problem, _, _ = _problem_cache(sessions_file)
    rng = np.random.default_rng(11)
    power_kw = rng.normal(0.0, 7.0, (problem.n_vehicles, problem.grid.length))
    power_kw = {
        "C": power_kw,
        "F": np.asfortranarray(power_kw),
        "strided": np.asfortranarray(np.repeat(power_kw, 2, axis=1))[:, ::2],
    }[layout]
    whole_kw = (written_power(power_kw).astype(np.float64) / POWER_UNITS_PER_KW).sum(axis=0)
    assert np.array_equal(schedule_files._written_fleet_kw(np.array(power_kw, order="K")), whole_kw)
    whole_kwh = final_energy_kwh(problem, power_kw)
    by_blocks = np.concatenate(
        [
            final_energy_kwh(problem, power_kw[first:last], first_vehicle=first)
            for first, last in schedule_files.vehicle_blocks(*power_kw.shape)
        ]
    )
    assert len(schedule_files.vehicle_blocks(*power_kw.shape)) > 10
    assert np.array_equal(by_blocks, whole_kwh)
    levels = (np.zeros(problem.grid.length, dtype=np.int64), 1)
    metered = np.concatenate(
        [
            schedule_files._metered_block(
                problem,
                power_kw[first:last],
                first_vehicle=first,
                import_level=levels,
                export_level=levels,
            )[2]
            for first, last in schedule_files.vehicle_blocks(*power_kw.shape)
        ]
    )
    assert np.array_equal(metered, whole_kwh)


@settings(max_examples=60, deadline=None)
@given(
    problem=problems(),
    seed=st.integers(0, 2**32 - 1),
    block_vehicles=st.integers(1, 4),
)
def test_cutting_in_place_by_blocks_is_the_cut_at_once(
    problem: Problem, seed: int, block_vehicles: int
) -> None:
    """Limited sites' vehicles scattered among the rows, blocks of a few vehicles: the
    in-place cut gives the values of the whole cut, bit for bit, in the array given."""
    rng = np.random.default_rng(seed)
    shape = (problem.n_vehicles, problem.grid.length)
    reach_kw = np.maximum(problem.max_charge_kw, problem.max_discharge_kw)[:, None]
    power_kw = np.asfortranarray(rng.uniform(-1.5, 1.5, shape) * reach_kw)
    given_kw = power_kw.copy(order="F")
    whole_kw = make_feasible(problem, power_kw)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stepping, "FEASIBLE_BLOCK_VALUES", block_vehicles * problem.grid.length)
        cut_kw = make_feasible(problem, power_kw, overwrite=True)
    assert cut_kw is power_kw
    assert np.array_equal(cut_kw, whole_kw)
    assert not np.array_equal(whole_kw, given_kw)  # there was something to cut


def test_a_plan_that_cannot_be_cut_in_place_is_left_alone(sessions_file: Path) -> None:
    problem, _, _ = _problem_cache(sessions_file)
    power_kw = np.full((problem.n_vehicles, problem.grid.length), 50.0)  # row-major
    cut_kw = make_feasible(problem, power_kw, overwrite=True)
    assert np.all(power_kw == 50.0)
    assert cut_kw.max() == problem.max_charge_kw.max() < 50.0
