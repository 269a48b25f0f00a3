"""An OCPP 1.6J station not built on the Python ``ocpp`` package holds the real server to
the official 1.6 schemas: ``tests/node_ocpp16/client.mjs`` (Node.js, ocpp-rpc in strict
mode, which validates every frame both ways) charges one vehicle at Shenzhen's evening
peak while the control loop runs, and what it reports is checked against the store.

Needs ``node`` (skipped without it) and the client's packages (``npm ci`` in
``tests/node_ocpp16``, which ``make pytest`` runs wherever node is installed).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from v2ghub.live.clock import ScaledClock
from v2ghub.live.live_problem import ControlSettings, LiveSite, warm_up
from v2ghub.live.security import hash_password
from v2ghub.live.server import CsmsServer, ServerSettings, profile_id
from v2ghub.planning import make_planner
from v2ghub.store.records import EventKind
from v2ghub.store.repository import Store

CLIENT_DIR = Path(__file__).parent / "node_ocpp16"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None, reason="node is not installed: the Node.js OCPP 1.6 client cannot run"
)

PEAK = datetime(2026, 7, 1, 9, 30, tzinfo=UTC)
"""17:30 in Shenzhen: the July evening peak (17-19), with flat and valley hours ahead."""
SPEED = 60.0
"""A simulated minute per wall second: the client meters 30 s of charging every 0.5 s."""
STATION = "NODE16"
PASSWORD = "node-client-password-0123456789"
STATION_MAX_W = 11_000
SITE_IMPORT_LIMIT_KW = 40.0
METER_START_WH = 12_345
METER_VALUES = 3
CLIENT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Run:
    """What the client did: its exit code, the line naming what went wrong (if it failed),
    its report, and the store after it."""

    returncode: int
    failure: str | None
    report: dict[str, Any]
    store: Store


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """One charging session, shared by the tests (it takes a few seconds)."""
    if NODE is None:
        pytest.skip("node is not installed")
    if not (CLIENT_DIR / "node_modules" / "ocpp-rpc").is_dir():
        pytest.fail(f"the client's packages are not installed: run `npm ci` in {CLIENT_DIR}")
    folder = tmp_path_factory.mktemp("node16")
    store = Store.open(data_dir=folder / "data")
    store.add_station(
        STATION,
        site_id="s1",
        password_hash=hash_password(PASSWORD),
        max_power_kw=STATION_MAX_W / 1000,
    )
    try:
        returncode, out, err = asyncio.run(serve_one_session(store, folder, NODE))
        yield client_run(returncode, out, err, store)
    finally:
        store.close()


async def serve_one_session(store: Store, folder: Path, node: str) -> tuple[int, str, str]:
    """Serve while the Node.js station runs (a subprocess: the server keeps serving), with
    the control loop planning on a clock at the peak; its exit code, stdout and stderr."""
    clock = ScaledClock(PEAK, SPEED)
    control_settings = ControlSettings(
        city="Shenzhen",
        sites=(LiveSite("s1", import_limit_kw=SITE_IMPORT_LIMIT_KW, export_limit_kw=0.0),),
    )
    planner = make_planner("fast")
    # As `v2ghub serve` does: the first plan must not wait for the planner's compile.
    await asyncio.to_thread(warm_up, planner, control_settings, now=clock.now())
    settings = ServerSettings(host="127.0.0.1", port=0, tls_folder=folder / "tls")
    async with CsmsServer(store, settings, clock=clock) as server:
        control = server.control_loop(planner, control_settings)
        stop = asyncio.Event()
        loop_task = asyncio.create_task(control.run(stop))
        try:
            process = await asyncio.create_subprocess_exec(
                node,
                "client.mjs",
                f"--url={server.url}/ocpp",
                f"--station={STATION}",
                f"--meter-start={METER_START_WH}",
                f"--max-power-w={STATION_MAX_W}",
                f"--meter-values={METER_VALUES}",
                "--meter-interval-ms=500",
                f"--speed={SPEED:g}",
                "--timeout-ms=15000",
                cwd=CLIENT_DIR,
                env={**os.environ, "OCPP_PASSWORD": PASSWORD},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                out, err = await asyncio.wait_for(process.communicate(), CLIENT_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()
                pytest.fail(f"the Node.js client did not finish in {CLIENT_TIMEOUT_S:g} s")
        finally:
            stop.set()
            await loop_task
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def client_run(returncode: int, out: str, err: str, store: Store) -> Run:
    """Read the client's one JSON line: on stdout when it succeeded, after the line that
    says what went wrong on stderr when it failed."""
    if returncode == 0:
        failure, lines = None, out.splitlines()
    else:
        failure, *lines = err.splitlines() or [f"exit {returncode} and nothing on stderr"]
    if len(lines) != 1:
        pytest.fail(f"the client ended with {returncode}, without its report: {failure}\n{out}")
    report: dict[str, Any] = json.loads(lines[0])
    if report["stoppedAt"] is None:
        pytest.fail(f"the client did not finish its session: {failure}")
    return Run(returncode, failure, report, store)


def profiles(report: dict[str, Any], purpose: str) -> list[dict[str, Any]]:
    return [p for p in report["profiles"] if p["purpose"] == purpose]


def test_the_station_is_served_within_the_1_6_schemas(run: Run) -> None:
    report = run.report
    assert report["protocol"] == "ocpp1.6"
    assert report["schemaViolations"] == []
    assert report["unexpectedCalls"] == []
    assert report["problems"] == []
    assert run.failure is None
    assert report["boot"]["status"] == "Accepted"
    assert report["boot"]["interval"] == 300
    assert report["configurationAsked"] == [
        ["ChargingScheduleAllowedChargingRateUnit", "ConnectorPhaseRotation", "NumberOfConnectors"]
    ]
    transaction = report["transactionId"]
    assert isinstance(transaction, int)
    assert transaction > 0
    assert report["stopAnswer"] == {"idTagInfo": {"status": "Accepted"}}


def test_the_tx_profile_leaves_the_evening_peak_out(run: Run) -> None:
    report = run.report
    transaction = report["transactionId"]
    [default] = profiles(report, "TxDefaultProfile")
    assert (default["connectorId"], default["transactionId"]) == (0, None)
    assert (default["kind"], default["unit"]) == ("Relative", "W")
    assert default["limits"] == [STATION_MAX_W]  # the site's 40 kW for its one station
    [tx_profile, *later] = profiles(report, "TxProfile")
    assert (tx_profile["connectorId"], tx_profile["transactionId"]) == (1, transaction)
    assert tx_profile["chargingProfileId"] == profile_id(1, str(transaction))
    assert (tx_profile["kind"], tx_profile["unit"]) == ("Absolute", "W")
    # 17:30: peak until 19:00, then enough flat and valley hours to fill the vehicle, so
    # the plan charges nothing now where the TxDefaultProfile alone would allow 11 kW.
    assert tx_profile["limits"] == [0]
    assert [p["limits"] for p in later] == [[0]] * len(later)
    [composite] = report["compositeSchedules"]
    assert (composite["connectorId"], composite["chargingRateUnit"]) == (1, "W")
    assert composite["answeredLimit"] == 0
    assert [cleared["id"] for cleared in report["cleared"]] == [tx_profile["chargingProfileId"]]
    # Metered at the TxProfile's limit: no power, a register that stands still.
    values = report["meterValues"]
    assert len(values) == METER_VALUES
    assert [(v["limitW"], v["powerW"]) for v in values] == [(0, 0)] * METER_VALUES
    assert {v["energyWh"] for v in values} == {report["meterStop"]}
    assert run.store.events(kind=EventKind.SETPOINT_NOT_ACCEPTED) == []
    assert run.store.events(kind=EventKind.PLANNER_FALLBACK) == []


def test_malformed_frames_get_a_call_error_and_the_connection_stays_up(run: Run) -> None:
    report = run.report
    not_json, wrong_type, extra_field = report["callErrors"]
    assert [error["sent"] for error in report["callErrors"]] == [
        '[2,"bad-1","Heartbeat",',
        '[2,"bad-2","StartTransaction",{"connectorId":"one"}]',
        '[2,"bad-3","Heartbeat",{"unexpected":true}]',
    ]
    assert not_json["messageId"] == "-1"  # a frame that cannot be read has no id
    assert not_json["errorDetails"] == {"cause": "Message is not valid JSON"}
    assert wrong_type["messageId"] == "bad-2"
    assert wrong_type["errorCode"] == "TypeConstraintViolation"
    assert wrong_type["errorDetails"] == {"cause": "'one' is not of type 'integer'"}
    assert extra_field["messageId"] == "bad-3"
    assert "'unexpected' was unexpected" in extra_field["errorDetails"]["cause"]
    heartbeat = datetime.fromisoformat(report["heartbeatAfterMalformed"])
    assert heartbeat >= datetime.fromisoformat(report["startedAt"])


def test_call_errors_carry_1_6_error_codes(run: Run) -> None:
    codes = [error["errorCode"] for error in run.report["callErrors"]]
    assert codes == ["FormationViolation", "TypeConstraintViolation", "FormationViolation"]
    assert (run.returncode, run.failure, run.report["problems"]) == (0, None, [])


def test_the_store_holds_the_session_as_the_client_reported_it(run: Run) -> None:
    report = run.report
    transaction = str(report["transactionId"])
    [session] = [s for s in run.store.sessions() if s.transaction_id == transaction]
    assert (session.station_id, session.evse_id, session.id_token) == (STATION, 1, "NODE-TAG-1")
    assert session.started_at == datetime.fromisoformat(report["startedAt"])
    assert session.ended_at == datetime.fromisoformat(report["stoppedAt"])
    assert session.stopped_reason == "EVDisconnected"
    assert session.start_import_register_wh == report["meterStart"] == METER_START_WH
    assert session.import_register_wh == report["meterStop"]
    # Until its TxProfile came, the vehicle drew the TxDefaultProfile's 11 kW.
    assert session.imported_wh == report["meterStop"] - METER_START_WH > 0
    readings = [
        (s.measured_at, s.import_register_wh) for s in run.store.meter_samples(STATION, transaction)
    ]
    reported = [
        (datetime.fromisoformat(report["startedAt"]), METER_START_WH),
        *((datetime.fromisoformat(v["timestamp"]), v["energyWh"]) for v in report["meterValues"]),
        (datetime.fromisoformat(report["stoppedAt"]), report["meterStop"]),
    ]
    assert readings == reported
