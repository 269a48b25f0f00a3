"""Live regulation on the server's side: who follows a commitment and by how much, the
frequency-mode profiles, the signal broadcast, commitment files and DR baselines."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.v21 import call as call_v21
from ocpp.v21 import enums as enums_v21

from tests.test_control import PEAK, SETTINGS, MemoryStore, StoppedClock, session, until
from v2ghub.errors import InputError
from v2ghub.live.clock import ScaledClock
from v2ghub.live.control import ControlLoop, SetpointCommand, setpoint_commands
from v2ghub.live.grid_services import GridServices, PlanAt, event_baseline
from v2ghub.live.live_problem import LiveSite, build_problem, plan
from v2ghub.live.outcomes import ACCEPTED, SendOutcome
from v2ghub.live.profiles import profile_request
from v2ghub.live.regulation_files import load_commitments_csv
from v2ghub.live.regulation_shares import FrequencyResponse, assign_regulation, sticky_shares
from v2ghub.live.regulation_signal import SignalBroadcaster
from v2ghub.planning import make_planner
from v2ghub.regulation.signals import RegulationSignal
from v2ghub.store.grid_events import GridEvent, GridEventKind
from v2ghub.store.records import OcppVersion, PluggedSession
from v2ghub.store.regulation import BaselineStep, Commitment, RegulationMode, Share, SignalSample

NOW = PEAK.astimezone(UTC)


def commitment(capacity_kw: float, *, hours: float = 1.0, start: datetime = NOW) -> Commitment:
    return Commitment(
        commitment_id=7,
        starts_at=start - timedelta(minutes=5),
        ends_at=start + timedelta(hours=hours),
        capacity_kw=capacity_kw,
        source="test",
        recorded_at=start,
    )


def planned(sessions: list[Any], *, capacity_kw: float | None = None) -> tuple[Any, Any, Any]:
    regulation = None if capacity_kw is None else (capacity_kw, NOW + timedelta(hours=1))
    live = build_problem(sessions, now=NOW, settings=SETTINGS, regulation=regulation)
    schedule = plan(live, make_planner("fast"), timeout_s=60)
    return live, schedule, setpoint_commands(live, schedule)


def test_only_21_v2x_sessions_follow_and_their_shares_add_up_to_the_capacity() -> None:
    sessions = [
        session(1, PEAK),
        session(2, PEAK),
        session(3, PEAK, ocpp_version=OcppVersion.V201),
        session(4, PEAK, max_discharge_kw=0.0),  # a 2.1 station without V2X
    ]
    live, _, commands = planned(sessions, capacity_kw=6.0)
    assert live.problem.regulation_commitment[:4].tolist() == [6.0] * 4
    assignment = assign_regulation(live, commands, now=NOW, commitment=commitment(6.0))
    followers = [c for c in assignment.commands if c.regulation is not None]
    assert [c.station_id for c in followers] == ["st1", "st2"]
    assert assignment.mode is RegulationMode.CENTRAL_FREQUENCY
    assert assignment.participants == 2
    assert assignment.raise_kw == pytest.approx(6.0, abs=0.002)
    assert assignment.lower_kw == pytest.approx(6.0, abs=0.002)
    assert assignment.left_out_kw > 0  # the 2.0.1 and charge-only vehicles could give some
    for command in followers:
        share = command.regulation
        assert share is not None
        assert share.commitment_id == 7
        assert command.setpoint_kw + share.raise_share_kw <= command.charge_limit_kw + 1e-9
        assert command.setpoint_kw - share.lower_share_kw >= -command.discharge_limit_kw - 1e-9


def test_without_a_commitment_frequency_response_or_nothing() -> None:
    live, _, commands = planned([session(1, PEAK), session(2, PEAK)])
    nothing = assign_regulation(live, commands, now=NOW, commitment=None)
    assert nothing.mode is None
    assert nothing.commands == commands
    ended = assign_regulation(
        live, commands, now=NOW + timedelta(hours=2), commitment=commitment(5.0)
    )
    assert ended.mode is None
    droop = assign_regulation(
        live,
        commands,
        now=NOW,
        commitment=None,
        frequency_response=FrequencyResponse(rated_kw=4.0, deadband_hz=0.02, droop=0.04),
    )
    assert droop.mode is RegulationMode.LOCAL_FREQUENCY
    shares = [c.regulation for c in droop.commands]
    assert all(s is not None and s.commitment_id is None for s in shares)
    assert sum(s.raise_share_kw for s in shares if s) == pytest.approx(4.0, abs=0.002)
    first = shares[0]
    assert first is not None
    curve = first.freq_watt_curve()
    assert [hz for hz, _ in curve] == [47.98, 49.98, 50.02, 52.02]
    assert curve[0][1] == -round(first.lower_share_kw * 1000)
    assert curve[1][1] == 0.0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    energies=st.lists(st.floats(6.0, 57.0), min_size=1, max_size=6),
    capacity_kw=st.floats(0.5, 80.0),
    import_limit_kw=st.floats(5.0, 60.0),
    export_limit_kw=st.floats(0.0, 40.0),
)
def test_no_deflection_breaks_a_vehicle_or_site_limit(
    energies: list[float], capacity_kw: float, import_limit_kw: float, export_limit_kw: float
) -> None:
    """Whatever the signal, every EVSE at ``baseline + share`` stays within its own limits
    and the site at all EVSEs' full deflection within its limits (what was within them)."""
    tight = SETTINGS.__class__(
        city="Shenzhen", sites=(LiveSite("a", import_limit_kw, export_limit_kw),)
    )
    sessions = [session(i, PEAK, energy_kwh=e) for i, e in enumerate(energies)]
    regulation = (capacity_kw, NOW + timedelta(hours=1))
    live = build_problem(sessions, now=NOW, settings=tight, regulation=regulation)
    schedule = plan(live, make_planner("fast"), timeout_s=60)
    commands = setpoint_commands(live, schedule)
    assignment = assign_regulation(live, commands, now=NOW, commitment=commitment(capacity_kw))
    base = np.array([c.setpoint_kw for c in assignment.commands])
    up = np.array(
        [c.regulation.raise_share_kw if c.regulation else 0.0 for c in assignment.commands]
    )
    down = np.array(
        [c.regulation.lower_share_kw if c.regulation else 0.0 for c in assignment.commands]
    )
    charge = np.array([c.charge_limit_kw for c in assignment.commands])
    discharge = np.array([c.discharge_limit_kw for c in assignment.commands])
    assert np.all(base + up <= charge + 1e-9)
    assert np.all(base - down >= -discharge - 1e-9)
    assert up.sum() <= capacity_kw + 1e-6
    assert down.sum() <= capacity_kw + 1e-6
    if base.sum() <= import_limit_kw + 1e-6:
        assert (base + up).sum() <= import_limit_kw + 1e-3
    if base.sum() >= -export_limit_kw - 1e-6:
        assert (base - down).sum() >= -export_limit_kw - 1e-3


def test_a_share_goes_out_as_a_central_frequency_profile_never_an_update() -> None:
    live, _, commands = planned([session(1, PEAK)], capacity_kw=3.0)
    command = assign_regulation(live, commands, now=NOW, commitment=commitment(3.0)).commands[0]
    share = command.regulation
    assert share is not None
    request = profile_request(command, profile_id=11, now=NOW, installed=True)
    assert isinstance(request, call_v21.SetChargingProfile)
    period = request.charging_profile.charging_schedule[0].charging_schedule_period[0]
    assert period.operation_mode == enums_v21.OperationModeEnumType.central_frequency
    assert period.v2x_baseline == round(command.setpoint_kw * 1000)
    assert [(p.signal, p.power) for p in period.v2x_signal_watt_curve] == [
        (-1000, -round(share.lower_share_kw * 1000)),
        (0, 0.0),
        (1000, round(share.raise_share_kw * 1000)),
    ]
    assert period.limit == 7000.0
    assert period.discharge_limit == -7000.0
    assert period.setpoint is None


class Calls:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int, str]] = []

    async def __call__(
        self, station_id: str, payload: object, *, validated: bool = False
    ) -> SendOutcome:
        assert validated  # a broadcast checks its payload once
        assert isinstance(payload, call_v21.AFRRSignal)
        self.sent.append((station_id, payload.signal, payload.timestamp))
        return ACCEPTED


class Signals:
    def __init__(self) -> None:
        self.recorded: list[SignalSample] = []

    def add_signals(self, samples: Any, *, source: str, at: datetime) -> int:
        assert source == "file:reg.csv"
        self.recorded.extend(samples)
        return len(samples)


def test_the_broadcast_replays_the_file_from_the_commitment_and_a_posted_signal_wins() -> None:
    start = datetime(2026, 7, 16, 10, tzinfo=UTC)
    file = RegulationSignal(start=start, step_s=4.0, values=np.array([0.5, -0.25, -0.25, 1.0]))
    calls, signals = Calls(), Signals()
    broadcaster = SignalBroadcaster(
        clock=ScaledClock(start),
        call_station=calls,
        store=signals,
        signal_file=file,
        file_name="reg.csv",
    )
    held = commitment(10.0, start=datetime(2026, 7, 16, 12, 0, 5, tzinfo=UTC))
    at = held.starts_at  # 12:00:00

    async def step(seconds: float) -> int:
        sent = await broadcaster.step(at + timedelta(seconds=seconds))
        await broadcaster.settle()  # the stations answered before the next step
        return sent

    async def run() -> list[int]:
        assert await step(0) == 0  # no commitment told yet
        broadcaster.commit(held)
        assert await step(0) == 0  # nobody follows
        broadcaster.set_participants(frozenset({"B", "A"}))
        counts = [await step(4 * k) for k in range(6)]
        broadcaster.post([SignalSample(at + timedelta(seconds=24), -0.9)])
        counts.append(await step(24))
        counts.append(await step(24 + 70))  # the posted signal is stale: the file again
        await broadcaster.flush()
        return counts

    counts = asyncio.run(run())
    # Steps 0..5 replay 0.5, -0.25, -0.25 (unchanged: not sent), 1.0, 0.5 (looped), -0.25.
    assert counts == [2, 2, 0, 2, 2, 2, 2, 2]
    assert [signal for station, signal, _ in calls.sent if station == "A"] == [
        500,
        -250,
        1000,
        500,
        -250,
        -900,
        1000,  # 94 s after the commitment's start: sample 23 of the file, 23 % 4 = 3
    ]
    assert calls.sent[0][2] == "2026-07-16T11:55:05Z"
    assert broadcaster.answers["Accepted"] == 14
    assert broadcaster.broadcasts == 7
    assert [s.signal for s in signals.recorded] == [0.5, 0.5, -0.25, -0.25, 1.0, 0.5, -0.25, 1.0]


def test_a_station_still_answering_is_skipped_and_the_step_goes_out_on_time() -> None:
    start = datetime(2026, 7, 16, 10, tzinfo=UTC)
    answer_b = asyncio.Event()
    sent: list[tuple[str, int]] = []

    async def call_station(
        station_id: str, payload: object, *, validated: bool = False
    ) -> SendOutcome:
        assert isinstance(payload, call_v21.AFRRSignal)
        sent.append((station_id, payload.signal))
        if station_id == "B":
            await answer_b.wait()  # a slow station
        return ACCEPTED

    broadcaster = SignalBroadcaster(
        clock=ScaledClock(start), call_station=call_station, store=Signals()
    )
    held = commitment(10.0, start=start)
    broadcaster.commit(held)
    broadcaster.set_participants(frozenset({"A", "B"}))

    async def run() -> None:
        broadcaster.post(
            [SignalSample(start + timedelta(seconds=2 * k), k / 10) for k in range(1, 4)]
        )
        assert await broadcaster.step(start + timedelta(seconds=2)) == 2
        await asyncio.sleep(0.05)  # A answers at once
        assert await broadcaster.step(start + timedelta(seconds=4)) == 1  # B still busy
        await asyncio.sleep(0.05)
        answer_b.set()
        await broadcaster.settle()
        assert await broadcaster.step(start + timedelta(seconds=6)) == 2
        await broadcaster.settle()

    asyncio.run(run())
    assert sent == [("A", 100), ("B", 100), ("A", 200), ("A", 300), ("B", 300)]
    assert broadcaster.skipped_busy == 1
    assert broadcaster.answers["Accepted"] == 5


def test_a_commitments_file_is_checked_row_by_row(tmp_path: Path) -> None:
    good = tmp_path / "commitments.csv"
    good.write_text(
        "starts_at,ends_at,capacity_kw\n"
        "2026-07-16T10:00:00+08:00,2026-07-16T11:00:00+08:00,250\n"
        "2026-07-16T19:00:00+08:00,2026-07-16T21:00:00+08:00,120.5\n"
    )
    rows = load_commitments_csv(good)
    assert [(r.row, r.capacity_kw) for r in rows] == [(2, 250.0), (3, 120.5)]
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "starts_at,ends_at,capacity_kw\n"
        "2026-07-16T10:00:00+08:00,2026-07-16T11:00:00+08:00,250\n"
        "2026-07-16T19:00:00+08:00,2026-07-16T18:00:00+08:00,120\n"
    )
    with pytest.raises(InputError, match=r"bad\.csv.*row 3.*ends_at.*is not after starts_at"):
        load_commitments_csv(bad)
    bad.write_text("starts_at,ends_at,capacity_kw\n2026-07-16T10:00:00,2026-07-16T11:00:00Z,5\n")
    with pytest.raises(InputError, match=r"row 2.*starts_at.*has no UTC offset"):
        load_commitments_csv(bad)


def test_a_dr_baseline_is_the_site_plan_over_the_event() -> None:
    live, schedule, _ = planned([session(1, PEAK), session(2, PEAK, site_id="b")])
    step = live.problem.grid.step
    event = GridEvent(
        event_id=3,
        site_id="a",
        kind=GridEventKind.DEMAND_RESPONSE,
        import_limit_kw=1.0,
        export_limit_kw=None,
        starts_at=NOW + step + timedelta(minutes=1),
        ends_at=NOW + 3 * step,
        reason="dr",
        source="test",
        recorded_at=NOW,
    )
    steps = event_baseline(PlanAt(live, schedule, NOW), event)
    assert [s.at for s in steps] == [NOW.replace(microsecond=0) + k * step for k in (1, 2)]
    row = next(i for i, key in enumerate(live.rows) if key.station_id == "st1")
    assert [s.baseline_kw for s in steps] == pytest.approx(
        schedule.power_kw[row, 1:3].round(4).tolist()
    )
    assert {s.step_s for s in steps} == {round(step.total_seconds())}
    other = GridEvent(**{**event.__dict__, "site_id": "nowhere"})
    assert event_baseline(PlanAt(live, schedule, NOW), other) == []


class RegulationMemoryStore(MemoryStore):
    """The in-test store, with the grid services' reads and writes."""

    def __init__(self, sessions: list[PluggedSession]) -> None:
        super().__init__(sessions)
        self.commitment: Commitment | None = None
        self.shares: list[Share] = []
        self.events_in_store: list[GridEvent] = []
        self.baselines: list[BaselineStep] = []

    def commitment_in_force(self, now: datetime) -> Commitment | None:
        return self.commitment if self.commitment and self.commitment.in_force(now) else None

    def record_shares(self, shares: Sequence[Share]) -> None:
        self.shares.extend(shares)

    def grid_events(self, **_: Any) -> list[GridEvent]:
        return list(self.events_in_store)

    def baselined_event_ids(self, event_ids: Sequence[int]) -> set[int]:
        return {s.event_id for s in self.baselines} & set(event_ids)

    def record_baselines(self, steps: Sequence[BaselineStep]) -> None:
        self.baselines.extend(steps)


def test_a_commitment_that_starts_re_plans_at_once_and_a_dr_event_gets_its_baseline() -> None:
    store = RegulationMemoryStore([session(1, PEAK), session(2, PEAK)])
    settings = replace(SETTINGS, control_interval_s=3600.0, grid_poll_s=0.02, debounce_s=0.01)
    sent: list[SetpointCommand] = []

    async def send(command: SetpointCommand) -> SendOutcome:
        sent.append(command)
        return ACCEPTED

    async def scenario() -> None:
        loop = ControlLoop(
            store=store,
            planner=make_planner("fast"),
            settings=settings,
            clock=StoppedClock(NOW),
            send=send,
            grid_services=GridServices(store),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(loop.run(stop))
        await until(lambda: len(store.setpoints) == 2)
        assert all(c.regulation is None for c in sent)
        # A commitment starts (recorded by the API, or its hour comes): shares at once.
        store.commitment = commitment(4.0)
        await until(lambda: len(store.shares) == 2)
        assert {s.commitment_id for s in store.shares} == {7}
        assert sum(s.raise_share_kw for s in store.shares) == pytest.approx(4.0, abs=0.002)
        # A demand-response event arrives: its baseline is the plan made before it.
        store.events_in_store = [
            GridEvent(
                event_id=9,
                site_id="a",
                kind=GridEventKind.DEMAND_RESPONSE,
                import_limit_kw=0.0,
                export_limit_kw=None,
                starts_at=NOW,
                ends_at=NOW + timedelta(hours=1),
                reason="dr",
                source="test",
                recorded_at=NOW,
            )
        ]
        store.grid_limits = {"a": (0.0, 50.0)}
        await until(lambda: len(store.baselines) > 0)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert store.reads == 3  # the start, the commitment, the event: not the hourly interval
    assert {b.event_id for b in store.baselines} == {9}
    assert len(store.baselines) == 4  # the hour's four 15-min steps
    assert all(b.site_id == "a" for b in store.baselines)


@settings(max_examples=200, deadline=None)
@given(
    rooms=st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 20.0)), min_size=1, max_size=12),
    kept_fraction=st.lists(st.floats(0.0, 1.5), min_size=12, max_size=12),
    capacity_kw=st.floats(0.0, 150.0),
)
def test_sticky_shares_keep_what_fits_and_share_only_the_deficit(
    rooms: list[float], kept_fraction: list[float], capacity_kw: float
) -> None:
    room = np.array(rooms)
    fresh = sticky_shares(room, np.zeros_like(room), capacity_kw)
    # Nothing held: the twin's participation by headroom.
    assert fresh == pytest.approx(room * min(1.0, capacity_kw / room.sum()) if room.sum() else room)
    kept = fresh * np.array(kept_fraction[: room.size])  # some grown past their room
    shares = sticky_shares(room, kept, capacity_kw)
    assert np.all(shares <= room + 1e-9)
    assert np.all(shares >= np.minimum(kept, room) - 1e-9)  # a share that fits is kept
    target = min(capacity_kw, room.sum())
    assert shares.sum() >= min(target, max(np.minimum(kept, room).sum(), target)) - 1e-6
    if np.minimum(kept, room).sum() <= capacity_kw:
        assert shares.sum() == pytest.approx(target, abs=1e-6)


def test_a_vehicle_arriving_mid_commitment_re_sends_no_other_profile() -> None:
    held_commitment = commitment(6.0)
    live, _, commands = planned([session(1, PEAK), session(2, PEAK)], capacity_kw=6.0)
    first = assign_regulation(live, commands, now=NOW, commitment=held_commitment)
    previous = {c.key: c.regulation for c in first.commands if c.regulation is not None}
    assert len(previous) == 2
    sessions = [session(1, PEAK), session(2, PEAK), session(3, PEAK)]
    live, _, commands = planned(sessions, capacity_kw=6.0)
    again = assign_regulation(
        live, commands, now=NOW, commitment=held_commitment, previous=previous
    )
    by_station = {c.station_id: c.regulation for c in again.commands}
    for key, share in previous.items():
        now_share = by_station[key[0]]
        assert now_share is not None
        assert not now_share.differs(share, tolerance_kw=0.2), key
    # Without what is held, the capacity is split over three: every share changes.
    fresh = assign_regulation(live, commands, now=NOW, commitment=held_commitment)
    fresh_by_station = {c.station_id: c.regulation for c in fresh.commands}
    assert all(
        fresh_by_station[key[0]].differs(share, tolerance_kw=0.2)  # type: ignore[union-attr]
        for key, share in previous.items()
    )
