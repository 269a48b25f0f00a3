"""The groups of sessions still to come, as the twin tells a planner that asks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from v2ghub.model import CityCase
from v2ghub.model.fleet import ChargerKind, Fleet
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.mpc import RecedingHorizonPlanner
from v2ghub.sim.engine import Simulator
from v2ghub.sim.expected_arrivals import ExpectedArrivals

from .strategies import cases


def _fleet(site_index: list[int]) -> Fleet:
    n = len(site_index)

    def column(values: list[float]) -> np.ndarray:
        return np.array(values, dtype=np.float64)

    return Fleet(
        site_index=np.array(site_index, dtype=np.int64),
        battery_kwh=column([50.0, 60.0, 40.0, 80.0][:n]),
        soc_arrival=column([0.2, 0.5, 0.3, 0.1][:n]),
        soc_target=column([0.8, 0.9, 0.3, 0.6][:n]),
        soc_min=column([0.1] * n),
        soc_max=column([1.0] * n),
        max_charge_kw=column([7.0, 11.0, 7.0, 22.0][:n]),
        max_discharge_kw=column([7.0] * n),
        charge_efficiency=column([0.9, 0.95, 0.9, 0.9][:n]),
        discharge_efficiency=column([0.9] * n),
        arrival_s=np.zeros(n, dtype=np.int64),
        departure_s=np.full(n, 3600, dtype=np.int64),
        v2g_opt_in=np.ones(n, dtype=np.bool_),
        charger_kind=np.full(n, ChargerKind.HOME, dtype=np.int8),
    )


def test_sessions_to_come_are_summed_per_site_and_hour() -> None:
    # Four 15-minute steps an hour. Sessions 0 and 1 arrive at site 0 in the same hour and
    # leave in the same hour: one group. Session 2 is at site 1 (no limit): not counted.
    # Session 3 arrived already at step 2.
    fleet = _fleet([0, 0, 1, 0])
    first_step = np.array([5, 7, 6, 2])
    order = np.argsort(first_step)  # the engine works in arrival order
    first = first_step[order]
    end = np.array([10, 12, 11, 9])[order]
    expected = ExpectedArrivals(
        fleet=fleet.take(order),
        first_step=first,
        end_step=end,
        site_limited=np.array([True, False]),
        steps_per_group=4,
    )
    groups = expected.after(3)
    assert groups.n_groups == 1
    assert groups.site_index.tolist() == [0]
    # Mean arrival (5 + 7) / 2 = 6, mean departure (10 + 12) / 2 = 11, counted from step 3.
    assert groups.arrival_step.tolist() == [3]
    assert groups.departure_step.tolist() == [8]
    assert groups.energy_kwh[0] == pytest.approx(0.2 * 50 + 0.5 * 60)
    assert groups.target_energy_kwh[0] == pytest.approx(0.8 * 50 + 0.9 * 60)
    assert groups.energy_max_kwh[0] == pytest.approx(110.0)
    assert groups.max_charge_kw[0] == pytest.approx(18.0)
    assert groups.charge_efficiency[0] == pytest.approx(0.925)
    # Once both have arrived nothing is left to come.
    assert expected.after(7).n_groups == 0
    # Before session 3 arrives, it is a group of its own at its hours (0 .. 2).
    assert expected.after(1).n_groups == 2


def test_sessions_must_come_in_arrival_order() -> None:
    with pytest.raises(ValueError, match="ascending"):
        ExpectedArrivals(
            fleet=_fleet([0, 0]),
            first_step=np.array([3, 1]),
            end_step=np.array([5, 5]),
            site_limited=np.array([True]),
            steps_per_group=4,
        )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(limited_sites=True))
def test_planning_with_expected_arrivals_keeps_every_limit(case: CityCase) -> None:
    planner = RecedingHorizonPlanner(FastPlanner(), expected_arrivals=True)
    run = Simulator(case, planner, control_steps=2).run()
    fleet = case.fleet
    assert run.setpoint_cuts == 0
    assert run.site_limit_violations == 0
    assert run.fallback_reasons == ()
    assert np.all(run.energy_final_kwh >= fleet.energy_min_kwh - 1e-6)
    assert np.all(run.energy_final_kwh <= fleet.energy_max_kwh + 1e-6)
    # Only real vehicles were metered: stored change = eta_c * in - out / eta_d.
    expected = (
        fleet.energy_arrival_kwh
        + fleet.charge_efficiency * run.energy_charged_kwh
        - run.energy_discharged_kwh / fleet.discharge_efficiency
    )
    np.testing.assert_allclose(run.energy_final_kwh, expected, atol=1e-6)
    dt_h = case.grid.dt_h
    assert run.charge_kw.sum() * dt_h == pytest.approx(run.energy_charged_kwh.sum(), abs=1e-6)
