"""The OpenADR 2.0b VEN beside ``v2ghub serve``: registers with a VTN, polls it, turns its
events into store rows (:mod:`v2ghub.live.openadr_mapping`) and sends it reports.

The VEN runs in the server's event loop (``async with OpenAdrVen(...)``), on the
``openleadr`` client. It drives registration and polling itself, so that a VTN that is
down, or answers something that is not a valid OpenADR message, is retried with a growing
pause (``retry_first_s`` doubling up to ``retry_most_s``) and logged (once per outage in
the store's event log, kind ``openadr``), and never stops the CSMS. Events already become
store rows with their ends, so the limits the VTN last sent hold until each event ends
whether or not the VTN comes back.

Reports offered per resource: ``TELEMETRY_USAGE`` (the site's measured net power, kW, at
the control loop's last instant; resources of one site each report the site) and
``TELEMETRY_STATUS`` as two numbers (openleadr 0.5 sends numeric payloads only):
``RESOURCE-online`` (1 while the control loop has planned within three control intervals)
and ``RESOURCE-event`` (1 while a grid event is in force at the site).

Event times are the VTN's: the VEN is meant for the system clock (``serve`` refuses it
with ``--clock-start``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from openleadr import OpenADRClient

from v2ghub.errors import InputError
from v2ghub.live.clock import Clock
from v2ghub.live.control import ControlLoop
from v2ghub.live.live_problem import ControlSettings
from v2ghub.live.live_state import LiveStatus
from v2ghub.live.openadr_mapping import OPT_IN, OPT_OUT, Decision, Flexibility, SiteNow, decide
from v2ghub.live.openadr_resources import Resources, load_resources
from v2ghub.live.security import is_loopback
from v2ghub.store.openadr_events import VtnEventView
from v2ghub.store.records import Event, EventKind
from v2ghub.store.repository import Store

LOG = logging.getLogger(__name__)
FAILURES_BEFORE_REREGISTER = 3


@dataclass(frozen=True)
class VenSettings:
    """How the VEN reaches its VTN.

    Off loopback, messages are signed and checked: ``cert``, ``key`` (PEM, ours) and
    ``vtn_fingerprint`` (the VTN's certificate) are required. ``poll_s`` overrides the
    VTN's poll frequency; ``report_sampling_s`` is the shortest sampling rate offered.
    """

    vtn_url: str
    ven_name: str
    resources: Resources
    cert: Path | None = None
    key: Path | None = None
    vtn_fingerprint: str | None = None
    ca_file: Path | None = None
    poll_s: float | None = None
    report_sampling_s: float = 10.0
    retry_first_s: float = 1.0
    retry_most_s: float = 60.0
    control_interval_s: float = 60.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.vtn_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--openadr-vtn-url: an http(s) URL, got {self.vtn_url!r}")
        if not self.ven_name:
            raise ValueError("--openadr-ven-name: give the VEN's name")
        if (self.cert is None) != (self.key is None):
            raise ValueError("give both --openadr-cert and --openadr-key, or neither")
        if self.cert is not None and self.ca_file is None:
            # openleadr checks the VTN's TLS certificate against it on every request.
            raise ValueError(
                "--openadr-cert needs --openadr-ca-file: the authority the VTN's "
                "certificate is checked against"
            )
        signed = self.cert is not None and self.vtn_fingerprint is not None
        if not is_loopback(parts.hostname) and not signed:
            raise ValueError(
                f"--openadr-vtn-url {self.vtn_url}: off loopback, messages must be signed: "
                "give --openadr-cert, --openadr-key and --openadr-vtn-fingerprint"
            )
        for name in ("report_sampling_s", "retry_first_s", "retry_most_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    @property
    def source(self) -> str:
        """Who the VEN's store rows say sent them."""
        return f"openadr:{self.ven_name}"


class OpenAdrVen:
    """The VEN, as an async context manager that runs it in the background.

    Parameters
    ----------
    settings
        The VTN, our name, the resources file and how to retry.
    store
        Where events become rows and opt decisions are logged.
    clock
        The records' times (the system clock: event times are the VTN's).
    status
        The control loop's latest plan (:class:`~v2ghub.live.live_state.LiveStatus`): the
        sites' planned power, the envelope and the measured power reported.
    import_limits_kw
        Each site's configured import limit, kW (for ``x-loadControlCapacity``).
    replan
        Asks the control loop to plan again (an event changed limits or prices).
    """

    def __init__(
        self,
        settings: VenSettings,
        *,
        store: Store,
        clock: Clock,
        status: LiveStatus,
        import_limits_kw: Mapping[str, float] | None = None,
        replan: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.status = status
        self.import_limits_kw = dict(import_limits_kw or {})
        self.replan = replan
        self.registered = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._answered = False
        self._outage = False
        self.client = self._make_client()

    def _make_client(self) -> OpenADRClient:
        s = self.settings
        client = OpenADRClient(
            ven_name=s.ven_name,
            vtn_url=s.vtn_url,
            cert=str(s.cert) if s.cert else None,
            key=str(s.key) if s.key else None,
            vtn_fingerprint=s.vtn_fingerprint,
            ca_file=str(s.ca_file) if s.ca_file else None,
            show_fingerprint=False,
            disable_signature=s.cert is None,
        )
        client.add_handler("on_event", self.on_event)
        client.add_handler("on_update_event", self.on_event)
        client.add_hook("after_parse_xml", self._answer_parsed)
        sampling = timedelta(seconds=s.report_sampling_s)
        for resource in s.resources.by_id.values():
            rid, site = resource.resource_id, resource.site_id
            client.add_report(
                callback=lambda site=site: self._usage_kw(site),
                resource_id=rid,
                measurement="power_real",
                unit="W",
                scale="k",
                sampling_rate=sampling,
                report_specifier_id=f"{s.ven_name}-usage",
                r_id=f"{rid}-power",
            )
            client.add_report(
                callback=self._online,
                resource_id=rid,
                report_name="TELEMETRY_STATUS",
                sampling_rate=sampling,
                report_specifier_id=f"{s.ven_name}-status",
                r_id=f"{rid}-online",
            )
            client.add_report(
                callback=lambda site=site: self._event_in_force(site),
                resource_id=rid,
                report_name="TELEMETRY_STATUS",
                sampling_rate=sampling,
                report_specifier_id=f"{s.ven_name}-status",
                r_id=f"{rid}-event",
            )
        return client

    async def __aenter__(self) -> OpenAdrVen:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._stop_client()

    async def _stop_client(self) -> None:
        client = self.client
        if client.scheduler.running:
            client.scheduler.shutdown(wait=False)
        if client.report_queue_task is not None:
            client.report_queue_task.cancel()
        if client.client_session is not None:
            await client.client_session.close()

    # Talking to the VTN ----------------------------------------------------------------

    async def _answer_parsed(self, message_type: str, payload: Any, *_: Any) -> None:
        # An OpenADR error (4xx, e.g. 463 when the VTN does not accept our certificate) is
        # an answer but not a successful exchange: openleadr only logs it.
        response = payload.get("response") if isinstance(payload, dict) else None
        code = response.get("response_code", 200) if isinstance(response, dict) else 200
        self._answered = str(code).startswith("2")

    async def _request(self, call: Callable[[], Any]) -> bool:
        """Run one exchange with the VTN; whether a valid OpenADR message came back."""
        self._answered = False
        try:
            await call()
        except Exception as error:  # openleadr raises on some bad answers, logs others
            LOG.warning("OpenADR exchange with %s failed: %s", self.settings.vtn_url, error)
            return False
        return self._answered

    async def _register(self) -> bool:
        client = self.client
        client.registration_id = None
        if not await self._request(client.query_registration):
            return False
        if not await self._request(lambda: client.create_party_registration(ven_id=client.ven_id)):
            return False
        if not client.registration_id:
            return False
        await self._request(lambda: client.register_reports(client.reports))
        client.loop = asyncio.get_running_loop()
        if client.report_queue_task is None or client.report_queue_task.done():
            client.report_queue_task = client.loop.create_task(client._report_queue_worker())
        if not client.scheduler.running:
            client.scheduler.start()
        await self._request(client.sync_events)
        return True

    async def _run(self) -> None:
        pause_s = self.settings.retry_first_s
        while True:
            if await self._register():
                pause_s = self.settings.retry_first_s
                await self._note_up(
                    f"registered with {self.settings.vtn_url} as {self.client.ven_id}"
                )
                self.registered.set()
                await self._poll_until_lost()
                self.registered.clear()
            await self._note_down("VTN unreachable or not answering OpenADR")
            await asyncio.sleep(pause_s)
            pause_s = min(pause_s * 2, self.settings.retry_most_s)

    async def _poll_until_lost(self) -> None:
        failures = 0
        pause_s = self.settings.retry_first_s
        while failures < FAILURES_BEFORE_REREGISTER:
            poll_s = self.settings.poll_s
            if poll_s is None:
                frequency = self.client.poll_frequency
                poll_s = frequency.total_seconds() if frequency else 10.0
            if await self._request(self.client._poll):
                failures, pause_s = 0, self.settings.retry_first_s
                await asyncio.sleep(poll_s)
                continue
            failures += 1
            LOG.warning("OpenADR poll failed (%d in a row); retrying in %g s", failures, pause_s)
            await asyncio.sleep(pause_s)
            pause_s = min(pause_s * 2, self.settings.retry_most_s)

    async def _note_up(self, detail: str) -> None:
        self._outage = False
        LOG.info("OpenADR: %s", detail)
        await self._log(EventKind.OPENADR, detail)

    async def _note_down(self, detail: str) -> None:
        if self._outage:
            return
        self._outage = True
        LOG.warning(
            "OpenADR: %s (%s); the limits already stored hold", detail, self.settings.vtn_url
        )
        await self._log(EventKind.OPENADR, f"{detail}: {self.settings.vtn_url}")

    async def _log(self, kind: EventKind, detail: str) -> None:
        event = Event(at=self.clock.now(), kind=kind, detail=detail)
        try:
            await asyncio.to_thread(self.store.record_event, event)
        except Exception:
            LOG.exception("could not record an OpenADR event")

    # Events ---------------------------------------------------------------------------

    def _sites_now(self) -> tuple[dict[str, SiteNow], Flexibility | None]:
        latest = self.status.latest
        planned = {site.site_id: site.planned_kw for site in latest.sites} if latest else {}
        sites = {
            site_id: SiteNow(
                site_id,
                planned.get(site_id, 0.0) if latest is not None else None,
                self.import_limits_kw.get(site_id, math.inf),
            )
            for site_id in self.settings.resources.site_ids
        }
        if latest is None:
            return sites, None
        envelope = latest.envelope
        flexibility = Flexibility(
            tuple(envelope.durations_h), tuple(float(v) for v in envelope.lower_kw)
        )
        return sites, flexibility

    async def on_event(self, event: dict[str, Any]) -> str:
        """openleadr's handler for a new or modified event: ``optIn`` or ``optOut``."""
        try:
            return await self._on_event(event)
        except Exception:
            LOG.exception("could not handle an OpenADR event; opting out")
            return OPT_OUT

    async def _on_event(self, event: dict[str, Any]) -> str:
        source = self.settings.source
        descriptor = event.get("event_descriptor") or {}
        event_id = str(descriptor.get("event_id", ""))
        known = await asyncio.to_thread(self.store.vtn_event, source, event_id)
        modification = int(descriptor.get("modification_number") or 0)
        if known is not None and known.modification_number == modification:
            return known.opt_state  # seen already (a restart's sync): nothing changes
        sites, flexibility = self._sites_now()
        decision = decide(
            event,
            resources=self.settings.resources,
            sites=sites,
            flexibility=flexibility,
            source=source,
        )
        now = self.clock.now()
        view = VtnEventView(
            source=source,
            vtn_event_id=decision.event_id[:128],
            modification_number=decision.modification_number,
            signal_name=decision.signal_name,
            site_ids=decision.site_ids,
            starts_at=decision.starts_at,
            ends_at=decision.ends_at,
            opt_state=decision.opt,
            opt_reason=decision.reason,
            status=decision.status,
            received_at=known.received_at if known else now,
            updated_at=now,
        )
        await asyncio.to_thread(
            self.store.apply_vtn_event,
            view,
            limits=decision.limits,
            prices=decision.prices,
            at=now,
        )
        await self._log(*_log_line(decision))
        if self.replan is not None:
            self.replan(f"OpenADR event {decision.event_id} ({decision.status})")
        return decision.opt

    # Reports --------------------------------------------------------------------------

    def _usage_kw(self, site_id: str) -> list[tuple[Any, float]] | float:
        """The site's measured net power at the last control instant, kW ([]: none)."""
        now = self.clock.now()
        series = self.status.power_log.series(
            start=now - timedelta(seconds=3 * self.settings.control_interval_s),
            end=now + timedelta(seconds=1),
            origin=now,
            site_ids=frozenset({site_id}),
        )
        for site in series:
            measured = site.measured_kw[~np.isnan(site.measured_kw)]
            if measured.size:
                return float(measured[-1])
        return []

    def _online(self) -> float:
        since_s = self.status.seconds_since_instant()
        limit_s = 3 * self.clock.seconds(self.settings.control_interval_s)
        return 1.0 if since_s is not None and since_s <= limit_s else 0.0

    async def _event_in_force(self, site_id: str) -> float:
        limits = await asyncio.to_thread(self.store.site_limits, self.clock.now())
        return 1.0 if site_id in limits else 0.0


def _log_line(decision: Decision) -> tuple[EventKind, str]:
    what = (
        f"OpenADR event {decision.event_id} modification {decision.modification_number} "
        f"({decision.signal_name}, {decision.status}, sites {','.join(decision.site_ids) or '-'})"
    )
    if decision.opt == OPT_IN:
        rows = len(decision.limits) + len(decision.prices)
        return EventKind.OPENADR, f"{what}: opted in, {rows} row(s): {decision.reason}"
    return EventKind.OPENADR_OPT_OUT, f"{what}: opted out: {decision.reason}"


def openadr_ven(
    args: Any, *, store: Store, clock: Clock, control: ControlLoop, settings: ControlSettings
) -> OpenAdrVen | None:
    """The VEN ``serve``'s options ask for (``--openadr-*``), or None without
    ``--openadr-vtn-url``; ``InputError`` naming the option for a bad one."""
    url = getattr(args, "openadr_vtn_url", None)
    if not url:
        return None
    if not args.openadr_ven_name:
        raise InputError("--openadr-vtn-url needs --openadr-ven-name")
    if args.openadr_resources is None:
        raise InputError("--openadr-vtn-url needs --openadr-resources (which site is which)")
    resources = load_resources(args.openadr_resources)
    try:
        ven_settings = VenSettings(
            vtn_url=url,
            ven_name=args.openadr_ven_name,
            resources=resources,
            cert=args.openadr_cert,
            key=args.openadr_key,
            vtn_fingerprint=args.openadr_vtn_fingerprint,
            ca_file=args.openadr_ca_file,
            control_interval_s=settings.control_interval_s,
        )
    except ValueError as error:
        raise InputError(str(error)) from None
    return OpenAdrVen(
        ven_settings,
        store=store,
        clock=clock,
        status=control.status,
        import_limits_kw={site.site_id: site.import_limit_kw for site in settings.sites},
        replan=control.trigger,
    )
