"""What the control loop last decided, kept in memory for the web API and the dashboard.

After every control instant the loop publishes one immutable :class:`PlanSnapshot`: per
site the planned net power now and over the horizon with the limits in force, per vehicle
its stored energy against its target and its setpoint, and the fleet's flexibility
envelope (:func:`v2ghub.regulation.envelope.fleet_envelope`, the same arithmetic as the
twin's). Readers take the whole snapshot (one reference read), so they never see half of
an instant and never touch the database for it.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from v2ghub.model.headroom import PluggedFleet
from v2ghub.model.problem import Problem, Schedule
from v2ghub.regulation.envelope import ENVELOPE_DURATIONS_H, EnvelopeHour, fleet_envelope
from v2ghub.store.records import Setpoint
from v2ghub.store.site_power import HOLD, SitePowerRecord, SiteSeries

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SitePlan:
    """One site at a control instant: limits in force and its planned net power, kW."""

    site_id: str
    import_limit_kw: float
    export_limit_kw: float
    planned_kw: float
    plan_ahead_kw: tuple[float, ...]
    """Planned net power per step of the plan, from now (the first is ``planned_kw``)."""
    plugged: int


@dataclass(frozen=True)
class VehicleState:
    """A plugged vehicle as the loop planned it."""

    station_id: str
    evse_id: int
    transaction_id: str
    site_id: str
    energy_kwh: float
    target_energy_kwh: float
    energy_max_kwh: float
    planned_kw: float
    departure_at: datetime


@dataclass(frozen=True)
class PlanSnapshot:
    """The control loop's latest instant."""

    at: datetime
    planner: str
    fallback_reason: str | None
    plan_time_s: float
    step: timedelta
    sites: tuple[SitePlan, ...]
    vehicles: tuple[VehicleState, ...]
    envelope: EnvelopeHour

    @property
    def planned_kw(self) -> float:
        return float(sum(site.planned_kw for site in self.sites))


@dataclass
class LiveStatus:
    """The loop's latest snapshot and its running counts (written by the loop only)."""

    latest: PlanSnapshot | None = None
    plans: int = 0
    fallbacks: int = 0
    failures: int = 0
    started_monotonic_s: float = field(default_factory=time.monotonic)
    last_instant_monotonic_s: float | None = None
    """When the loop last finished an instant (monotonic wall seconds)."""
    setpoints: tuple[Setpoint, ...] = ()
    """The last setpoint sent to each plugged session, with its answer."""
    power_log: SitePowerLog = field(default_factory=lambda: SitePowerLog())  # noqa: PLW0108 - defined below
    """Each site's power at each instant of the last day (the history's recent part)."""

    def publish(self, snapshot: PlanSnapshot) -> None:
        self.latest = snapshot
        self.plans += 1
        if snapshot.fallback_reason is not None:
            self.fallbacks += 1
        self.last_instant_monotonic_s = time.monotonic()

    def failed(self) -> None:
        self.failures += 1
        self.last_instant_monotonic_s = time.monotonic()

    def seconds_since_instant(self) -> float | None:
        if self.last_instant_monotonic_s is None:
            return None
        return time.monotonic() - self.last_instant_monotonic_s


def snapshot(
    problem: Problem,
    schedule: Schedule,
    *,
    at: datetime,
    site_ids: tuple[str, ...],
    rows: tuple[tuple[str, int, str], ...],
    setpoint_kw: FloatArray,
    plan_time_s: float,
    durations_h: tuple[float, ...] = ENVELOPE_DURATIONS_H,
) -> PlanSnapshot:
    """The snapshot of one instant: ``problem`` planned as ``schedule``, whose first step
    was sent as ``setpoint_kw`` (one per row of ``rows``: station, EVSE, transaction)."""
    n_rows = len(rows)
    n_sites = len(site_ids)
    power_kw = np.asarray(schedule.power_kw, dtype=np.float64)
    steps = power_kw.shape[1] if power_kw.ndim == 2 and power_kw.shape[0] else 1
    ahead = np.zeros((n_sites, steps))
    if power_kw.shape[0]:
        np.add.at(ahead, problem.site_index, power_kw[:, :steps])
    plugged = np.bincount(problem.site_index[:n_rows], minlength=n_sites)
    sent_by_site = np.bincount(
        problem.site_index[:n_rows], weights=setpoint_kw[:n_rows], minlength=n_sites
    )
    sites = tuple(
        SitePlan(
            site_id=site_ids[k],
            import_limit_kw=float(problem.import_limit_kw[k]),
            export_limit_kw=float(problem.export_limit_kw[k]),
            planned_kw=float(sent_by_site[k]),
            plan_ahead_kw=tuple(float(v) for v in ahead[k]),
            plugged=int(plugged[k]),
        )
        for k in range(n_sites)
    )
    grid = problem.grid
    hours_to_departure = (problem.departure_step[:n_rows] * grid.dt_h).astype(np.float64)
    fleet = PluggedFleet.of(problem, setpoint_kw[:n_rows])
    envelope = fleet_envelope(
        fleet, start=at, hours_to_departure=hours_to_departure, durations_h=durations_h
    )
    step = grid.step
    vehicles = tuple(
        VehicleState(
            station_id=station_id,
            evse_id=evse_id,
            transaction_id=transaction_id,
            site_id=site_ids[int(problem.site_index[i])],
            energy_kwh=float(problem.energy_kwh[i]),
            target_energy_kwh=float(problem.target_energy_kwh[i]),
            energy_max_kwh=float(problem.energy_max_kwh[i]),
            planned_kw=float(setpoint_kw[i]),
            departure_at=grid.start
            + timedelta(seconds=int(problem.departure_step[i]) * step.total_seconds()),
        )
        for i, (station_id, evse_id, transaction_id) in enumerate(rows)
    )
    return PlanSnapshot(
        at=at,
        planner=schedule.planner,
        fallback_reason=schedule.fallback_reason,
        plan_time_s=plan_time_s,
        step=step,
        sites=sites,
        vehicles=vehicles,
        envelope=envelope,
    )


class MeasuredPower:
    """The latest metered power of every EVSE, as readings arrive (no database read).

    A TransactionEvent names its EVSE only in its first message: the EVSE of each
    transaction is remembered from then. A transaction that ends, or a station that
    disconnects, no longer counts.
    """

    def __init__(self) -> None:
        self._latest: dict[tuple[str, int], tuple[float, datetime]] = {}
        self._evse_of: dict[tuple[str, str], int] = {}

    def evse(self, station_id: str, transaction_id: str, evse_id: int | None) -> int | None:
        """The EVSE of a transaction: ``evse_id`` if given (and remembered), else the one
        its first event named."""
        key = (station_id, transaction_id)
        if evse_id is not None:
            self._evse_of[key] = evse_id
            return evse_id
        return self._evse_of.get(key)

    def note(self, station_id: str, evse_id: int, power_kw: float, at: datetime) -> None:
        key = (station_id, evse_id)
        last = self._latest.get(key)
        if last is None or at >= last[1]:
            self._latest[key] = (power_kw, at)

    def ended(self, station_id: str, transaction_id: str) -> None:
        evse_id = self._evse_of.pop((station_id, transaction_id), None)
        if evse_id is not None:
            self._latest.pop((station_id, evse_id), None)

    def disconnected(self, station_id: str) -> None:
        for key in [key for key in self._latest if key[0] == station_id]:
            del self._latest[key]

    def by_station(self) -> dict[str, float]:
        """Summed latest power per station, kW."""
        totals: dict[str, float] = {}
        for (station_id, _), (power_kw, _) in list(self._latest.items()):
            totals[station_id] = totals.get(station_id, 0.0) + power_kw
        return totals


class SitePowerLog:
    """The sites' power as the loop recorded it since the server started, kept for
    ``keep`` (a day and a bit) so that a history of the recent hours is read from memory,
    not from the database (:mod:`v2ghub.store.site_power` has the same rows). Kept per
    site as columns of numbers, so that a read is a slice, not a loop over rows. The control
    loop writes and the web API's threads read: a lock keeps the columns of a site the same
    length for every reader."""

    def __init__(self, keep: timedelta = timedelta(hours=26)) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._sites: dict[str, tuple[list[float], list[float], list[float]]] = {}
        """Per site: times (s since 1970), measured kW (NaN: none), planned kW."""
        self._since_s: float | None = None
        self._listeners: list[Callable[[Sequence[SitePowerRecord]], None]] = []

    def listen(self, listener: Callable[[Sequence[SitePowerRecord]], None]) -> None:
        """Call ``listener`` with each instant's rows as they are appended (the web API's
        own process follows the log so)."""
        self._listeners.append(listener)

    def prime(self, records: Sequence[SitePowerRecord], *, since: datetime) -> None:
        """Start from the stored rows from ``since`` on (all of them, in time order): a
        server that restarts still answers the last day from memory."""
        with self._lock:
            self._sites = {}
            self._since_s = since.timestamp()
            self._add(records)

    def append(self, records: Sequence[SitePowerRecord]) -> None:
        """Add one instant's rows (instants come in time order)."""
        if not records:
            return
        oldest_s = records[-1].at.timestamp() - self.keep.total_seconds()
        with self._lock:
            if self._since_s is None:
                self._since_s = records[0].at.timestamp()
            self._add(records)
            if self._since_s < oldest_s:
                self._since_s = oldest_s
                for times, measured, planned in self._sites.values():
                    cut = bisect.bisect_left(times, oldest_s)
                    if cut:
                        del times[:cut], measured[:cut], planned[:cut]
        for listener in self._listeners:
            listener(records)

    def _add(self, records: Sequence[SitePowerRecord]) -> None:
        for row in records:
            times, measured, planned = self._sites.setdefault(row.site_id, ([], [], []))
            times.append(row.at.timestamp())
            measured.append(math.nan if row.measured_kw is None else row.measured_kw)
            planned.append(row.planned_kw)

    def covers(self, since: datetime) -> bool:
        """Whether every row from ``since`` on is here."""
        return self._since_s is not None and self._since_s <= since.timestamp()

    def series(
        self,
        *,
        start: datetime,
        end: datetime,
        origin: datetime,
        site_ids: frozenset[str] | None,
    ) -> list[SiteSeries]:
        """As :func:`v2ghub.store.site_power.site_power_series` reads them."""
        first_s, end_s, origin_s = (start - HOLD).timestamp(), end.timestamp(), origin.timestamp()
        columns: list[tuple[str, list[float], list[float], list[float]]] = []
        with self._lock:
            for site_id in sorted(self._sites):
                if site_ids is not None and site_id not in site_ids:
                    continue
                times, measured, planned = self._sites[site_id]
                lo = bisect.bisect_left(times, first_s)
                hi = bisect.bisect_left(times, end_s)
                if hi > lo:
                    columns.append((site_id, times[lo:hi], measured[lo:hi], planned[lo:hi]))
        series: list[SiteSeries] = []
        for site_id, times_s, measured_kw, planned_kw in columns:
            series.append(
                SiteSeries(
                    site_id,
                    np.round(np.array(times_s) - origin_s, 3),
                    np.array(measured_kw, dtype=np.float64),
                    np.array(planned_kw, dtype=np.float64),
                )
            )
        return series
