"""The twin's regulation service: response delay, frequency response, traces, planning terms."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from v2ghub.model.case import CityCase
from v2ghub.planning import make_planner
from v2ghub.regulation.frequency_response import droop_fraction
from v2ghub.regulation.signals import FrequencyTrace, RegulationSignal
from v2ghub.scenarios.build import synthetic_cases
from v2ghub.scenarios.config import ScenarioFile, SimulationSettings, resolve
from v2ghub.sim.engine import Simulator
from v2ghub.sim.regulation_service import HourResult, RegulationFollower, RegulationOffer

EVENING = (19,)


def _shenzhen(vehicles: int = 300) -> CityCase:
    settings = SimulationSettings(
        cities=("Shenzhen",), vehicles_per_city=vehicles, planners=("v2g-rules",)
    )
    return synthetic_cases(resolve(ScenarioFile(simulation=settings)))[0]


def _hour(case: CityCase, offer: RegulationOffer) -> tuple[RegulationFollower, HourResult]:
    follower = RegulationFollower(case.grid, timezone=case.tariff.timezone, offer=offer)
    run = Simulator(case, make_planner("v2g-rules"), regulation=follower).run()
    assert len(run.regulation_hours) == 1
    return follower, run.regulation_hours[0]


def test_the_fleet_answers_one_sample_late_at_the_default_delay() -> None:
    case = _shenzhen()
    offer = RegulationOffer(hours=EVENING, frequency_response=False)
    follower, hour = _hour(case, offer)
    assert follower.delay_samples == 1
    assert hour.capacity_kw > 100.0
    first = follower.samples_per_step  # the committing step has the whole capacity
    asked, done = hour.requested_kw[:first], hour.delivered_kw[:first]
    assert done[0] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(done[1:], asked[:-1], atol=0.01 * hour.capacity_kw)
    assert hour.score is not None
    assert hour.score.correlation < 1.0


def test_without_delay_the_fleet_delivers_what_is_asked() -> None:
    case = _shenzhen()
    offer = RegulationOffer(hours=EVENING, frequency_response=False, response_delay_s=0.0)
    follower, hour = _hour(case, offer)
    first = follower.samples_per_step
    np.testing.assert_allclose(
        hour.delivered_kw[:first], hour.requested_kw[:first], atol=0.01 * hour.capacity_kw
    )


def test_frequency_response_is_held_within_the_promise() -> None:
    case = _shenzhen()
    offer = RegulationOffer(hours=EVENING)
    # At the 0.2 Hz limit: (0.2 - 0.05) / 50 / 0.05 = 6% of the capacity is held back.
    assert offer.frequency_reserve == pytest.approx(0.06)
    follower, hour = _hour(case, offer)
    signal = follower.hour_of_step[next(iter(follower.hour_of_step))].signal.values
    capacity = hour.capacity_kw
    assert np.all(np.abs(hour.frequency_kw) <= 0.06 * capacity + 1e-9)
    assert np.any(hour.frequency_kw != 0)  # the seeded trace leaves the deadband
    np.testing.assert_allclose(
        hour.requested_kw, 0.94 * signal * capacity + hour.frequency_kw, rtol=1e-12, atol=1e-9
    )
    assert np.all(np.abs(hour.requested_kw) <= capacity + 1e-9)


def test_a_given_trace_is_replayed_from_its_start() -> None:
    case = _shenzhen(100)
    start = datetime(2025, 7, 16, tzinfo=UTC)
    pattern = np.array([0.5, -0.5, 1.0, 0.0])
    hz = np.array([50.0, 50.15, 49.85, 50.0])  # 0.1 Hz beyond the deadband: 4% each way
    offer = RegulationOffer(
        hours=EVENING,
        signal_trace=RegulationSignal(start=start, step_s=2.0, values=pattern),
        frequency_trace=FrequencyTrace(start=start, step_s=2.0, frequency_hz=hz),
    )
    follower, hour = _hour(case, offer)
    signal = follower.hour_of_step[next(iter(follower.hour_of_step))].signal.values
    np.testing.assert_array_equal(signal, np.tile(pattern, 450))
    expected_fraction = np.tile(droop_fraction(hz), 450)
    np.testing.assert_allclose(expected_fraction[:4], [0.0, 0.04, -0.04, 0.0])
    np.testing.assert_allclose(hour.frequency_kw, expected_fraction * hour.capacity_kw)


def test_a_trace_at_another_step_is_refused() -> None:
    case = _shenzhen(100)
    trace = RegulationSignal(
        start=datetime(2025, 7, 16, tzinfo=UTC), step_s=4.0, values=np.array([0.1])
    )
    offer = RegulationOffer(hours=EVENING, signal_trace=trace)
    with pytest.raises(ValueError, match=r"the signal file's step is 4 s, the offer's 2 s"):
        RegulationFollower(case.grid, timezone=case.tariff.timezone, offer=offer)


def test_the_planner_sees_the_price_then_the_commitment() -> None:
    case = _shenzhen(100)
    follower = RegulationFollower(
        case.grid,
        timezone=case.tariff.timezone,
        offer=RegulationOffer(hours=EVENING),
        value_cny_per_mw_h=10.0,
        mileage_cny_per_mw=12.0,
    )
    # 10 CNY/MW-h plus 12 CNY/MW times the signal's mileage per hour, per kW.
    expected_value = (10.0 + 12.0 * follower.mileage_per_hour) / 1000
    assert follower.value_cny_per_kw_h == pytest.approx(expected_value)
    offered = sorted(follower.hour_of_step)
    assert len(offered) == 4  # one hour of 15-minute steps
    terms = follower.planning_terms(offered[0] - 2, 8)
    np.testing.assert_allclose(terms["regulation_price_cny_per_kw_h"][2:6], expected_value)
    assert terms["regulation_price_cny_per_kw_h"][[0, 1, 6, 7]].tolist() == [0, 0, 0, 0]
    assert not terms["regulation_commitment_kw"].any()
    assert follower.planning_terms(0, 4) == {}
    # Once the hour is committed the planner keeps its capacity instead.
    follower.hour_of_step[offered[0]].capacity_kw = 250.0
    terms = follower.planning_terms(offered[1], 4)
    np.testing.assert_allclose(terms["regulation_commitment_kw"], [250.0, 250.0, 250.0, 0.0])
    assert not terms["regulation_price_cny_per_kw_h"].any()
