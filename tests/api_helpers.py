"""Shared pieces of the web API's tests: a store filled through its real write methods, a
token of each role, a settlement ledger, and a client over ``create_app``.

The day (2026-03-10, Asia/Shanghai, local times below) at sites ``depot`` (S1, S2) and
``mall`` (S3); ``alice`` owns T0, T1 and T3, ``bob`` T9 and T2:

- ``S2/T9`` (bob): 22:00 the evening before at 0 Wh to 02:00 at 8,000 Wh: 4,000 Wh on
  the day (interpolated at midnight).
- ``S1/T0`` (alice): 09:00 at 1,000 Wh to 09:30 at 3,000 Wh; a 5 kW setpoint at 09:00;
  needs at 09:05 (target 50 kWh, SoC 0.2 of 50 kWh: 40 kWh asked).
- ``S1/T1`` (alice, open): from 09:40 at 3,000 Wh; readings 10:00 4 kW, 10:05 6 kW,
  10:15 -4 kW, 10:20 -2 kW, last registers 4,800 / 300 Wh; setpoints 09:50 6 kW,
  10:10 -3 kW, 10:40 0 kW; needs at 09:45 (target 40 kWh, SoC 0.5 of 60 kWh: 10 asked).
- ``S2/T2`` (bob): 10:00 at 8,000 Wh to 10:50 at 10,000 Wh; readings 10:10 3 kW, 10:35
  (no power), 10:40 7 kW, 10:50 9 kW; a 4 kW setpoint at 10:05. EVSE 2 of S2 reads 2 kW
  at 10:10 outside any transaction.
- ``S3/T3`` (alice, open): from 10:30 at 0 Wh, 10:45 11 kW at 500 Wh, 11:00 50 kW at
  600 Wh; a 2 kW setpoint at 10:30.

The ledger holds ``2026-03-09/Shenzhen/live`` (T9 pays 0.50) and
``2026-03-10/Shenzhen/live`` (:data:`DAY_LINES`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from starlette.exceptions import StarletteDeprecationWarning

from tests.test_ledger import Row, make_lines
from v2ghub.api.app import create_app
from v2ghub.api.context import ApiContext
from v2ghub.settlement.ledger import Ledger
from v2ghub.store.api_tokens import Role
from v2ghub.store.records import EvNeeds, MeterSample, OcppVersion, Setpoint
from v2ghub.store.repository import Store

with warnings.catch_warnings():
    # Starlette 1.x would rather its TestClient ran on httpx2; it runs on httpx all the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

SHANGHAI = ZoneInfo("Asia/Shanghai")
PERIOD = "2026-03-10/Shenzhen/live"
EVENING_PERIOD = "2026-03-09/Shenzhen/live"
TOKENS = {
    "admin": (Role.ADMIN, (), None),
    "depot": (Role.OPERATOR, ("depot",), None),
    "mall": (Role.OPERATOR, ("mall",), None),
    "grid": (Role.GRID, (), None),
    "alice": (Role.OWNER, (), "alice"),
    "bob": (Role.OWNER, (), "bob"),
    "dave": (Role.OWNER, (), "dave"),
}
"""Token name: (role, sites, owner id). ``dave`` owns nothing."""
DAY_LINES = [
    Row("S1/T0", "charging", "owner:S1/T0", "operator:depot", "charging", 2000, "0.5", 100, "c"),
    Row("S1/T1", "charging", "owner:S1/T1", "operator:depot", "charging", 1800, "0.5", 300, "c"),
    Row("S1/T1", "discharge", "grid", "aggregator", "discharge", 300, "2", 600, "d"),
    Row("S1/T1", "discharge:owner", "aggregator", "owner:S1/T1", "discharge", 300, "", 423, "70%"),
    Row("S2/T2", "charging", "owner:S2/T2", "operator:depot", "charging", 2000, "0.1", 200, "c"),
    Row("S2/T9", "charging", "owner:S2/T9", "operator:depot", "charging", 4000, "", 70, "c"),
]
EVENING_LINES = [
    Row("S2/T9", "charging", "owner:S2/T9", "operator:depot", "charging", 4000, "", 50, "c"),
]


def local(hour: int, minute: int = 0, *, day: int = 10) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=SHANGHAI)


class FixedClock:
    """A clock standing still at ``at``."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def seconds(self, simulated_s: float) -> float:
        return simulated_s


def secret(name: str) -> str:
    return f"v2g_{name}-token-0123456789"


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret(name)}"}


def add_tokens(store: Store) -> None:
    for name, (role, sites, owner_id) in TOKENS.items():
        store.add_token(
            name, role=role, token=secret(name), at=local(0), site_ids=sites, owner_id=owner_id
        )


def client(
    store: Store,
    *,
    now: datetime,
    ledger_path: Path | None = None,
    connected: Callable[[], frozenset[str]] = frozenset,
) -> TestClient:
    api = ApiContext(
        store=store,
        clock=FixedClock(now),
        timezone=SHANGHAI,
        connected=connected,
        ledger_path=ledger_path,
    )
    return TestClient(create_app(api))


def post_ledger(path: Path) -> Path:
    with Ledger.open(path) as ledger:
        ledger.post(EVENING_PERIOD, make_lines(EVENING_LINES))
        ledger.post(PERIOD, make_lines(DAY_LINES))
    return path


def _event(
    store: Store,
    key: str,
    event_type: str,
    at: datetime,
    registers_wh: tuple[int, int],
    *,
    id_token: str | None = None,
    power_kw: float | None = None,
) -> None:
    """A Started (``seq_no`` 0) or Ended (1) TransactionEvent with one reading."""
    station_id, transaction_id = key.split("/")
    seq_no = 0 if event_type == "Started" else 1
    store.transaction_event(
        station_id=station_id,
        evse_id=1 if event_type == "Started" else None,
        transaction_id=transaction_id,
        event_type=event_type,
        seq_no=seq_no,
        at=at,
        trigger_reason="MeterValuePeriodic",
        id_token=id_token,
        samples=[
            MeterSample(station_id, transaction_id, seq_no, at, *registers_wh, power_kw=power_kw)
        ],
    )


def _readings(
    store: Store,
    station_id: str,
    evse_id: int,
    readings: list[tuple[datetime, int, int, float | None]],
) -> None:
    """MeterValues messages, one per reading (time, import Wh, export Wh, kW)."""
    for at, import_wh, export_wh, power_kw in readings:
        sample = MeterSample(station_id, "", -1, at, import_wh, export_wh, power_kw=power_kw)
        store.add_meter_values(station_id, evse_id, [sample], at=at)


def _setpoint(key: str, at: datetime, setpoint_kw: float) -> Setpoint:
    station_id, transaction_id = key.split("/")
    return Setpoint(station_id, 1, transaction_id, at, setpoint_kw, 11.0, "mpc", "Accepted")


def _needs(at: datetime, *, target_kwh: float, soc: float, battery_kwh: float) -> EvNeeds:
    return EvNeeds(
        station_id="S1",
        evse_id=1,
        received_at=at,
        departure_at=at + timedelta(hours=8),
        battery_kwh=battery_kwh,
        soc=soc,
        target_energy_kwh=target_kwh,
        min_energy_kwh=None,
        max_charge_kw=11.0,
        max_discharge_kw=11.0,
    )


def fill(store: Store) -> Store:
    """The day of the module docstring, written as the OCPP server and control loop would."""
    for station_id, site_id in (("S1", "depot"), ("S2", "depot"), ("S3", "mall")):
        store.add_station(station_id, site_id=site_id, password_hash="x", v2x_allowed=True)
    store.record_boot(
        "S1", ocpp_version=OcppVersion.V21, vendor="Acme", model="V2G-11", at=local(8)
    )
    store.set_evse_status("S1", 1, "Occupied", local(9, 40))
    store.set_evse_status("S1", 2, "Available", local(8))
    add_tokens(store)
    _event(store, "S2/T9", "Started", local(22, day=9), (0, 0), id_token="bob")
    _event(store, "S2/T9", "Ended", local(2), (8000, 0))
    _event(store, "S1/T0", "Started", local(9), (1000, 0), id_token="alice")
    store.record_needs(_needs(local(9, 5), target_kwh=50.0, soc=0.2, battery_kwh=50.0))
    _event(store, "S1/T0", "Ended", local(9, 30), (3000, 0))
    _event(store, "S1/T1", "Started", local(9, 40), (3000, 0), id_token="alice")
    store.record_needs(_needs(local(9, 45), target_kwh=40.0, soc=0.5, battery_kwh=60.0))
    _readings(
        store,
        "S1",
        1,
        [
            (local(10), 4000, 0, 4.0),
            (local(10, 5), 4500, 0, 6.0),
            (local(10, 15), 4800, 100, -4.0),
            (local(10, 20), 4800, 300, -2.0),
        ],
    )
    _event(store, "S2/T2", "Started", local(10), (8000, 0), id_token="bob")
    _readings(
        store,
        "S2",
        1,
        [
            (local(10, 10), 8500, 0, 3.0),
            (local(10, 35), 9000, 0, None),
            (local(10, 40), 9500, 0, 7.0),
        ],
    )
    _readings(store, "S2", 2, [(local(10, 10), 5, 0, 2.0)])
    _event(store, "S2/T2", "Ended", local(10, 50), (10000, 0), power_kw=9.0)
    _event(store, "S3/T3", "Started", local(10, 30), (0, 0), id_token="alice")
    _readings(store, "S3", 1, [(local(10, 45), 500, 0, 11.0), (local(11), 600, 0, 50.0)])
    store.record_setpoints(
        [
            _setpoint("S2/T9", local(22, 30, day=9), 7.0),
            _setpoint("S1/T0", local(9), 5.0),
            _setpoint("S1/T1", local(9, 50), 6.0),
            _setpoint("S2/T2", local(10, 5), 4.0),
            _setpoint("S1/T1", local(10, 10), -3.0),
            _setpoint("S3/T3", local(10, 30), 2.0),
            _setpoint("S1/T1", local(10, 40), 0.0),
        ]
    )
    return store


__all__ = [
    "DAY_LINES",
    "PERIOD",
    "SHANGHAI",
    "FixedClock",
    "TestClient",
    "add_tokens",
    "bearer",
    "client",
    "fill",
    "local",
    "post_ledger",
    "secret",
]
