"""Shipped data, scenario files and synthetic fleets."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from v2ghub.errors import InputError
from v2ghub.model import ChargerKind, PeriodKind
from v2ghub.scenarios.build import synthetic_cases
from v2ghub.scenarios.catalog import pilot_cities, vehicle_models
from v2ghub.scenarios.config import (
    PILOT_CITIES,
    ScenarioFile,
    SimulationSettings,
    load_scenario,
    resolve,
)


def test_nine_pilot_cities_ship_with_sources() -> None:
    cities = pilot_cities()
    assert tuple(cities) == PILOT_CITIES
    for city in cities.values():
        assert city.tariff_source
        assert city.discharge.source
        city.tariff()  # every tariff builds
    # Where the sources found nothing, the data says it assumed.
    assert cities["Hefei"].tariff_assumed
    assert cities["Chongqing"].tariff_assumed
    assert not cities["Guangzhou"].tariff_assumed
    assert cities["Shenzhen"].discharge.base_price_cny_per_kwh == Decimal("0.453")
    assert abs(sum(m.share for m in vehicle_models()) - 1) < 1e-9


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[simulation]\ncities = ["Atlantis"]\n',
            r"field simulation.cities: unknown city 'Atlantis'",
        ),
        (
            "[simulation]\nvehicles = 5\n",
            r"field simulation.vehicles: Extra inputs are not permitted",
        ),
        (
            "[simulation]\nvehicles_per_city = 5\n",
            r"field simulation.vehicles_per_city: .*greater than or equal to 10",
        ),
        (
            '[simulation]\nplanners = ["magic"]\n',
            r"field simulation.planners: unknown planner 'magic'",
        ),
        ("[simulation\n", r"not valid TOML"),
        ("[fleet]\nhome_share = 0.9\n", r"field fleet: .*must be 1, got 1.3"),
        (
            '[simulation]\ncities = ["Shenzhen"]\n'
            '[cities.Shenzhen]\nbase_price_cny_per_kwh = "-1"\n',
            r"field cities.Shenzhen.base_price_cny_per_kwh: .*greater than 0 \(got '-1'\)",
        ),
        (
            '[simulation]\ncities = ["Shenzhen"]\n[cities.Kunming]\nprovince = "Yunnan"\n',
            r"field cities.Kunming: city 'Kunming' is defined but not listed",
        ),
        ("[simulation]\nstep_minutes = 7\n", r"step_minutes must divide a day"),
        (
            "[fleet]\nhome_share = true\n",
            r"field fleet.home_share: true or false is not a number \(got True\)",
        ),
        ("[simulation]\nseed = false\n", r"field simulation.seed: true or false is not a number"),
        ("[grid]\nsolar_hosting_share = true\n", r"field grid.solar_hosting_share: true or"),
        (
            '[simulation]\ncities = ["Shenzhen"]\n[cities.Shenzhen]\nsolar_peak_share = true\n',
            r"field cities.Shenzhen.solar_peak_share: true or false is not a number",
        ),
    ],
)
def test_bad_scenario_files_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputError, match=message) as caught:
        load_scenario(path)
    assert str(caught.value).startswith(str(path))
    assert "\n" not in str(caught.value)


def test_scenario_overrides_a_city_and_adds_one(tmp_path: Path) -> None:
    shenzhen = pilot_cities()["Shenzhen"].model_dump(mode="json")
    shenzhen.pop("name")
    lines = [
        '[simulation]\ncities = ["Shenzhen", "Testville"]\n',
        '[cities.Shenzhen]\nbase_price_cny_per_kwh = "0.80"\n',
    ]
    import tomllib  # noqa: PLC0415 - checks the text we build is valid TOML

    body = "\n".join(
        f"{k} = {_toml(v)}" for k, v in shenzhen.items() if not isinstance(v, (list, dict))
    )
    tables = "".join(
        f"[[cities.Testville.{key}]]\n"
        + "\n".join(f"{k} = {_toml(v)}" for k, v in row.items())
        + "\n"
        for key in ("tou", "ratios")
        for row in shenzhen[key]
    )
    discharge = "[cities.Testville.discharge]\n" + "\n".join(
        f"{k} = {_toml(v)}" for k, v in shenzhen["discharge"].items() if v is not None
    )
    text = "".join(lines) + "[cities.Testville]\n" + body + "\n" + tables + discharge + "\n"
    tomllib.loads(text)
    scenario = load_scenario(_write(tmp_path, text))
    assert scenario.city_data["Shenzhen"].base_price_cny_per_kwh == Decimal("0.80")
    assert scenario.city_data["Shenzhen"].tariff().import_price(7, PeriodKind.VALLEY) == Decimal(
        "0.3040"
    )
    assert scenario.city_data["Testville"].province == "Guangdong"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _scenario(n: int, seed: int = 7, cities: tuple[str, ...] = ("Shenzhen",)) -> ScenarioFile:
    return ScenarioFile(
        simulation=SimulationSettings(vehicles_per_city=n, seed=seed, cities=cities)
    )


def test_synthetic_fleets_are_seeded_and_follow_the_mix() -> None:
    first = synthetic_cases(resolve(_scenario(20_000)))[0]
    again = synthetic_cases(resolve(_scenario(20_000)))[0]
    other = synthetic_cases(resolve(_scenario(20_000, seed=8)))[0]
    np.testing.assert_array_equal(first.fleet.arrival_s, again.fleet.arrival_s)
    np.testing.assert_array_equal(first.fleet.battery_kwh, again.fleet.battery_kwh)
    assert not np.array_equal(first.fleet.arrival_s, other.fleet.arrival_s)
    kinds = np.bincount(first.fleet.charger_kind, minlength=3) / first.fleet.n_sessions
    np.testing.assert_allclose(kinds, [0.6, 0.25, 0.15], atol=0.02)
    home = first.fleet.charger_kind == ChargerKind.HOME
    midnight_s = first.grid.start_s
    # Home sessions arrive in the afternoon or evening and leave the next morning.
    assert np.all((first.fleet.arrival_s[home] - midnight_s) >= 15 * 3600)
    assert np.all((first.fleet.departure_s[home] - midnight_s) >= 29.5 * 3600)
    np.testing.assert_allclose(first.fleet.max_charge_kw[home], 7.0)
    # Only capable vehicles opt in, and they may discharge at their charger's power.
    assert first.fleet.v2g_opt_in.mean() == pytest.approx(
        0.6 * 0.4 * 0.8 + 0.25 * 0.5 * 0.8 + 0.15 * 0.2 * 0.8, abs=0.02
    )


def test_adding_a_city_does_not_change_another() -> None:
    alone = synthetic_cases(resolve(_scenario(500, cities=("Shanghai",))))[0]
    with_more = synthetic_cases(resolve(_scenario(500, cities=("Shanghai", "Kunming"))))[0]
    np.testing.assert_array_equal(alone.fleet.arrival_s, with_more.fleet.arrival_s)


def test_smallest_fleet_runs_and_base_load_scales_with_it() -> None:
    case = synthetic_cases(resolve(_scenario(10)))[0]
    assert case.fleet.n_sessions == 10
    assert case.signals.base_load_kw.max() == pytest.approx(4.0 * 10)


def test_base_load_follows_kunmings_midday_valley() -> None:
    case = synthetic_cases(resolve(_scenario(1000, cities=("Kunming",))))[0]
    steps_per_hour = 4
    load = case.signals.base_load_kw
    assert load[14 * steps_per_hour] < load[9 * steps_per_hour]
    assert load[14 * steps_per_hour] < load[20 * steps_per_hour]
    # Solar surplus at noon, none at night.
    assert case.signals.renewable_surplus_kw[13 * steps_per_hour] > 0
    assert case.signals.renewable_surplus_kw[2 * steps_per_hour] == 0
    assert case.signals.label == "synthetic"


def test_scenario_replaces_the_vehicle_models(tmp_path: Path) -> None:
    text = (
        '[simulation]\ncities = ["Haikou"]\nvehicles_per_city = 200\n'
        '[[vehicles]]\nmodel = "Test car"\nbattery_kwh = 50\nac_max_kw = 6.6\n'
        'dc_max_kw = 30\nv2g_capable = true\nshare = 1\nsource = "test"\n'
    )
    scenario = load_scenario(_write(tmp_path, text))
    case = synthetic_cases(scenario)[0]
    np.testing.assert_allclose(case.fleet.battery_kwh, 50.0)
    home = case.fleet.charger_kind == ChargerKind.HOME
    np.testing.assert_allclose(case.fleet.max_charge_kw[home], 6.6)


def test_vehicle_shares_must_sum_to_one(tmp_path: Path) -> None:
    text = (
        '[[vehicles]]\nmodel = "Half"\nbattery_kwh = 50\nac_max_kw = 7\n'
        'dc_max_kw = 30\nv2g_capable = true\nshare = 0.5\nsource = "test"\n'
    )
    with pytest.raises(InputError, match=r"field vehicles: vehicle shares must sum to 1, got 0.5"):
        load_scenario(_write(tmp_path, text))


def test_a_true_flag_still_reads_as_a_flag(tmp_path: Path) -> None:
    # Booleans are refused only where numbers belong: a city's flags stay flags.
    path = _write(
        tmp_path,
        '[simulation]\ncities = ["Shenzhen"]\n[cities.Shenzhen]\ntariff_assumed = true\n',
    )
    assert load_scenario(path).city_data["Shenzhen"].tariff_assumed is True


def _sessions(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "sessions.csv"
    header = (
        "session_id,site_id,arrival,departure,battery_kwh,soc_arrival,soc_target,"
        "max_charge_kw,max_discharge_kw\n"
    )
    path.write_text(header + "".join(lines), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("odd", "row", "field"),
    [
        (
            "s3,a,2025-07-16T18:00:00+08:00,2026-07-17T07:00:00+08:00,60,0.3,0.9,7,7\n",
            4,
            "departure",
        ),
        ("s3,a,2024-07-16T18:00:00+08:00,2025-07-17T07:00:00+08:00,60,0.3,0.9,7,7\n", 4, "arrival"),
    ],
)
def test_a_span_over_a_month_names_the_row_and_field_that_stretch_it(
    tmp_path: Path, odd: str, row: int, field: str
) -> None:
    from v2ghub.twin.scenario import Scenario  # noqa: PLC0415 - the twin sits above scenarios

    good = "s{n},a,2025-07-16T18:00:00+08:00,2025-07-17T07:00:00+08:00,60,0.3,0.9,7,7\n"
    path = _sessions(tmp_path, good.format(n=1), good.format(n=2), odd, good.format(n=4))
    with pytest.raises(
        InputError, match=rf"sessions\.csv: row {row}, field {field}: .*span 36[56] days"
    ):
        Scenario.from_sessions(path, city="Shenzhen")
