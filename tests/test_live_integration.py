"""The live aggregator end to end over loopback: the real OCPP server, its store and control
loop, and simulated chargers speaking OCPP 2.1 (V2X) and 2.0.1 (charge-only).

An evening in Shenzhen in July, on a clock running 1,500 times faster than real time: two
vehicles plug in at 16:00 (the critical peak, 15-17, then the peak 17-19) with 70% charge
and leave at 02:00 wanting 80%; the valley starts at midnight. The V2X vehicle must be told
to discharge at the peak and to charge in the valley, the 2.0.1 station must never get a
negative limit, and both must leave with their energy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from v2ghub.live.chargers import ChargerFleet, FleetConfig, make_fleet_config
from v2ghub.live.clock import ScaledClock
from v2ghub.live.live_problem import ControlSettings, LiveSite, warm_up
from v2ghub.live.security import generate_password, hash_password
from v2ghub.live.server import CsmsServer, ServerSettings
from v2ghub.planning import make_planner
from v2ghub.store import schema
from v2ghub.store.records import OcppVersion
from v2ghub.store.repository import Store

SHENZHEN = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 7, 1, 15, 58, tzinfo=SHENZHEN)
SPEED = 1500.0
DWELL_H = 10.0
RUN_S = 10.6 * 3600  # until 02:34, after both vehicles left


def _fleet(url: str, passwords: dict[str, str]) -> FleetConfig:
    config = make_fleet_config(
        url=url,
        count=2,
        v201_share=0.5,
        max_power_kw=11.0,
        seed=7,
        meter_interval_s=300.0,
        vehicles_per_station=1,
        first_arrival_within_s=60.0,
        dwell_h=(DWELL_H, DWELL_H),
        arrival_soc=(0.7, 0.7),
        target_soc=(0.8, 0.8),
        min_soc=0.2,
        validate_messages=True,
    )
    stations = tuple(replace(s, password=passwords[s.station_id]) for s in config.stations)
    return replace(config, stations=stations)


def _setpoints(store: Store, station_id: str) -> list[tuple[datetime, float, str]]:
    table = schema.setpoints
    query = (
        sa.select(table.c.sent_at, table.c.setpoint_kw, table.c.status)
        .where(table.c.station_id == station_id)
        .order_by(table.c.sent_at)
    )
    with store.engine.connect() as connection:
        return [
            (at.astimezone(SHENZHEN), kw, status) for at, kw, status in connection.execute(query)
        ]


def _between(
    setpoints: Sequence[tuple[datetime, float, str]], first_hour: int, last_hour: int
) -> list[float]:
    return [kw for at, kw, _ in setpoints if first_hour <= at.hour < last_hour]


async def test_v2x_discharges_at_peak_charges_in_valley_and_leaves_with_its_energy(
    tmp_path: Path,
) -> None:
    store = Store.open(data_dir=tmp_path / "data")
    passwords = {"SIM0001": generate_password(), "SIM0002": generate_password()}
    for station_id, password in passwords.items():
        # SIM0001 speaks 2.1 and may discharge; SIM0002 is a plain 2.0.1 station.
        store.add_station(
            station_id,
            site_id="depot",
            password_hash=hash_password(password),
            v2x_allowed=station_id == "SIM0001",
        )
    settings = ControlSettings(
        city="Shenzhen",
        sites=(LiveSite("depot", import_limit_kw=40.0, export_limit_kw=40.0),),
        planner="fast",
        control_interval_s=900.0,
        planner_timeout_s=60.0,
    )
    planner = make_planner(settings.planner)
    warm_up(planner, settings, now=START)  # compiled before the fast clock starts
    clock = ScaledClock(START, SPEED)
    server_settings = ServerSettings(host="127.0.0.1", port=0, call_timeout_s=10)
    async with CsmsServer(store, server_settings, clock=clock) as server:
        control = server.control_loop(planner, settings)
        stop = asyncio.Event()
        loop_task = asyncio.create_task(control.run(stop))
        fleet = ChargerFleet(_fleet(server.url + "/ocpp", passwords), clock=clock)
        await fleet.run(duration_s=RUN_S)
        stats = fleet.stats()
        stop.set()
        await loop_task

    v2x, charge_only = _setpoints(store, "SIM0001"), _setpoints(store, "SIM0002")
    ended = {record.station_id: record.ended_at for record in store.sessions()}
    for station_id, setpoints in (("SIM0001", v2x), ("SIM0002", charge_only)):
        ended_at = ended[station_id]
        assert ended_at is not None
        for sent_at, _, status in setpoints:
            # Every setpoint is accepted, except one that crosses the vehicle's departure on
            # the wire: at 1,500 times real speed a few milliseconds are minutes, and the
            # charger rightly answers that the transaction is gone.
            if status != "Accepted":
                assert status == "Rejected: TxNotFound"
                assert sent_at >= ended_at - timedelta(minutes=15)
    # The V2X vehicle gives power back at the (critical) peak, 16-19...
    assert min(_between(v2x, 16, 19)) < -1.0
    # ...and charges in the valley, after midnight.
    assert max(_between(v2x, 0, 3)) > 1.0
    # The 2.0.1 station is never asked to discharge.
    assert charge_only
    assert min(kw for _, kw, _ in charge_only) >= 0.0

    for station_id in passwords:
        metered = stats.stations[station_id]
        assert metered.transactions_started == metered.transactions_ended == 1
    assert stats.stations["SIM0001"].export_wh > 1_000
    assert stats.stations["SIM0002"].export_wh == 0
    assert sum(stats.call_errors.values()) == 0
    assert stats.unsent_events == 0

    # The store holds what the chargers metered, transaction by transaction.
    sessions = {record.station_id: record for record in store.sessions()}
    for station_id in passwords:
        record = sessions[station_id]
        assert record.ended_at is not None
        # Each leaves with its 80% (the last SoC it metered; 0.5% slack for the last step).
        assert record.soc is not None
        assert record.soc >= 0.795
        assert record.imported_wh == int(stats.stations[station_id].import_wh)  # whole Wh, down
        assert record.exported_wh == int(stats.stations[station_id].export_wh)
    registered = store.station("SIM0002")
    assert registered is not None
    assert registered.ocpp_version is OcppVersion.V201
    store.close()
    assert clock.now() - START > timedelta(hours=10)
