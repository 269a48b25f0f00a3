"""``v2ghub plan`` with the fast planner, a block of sites at a time: the same plan, check,
schedule and summary as the whole plan at once, holding each session's plugged steps only."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2ghub.errors import PlanningError
from v2ghub.model.case import CityCase
from v2ghub.model.problem import Problem, Schedule
from v2ghub.model.time_grid import TimeGrid
from v2ghub.planning.check import check, plan_checked
from v2ghub.planning.fast import FastPlanner
from v2ghub.scenarios.day_ahead import case_day_ahead_problem
from v2ghub.scenarios.sessions_csv import REQUIRED_COLUMNS
from v2ghub.workflows import day_ahead_plan, plan_blocks
from v2ghub.workflows.plan_blocks import PluggedPlan, plan_in_site_blocks, site_blocks

from .strategies import cases

FloatArray = npt.NDArray[np.float64]

PRICES = Path(__file__).resolve().parent.parent / "examples" / "prices.csv"
N_SITES = 7
LIMITED_SITES = {"site-1": (30, 20), "site-4": (15, 0), "site-5": (60, 60)}
"""Import and export limits (kW) of the limited sites; the others have none."""


def write_files(folder: Path, *, rows: int, seed: int) -> tuple[Path, Path]:
    """A sessions file over the example prices' horizon at seven sites (a few sessions
    shorter than a step) and a sites file limiting three of them."""
    rng = np.random.default_rng(seed)
    arrival_min = rng.integers(6 * 60, 22 * 60, size=rows)
    stay_min = np.where(rng.random(rows) < 0.02, 5, rng.integers(60, 12 * 60, size=rows))
    departure_min = np.minimum(arrival_min + stay_min, 36 * 60)
    soc_arrival = np.round(rng.uniform(0.2, 0.6, size=rows), 2)
    soc_target = np.round(np.maximum(soc_arrival, rng.uniform(0.7, 0.95, size=rows)), 2)
    charge_kw = rng.choice([3.7, 7, 11, 20], size=rows)
    discharge_kw = np.where(rng.random(rows) < 0.4, charge_kw, 0)
    site = rng.integers(0, N_SITES, size=rows)
    day = np.datetime64("2025-07-16T00:00")
    sessions = folder / "sessions.csv"
    with sessions.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(REQUIRED_COLUMNS)
        for i in range(rows):
            writer.writerow(
                (
                    f"s{i:05d}",
                    f"site-{site[i]}",
                    f"{day + np.timedelta64(int(arrival_min[i]), 'm')}:00+08:00",
                    f"{day + np.timedelta64(int(departure_min[i]), 'm')}:00+08:00",
                    "60",
                    f"{soc_arrival[i]:g}",
                    f"{soc_target[i]:g}",
                    f"{charge_kw[i]:g}",
                    f"{discharge_kw[i]:g}",
                )
            )
    sites = folder / "sites.csv"
    lines = ["site_id,import_limit_kw,export_limit_kw"]
    lines += [f"{name},{up},{down}" for name, (up, down) in LIMITED_SITES.items()]
    sites.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return sessions, sites


def mixed_problem(rows: int = 400, seed: int = 5) -> Problem:
    """A day-ahead problem of ``rows`` vehicles at seven sites, three of them limited."""
    rng = np.random.default_rng(seed)
    horizon = 48
    arrival = rng.integers(0, horizon - 1, size=rows)
    departure = np.minimum(arrival + rng.integers(1, 30, size=rows), horizon)
    battery = rng.choice([40.0, 60.0, 80.0], size=rows)
    soc = rng.uniform(0.2, 0.6, size=rows)
    import_kw = np.full(N_SITES, np.inf)
    export_kw = np.full(N_SITES, np.inf)
    for name, (up, down) in LIMITED_SITES.items():
        import_kw[int(name.split("-")[1])], export_kw[int(name.split("-")[1])] = up, down
    prices = rng.choice([0.3, 0.7, 1.2], size=horizon)
    charge_kw = rng.choice([7.0, 11.0, 20.0], size=rows)
    return Problem(
        grid=TimeGrid(datetime(2025, 7, 16, tzinfo=UTC), timedelta(minutes=30), horizon),
        control_steps=horizon,
        vehicle_index=np.arange(rows, dtype=np.int64),
        site_index=rng.integers(0, N_SITES, size=rows).astype(np.int64),
        energy_kwh=soc * battery,
        energy_min_kwh=0.2 * battery,
        energy_max_kwh=battery,
        target_energy_kwh=0.9 * battery,
        max_charge_kw=charge_kw,
        max_discharge_kw=np.where(rng.random(rows) < 0.5, charge_kw, 0.0),
        charge_efficiency=np.full(rows, 0.92),
        discharge_efficiency=np.full(rows, 0.92),
        departure_step=departure.astype(np.int64),
        arrival_step=arrival.astype(np.int64),
        import_limit_kw=import_kw,
        export_limit_kw=export_kw,
        import_price_cny_per_kwh=prices,
        export_price_cny_per_kwh=prices * 0.7,
        period_kind=np.zeros(horizon, dtype=np.int8),
        base_load_kw=np.zeros(horizon),
        renewable_surplus_kw=np.zeros(horizon),
        degradation_cny_per_kwh=0.2,
    )


def plugged(problem: Problem) -> npt.NDArray[np.bool_]:
    steps = np.arange(problem.grid.length)
    return (problem.arrival_step[:, None] <= steps) & (steps < problem.departure_step[:, None])


# --- The plan's storage -------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), first=st.integers(0, 400), size=st.integers(0, 400))
def test_plugged_plan_gives_back_what_was_kept(seed: int, first: int, size: int) -> None:
    """Blocks of rows kept in any order, then read back in any range: the dense plan, with
    zeros outside the plugged steps whatever the blocks held there."""
    problem = mixed_problem()
    rng = np.random.default_rng(seed)
    dense = np.where(plugged(problem), rng.normal(0.0, 10.0, (400, 48)), 0.0)
    plan = PluggedPlan.zeros(problem)
    assert plan.shape == (400, 48)
    assert plan.power_kw.size == int((problem.departure_step - problem.arrival_step).sum())
    order = rng.permutation(400)
    for part in np.array_split(order, 9):
        rows = np.sort(part)
        block = rng.normal(0.0, 10.0, (rows.size, 48))  # noise outside the plugged steps
        block[plugged(problem)[rows]] = dense[rows][plugged(problem)[rows]]
        plan.set_rows(rows, np.asfortranarray(block))
    first = min(first, 400)
    last = min(first + size, 400)
    read = plan.rows(first, last)
    assert read.shape == (last - first, 48)
    assert np.array_equal(read, dense[first:last])


def test_site_blocks_keep_each_limited_site_whole() -> None:
    problem = mixed_problem()
    per_block = 30
    blocks = site_blocks(problem, max_values=per_block * problem.grid.length)
    every = np.concatenate(blocks)
    assert np.array_equal(np.sort(every), np.arange(problem.n_vehicles))  # each row once
    limited = np.isfinite(problem.import_limit_kw)
    for rows in blocks:
        assert np.all(np.diff(rows) > 0)
        sites = set(problem.site_index[rows].tolist())
        if limited[problem.site_index[rows]].all():
            for site in sites:  # all of the site's vehicles
                assert np.count_nonzero(problem.site_index == site) == np.count_nonzero(
                    problem.site_index[rows] == site
                )
        else:
            assert not limited[problem.site_index[rows]].any()
            assert rows.size <= per_block
    assert len(blocks) > 8


# --- The plan ----------------------------------------------------------------------------


@pytest.mark.parametrize("vehicles_a_block", [1, 13, 1000])
def test_blocks_plan_what_the_whole_problem_plans(vehicles_a_block: int) -> None:
    problem = mixed_problem()
    whole = plan_checked(FastPlanner(), problem).power_kw
    blocked = plan_in_site_blocks(
        FastPlanner(), problem, max_values=vehicles_a_block * problem.grid.length
    )
    assert np.array_equal(blocked.rows(0, problem.n_vehicles), whole)
    assert np.abs(whole).sum() > 0


@settings(max_examples=40, deadline=None)
@given(case=cases(), vehicles_a_block=st.integers(1, 6))
def test_blocks_plan_what_the_whole_problem_plans_any_case(
    case: CityCase, vehicles_a_block: int
) -> None:
    problem = case_day_ahead_problem(case)
    whole = FastPlanner().plan(problem).power_kw
    broken = check(problem, Schedule(power_kw=whole, planner="fast"))
    max_values = vehicles_a_block * problem.grid.length
    if broken:  # the same guarantees broken, in the same words
        with pytest.raises(PlanningError) as whole_error:
            plan_checked(FastPlanner(), problem)
        with pytest.raises(PlanningError) as blocks_error:
            plan_in_site_blocks(FastPlanner(), problem, max_values=max_values)
        assert str(blocks_error.value) == str(whole_error.value)
        return
    blocked = plan_in_site_blocks(FastPlanner(), problem, max_values=max_values)
    assert np.array_equal(blocked.rows(0, problem.n_vehicles), whole)


class Overcharging:
    """The fast plan, with sessions 10 and 300 (by their index in the file) charged above
    their limit in their first plugged step: by 1 kW and 2.5 kW."""

    name = "overcharging"

    def plan(self, problem: Problem) -> Schedule:
        power_kw = FastPlanner().plan(problem).power_kw
        for session, excess_kw in ((10, 1.0), (300, 2.5)):
            for row in np.flatnonzero(problem.vehicle_index == session):  # none or one
                power_kw[row, problem.arrival_step[row]] = problem.max_charge_kw[row] + excess_kw
        return Schedule(power_kw=power_kw, planner=self.name)


def test_a_broken_guarantee_is_reported_as_for_the_whole_plan() -> None:
    """Broken in two blocks: one error, counting both, naming the worst by its row in the
    whole problem, in the words of the whole plan's check."""
    problem = mixed_problem()
    with pytest.raises(PlanningError) as whole_error:
        plan_checked(Overcharging(), problem)
    with pytest.raises(
        PlanningError, match=r"above charging limit at row 300, step \d+ by 2\.5 \(2 cases\)"
    ) as error:
        plan_in_site_blocks(Overcharging(), problem, max_values=20 * problem.grid.length)
    assert str(error.value) == str(whole_error.value)


# --- v2ghub plan -------------------------------------------------------------------------


class Whole(FastPlanner):
    """The fast planner, seen as a planner of one's own: planned whole, as before blocks."""


def test_plan_files_write_what_the_whole_plan_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With sites of limits and without, blocks of 20 sessions: the same bytes."""
    sessions, sites = write_files(tmp_path, rows=1500, seed=11)
    monkeypatch.setattr(plan_blocks, "PLAN_BLOCK_VALUES", 20 * 144)
    planned = []
    for label, planner in (("blocks", "fast"), ("whole", Whole())):
        out, summary = tmp_path / f"{label}.csv", tmp_path / f"{label}.json"
        written = day_ahead_plan.plan_files(
            sessions=sessions, prices=PRICES, sites=sites, out=out, summary=summary, planner=planner
        )
        assert written.planner == "fast"
        figures = json.loads(summary.read_text(encoding="utf-8"))
        planned.append((out.read_bytes(), figures | {"solve_seconds": 0.0}))
    assert planned[0] == planned[1]
    assert planned[0][1]["energy_discharged_kwh"] > 0
    assert planned[0][1]["sessions_without_step"]
