"""The domain model: time grid, tariffs and fleet validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from v2ghub.model import Fleet, PeriodKind, SiteLimits, TimeGrid
from v2ghub.scenarios.catalog import pilot_cities


def test_time_grid_refuses_naive_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        TimeGrid(datetime(2025, 7, 16), timedelta(minutes=15), 96)  # noqa: DTZ001


def test_plugged_steps_count_whole_steps_only() -> None:
    grid = TimeGrid(datetime(2025, 7, 16, tzinfo=UTC), timedelta(minutes=15), 96)
    start = grid.start_s
    arrival = np.array([start + 10 * 60, start, start + 20 * 60], dtype=np.int64)
    departure = np.array([start + 60 * 60, start + 61 * 60, start + 25 * 60], dtype=np.int64)
    first, end = grid.plugged_steps(arrival, departure)
    # 00:10-01:00 -> steps 1, 2, 3; 00:00-01:01 -> steps 0-3; 00:20-00:25 -> none.
    assert first.tolist() == [1, 0, 2]
    assert end.tolist() == [4, 4, 2]
    assert grid.dt_h == 0.25


def _at(hour: int, month: int = 7) -> TimeGrid:
    start = datetime(2025, month, 16, hour, tzinfo=UTC) - timedelta(hours=8)
    return TimeGrid(start, timedelta(hours=1), 1)


def test_guangdong_critical_peak_and_discharge_rule() -> None:
    tariff = pilot_cities()["Shenzhen"].tariff()
    # 11:00 local in July is critical peak: 0.65 x 1.7 x 1.25.
    months, kinds = tariff.month_and_kind(_at(11))
    assert kinds.tolist() == [PeriodKind.CRITICAL]
    assert tariff.import_price(int(months[0]), PeriodKind.CRITICAL) == Decimal("1.38125")
    # Discharge: 0.453 CNY/kWh x the TOU ratio.
    assert tariff.export_price(7, PeriodKind.CRITICAL) == Decimal("0.962625")
    assert tariff.export_price(7, PeriodKind.VALLEY) == Decimal("0.17214")
    # In January 11:00 is an ordinary peak.
    _, kinds_jan = tariff.month_and_kind(_at(11, month=1))
    assert kinds_jan.tolist() == [PeriodKind.PEAK]
    assert tariff.import_price(1, PeriodKind.PEAK) == Decimal("1.105")


def test_kunming_has_a_midday_solar_valley() -> None:
    tariff = pilot_cities()["Kunming"].tariff()
    kinds = [int(tariff.month_and_kind(_at(h))[1][0]) for h in (8, 13, 19, 3)]
    assert kinds == [PeriodKind.PEAK, PeriodKind.VALLEY, PeriodKind.PEAK, PeriodKind.VALLEY]


def test_price_levels_are_exact_and_few() -> None:
    tariff = pilot_cities()["Guangzhou"].tariff()
    start = datetime(2025, 7, 16, tzinfo=UTC) - timedelta(hours=8)
    levels = tariff.price_levels(TimeGrid(start, timedelta(minutes=15), 96))
    assert levels.n_levels == 4
    assert sorted(levels.import_price_cny_per_kwh) == [
        Decimal("0.2470"),
        Decimal("0.65"),
        Decimal("1.105"),
        Decimal("1.38125"),
    ]
    series = levels.import_series()
    assert series[0] == pytest.approx(0.247)
    assert series[44] == pytest.approx(1.38125)  # 11:00


def _fleet(**overrides: Any) -> Fleet:
    n = 2
    values: dict[str, Any] = {
        "site_index": np.zeros(n, dtype=np.int64),
        "battery_kwh": np.full(n, 60.0),
        "soc_arrival": np.full(n, 0.5),
        "soc_target": np.full(n, 0.8),
        "soc_min": np.full(n, 0.2),
        "soc_max": np.full(n, 1.0),
        "max_charge_kw": np.full(n, 7.0),
        "max_discharge_kw": np.full(n, 7.0),
        "charge_efficiency": np.full(n, 0.9),
        "discharge_efficiency": np.full(n, 0.9),
        "arrival_s": np.array([0, 0], dtype=np.int64),
        "departure_s": np.array([3600, 7200], dtype=np.int64),
        "v2g_opt_in": np.array([True, False]),
        "charger_kind": np.zeros(n, dtype=np.int8),
        "session_ids": np.array(["a", "b"]),
    }
    values.update(overrides)
    return Fleet(**values)


def test_fleet_derived_energies() -> None:
    fleet = _fleet(soc_arrival=np.array([0.1, 0.5]))
    np.testing.assert_allclose(fleet.energy_min_kwh, [6.0, 12.0])
    np.testing.assert_allclose(fleet.target_energy_kwh, [48.0, 48.0])
    np.testing.assert_allclose(fleet.discharge_limit_kw, [7.0, 0.0])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"soc_arrival": np.array([0.5, 1.5])}, r"session b: soc_arrival must be within 0-1"),
        ({"battery_kwh": np.array([-1.0, 60.0])}, r"session a: battery_kwh must be > 0"),
        (
            {"departure_s": np.array([0, 7200], dtype=np.int64)},
            r"session a: departure must be after",
        ),
        (
            {"soc_target": np.array([0.8, 0.9]), "soc_max": np.array([1.0, 0.85])},
            "soc_target must not",
        ),
        ({"charge_efficiency": np.array([0.0, 0.9])}, r"charge_efficiency must be within \(0, 1\]"),
        ({"max_discharge_kw": np.array([np.nan, 1.0])}, "max_discharge_kw must be >= 0"),
    ],
)
def test_fleet_refuses_bad_values(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _fleet(**overrides)


def test_site_limits_refuse_negative() -> None:
    with pytest.raises(ValueError, match=r"site 'b' has -1\.0"):
        SiteLimits(("a", "b"), np.array([1.0, -1.0]), np.array([1.0, 1.0]))
