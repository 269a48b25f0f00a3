"""``v2ghub serve``'s grid-service flags end to end, the server as a real subprocess on the
system clock and SQLite.

- ``--regulation-commitments`` and ``--regulation-signal`` with two simulated OCPP 2.1 V2X
  chargers (in-process): the file's commitment is stored once however often the server
  starts, the chargers take CentralFrequency shares and follow AFRRSignals, and the replayed
  signal is recorded with the file's name.
- The OpenADR VEN flags against a real openleadr VTN in the test process (loopback,
  unsigned): the VEN registers by name and a ``LOAD_DISPATCH`` event becomes a site limit.
- A bad commitments file stops ``serve`` at start with one line naming file, row and column,
  and stores nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.openadr_vtn import dispatch, running_vtn, until
from v2ghub.live.chargers import ChargerFleet, FleetConfig, make_fleet_config
from v2ghub.live.clock import SystemClock
from v2ghub.live.security import generate_password, hash_password
from v2ghub.store import schema
from v2ghub.store.regulation import RegulationMode
from v2ghub.store.repository import Store

SITE = "depot"
CAPACITY_KW = 20.0
SIGNAL = (0.6, -0.6, 0.3, -0.9, 0.9, -0.3)
"""The signal file's values, 1 s apart: every step changes, so every step is broadcast."""
SIGNAL_STEP_S = 1
RECORD_BATCH = 30
"""The server records replayed samples 30 at a time (and what is left when it stops, but
that last write can be lost: it races the control loop's shutdown), so the test waits for
the first batch while the server runs: 30 s of a 1-s signal."""
LISTENING = re.compile(r"listening on (ws://127\.0\.0\.1:\d+)/")
START_TIMEOUT_S = 60.0  # a deadline for a hang (a busy machine), not a timing assert
VEN_NAME = "serve-test-ven"
VEN_ID = "ven-serve-1"


# --- the server as a subprocess --------------------------------------------------------


@dataclass
class Serve:
    """A running ``v2ghub serve``, its output going to ``log``."""

    process: subprocess.Popen[bytes]
    log: Path
    url: str

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _serve_command(data_dir: Path, *options: str, api: bool = False) -> list[str]:
    return [
        sys.executable,
        "-m",
        "v2ghub.cli",
        "serve",
        "--port",
        "0",
        *(() if api else ("--no-api",)),
        "--data-dir",
        str(data_dir),
        "--control-interval",
        "2",
        *options,
    ]


@contextlib.asynccontextmanager
async def running_serve(data_dir: Path, *options: str, api: bool = False) -> AsyncIterator[Serve]:
    """``serve`` (with its web API if ``api``) until the block ends, then SIGTERM: it must
    stop cleanly (exit 0)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"serve-{len(list(data_dir.parent.glob('serve-*.log')))}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            _serve_command(data_dir, *options, api=api),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )
    try:
        found: list[str] = []

        def listening() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"serve exited {process.returncode}:\n{log.read_text()}")
            found.extend(m.group(1) for m in LISTENING.finditer(log.read_text(errors="replace")))
            return bool(found)

        await until(listening, timeout_s=START_TIMEOUT_S, what="serve to listen")
        yield Serve(process, log, found[0])
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, START_TIMEOUT_S)
        assert code == 0, log.read_text()
        assert "v2ghub serve: stopped" in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _at(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat()


# --- 1. regulation from files ----------------------------------------------------------


def _write_regulation_files(folder: Path, *, starts_at: datetime) -> tuple[Path, Path, Path]:
    sites = folder / "sites.csv"
    sites.write_text(f"site_id,import_limit_kw,export_limit_kw\n{SITE},40,40\n")
    commitments = folder / "commitments.csv"
    ends_at = starts_at + timedelta(minutes=10)
    commitments.write_text(
        f"starts_at,ends_at,capacity_kw\n{_at(starts_at)},{_at(ends_at)},{CAPACITY_KW:g}\n"
    )
    signal_file = folder / "signal.csv"
    # Any times: the server replays the file from the commitment's start.
    first = datetime(2026, 1, 1, tzinfo=UTC)
    rows = (
        f"{_at(first + timedelta(seconds=SIGNAL_STEP_S * k))},{value:g}"
        for k, value in enumerate(SIGNAL)
    )
    signal_file.write_text("time,signal\n" + "\n".join(rows) + "\n")
    return sites, commitments, signal_file


def _regulation_fleet(url: str, passwords: dict[str, str], **fleet: Any) -> FleetConfig:
    """One V2X station per password, 11 kW, plugged within a second (``fleet``: other
    :func:`make_fleet_config` settings)."""
    settings: dict[str, Any] = {
        "max_power_kw": 11.0,
        "seed": 5,
        "meter_interval_s": 2.0,
        "vehicles_per_station": 1,
        "first_arrival_within_s": 1.0,
        "dwell_h": (4.0, 4.0),
        "arrival_soc": (0.5, 0.5),
        "target_soc": (0.6, 0.6),
        "min_soc": 0.2,
    } | fleet
    config = make_fleet_config(url=url, count=len(passwords), **settings)
    stations = tuple(
        replace(s, password=passwords[s.station_id], v2x=True) for s in config.stations
    )
    return replace(config, stations=stations)


def _signal_rows(store: Store) -> list[tuple[datetime, float, str]]:
    table = schema.regulation_signals
    query = sa.select(table.c.at, table.c.signal, table.c.source).order_by(table.c.at)
    with store.engine.connect() as connection:
        return [(at, float(value), str(source)) for at, value, source in connection.execute(query)]


async def test_regulation_files_drive_shares_and_afrr_signals(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    passwords = {f"SIM000{k}": generate_password() for k in (1, 2)}
    with Store.open(data_dir=data_dir) as store:
        for station_id, password in passwords.items():
            store.add_station(
                station_id,
                site_id=SITE,
                password_hash=hash_password(password),
                v2x_allowed=True,
                max_power_kw=11.0,
            )
    sites, commitments, signal_file = _write_regulation_files(
        tmp_path, starts_at=datetime.now(UTC) + timedelta(seconds=5)
    )
    options = (
        "--sites",
        str(sites),
        "--regulation-commitments",
        str(commitments),
        "--regulation-signal",
        str(signal_file),
    )
    with Store.open(data_dir=data_dir) as store:
        async with running_serve(data_dir, *options) as serve:
            fleet = ChargerFleet(_regulation_fleet(serve.url, passwords), clock=SystemClock())
            stop = asyncio.Event()
            fleet_task = asyncio.create_task(fleet.run(stop=stop))
            try:
                shares: list[Any] = []

                def following() -> bool:
                    if fleet_task.done():
                        fleet_task.result()  # raises what ended it
                        raise AssertionError("the chargers stopped")
                    shares[:] = store.shares(mode=RegulationMode.CENTRAL_FREQUENCY)
                    afrr = fleet.stats().requests_received.get("AFRRSignal", 0)
                    return (
                        {s.station_id for s in shares} == set(passwords)
                        and afrr >= 3
                        and bool(_signal_rows(store))
                    )

                await until(
                    following,
                    timeout_s=START_TIMEOUT_S,
                    what="both chargers following AFRRSignals and the signal recorded",
                )
            finally:
                stop.set()
                stats = await fleet_task
        assert stats.requests_received["AFRRSignal"] >= 3
        assert sum(stats.call_errors.values()) == 0
        for station_id in passwords:
            assert stats.stations[station_id].requests_received > 0

        (commitment,) = store.commitments()
        assert commitment.source == "file:commitments.csv"
        assert commitment.external_id == "commitments.csv:2"
        assert commitment.capacity_kw == CAPACITY_KW
        assert commitment.ends_at - commitment.starts_at == timedelta(minutes=10)
        shares = store.shares(mode=RegulationMode.CENTRAL_FREQUENCY)
        assert {s.station_id for s in shares} == set(passwords)
        assert {s.status for s in shares} == {"Accepted"}
        assert {s.commitment_id for s in shares} == {commitment.commitment_id}
        assert all(s.raise_share_kw > 0 and s.lower_share_kw > 0 for s in shares)
        # The file replayed from the commitment's start, each sample recorded as sent.
        samples = _signal_rows(store)
        assert len(samples) >= RECORD_BATCH
        assert {source for _, _, source in samples} == {"file:signal.csv"}
        for at, value, _ in samples:
            step = int((at - commitment.starts_at).total_seconds()) // SIGNAL_STEP_S
            assert step >= 0
            assert value == SIGNAL[step % len(SIGNAL)]

    # Started again with the same file, the server adds no second commitment.
    async with running_serve(data_dir, *options):
        pass
    with Store.open(data_dir=data_dir) as store:
        assert [c.external_id for c in store.commitments()] == ["commitments.csv:2"]


# --- 2. OpenADR ------------------------------------------------------------------------


async def test_openadr_flags_register_the_ven_and_store_a_dispatch_limit(tmp_path: Path) -> None:
    resources = tmp_path / "resources.csv"
    resources.write_text(f"resource_id,site_id\nr-depot,{SITE}\n")
    sites = tmp_path / "sites.csv"
    sites.write_text(f"site_id,import_limit_kw,export_limit_kw\n{SITE},40,0\n")
    data_dir = tmp_path / "data"
    source = f"openadr:{VEN_NAME}"
    async with running_vtn(ven_id=VEN_ID, ven_name=VEN_NAME) as vtn:
        options = (
            "--sites",
            str(sites),
            "--openadr-vtn-url",
            vtn.url,
            "--openadr-ven-name",
            VEN_NAME,
            "--openadr-resources",
            str(resources),
        )
        async with running_serve(data_dir, *options) as serve:
            await until(lambda: bool(vtn.registered), timeout_s=30, what="the VEN to register")
            assert vtn.registered[0] == VEN_NAME
            assert f"OpenADR VEN {VEN_NAME} polling {vtn.url}" in serve.output()
            event_id = dispatch(vtn, target_kw=5.0)
            await until(lambda: event_id in vtn.opts, timeout_s=30, what="the opt answer")
            assert vtn.opts[event_id] == "optIn"
            with Store.open(data_dir=data_dir) as store:
                rows = [e for e in store.grid_events() if e.source == source]
                assert [(e.site_id, e.external_id) for e in rows] == [(SITE, f"{event_id}/0/0")]
                assert rows[0].import_limit_kw == 5.0
                assert rows[0].ends_at is not None
                assert rows[0].ends_at - rows[0].starts_at == timedelta(minutes=10)
                assert store.site_limits(datetime.now(UTC))[SITE][0] == 5.0
            assert serve.process.poll() is None  # still serving; stops on SIGTERM with 0


# --- 3. bad input ----------------------------------------------------------------------


@pytest.fixture
def bad_commitments(tmp_path: Path) -> Path:
    """A first row that is fine and a second whose end is before its start."""
    path = tmp_path / "bad.csv"
    start = datetime(2026, 7, 1, 10, tzinfo=UTC)
    path.write_text(
        "starts_at,ends_at,capacity_kw\n"
        f"{_at(start)},{_at(start + timedelta(hours=1))},20\n"
        f"{_at(start + timedelta(hours=2))},{_at(start + timedelta(hours=1))},20\n"
    )
    return path


def test_a_bad_commitments_file_stops_serve_and_stores_nothing(
    tmp_path: Path, bad_commitments: Path
) -> None:
    data_dir = tmp_path / "data"
    done = subprocess.run(
        _serve_command(data_dir, "--regulation-commitments", str(bad_commitments)),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        env={**os.environ, "COLUMNS": "80"},
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert re.fullmatch(
        rf"error: {re.escape(str(bad_commitments))}: row 3, field ends_at: "
        r"2026-07-01T11:00:00\+00:00 is not after starts_at",
        lines[0],
    ), lines[0]
    with Store.open(data_dir=data_dir) as store:
        assert store.commitments() == []
