"""`kill -9` of `v2ghub serve` in the middle of a stream of meter values loses nothing that
was acknowledged, and the station resumes its transaction on the restarted server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from v2ghub.live.security import basic_header, generate_password, hash_password
from v2ghub.store.repository import Store

STATION = "CP-KILL"
TRANSACTION = "T-42"
WH_PER_EVENT = 25
LISTENING = re.compile(r"listening on (ws://127\.0\.0\.1:\d+)/")


def _event(seq_no: int, *, event_type: str = "Updated", offline: bool = False) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "timestamp": f"2026-07-01T02:{seq_no // 60 % 60:02d}:{seq_no % 60:02d}Z",
        "triggerReason": "CablePluggedIn" if event_type == "Started" else "MeterValuePeriodic",
        "seqNo": seq_no,
        "offline": offline,
        "transactionInfo": {"transactionId": TRANSACTION},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [
            {
                "timestamp": f"2026-07-01T02:{seq_no // 60 % 60:02d}:{seq_no % 60:02d}Z",
                "sampledValue": [
                    {"value": seq_no * WH_PER_EVENT, "measurand": "Energy.Active.Import.Register"},
                    {"value": 0, "measurand": "Energy.Active.Export.Register"},
                ],
            }
        ],
    }


async def _start_server(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "v2ghub.cli",
            "serve",
            "--port",
            "0",
            "--no-api",
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert server.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(server.stdout.readline), 60)
    found = LISTENING.search(line)
    assert found, f"the server did not start: {line!r}"
    return server, found.group(1)


def _close(server: subprocess.Popen[str]) -> None:
    if server.stdout is not None:
        server.stdout.close()


async def _send(ws: ClientConnection, seq_no: int, **options: Any) -> None:
    unique_id = f"m{seq_no}"
    await ws.send(json.dumps([2, unique_id, "TransactionEvent", _event(seq_no, **options)]))
    while True:
        answer = json.loads(await ws.recv())
        if answer[0] != 2:
            break
        # The server's own request (a charging profile): accepted, as a station would.
        await ws.send(json.dumps([3, answer[1], {"status": "Accepted"}]))
    assert answer[:2] == [3, unique_id], answer


def _connect(url: str, password: str) -> Any:
    return connect(
        f"{url}/{STATION}",
        subprotocols=[Subprotocol("ocpp2.1")],
        additional_headers={"Authorization": basic_header(STATION, password)},
    )


async def test_kill_minus_9_loses_no_acknowledged_meter_value(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    password = generate_password()
    with Store.open(data_dir=data_dir) as store:
        store.add_station(STATION, site_id="depot", password_hash=hash_password(password))

    server, url = await _start_server(data_dir)
    acknowledged: list[int] = []
    killed = asyncio.Event()

    async def kill_after(count: int) -> None:
        while len(acknowledged) < count:
            await asyncio.sleep(0.001)
        os.kill(server.pid, signal.SIGKILL)  # in the middle of the stream
        killed.set()

    try:
        async with _connect(url, password) as ws:
            await _send(ws, 0, event_type="Started")
            acknowledged.append(0)
            killer = asyncio.create_task(kill_after(150))
            seq_no = 1
            try:
                while True:
                    await _send(ws, seq_no)
                    acknowledged.append(seq_no)
                    seq_no += 1
            except ConnectionClosed:
                pass
            await killer
    finally:
        server.kill()
        server.wait()
        _close(server)
    assert killed.is_set()
    assert server.returncode == -signal.SIGKILL
    in_flight = seq_no  # sent, perhaps stored, never acknowledged

    # Every acknowledged reading is in the database, and nothing else but the one in flight.
    with Store.open(data_dir=data_dir) as store:
        stored = [s.seq_no for s in store.meter_samples(STATION, TRANSACTION)]
    assert len(acknowledged) >= 150
    assert stored[: len(acknowledged)] == acknowledged
    assert stored in (acknowledged, [*acknowledged, in_flight])

    # Restarted, the station resends what was not acknowledged (offline) and goes on: one
    # transaction, each reading once.
    server, url = await _start_server(data_dir)
    try:
        async with _connect(url, password) as ws:
            await _send(ws, in_flight, offline=True)
            await _send(ws, in_flight + 1)
            await _send(ws, in_flight + 2, event_type="Ended")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        _close(server)
    with Store.open(data_dir=data_dir) as store:
        samples = store.meter_samples(STATION, TRANSACTION)
        sessions = store.sessions()
    assert [s.seq_no for s in samples] == list(range(in_flight + 3))
    assert len(sessions) == 1
    assert sessions[0].ended_at is not None
    assert sessions[0].imported_wh == (in_flight + 2) * WH_PER_EVENT


# --- OCPP 1.6 ------------------------------------------------------------------------------

STATION_16 = "CP-KILL-16"
START_16 = datetime(2026, 7, 1, 4, 0, tzinfo=UTC)


def _answer_16(action: str) -> dict[str, Any]:
    """What a 1.6 station answers the server's own requests."""
    return {"configurationKey": []} if action == "GetConfiguration" else {"status": "Accepted"}


async def _call_16(
    ws: ClientConnection, unique_id: str, action: str, payload: dict[str, Any]
) -> Any:
    await ws.send(json.dumps([2, unique_id, action, payload]))
    while True:
        answer = json.loads(await ws.recv())
        if answer[0] != 2:
            break
        await ws.send(json.dumps([3, answer[1], _answer_16(answer[2])]))
    assert answer[:2] == [3, unique_id], answer
    return answer[2]


def _values_16(transaction_id: int, k: int) -> dict[str, Any]:
    at = (START_16 + timedelta(seconds=k)).isoformat().replace("+00:00", "Z")
    sampled = [{"value": str(k * WH_PER_EVENT), "measurand": "Energy.Active.Import.Register"}]
    return {
        "connectorId": 1,
        "transactionId": transaction_id,
        "meterValue": [{"timestamp": at, "sampledValue": sampled}],
    }


def _connect_16(url: str, password: str) -> Any:
    return connect(
        f"{url}/{STATION_16}",
        subprotocols=[Subprotocol("ocpp1.6")],
        additional_headers={"Authorization": basic_header(STATION_16, password)},
    )


async def test_kill_minus_9_loses_no_acknowledged_1_6_meter_value(tmp_path: Path) -> None:
    """The same for a 1.6 station: every MeterValues the server answered is stored, and
    after a restart the one in flight and the StopTransaction are stored once."""
    data_dir = tmp_path / "data"
    password = generate_password()
    with Store.open(data_dir=data_dir) as store:
        store.add_station(STATION_16, site_id="depot", password_hash=hash_password(password))

    server, url = await _start_server(data_dir)
    acknowledged: list[int] = []
    try:
        async with _connect_16(url, password) as ws:
            start = {
                "connectorId": 1,
                "idTag": "T",
                "meterStart": 0,
                "timestamp": START_16.isoformat(),
            }
            transaction_id = (await _call_16(ws, "s", "StartTransaction", start))["transactionId"]
            k = 1
            try:
                while True:
                    if len(acknowledged) == 150:
                        os.kill(server.pid, signal.SIGKILL)  # in the middle of the stream
                    await _call_16(ws, f"m{k}", "MeterValues", _values_16(transaction_id, k))
                    acknowledged.append(k)
                    k += 1
            except ConnectionClosed:
                pass
    finally:
        server.kill()
        server.wait()
        _close(server)
    assert server.returncode == -signal.SIGKILL
    in_flight = k
    with Store.open(data_dir=data_dir) as store:
        stored = [
            s.import_register_wh // WH_PER_EVENT
            for s in store.meter_samples(STATION_16, str(transaction_id))
        ]
    assert len(acknowledged) >= 150
    assert stored[: len(acknowledged) + 1] == [0, *acknowledged]
    assert stored in ([0, *acknowledged], [0, *acknowledged, in_flight])

    server, url = await _start_server(data_dir)
    try:
        async with _connect_16(url, password) as ws:
            await _call_16(ws, "r1", "MeterValues", _values_16(transaction_id, in_flight))
            await _call_16(ws, "r2", "MeterValues", _values_16(transaction_id, in_flight))  # again
            stop_at = (START_16 + timedelta(seconds=in_flight + 1)).isoformat()
            stop = {
                "transactionId": transaction_id,
                "meterStop": (in_flight + 1) * WH_PER_EVENT,
                "timestamp": stop_at,
            }
            await _call_16(ws, "r3", "StopTransaction", stop)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        _close(server)
    with Store.open(data_dir=data_dir) as store:
        samples = store.meter_samples(STATION_16, str(transaction_id))
        sessions = store.sessions()
    assert [s.import_register_wh // WH_PER_EVENT for s in samples] == list(range(in_flight + 2))
    assert len(sessions) == 1
    assert sessions[0].ended_at is not None
    assert sessions[0].imported_wh == (in_flight + 1) * WH_PER_EVENT
