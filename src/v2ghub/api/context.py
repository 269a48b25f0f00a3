"""What the web API reads: the live store, the control loop's latest instant, the stations
connected now, the settlement ledger and the metrics; one :class:`ApiContext` per app."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi import Request

from v2ghub.live.clock import Clock
from v2ghub.live.live_state import LiveStatus
from v2ghub.live.metrics import LiveMetrics
from v2ghub.store.repository import Store


def _nobody() -> frozenset[str]:
    return frozenset()


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

    def now(self) -> datetime:
        return self.clock.now()

    def local(self, at: datetime) -> datetime:
        """``at`` in the city's time zone (ISO 8601 with its offset in JSON)."""
        return at.astimezone(self.timezone)


def context(request: Request) -> ApiContext:
    """The app's context (a FastAPI dependency)."""
    api: ApiContext = request.app.state.api
    return api
