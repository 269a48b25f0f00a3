"""``v2ghub serve`` runs its web API in a process of its own (:mod:`v2ghub.api.web_process`).

- The copy of the control loop's state the web process reads (:mod:`v2ghub.api.mirror`)
  comes over a real pipe whole and only when changed, rows the web process read from the
  store are not added twice, and the web process's commands reach the loop.
- End to end, ``serve`` as a real subprocess on SQLite with two simulated chargers: the
  API shows the plugged vehicles from the copy, a site limit made through the API changes
  the next setpoints, ``/metrics`` carries both processes' metrics once each, the web
  process runs niced, and it ends with ``serve``: stopped in order, or killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import socket
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np

from tests.openadr_vtn import until
from tests.test_serve_grid_services import _regulation_fleet, _serve_command, running_serve
from v2ghub.api.context import RegulationLive
from v2ghub.api.mirror import LoopSide, Mirror, MirrorPublisher, MirrorUpdate, RemoteControl
from v2ghub.api.web_process import WEB_NICENESS
from v2ghub.live.chargers import ChargerFleet, FleetConfig
from v2ghub.live.clock import SystemClock
from v2ghub.live.live_state import LiveStatus, PlanSnapshot, SitePlan, SitePowerLog
from v2ghub.live.metrics import LiveMetrics
from v2ghub.live.security import generate_password, hash_password
from v2ghub.regulation.envelope import EnvelopeHour
from v2ghub.store.api_tokens import Role, new_token
from v2ghub.store.records import EventKind
from v2ghub.store.repository import Store
from v2ghub.store.site_power import SitePowerRecord

T0 = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
SITE = "depot"
LIMIT_KW = 4.0
DEADLINE_S = 90.0  # a deadline for a hang on a busy machine, not a timing assert


def _snapshot(at: datetime, planned_kw: float) -> PlanSnapshot:
    envelope = EnvelopeHour(
        start=at,
        planned_kw=planned_kw,
        plugged=1,
        durations_h=(0.25,),
        raise_kw=np.array([2.0]),
        lower_kw=np.array([3.0]),
    )
    site = SitePlan(SITE, 40.0, 0.0, planned_kw, (planned_kw, 0.0), 1)
    return PlanSnapshot(
        at=at,
        planner="fast",
        fallback_reason=None,
        plan_time_s=0.01,
        step=timedelta(minutes=15),
        sites=(site,),
        vehicles=(),
        envelope=envelope,
    )


def _row(at: datetime, planned_kw: float) -> SitePowerRecord:
    return SitePowerRecord(SITE, at, None, planned_kw, 40.0, 0.0, 1)


def test_the_copy_comes_whole_once_per_change_and_commands_reach_the_loop() -> None:
    ours, theirs = multiprocessing.get_context("spawn").Pipe(duplex=True)
    status = LiveStatus()
    triggers: list[str] = []
    metrics = LiveMetrics()
    metrics.drop_web()
    metrics.ocpp_messages.labels(action="Heartbeat").inc(3)
    side = LoopSide(
        status=status,
        connected=lambda: frozenset({"CP-1"}),
        measured=lambda: {"CP-1": 7.5},
        metrics=metrics,
        trigger=triggers.append,
    )
    publisher = MirrorPublisher(ours, side)
    # The web process primed its log from the store up to T0 + 1 min.
    mirror = Mirror(status=LiveStatus(power_log=SitePowerLog()))
    mirror.status.power_log.prime([_row(T0, 1.0), _row(T0 + timedelta(minutes=1), 2.0)], since=T0)
    mirror.primed_until = T0 + timedelta(minutes=1)

    first = _snapshot(T0 + timedelta(minutes=2), 5.0)
    status.publish(first)
    status.power_log.append([_row(T0 + timedelta(minutes=1), 2.0)])  # stored before priming
    status.power_log.append([_row(T0 + timedelta(minutes=2), 5.0)])
    assert publisher.send()
    update = theirs.recv()
    assert isinstance(update, MirrorUpdate)
    mirror.apply(update)
    assert mirror.status.latest == first
    assert (mirror.status.plans, mirror.connected, mirror.measured_kw) == (
        1,
        frozenset({"CP-1"}),
        {"CP-1": 7.5},
    )
    assert b'v2ghub_ocpp_messages_total{action="Heartbeat"} 3.0' in mirror.metrics_text
    assert b"v2ghub_api_request_seconds" not in mirror.metrics_text
    (series,) = mirror.status.power_log.series(
        start=T0, end=T0 + timedelta(minutes=3), origin=T0, site_ids=None
    )
    assert series.planned_kw.tolist() == [1.0, 2.0, 5.0]  # the minute-1 row once

    # Nothing changed: the snapshot is not sent again, and the copy keeps it.
    assert publisher.send()
    update = theirs.recv()
    assert (update.latest_changed, update.latest, update.setpoints, update.power_rows) == (
        False,
        None,
        None,
        (),
    )
    mirror.apply(update)
    assert mirror.status.latest == first

    # The web process's commands: a re-plan reaches the loop's trigger; a signal needs a
    # broadcaster, which this loop has not.
    remote = RemoteControl(theirs, mirror)
    assert remote.replan("grid event 7")
    publisher._take_command()
    assert triggers == ["grid event 7"]
    assert remote.post_signal([]) is False
    assert remote.regulation() is None
    mirror.regulation = RegulationLive(broadcasting=True, broadcasts=4)
    assert remote.regulation() == RegulationLive(broadcasting=True, broadcasts=4)
    ours.close()
    assert not publisher.send()  # the web process's end is gone: said once, not raised
    theirs.close()


async def test_a_web_process_slow_to_read_never_holds_the_chargers_event_loop() -> None:
    ours, theirs = multiprocessing.get_context("spawn").Pipe(duplex=True)
    # An update far larger than the pipe's buffer: writing it waits for the reader.
    measured = {f"CP-{k}": float(k) for k in range(100_000)}
    side = LoopSide(
        status=LiveStatus(),
        connected=frozenset,
        measured=lambda: measured,
        metrics=LiveMetrics(),
        trigger=lambda _: None,
    )
    publisher = MirrorPublisher(ours, side, interval_s=0.05)
    loop_ran = threading.Event()
    waited: list[bool] = []
    received: list[MirrorUpdate] = []

    def slow_reader() -> None:
        # It reads only once the loop has run on (or after a deadline, so that a loop
        # held by the write fails the test instead of hanging it), then to the end.
        waited.append(loop_ran.wait(DEADLINE_S))
        with contextlib.suppress(EOFError, OSError):
            while True:
                received.append(theirs.recv())

    reader = threading.Thread(target=slow_reader, daemon=True)
    reader.start()
    publishing = asyncio.create_task(publisher.run())
    await asyncio.sleep(0.2)  # the first update is being written: the reader has not read
    loop_ran.set()
    await until(lambda: len(received) >= 2, timeout_s=DEADLINE_S, what="two updates")
    publishing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await publishing
    sent = publisher.updates_gathered
    ours.close()
    await asyncio.to_thread(reader.join, DEADLINE_S)
    theirs.close()
    assert waited == [True]  # the loop ran while the write waited
    # Every update gathered was written, in order, before the run ended.
    assert len(received) == sent
    assert all(update.measured_kw == measured for update in received)


def _urgent_fleet(url: str, passwords: dict[str, str]) -> FleetConfig:
    """Two vehicles that need more than their chargers can give before they leave: every
    planner charges them at full power at once, whatever the hour's prices."""
    return _regulation_fleet(
        url, passwords, dwell_h=(1.5, 1.5), arrival_soc=(0.2, 0.2), target_soc=(0.9, 0.9)
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started with multiprocessing (its resource tracker aside)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    children = [int(child) for child in path.read_text().split()]
    return [
        child for child in children if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def _nice(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])  # the 19th field of stat, counted after the command's name


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _prepare(data_dir: Path, tmp_path: Path) -> tuple[dict[str, str], str, Path]:
    passwords = {f"SIM000{k}": generate_password() for k in (1, 2)}
    token = new_token()
    with Store.open(data_dir=data_dir) as store:
        for station_id, password in passwords.items():
            store.add_station(
                station_id,
                site_id=SITE,
                password_hash=hash_password(password),
                v2x_allowed=True,
                max_power_kw=11.0,
            )
        store.add_token("ops", role=Role.ADMIN, token=token, at=datetime.now(UTC))
    sites = tmp_path / "sites.csv"
    sites.write_text(f"site_id,import_limit_kw,export_limit_kw\n{SITE},40,40\n")
    return passwords, token, sites


async def test_serve_runs_its_web_api_in_a_niced_process_of_its_own(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    passwords, token, sites = _prepare(data_dir, tmp_path)
    port = _free_port()
    headers = {"Authorization": f"Bearer {token}"}
    options = ("--sites", str(sites), "--api-port", str(port))
    async with running_serve(data_dir, *options, api=True) as serve:
        await until(
            lambda: "dashboard on" in serve.output(), timeout_s=DEADLINE_S, what="the web API"
        )
        web_pid = _children(serve.process.pid)
        assert len(web_pid) == 1, web_pid
        assert _nice(web_pid[0]) - _nice(serve.process.pid) == WEB_NICENESS
        assert f"dashboard on http://127.0.0.1:{port}/" in serve.output()
        fleet = ChargerFleet(_urgent_fleet(serve.url, passwords), clock=SystemClock())
        stop = asyncio.Event()
        fleet_task = asyncio.create_task(fleet.run(stop=stop))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as web:
            try:
                now: dict[str, object] = {}

                async def poll_fleet() -> None:
                    while True:
                        if fleet_task.done():
                            fleet_task.result()
                            raise AssertionError("the chargers stopped")
                        answer = await web.get("/api/v1/fleet/now")
                        assert answer.status_code == 200, answer.text
                        now.update(answer.json())
                        if now["plugged_vehicles"] == 2 and len(now["setpoints"]) == 2:  # type: ignore[arg-type]
                            return
                        await asyncio.sleep(0.2)

                await asyncio.wait_for(poll_fleet(), DEADLINE_S)
                assert {v["station_id"] for v in now["vehicles"]} == set(passwords)  # type: ignore[attr-defined]

                before = [s["setpoint_kw"] for s in now["setpoints"]]  # type: ignore[attr-defined]
                assert sum(before) > LIMIT_KW, before  # the limit will bind
                made_at = datetime.now(UTC)
                made = await web.post(
                    "/api/v1/grid-events/site-limits",
                    json={"site_id": SITE, "import_limit_kw": LIMIT_KW, "reason": "test"},
                )
                assert made.status_code == 201, made.text
                sent: list[float] = []

                async def poll_setpoints() -> None:
                    while True:
                        answer = (await web.get("/api/v1/fleet/now")).json()
                        fresh = [
                            s["setpoint_kw"]
                            for s in answer["setpoints"]
                            if datetime.fromisoformat(s["sent_at"]) > made_at
                        ]
                        if len(fresh) == 2:
                            sent[:] = fresh
                            return
                        await asyncio.sleep(0.2)

                await asyncio.wait_for(poll_setpoints(), DEADLINE_S)
                assert sum(sent) <= LIMIT_KW + 1e-6, sent

                health = await web.get("/health")
                assert health.status_code == 200, health.text
                assert health.json()["control_loop_alive"] is True
                assert health.json()["connected_stations"] == 2
                text = (await web.get("/metrics")).text
            finally:
                stop.set()
                await fleet_task
        helps = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP")]
        assert len(helps) == len(set(helps)), sorted(helps)
        assert "v2ghub_api_request_seconds" in helps
        assert "v2ghub_ocpp_messages_total" in helps
        assert "v2ghub_connected_stations 2.0" in text
    # serve stopped in order (exit 0, checked by running_serve): its web process with it.
    assert not _alive(web_pid[0])
    with Store.open(data_dir=data_dir) as store:
        (event,) = store.events(kind=EventKind.API_WRITE)
        assert event.actor == "ops"
        assert f"{SITE}" in (event.detail or "")


async def test_the_web_process_ends_when_serve_is_killed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _, _, sites = _prepare(data_dir, tmp_path)
    port = _free_port()
    command = _serve_command(data_dir, "--sites", str(sites), "--api-port", str(port), api=True)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        await until(
            lambda: "dashboard on" in log.read_text(errors="replace") or process.poll() is not None,
            timeout_s=DEADLINE_S,
            what="serve and its web API to listen",
        )
        assert process.poll() is None, log.read_text()
        (web_pid,) = _children(process.pid)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as web:
            assert (await web.get("/health")).json()["store_reachable"] is True
        os.kill(process.pid, signal.SIGKILL)
        await asyncio.to_thread(process.wait)
        await until(lambda: not _alive(web_pid), timeout_s=DEADLINE_S, what="the web process")
        with socket.socket() as probe:  # its port is free again
            probe.bind(("127.0.0.1", port))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
