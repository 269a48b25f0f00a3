"""The live aggregator's store, on SQLite and on PostgreSQL (fixtures in conftest.py)."""

from __future__ import annotations

import itertools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from v2ghub.errors import InputError
from v2ghub.store import schema
from v2ghub.store.database import migrate, open_engine, resolve_url
from v2ghub.store.plugged import discharge_allowed, estimate_energy_kwh
from v2ghub.store.records import Event, EventKind, EvNeeds, MeterSample, OcppVersion, Setpoint
from v2ghub.store.repository import Store

from .conftest import POSTGRESQL_TEST_URL

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
BEIJING = timezone(timedelta(hours=8))


def minutes(count: float) -> datetime:
    return T0 + timedelta(minutes=count)


def sample(
    transaction_id: str,
    seq_no: int,
    import_wh: int,
    export_wh: int = 0,
    *,
    at: datetime | None = None,
    soc: float | None = None,
    station_id: str = "CP1",
) -> MeterSample:
    return MeterSample(
        station_id=station_id,
        transaction_id=transaction_id,
        seq_no=seq_no,
        measured_at=at if at is not None else minutes(seq_no),
        import_register_wh=import_wh,
        export_register_wh=export_wh,
        power_kw=7.0,
        soc=soc,
    )


def event(
    store: Store,
    transaction_id: str,
    seq_no: int,
    *samples: MeterSample,
    event_type: str = "Updated",
    evse_id: int | None = 1,
    station_id: str = "CP1",
    at: datetime | None = None,
) -> bool:
    return store.transaction_event(
        station_id=station_id,
        evse_id=evse_id,
        transaction_id=transaction_id,
        event_type=event_type,
        seq_no=seq_no,
        at=at if at is not None else minutes(seq_no),
        trigger_reason="MeterValuePeriodic",
        samples=samples,
    )


def needs(
    *,
    received_at: datetime,
    soc: float | None = 0.5,
    battery_kwh: float | None = 60.0,
    max_charge_kw: float | None = 7.4,
    max_discharge_kw: float | None = 5.0,
    station_id: str = "CP1",
    evse_id: int = 1,
) -> EvNeeds:
    return EvNeeds(
        station_id=station_id,
        evse_id=evse_id,
        received_at=received_at,
        departure_at=minutes(600),
        battery_kwh=battery_kwh,
        soc=soc,
        target_energy_kwh=54.0,
        min_energy_kwh=12.0,
        max_charge_kw=max_charge_kw,
        max_discharge_kw=max_discharge_kw,
    )


def add_v2x_station(store: Store, station_id: str = "CP1", *, v2x_allowed: bool = True) -> None:
    store.add_station(
        station_id, site_id="S1", password_hash="h", v2x_allowed=v2x_allowed, max_power_kw=11.0
    )
    store.record_boot(
        station_id, ocpp_version=OcppVersion.V21, vendor="V", model="M", at=minutes(-60)
    )


def table_count(store: Store, table: sa.Table) -> int:
    with store.engine.connect() as connection:
        return int(connection.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


# Opening, migrating ---------------------------------------------------------------------


def test_resolve_url_prefers_the_database_url(tmp_path: Path) -> None:
    url = "postgresql://u@h/db"
    assert resolve_url(data_dir=tmp_path / "unused", database_url=url) == url
    assert not (tmp_path / "unused").exists()


def test_resolve_url_defaults_to_a_sqlite_file_in_v2ghub_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = resolve_url(data_dir=None, database_url=None)
    assert url == f"sqlite:///{tmp_path / 'v2ghub-data' / 'v2ghub.sqlite3'}"
    assert (tmp_path / "v2ghub-data").is_dir()
    assert resolve_url(data_dir=tmp_path / "d", database_url=None).endswith("/d/v2ghub.sqlite3")


def test_unreachable_database_is_one_line_naming_the_url_without_password() -> None:
    with pytest.raises(InputError, match=r"cannot open database ") as caught:
        open_engine("postgresql://alice:s3cret@127.0.0.1:9/nowhere")
    message = str(caught.value)
    assert "postgresql+psycopg://alice:***@127.0.0.1:9/nowhere" in message
    assert "s3cret" not in message
    assert "\n" not in message


def test_unsupported_database_kind_is_refused() -> None:
    with pytest.raises(InputError, match=r"mysql://u:\*\*\*@h/db: unsupported kind 'mysql'"):
        open_engine("mysql://u:pw@h/db")


def test_plain_postgresql_url_is_served_by_psycopg3() -> None:
    plain = make_url(POSTGRESQL_TEST_URL).set(drivername="postgresql")
    engine = open_engine(plain.render_as_string(hide_password=False))
    try:
        assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    with Store.open(data_dir=tmp_path) as store, store.engine.connect() as connection:
        pragma = {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL
        "foreign_keys": 1,
        "busy_timeout": 10_000,
    }


def test_migrated_schema_matches_the_metadata(store: Store) -> None:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, schema.metadata) == []
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [
            ("0008",)
        ]


def test_reopening_migrates_again_harmlessly(database_url: str) -> None:
    with Store.open(database_url=database_url) as store:
        store.add_station("CP1", site_id="S1", password_hash="h")
        migrate(store.engine)
    with Store.open(database_url=database_url) as store:
        assert [station.station_id for station in store.stations()] == ["CP1"]


def test_store_url_masks_the_password(database_url: str) -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        url = url.set(password="s3cret")  # trust authentication ignores it
    with Store.open(database_url=url.render_as_string(hide_password=False)) as store:
        assert "s3cret" not in store.url
        assert store.url.startswith(url.get_backend_name())


# Stations -------------------------------------------------------------------------------


def test_station_round_trip_and_duplicate_refused(store: Store) -> None:
    added = store.add_station("CP-01", site_id="S1", password_hash="h1", v2x_allowed=True)
    assert added.max_power_kw == 11.0
    with pytest.raises(ValueError, match=r"station 'CP-01' is already registered"):
        store.add_station("CP-01", site_id="S2", password_hash="h2")
    store.set_password("CP-01", "h3")
    store.record_boot(
        "CP-01",
        ocpp_version=OcppVersion.V201,
        vendor="Acme",
        model="Duo",
        at=datetime(2026, 3, 1, 16, 0, tzinfo=BEIJING),
    )
    station = store.station("CP-01")
    assert station is not None
    assert (station.site_id, station.password_hash, station.v2x_allowed) == ("S1", "h3", True)
    assert (station.ocpp_version, station.vendor, station.model) == (
        OcppVersion.V201,
        "Acme",
        "Duo",
    )
    assert station.last_boot_at == T0
    assert station.last_boot_at is not None
    assert station.last_boot_at.tzinfo is UTC
    assert store.station("nope") is None


@pytest.mark.parametrize("bad_id", ["", "a/b", "has space", "tab\t", "é", "x" * 49])
def test_bad_station_ids_are_refused(store: Store, bad_id: str) -> None:
    with pytest.raises(ValueError, match=r"must be 1-48 printable ASCII characters"):
        store.add_station(bad_id, site_id="S1", password_hash="h")
    assert store.stations() == []


def test_unknown_station_is_named(store: Store) -> None:
    with pytest.raises(ValueError, match=r"station 'ghost' is not registered"):
        store.set_password("ghost", "h")
    with pytest.raises(ValueError, match=r"station 'ghost' is not registered"):
        event(store, "T1", 0, station_id="ghost")


def test_evse_status_is_upserted(store: Store) -> None:
    store.add_station("CP1", site_id="S1", password_hash="h")
    store.set_evse_status("CP1", 1, "Available", minutes(0))
    store.set_evse_status("CP1", 1, "Occupied", minutes(1))
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(schema.evses)).all()
    assert [(row.evse_id, row.status, row.updated_at) for row in rows] == [
        (1, "Occupied", minutes(1))
    ]


# Transactions ---------------------------------------------------------------------------


def test_replayed_event_is_stored_once_and_changes_nothing(store: Store) -> None:
    add_v2x_station(store)
    assert event(store, "T1", 0, sample("T1", 0, 1000), event_type="Started")
    assert event(store, "T1", 1, sample("T1", 1, 1500, soc=0.5))
    # The replay carries other numbers: the first arrival stands.
    assert not event(store, "T1", 1, sample("T1", 1, 9999, soc=0.9))
    assert store.count_meter_values() == 2
    assert table_count(store, schema.transaction_events) == 2
    [session] = store.sessions()
    assert (session.import_register_wh, session.soc) == (1500, 0.5)
    assert [s.import_register_wh for s in store.meter_samples("CP1", "T1")] == [1000, 1500]


def test_registers_going_backwards_are_refused_and_nothing_is_stored(store: Store) -> None:
    add_v2x_station(store)
    event(store, "T1", 0, sample("T1", 0, 1000, 200), event_type="Started")
    event(store, "T1", 1, sample("T1", 1, 1500, 200))
    with pytest.raises(
        ValueError,
        match=r"station 'CP1', transaction 'T1', seq_no 2: import_register_wh 1499 is below "
        r"1500 stored before it",
    ):
        event(store, "T1", 2, sample("T1", 2, 1499, 250), event_type="Ended")
    with pytest.raises(
        ValueError, match=r"seq_no 2: export_register_wh 150 is below 200 stored before it"
    ):
        event(store, "T1", 2, sample("T1", 2, 1600, 150))
    assert store.count_meter_values() == 2
    assert table_count(store, schema.transaction_events) == 2
    [session] = store.sessions()
    assert (session.import_register_wh, session.export_register_wh) == (1500, 200)
    assert session.ended_at is None
    assert session.last_meter_at == minutes(1)


def test_a_bad_sample_late_in_an_event_leaves_the_database_as_before(store: Store) -> None:
    add_v2x_station(store)
    event(store, "T1", 0, sample("T1", 0, 1000), event_type="Started")
    good = sample("T1", 1, 1200, at=minutes(1))
    bad = sample("T1", 1, 1100, at=minutes(2))  # below the sample before it in this event
    with pytest.raises(ValueError, match=r"seq_no 1: import_register_wh 1100 is below 1200"):
        event(store, "T1", 1, good, bad)
    assert store.count_meter_values() == 1
    assert table_count(store, schema.transaction_events) == 1
    # The same seq_no is not taken by the failed attempt: a corrected one is stored.
    assert event(store, "T1", 1, good)
    assert store.count_meter_values() == 2


def test_sample_of_another_transaction_is_refused(store: Store) -> None:
    add_v2x_station(store)
    with pytest.raises(ValueError, match=r"transaction 'T2', seq_no 0 came with .* 'T1'"):
        event(store, "T1", 0, sample("T2", 0, 1000), event_type="Started")
    assert store.sessions() == []


def test_late_event_must_fit_between_its_neighbours(store: Store) -> None:
    add_v2x_station(store)
    event(store, "T1", 0, sample("T1", 0, 1000), event_type="Started")
    event(store, "T1", 2, sample("T1", 2, 3000))
    with pytest.raises(ValueError, match=r"seq_no 1: a later reading's import_register_wh 3000"):
        event(store, "T1", 1, sample("T1", 1, 3500))
    with pytest.raises(ValueError, match=r"seq_no 1: import_register_wh 900 is below 1000"):
        event(store, "T1", 1, sample("T1", 1, 900))
    assert event(store, "T1", 1, sample("T1", 1, 2000))
    [session] = store.sessions()
    assert (session.import_register_wh, session.last_meter_at) == (3000, minutes(2))


def test_updated_for_an_unknown_transaction_starts_it(store: Store) -> None:
    add_v2x_station(store)
    assert event(store, "T9", 4, sample("T9", 4, 5000), at=minutes(4))
    # The lost Started turns up later: it moves the start back.
    assert event(store, "T9", 0, sample("T9", 0, 4000), event_type="Started", at=minutes(0))
    [session] = store.sessions()
    assert session.started_at == minutes(0)
    assert (session.start_import_register_wh, session.import_register_wh) == (4000, 5000)
    assert session.imported_wh == 1000


def test_started_again_resumes_the_open_transaction(store: Store) -> None:
    add_v2x_station(store)
    event(store, "T1", 0, sample("T1", 0, 1000), event_type="Started")
    event(store, "T1", 1, sample("T1", 1, 1500))
    assert event(store, "T1", 2, sample("T1", 2, 1600), event_type="Started")
    [session] = store.sessions()
    assert (session.start_import_register_wh, session.import_register_wh) == (1000, 1600)
    assert session.ended_at is None


def test_ended_transaction_is_a_finished_session_for_settlement(store: Store) -> None:
    add_v2x_station(store)
    store.transaction_event(
        station_id="CP1",
        evse_id=2,
        transaction_id="T1",
        event_type="Started",
        seq_no=0,
        at=datetime(2026, 3, 1, 16, 0, tzinfo=BEIJING),
        trigger_reason="CablePluggedIn",
        samples=[sample("T1", 0, 10_000, 500)],
        id_token="TAG-1",
    )
    store.transaction_event(
        station_id="CP1",
        evse_id=None,
        transaction_id="T1",
        event_type="Ended",
        seq_no=1,
        at=minutes(90),
        trigger_reason="EVCommunicationLost",
        samples=[sample("T1", 1, 12_345, 1_500, at=minutes(90))],
        stopped_reason="EVDisconnected",
        offline=True,
    )
    [session] = store.sessions()
    assert (session.evse_id, session.id_token, session.stopped_reason) == (
        2,
        "TAG-1",
        "EVDisconnected",
    )
    assert (session.started_at, session.ended_at) == (T0, minutes(90))
    assert session.started_at.tzinfo is UTC
    assert (session.imported_wh, session.exported_wh) == (2345, 1000)
    assert store.sessions(since=minutes(91)) == []
    assert store.sessions(since=minutes(90)) == [session]
    assert store.plugged(minutes(100)) == []


def test_meter_samples_come_back_in_order_with_aware_utc_times(store: Store) -> None:
    add_v2x_station(store)
    beijing = datetime(2026, 3, 1, 16, 5, tzinfo=BEIJING)
    event(store, "T1", 0, sample("T1", 0, 1000), event_type="Started")
    event(store, "T1", 1, sample("T1", 1, 1200, at=beijing), sample("T1", 1, 1100, at=minutes(2)))
    samples = store.meter_samples("CP1", "T1")
    assert [(s.seq_no, s.import_register_wh, s.measured_at) for s in samples] == [
        (0, 1000, minutes(0)),
        (1, 1100, minutes(2)),
        (1, 1200, minutes(5)),
    ]
    assert all(s.measured_at.tzinfo is UTC for s in samples)


def test_naive_times_are_refused(store: Store) -> None:
    add_v2x_station(store)
    with pytest.raises(ValueError, match=r"at 2026-03-01T08:00:00 must be timezone-aware"):
        event(store, "T1", 0, at=datetime(2026, 3, 1, 8, 0))  # noqa: DTZ001
    assert store.sessions() == []


def test_meter_values_attach_to_the_open_transaction(store: Store) -> None:
    add_v2x_station(store)
    event(store, "T1", 0, sample("T1", 0, 1000), event_type="Started")
    reading = sample("", 0, 1300, at=minutes(3), soc=0.41)
    store.add_meter_values("CP1", 1, [reading], at=minutes(3))
    store.add_meter_values("CP1", 1, [reading], at=minutes(3))  # replay
    assert [(s.seq_no, s.import_register_wh) for s in store.meter_samples("CP1", "T1")] == [
        (0, 1000),
        (-1, 1300),
    ]
    [session] = store.sessions()
    assert (session.import_register_wh, session.soc, session.last_meter_at) == (
        1300,
        0.41,
        minutes(3),
    )
    with pytest.raises(ValueError, match=r"'T1', MeterValues at .*: import_register_wh 1250"):
        store.add_meter_values("CP1", 1, [sample("", 0, 1250, at=minutes(4))], at=minutes(4))
    # An EVSE with no transaction keeps its readings apart.
    store.add_meter_values("CP1", 2, [sample("", 0, 77, at=minutes(3))], at=minutes(3))
    assert [s.import_register_wh for s in store.meter_samples("CP1", "")] == [77]
    assert store.count_meter_values() == 3


# What the control loop sees ---------------------------------------------------------------


def test_energy_estimate_from_needs_and_metered_energy(store: Store) -> None:
    add_v2x_station(store)
    event(store, "T1", 0, sample("T1", 0, 1000, 0), event_type="Started")
    store.record_needs(needs(received_at=minutes(1)))
    # 2,500 Wh in, 500 Wh out since the needs: 0.5 * 60 + (2500 - 500) / 1000 = 32 kWh.
    event(store, "T1", 1, sample("T1", 1, 3500, 500))
    [plugged] = store.plugged(minutes(2))
    assert plugged.energy_kwh == pytest.approx(32.0)
    assert (plugged.max_charge_kw, plugged.max_discharge_kw) == (7.4, 5.0)
    assert (plugged.import_register_wh, plugged.export_register_wh) == (3500, 500)
    assert (plugged.site_id, plugged.ocpp_version, plugged.battery_kwh) == (
        "S1",
        OcppVersion.V21,
        60.0,
    )
    assert (plugged.target_energy_kwh, plugged.min_energy_kwh) == (54.0, 12.0)
    assert plugged.departure_at == minutes(600)
    assert plugged.last_meter_at == minutes(1)
    # A reading with SoC wins: 0.6 * 60 = 36 kWh.
    event(store, "T1", 2, sample("T1", 2, 4000, 500, soc=0.6))
    [plugged] = store.plugged(minutes(3))
    assert plugged.energy_kwh == pytest.approx(36.0)


def test_needs_registers_count_from_when_they_arrived(store: Store) -> None:
    add_v2x_station(store)
    event(store, "T1", 0, sample("T1", 0, 1000), event_type="Started")
    event(store, "T1", 1, sample("T1", 1, 6000))
    store.record_needs(needs(received_at=minutes(1), soc=0.25, battery_kwh=40.0))
    event(store, "T1", 2, sample("T1", 2, 7500))
    # 0.25 * 40 + (7500 - 6000) / 1000 = 11.5 kWh: energy before the needs is in their SoC.
    [plugged] = store.plugged(minutes(3))
    assert plugged.energy_kwh == pytest.approx(11.5)


def test_latest_needs_from_just_before_the_start_count(store: Store) -> None:
    add_v2x_station(store)
    store.record_needs(needs(received_at=minutes(-40), soc=0.9))  # an earlier vehicle's
    event(store, "T1", 0, sample("T1", 0, 0), event_type="Started")
    [plugged] = store.plugged(minutes(1))
    assert (plugged.energy_kwh, plugged.battery_kwh, plugged.max_charge_kw) == (None, None, 11.0)
    assert plugged.max_discharge_kw == 0.0
    # Needs sent just before the Started event (the power path closes after them) count.
    store.record_needs(needs(received_at=minutes(-5), soc=0.5))
    [plugged] = store.plugged(minutes(1))
    assert plugged.energy_kwh == pytest.approx(30.0)  # 0.5 * 60
    store.record_needs(needs(received_at=minutes(1), soc=0.2, max_charge_kw=22.0))
    store.record_needs(needs(received_at=minutes(2), soc=0.3, max_charge_kw=22.0))
    [plugged] = store.plugged(minutes(3))
    assert plugged.energy_kwh == pytest.approx(18.0)  # 0.3 * 60
    assert plugged.max_charge_kw == 11.0  # the vehicle's 22 kW capped at the station's


@pytest.mark.parametrize(
    ("v2x_allowed", "version", "offered_kw", "expected_kw"),
    [
        (True, OcppVersion.V21, 5.0, 5.0),
        (True, OcppVersion.V21, 20.0, 11.0),  # capped at the station
        (True, OcppVersion.V201, 5.0, 5.0),  # 2.0.1 configured for V2X
        (True, OcppVersion.V201, None, 11.0),  # 2.0.1 needs say nothing: the station's power
        (False, OcppVersion.V201, None, 0.0),
        (False, OcppVersion.V21, 5.0, 0.0),
        (False, OcppVersion.V201, 5.0, 0.0),
        (True, OcppVersion.V21, 0.0, 0.0),  # the vehicle offers none
        (True, OcppVersion.V21, None, 0.0),
    ],
)
def test_discharge_only_when_station_and_vehicle_allow_it(
    store: Store,
    v2x_allowed: bool,
    version: OcppVersion,
    offered_kw: float | None,
    expected_kw: float,
) -> None:
    store.add_station("CP1", site_id="S1", password_hash="h", v2x_allowed=v2x_allowed)
    store.record_boot("CP1", ocpp_version=version, vendor=None, model=None, at=minutes(-1))
    event(store, "T1", 0, sample("T1", 0, 0), event_type="Started")
    store.record_needs(needs(received_at=minutes(1), max_discharge_kw=offered_kw))
    [plugged] = store.plugged(minutes(2))
    assert plugged.max_discharge_kw == expected_kw
    assert plugged.ocpp_version is version


def test_discharge_rule() -> None:
    assert discharge_allowed(v2x_allowed=True, ocpp_version=OcppVersion.V21)
    assert discharge_allowed(v2x_allowed=True, ocpp_version=OcppVersion.V201)
    assert not discharge_allowed(v2x_allowed=False, ocpp_version=OcppVersion.V21)
    assert not discharge_allowed(v2x_allowed=False, ocpp_version=OcppVersion.V201)


def test_energy_estimate_is_clipped_to_the_battery() -> None:
    common = {"battery_kwh": 50.0, "latest_soc": None, "needs_soc": 0.98}
    assert estimate_energy_kwh(
        **common, imported_since_needs_wh=3000, exported_since_needs_wh=0
    ) == pytest.approx(50.0)
    assert estimate_energy_kwh(
        **common, imported_since_needs_wh=0, exported_since_needs_wh=1000
    ) == pytest.approx(48.0)


def test_one_plugged_session_per_evse(store: Store) -> None:
    add_v2x_station(store)
    event(store, "OLD", 0, sample("OLD", 0, 100), event_type="Started")  # its Ended was lost
    event(store, "NEW", 5, sample("NEW", 5, 200), event_type="Started")
    event(store, "B", 0, sample("B", 0, 300), event_type="Started", evse_id=2)
    plugged = store.plugged(minutes(10))
    assert [(p.evse_id, p.transaction_id) for p in plugged] == [(1, "NEW"), (2, "B")]
    # A start time ahead of the server's clock (a station clock running fast) changes
    # nothing: every open transaction is plugged.
    assert [(p.evse_id, p.transaction_id) for p in store.plugged(minutes(1))] == [
        (1, "NEW"),
        (2, "B"),
    ]


# Setpoints and events -------------------------------------------------------------------


def test_latest_setpoint_per_evse(store: Store) -> None:
    add_v2x_station(store)
    add_v2x_station(store, "CP2")

    def setpoint(station_id: str, evse_id: int, sent_at: datetime, kw: float) -> Setpoint:
        return Setpoint(station_id, evse_id, "T1", sent_at, kw, 5.0, "lp", "Accepted")

    store.record_setpoints(
        [
            setpoint("CP1", 1, minutes(0), 7.0),
            setpoint("CP1", 1, minutes(5), -4.0),
            setpoint("CP1", 2, minutes(1), 3.0),
            setpoint("CP2", 1, minutes(2), 1.0),
        ]
    )
    latest = store.latest_setpoints()
    assert [(s.station_id, s.evse_id, s.setpoint_kw, s.sent_at) for s in latest] == [
        ("CP1", 1, -4.0, minutes(5)),
        ("CP1", 2, 3.0, minutes(1)),
        ("CP2", 1, 1.0, minutes(2)),
    ]
    assert [s.setpoint_kw for s in store.latest_setpoints("CP2")] == [1.0]
    with pytest.raises(ValueError, match=r"station 'ghost' is not registered"):
        store.record_setpoints([setpoint("CP1", 1, minutes(9), 2.0), setpoint("ghost", 1, T0, 1)])
    assert len(store.latest_setpoints()) == 3
    assert store.latest_setpoints()[0].setpoint_kw == -4.0


def test_events_newest_first_by_kind(store: Store) -> None:
    kinds = [EventKind.BOOT, EventKind.REFUSED, EventKind.BOOT, EventKind.PLANNER_FALLBACK]
    for index, kind in enumerate(kinds):
        store.record_event(Event(minutes(index), kind, f"detail {index}", "CP1"))
    store.record_event(Event(minutes(9), EventKind.REFUSED, "unknown station", None))
    assert [e.detail for e in store.events(limit=2)] == ["unknown station", "detail 3"]
    assert [e.detail for e in store.events(kind=EventKind.BOOT)] == ["detail 2", "detail 0"]
    [refused, _] = store.events(kind=EventKind.REFUSED)
    assert refused == Event(minutes(9), EventKind.REFUSED, "unknown station")
    assert refused.kind is EventKind.REFUSED  # read back as the enum, stored as its text
    with store.engine.connect() as connection:
        kinds_stored = connection.execute(sa.select(schema.events.c.kind)).scalars().all()
    assert sorted(set(kinds_stored)) == ["boot", "planner-fallback", "refused"]


# Concurrency and invariants -------------------------------------------------------------


def test_writers_in_threads_do_not_collide(store: Store) -> None:
    add_v2x_station(store)

    def run_transaction(index: int) -> None:
        transaction_id = f"T{index}"
        for seq_no in range(25):
            event(
                store,
                transaction_id,
                seq_no,
                sample(transaction_id, seq_no, 100 * seq_no),
                evse_id=index,
                event_type="Started" if seq_no == 0 else "Updated",
            )

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(run_transaction, range(1, 5)))
    assert store.count_meter_values() == 100
    assert sorted(s.import_register_wh or 0 for s in store.sessions()) == [2400] * 4


_transaction_numbers = itertools.count()


@settings(
    max_examples=25,
    deadline=None,
    # Examples share the fixture's store; each uses a transaction id of its own.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    increments=st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 500)), min_size=1),
    deliveries=st.lists(st.integers(0, 1000), min_size=1, max_size=40),
)
def test_replays_and_late_events_keep_one_row_per_seq_no_and_monotone_registers(
    store: Store, increments: list[tuple[int, int]], deliveries: list[int]
) -> None:
    if store.station("CP1") is None:
        add_v2x_station(store)
    transaction_id = f"H{next(_transaction_numbers)}"
    registers = list(
        itertools.accumulate(increments, lambda a, b: (a[0] + b[0], a[1] + b[1]), initial=(0, 0))
    )[1:]
    delivered = [index % len(registers) for index in deliveries]  # replays and any order
    results = [
        event(
            store,
            transaction_id,
            seq_no,
            sample(transaction_id, seq_no, *registers[seq_no]),
            event_type="Started" if seq_no == 0 else "Updated",
        )
        for seq_no in delivered
    ]
    assert sum(results) == len(set(delivered))
    stored = store.meter_samples("CP1", transaction_id)
    assert [s.seq_no for s in stored] == sorted(set(delivered))
    imports = [s.import_register_wh for s in stored]
    exports = [s.export_register_wh for s in stored]
    assert imports == sorted(imports)
    assert exports == sorted(exports)
    [session] = [s for s in store.sessions() if s.transaction_id == transaction_id]
    last, first = max(delivered), min(delivered)
    assert (session.import_register_wh, session.export_register_wh) == registers[last]
    assert (session.start_import_register_wh, session.start_export_register_wh) == registers[first]


def test_a_late_event_must_fit_between_its_neighbours(store: Store) -> None:
    add_v2x_station(store)
    event(store, "T1", 1, sample("T1", 1, 100), event_type="Started")
    event(store, "T1", 3, sample("T1", 3, 300))
    event(store, "T1", 5, sample("T1", 5, 350))
    with pytest.raises(
        ValueError, match=r"seq_no 2: a later reading.s import_register_wh 300 is below 320"
    ):
        event(store, "T1", 2, sample("T1", 2, 320))
    assert event(store, "T1", 2, sample("T1", 2, 200)) is True
    assert [s.import_register_wh for s in store.meter_samples("CP1", "T1")] == [100, 200, 300, 350]


def test_a_late_meter_value_must_fit_between_its_neighbours_in_time(store: Store) -> None:
    add_v2x_station(store)
    event(store, "T1", 0, sample("T1", 0, 100, at=minutes(0)), event_type="Started")
    store.add_meter_values("CP1", 1, [sample("", -1, 500, at=minutes(10))], at=minutes(10))
    store.add_meter_values("CP1", 1, [sample("", -1, 900, at=minutes(20))], at=minutes(20))
    with pytest.raises(ValueError, match=r"MeterValues at .*: import_register_wh 400 is below 500"):
        store.add_meter_values("CP1", 1, [sample("", -1, 400, at=minutes(15))], at=minutes(15))
    with pytest.raises(ValueError, match=r"MeterValues at .*: a later reading.s import_register"):
        store.add_meter_values("CP1", 1, [sample("", -1, 950, at=minutes(15))], at=minutes(15))
    store.add_meter_values("CP1", 1, [sample("", -1, 700, at=minutes(15))], at=minutes(15))
    assert [s.import_register_wh for s in store.meter_samples("CP1", "T1")] == [100, 500, 700, 900]


# Grid events ------------------------------------------------------------------------------


def test_site_limits_in_force_latest_recorded_wins(store: Store) -> None:
    store.add_site_limit(
        "depot",
        import_limit_kw=200.0,
        export_limit_kw=None,
        starts_at=minutes(0),
        reason="a",
        at=minutes(0),
    )
    store.add_site_limit(
        "depot",
        import_limit_kw=80.0,
        export_limit_kw=0.0,
        starts_at=minutes(30),
        ends_at=minutes(90),
        reason="curtailment",
        at=minutes(1),
    )
    store.add_site_limit(
        "home-2",
        import_limit_kw=None,
        export_limit_kw=5.0,
        starts_at=minutes(60),
        reason="c",
        at=minutes(2),
    )
    assert store.site_limits(minutes(-1)) == {}
    assert store.site_limits(minutes(10)) == {"depot": (200.0, math.inf)}
    assert store.site_limits(minutes(60)) == {"depot": (80.0, 0.0), "home-2": (math.inf, 5.0)}
    # The curtailment ends: the standing limit holds again.
    assert store.site_limits(minutes(90)) == {"depot": (200.0, math.inf), "home-2": (math.inf, 5.0)}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"import_limit_kw": -1.0}, "site 'depot': import_limit_kw must be >= 0 kW, got -1.0"),
        ({"export_limit_kw": math.nan}, "site 'depot': export_limit_kw must be >= 0 kW, got nan"),
        ({"ends_at": minutes(0)}, r"site 'depot': the limit ends \(.*\) before it starts"),
    ],
)
def test_bad_site_limits_are_refused_and_nothing_is_stored(
    store: Store, changes: dict[str, Any], message: str
) -> None:
    values: dict[str, Any] = {
        "import_limit_kw": 10.0,
        "export_limit_kw": 0.0,
        "starts_at": minutes(0),
        "reason": "x",
        "at": minutes(0),
    }
    with pytest.raises(ValueError, match=message):
        store.add_site_limit("depot", **{**values, **changes})
    assert store.site_limits(minutes(1)) == {}


def test_a_vehicles_least_powers_reach_the_control_loop_capped_by_its_limits(
    store: Store,
) -> None:
    add_v2x_station(store)
    event(store, "T1", 0, sample("T1", 0, 0), event_type="Started")
    store.record_needs(
        replace(
            needs(received_at=minutes(1)),
            min_charge_kw=1.4,
            min_discharge_kw=9.0,
            control_mode="ScheduledControl",
        )
    )
    [plugged] = store.plugged(minutes(2))
    assert plugged.min_charge_kw == 1.4
    assert plugged.min_discharge_kw == 5.0  # never above what it may discharge at
    assert plugged.control_mode == "ScheduledControl"
    with pytest.raises(ValueError, match=r"min_charge_kw -1\.0 must be >= 0"):
        store.record_needs(replace(needs(received_at=minutes(3)), min_charge_kw=-1.0))
