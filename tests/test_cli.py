"""``v2ghub simulate`` end to end: files, determinism and bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from subprocess import CompletedProcess

import pyarrow.parquet as pq
import pytest

from v2ghub.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REQUIRED_KEYS = {
    "baseline_peak_kw",
    "peak_kw",
    "valley_share",
    "energy_charged_kwh",
    "energy_discharged_kwh",
    "unmet_energy_kwh",
    "owner_cost_cny",
}


def _simulate(out: Path, *extra: str) -> int:
    return main(["simulate", "--quiet", "--out", str(out), *extra])


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    assert _simulate(out, "--vehicles", "60", "--cities", "Shenzhen,Kunming") == 0
    return out


def test_simulate_writes_every_file(small_run: Path) -> None:
    names = {p.name for p in small_run.iterdir()}
    assert names == {
        "summary.json",
        "summary.csv",
        "curves.csv",
        "envelope.csv",
        "sessions.parquet",
        "meter.parquet",
        "settlement.json",
        "report.html",
    }
    summary = json.loads((small_run / "summary.json").read_text(encoding="utf-8"))
    assert list(summary["planners"]) == ["uncontrolled", "tou", "v2g-rules", "mpc"]
    for planner in summary["planners"].values():
        assert set(planner["cities"]) == {"Shenzhen", "Kunming"}
        for metrics in [*planner["cities"].values(), planner["total"]]:
            assert set(metrics) >= REQUIRED_KEYS
            # Money is an exact decimal string to the fen.
            assert Decimal(metrics["owner_cost_cny"]).as_tuple().exponent == -2
    total = summary["planners"]["tou"]["total"]
    cities = summary["planners"]["tou"]["cities"].values()
    assert total["energy_charged_kwh"] == pytest.approx(
        sum(c["energy_charged_kwh"] for c in cities)
    )
    assert Decimal(total["owner_cost_cny"]) == sum(Decimal(c["owner_cost_cny"]) for c in cities)
    sessions = pq.read_table(small_run / "sessions.parquet")
    assert sessions.num_rows == 2 * 60 * 4  # cities x vehicles x planners
    # Every session's bill adds up to the city's cost.
    rows = sessions.to_pylist()
    shenzhen_tou = [
        r["bill_fen"] for r in rows if r["city"] == "Shenzhen" and r["planner"] == "tou"
    ]
    assert Decimal(sum(shenzhen_tou)) / 100 == Decimal(
        summary["planners"]["tou"]["cities"]["Shenzhen"]["owner_cost_cny"]
    )
    curves = (small_run / "curves.csv").read_text(encoding="utf-8").splitlines()
    assert len(curves) == 1 + 2 * 4 * 96  # header, cities x planners x steps
    assert curves[1].startswith("Shenzhen,uncontrolled,2025-07-16T00:00:00+08:00,")


def test_same_seed_same_result(small_run: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert _simulate(again, "--vehicles", "60", "--cities", "Shenzhen,Kunming") == 0
    first = json.loads((small_run / "summary.json").read_text(encoding="utf-8"))
    second = json.loads((again / "summary.json").read_text(encoding="utf-8"))
    for doc in (first, second):
        for planner in doc["planners"].values():
            for metrics in planner["cities"].values():
                metrics.pop("planner_seconds")
                metrics.pop("simulate_seconds")
            planner["total"].pop("planner_seconds")
    assert first == second


def test_user_sessions_and_sites(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = _simulate(
        out,
        "--sessions",
        str(EXAMPLES / "sessions.csv"),
        "--sites",
        str(EXAMPLES / "sites.csv"),
        "--city",
        "Shenzhen",
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    metrics = summary["planners"]["v2g-rules"]["cities"]["Shenzhen"]
    assert metrics["sessions"] == 13
    assert metrics["site_limit_violations"] == 0
    assert metrics["unmet_energy_kwh"] == metrics["unavoidable_shortfall_kwh"] == 0
    assert metrics["energy_discharged_kwh"] > 0


def test_scenario_file_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _simulate(out, "--scenario", str(EXAMPLES / "scenario.toml"), "--vehicles", "50") == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert set(summary["planners"]["tou"]["cities"]) == {"Shenzhen", "Guangzhou", "Kunming"}
    assert summary["scenario"]["vehicles_per_city"] == 50


def _bad_sessions(tmp_path: Path) -> Path:
    text = (EXAMPLES / "sessions.csv").read_text(encoding="utf-8").splitlines()
    text[3] = text[3].replace("2025-07-16T17:55:00+08:00", "2025-07-18T17:55:00+08:00")
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cities", "Atlantis"], r"unknown city 'Atlantis'"),
        (["--planners", "magic"], r"unknown planner 'magic'"),
        (["--sessions", "{bad}", "--city", "Shenzhen"], r"bad.csv: row 4, field departure: "),
        (["--sessions", "{missing}", "--city", "Shenzhen"], r"nope.csv"),
        (["--sessions", str(EXAMPLES / "sessions.csv")], r"--sessions needs --city NAME"),
        (
            [
                "--sessions",
                str(EXAMPLES / "sessions.csv"),
                "--city",
                "Shenzhen",
                "--vehicles",
                "100",
            ],
            r"--vehicles applies to synthetic fleets",
        ),
        (["--sites", str(EXAMPLES / "sites.csv")], r"--sites applies to --sessions only"),
    ],
)
def test_bad_input_exits_with_one_line_and_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    bad = str(_bad_sessions(tmp_path))
    args = [a.replace("{bad}", bad).replace("{missing}", str(tmp_path / "nope.csv")) for a in args]
    out = tmp_path / "out"
    assert _simulate(out, *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ")
    assert len(err.splitlines()) == 1

    assert re.search(message, err), err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_a_failed_run_keeps_the_previous_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}", encoding="utf-8")
    assert _simulate(out, "--cities", "Atlantis") == 2
    assert (out / "summary.json").read_text(encoding="utf-8") == "{}"


def test_a_new_run_replaces_the_old_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}", encoding="utf-8")
    (out / "stale.txt").write_text("old", encoding="utf-8")
    assert _simulate(out, "--vehicles", "10", "--cities", "Haikou", "--planners", "tou") == 0
    assert not (out / "stale.txt").exists()
    assert (out / "summary.json").exists()


def test_summary_table_and_progress_go_to_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["simulate", "--out", str(out), "--vehicles", "30", "--cities", "Haikou"]) == 0
    printed = capsys.readouterr().out
    assert "v2ghub: one day per city and planner" in printed
    for planner in ("uncontrolled", "tou", "v2g-rules", "mpc"):
        assert planner in printed
    assert f"wrote {out}/report.html" in printed


def test_lp_in_the_twin_is_for_small_fleets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert _simulate(out, "--planners", "lp", "--vehicles", "5000", "--cities", "Haikou") == 2
    assert "the lp planner plans at most 2,000 sessions per city" in capsys.readouterr().err
    assert (
        _simulate(out, "--planners", "tou,mpc-lp", "--vehicles", "2001", "--cities", "Haikou") == 2
    )
    assert "the mpc-lp planner plans at most 2,000" in capsys.readouterr().err
    assert not out.exists()


def test_lp_beats_the_rules_on_a_small_fleet(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = _simulate(out, "--planners", "v2g-rules,lp", "--vehicles", "40", "--cities", "Shenzhen")
    assert code == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    rules = summary["planners"]["v2g-rules"]["cities"]["Shenzhen"]
    lp = summary["planners"]["lp"]["cities"]["Shenzhen"]
    assert lp["site_limit_violations"] == 0
    assert lp["fallbacks"] == 0
    assert lp["unmet_energy_kwh"] <= rules["unmet_energy_kwh"] + 1e-3
    # Owners pay less under the optimiser (cost includes what discharge earns them).
    assert Decimal(lp["owner_cost_cny"]) + Decimal(lp["degradation_cost_cny"]) <= Decimal(
        rules["owner_cost_cny"]
    ) + Decimal(rules["degradation_cost_cny"])


@pytest.mark.parametrize("where", ["cwd", "parent", "foreign", "file", "holds-input"])
def test_out_that_would_destroy_other_files_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: str,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine", encoding="utf-8")
    sessions = work / "sessions.csv"
    sessions.write_text((EXAMPLES / "sessions.csv").read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.chdir(work)
    out = {
        "cwd": Path("."),
        "parent": Path(".."),
        "foreign": work,
        "file": work / "notes.txt",
        "holds-input": work,
    }[where]
    if where == "holds-input":  # looks like an old result, but holds this run's input
        (work / "summary.json").write_text("{}", encoding="utf-8")
        extra = ["--sessions", str(sessions), "--city", "Shenzhen"]
    else:
        extra = ["--vehicles", "10"]
    code = main(["simulate", "--quiet", "--out", str(out), *extra])
    assert code == 2
    assert "--out" in capsys.readouterr().err
    assert (work / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert sessions.exists()


def test_a_mistyped_year_is_refused_before_it_builds_a_huge_grid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (EXAMPLES / "sessions.csv").read_text(encoding="utf-8")
    far = tmp_path / "far.csv"
    far.write_text(
        text.replace("2025-07-17T08:10:00+08:00", "2105-07-17T08:10:00+08:00"), encoding="utf-8"
    )
    assert _simulate(tmp_path / "out", "--sessions", str(far), "--city", "Shenzhen") == 2
    err = capsys.readouterr().err
    span = "the sessions span 29,220 days (session 'home-002' leaves last)"
    assert f"far.csv: row 3, field departure: {span}" in err


def test_regulation_adds_capacity_score_and_mileage(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("--vehicles", "300", "--cities", "Shenzhen", "--planners", "v2g-rules")
    assert _simulate(out, *args, "--regulation-hours", "19,20") == 0
    city = json.loads((out / "summary.json").read_text(encoding="utf-8"))["planners"]["v2g-rules"][
        "cities"
    ]["Shenzhen"]
    assert city["regulation_hours"] == 2
    assert city["regulation_committed_mw"] > 0
    assert city["regulation_committed_mw"] == pytest.approx(
        min(city["regulation_capacity_up_mw"], city["regulation_capacity_down_mw"])
    )
    assert 0.9 <= city["regulation_score"] <= 1.0
    assert city["regulation_mileage_mw"] > 0
    assert city["dr_requested_kwh"] == 0.0
    plain = tmp_path / "plain"
    assert _simulate(plain, *args) == 0
    city = json.loads((plain / "summary.json").read_text(encoding="utf-8"))["planners"][
        "v2g-rules"
    ]["cities"]["Shenzhen"]
    assert city["regulation_hours"] == 0


def test_bad_regulation_hours_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _simulate(tmp_path / "out", "--regulation-hours", "19,25") == 2
    assert "--regulation-hours must be local hours 0-23" in capsys.readouterr().err


def test_regulation_follows_a_users_signal_file(tmp_path: Path) -> None:
    # A square wave: +1 for a minute, -1 for a minute, at 4 s.
    rows = ["time,signal"]
    for k in range(900):
        moment = f"2025-07-16T00:{k * 4 // 60:02d}:{k * 4 % 60:02d}+08:00"
        rows.append(f"{moment},{1 if (k // 15) % 2 == 0 else -1}")
    signal = tmp_path / "signal.csv"
    signal.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ("--vehicles", "300", "--cities", "Shenzhen", "--planners", "v2g-rules")
    assert _simulate(out, *args, "--regulation-signal", str(signal), "--no-frequency-response") == 0
    city = json.loads((out / "summary.json").read_text(encoding="utf-8"))["planners"]["v2g-rules"][
        "cities"
    ]["Shenzhen"]
    assert city["regulation_hours"] == 4
    # Each hour replays the 900 samples: 59 switches between +1 and -1, each moving 2 x
    # the capacity, so 118 MW of mileage per MW committed and hour.
    assert city["regulation_mileage_mw"] == pytest.approx(
        4 * 118 * city["regulation_committed_mw"], rel=1e-6
    )


def test_a_bad_signal_file_is_named_with_its_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signal = tmp_path / "signal.csv"
    signal.write_text(
        "time,signal\n2025-07-16T00:00:00+08:00,0.5\n2025-07-16T00:00:02+08:00,1.5\n",
        encoding="utf-8",
    )
    assert _simulate(tmp_path / "out", "--regulation-signal", str(signal)) == 2
    err = capsys.readouterr().err
    assert f"{signal}: row 3, field signal" in err


def _command(
    *args: str, code: str = "from v2ghub.cli import main; main()"
) -> CompletedProcess[str]:
    """Run ``code`` (by default the installed command's entry) with ``args`` as its
    command line, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_command_ends_with_its_output_flushed_and_its_exit_code(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _command(
        "simulate",
        "--quiet",
        "--cities",
        "Shenzhen",
        "--vehicles",
        "20",
        "--planners",
        "tou",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    # The last line reaches the pipe, though the process skips the interpreter's exit.
    assert done.stdout.startswith("wrote ")
    assert re.search(r"settlement\.json in [0-9.]+ s\n$", done.stdout)
    assert pq.read_table(out / "sessions.parquet").num_rows == 20
    refused = _command("simulate", "--quiet", "--cities", "Atlantis", "--out", str(out))
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: field simulation.cities: unknown city 'Atlantis'")


def test_leave_lets_running_threads_finish() -> None:
    code = (
        "import threading, time\n"
        "from v2ghub.cli import leave\n"
        "def late() -> None:\n"
        "    time.sleep(0.3)\n"
        "    print('finished', flush=True)\n"
        "threading.Thread(target=late).start()\n"
        "print('leaving', end=' ')\n"
        "leave(3)\n"
    )
    done = _command(code=code)
    assert (done.returncode, done.stdout) == (3, "leaving finished\n")
