"""Demand response: the allocation by hand and by property, the twin, scenario files, CLI."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from v2ghub.cli import main
from v2ghub.model import CityCase, Problem, Schedule
from v2ghub.planning import make_planner
from v2ghub.regulation.capacity import site_share
from v2ghub.regulation.demand_response import (
    Allocation,
    DemandResponseEvent,
    allocate_reduction,
)
from v2ghub.scenarios.build import synthetic_cases
from v2ghub.scenarios.config import (
    DEFAULT_DEMAND_RESPONSE,
    ScenarioFile,
    SimulationSettings,
    load_scenario,
    resolve,
)
from v2ghub.sim.battery import step_batteries
from v2ghub.sim.demand_response_service import DemandResponseService
from v2ghub.sim.engine import Simulator
from v2ghub.sim.metrics import evaluate
from v2ghub.sim.regulation_service import RegulationFollower, RegulationOffer
from v2ghub.sim.run_state import SimulationRun

from .strategies import START, cases
from .test_scenarios import test_bad_scenario_files_name_file_and_field as refused

FloatArray = npt.NDArray[np.float64]
TOLERANCE = 1e-6
DT_H = 0.25
PROPERTIES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TWIN_PROPERTIES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@dataclass(frozen=True)
class _Chargers:
    """A plugged fleet's per-session limits (:class:`Chargers`)."""

    site_index: npt.NDArray[np.int64]
    max_charge_kw: FloatArray
    max_discharge_kw: FloatArray
    charge_efficiency: FloatArray
    discharge_efficiency: FloatArray
    energy_min_kwh: FloatArray
    energy_max_kwh: FloatArray


def _physics(
    chargers: _Chargers, energy_kwh: FloatArray, setpoint_kw: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """One step of the batteries at ``setpoint_kw``: (energy after, applied kW)."""
    limits = {f.name: getattr(chargers, f.name) for f in fields(chargers)}
    del limits["site_index"]
    return step_batteries(energy_kwh=energy_kwh, setpoint_kw=setpoint_kw, dt_h=DT_H, **limits)


def _allocate(
    planned_kw: list[float],
    reduction_kw: float,
    *,
    energy_kwh: list[float],
    target_kwh: list[float],
    max_discharge_kw: list[float],
    steps_to_departure: list[int],
    export_limit_kw: float = np.inf,
    hold_steps: int = 1,
) -> Allocation:
    n = len(planned_kw)
    chargers = _Chargers(
        site_index=np.zeros(n, dtype=np.int64),
        max_charge_kw=np.full(n, 7.0),
        max_discharge_kw=np.array(max_discharge_kw),
        charge_efficiency=np.full(n, 0.9),
        discharge_efficiency=np.full(n, 0.9),
        energy_min_kwh=np.full(n, 10.0),
        energy_max_kwh=np.full(n, 60.0),
    )
    return allocate_reduction(
        chargers=chargers,
        planned_kw=np.array(planned_kw),
        reduction_kw=reduction_kw,
        energy_kwh=np.array(energy_kwh),
        target_energy_kwh=np.array(target_kwh),
        steps_to_departure=np.array(steps_to_departure, dtype=np.int64),
        dt_h=DT_H,
        import_limit_kw=np.array([np.inf]),
        export_limit_kw=np.array([export_limit_kw]),
        hold_steps=hold_steps,
    )


# A: charging 7 kW with hours to spare: may pause all 7. B: likewise 3 kW. C: idle, opted
# in at 5 kW, above its target: may discharge 5. D: charging 7 kW, leaving in two steps
# (30 min) at 47 kWh for a 50 kWh target: after this step it must hold
# 50 - 0.25 h x 7 kW x 0.9 = 48.425 kWh, so it must charge at least
# (48.425 - 47) / (0.25 x 0.9) = 6.333 kW; with 47.3 kWh, (1.125 / 0.225) = 5 kW: it
# may pause 2 kW. Pausable 7 + 3 + 2 = 12 kW; dischargeable 5 kW.
HAND: dict[str, Any] = {
    "energy_kwh": [20.0, 20.0, 40.0, 47.3],
    "target_kwh": [40.0, 40.0, 30.0, 50.0],
    "max_discharge_kw": [0.0, 0.0, 5.0, 0.0],
    "steps_to_departure": [32, 32, 32, 2],
}
PLANNED = [7.0, 3.0, 0.0, 7.0]


@pytest.mark.parametrize(
    ("reduction_kw", "setpoints", "paused", "discharged"),
    [
        # 6 of the 12 pausable kW: everyone pauses half of what it may.
        (6.0, [3.5, 1.5, 0.0, 6.0], 6.0, 0.0),
        # All 12 paused, then 2 of C's 5 kW discharged.
        (14.0, [0.0, 0.0, -2.0, 5.0], 12.0, 2.0),
        # More than the fleet allows: 17 kW at most.
        (30.0, [0.0, 0.0, -5.0, 5.0], 12.0, 5.0),
        (0.0, PLANNED, 0.0, 0.0),
    ],
)
def test_allocation_pauses_pro_rata_then_discharges_by_hand(
    reduction_kw: float, setpoints: list[float], paused: float, discharged: float
) -> None:
    allocation = _allocate(PLANNED, reduction_kw, **HAND)
    np.testing.assert_allclose(allocation.setpoint_kw, setpoints, atol=1e-9)
    assert allocation.requested_kw == reduction_kw
    assert allocation.paused_kw == pytest.approx(paused)
    assert allocation.discharged_kw == pytest.approx(discharged)
    assert allocation.achieved_kw == pytest.approx(min(reduction_kw, 17.0))


def test_allocation_holds_for_the_rest_of_the_event() -> None:
    # Four steps left: D (leaving in two) may only pause what it could for both, to reach
    # 50 kWh from 47.3 in 0.5 h: (50 - 47.3) / (0.5 x 0.9) = 6 kW, so 1 kW. A, B and C
    # have hours to spare (C may discharge 5 kW for an hour: 3.75 / 0.9 kWh stored).
    allocation = _allocate(PLANNED, 30.0, hold_steps=4, **HAND)
    np.testing.assert_allclose(allocation.setpoint_kw, [0.0, 0.0, -5.0, 6.0], atol=1e-9)
    assert allocation.achieved_kw == pytest.approx(16.0)


def test_allocation_keeps_the_site_export_limit() -> None:
    # One site exporting at most 2 kW: G charges 4 kW while H discharges 4 kW (net 0).
    # Pausing G takes the site to -4 kW: only 2 kW may be cut, and nothing discharged.
    allocation = _allocate(
        [4.0, -4.0],
        10.0,
        energy_kwh=[20.0, 50.0],
        target_kwh=[40.0, 20.0],
        max_discharge_kw=[0.0, 7.0],
        steps_to_departure=[32, 32],
        export_limit_kw=2.0,
    )
    np.testing.assert_allclose(allocation.setpoint_kw, [2.0, -4.0])
    assert allocation.achieved_kw == pytest.approx(2.0)


@st.composite
def fleets_at_a_step(draw: st.DrawFn) -> dict[str, Any]:
    """Plugged vehicles at one step: energies, limits, a feasible plan, sites."""
    n = draw(st.integers(1, 30))
    n_sites = draw(st.integers(1, 3))

    def column(low: float, high: float) -> FloatArray:
        return np.array(draw(st.lists(st.floats(low, high), min_size=n, max_size=n)))

    battery = column(20.0, 100.0)
    energy_min = battery * column(0.0, 0.4)
    energy_max = battery * column(0.6, 1.0)
    energy = energy_min + column(0.0, 1.0) * (energy_max - energy_min)
    max_charge = column(1.0, 60.0)
    opt_in = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    max_discharge = np.where(opt_in, column(0.0, 60.0), 0.0)
    site_index = np.array(
        draw(st.lists(st.integers(0, n_sites - 1), min_size=n, max_size=n)), dtype=np.int64
    )
    chargers = _Chargers(
        site_index=site_index,
        max_charge_kw=max_charge,
        max_discharge_kw=max_discharge,
        charge_efficiency=column(0.7, 1.0),
        discharge_efficiency=column(0.7, 1.0),
        energy_min_kwh=energy_min,
        energy_max_kwh=energy_max,
    )
    # A plan the battery can take this step: between full discharge and full charge.
    wanted = -max_discharge + column(0.0, 1.0) * (max_charge + max_discharge)
    _, planned = _physics(chargers, energy, wanted)
    net = np.bincount(site_index, weights=planned, minlength=n_sites)
    # Limits the plan keeps, with some room or none.
    import_limit = np.maximum(net, 0.0) + np.array(
        draw(st.lists(st.floats(0.0, 50.0), min_size=n_sites, max_size=n_sites))
    )
    export_limit = np.maximum(-net, 0.0) + np.array(
        draw(st.lists(st.floats(0.0, 50.0), min_size=n_sites, max_size=n_sites))
    )
    return {
        "chargers": chargers,
        "planned_kw": planned,
        "energy_kwh": energy,
        "target_energy_kwh": energy_min + column(0.0, 1.0) * (energy_max - energy_min),
        "steps_to_departure": np.array(
            draw(st.lists(st.integers(1, 40), min_size=n, max_size=n)), dtype=np.int64
        ),
        "dt_h": DT_H,
        "import_limit_kw": import_limit,
        "export_limit_kw": export_limit,
        "refill_kw": max_charge * site_share(site_index, max_charge, import_limit),
    }


@PROPERTIES
@given(fleet=fleets_at_a_step(), reduction_kw=st.floats(0.0, 2000.0), hold_steps=st.integers(1, 8))
def test_allocation_never_breaks_a_need_the_window_or_a_limit(
    fleet: dict[str, Any], reduction_kw: float, hold_steps: int
) -> None:
    allocation = allocate_reduction(reduction_kw=reduction_kw, hold_steps=hold_steps, **fleet)
    planned, setpoint = fleet["planned_kw"], allocation.setpoint_kw
    chargers = fleet["chargers"]
    # Only ever lower, never beyond the charger, discharge only where opted in.
    assert np.all(setpoint <= planned + TOLERANCE)
    assert np.all(setpoint >= -chargers.max_discharge_kw - TOLERANCE)
    # Delivered what was asked, or everything the fleet could give.
    achieved = float((planned - setpoint).sum())
    assert achieved == pytest.approx(allocation.achieved_kw, abs=1e-6)
    assert achieved <= reduction_kw + 1e-6
    # The battery obeys the setpoints as they are: no cut by the SoC window.
    after, applied = _physics(chargers, fleet["energy_kwh"], setpoint)
    np.testing.assert_allclose(applied, setpoint, atol=1e-6)
    planned_after, _ = _physics(chargers, fleet["energy_kwh"], planned)
    # Whoever could still reach its target by departure with the plan still can.
    hours_left = (fleet["steps_to_departure"] - 1) * DT_H
    need = fleet["target_energy_kwh"] - hours_left * fleet["refill_kw"] * chargers.charge_efficiency
    could = planned_after >= need
    assert np.all(after[could] >= need[could] - 1e-6)
    # Site limits hold.
    n_sites = fleet["import_limit_kw"].size
    net = np.bincount(chargers.site_index, weights=setpoint, minlength=n_sites)
    assert np.all(net <= fleet["import_limit_kw"] + 1e-6)
    assert np.all(net >= -fleet["export_limit_kw"] - 1e-6)


@PROPERTIES
@given(fleet=fleets_at_a_step(), hold_steps=st.integers(1, 8))
def test_allocation_gives_what_was_asked_when_it_can(
    fleet: dict[str, Any], hold_steps: int
) -> None:
    most = allocate_reduction(reduction_kw=1e9, hold_steps=hold_steps, **fleet).achieved_kw
    half = allocate_reduction(reduction_kw=most / 2, hold_steps=hold_steps, **fleet)
    assert half.achieved_kw == pytest.approx(most / 2, abs=1e-6)


def _event(**size: Any) -> DemandResponseEvent:
    return DemandResponseEvent(
        start=datetime(2025, 7, 16, 18, tzinfo=UTC),
        end=datetime(2025, 7, 16, 19, tzinfo=UTC),
        **size,
    )


def test_event_sizes() -> None:
    assert _event(reduction_kw=40.0).requested_kw(baseline_kw=500.0, plugged=100) == 40.0
    per_vehicle = _event(reduction_kw_per_vehicle=0.5)
    assert per_vehicle.requested_kw(baseline_kw=500.0, plugged=100) == 50.0
    target = _event(target_net_kw=450.0)
    assert target.requested_kw(baseline_kw=500.0, plugged=100) == 50.0
    assert target.requested_kw(baseline_kw=400.0, plugged=100) == 0.0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"reduction_kw": 1.0, "target_net_kw": 0.0}, r"exactly one of .*got 2"),
        ({}, r"exactly one of reduction_kw, reduction_kw_per_vehicle, target_net_kw"),
        ({"reduction_kw": -1.0}, r"reduction_kw must be a finite number >= 0"),
        (
            {"reduction_kw": 1.0, "start": datetime(2025, 7, 16, 18)},  # noqa: DTZ001 - naive on purpose
            r"start must be timezone",
        ),
        (
            {"reduction_kw": 1.0, "end": datetime(2025, 7, 16, 17, tzinfo=UTC)},
            r"end .* must be after start",
        ),
    ],
)
def test_bad_events_are_refused(arguments: dict[str, Any], message: str) -> None:
    times = {
        "start": datetime(2025, 7, 16, 18, tzinfo=UTC),
        "end": datetime(2025, 7, 16, 19, tzinfo=UTC),
    }
    with pytest.raises(ValueError, match=message):
        DemandResponseEvent(**(times | arguments))


# --- in the twin ---------------------------------------------------------------------


def _shenzhen(vehicles: int = 300) -> CityCase:
    scenario = resolve(
        ScenarioFile(
            simulation=SimulationSettings(
                cities=("Shenzhen",), vehicles_per_city=vehicles, planners=("uncontrolled",)
            )
        )
    )
    return synthetic_cases(scenario)[0]


@pytest.fixture(scope="module")
def shenzhen() -> CityCase:
    return _shenzhen()


def _evening(case: CityCase) -> DemandResponseEvent:
    return DEFAULT_DEMAND_RESPONSE.event(
        city=case.city, day=case.grid.start.date(), timezone=case.tariff.timezone
    )


def _run(case: CityCase, planner: str, *events: DemandResponseEvent, **kw: Any) -> SimulationRun:
    service = DemandResponseService(case, events) if events else None
    return Simulator(case, make_planner(planner), demand_response=service, **kw).run()


@pytest.mark.parametrize("planner", ["uncontrolled", "v2g-rules"])
def test_evening_event_delivers_and_sessions_add_up(shenzhen: CityCase, planner: str) -> None:
    event = _evening(shenzhen)
    run = _run(shenzhen, planner, event)
    base = _run(shenzhen, planner)
    (result,) = run.demand_response_events
    metrics = evaluate(run).metrics
    # 18:00-19:00 local is steps 72-75 of the Shenzhen day; 0.5 kW per plugged vehicle.
    assert result.first_step == 72
    np.testing.assert_allclose(result.requested_kw, 0.5 * run.plugged_count[72:76])
    assert result.price_cny_per_kwh == Decimal(5)  # Shenzhen's rate in settlement.toml
    # The baseline is the run without the event.
    np.testing.assert_allclose(result.baseline_kw[0], base.ev_load_kw[72])
    np.testing.assert_allclose(
        result.delivered_kw[0], base.ev_load_kw[72] - run.ev_load_kw[72], atol=1e-9
    )
    assert metrics.dr_events == 1
    assert metrics.dr_requested_kwh == pytest.approx(float(result.requested_kw.sum()) * DT_H)
    assert 0 < metrics.dr_delivered_kwh <= metrics.dr_requested_kwh + 1e-9
    assert float(run.dr_delivered_kwh.sum()) == pytest.approx(metrics.dr_delivered_kwh, abs=1e-6)
    assert np.all(run.dr_delivered_kwh >= 0)
    # No owner leaves with less than without the event, where the target was reached.
    reached = np.minimum(base.energy_final_kwh, shenzhen.fleet.target_energy_kwh)
    assert np.all(run.energy_final_kwh >= reached - 1e-6)
    assert run.site_limit_violations == 0


def test_uncontrolled_charging_answers_the_whole_request(shenzhen: CityCase) -> None:
    # Evening charging at full power has far more to pause than 0.5 kW a vehicle.
    run = _run(shenzhen, "uncontrolled", _evening(shenzhen))
    (result,) = run.demand_response_events
    np.testing.assert_allclose(result.delivered_kw, result.requested_kw, rtol=1e-9)
    assert result.delivered_kwh == pytest.approx(result.requested_kwh)


def test_target_net_load_event(shenzhen: CityCase) -> None:
    base = _run(shenzhen, "uncontrolled")
    target = float(base.ev_load_kw[72:76].min()) - 100.0
    event = replace(_evening(shenzhen), reduction_kw_per_vehicle=None, target_net_kw=target)
    run = _run(shenzhen, "uncontrolled", event)
    np.testing.assert_allclose(run.ev_load_kw[72:76], target, rtol=1e-9)


def test_without_events_nothing_changes(shenzhen: CityCase) -> None:
    plain = _run(shenzhen, "v2g-rules")
    elsewhere = replace(_evening(shenzhen), city="Kunming")
    service = DemandResponseService(shenzhen, [elsewhere])
    other = Simulator(shenzhen, make_planner("v2g-rules"), demand_response=service).run()
    for run in (plain, other):
        np.testing.assert_array_equal(run.energy_final_kwh, plain.energy_final_kwh)
        np.testing.assert_array_equal(run.ev_load_kw, plain.ev_load_kw)
        assert run.demand_response_events == ()
        np.testing.assert_array_equal(run.dr_delivered_kwh, np.zeros(shenzhen.fleet.n_sessions))
        metrics = evaluate(run).metrics
        assert (metrics.dr_events, metrics.dr_requested_kwh, metrics.dr_delivered_kwh) == (0, 0, 0)


class _Recording:
    """A planner that notes the steps it is called at."""

    name = "recording"

    def __init__(self) -> None:
        self.inner = make_planner("tou")
        self.starts: list[datetime] = []

    def plan(self, problem: Problem) -> Schedule:
        self.starts.append(problem.grid.start)
        return self.inner.plan(problem)


def test_the_engine_plans_again_right_after_an_event(shenzhen: CityCase) -> None:
    zone = shenzhen.grid.start.tzinfo
    day = shenzhen.grid.start
    event = DemandResponseEvent(
        start=day.replace(hour=18, minute=15, tzinfo=zone),
        end=day.replace(hour=18, minute=45, tzinfo=zone),
        reduction_kw=50.0,
    )
    planner = _Recording()
    service = DemandResponseService(shenzhen, [event])
    Simulator(
        shenzhen, planner, control_steps=4, replan_on_arrival=False, demand_response=service
    ).run()
    planned_at = {(t - day) // timedelta(minutes=15) for t in planner.starts}
    # Hourly control: steps 72 and 76 plan anyway; the event's steps (73, 74) plan from the
    # actual energies, and step 75, the first after it, plans again.
    assert {72, 73, 74, 75, 76} <= planned_at
    assert 77 not in planned_at


def test_regulation_follows_around_the_response(shenzhen: CityCase) -> None:
    follower = RegulationFollower(
        shenzhen.grid, timezone=shenzhen.tariff.timezone, offer=RegulationOffer(hours=(18,))
    )
    run = _run(shenzhen, "v2g-rules", _evening(shenzhen), regulation=follower)
    (result,) = run.demand_response_events
    assert len(run.regulation_hours) == 1
    assert run.site_limit_violations == 0
    assert float(run.dr_delivered_kwh.sum()) == pytest.approx(result.delivered_kwh, abs=1e-6)


def test_events_that_overlap_in_a_city_are_refused(shenzhen: CityCase) -> None:
    event = _evening(shenzhen)
    later = replace(event, start=event.start + timedelta(minutes=30), end=event.end + timedelta(1))
    with pytest.raises(ValueError, match="demand-response events overlap in Shenzhen"):
        DemandResponseService(shenzhen, [event, later])


@TWIN_PROPERTIES
@given(
    case=cases(limited_sites=False),
    first=st.integers(0, 40),
    steps=st.integers(1, 12),
    per_vehicle_kw=st.floats(0.0, 30.0),
)
def test_no_owner_ends_short_because_of_an_event(
    case: CityCase, first: int, steps: int, per_vehicle_kw: float
) -> None:
    event = DemandResponseEvent(
        start=START + timedelta(minutes=15 * first),
        end=START + timedelta(minutes=15 * (first + steps)),
        reduction_kw_per_vehicle=per_vehicle_kw,
    )
    run = _run(case, "uncontrolled", event)
    base = _run(case, "uncontrolled")
    fleet = case.fleet
    reached = np.minimum(base.energy_final_kwh, fleet.target_energy_kwh)
    assert np.all(run.energy_final_kwh >= reached - 1e-6)
    assert np.all(run.energy_final_kwh >= fleet.energy_min_kwh - 1e-9)
    assert np.all(run.energy_final_kwh <= fleet.energy_max_kwh + 1e-9)
    total = sum(r.delivered_kwh for r in run.demand_response_events)
    assert float(run.dr_delivered_kwh.sum()) == pytest.approx(total, abs=1e-6)
    for result in run.demand_response_events:
        assert result.delivered_kwh <= result.requested_kwh + 1e-9


@TWIN_PROPERTIES
@given(case=cases(limited_sites=True), first=st.integers(0, 40), size_kw=st.floats(0.0, 500.0))
def test_an_event_never_breaks_a_site_limit(case: CityCase, first: int, size_kw: float) -> None:
    event = DemandResponseEvent(
        start=START + timedelta(minutes=15 * first),
        end=START + timedelta(minutes=15 * (first + 4)),
        reduction_kw=size_kw,
    )
    for planner in ("uncontrolled", "v2g-rules"):
        run = _run(case, planner, event)
        assert run.site_limit_violations == 0
        assert np.all(run.dr_delivered_kwh >= 0)


# --- scenario files and the command line ---------------------------------------------

EVENT = '[[demand_response]]\nstart = "18:00"\nend = "19:00"\n'


TWO_CITIES = '[simulation]\ncities = ["Shenzhen", "Kunming"]\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            EVENT + "reduction_kw = 5\nsize = 3\n",
            r"field demand_response.0.size: Extra inputs are not permitted",
        ),
        (
            '[[demand_response]]\nstart = "19:00"\nend = "18:00"\nreduction_kw = 5\n',
            r"field demand_response.0.end: end must be after start \(19:00\)",
        ),
        (
            '[[demand_response]]\nstart = "2025-07-16T18:00+08:00"\n'
            'end = "2025-07-16T18:00+08:00"\nreduction_kw = 5\n',
            r"field demand_response.0.end: end must be after start",
        ),
        (
            '[[demand_response]]\nstart = "18:00"\nend = "2025-07-16T19:00"\nreduction_kw = 5\n',
            r"field demand_response.0.end: start and end must both be local times",
        ),
        (
            '[[demand_response]]\nstart = "6pm"\nend = "19:00"\nreduction_kw = 5\n',
            r"field demand_response.0.start: must be a local time HH:MM or an ISO 8601",
        ),
        (
            EVENT + "reduction_kw = -5\n",
            r"field demand_response.0.reduction_kw: .*greater than or equal to 0 \(got -5\)",
        ),
        (
            EVENT + "reduction_kw_per_vehicle = -0.5\n",
            r"field demand_response.0.reduction_kw_per_vehicle: .*greater than or equal to 0",
        ),
        (
            EVENT + "reduction_kw = 5\ntarget_net_kw = 100\n",
            r"field demand_response.0: give exactly one of reduction_kw, "
            r"reduction_kw_per_vehicle, target_net_kw; got 2",
        ),
        (EVENT, r"field demand_response.0: give exactly one of"),
        (
            EVENT + 'reduction_kw = 5\nprice_cny_per_kwh = "-1"\n',
            r"field demand_response.0.price_cny_per_kwh: .*greater than or equal to 0",
        ),
        (
            EVENT + 'reduction_kw = 5\ncity = "Atlantis"\n',
            r"field demand_response.0.city: city 'Atlantis' is not simulated",
        ),
        (
            EVENT + "reduction_kw = 5\n" + EVENT.replace("18:00", "18:30") + "reduction_kw = 1\n",
            r"field demand_response.1: overlaps demand_response.0 in Shenzhen",
        ),
    ],
)
def test_bad_events_in_a_scenario_name_file_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    refused(tmp_path, TWO_CITIES + text, message)


def test_scenario_events_in_local_time_and_absolute(tmp_path: Path) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text(
        TWO_CITIES
        + EVENT
        + 'reduction_kw_per_vehicle = 0.5\nprice_cny_per_kwh = "3.2"\n'
        + '[[demand_response]]\ncity = "Kunming"\nstart = 2025-07-16T20:00:00+08:00\n'
        + "end = 2025-07-16T20:30:00+08:00\ntarget_net_kw = 0\n"
        + '[[demand_response]]\ncity = "Shenzhen"\nstart = 2025-07-16T21:00:00\n'
        + "end = 2025-07-16T22:00:00\nreduction_kw = 100\n",
        encoding="utf-8",
    )
    scenario = load_scenario(path)
    day = scenario.simulation.date
    shenzhen = scenario.demand_response_events("Shenzhen", day)
    kunming = scenario.demand_response_events("Kunming", day)
    assert [e.start.isoformat() for e in shenzhen] == [
        "2025-07-16T18:00:00+08:00",
        "2025-07-16T21:00:00+08:00",
    ]
    assert shenzhen[0].price_cny_per_kwh == Decimal("3.2")
    assert shenzhen[1].reduction_kw == 100.0
    assert [e.target_net_kw for e in kunming] == [None, 0.0]
    assert kunming[1].end - kunming[1].start == timedelta(minutes=30)
    assert scenario.demand_response[0].start == time(18)


def _simulate(out: Path, *extra: str) -> int:
    return main(["simulate", "--quiet", "--out", str(out), *extra])


def _city(out: Path, planner: str = "uncontrolled", city: str = "Shenzhen") -> dict[str, Any]:
    document = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return dict(document["planners"][planner]["cities"][city])


SMALL = ("--vehicles", "300", "--cities", "Shenzhen", "--planners", "uncontrolled")


def test_cli_default_event_and_scenario_events(tmp_path: Path) -> None:
    assert _simulate(tmp_path / "plain", *SMALL) == 0
    plain = _city(tmp_path / "plain")
    assert (plain["dr_events"], plain["dr_requested_kwh"], plain["dr_delivered_kwh"]) == (0, 0, 0)

    assert _simulate(tmp_path / "dr", *SMALL, "--demand-response") == 0
    city = _city(tmp_path / "dr")
    assert city["dr_events"] == 1
    assert city["dr_delivered_kwh"] == pytest.approx(city["dr_requested_kwh"])
    assert city["dr_delivered_kwh"] > 0

    # A scenario's events replace the default one.
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(
        '[[demand_response]]\nstart = "19:00"\nend = "19:30"\nreduction_kw = 40\n',
        encoding="utf-8",
    )
    out = tmp_path / "scenario"
    assert _simulate(out, *SMALL, "--scenario", str(scenario), "--demand-response") == 0
    city = _city(out)
    assert city["dr_events"] == 1
    assert city["dr_requested_kwh"] == pytest.approx(40 * 0.5)
