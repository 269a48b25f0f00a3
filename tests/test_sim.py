"""The simulator on hand-worked cases: exact power, energy and fallbacks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from v2ghub.model import CityCase, Fleet, GridSignals, Problem, Schedule, SiteLimits, TimeGrid
from v2ghub.planning import make_planner
from v2ghub.sim.engine import Simulator
from v2ghub.sim.metrics import evaluate

from .strategies import guangdong_like_tariff

START = datetime(2025, 7, 16, tzinfo=UTC)


def _case(
    *,
    arrival_h: float,
    departure_h: float,
    soc_arrival: float,
    soc_target: float,
    v2g: bool = False,
    import_limit_kw: float = np.inf,
) -> CityCase:
    start_s = int(START.timestamp())
    fleet = Fleet(
        site_index=np.zeros(1, dtype=np.int64),
        battery_kwh=np.array([60.0]),
        soc_arrival=np.array([soc_arrival]),
        soc_target=np.array([soc_target]),
        soc_min=np.array([0.2]),
        soc_max=np.array([1.0]),
        max_charge_kw=np.array([7.0]),
        max_discharge_kw=np.array([7.0]),
        charge_efficiency=np.array([0.9]),
        discharge_efficiency=np.array([0.9]),
        arrival_s=np.array([start_s + int(arrival_h * 3600)], dtype=np.int64),
        departure_s=np.array([start_s + int(departure_h * 3600)], dtype=np.int64),
        v2g_opt_in=np.array([v2g]),
        charger_kind=np.zeros(1, dtype=np.int8),
    )
    grid = TimeGrid(START, timedelta(minutes=15), 96)
    return CityCase(
        city="Testville",
        grid=grid,
        fleet=fleet,
        sites=SiteLimits(("s",), np.array([import_limit_kw]), np.array([np.inf])),
        tariff=guangdong_like_tariff(),
        signals=GridSignals(np.full(96, 1000.0), np.zeros(96)),
        degradation_cny_per_kwh=0.2,
    )


def test_uncontrolled_charges_at_full_power_until_the_target() -> None:
    # 0.5 -> 0.8 of 60 kWh = 18 kWh stored = 20 kWh from the grid at 0.9 efficiency:
    # 11 steps of 1.75 kWh and 0.75 kWh in the 12th.
    run = Simulator(
        _case(arrival_h=0, departure_h=8, soc_arrival=0.5, soc_target=0.8),
        make_planner("uncontrolled"),
    ).run()
    np.testing.assert_allclose(run.charge_kw[:11], 7.0)
    assert run.charge_kw[11] == pytest.approx(3.0)
    assert run.charge_kw[12:].sum() == 0
    assert run.energy_final_kwh[0] == pytest.approx(48.0)
    assert run.energy_charged_kwh[0] == pytest.approx(20.0)


def test_tou_spreads_the_need_over_the_valley() -> None:
    # Valley is 0-8 h; plugged 0-4 h: 16 valley steps share 20 kWh evenly = 5 kW each.
    run = Simulator(
        _case(arrival_h=0, departure_h=4, soc_arrival=0.5, soc_target=0.8), make_planner("tou")
    ).run()
    np.testing.assert_allclose(run.charge_kw[:16], 5.0)
    assert run.energy_final_kwh[0] == pytest.approx(48.0)


def test_tou_waits_for_the_valley_when_it_can() -> None:
    # Plugged 06:00-12:00 and needing 18 kWh stored: what the valley cannot hold goes to
    # the flat hours, none to the peak.
    run = Simulator(
        _case(arrival_h=6, departure_h=12, soc_arrival=0.5, soc_target=0.8), make_planner("tou")
    ).run()
    # 6-8 h valley (8 steps x 1.575 kWh stored = 12.6 kWh), the rest 5.4 kWh in 8-10 h flat.
    np.testing.assert_allclose(run.charge_kw[24:32], 7.0)
    assert run.charge_kw[32:40].sum() * 0.25 * 0.9 == pytest.approx(5.4)
    assert run.charge_kw[40:48].sum() == 0  # never at the 10-12 h peak


def test_v2g_rules_sell_surplus_at_peak_and_keep_the_target() -> None:
    # Arrives 10:00 (peak) at 0.9, needs 0.5 at 16:00: discharge at peak, within the floor.
    run = Simulator(
        _case(arrival_h=10, departure_h=16, soc_arrival=0.9, soc_target=0.5, v2g=True),
        make_planner("v2g-rules"),
    ).run()
    result = evaluate(run)
    assert run.discharge_kw[40] == pytest.approx(7.0)
    assert run.energy_discharged_kwh[0] > 0
    assert run.energy_final_kwh[0] >= 30.0 - 1e-9
    assert result.metrics.unmet_energy_kwh == 0
    # Owner is paid: the bill is negative.
    assert result.metrics.owner_cost_cny < 0


def test_no_v2g_without_opt_in() -> None:
    run = Simulator(
        _case(arrival_h=10, departure_h=16, soc_arrival=0.9, soc_target=0.5, v2g=False),
        make_planner("v2g-rules"),
    ).run()
    assert run.energy_discharged_kwh[0] == 0


def test_site_limit_holds_even_against_the_need() -> None:
    run = Simulator(
        _case(arrival_h=0, departure_h=1, soc_arrival=0.2, soc_target=0.9, import_limit_kw=3.0),
        make_planner("uncontrolled"),
    ).run()
    np.testing.assert_allclose(run.charge_kw[:4], 3.0)
    result = evaluate(run)
    # 3 kW x 1 h x 0.9 = 2.7 kWh stored; the target needed 42: the rest is reported.
    assert result.metrics.unmet_energy_kwh == pytest.approx(42.0 - 2.7)
    assert result.metrics.vehicles_short == 1


class _Broken:
    name = "broken"

    def plan(self, problem: Problem) -> Schedule:
        raise RuntimeError("solver crashed")


class _WrongShape:
    name = "wrong-shape"

    def plan(self, problem: Problem) -> Schedule:
        return Schedule(np.zeros((problem.n_vehicles + 1, 1)), self.name)


@pytest.mark.parametrize(
    ("planner", "reason"),
    [
        (_Broken(), "planner 'broken' failed: RuntimeError: solver crashed"),
        (_WrongShape(), "planner 'wrong-shape' broke a guarantee: shape"),
    ],
)
def test_failing_planner_falls_back_to_safe_charging_and_says_so(
    planner: _Broken | _WrongShape, reason: str
) -> None:
    run = Simulator(
        _case(arrival_h=0, departure_h=8, soc_arrival=0.5, soc_target=0.8), planner
    ).run()
    assert len(run.fallback_reasons) == 96
    assert run.fallback_reasons[0].startswith(reason)
    assert run.energy_final_kwh[0] == pytest.approx(48.0)
    assert run.energy_discharged_kwh[0] == 0
