"""``simulate --feeders``: feeders under the compounds, AC power flow through every run, the
figures in summary.json and the report's Feeders section (pandapower's models, for real)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from v2ghub.cli import main

VEHICLES = "1200"  # 720 at home: 7 compounds of 100 homes


@pytest.fixture(scope="module")
def feeder_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("feeders") / "out"
    code = main(
        [
            "simulate",
            "--quiet",
            "--out",
            str(out),
            "--cities",
            "Shenzhen",
            "--vehicles",
            VEHICLES,
            "--planners",
            "uncontrolled,tou,mpc",
            "--feeders",
            "3",
        ]
    )
    assert code == 0
    return out


def _city(out: Path, planner: str) -> dict[str, object]:
    summary = json.loads((out / "summary.json").read_text())
    city: dict[str, object] = summary["planners"][planner]["cities"]["Shenzhen"]
    return city


def test_each_run_reports_its_feeders_in_the_summary(feeder_run: Path) -> None:
    uncontrolled = _city(feeder_run, "uncontrolled")
    tou = _city(feeder_run, "tou")
    for figures in (uncontrolled, tou):
        assert figures["feeders"] == 3
        steps = figures["feeder_steps"]
        assert isinstance(steps, int)
        assert steps % 3 == 0
        assert steps > 3 * 96  # the run's steps: the day and the morning after
        assert 0.0 < figures["feeder_worst_loading"] < 5.0  # type: ignore[operator]
        assert 0.5 < figures["feeder_min_vm_pu"] <= 1.0  # type: ignore[operator]
    # A hundred homes' 7 kW chargers at once on wires sized for the homes: overloads.
    assert uncontrolled["feeder_steps_overloaded"] > 0  # type: ignore[operator]
    assert uncontrolled["feeders_overloaded"] >= 1  # type: ignore[operator]
    # Charging at full power the moment each car arrives loads the feeder more than
    # charging it in the valley, when the homes' own load is low.
    assert uncontrolled["feeder_worst_loading"] > tou["feeder_worst_loading"]  # type: ignore[operator]


def test_mpc_within_the_feeders_limits_removes_the_overloads_and_meets_the_needs(
    feeder_run: Path,
) -> None:
    uncontrolled = _city(feeder_run, "uncontrolled")
    mpc = _city(feeder_run, "mpc")
    assert uncontrolled["feeder_steps_overloaded"] > 0  # type: ignore[operator]
    assert mpc["feeder_steps_overloaded"] == 0
    assert mpc["feeder_steps_voltage_out"] == 0
    assert mpc["feeder_worst_loading"] <= 1.0  # type: ignore[operator]
    # The needs a plan could meet within the caps are met: mpc holds room for the
    # evening's arrivals at the compounds, whom it knows only as groups.
    short = mpc["unmet_energy_kwh"] - mpc["unavoidable_shortfall_kwh"]  # type: ignore[operator]
    no_room = mpc["feeder_shortfall_kwh"]
    assert no_room >= 0.0  # type: ignore[operator]
    assert short <= no_room + 1e-6 * mpc["required_energy_kwh"]  # type: ignore[operator]
    assert uncontrolled["feeder_shortfall_kwh"] == 0.0  # it never sees the feeders


def test_the_report_shows_the_feeders_section(feeder_run: Path) -> None:
    report = (feeder_run / "report.html").read_text()
    section = report[report.index('<section id="feeders">') :]
    section = section[: section.index("</section>")]
    assert "<h2>Feeders</h2>" in section
    assert "3 feeders a city" in section
    assert section.count("<tr><td>uncontrolled</td>") == 1
    assert section.count("<tr><td>tou</td>") == 1
    assert section.count("<tr><td>mpc</td>") == 1
    assert "Feeders under each planner&#x27;s charging" in section
    assert "data:image/png;base64," in section


def test_a_run_without_feeders_has_no_section(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        main(["simulate", "--quiet", "--out", str(out), "--cities", "Haikou", "--vehicles", "30"])
        == 0
    )
    assert 'id="feeders"' not in (out / "report.html").read_text()
    figures = json.loads((out / "summary.json").read_text())
    assert figures["planners"]["tou"]["cities"]["Haikou"]["feeders"] == 0


def test_bad_feeder_options_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        main(["simulate", "--out", str(out), "--feeders", "-2"])
    assert "--feeders: must be at least 0, got -2" in capsys.readouterr().err
    network = tmp_path / "feeder.json"
    network.write_text("not json at all")
    code = main(
        [
            "simulate",
            "--quiet",
            "--out",
            str(out),
            "--cities",
            "Haikou",
            "--vehicles",
            "300",
            "--feeders",
            "1",
            "--feeder-network",
            str(network),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "feeder.json" in err
    assert "cannot read the pandapower network" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()
    code = main(["simulate", "--quiet", "--out", str(out), "--feeders", "2", "--workers", "2"])
    assert code == 2
    assert "--workers does not yet shard --feeders" in capsys.readouterr().err


def test_a_network_the_feeders_cannot_use_is_refused_before_any_fleet_is_built(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from v2ghub.network.pandapower_import import pandapower  # noqa: PLC0415
    from v2ghub.twin.twin import Twin  # noqa: PLC0415

    pp = pandapower()
    net = pp.create_empty_network()
    high, low = pp.create_bus(net, vn_kv=10.0), pp.create_bus(net, vn_kv=0.4)
    pp.create_ext_grid(net, high)
    pp.create_ext_grid(net, low)  # a second slack: the batched model takes one
    pp.create_transformer(net, high, low, std_type="0.4 MVA 10/0.4 kV")
    pp.create_load(net, low, p_mw=0.1)
    network = tmp_path / "two_grids.json"
    pp.to_json(net, str(network))

    def no_fleet(self: Twin) -> None:
        raise AssertionError("a fleet was built")

    monkeypatch.setattr(Twin, "_cases", no_fleet)
    out = tmp_path / "out"
    run = ["simulate", "--quiet", "--out", str(out), "--cities", "Haikou", "--vehicles", "300"]
    code = main([*run, "--feeders", "1", "--feeder-network", str(network)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]
    assert "two_grids.json: feeder network: one external grid and no generators" in err
    assert "(found 2 external grids and 0 generators in service)" in err
    assert not out.exists()
