"""Simulated OCPP 2.1 stations in the frequency modes: CentralFrequency (AFRRSignal through
a ``v2xSignalWattCurve``) and LocalFrequency (the grid frequency through a
``v2xFreqWattCurve``), their batched meter values and what the fleet measures.

Most tests drive one fleet by hand on a clock that moves only when told (no network, no
timing); one runs a station against the real server and reads what it stored.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.exceptions import OCPPError
from ocpp.v21 import call as call21
from ocpp.v201 import call as call201
from rich.console import Console

from tests.test_chargers import Csms, run_with_csms, until
from v2ghub.cli import build_parser
from v2ghub.errors import InputError
from v2ghub.live.charger_fleet import BatteryBank
from v2ghub.live.charger_frequency import (
    MAX_CURVE_POINTS,
    FrequencyMode,
    GridFrequency,
    interpolate_rows,
)
from v2ghub.live.charger_messages import (
    ProfileCriteria,
    ProfileRefusedError,
    parse_profile,
    timestamp,
)
from v2ghub.live.chargers import ChargerConfig, ChargerFleet, FleetConfig, _Station
from v2ghub.live.clock import ScaledClock
from v2ghub.live.commands import run_live_command
from v2ghub.live.security import generate_password, hash_password
from v2ghub.live.server import CsmsServer, ServerSettings
from v2ghub.regulation.frequency_response import droop_fraction
from v2ghub.regulation.signals import FrequencyTrace
from v2ghub.store.records import OcppVersion
from v2ghub.store.repository import Store
from v2ghub.units import afrr_to_signal, signal_to_afrr

START = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
SPEED = 10.0
SIGNAL_CURVE = [
    {"signal": -1000, "power": -3000.0},
    {"signal": 0, "power": 0.0},
    {"signal": 1000, "power": 3000.0},
]


class HandClock:
    """A clock that moves only when told; ``SPEED`` times faster than the wall."""

    def __init__(self, start: datetime = START) -> None:
        self.at = start

    def now(self) -> datetime:
        return self.at

    def seconds(self, simulated_s: float) -> float:
        return simulated_s / SPEED


def station_config(
    station_id: str = "CP1", *, version: OcppVersion = OcppVersion.V21, v2x: bool = True
) -> ChargerConfig:
    return ChargerConfig(station_id, None, version, 11.0, v2x)


def fleet_of(*stations: ChargerConfig, **options: Any) -> tuple[ChargerFleet, HandClock]:
    """A fleet, not connected, whose stations all have a vehicle plugged in (SoC 0.5)."""
    clock = HandClock()
    config = FleetConfig(
        url="ws://127.0.0.1:9/ocpp",
        stations=stations or (station_config(),),
        arrival_soc=(0.5, 0.5),
        target_soc=(0.9, 0.9),
        min_soc=0.2,
        dwell_h=(8.0, 8.0),
        **options,
    )
    fleet = ChargerFleet(config, clock=clock)
    fleet.advance(clock.now())
    for station in fleet_stations(fleet):
        station.start(clock.now())
    return fleet, clock


def fleet_stations(fleet: ChargerFleet) -> list[_Station]:
    stations = [fleet._by_id[s.station_id] for s in fleet.config.stations]
    assert all(isinstance(s, _Station) for s in stations)
    return [s for s in stations if isinstance(s, _Station)]


def station_of(fleet: ChargerFleet, station_id: str = "CP1") -> _Station:
    station = fleet._by_id[station_id]
    assert isinstance(station, _Station)
    return station


def frequency_profile(
    mode: str,
    *,
    transaction_id: str | None,
    baseline_w: float = 1000.0,
    curve: list[dict[str, float]] | None = None,
    limit_w: float | None = 3500.0,
    discharge_limit_w: float | None = -6000.0,
    duration_s: int | None = None,
    start: datetime | None = None,
) -> dict[str, Any]:
    """A TxProfile of one period in ``mode``, as the ``ocpp`` package hands it."""
    period: dict[str, Any] = {"start_period": 0, "operation_mode": mode, "v2x_baseline": baseline_w}
    key = "v2x_signal_watt_curve" if mode == "CentralFrequency" else "v2x_freq_watt_curve"
    if curve is not None:
        period[key] = curve
    if limit_w is not None:
        period["limit"] = limit_w
    if discharge_limit_w is not None:
        period["discharge_limit"] = discharge_limit_w
    schedule: dict[str, Any] = {"id": 1, "charging_rate_unit": "W"}
    schedule["charging_schedule_period"] = [period]
    if duration_s is not None:
        schedule["duration"] = duration_s
    if start is not None:
        schedule["start_schedule"] = timestamp(start)
    return {
        "id": 11,
        "stack_level": 0,
        "charging_profile_purpose": "TxProfile",
        "charging_profile_kind": "Absolute" if start is not None else "Relative",
        "transaction_id": transaction_id,
        "charging_schedule": [schedule],
    }


def central(station: _Station, **options: Any) -> dict[str, Any]:
    options.setdefault("curve", SIGNAL_CURVE)
    return frequency_profile("CentralFrequency", transaction_id=station.transaction_id, **options)


def setpoint_kw(fleet: ChargerFleet, station_id: str = "CP1") -> float | None:
    return fleet.station(station_id).setpoint_kw


def move(fleet: ChargerFleet, clock: HandClock, seconds: float, *, tick_s: float = 0.5) -> None:
    """Run the fleet's regulation ticks for ``seconds`` in steps of ``tick_s``."""
    for _ in range(round(seconds / tick_s)):
        clock.at += timedelta(seconds=tick_s)
        fleet.advance(clock.at)
        fleet.regulation_tick(clock.at)


def signal(station: _Station, value: int, *, at: datetime) -> str:
    return station.receive_signal(timestamp(at), value, arrived_at=station.fleet.clock.now())


# ---------------------------------------------------------------- units and curves


def test_afrr_integers_are_per_mille_of_the_signal() -> None:
    assert signal_to_afrr(0.5) == 500
    assert signal_to_afrr(-1.0) == -1000
    assert afrr_to_signal(-250) == -0.25
    assert afrr_to_signal(signal_to_afrr(0.1234)) == pytest.approx(0.123)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(st.integers(-3000, 3000), st.floats(-50, 50)),
            min_size=1,
            max_size=MAX_CURVE_POINTS,
        ),
        min_size=1,
        max_size=6,
    ),
    st.data(),
)
def test_interpolation_of_many_curves_is_numpy_interp_row_by_row(
    curves: list[list[tuple[int, float]]], data: st.DataObject
) -> None:
    rows = [sorted(c, key=lambda p: p[0]) for c in curves]
    xs = np.array([[p[0] for p in r] + [r[-1][0]] * (MAX_CURVE_POINTS - len(r)) for r in rows])
    ys = np.array([[p[1] for p in r] + [r[-1][1]] * (MAX_CURVE_POINTS - len(r)) for r in rows])
    x = np.array([data.draw(st.integers(-4000, 4000)) for _ in rows], dtype=float)
    got = interpolate_rows(xs.astype(float), ys, x)
    for k, r in enumerate(rows):
        if len({p[0] for p in r}) < len(r):
            continue  # a vertical step: numpy leaves it undefined
        expected = np.interp(x[k], [p[0] for p in r], [p[1] for p in r])
        assert got[k] == pytest.approx(expected, abs=1e-9)


# ---------------------------------------------------------------- profiles


def test_frequency_profiles_are_read_and_refused_where_the_station_cannot_follow() -> None:
    def parse(
        body: dict[str, Any], version: OcppVersion = OcppVersion.V21, v2x: bool = True
    ) -> Any:
        return parse_profile(body, received_at=START, version=version, can_discharge=v2x)

    shuffled = [SIGNAL_CURVE[2], SIGNAL_CURVE[0], SIGNAL_CURVE[1]]
    (period,) = parse(
        frequency_profile("CentralFrequency", transaction_id="T", curve=shuffled)
    ).periods
    assert period.mode == "CentralFrequency"
    assert period.baseline_kw == 1.0
    assert period.curve == ((-1000, -3.0), (0, 0.0), (1000, 3.0))
    assert (period.limit_kw, period.discharge_limit_kw) == (3.5, -6.0)
    freq = [{"frequency": 50.2, "power": 7000.0}, {"frequency": 49.8, "power": -7000.0}]
    (period,) = parse(frequency_profile("LocalFrequency", transaction_id="T", curve=freq)).periods
    assert period.curve == ((49.8, -7.0), (50.2, 7.0))

    central_body = frequency_profile("CentralFrequency", transaction_id="T", curve=SIGNAL_CURVE)
    with pytest.raises(ProfileRefusedError, match=r"InvalidOperationMode: .* V2X OCPP 2\.1"):
        parse(central_body, v2x=False)
    with pytest.raises(ProfileRefusedError, match="InvalidOperationMode"):
        parse(central_body, version=OcppVersion.V201)
    with pytest.raises(ProfileRefusedError, match="NoSignalWattCurve"):
        parse(frequency_profile("CentralFrequency", transaction_id="T"))
    with pytest.raises(ProfileRefusedError, match="NoFreqWattCurve"):
        parse(frequency_profile("LocalFrequency", transaction_id="T"))
    with pytest.raises(OCPPError, match=r"v2xSignalWattCurve\[1\]\.power"):
        parse(
            frequency_profile(
                "CentralFrequency",
                transaction_id="T",
                curve=[{"signal": 0, "power": 0}, {"signal": 5}],
            )
        )


# ---------------------------------------------------------------- CentralFrequency


def test_central_frequency_follows_baseline_plus_curve_within_every_limit() -> None:
    fleet, clock = fleet_of()
    station = station_of(fleet)
    assert signal(station, 500, at=clock.at) == "Rejected"  # no CentralFrequency yet
    assert station.set_profile(1, central(station)) == ("Accepted", None)
    assert setpoint_kw(fleet) == pytest.approx(1.0)  # baseline: signal 0 before the first
    for value, expected_kw in (
        (500, 1.0 + 1.5),
        (-250, 1.0 - 0.75),
        (1000, 3.5),  # 1 + 3 = 4 kW, held to the period's limit
        (-1000, -2.0),
        (-3000, -2.0),  # flat beyond the curve's last point
    ):
        assert signal(station, value, at=clock.at - timedelta(seconds=1)) == "Accepted"
        assert setpoint_kw(fleet) == pytest.approx(expected_kw)
    move(fleet, clock, 2.0)
    assert fleet.station("CP1").power_kw == pytest.approx(-2.0)

    # Beyond the dischargeLimit (-6 kW), then with none: the vehicle's own 7 kW.
    steep = [{"signal": -1000, "power": -20000.0}, {"signal": 1000, "power": 20000.0}]
    station.set_profile(1, central(station, curve=steep, baseline_w=0.0))
    assert signal(station, -1000, at=clock.at) == "Accepted"
    move(fleet, clock, 1.0)
    assert fleet.station("CP1").power_kw == pytest.approx(-6.0)
    station.set_profile(1, central(station, curve=steep, baseline_w=0.0, discharge_limit_w=None))
    # The same profile again keeps its mode, and with it the latest signal.
    assert setpoint_kw(fleet) == pytest.approx(-20.0)
    move(fleet, clock, 1.0)
    vehicle = fleet.station("CP1").vehicle
    assert vehicle is not None
    assert fleet.station("CP1").power_kw == pytest.approx(-vehicle.max_discharge_kw)


def test_discharge_stops_at_the_owners_floor_and_charge_at_the_full_battery() -> None:
    fleet, clock = fleet_of()
    station = station_of(fleet)
    station.set_profile(1, central(station, baseline_w=-6000.0, curve=SIGNAL_CURVE))
    # 0.5 -> 0.2 of the battery at 6 kW takes hours: move in large steps.
    move(fleet, clock, 12 * 3600.0, tick_s=60.0)
    view = fleet.station("CP1")
    assert view.vehicle is not None
    assert view.soc == pytest.approx(view.vehicle.min_soc)
    assert view.power_kw == 0.0
    station.set_profile(1, central(station, baseline_w=3000.0, limit_w=None))
    move(fleet, clock, 48 * 3600.0, tick_s=60.0)
    assert fleet.station("CP1").soc == pytest.approx(1.0)  # a curve is followed to full


def test_a_signal_takes_effect_at_its_timestamp_or_on_arrival_if_that_passed() -> None:
    fleet, clock = fleet_of()
    station = station_of(fleet)
    station.set_profile(1, central(station, baseline_w=0.0))
    move(fleet, clock, 1.0)
    assert signal(station, 1000, at=clock.at + timedelta(seconds=3)) == "Accepted"
    assert setpoint_kw(fleet) == 0.0  # waits for its time
    before = fleet.station("CP1").import_register_wh
    move(fleet, clock, 4.0, tick_s=2.0)  # steps 1-3 s and 3-5 s; the signal is at 4 s
    assert setpoint_kw(fleet) == pytest.approx(3.0)
    # 3 s at 0 kW, then 1 s at 3 kW:
    grown_wh = fleet.station("CP1").import_register_wh - before
    assert grown_wh == pytest.approx(3.0 * 1 / 3600 * 1000)
    # A signal stamped in the past applies from its arrival.
    assert signal(station, -500, at=clock.at - timedelta(seconds=30)) == "Accepted"
    assert setpoint_kw(fleet) == pytest.approx(-1.5)


def test_afrr_delays_are_measured_in_wall_seconds() -> None:
    fleet, clock = fleet_of()
    station = station_of(fleet)
    station.set_profile(1, central(station))
    for late_s in (1.0, 2.0, 3.0, 40.0):
        signal(station, 100, at=clock.at - timedelta(seconds=late_s))
    stats = fleet.stats()
    assert stats.afrr_delay_p50_s == pytest.approx(2.5 / SPEED)
    assert stats.afrr_delay_max_s == pytest.approx(40.0 / SPEED)
    assert 3.0 / SPEED < stats.afrr_delay_p99_s < 40.0 / SPEED


def test_stations_that_cannot_do_a_frequency_mode_refuse_it() -> None:
    fleet, _ = fleet_of(
        station_config("NOV2X", v2x=False),
        station_config("OLD", version=OcppVersion.V201, v2x=False),
        station_config("OLDV2X", version=OcppVersion.V201, v2x=True),
    )
    for station in fleet_stations(fleet):
        status, reason = station.set_profile(1, central(station))
        assert (status, reason) == ("Rejected", "InvalidOperationMode")
        assert setpoint_kw(fleet, station.config.station_id) is None


# ---------------------------------------------------------------- LocalFrequency


def test_local_frequency_follows_the_droop_curve_of_the_shared_grid_frequency() -> None:
    values = [50.0, 50.03, 50.1, 50.3, 49.9, 49.6, 50.0]
    trace = FrequencyTrace(start=START, step_s=1.0, frequency_hz=np.array(values))
    fleet, clock = fleet_of(station_config("A"), station_config("B"), frequency_trace=trace)
    # The curve the server builds from the droop settings, for a 4 kW share.
    share_kw = 4.0
    hz = [49.0, 49.95, 50.05, 51.0]
    curve = [{"frequency": f, "power": float(droop_fraction(f)) * share_kw * 1000} for f in hz]
    for station in fleet_stations(fleet):
        body = frequency_profile(
            "LocalFrequency",
            transaction_id=station.transaction_id,
            curve=curve,
            limit_w=None,
            discharge_limit_w=None,
        )
        assert station.set_profile(1, body) == ("Accepted", None)
        assert signal(station, 100, at=clock.at) == "Rejected"  # not CentralFrequency
    for k, frequency_hz in enumerate(values):
        clock.at = START + timedelta(seconds=k)
        fleet.advance(clock.at)
        fleet.advance(clock.at + timedelta(microseconds=1))  # a step starting at k s
        expected_kw = 1.0 + float(droop_fraction(frequency_hz)) * share_kw
        assert setpoint_kw(fleet, "A") == pytest.approx(expected_kw)
        assert setpoint_kw(fleet, "B") == pytest.approx(expected_kw)
    # Outside the trace the grid is at 50 Hz.
    assert GridFrequency(trace).at(START - timedelta(hours=1)) == 50.0


def test_the_synthetic_frequency_repeats_daily_and_depends_on_the_seed() -> None:
    grid = GridFrequency.synthetic(seed=3, day_of=START)
    assert grid.covers(START + timedelta(days=400))
    at = START + timedelta(seconds=1234)
    assert grid.at(at) == grid.at(at + timedelta(days=2))
    assert grid.at(at) != GridFrequency.synthetic(seed=4, day_of=START).at(at)
    assert 49.8 <= grid.at(at) <= 50.2


# ---------------------------------------------------------------- batched meter values


def updated_events(station: _Station) -> list[dict[str, Any]]:
    return [
        item.payload
        for item in station.outbox
        if item.action == "TransactionEvent" and item.payload["event_type"] == "Updated"
    ]


def sampled(meter: Any, measurand: str) -> float:
    return float(next(v["value"] for v in meter["sampled_value"] if v["measurand"] == measurand))


def test_samples_every_2_s_go_in_one_transaction_event_every_10_s() -> None:
    fleet, clock = fleet_of()
    station = station_of(fleet)
    station.set_profile(1, central(station))
    signal(station, -1000, at=clock.at)  # -2 kW
    move(fleet, clock, 30.0)
    station.tick(clock.at)  # the periodic meter value is not sent in a frequency mode
    events = updated_events(station)
    assert len(events) == 3
    for event in events:
        assert event["trigger_reason"] == "MeterValuePeriodic"
        meters = event["meter_value"]
        assert len(meters) == 5
        times = [datetime.fromisoformat(m["timestamp"]) for m in meters]
        assert all(b - a == timedelta(seconds=2) for a, b in itertools.pairwise(times))
        assert times[-1] == datetime.fromisoformat(event["timestamp"])
        for meter in meters:
            assert sampled(meter, "Power.Active.Export") == 2000
            assert sampled(meter, "Power.Active.Import") == 0
    seq = [e["seq_no"] for e in events]
    assert seq == sorted(set(seq))
    assert len(seq) == 3

    # Leaving the mode reports what was sampled since (and a sample then, unless one was
    # just taken); the periodic meter comes back.
    move(fleet, clock, 4.0)
    assert station.clear_profiles(11, criteria_any()) == "Accepted"
    events = updated_events(station)
    assert len(events) == 4
    assert len(events[-1]["meter_value"]) == 2
    station.tick(clock.at)
    assert len(updated_events(station)) == 5


def criteria_any() -> ProfileCriteria:
    return ProfileCriteria(purpose=None, stack_level=None)


def test_a_regulation_hour_ends_with_its_profile() -> None:
    fleet, clock = fleet_of()
    station = station_of(fleet)
    body = central(station, start=clock.at, duration_s=20)
    station.set_profile(1, body)
    assert fleet.bank.frequency.mode[station.index] == FrequencyMode.CENTRAL
    move(fleet, clock, 21.0)
    assert fleet.bank.frequency.mode[station.index] == FrequencyMode.NONE
    assert setpoint_kw(fleet) is None  # back to the default: charge at full power
    # Samples at 2, 4, ... 18 s and one as the hour ends, at 20 s.
    meters = [m for e in updated_events(station) for m in e["meter_value"]]
    assert len(meters) == 10
    assert datetime.fromisoformat(meters[-1]["timestamp"]) == START + timedelta(seconds=20)


# ---------------------------------------------------------------- invariant


@settings(max_examples=300, deadline=None)
@given(
    curve=st.lists(
        st.tuples(st.integers(-2000, 2000), st.floats(-30, 30)),
        min_size=1,
        max_size=MAX_CURVE_POINTS,
        unique_by=lambda p: p[0],
    ),
    signal_value=st.integers(-5000, 5000),
    baseline_kw=st.floats(-30, 30),
    limit_kw=st.none() | st.floats(0, 30),
    discharge_limit_kw=st.none() | st.floats(-30, 0),
    max_charge_kw=st.floats(0, 22),
    max_discharge_kw=st.floats(0, 22),
    soc=st.floats(0, 1),
    dt_s=st.floats(0.1, 3600),
)
def test_power_stays_within_every_limit_for_any_curve_and_signal(  # noqa: PLR0917 (drawn by Hypothesis)
    curve: list[tuple[int, float]],
    signal_value: int,
    baseline_kw: float,
    limit_kw: float | None,
    discharge_limit_kw: float | None,
    max_charge_kw: float,
    max_discharge_kw: float,
    soc: float,
    dt_s: float,
) -> None:
    bank = BatteryBank(1, charge_efficiency=0.92, discharge_efficiency=0.9)
    capacity_kwh, floor_kwh = 60.0, 12.0
    energy_kwh = floor_kwh + soc * (capacity_kwh - floor_kwh)
    bank.plug(
        0,
        energy_kwh=energy_kwh,
        capacity_kwh=capacity_kwh,
        floor_kwh=floor_kwh,
        target_kwh=0.9 * capacity_kwh,
        max_charge_kw=max_charge_kw,
        max_discharge_kw=max_discharge_kw,
    )
    upper_kw = min(max_charge_kw, np.inf if limit_kw is None else limit_kw)
    lower_kw = max(-max_discharge_kw, -np.inf if discharge_limit_kw is None else discharge_limit_kw)
    modes = bank.frequency
    modes.set_mode(
        0,
        FrequencyMode.CENTRAL,
        baseline_kw=baseline_kw,
        curve=tuple(sorted((float(x), y) for x, y in curve)),
        limit_kw=np.inf if limit_kw is None else limit_kw,
        discharge_limit_kw=-np.inf if discharge_limit_kw is None else discharge_limit_kw,
    )
    modes.signal[0] = signal_value
    rows = np.array([0])
    bank.command_kw[rows] = modes.command_kw(rows, 50.0)
    bank.follows_setpoint[0] = True
    bank.step(dt_s / 3600)
    power_kw = float(bank.power_kw[0])
    assert lower_kw - 1e-9 <= power_kw <= upper_kw + 1e-9
    assert floor_kwh - 1e-9 <= bank.energy_kwh[0] <= capacity_kwh + 1e-9
    xs, ys = zip(*sorted(curve), strict=True)
    wanted_kw = baseline_kw + float(np.interp(signal_value, xs, ys))
    followed_kw = min(max(wanted_kw, lower_kw), upper_kw)
    # Where the battery has room for the whole step, the command is followed exactly.
    if 0 <= followed_kw * dt_s / 3600 * 0.92 < capacity_kwh - energy_kwh or (
        followed_kw < 0 and -followed_kw * dt_s / 3600 / 0.9 < energy_kwh - floor_kwh
    ):
        assert power_kw == pytest.approx(followed_kw, abs=1e-9)


# ---------------------------------------------------------------- over the wire


def test_a_v201_station_answers_a_frequency_mode_with_a_call_error() -> None:
    def config(url: str) -> FleetConfig:
        return FleetConfig(
            url=url,
            stations=(
                station_config("OLD", version=OcppVersion.V201, v2x=False),
                station_config("V21"),
            ),
            first_arrival_within_s=0.0,
            dwell_h=(8.0, 8.0),
        )

    async def scenario(csms: Csms, fleet: ChargerFleet) -> None:
        await until(lambda: all(fleet.station(s).transaction_id for s in ("OLD", "V21")))
        old = station_of(fleet, "OLD")
        request = call201.SetChargingProfile(evse_id=1, charging_profile=central(old))
        with pytest.raises(OCPPError, match="Additional properties are not allowed"):
            # 2.0.1 has no operationMode: the station's schema check refuses the request.
            await csms.links["OLD"].call(request, suppress=False, skip_schema_validation=True)
        v21 = station_of(fleet, "V21")
        refused = await csms.send("V21", call21.AFRRSignal(timestamp=timestamp(START), signal=1))
        assert refused.status == "Rejected"
        answer = await csms.send(
            "V21", call21.SetChargingProfile(evse_id=1, charging_profile=central(v21))
        )
        assert answer.status == "Accepted"
        now = fleet.clock.now()
        accepted = await csms.send("V21", call21.AFRRSignal(timestamp=timestamp(now), signal=1000))
        assert accepted.status == "Accepted"
        assert fleet.station("V21").setpoint_kw == pytest.approx(3.5)
        with pytest.raises(OCPPError, match="AFRRSignal is not implemented"):
            await csms.links["OLD"].call(
                call21.AFRRSignal(timestamp=timestamp(now), signal=1),
                suppress=False,
                skip_schema_validation=True,
            )

    stats = run_with_csms(config, scenario)
    assert stats.requests_received["AFRRSignal"] == 3
    assert stats.requests_refused["AFRRSignal"] == 2
    assert stats.stations["V21"].requests_received == 3
    assert stats.afrr_delay_p50_s == stats.afrr_delay_p50_s  # measured (not NaN)


async def test_the_server_stores_every_batched_sample(tmp_path: Path) -> None:
    store = Store.open(data_dir=tmp_path / "data")
    password = generate_password()
    store.add_station(
        "REG1", site_id="depot", password_hash=hash_password(password), v2x_allowed=True
    )
    clock = ScaledClock(START, 20.0)
    config = FleetConfig(
        url="ws://placeholder",
        stations=(ChargerConfig("REG1", password, OcppVersion.V21, 11.0, True),),
        first_arrival_within_s=0.0,
        dwell_h=(8.0, 8.0),
        arrival_soc=(0.5, 0.5),
        meter_interval_s=60.0,
    )
    sent: list[dict[str, Any]] = []
    async with CsmsServer(store, ServerSettings(host="127.0.0.1", port=0), clock=clock) as server:
        fleet = ChargerFleet(replace(config, url=server.url + "/ocpp"), clock=clock)
        original_call = fleet._call

        async def recording_call(link: Any, action: str, payload: Any) -> Any:
            if action == "TransactionEvent":
                sent.append(payload)
            return await original_call(link, action, payload)

        fleet._call = recording_call  # type: ignore[method-assign]
        stop = asyncio.Event()
        runner = asyncio.create_task(fleet.run(stop=stop))
        await asyncio.wait_for(until(lambda: fleet.station("REG1").transaction_id is not None), 20)
        station = station_of(fleet, "REG1")
        request = call21.SetChargingProfile(evse_id=1, charging_profile=central(station))
        outcome = await server.call_station("REG1", request)
        assert outcome.accepted, outcome
        for value in (400, -800, 1000, -200):
            at = timestamp(clock.now())
            outcome = await server.call_station(
                "REG1", call21.AFRRSignal(timestamp=at, signal=value)
            )
            assert outcome.accepted, outcome
            await asyncio.sleep(clock.seconds(3.0))

        def batches() -> int:
            return sum(len(p["meter_value"]) > 1 for p in sent)

        await asyncio.wait_for(until(lambda: batches() >= 2), 20)
        stop.set()
        stats = await asyncio.wait_for(runner, 30)
    assert stats.unsent_events == 0
    assert sum(stats.call_errors.values()) == 0
    transaction_id = station.transaction_id or sent[0]["transaction_info"]["transaction_id"]
    stored = store.meter_samples("REG1", transaction_id)
    stored_at = {s.measured_at for s in stored}
    batched = [p for p in sent if len(p["meter_value"]) > 1]
    assert len(batched) >= 2
    for payload in batched:
        for meter in payload["meter_value"]:
            measured_at = datetime.fromisoformat(meter["timestamp"])
            assert measured_at in stored_at, f"{measured_at} of {payload['seq_no']} is not stored"
        rows = [s for s in stored if s.seq_no == payload["seq_no"]]
        assert len(rows) == len(payload["meter_value"])
        powers = [
            sampled(m, "Power.Active.Import") - sampled(m, "Power.Active.Export")
            for m in payload["meter_value"]
        ]
        assert [r.power_kw for r in rows] == pytest.approx([p / 1000 for p in powers])


def test_the_chargers_command_takes_the_regulation_options(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["chargers", "--frequency-seed", "7", "--regulation-sample-s", "1"]
    )
    assert (args.frequency_seed, args.regulation_sample_s, args.regulation_report_s) == (
        7,
        1.0,
        10.0,
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["chargers", "--frequency-seed", "1", "--frequency-file", "f.csv"]
        )
    bad = tmp_path / "frequency.csv"
    bad.write_text(
        "time,frequency_hz\n2026-07-01T10:00:00+00:00,50.0\n2026-07-01T10:00:01+00:00,60\n"
    )
    args = build_parser().parse_args(
        ["chargers", "--frequency-file", str(bad), "--data-dir", str(tmp_path / "data")]
    )
    with pytest.raises(InputError, match=r"frequency\.csv.*row 3.*frequency_hz"):
        run_live_command(args, Console(quiet=True))
    args = build_parser().parse_args(
        ["chargers", "--regulation-sample-s", "20", "--data-dir", str(tmp_path / "data")]
    )
    with pytest.raises(InputError, match="regulation_sample_s <= regulation_report_s"):
        run_live_command(args, Console(quiet=True))
    with pytest.raises(ValueError, match=r"need 0 < regulation_sample_s <= regulation_report_s"):
        FleetConfig(url="ws://x", stations=(), regulation_sample_s=0.0)
