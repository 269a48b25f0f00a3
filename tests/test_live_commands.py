"""The live commands that only touch the store: `station` and `site`."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from v2ghub.cli import build_parser, main
from v2ghub.live.commands import control_settings
from v2ghub.live.live_problem import LiveSite
from v2ghub.live.security import verify_password
from v2ghub.store.repository import Store


def test_station_add_prints_its_password_once_and_stores_a_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path)]
    assert main(["station", "add", "CP-7", "--site", "depot", "--v2x", *data]) == 0
    printed = capsys.readouterr().out
    found = re.search(r"station CP-7: password (\S+)", printed)
    assert found is not None
    password = found.group(1)
    with Store.open(data_dir=tmp_path) as store:
        station = store.station("CP-7")
    assert station is not None
    assert (station.site_id, station.v2x_allowed, station.max_power_kw) == ("depot", True, 11.0)
    assert password not in station.password_hash
    assert verify_password(password, station.password_hash)

    assert main(["station", "add", "CP-7", *data]) == 2
    assert "error: station 'CP-7' is already registered" in capsys.readouterr().err
    assert main(["station", "list", *data]) == 0
    assert "CP-7  site depot  11 kW  V2X  never connected" in capsys.readouterr().out
    assert main(["station", "password", "CP-8", *data]) == 2
    assert "error: station 'CP-8' is not registered" in capsys.readouterr().err


def test_site_limit_records_a_grid_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path)]
    args = ["site", "limit", "depot", "--export-kw", "0", "--import-kw", "120"]
    window = ["--from", "2026-07-01T18:00+08:00", "--until", "2026-07-01T19:00+08:00"]
    assert main([*args, *window, "--reason", "evening curtailment", *data]) == 0
    assert "site depot: import 120 kW, export 0 kW from 2026-07-01T18:00:00+08:00" in (
        capsys.readouterr().out
    )
    with Store.open(data_dir=tmp_path) as store:
        assert store.site_limits(datetime(2026, 7, 1, 10, 30, tzinfo=UTC)) == {
            "depot": (120.0, 0.0)
        }
        assert store.site_limits(datetime(2026, 7, 1, 11, 0, tzinfo=UTC)) == {}
    assert main(["site", "limit", "depot", "--export-kw", "-5", *data]) == 2
    assert "export_limit_kw must be >= 0 kW, got -5.0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        main(["site", "limit", "depot", "--from", "18:00", *data])
    assert stopped.value.code == 2
    assert "not an ISO time: '18:00'" in capsys.readouterr().err


def test_serve_exports_nothing_at_a_site_its_sites_file_does_not_list(tmp_path: Path) -> None:
    sites = tmp_path / "sites.csv"
    sites.write_text("site_id,import_limit_kw,export_limit_kw\ndepot,100,40\n")
    with Store.open(data_dir=tmp_path) as store:
        store.add_station("CP-1", site_id="home", password_hash="x", v2x_allowed=True)
    args = build_parser().parse_args(["serve", "--sites", str(sites), "--data-dir", str(tmp_path)])
    settings = control_settings(args)
    assert settings.sites == (LiveSite("depot", 100.0, 40.0),)
    assert (settings.unknown_site_import_limit_kw, settings.unknown_site_export_limit_kw) == (
        math.inf,
        0.0,
    )
