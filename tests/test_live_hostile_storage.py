"""A store that cannot take writes: a full disk, a read-only database.

The disk is outside the program, so a full one is made at the database driver: every
statement that writes fails with the error SQLite itself raises when its file cannot
grow (a genuine ``SQLITE_FULL``, made by a database that may not grow past one page).
A read-only store is real: SQLite opened read-only, PostgreSQL with read-only
transactions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from websockets.asyncio.client import ClientConnection

from v2ghub.cli import main
from v2ghub.live.clock import ScaledClock
from v2ghub.live.security import hash_password
from v2ghub.live.server import CsmsServer, ServerSettings
from v2ghub.store.database import STORAGE_FULL, StorageError, storage_problem
from v2ghub.store.records import EventKind
from v2ghub.store.repository import Store

from .test_live_server import NOON, PASSWORD, _connect, _event

WRITES = ("INSERT", "UPDATE", "DELETE", "CREATE", "ALTER", "DROP")
DRIVER_EVENTS = ("do_execute", "do_execute_no_params", "do_executemany")


def disk_full_error() -> sqlite3.OperationalError:
    """The error SQLite raises when its file cannot grow: ``database or disk is full``."""
    database = sqlite3.connect(":memory:")
    database.execute("PRAGMA max_page_count = 1")
    try:
        database.execute("CREATE TABLE grows (x)")
    except sqlite3.OperationalError as error:
        return error
    finally:
        database.close()
    raise AssertionError("SQLite took a second page past max_page_count")


class Disk:
    """The disk under the database: ``full`` or not (it starts with room)."""

    def __init__(self) -> None:
        self.full = False

    @contextmanager
    def filled(self) -> Iterator[None]:
        self.full = True
        try:
            yield
        finally:
            self.full = False


@pytest.fixture
def disk() -> Iterator[Disk]:
    """While the disk is ``full``, every statement that writes fails as on a full disk."""
    state = Disk()

    def refuse(cursor: Any, statement: str, *_: Any) -> None:
        if state.full and statement.lstrip().upper().startswith(WRITES):
            raise disk_full_error()

    for name in DRIVER_EVENTS:
        sa.event.listen(Engine, name, refuse)
    try:
        yield state
    finally:
        for name in DRIVER_EVENTS:
            sa.event.remove(Engine, name, refuse)


def test_the_simulated_error_is_the_one_sqlite_raises() -> None:
    error = disk_full_error()
    assert str(error) == "database or disk is full"
    assert error.sqlite_errorname == "SQLITE_FULL"
    assert storage_problem(error) == STORAGE_FULL
    assert storage_problem(sqlite3.OperationalError("no such table: x")) is None


def test_station_add_on_a_full_disk_is_one_line_and_registers_nothing(
    tmp_path: Path, disk: Disk, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path)]
    Store.open(data_dir=tmp_path).close()  # the database exists; the disk fills up
    with disk.filled():
        assert main(["station", "add", "CP-1", "--site", "depot", *data]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("error: storage full: database or disk is full (sqlite:///")
    assert captured.err.rstrip().endswith("nothing was written")
    with Store.open(data_dir=tmp_path) as store:
        assert store.stations() == []


def test_serve_on_a_full_disk_is_one_line_and_leaves_no_half_schema(
    tmp_path: Path, disk: Disk, capsys: pytest.CaptureFixture[str]
) -> None:
    with disk.filled():
        status = main(["serve", "--data-dir", str(tmp_path), "--port", "0", "--no-api"])
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: cannot prepare the database: storage full: database or disk")
    with sqlite3.connect(tmp_path / "v2ghub.sqlite3") as database:
        assert database.execute("SELECT name FROM sqlite_master").fetchall() == []


@pytest.fixture
def read_only_url(database_url: str) -> str:
    """The URL of a migrated database, opened so that it takes no write."""
    Store.open(database_url=database_url).close()
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///file:{url.database}?mode=ro&uri=true"
    options = url.query.get("options", "")
    read_only = f"{options} -cdefault_transaction_read_only=on".strip()
    return url.update_query_dict({"options": read_only}).render_as_string(hide_password=False)


def test_station_add_on_a_read_only_store_is_one_line(
    read_only_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["station", "add", "CP-1", "--database-url", read_only_url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "storage read-only" in err
    assert "nothing was written" in err


# ------------------------------------------------------------------- the live server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(data_dir=tmp_path / "data") as opened:
        opened.add_station("CP-21", site_id="s1", password_hash=hash_password(PASSWORD))
        yield opened


@pytest.fixture
async def server(store: Store, tmp_path: Path) -> AsyncIterator[CsmsServer]:
    settings = ServerSettings(host="127.0.0.1", port=0, tls_folder=tmp_path / "tls")
    async with CsmsServer(store, settings, clock=ScaledClock(NOON)) as running:
        yield running


async def _call(ws: ClientConnection, unique_id: str, action: str, payload: Any) -> list[Any]:
    await ws.send(json.dumps([2, unique_id, action, payload]))
    answer: list[Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return answer


async def test_a_full_disk_refuses_messages_with_a_reason_and_logs_one_line(
    server: CsmsServer, store: Store, disk: Disk, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="v2ghub")
    async with _connect(server, "CP-21") as ws:
        assert (await _call(ws, "s", "TransactionEvent", _event(0, 100, 0, "Started")))[0] == 3
        with disk.filled():
            answers = [
                await _call(ws, f"u{seq_no}", "TransactionEvent", _event(seq_no, 100 + seq_no))
                for seq_no in range(1, 41)
            ]
            ac = {
                "energyAmount": 20_000,
                "evMinCurrent": 6,
                "evMaxCurrent": 32,
                "evMaxVoltage": 230,
            }
            charging = {"requestedEnergyTransfer": "AC_single_phase", "acChargingParameters": ac}
            needs = {"evseId": 1, "chargingNeeds": charging}
            answers.append(await _call(ws, "n", "NotifyEVChargingNeeds", needs))
        # Nothing acknowledged: each gets a CallError that says why, so it is sent again.
        assert {tuple(answer[:1] + answer[2:4]) for answer in answers} == {
            (4, "InternalError", "storage full: the message was not stored; send it again later")
        }
        again = await _call(ws, "again", "TransactionEvent", _event(1, 101))
        assert again[:2] == [3, "again"]

    full = [r for r in caplog.records if "storage full" in r.getMessage()]
    assert len(full) == 1
    assert full[0].getMessage().startswith("storage full: database or disk is full")
    assert "(writes refused since the last such line: 1;" in full[0].getMessage()
    assert server.storage_alarm.refused == 41
    assert not [r for r in caplog.records if r.exc_info]
    assert not [r for r in caplog.records if "CallError" in r.getMessage()]
    samples = store.meter_samples("CP-21", "T-1")
    assert [s.seq_no for s in samples] == [0, 1]


async def test_a_full_disk_at_connect_keeps_the_station_connected(
    server: CsmsServer, store: Store, disk: Disk, caplog: pytest.LogCaptureFixture
) -> None:
    with disk.filled():
        async with _connect(server, "CP-21") as ws:
            beat = await _call(ws, "h", "Heartbeat", {})
            assert beat[:2] == [3, "h"]
    assert not [r for r in caplog.records if r.exc_info]
    assert store.events(kind=EventKind.CONNECTED) == []


def test_a_failed_write_is_a_storage_error_and_the_table_is_unchanged(
    tmp_path: Path, disk: Disk
) -> None:
    with Store.open(data_dir=tmp_path) as store:
        with disk.filled(), pytest.raises(StorageError, match=r"^storage full: database or"):
            store.add_station("CP-1", site_id="s", password_hash="x")
        assert store.stations() == []
