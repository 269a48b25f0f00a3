"""The OpenADR VEN end to end over loopback: a real openleadr VTN in the test process,
the real OCPP server with its store and control loop, simulated V2X chargers, on the
system clock (OpenADR event times are the VTN's wall clock).

Two vehicles charge at full power (the ``uncontrolled`` planner); the VTN sends a
``LOAD_DISPATCH`` target of 5 kW for the site; the site must meet it within two control
instants of the plan that carries the limit, the VTN must receive TELEMETRY_USAGE showing
it, and a cancel must end it (the row cancelled, the power back up).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web

from tests.openadr_vtn import dispatch, free_port, running_vtn, until
from v2ghub.live.chargers import ChargerFleet, make_fleet_config
from v2ghub.live.clock import SystemClock
from v2ghub.live.control import ControlLoop
from v2ghub.live.live_problem import ControlSettings, LiveSite
from v2ghub.live.openadr_resources import Resource, Resources
from v2ghub.live.openadr_ven import OpenAdrVen, VenSettings
from v2ghub.live.security import generate_password, hash_password
from v2ghub.live.server import CsmsServer, ServerSettings
from v2ghub.planning import make_planner
from v2ghub.store.records import EventKind
from v2ghub.store.repository import Store

SITE = "depot"
VEN_NAME = "depot-ven"
VEN_ID = "ven-1"
TARGET_KW = 5.0
TOLERANCE_KW = 0.3  # setpoints go out in 0.1 kW steps, meters round
CONTROL_INTERVAL_S = 2.0


@dataclass
class Live:
    store: Store
    control: ControlLoop
    ven: OpenAdrVen

    def site_kw(self) -> float | None:
        """The site's measured power at the last control instant, kW."""
        rows = self.control.status.power_log.series(
            start=datetime.now(UTC) - timedelta(seconds=10),
            end=datetime.now(UTC) + timedelta(seconds=1),
            origin=datetime.now(UTC),
            site_ids=frozenset({SITE}),
        )
        if not rows or not rows[0].measured_kw.size:
            return None
        value = float(rows[0].measured_kw[-1])
        return None if math.isnan(value) else value


def control_settings() -> ControlSettings:
    """The depot's control loop: uncontrolled charging, grid events seen within 0.2 s."""
    return ControlSettings(
        city="Shenzhen",
        sites=(LiveSite(SITE, import_limit_kw=40.0, export_limit_kw=0.0),),
        planner="uncontrolled",
        control_interval_s=CONTROL_INTERVAL_S,
        grid_poll_s=0.2,
        debounce_s=0.1,
    )


@contextlib.asynccontextmanager
async def running_serve(store: Store, vtn_url: str) -> AsyncIterator[Live]:
    """The OCPP server, its control loop, two V2X chargers charging, and the VEN."""
    clock = SystemClock()
    passwords = {f"SIM000{k}": generate_password() for k in (1, 2)}
    for station_id, password in passwords.items():
        store.add_station(
            station_id, site_id=SITE, password_hash=hash_password(password), v2x_allowed=True
        )
    settings = control_settings()
    server_settings = ServerSettings(host="127.0.0.1", port=0, call_timeout_s=10)
    async with CsmsServer(store, server_settings, clock=clock) as server:
        control = server.control_loop(make_planner(settings.planner), settings)
        stop = asyncio.Event()
        loop_task = asyncio.create_task(control.run(stop))
        config = make_fleet_config(
            url=server.url,
            count=2,
            max_power_kw=11.0,
            seed=3,
            meter_interval_s=0.5,
            vehicles_per_station=1,
            first_arrival_within_s=1.0,
            dwell_h=(4.0, 4.0),
            arrival_soc=(0.5, 0.5),
            target_soc=(0.8, 0.8),
            min_soc=0.2,
        )
        stations = tuple(replace(s, password=passwords[s.station_id]) for s in config.stations)
        fleet = ChargerFleet(replace(config, stations=stations), clock=clock)
        fleet_task = asyncio.create_task(fleet.run(stop=stop))
        ven_settings = VenSettings(
            vtn_url=vtn_url,
            ven_name=VEN_NAME,
            resources=Resources({"r-depot": Resource("r-depot", SITE)}),
            poll_s=0.5,
            report_sampling_s=1.0,
            retry_first_s=0.2,
            retry_most_s=1.0,
            control_interval_s=CONTROL_INTERVAL_S,
        )
        ven = OpenAdrVen(
            ven_settings,
            store=store,
            clock=clock,
            status=control.status,
            import_limits_kw={SITE: 40.0},
            replan=control.trigger,
        )
        try:
            async with ven:
                yield Live(store, control, ven)
        finally:
            stop.set()
            await asyncio.gather(loop_task, fleet_task, return_exceptions=True)


def _instants_to_target(live: Live) -> int | None:
    """Control instants from the first that planned the event's limit until the first whose
    measured power met the target (0: the same instant); None: not met yet."""
    records = live.store.site_power_records(since=datetime.now(UTC) - timedelta(minutes=5))
    site = [r for r in records if r.site_id == SITE]
    first = next((k for k, r in enumerate(site) if r.import_limit_kw == TARGET_KW), None)
    if first is None:
        return None
    for k, record in enumerate(site[first:]):
        if record.measured_kw is not None and record.measured_kw <= TARGET_KW + TOLERANCE_KW:
            return k
    return None


async def test_a_dispatch_event_is_met_reported_and_cancelled(database_url: str) -> None:
    with Store.open(database_url=database_url) as store:
        async with (
            running_vtn(ven_id=VEN_ID, ven_name=VEN_NAME) as vtn,
            running_serve(store, vtn.url) as live,
        ):
            await until(live.ven.registered.is_set, timeout_s=20, what="registration")
            await until(lambda: (live.site_kw() or 0.0) > 10.0, timeout_s=20, what="both charging")
            event_id = dispatch(vtn, target_kw=TARGET_KW)
            await until(lambda: event_id in vtn.opts, timeout_s=10, what="the opt answer")
            assert vtn.opts[event_id] == "optIn"
            limits = store.site_limits(datetime.now(UTC))
            assert limits[SITE][0] == TARGET_KW
            rows = [e for e in store.grid_events() if e.source == f"openadr:{VEN_NAME}"]
            assert [e.external_id for e in rows] == [f"{event_id}/0/0"]
            assert rows[0].requested_reduction_kw is not None
            assert rows[0].requested_reduction_kw > 4.0
            await until(
                lambda: _instants_to_target(live) is not None,
                timeout_s=20,
                what="the site at its target",
            )
            # Met by the second control instant after the plan that carries the limit.
            assert (_instants_to_target(live) or 0) <= 2
            event_sent = datetime.now(UTC)
            await until(
                lambda: any(
                    at >= event_sent and kw <= TARGET_KW + TOLERANCE_KW for at, kw in vtn.usage_kw
                ),
                timeout_s=10,
                what="a TELEMETRY_USAGE report at the target",
            )

            vtn.server.cancel_event(VEN_ID, event_id)
            await until(
                lambda: SITE not in store.site_limits(datetime.now(UTC)),
                timeout_s=10,
                what="the cancel",
            )
            (row,) = [e for e in store.grid_events() if e.source == f"openadr:{VEN_NAME}"]
            assert row.cancelled_by == f"openadr:{VEN_NAME}"
            await until(lambda: (live.site_kw() or 0.0) > 10.0, timeout_s=20, what="power back up")
            (view,) = store.vtn_events()
            assert (view.status, view.modification_number) == ("cancelled", 1)


async def test_a_vtn_killed_mid_event_leaves_the_limit_and_the_csms_running(
    tmp_path: Path,
) -> None:
    with Store.open(data_dir=tmp_path) as store:
        async with (
            running_vtn(ven_id=VEN_ID, ven_name=VEN_NAME) as vtn,
            running_serve(store, vtn.url) as live,
        ):
            await until(live.ven.registered.is_set, timeout_s=20, what="registration")
            await until(lambda: (live.site_kw() or 0.0) > 10.0, timeout_s=20, what="both charging")
            event_id = dispatch(vtn, target_kw=TARGET_KW)
            await until(lambda: event_id in vtn.opts, timeout_s=10, what="the opt answer")
            await vtn.server.stop()
            await until(
                lambda: not live.ven.registered.is_set(), timeout_s=20, what="the VEN to notice"
            )
            plans = live.control.status.plans
            await until(
                lambda: live.control.status.plans >= plans + 3, timeout_s=20, what="more plans"
            )
            assert store.site_limits(datetime.now(UTC))[SITE][0] == TARGET_KW
            assert (live.site_kw() or 99.0) <= TARGET_KW + TOLERANCE_KW
            accepted = [s for s in live.control.status.setpoints if s.status == "Accepted"]
            assert len(accepted) == 2
            logged = [e.detail for e in store.events(kind=EventKind.OPENADR)]
            assert any("VTN unreachable" in detail for detail in logged)


async def test_a_vtn_that_answers_garbage_never_stops_the_csms(tmp_path: Path) -> None:
    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text="<oadr:not-openadr><<", content_type="application/xml")

    app = web.Application()
    app.router.add_post("/{tail:.*}", garbage)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        with Store.open(data_dir=tmp_path) as store:
            # A limit an earlier VTN sent holds until its end, whatever this one says.
            now = datetime.now(UTC)
            store.add_site_limit(
                SITE,
                import_limit_kw=TARGET_KW,
                export_limit_kw=None,
                starts_at=now,
                ends_at=now + timedelta(minutes=10),
                reason="OpenADR LOAD_DISPATCH",
                at=now,
                source=f"openadr:{VEN_NAME}",
                external_id="earlier/0/0",
            )
            async with running_serve(store, f"http://127.0.0.1:{port}/OpenADR2") as live:
                await until(
                    lambda: (
                        len([s for s in live.control.status.setpoints if s.status == "Accepted"])
                        == 2
                    ),
                    timeout_s=20,
                    what="setpoints accepted",
                )
                await until(
                    lambda: any(
                        "VTN unreachable" in e.detail for e in store.events(kind=EventKind.OPENADR)
                    ),
                    timeout_s=10,
                    what="the outage logged",
                )
                assert not live.ven.registered.is_set()
                await until(
                    lambda: (live.site_kw() or 99.0) <= TARGET_KW + TOLERANCE_KW,
                    timeout_s=20,
                    what="the stored limit kept",
                )
    finally:
        await runner.cleanup()
