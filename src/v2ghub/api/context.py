"""What the web API reads: the live store, the control loop's latest instant, the stations
connected now, the settlement ledger and the metrics; one :class:`ApiContext` per app."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from fastapi import Request

from v2ghub.live.clock import Clock
from v2ghub.live.grid_services import GridServices
from v2ghub.live.live_state import LiveStatus
from v2ghub.live.metrics import LiveMetrics
from v2ghub.regulation.live_score import LiveRegulationHour
from v2ghub.store.regulation import SignalSample
from v2ghub.store.repository import Store

LOG = logging.getLogger(__name__)


def _nobody() -> frozenset[str]:
    return frozenset()


@dataclass(frozen=True)
class RegulationLive:
    """The grid services' figures the web API shows: the last instant's regulation
    assignment (None before the first) and the signal broadcaster's counts (None without
    a broadcaster). Made on the control loop's side, read whole by the API."""

    mode: str | None = None
    capacity_kw: float = 0.0
    participants: int = 0
    raise_kw: float = 0.0
    lower_kw: float = 0.0
    left_out_kw: float = 0.0
    assigned: bool = False
    """Whether an instant has assigned regulation yet (the figures above are its)."""
    broadcasting: bool = False
    following_stations: int = 0
    last_signal: float | None = None
    last_signal_at: datetime | None = None
    broadcasts: int = 0
    messages: int = 0
    answers: dict[str, int] = field(default_factory=dict)


def regulation_live(services: GridServices) -> RegulationLive:
    """The figures of ``services`` now (on the control loop's thread, or copied from it:
    ``dict()`` of a Counter copies it in one step while the loop may be counting)."""
    latest = services.latest
    broadcaster = services.broadcaster
    figures = RegulationLive()
    if latest is not None:
        figures = replace(
            figures,
            mode=None if latest.mode is None else latest.mode.value,
            capacity_kw=latest.capacity_kw,
            participants=latest.participants,
            raise_kw=latest.raise_kw,
            lower_kw=latest.lower_kw,
            left_out_kw=latest.left_out_kw,
            assigned=True,
        )
    if broadcaster is not None:
        figures = replace(
            figures,
            broadcasting=True,
            following_stations=len(broadcaster.participants),
            last_signal=broadcaster.last_signal,
            last_signal_at=broadcaster.last_signal_at,
            broadcasts=broadcaster.broadcasts,
            messages=broadcaster.messages,
            answers=dict(broadcaster.answers),
        )
    return figures


class Control(Protocol):
    """The running control loop as the web API reaches it: in the same process
    (:class:`ControlLink`) or from the web API's own process
    (:class:`v2ghub.api.mirror.RemoteControl`)."""

    def replan(self, reason: str) -> bool:
        """Ask for a plan soon; whether the loop was there to ask."""
        ...

    def post_signal(self, samples: Sequence[SignalSample]) -> bool:
        """Hand recorded signal samples to the broadcaster; whether there is one."""
        ...

    def regulation(self) -> RegulationLive | None:
        """The grid services' figures now; None when ``serve`` runs none."""
        ...


@dataclass(frozen=True)
class ControlLink:
    """The control loop as the web API's thread reaches it in the same process: the event
    loop it runs on (the OCPP server's, not the web's), its re-plan trigger and its grid
    services. Everything handed over goes through ``loop.call_soon_threadsafe``."""

    loop: asyncio.AbstractEventLoop
    trigger: Callable[[str], None]
    """The control loop's :meth:`~v2ghub.live.control.ControlLoop.trigger`."""
    grid_services: GridServices | None = None

    def _call(self, function: Callable[..., object], *args: object) -> bool:
        try:
            self.loop.call_soon_threadsafe(function, *args)
        except RuntimeError:  # the loop is closed: the server is stopping
            LOG.warning("the control loop is gone: %s not handed over", function)
            return False
        return True

    def replan(self, reason: str) -> bool:
        return self._call(self.trigger, reason)

    def post_signal(self, samples: Sequence[SignalSample]) -> bool:
        services = self.grid_services
        if services is None or services.broadcaster is None:
            return False
        return self._call(services.broadcaster.post, list(samples))

    def regulation(self) -> RegulationLive | None:
        return None if self.grid_services is None else regulation_live(self.grid_services)


@dataclass
class ApiContext:
    """Everything the routes read.

    ``status`` is the control loop's (None when ``serve`` shows only a run folder);
    ``connected`` gives the ids of the stations connected now and ``measured`` their latest
    metered power (both in memory, from the OCPP server); ``timezone`` is the
    city's, in which times are shown.
    """

    store: Store
    clock: Clock
    timezone: ZoneInfo
    status: LiveStatus | None = None
    connected: Callable[[], frozenset[str]] = _nobody
    measured: Callable[[], dict[str, float]] = dict
    """The latest metered power per station, kW."""
    site_limits: dict[str, tuple[float, float]] = field(default_factory=dict)
    """The configured (import, export) limits per site, kW (``serve --sites``)."""
    unknown_site_limits: tuple[float, float] = (math.inf, 0.0)
    """Limits of a site neither configured nor under a grid event."""
    metrics: LiveMetrics = field(default_factory=LiveMetrics)
    ledger_path: Path | None = None
    run_folder: Path | None = None
    control_interval_s: float = 60.0
    plan_rows: dict[frozenset[str] | None, object] = field(
        default_factory=dict, repr=False, compare=False
    )
    """Per set of visible sites, the latest plan's rows as the API shows them
    (:func:`v2ghub.api.fleet.fleet_now` keeps them, to make them once per plan)."""
    control: Control | None = None
    """The running control loop (None: none, or not reachable from here)."""
    regulation_hours: dict[tuple[int, datetime], LiveRegulationHour] = field(
        default_factory=dict, repr=False, compare=False
    )
    """Scored committed hours that can no longer change, by (commitment, hour start)
    (:mod:`v2ghub.api.regulation_view` keeps them: an hour is scored once)."""

    def now(self) -> datetime:
        return self.clock.now()

    def local(self, at: datetime) -> datetime:
        """``at`` in the city's time zone (ISO 8601 with its offset in JSON)."""
        return at.astimezone(self.timezone)


def context(request: Request) -> ApiContext:
    """The app's context (a FastAPI dependency)."""
    api: ApiContext = request.app.state.api
    return api
