"""The public Python API: its names, a notebook-style session, and the written result read
back equal."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import v2ghub
from v2ghub import (
    InputError,
    PlanningError,
    Problem,
    Scenario,
    Schedule,
    Settlement,
    Twin,
    TwinResult,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = """
import numpy as np
from v2ghub import Scenario, Schedule, Twin, make_feasible

class Overnight:  # my planner: charge only from 23:00 to 07:00 local, evenly
    name = "overnight"
    def plan(self, problem):
        night = problem.period_kind == 0  # valley
        power = np.where(night, problem.max_charge_kw[:, None], 0.0)
        return Schedule(make_feasible(problem, power), self.name)

scenario = Scenario.pilot_cities(cities=["Shenzhen"], vehicles_per_city=60)
result = Twin(scenario, planners=[Overnight(), "mpc"]).run()
settlement = result.settle()
result.report(OUT / "report.html")
"""


def test_exported_names_are_pinned() -> None:
    assert v2ghub.__all__ == [
        "PLANNERS",
        "DescribedPlanner",
        "InputError",
        "PeriodSettlement",
        "Planner",
        "PlannerCapabilities",
        "PlanningError",
        "Problem",
        "RunInfo",
        "Scenario",
        "Schedule",
        "Settlement",
        "TimeGrid",
        "Twin",
        "TwinResult",
        "Violation",
        "ViolationKind",
        "__version__",
        "capabilities_of",
        "check",
        "make_feasible",
        "make_planner",
        "plan_checked",
        "plan_safely",
    ]
    assert [name for name in v2ghub.__all__ if not hasattr(v2ghub, name)] == []


def test_the_names_are_imported_when_first_used() -> None:
    # `import v2ghub` loads none of the twin, yet lists its names and gives them on use.
    code = (
        "import sys, v2ghub; before = 'v2ghub.twin' in sys.modules; "
        "listed = {'Twin', 'make_planner'} <= set(dir(v2ghub)); twin = v2ghub.Twin; "
        "print(before, listed, twin.__module__, 'v2ghub.twin' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "True", "v2ghub.twin.twin", "True"]
    with pytest.raises(AttributeError, match="module 'v2ghub' has no attribute 'Twins'"):
        _ = v2ghub.Twins  # type: ignore[attr-defined]


def test_a_notebook_runs_its_own_planner_beside_mpc_settles_and_reports(tmp_path: Path) -> None:
    lines = [line for line in NOTEBOOK.strip().splitlines() if line.strip()]
    assert len(lines) < 20
    namespace: dict[str, object] = {"OUT": tmp_path}
    exec(compile(NOTEBOOK, "notebook", "exec"), namespace)
    result = namespace["result"]
    settlement = namespace["settlement"]
    assert isinstance(result, TwinResult)
    assert isinstance(settlement, Settlement)
    assert result.planners == ("overnight", "mpc")
    mine = result.metrics("Shenzhen", "overnight")
    assert mine.sessions == 60
    assert mine.energy_discharged_kwh == 0.0
    assert mine.energy_charged_kwh > 0
    mpc = result.metrics("Shenzhen", "mpc")
    assert mpc.energy_discharged_kwh > 0
    assert mpc.peak_reduction_kw == pytest.approx(mine.peak_kw - mpc.peak_kw)  # mine: reference
    assert settlement.balanced
    owners = settlement.period("Shenzhen", "overnight").net_cny("owner")
    assert owners == -mine.owner_cost_cny
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "overnight" in html
    assert "<img" in html


@pytest.fixture(scope="module")
def small_result() -> TwinResult:
    scenario = Scenario.pilot_cities(cities=["Kunming"], vehicles_per_city=50, seed=11)
    return Twin(scenario, planners=["tou", "fast"], regulation=True, demand_response=True).run()


def test_a_written_result_reads_back_equal(small_result: TwinResult, tmp_path: Path) -> None:
    out = small_result.write(tmp_path / "out")
    back = TwinResult.read(out)
    assert back == small_result
    assert back.notes == small_result.notes
    assert back.info.seed == 11
    np.testing.assert_array_equal(
        back.run("Kunming", "fast").soc_sample, small_result.run("Kunming", "fast").soc_sample
    )
    assert back.sessions().num_rows == 100
    assert back.metrics("Kunming", "fast").regulation_hours == 4
    assert back.metrics("Kunming", "fast").dr_events == 1
    hours = back.envelope("Kunming", "fast")
    assert len(hours) >= 24
    assert [h.durations_h for h in hours[:1]] == [(0.25, 1.0, 4.0)]


def test_a_damaged_result_folder_is_refused_naming_the_file(
    small_result: TwinResult, tmp_path: Path
) -> None:
    out = small_result.write(tmp_path / "out")
    table = pq.read_table(out / "sessions.parquet")
    damaged = {b"v2ghub.result": b'{"info": {"date": "2025-07-16"}, "runs": "nonsense"}'}
    pq.write_table(table.replace_schema_metadata(damaged), out / "sessions.parquet")
    with pytest.raises(InputError, match=r"sessions\.parquet: unreadable run summaries \("):
        TwinResult.read(out)
    pq.write_table(table.replace_schema_metadata({}), out / "sessions.parquet")
    with pytest.raises(InputError, match="holds no run summaries to read back"):
        TwinResult.read(out)
    with pytest.raises(InputError, match="not found: not the output folder of a v2ghub run"):
        TwinResult.read(tmp_path)


def test_results_of_other_seeds_differ(small_result: TwinResult) -> None:
    scenario = Scenario.pilot_cities(cities=["Kunming"], vehicles_per_city=50, seed=12)
    other = Twin(scenario, planners=["tou", "fast"], regulation=True, demand_response=True).run()
    assert other != small_result


def test_settle_matches_the_written_settlement(small_result: TwinResult, tmp_path: Path) -> None:
    settled = small_result.settle(out=tmp_path / "settled")
    assert settled.balanced
    assert sorted(settled.periods) == [
        f"{small_result.info.date}/Kunming/fast",
        f"{small_result.info.date}/Kunming/tou",
    ]
    lines = settled.statements()
    assert lines.num_rows > 0
    fast = settled.period("Kunming", "fast")
    assert fast.net_cny("grid") + fast.net_cny("owner") + fast.net_cny("aggregator") + (
        fast.net_cny("operator")
    ) == Decimal(0)


def test_a_planner_that_breaks_a_guarantee_is_replaced_and_counted() -> None:
    class Reckless:
        name = "reckless"

        def plan(self, problem: Problem) -> Schedule:
            return Schedule(np.full((problem.n_vehicles, problem.control_steps), 500.0), "x")

    scenario = Scenario.pilot_cities(cities=["Haikou"], vehicles_per_city=30)
    result = Twin(scenario, planners=[Reckless(), "uncontrolled"]).run()
    metrics = result.metrics("Haikou", "reckless")
    safe = result.metrics("Haikou", "uncontrolled")
    assert metrics.fallbacks > 0
    assert safe.fallbacks == 0
    # Every plan fell back to safe charging: the day is the uncontrolled planner's.
    assert metrics.energy_charged_kwh == pytest.approx(safe.energy_charged_kwh)
    assert metrics.unmet_energy_kwh == pytest.approx(safe.unmet_energy_kwh)


def test_the_twin_refuses_what_a_planner_cannot_take() -> None:
    scenario = Scenario.pilot_cities(cities=["Haikou"], vehicles_per_city=3000)
    with pytest.raises(InputError, match="the lp planner plans at most 2,000 sessions per city"):
        Twin(scenario, planners=["lp"]).check()
    with pytest.raises(ValueError, match="planner names must differ, got tou, tou"):
        Twin(scenario, planners=["tou", "tou"])
    with pytest.raises(InputError, match="unknown city 'Atlantis'"):
        scenario.replace(cities=["Atlantis"])


def test_the_custom_planner_example_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "custom_planner.py"), "--vehicles", "40"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    rows = done.stdout.strip().splitlines()
    assert rows[0].split()[:2] == ["city", "planner"]
    assert [row.split()[:2] for row in rows[1:]] == [
        ["Shenzhen", "mpc"],
        ["Shenzhen", "valley-first"],
        ["Kunming", "mpc"],
        ["Kunming", "valley-first"],
    ]
    assert all(row.split()[-1] == "0" for row in rows[1:])  # no fallback


def test_the_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use it from Python", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "vehicles_per_city=500" in code
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(
        compile(code.replace("vehicles_per_city=500", "vehicles_per_city=30"), "README", "exec"),
        namespace,
    )
    assert (tmp_path / "my-run" / "summary.json").is_file()
    assert (tmp_path / "my-run" / "report.html").is_file()
    result = namespace["result"]
    assert isinstance(result, TwinResult)
    assert result.metrics("Kunming", "mpc").regulation_hours == 4


def test_a_day_ahead_plan_takes_a_planner_object_and_refuses_a_broken_schedule(
    tmp_path: Path,
) -> None:
    from v2ghub.planning import UncontrolledPlanner  # noqa: PLC0415
    from v2ghub.workflows.day_ahead_plan import plan_files  # noqa: PLC0415

    class Reckless:
        name = "reckless"

        def plan(self, problem: Problem) -> Schedule:
            return Schedule(np.full((problem.n_vehicles, problem.grid.length), 500.0), "x")

    sessions, prices = ROOT / "examples" / "sessions.csv", ROOT / "examples" / "prices.csv"
    out = tmp_path / "schedule.csv"
    with pytest.raises(PlanningError, match=r"^planner 'reckless' broke a guarantee: power while"):
        plan_files(sessions=sessions, prices=prices, out=out, planner=Reckless())
    assert not out.exists()
    written = plan_files(sessions=sessions, prices=prices, out=out, planner=UncontrolledPlanner())
    assert written.planner == "uncontrolled"
    assert written.summary["sessions"] == 13
    assert out.read_text(encoding="utf-8").startswith("session_id,start,power_kw\n")


def test_a_failed_run_leaves_no_work_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Interrupted:
        name = "interrupted"

        def plan(self, problem: Problem) -> Schedule:
            raise KeyboardInterrupt  # not a planner error: the run itself stops

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    scenario = Scenario.pilot_cities(cities=["Haikou"], vehicles_per_city=20)
    with pytest.raises(KeyboardInterrupt):
        Twin(scenario, planners=[Interrupted()]).run()
    assert list(tmp_path.iterdir()) == []


def test_simulate_refuses_a_planner_named_twice(capsys: pytest.CaptureFixture[str]) -> None:
    from v2ghub.cli import main  # noqa: PLC0415

    with pytest.raises(SystemExit) as refused:  # at parsing, before any work
        main(["simulate", "--quiet", "--planners", "tou,tou", "--vehicles", "10"])
    assert refused.value.code == 2
    assert "argument --planners: tou is named twice" in capsys.readouterr().err
