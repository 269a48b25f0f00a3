"""The live control loop: the problem it builds from the store, planning with a fallback,
the setpoints it sends, and the loop itself (with an in-test store standing for the
database)."""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from v2ghub.live.control import (
    ControlLoop,
    SetpointCommand,
    respect_minimums,
    round_within_sites,
    setpoint_commands,
    with_grid_limits,
)
from v2ghub.live.live_problem import ControlSettings, LiveProblem, LiveSite, build_problem, plan
from v2ghub.live.outcomes import ACCEPTED, SendOutcome, answered
from v2ghub.model.problem import Problem, Schedule
from v2ghub.planning import make_planner
from v2ghub.planning.limits import fit_site_limits
from v2ghub.store.records import Event, OcppVersion, PluggedSession, Setpoint
from v2ghub.store.site_power import SitePowerRecord

SHENZHEN = ZoneInfo("Asia/Shanghai")
PEAK = datetime(2025, 7, 16, 16, 5, tzinfo=SHENZHEN)  # 16:00-17:00 is a critical peak in July
VALLEY = datetime(2025, 7, 16, 3, 0, tzinfo=SHENZHEN)  # 0:00-8:00 is the valley
BASE_CNY_PER_KWH = 0.65  # Shenzhen's flat price (data/cities.toml)
DISCHARGE_BASE_CNY_PER_KWH = 0.453  # Guangdong: 0.453 CNY/kWh x the TOU ratio
SETTINGS = ControlSettings(city="Shenzhen", sites=(LiveSite("a", 100.0, 50.0),))
V21, V201 = OcppVersion.V21, OcppVersion.V201


def session(number: int, now: datetime, **changes: Any) -> PluggedSession:
    """A 60 kWh vehicle at 7 kW both ways, half full, leaving in 14 hours."""
    values: dict[str, Any] = {
        "station_id": f"st{number}",
        "evse_id": 1,
        "transaction_id": f"tx{number}",
        "site_id": "a",
        "ocpp_version": V21,
        "started_at": now - timedelta(hours=1),
        "departure_at": now + timedelta(hours=14),
        "battery_kwh": 60.0,
        "energy_kwh": 30.0,
        "target_energy_kwh": 54.0,
        "min_energy_kwh": 12.0,
        "max_charge_kw": 7.0,
        "max_discharge_kw": 7.0,
        "import_register_wh": 0,
        "export_register_wh": 0,
        "last_meter_at": None,
    }
    if changes.get("ocpp_version") is V201 and "max_discharge_kw" not in changes:
        values["max_discharge_kw"] = 0.0  # as the store gives a 2.0.1 station not configured
    values.update(changes)
    return PluggedSession(**values)


def first_setpoints(live: LiveProblem, planner: str) -> list[float]:
    schedule = plan(live, make_planner(planner), timeout_s=60)
    assert schedule.fallback_reason is None
    return [c.setpoint_kw for c in setpoint_commands(live, schedule)]


# --- build_problem -----------------------------------------------------------------------


def test_a_vehicle_without_needs_but_with_a_metered_soc_is_planned_from_it() -> None:
    """A 1.6 vehicle sends no needs; its meter values carry its SoC: 60 % of the assumed
    60 kWh is 36 kWh, and (unlike a vehicle nothing is known of) it may give power back."""
    unknown: dict[str, Any] = {
        "ocpp_version": OcppVersion.V16,
        "departure_at": None,
        "battery_kwh": None,
        "energy_kwh": None,
        "target_energy_kwh": None,
        "min_energy_kwh": None,
    }
    sessions = [session(1, PEAK, soc=0.6, **unknown), session(2, PEAK, **unknown)]
    live = build_problem(sessions, now=PEAK.astimezone(UTC), settings=SETTINGS)
    assert live.problem.energy_kwh.tolist() == pytest.approx([36.0, 12.0])
    assert live.problem.max_discharge_kw.tolist() == [7.0, 0.0]
    assert "1 session(s) without needs but with a metered SoC (first st1/1)" in " ".join(live.notes)
    assert "1 session(s) without stored energy (first st2/1)" in " ".join(live.notes)


def test_build_problem_by_hand() -> None:
    sessions = [
        session(1, PEAK, departure_at=PEAK + timedelta(hours=2, minutes=37)),
        session(
            2,
            PEAK,
            ocpp_version=V201,
            departure_at=None,  # 8 h after plug-in: 7 h = 28 steps from now
            battery_kwh=None,  # 60 kWh
            energy_kwh=None,  # 20 % of it, no discharge
            target_energy_kwh=None,  # 90 %
            min_energy_kwh=None,  # 20 %
            max_charge_kw=11.0,
            max_discharge_kw=11.0,
        ),
        session(
            3,
            PEAK,
            site_id="z",
            departure_at=PEAK - timedelta(minutes=10),
            battery_kwh=40.0,
            energy_kwh=50.0,  # more than the battery says: the window stretches
            target_energy_kwh=45.0,
            min_energy_kwh=30.0,
            max_discharge_kw=0.0,
        ),
    ]
    live = build_problem(sessions, now=PEAK.astimezone(UTC), settings=SETTINGS)
    p = live.problem
    assert p.grid.start == PEAK
    assert p.grid.start.utcoffset() == timedelta(hours=8)
    assert (p.grid.length, p.dt_h, p.control_steps) == (28, 0.25, 1)
    assert p.departure_step.tolist() == [10, 28, 1]  # floor(157 / 15) = 10
    assert p.arrival_step.tolist() == [0, 0, 0]
    assert p.energy_kwh.tolist() == [30.0, 12.0, 50.0]
    assert p.energy_min_kwh.tolist() == [12.0, 12.0, 30.0]
    assert p.energy_max_kwh.tolist() == [60.0, 60.0, 50.0]
    assert p.target_energy_kwh.tolist() == pytest.approx([54.0, 54.0, 45.0])
    assert p.max_charge_kw.tolist() == [7.0, 11.0, 7.0]
    assert p.max_discharge_kw.tolist() == [7.0, 0.0, 0.0]  # 2.0.1 never discharges
    assert p.charge_efficiency.tolist() == [0.92] * 3
    assert p.site_index.tolist() == [0, 0, 1]
    assert live.site_ids == ("a", "z")
    assert p.import_limit_kw.tolist() == [100.0, math.inf]
    assert p.export_limit_kw.tolist() == [50.0, 0.0]
    assert p.degradation_cny_per_kwh == 0.2
    # 16:05-17:05 critical peak, 17:05-19:05 peak, then flat (local time).
    assert p.period_kind[[0, 3, 4, 11, 12]].tolist() == [3, 3, 2, 2, 1]
    assert p.import_price_cny_per_kwh[[0, 4, 12]] == pytest.approx(
        [BASE_CNY_PER_KWH * 2.125, BASE_CNY_PER_KWH * 1.7, BASE_CNY_PER_KWH]
    )
    assert p.export_price_cny_per_kwh[0] == pytest.approx(DISCHARGE_BASE_CNY_PER_KWH * 2.125)
    assert [r.station_id for r in live.rows] == ["st1", "st2", "st3"]
    assert live.rows[1].ocpp_version is V201
    assert live.notes == (
        "1 session(s) without a departure time (first st2/1): leave 8 h after plug-in",
        "1 session(s) past or within a step of departure (first st3/1): planned for one step",
        "1 session(s) without a battery size (first st2/1): 60 kWh",
        "1 session(s) without stored energy (first st2/1): 20% of the battery, no discharge",
        "1 session(s) without a minimum energy (first st2/1): 20% of the battery",
        "1 session(s) without a target energy (first st2/1): 90% of the battery",
        "site 'z' is not configured: import limit inf kW, export limit 0 kW",
    )


def test_valley_prices_and_an_empty_problem() -> None:
    live = build_problem([session(1, VALLEY)], now=VALLEY, settings=SETTINGS)
    p = live.problem
    assert p.period_kind[0] == 0
    assert p.import_price_cny_per_kwh[0] == pytest.approx(BASE_CNY_PER_KWH * 0.38)
    assert p.export_price_cny_per_kwh[0] == pytest.approx(DISCHARGE_BASE_CNY_PER_KWH * 0.38)
    assert p.departure_step.tolist() == [56]  # 14 h
    assert live.notes == ()
    empty = build_problem([], now=VALLEY, settings=SETTINGS)
    assert (empty.problem.n_vehicles, empty.problem.grid.length) == (0, 1)
    assert plan(empty, make_planner("lp"), timeout_s=1).power_kw.shape == (0, 1)
    assert setpoint_commands(empty, Schedule(np.zeros((0, 1)), "lp")) == []


def test_settings_and_now_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown city 'Atlantis'"):
        ControlSettings(city="Atlantis", sites=())
    with pytest.raises(ValueError, match="site 'a': import_limit_kw must be >= 0, got -1"):
        LiveSite("a", -1.0)
    with pytest.raises(ValueError, match="site ids must be unique"):
        ControlSettings(city="Shenzhen", sites=(LiveSite("a", 1.0), LiveSite("a", 2.0)))
    with pytest.raises(
        ValueError, match=re.escape("default_target_soc must be within 0-1, got 1.5")
    ):
        ControlSettings(city="Shenzhen", sites=(), default_target_soc=1.5)
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        build_problem([], now=datetime(2025, 7, 16), settings=SETTINGS)  # noqa: DTZ001


# --- planning: peak discharge, valley charge ---------------------------------------------


@pytest.mark.parametrize("planner", ["v2g-rules", "lp"])
def test_peak_discharges_v2x_but_not_a_plain_201_station(planner: str) -> None:
    full = {"energy_kwh": 50.0, "target_energy_kwh": 48.0}
    sessions = [
        session(1, PEAK, **full),
        session(2, PEAK, ocpp_version=V201, **full),
        # A 2.0.1 station configured for discharge: the store gives it the station's power.
        session(3, PEAK, ocpp_version=V201, max_discharge_kw=7.0, **full),
    ]
    live = build_problem(sessions, now=PEAK, settings=SETTINGS)
    v21_kw, v201_kw, configured_kw = first_setpoints(live, planner)
    assert v21_kw == -7.0
    assert v201_kw == 0.0
    assert configured_kw == -7.0


@pytest.mark.parametrize("planner", ["v2g-rules", "lp"])
def test_valley_charges(planner: str) -> None:
    sessions = [session(1, VALLEY, departure_at=VALLEY + timedelta(hours=4))]
    live = build_problem(sessions, now=VALLEY, settings=SETTINGS)
    (kw,) = first_setpoints(live, planner)
    assert kw > 0


# --- fallback ----------------------------------------------------------------------------


class Failing:
    name = "boom"

    def plan(self, problem: Problem) -> Schedule:
        raise RuntimeError("solver exploded")


class Blocking:
    """Waits until released: a planner that outlives its timeout."""

    name = "slow"

    def __init__(self) -> None:
        self.release = threading.Event()

    def plan(self, problem: Problem) -> Schedule:
        self.release.wait(10)
        return Schedule(np.zeros((problem.n_vehicles, 1)), self.name)


class Fixed:
    """Returns the same first-step powers whatever the problem."""

    name = "fixed"

    def __init__(self, power_kw: list[float]) -> None:
        self.power_kw = power_kw

    def plan(self, problem: Problem) -> Schedule:
        return Schedule(np.array(self.power_kw)[:, None], self.name)


def two_vehicles(import_limit_kw: float = 100.0) -> LiveProblem:
    settings = replace(SETTINGS, sites=(LiveSite("a", import_limit_kw, 0.0),))
    return build_problem([session(1, PEAK), session(2, PEAK)], now=PEAK, settings=settings)


BROKE = "planner 'fixed' broke a guarantee: "


@pytest.mark.parametrize(
    ("planner", "reason"),
    [
        (Failing(), "planner 'boom' failed: RuntimeError: solver exploded"),
        (
            Fixed([50.0, 0.0]),
            BROKE + "asked st1/1 for 50.000 kW, above its charging limit 7 kW; "
            "planned 50.000 kW at site 'a', beyond its import limit 10 kW",
        ),
        (
            Fixed([0.0, -7.5]),
            BROKE + "asked st2/1 for -7.500 kW, beyond its discharging limit 7 kW; "
            "planned -7.500 kW at site 'a', beyond its export limit 0 kW",
        ),
        (
            Fixed([7.0, 7.0]),
            BROKE + "planned 14.000 kW at site 'a', beyond its import limit 10 kW",
        ),
        (Fixed([math.nan, 0.0]), BROKE + "returned non-finite power for st1/1"),
        (Fixed([1.0]), BROKE + "returned power of shape (1, 1), expected (2, >=1)"),
    ],
)
def test_fallback_says_why(planner: Any, reason: str) -> None:
    live = two_vehicles(import_limit_kw=10.0)
    schedule = plan(live, planner, timeout_s=5)
    assert schedule.planner == "safe-fallback"
    assert schedule.fallback_reason == reason + "; charge-only within site limits"
    assert schedule.power_kw[:, 0].tolist() == pytest.approx([5.0, 5.0])  # 10 kW shared


def test_timeout_falls_back_and_a_busy_planner_is_not_restarted() -> None:
    live = two_vehicles()
    slow = Blocking()
    busy = threading.Lock()
    try:
        first = plan(live, slow, timeout_s=0.05, busy=busy)
        assert first.fallback_reason == (
            "planner 'slow' timed out after 0.05 s; charge-only within site limits"
        )
        second = plan(live, slow, timeout_s=5, busy=busy)
        assert second.fallback_reason == (
            "planner 'slow' is still running an earlier plan; charge-only within site limits"
        )
    finally:
        slow.release.set()
    deadline = time.monotonic() + 5
    while busy.locked() and time.monotonic() < deadline:
        time.sleep(0.01)
    third = plan(live, slow, timeout_s=5, busy=busy)
    assert third.fallback_reason is None
    assert third.planner == "slow"


# --- commands ----------------------------------------------------------------------------


def test_commands_clip_fit_and_round() -> None:
    sessions = [
        session(1, PEAK),
        session(2, PEAK, ocpp_version=V201),
        session(3, PEAK, max_discharge_kw=0.0),
        session(4, PEAK, site_id="b", max_charge_kw=6.66),
    ]
    settings = replace(SETTINGS, sites=(LiveSite("a", 10.0, 3.0), LiveSite("b", 10.0, 0.0)))
    live = build_problem(sessions, now=PEAK, settings=settings)
    # st2 (2.0.1) and st3 (no V2G) are asked to discharge: they get 0; st1's 6.98 kW
    # discharge is cut to site a's 3 kW export limit; st4's 6.66 kW is rounded down.
    schedule = Schedule(np.array([[-6.98], [-3.0], [-2.0], [6.66]]), "fixed")
    commands = setpoint_commands(live, schedule)
    assert [c.setpoint_kw for c in commands] == [-3.0, 0.0, 0.0, 6.6]
    assert commands[0] == SetpointCommand(
        station_id="st1",
        evse_id=1,
        transaction_id="tx1",
        ocpp_version=V21,
        site_id="a",
        setpoint_kw=-3.0,
        charge_limit_kw=7.0,
        discharge_limit_kw=7.0,
        planner="fixed",
    )
    assert [c.discharge_limit_kw for c in commands] == [7.0, 0.0, 0.0, 7.0]
    assert commands[3].site_id == "b"


def test_rounding_keeps_the_export_limit() -> None:
    # Rounded down, the site would export 3.1 kW; the first vehicle is raised by 0.1 kW.
    rounded = round_within_sites(
        np.array([-1.47, -1.49, -0.04]),
        lower_kw=np.full(3, -7.0),
        upper_kw=np.full(3, 7.0),
        site_index=np.zeros(3, dtype=np.int64),
        import_limit_kw=np.array([0.0]),
        export_limit_kw=np.array([3.0]),
        resolution_kw=0.1,
    )
    assert rounded.tolist() == pytest.approx([-1.4, -1.5, -0.1], abs=1e-12)
    # At a vehicle's own limit the value is kept exactly.
    at_limit = round_within_sites(
        np.array([-6.66, 6.66]),
        lower_kw=np.array([-6.66, 0.0]),
        upper_kw=np.array([7.0, 6.66]),
        site_index=np.zeros(2, dtype=np.int64),
        import_limit_kw=np.array([math.inf]),
        export_limit_kw=np.array([math.inf]),
        resolution_kw=0.1,
    )
    assert at_limit.tolist() == [-6.66, 6.6]


sessions_strategy = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(list(OcppVersion)),
        st.floats(0.0, 22.0),  # max_charge_kw
        st.floats(0.0, 22.0),  # max_discharge_kw
        st.floats(-1.0, 30.0),  # departure, hours from now
        st.one_of(st.none(), st.floats(0.0, 80.0)),  # energy_kwh
        st.one_of(st.none(), st.floats(0.0, 80.0)),  # target_energy_kwh
    ),
    min_size=1,
    max_size=12,
)
site_limit = st.one_of(st.just(0.0), st.just(math.inf), st.floats(0.0, 60.0))


def random_problem(rows: list[tuple[Any, ...]], limits: list[float]) -> LiveProblem:
    sites = tuple(LiveSite(site, limits[2 * i], limits[2 * i + 1]) for i, site in enumerate("abc"))
    sessions = [
        session(
            i,
            PEAK,
            site_id=site,
            ocpp_version=version,
            max_charge_kw=charge,
            max_discharge_kw=discharge,
            departure_at=PEAK + timedelta(hours=hours),
            energy_kwh=energy,
            target_energy_kwh=target,
        )
        for i, (site, version, charge, discharge, hours, energy, target) in enumerate(rows)
    ]
    return build_problem(sessions, now=PEAK, settings=replace(SETTINGS, sites=sites))


def check_commands(live: LiveProblem, commands: list[SetpointCommand]) -> None:
    p = live.problem
    power = np.array([c.setpoint_kw for c in commands])
    charge_only = p.max_discharge_kw[: len(commands)] == 0
    assert np.all(power <= p.max_charge_kw)
    assert np.all(power >= -p.max_discharge_kw)
    assert np.all(power[charge_only] >= 0)
    site_kw = np.bincount(p.site_index, weights=power, minlength=p.import_limit_kw.size)
    assert np.all(site_kw <= p.import_limit_kw + 1e-6)
    assert np.all(site_kw >= -p.export_limit_kw - 1e-6)
    # On the 0.1 kW grid or at a vehicle's limit, but for at most one vehicle per site.
    on_grid = np.isclose(power * 10, np.round(power * 10), atol=1e-6, rtol=0)
    at_limit = (power == p.max_charge_kw) | (power == -p.max_discharge_kw)
    off = np.bincount(p.site_index, weights=~(on_grid | at_limit), minlength=site_kw.size)
    assert np.all(off <= 1)


PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(
    rows=sessions_strategy,
    limits=st.lists(site_limit, min_size=6, max_size=6),
    data=st.data(),
)
def test_commands_keep_every_limit_whatever_the_schedule(
    rows: list[tuple[Any, ...]], limits: list[float], data: st.DataObject
) -> None:
    live = random_problem(rows, limits)
    power = data.draw(
        st.lists(st.floats(-40.0, 40.0), min_size=len(rows), max_size=len(rows)), label="power"
    )
    commands = setpoint_commands(live, Schedule(np.array(power)[:, None], "random"))
    check_commands(live, commands)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=sessions_strategy, limits=st.lists(site_limit, min_size=6, max_size=6))
def test_planned_commands_keep_every_limit(
    rows: list[tuple[Any, ...]], limits: list[float]
) -> None:
    live = random_problem(rows, limits)
    schedule = plan(live, make_planner("v2g-rules"), timeout_s=30)
    assert schedule.fallback_reason is None
    check_commands(live, setpoint_commands(live, schedule))


# --- the loop ----------------------------------------------------------------------------


class MemoryStore:
    """Stands for the database: plugged sessions in, setpoints and events out."""

    def __init__(self, sessions: list[PluggedSession]) -> None:
        self.sessions = sessions
        self.setpoints: list[Setpoint] = []
        self.events: list[Event] = []
        self.reads = 0
        self.grid_limits: dict[str, tuple[float, float]] = {}
        self.site_power: list[SitePowerRecord] = []

    def plugged(self, now: datetime) -> list[PluggedSession]:
        self.reads += 1
        return list(self.sessions)

    def record_setpoints(self, setpoints: Sequence[Setpoint]) -> None:
        self.setpoints.extend(setpoints)

    def record_site_power(self, records: Sequence[SitePowerRecord]) -> None:
        self.site_power.extend(records)

    def record_event(self, event: Event) -> None:
        self.events.append(event)

    def site_limits(self, now: datetime) -> dict[str, tuple[float, float]]:
        return dict(self.grid_limits)


class StoppedClock:
    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at

    def seconds(self, simulated_s: float) -> float:
        return simulated_s


def answers(rejected: str = "st2") -> Callable[[SetpointCommand], Awaitable[SendOutcome]]:
    async def send(command: SetpointCommand) -> SendOutcome:
        if command.station_id == "st3":
            raise ConnectionError("socket closed")
        return answered("Rejected") if command.station_id == rejected else ACCEPTED

    return send


def test_run_once_sends_records_and_resends_only_what_is_due() -> None:
    now = PEAK.astimezone(UTC)
    store = MemoryStore([session(1, PEAK), session(2, PEAK), session(3, PEAK, energy_kwh=None)])
    clock = StoppedClock(now)
    loop = ControlLoop(
        store=store,
        planner=make_planner("uncontrolled"),
        settings=SETTINGS,
        clock=clock,
        send=answers(),
    )
    sent = asyncio.run(loop.run_once())
    assert [(s.station_id, s.setpoint_kw, s.status) for s in sent] == [
        ("st1", 7.0, "Accepted"),
        ("st2", 7.0, "Rejected"),
        ("st3", 7.0, "Error: ConnectionError: socket closed"),
    ]
    assert store.setpoints == sent
    assert all(s.sent_at == now and s.planner == "uncontrolled" for s in sent)
    assert [(e.kind, e.station_id, e.detail) for e in store.events] == [
        (
            "assumed",
            None,
            "1 session(s) without stored energy (first st3/1): 20% of the battery, no discharge",
        ),
        ("setpoint-not-accepted", "st2", "EVSE 1 transaction tx2: 7 kW answered Rejected"),
        (
            "setpoint-not-accepted",
            "st3",
            "EVSE 1 transaction tx3: 7 kW answered Error: ConnectionError: socket closed",
        ),
    ]
    # A minute later nothing changed: only the unanswered are sent again.
    clock.at = now + timedelta(minutes=1)
    again = asyncio.run(loop.run_once())
    assert [s.station_id for s in again] == ["st2", "st3"]
    assert len(store.events) == 5  # the same notes are not recorded twice
    # After the refresh period every setpoint goes out again.
    clock.at = now + timedelta(seconds=SETTINGS.refresh_s)
    assert [s.station_id for s in asyncio.run(loop.run_once())] == ["st1", "st2", "st3"]


def test_run_once_records_a_planner_fallback() -> None:
    store = MemoryStore([session(1, PEAK)])
    loop = ControlLoop(
        store=store, planner=Failing(), settings=SETTINGS, clock=StoppedClock(PEAK), send=answers()
    )
    (setpoint,) = asyncio.run(loop.run_once())
    reason = "planner 'boom' failed: RuntimeError: solver exploded; charge-only within site limits"
    assert (setpoint.planner, setpoint.fallback_reason, setpoint.setpoint_kw) == (
        "safe-fallback",
        reason,
        7.0,
    )
    assert [(e.kind, e.detail) for e in store.events] == [("planner-fallback", reason)]


def test_a_slow_station_does_not_hold_up_the_next_plan() -> None:
    store = MemoryStore([session(1, PEAK), session(2, PEAK)])
    released = asyncio.Event()
    sends: list[str] = []

    async def send(command: SetpointCommand) -> SendOutcome:
        sends.append(command.station_id)
        if command.station_id == "st2":
            await released.wait()  # st2 answers only when released
        return ACCEPTED

    async def scenario() -> None:
        loop = ControlLoop(
            store=store,
            planner=make_planner("uncontrolled"),
            settings=replace(SETTINGS, send_wait_s=0.05),
            clock=StoppedClock(PEAK),
            send=send,
        )
        first = await loop.run_once()
        assert [s.station_id for s in first] == ["st1"]  # st2 still owes its answer
        second = await loop.run_once()
        assert second == []  # st2 is not sent again while its answer is pending
        released.set()
        await asyncio.sleep(0.01)
        third = await loop.run_once()
        assert [(s.station_id, s.status) for s in third] == [("st2", "Accepted")]

    asyncio.run(scenario())
    assert sends == ["st1", "st2"]
    assert [s.station_id for s in store.setpoints] == ["st1", "st2"]


class Scripted:
    """Plans the first step as told (kW per vehicle, in the problem's order)."""

    name = "scripted"

    def __init__(self, first_kw: list[float]) -> None:
        self.first_kw = first_kw

    def plan(self, problem: Problem) -> Schedule:
        power_kw = np.zeros((problem.n_vehicles, problem.grid.length))
        power_kw[:, 0] = self.first_kw
        return Schedule(power_kw=power_kw, planner=self.name)


def test_room_is_made_before_power_moves_to_another_evse() -> None:
    """7 kW moves from st1 to st2 (the site takes 10): st1 is told to fall first, and st2
    to rise only once st1 accepted; had st1 refused, st2 would wait for the next instant."""
    store = MemoryStore([session(1, PEAK), session(2, PEAK)])
    planner = Scripted([7.0, 0.0])
    order: list[tuple[str, float | str]] = []
    refuse = {"st1": False}

    async def send(command: SetpointCommand) -> SendOutcome:
        order.append((command.station_id, command.setpoint_kw))
        await asyncio.sleep(0.01 if command.station_id == "st1" else 0.0)
        order.append((command.station_id, "answered"))
        return answered("Rejected") if command.station_id == "st1" and refuse["st1"] else ACCEPTED

    settings = replace(SETTINGS, sites=(LiveSite("a", 10.0, 0.0),))
    loop = ControlLoop(
        store=store, planner=planner, settings=settings, clock=StoppedClock(PEAK), send=send
    )
    asyncio.run(loop.run_once())
    # Nothing in force yet: all at once.
    assert order == [("st1", 7.0), ("st2", 0.0), ("st2", "answered"), ("st1", "answered")]
    planner.first_kw = [0.0, 7.0]
    order.clear()
    asyncio.run(loop.run_once())
    assert order == [("st1", 0.0), ("st1", "answered"), ("st2", 7.0), ("st2", "answered")]
    # A fall refused holds the rise back (it goes out at a later instant).
    planner.first_kw = [7.0, 0.0]
    asyncio.run(loop.run_once())
    planner.first_kw = [0.0, 7.0]
    order.clear()
    refuse["st1"] = True
    sent = asyncio.run(loop.run_once())
    assert order == [("st1", 0.0), ("st1", "answered")]
    assert [(s.station_id, s.status) for s in sent] == [("st1", "Rejected")]


def test_triggers_are_debounced_into_one_plan() -> None:
    store = MemoryStore([session(1, PEAK)])
    settings = replace(SETTINGS, control_interval_s=3600.0, debounce_s=0.5)

    async def scenario() -> None:
        loop = ControlLoop(
            store=store,
            planner=make_planner("tou"),
            settings=settings,
            clock=StoppedClock(PEAK),
            send=answers(),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(loop.run(stop))
        await until(lambda: store.reads == 1)
        store.sessions.append(session(4, PEAK))  # a vehicle plugs in
        for _ in range(5):
            loop.trigger("EV charging needs")
            await asyncio.sleep(0.005)
        await until(lambda: any(s.station_id == "st4" for s in store.setpoints))
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(task, 5)
        assert store.reads == 2  # five triggers, one plan; the interval has not passed

    asyncio.run(scenario())


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait for ``condition``; fail after ``timeout_s`` (a new vehicle's 5 s promise)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "not within 5 s"
        await asyncio.sleep(0.01)


def test_a_grid_event_replaces_the_site_limits_and_re_plans_at_once() -> None:
    full = {"energy_kwh": 50.0, "target_energy_kwh": 48.0}
    store = MemoryStore([session(1, PEAK, **full)])
    settings = replace(SETTINGS, control_interval_s=3600.0, grid_poll_s=0.02, debounce_s=0.01)

    async def scenario() -> None:
        loop = ControlLoop(
            store=store,
            planner=make_planner("v2g-rules"),
            settings=settings,
            clock=StoppedClock(PEAK),
            send=answers(),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(loop.run(stop))
        await until(lambda: len(store.setpoints) == 1)
        assert store.setpoints[0].setpoint_kw == -7.0  # the peak: V2G
        # The grid company curtails site a's export: no V2G there any more.
        store.grid_limits = {"a": (math.inf, 0.0)}
        await until(lambda: len(store.setpoints) == 2)
        assert store.setpoints[1].setpoint_kw == 0.0
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert store.reads == 2  # re-planned for the event, not for the hourly interval


def test_grid_limits_override_the_configured_sites() -> None:
    settings = replace(SETTINGS, sites=(LiveSite("a", 10.0, 3.0), LiveSite("b", 20.0, 0.0)))
    changed = with_grid_limits(settings, {"a": (5.0, 0.0), "new": (math.inf, 1.0)})
    assert [(s.site_id, s.import_limit_kw, s.export_limit_kw) for s in changed.sites] == [
        ("a", 5.0, 0.0),
        ("b", 20.0, 0.0),
        ("new", math.inf, 1.0),
    ]
    assert with_grid_limits(settings, {}) is settings


def test_setpoints_below_a_vehicles_minimum_become_zero_within_the_site() -> None:
    # Site 0 imports at most 10 kW. st1 would discharge 2 kW (its least is 3 kW): it stops,
    # so st2's 11 kW no longer fits and is cut to 10 kW, above its least (6 kW).
    kwargs: dict[str, Any] = {
        "site_index": np.array([0, 0, 1]),
        "import_limit_kw": np.array([10.0, 5.0]),
        "export_limit_kw": np.array([5.0, 5.0]),
    }
    power = respect_minimums(
        np.array([-2.0, 11.0, 1.0]),
        min_charge_kw=np.array([0.0, 6.0, 1.4]),
        min_discharge_kw=np.array([3.0, 0.0, 0.0]),
        **kwargs,
    )
    assert power.tolist() == [0.0, 10.0, 0.0]  # st3's 1 kW is below its 1.4 kW too
    # With st2's least at 10.5 kW, the cut leaves it below: it stops as well.
    power = respect_minimums(
        np.array([-2.0, 11.0, 1.4]),
        min_charge_kw=np.array([0.0, 10.5, 1.4]),
        min_discharge_kw=np.array([3.0, 0.0, 0.0]),
        **kwargs,
    )
    assert power.tolist() == [0.0, 0.0, 1.4]


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 2),
            st.floats(-11.0, 11.0),
            st.floats(0.0, 8.0),
            st.floats(0.0, 8.0),
        ),
        min_size=1,
        max_size=12,
    ),
    limits=st.lists(st.tuples(st.floats(0.0, 40.0), st.floats(0.0, 40.0)), min_size=3, max_size=3),
)
def test_minimums_keep_every_site_limit(
    rows: list[tuple[int, float, float, float]], limits: list[tuple[float, float]]
) -> None:
    site_index = np.array([r[0] for r in rows])
    import_limit = np.array([lim[0] for lim in limits])
    export_limit = np.array([lim[1] for lim in limits])
    min_charge = np.array([r[2] for r in rows])
    min_discharge = np.array([r[3] for r in rows])
    # Start, as the commands do, from powers within every site's limits.
    charge, discharge = fit_site_limits(
        charge_kw=np.maximum([r[1] for r in rows], 0.0),
        discharge_kw=np.maximum([-r[1] for r in rows], 0.0),
        must_charge_kw=np.zeros(len(rows)),
        site_index=site_index,
        import_limit_kw=import_limit,
        export_limit_kw=export_limit,
    )
    power = respect_minimums(
        charge - discharge,
        min_charge_kw=min_charge,
        min_discharge_kw=min_discharge,
        site_index=site_index,
        import_limit_kw=import_limit,
        export_limit_kw=export_limit,
    )
    site_kw = np.bincount(site_index, weights=power, minlength=3)
    assert np.all(site_kw <= import_limit + 1e-6)
    assert np.all(site_kw >= -export_limit - 1e-6)
    assert not np.any((power > 0) & (power < min_charge - 1e-6))
    assert not np.any((power < 0) & (-power < min_discharge - 1e-6))
    assert np.all(np.abs(power) <= np.abs(charge - discharge) + 1e-9)  # only ever lowered


def test_a_scheduled_vehicle_gets_its_plan_until_departure() -> None:
    sessions = [
        session(
            1, VALLEY, departure_at=VALLEY + timedelta(hours=2), control_mode="ScheduledControl"
        ),
        session(2, VALLEY, departure_at=VALLEY + timedelta(hours=2)),
    ]
    live = build_problem(sessions, now=VALLEY, settings=SETTINGS)
    assert [key.scheduled for key in live.rows] == [True, False]
    schedule = make_planner("fast").plan(live.problem)  # plans the whole horizon
    scheduled, dynamic = setpoint_commands(live, schedule)
    assert dynamic.schedule_kw == ()
    assert scheduled.step_s == 900
    assert len(scheduled.schedule_kw) == 8  # two hours of 15-minute steps
    assert scheduled.schedule_kw[0] == scheduled.setpoint_kw
    assert all(-7.0 <= kw <= 7.0 for kw in scheduled.schedule_kw)
    assert all(round(kw * 10, 6) == round(kw * 10) for kw in scheduled.schedule_kw)


def test_each_instant_records_each_sites_measured_and_planned_power() -> None:
    store = MemoryStore([session(1, VALLEY), session(2, VALLEY)])
    loop = ControlLoop(
        store=store,
        planner=make_planner("uncontrolled"),
        settings=SETTINGS,
        clock=StoppedClock(VALLEY),
        send=answers(rejected="none"),
        # st9 is not plugged here: its reading is not the site's.
        measured=lambda: {"st1": 3.5, "st9": 100.0},
    )
    sent = asyncio.run(loop.run_once())
    (record,) = store.site_power
    assert (record.site_id, record.at, record.plugged) == ("a", VALLEY, 2)
    assert record.measured_kw == 3.5
    assert record.planned_kw == sum(s.setpoint_kw for s in sent) == 14.0
    assert (record.import_limit_kw, record.export_limit_kw) == (100.0, 50.0)


def test_a_failure_to_publish_the_instant_does_not_stop_the_setpoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no snapshot")

    monkeypatch.setattr("v2ghub.live.control.snapshot", broken)
    store = MemoryStore([session(1, VALLEY)])
    loop = ControlLoop(
        store=store,
        planner=make_planner("uncontrolled"),
        settings=SETTINGS,
        clock=StoppedClock(VALLEY),
        send=answers(rejected="none"),
    )
    sent = asyncio.run(loop.run_once())
    assert [(s.station_id, s.setpoint_kw, s.status) for s in sent] == [("st1", 7.0, "Accepted")]
    assert loop.status.latest is None
    assert store.site_power == []
