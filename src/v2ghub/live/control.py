"""The live control loop: from the store's plugged sessions to setpoints sent to chargers.

At every control instant (every ``control_interval_s`` on the loop's clock, or soon after
:meth:`ControlLoop.trigger`) the loop reads the plugged sessions, builds the same
:class:`~v2ghub.model.problem.Problem` the twin builds (:mod:`v2ghub.live.live_problem`),
plans with a timeout and a charge-only fallback, turns the first step into one
:class:`SetpointCommand` per EVSE, sends those that are due concurrently, and records every
sent setpoint with the station's answer, and an event for every fallback and every answer
other than ``Accepted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import numpy.typing as npt

from v2ghub.live.clock import Clock
from v2ghub.live.grid_services import GridServices, PlanAt
from v2ghub.live.live_problem import ControlSettings, LiveProblem, LiveSite, build_problem, plan
from v2ghub.live.live_state import LiveStatus, snapshot
from v2ghub.live.outcomes import SendOutcome, SendStatus
from v2ghub.live.regulation_modes import RegulationShare
from v2ghub.live.store_seam import ControlStore, PriceStore
from v2ghub.live.write_limits import StorageAlarm
from v2ghub.model.problem import Planner, Schedule
from v2ghub.planning.limits import fit_site_limits, site_totals
from v2ghub.store.database import StorageError
from v2ghub.store.grid_prices import PriceEvent
from v2ghub.store.records import Event, EventKind, OcppVersion, PluggedSession, Setpoint
from v2ghub.store.regulation import BaselineStep, Commitment, Share
from v2ghub.store.site_power import SitePowerRecord
from v2ghub.units import SECONDS_PER_HOUR, w_to_kw

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

LOG = logging.getLogger(__name__)

BROADCAST_STOP_S = 10.0
"""How long a stopping loop waits for the regulation broadcast to write what it holds."""


@dataclass(frozen=True)
class SetpointCommand:
    """What one EVSE is told to do now.

    ``setpoint_kw`` is signed (+ charge, - discharge), within
    ``[-discharge_limit_kw, charge_limit_kw]``; both limits are magnitudes >= 0 and
    ``discharge_limit_kw`` is 0 for OCPP 2.0.1 stations and vehicles that may not discharge.
    """

    station_id: str
    evse_id: int
    transaction_id: str
    ocpp_version: OcppVersion
    site_id: str
    setpoint_kw: float
    charge_limit_kw: float
    discharge_limit_kw: float
    planner: str
    fallback_reason: str | None = None
    schedule_kw: tuple[float, ...] = ()
    """For a vehicle under ScheduledControl: the plan from now, one power a step (the first
    is ``setpoint_kw``); empty for a dynamic setpoint."""
    step_s: int = 0
    """Length of a step of ``schedule_kw``, seconds."""
    regulation: RegulationShare | None = None
    """For an EVSE that follows regulation or frequency: its shares around ``setpoint_kw``
    (the baseline), sent as an OCPP 2.1 frequency-mode profile
    (:mod:`v2ghub.live.regulation_shares`)."""

    @property
    def key(self) -> tuple[str, int, str]:
        """(station, EVSE, transaction): one command per key and instant."""
        return (self.station_id, self.evse_id, self.transaction_id)


def round_within_sites(
    power_kw: FloatArray,
    *,
    lower_kw: FloatArray,
    upper_kw: FloatArray,
    site_index: IntArray,
    import_limit_kw: FloatArray,
    export_limit_kw: FloatArray,
    resolution_kw: float,
) -> FloatArray:
    """Powers on a grid of ``resolution_kw`` (or at a vehicle's own limit), still within
    every vehicle's ``[lower_kw, upper_kw]`` and every site's ``[-export, import]``.

    Each power is rounded down (so no site imports more than before), then, at a site
    that would now export more than its limit, vehicles are raised toward their rounded-up
    value in row order until the site's sum is back at ``-export_limit_kw`` (the last one
    raised may stand between two grid values). Expects ``power_kw`` within all limits.
    """
    per_kw = 1.0 / resolution_kw
    units = np.round(power_kw * per_kw, 9)  # 0.3 / 0.1 is 2.9999999999999996
    # Divided, not multiplied: 66 / 10 is 6.6, 66 * 0.1 is 6.6000000000000005.
    down = np.clip(np.floor(units) / per_kw, lower_kw, upper_kw)
    up = np.clip(np.ceil(units) / per_kw, lower_kw, upper_kw)
    n_sites = import_limit_kw.shape[0]
    deficit_kw = np.maximum(-export_limit_kw - site_totals(site_index, down, n_sites), 0.0)
    if not np.any(deficit_kw > 0):
        return np.asarray(down)
    order = np.argsort(site_index, kind="stable")
    room = (up - down)[order]
    sites = site_index[order]
    before = np.cumsum(room) - room  # room of the earlier rows, all sites
    first_row = np.searchsorted(sites, np.arange(n_sites))
    site_before = np.concatenate((before, [0.0]))[first_row]
    raise_kw = np.clip(deficit_kw[sites] - (before - site_before[sites]), 0.0, room)
    raised = np.empty_like(down)
    raised[order] = raise_kw
    return np.asarray(down + raised)


MINIMUM_PASSES = 8


def _below_minimum(
    power_kw: FloatArray, min_charge_kw: FloatArray, min_discharge_kw: FloatArray
) -> npt.NDArray[np.bool_]:
    charging_too_little = (power_kw > 0) & (power_kw < min_charge_kw - 1e-9)
    discharging_too_little = (power_kw < 0) & (-power_kw < min_discharge_kw - 1e-9)
    return np.asarray(charging_too_little | discharging_too_little)


def respect_minimums(
    power_kw: FloatArray,
    *,
    min_charge_kw: FloatArray,
    min_discharge_kw: FloatArray,
    site_index: IntArray,
    import_limit_kw: FloatArray,
    export_limit_kw: FloatArray,
) -> FloatArray:
    """Setpoints a vehicle would not follow (below its least charging or discharging
    power) become 0, and every site is brought back within its limits.

    Stopping a small discharge can push a site over its import limit (and stopping a small
    charge over its export limit): the site is then fitted again
    (:func:`~v2ghub.planning.limits.fit_site_limits`), which may leave another setpoint
    below its minimum, and so on. Every pass only lowers powers, so it settles; a site
    still unsettled after ``MINIMUM_PASSES`` is left at rest (0 kW is within any limits).
    """
    small = _below_minimum(power_kw, min_charge_kw, min_discharge_kw)
    if not small.any():
        return power_kw
    power = np.asarray(power_kw, dtype=np.float64)
    for _ in range(MINIMUM_PASSES):
        power = np.where(small, 0.0, power)
        charge, discharge = fit_site_limits(
            charge_kw=np.maximum(power, 0.0),
            discharge_kw=np.maximum(-power, 0.0),
            must_charge_kw=np.zeros(power.shape[0]),
            site_index=site_index,
            import_limit_kw=import_limit_kw,
            export_limit_kw=export_limit_kw,
        )
        power = charge - discharge
        small = _below_minimum(power, min_charge_kw, min_discharge_kw)
        if not small.any():
            return power
    unsettled = np.isin(site_index, site_index[small])
    return np.where(unsettled, 0.0, power)


def setpoint_commands(
    live: LiveProblem, schedule: Schedule, *, resolution_w: int = 100
) -> list[SetpointCommand]:
    """The first step of ``schedule`` as one command per plugged session.

    Each power is clipped to its vehicle's limits (never negative for a vehicle that may not
    discharge, which includes every OCPP 2.0.1 station not configured for it), fitted into
    its site's limits pro rata
    (:func:`~v2ghub.planning.limits.fit_site_limits`), rounded by
    :func:`round_within_sites`, and set to 0 where below the vehicle's least power
    (:func:`respect_minimums`). The forecast rows (``Problem.expected_count``) are never sent.
    """
    problem = live.problem
    n = problem.n_plugged
    if n == 0:
        return []
    charge_limit = problem.max_charge_kw[:n]
    discharge_limit = problem.max_discharge_kw[:n]
    site_index = problem.site_index[:n]
    power = np.clip(schedule.power_kw[:n, 0], -discharge_limit, charge_limit)
    charge, discharge = fit_site_limits(
        charge_kw=np.maximum(power, 0.0),
        discharge_kw=np.maximum(-power, 0.0),
        must_charge_kw=np.zeros(n),
        site_index=site_index,
        import_limit_kw=problem.import_limit_kw,
        export_limit_kw=problem.export_limit_kw,
    )
    power = round_within_sites(
        charge - discharge,
        lower_kw=-discharge_limit,
        upper_kw=charge_limit,
        site_index=site_index,
        import_limit_kw=problem.import_limit_kw,
        export_limit_kw=problem.export_limit_kw,
        resolution_kw=w_to_kw(resolution_w),
    )
    if live.min_charge_kw is not None and live.min_discharge_kw is not None:
        power = respect_minimums(
            power,
            min_charge_kw=live.min_charge_kw[:n],
            min_discharge_kw=live.min_discharge_kw[:n],
            site_index=site_index,
            import_limit_kw=problem.import_limit_kw,
            export_limit_kw=problem.export_limit_kw,
        )
    power = power + 0.0  # no -0.0 in a command
    schedules = _schedules(live, schedule, power, resolution_kw=w_to_kw(resolution_w))
    return [
        SetpointCommand(
            station_id=key.station_id,
            evse_id=key.evse_id,
            transaction_id=key.transaction_id,
            ocpp_version=key.ocpp_version,
            site_id=live.site_ids[int(site_index[i])],
            setpoint_kw=float(power[i]),
            charge_limit_kw=float(charge_limit[i]),
            discharge_limit_kw=float(discharge_limit[i]),
            planner=schedule.planner,
            fallback_reason=schedule.fallback_reason,
            schedule_kw=schedules.get(i, ()),
            step_s=round(live.problem.dt_h * SECONDS_PER_HOUR) if i in schedules else 0,
        )
        for i, key in enumerate(live.rows[:n])
    ]


def _schedules(
    live: LiveProblem, schedule: Schedule, first_kw: FloatArray, *, resolution_kw: float
) -> dict[int, tuple[float, ...]]:
    """The plan of each ScheduledControl row until its departure: the command's first
    power, then the planner's (which keeps every site's limits in every step), clipped to
    the vehicle's limits and rounded down to ``resolution_kw``. A rule planner plans the
    control interval only: its vehicles get that one step, renewed at every instant."""
    problem = live.problem
    rows = [i for i, key in enumerate(live.rows[: problem.n_plugged]) if key.scheduled]
    schedules: dict[int, tuple[float, ...]] = {}
    for i in rows:  # the edge: a few vehicles' payloads, not the numeric core
        steps = min(max(int(problem.departure_step[i]), 1), schedule.power_kw.shape[1])
        later = np.clip(
            schedule.power_kw[i, 1:steps], -problem.max_discharge_kw[i], problem.max_charge_kw[i]
        )
        later = np.trunc(np.round(later / resolution_kw, 9)) * resolution_kw + 0.0
        schedules[i] = (float(first_kw[i]), *(float(kw) for kw in later))
    return schedules


Send = Callable[[SetpointCommand], Awaitable[SendOutcome]]
"""Sends a command to its station; returns what came of it (:class:`SendOutcome`)."""


@dataclass(frozen=True)
class _Sent:
    command: SetpointCommand
    outcome: SendOutcome
    at: datetime


@dataclass(frozen=True)
class _Planned:
    live: LiveProblem
    schedule: Schedule
    commands: list[SetpointCommand]
    plan_time_s: float
    commitment: Commitment | None = None


def _commitment_key(commitment: Commitment | None) -> tuple[int, float] | None:
    """What identifies the commitment a plan follows (an edited capacity is a change)."""
    return None if commitment is None else (commitment.commitment_id, commitment.capacity_kw)


def _accepted(task: asyncio.Future[SendOutcome]) -> bool:
    return task.done() and task.result().accepted


def _setpoint(command: SetpointCommand, outcome: SendOutcome, sent_at: datetime) -> Setpoint:
    return Setpoint(
        station_id=command.station_id,
        evse_id=command.evse_id,
        transaction_id=command.transaction_id,
        sent_at=sent_at,
        setpoint_kw=command.setpoint_kw,
        discharge_limit_kw=command.discharge_limit_kw,
        planner=command.planner,
        status=str(outcome),
        fallback_reason=command.fallback_reason,
    )


def with_grid_limits(
    settings: ControlSettings, grid_limits: dict[str, tuple[float, float]]
) -> ControlSettings:
    """``settings`` with the grid events' site limits in force instead of the configured
    ones (a site only a grid event names is added)."""
    if not grid_limits:
        return settings
    sites = [
        LiveSite(site.site_id, *grid_limits[site.site_id]) if site.site_id in grid_limits else site
        for site in settings.sites
    ]
    known = {site.site_id for site in settings.sites}
    sites += [
        LiveSite(site_id, *limits)
        for site_id, limits in grid_limits.items()
        if site_id not in known
    ]
    return replace(settings, sites=tuple(sites))


class ControlLoop:
    """Plans the plugged vehicles and sends their setpoints, at every control instant.

    Parameters
    ----------
    store
        Reads plugged sessions, records setpoints and events (:class:`ControlStore`).
    planner
        The planner (for example ``make_planner(settings.planner)``).
    settings
        Sites, city, defaults, interval, timeout and re-sending rule.
    clock
        The loop's clock: ``now()`` for the problem and the records; the control interval
        and ``refresh_s`` run on it (a scaled clock runs them faster).
    send
        Sends one command (the OCPP server's); must not raise, but if it does the error
        becomes the setpoint's status.
    measured
        The latest metered power per station, kW (the OCPP server's); recorded per site
        with the plan at every instant (:mod:`v2ghub.store.site_power`). None: not metered.
    grid_services
        Regulation commitments and frequency response followed, demand-response baselines
        kept (:mod:`v2ghub.live.grid_services`). None: none.

    A command is sent when it is due (see ``ControlSettings.resend_threshold_kw``); a
    session that is no longer plugged is forgotten. All of one instant's commands are sent
    concurrently.
    """

    def __init__(
        self,
        *,
        store: ControlStore,
        planner: Planner,
        settings: ControlSettings,
        clock: Clock,
        send: Send,
        measured: Callable[[], dict[str, float]] | None = None,
        grid_services: GridServices | None = None,
        storage_alarm: StorageAlarm | None = None,
    ) -> None:
        self.store = store
        self.storage_alarm = storage_alarm if storage_alarm is not None else StorageAlarm()
        """Says once a minute that the storage cannot take the loop's records."""
        self.grid_services = grid_services
        self._previous: PlanAt | None = None
        self.measured = measured
        self.planner = planner
        self.settings = settings
        self.clock = clock
        self.send = send
        self._last: dict[tuple[str, int, str], _Sent] = {}
        self._pending: dict[
            tuple[str, int, str], tuple[SetpointCommand, datetime, asyncio.Future[SendOutcome]]
        ] = {}
        self._notes: tuple[str, ...] = ()
        self._planner_busy = threading.Lock()
        self._triggered = asyncio.Event()
        self._grid_limits: dict[str, tuple[float, float]] | None = None
        self._reasons: list[str] = []
        self.status = LiveStatus()
        """The latest instant and the loop's counts, for the web API (:mod:`live_state`)."""

    def trigger(self, reason: str) -> None:
        """Ask for a plan soon (a new vehicle's needs, a grid event); call from the loop's
        thread. Triggers within ``debounce_s`` of the first are served by one plan."""
        self._reasons.append(reason)
        self._triggered.set()

    def _plan_now(
        self,
        sessions: Sequence[PluggedSession],
        now: datetime,
        grid_limits: dict[str, tuple[float, float]],
        *,
        prices: Sequence[PriceEvent] = (),
        commitment: Commitment | None = None,
        shares_held: dict[tuple[str, int, str], RegulationShare] | None = None,
    ) -> _Planned:
        settings = with_grid_limits(self.settings, grid_limits)
        regulation = None if commitment is None else (commitment.capacity_kw, commitment.ends_at)
        live = build_problem(
            sessions, now=now, settings=settings, prices=prices, regulation=regulation
        )
        started_s = time.perf_counter()
        schedule = plan(
            live,
            self.planner,
            timeout_s=settings.planner_timeout_s,
            tolerance_kw=settings.limit_tolerance_kw,
            busy=self._planner_busy,
        )
        plan_time_s = time.perf_counter() - started_s
        commands = setpoint_commands(live, schedule, resolution_w=settings.setpoint_resolution_w)
        if self.grid_services is not None:
            commands = self.grid_services.assign(
                live, commands, now=now, commitment=commitment, previous=shares_held
            )
        return _Planned(live, schedule, commands, plan_time_s, commitment)

    def _prices(self, now: datetime) -> list[PriceEvent]:
        """Price events over the horizon from ``now`` (none from a store without them)."""
        if not isinstance(self.store, PriceStore):
            return []
        horizon = self.settings.step * self.settings.horizon_steps
        return self.store.prices_overlapping(now, now + horizon)

    def _publish(self, planned: _Planned, now: datetime) -> list[SitePowerRecord]:
        """Publish the instant (:attr:`status`); each site's power, to record."""
        live = planned.live
        n = live.problem.n_plugged
        latest = snapshot(
            live.problem,
            planned.schedule,
            at=now,
            site_ids=live.site_ids,
            rows=tuple((r.station_id, r.evse_id, r.transaction_id) for r in live.rows[:n]),
            setpoint_kw=np.array([c.setpoint_kw for c in planned.commands], dtype=np.float64),
            plan_time_s=planned.plan_time_s,
        )
        self.status.publish(latest)
        by_station = self.measured() if self.measured is not None else {}
        measured_kw: dict[str, float] = {}
        for vehicle in latest.vehicles:
            power_kw = by_station.get(vehicle.station_id)
            if power_kw is not None:
                measured_kw[vehicle.site_id] = measured_kw.get(vehicle.site_id, 0.0) + power_kw
                by_station.pop(vehicle.station_id)  # a station's EVSEs are summed already
        return [
            SitePowerRecord(
                site_id=site.site_id,
                at=now,
                measured_kw=measured_kw.get(site.site_id),
                planned_kw=site.planned_kw,
                import_limit_kw=site.import_limit_kw,
                export_limit_kw=site.export_limit_kw,
                plugged=site.plugged,
            )
            for site in latest.sites
        ]

    def _due(self, command: SetpointCommand, now: datetime) -> bool:
        last = self._last.get(command.key)
        if last is None or not last.outcome.accepted:
            return True
        before = last.command
        return (
            (now - last.at).total_seconds() >= self.settings.refresh_s
            or abs(command.setpoint_kw - before.setpoint_kw) > self.settings.resend_threshold_kw
            or (command.setpoint_kw == 0) != (before.setpoint_kw == 0)
            or command.charge_limit_kw != before.charge_limit_kw
            or command.discharge_limit_kw != before.discharge_limit_kw
            or (command.regulation is None) != (before.regulation is None)
            or (
                command.regulation is not None
                and command.regulation.differs(
                    before.regulation, tolerance_kw=self.settings.resend_threshold_kw
                )
            )
        )

    def _lowers(self, command: SetpointCommand) -> bool:
        """Whether ``command`` brings its EVSE's power closer to zero than the setpoint
        in force (it makes room at its site, both ways)."""
        last = self._last.get(command.key)
        if last is None or not last.outcome.accepted:
            return False
        before = last.command.setpoint_kw
        return abs(command.setpoint_kw) < abs(before) and command.setpoint_kw * before >= 0

    def _start(self, commands: list[SetpointCommand], now: datetime) -> None:
        for command in commands:
            self._pending[command.key] = (
                command,
                now,
                asyncio.ensure_future(self._send_one(command)),
            )

    async def _send_one(self, command: SetpointCommand) -> SendOutcome:
        try:
            return await asyncio.wait_for(self.send(command), self.settings.send_timeout_s)
        except TimeoutError:
            detail = f"no answer within {self.settings.send_timeout_s:g} s"
            return SendOutcome(SendStatus.TIMEOUT, detail)
        except Exception as error:  # the status says what went wrong
            return SendOutcome(SendStatus.ERROR, f"{type(error).__name__}: {error}")

    async def run_once(self) -> list[Setpoint]:
        """One control instant: read, build, plan, send what is due, record.

        Returns the setpoints sent (with the stations' answers), as recorded.
        """
        now = self.clock.now()
        sessions = await asyncio.to_thread(self.store.plugged, now)
        grid_limits = await asyncio.to_thread(self.store.site_limits, now)
        self._grid_limits = grid_limits
        prices = await asyncio.to_thread(self._prices, now)
        services = self.grid_services
        commitment = None
        baselines: list[BaselineStep] = []
        if services is not None:
            commitment = await asyncio.to_thread(services.read_commitment, now)
            baselines = await asyncio.to_thread(services.baselines, self._previous, now)
        shares_held = {  # the shares in force now: kept while they fit
            key: sent.command.regulation
            for key, sent in self._last.items()
            if sent.outcome.accepted and sent.command.regulation is not None
        }
        planned = await asyncio.to_thread(
            self._plan_now,
            sessions,
            now,
            grid_limits,
            prices=prices,
            commitment=commitment,
            shares_held=shares_held,
        )
        self._previous = PlanAt(planned.live, planned.schedule, now)
        try:
            site_power = self._publish(planned, now)
            self.status.power_log.append(site_power)
        except Exception:  # what the web API shows must never stop the setpoints
            LOG.exception("could not publish the instant for the web API")
            site_power = []
        events: list[Event] = []
        reason = planned.schedule.fallback_reason
        if reason is not None:
            events.append(Event(at=now, kind=EventKind.PLANNER_FALLBACK, detail=reason))
        if planned.live.notes != self._notes:
            self._notes = planned.live.notes
            if self._notes:
                notes = "; ".join(self._notes)
                events.append(Event(at=now, kind=EventKind.ASSUMED, detail=notes))
        # A command still waiting for its station's answer is not sent again; answers that
        # take longer than ``send_wait_s`` are recorded at a later instant, so that one slow
        # station never holds up the next plan (and a new vehicle's first profile).
        due = [c for c in planned.commands if c.key not in self._pending and self._due(c, now)]
        # Room first: the EVSEs whose power falls in magnitude are told first, and the
        # others only once those at their site have accepted; a station that applies its
        # rise before another its fall would break the site's limit between the two.
        lowering = [c for c in due if self._lowers(c)]
        self._start(lowering, now)
        if lowering:
            first = [self._pending[c.key][2] for c in lowering]
            await asyncio.wait(first, timeout=self.settings.send_wait_s)
        held = {c.site_id for c in lowering if not _accepted(self._pending[c.key][2])}
        raising = [c for c in due if not self._lowers(c)]
        self._start([c for c in raising if c.site_id not in held], now)
        if held:
            LOG.info("rises held at %s until their falls are accepted", sorted(held))
        waiting = [task for _, _, task in self._pending.values()]
        if waiting:
            await asyncio.wait(waiting, timeout=self.settings.send_wait_s)
        current = {c.key for c in planned.commands}
        self._last = {key: sent for key, sent in self._last.items() if key in current}
        setpoints: list[Setpoint] = []
        finished: list[tuple[SetpointCommand, SendOutcome, datetime]] = []
        for key, (command, sent_at, task) in list(self._pending.items()):
            if not task.done():
                continue
            del self._pending[key]
            outcome = task.result()
            finished.append((command, outcome, sent_at))
            if key in current:
                self._last[key] = _Sent(command, outcome, sent_at)
            setpoints.append(_setpoint(command, outcome, sent_at))
            if not outcome.accepted:
                events.append(
                    Event(
                        at=now,
                        kind=EventKind.SETPOINT_NOT_ACCEPTED,
                        detail=(
                            f"EVSE {command.evse_id} transaction {command.transaction_id}: "
                            f"{command.setpoint_kw:g} kW answered {outcome}"
                        ),
                        station_id=command.station_id,
                    )
                )
        self.status.setpoints = tuple(
            _setpoint(sent.command, sent.outcome, sent.at) for sent in self._last.values()
        )
        shares: list[Share] = []
        if services is not None:
            shares = services.answered(finished)
            services.following((sent.command, sent.outcome) for sent in self._last.values())
        await asyncio.to_thread(self._record, setpoints, events, site_power, shares, baselines)
        return setpoints

    def _record(
        self,
        setpoints: list[Setpoint],
        events: list[Event],
        site_power: list[SitePowerRecord],
        shares: Sequence[Share] = (),
        baselines: Sequence[BaselineStep] = (),
    ) -> None:
        if setpoints:
            self.store.record_setpoints(setpoints)
        if self.grid_services is not None:
            if shares:
                self.grid_services.store.record_shares(shares)
            self.grid_services.record_baselines(baselines)
        self.store.record_site_power(site_power)
        for event in events:
            self.store.record_event(event)

    async def run(self, stop: asyncio.Event) -> None:
        """Run a control instant every ``control_interval_s`` (loop clock), or
        ``debounce_s`` wall seconds after a trigger, until ``stop`` is set. A failing
        instant is logged and recorded as an event; the loop goes on."""
        loop = asyncio.get_running_loop()
        watcher = asyncio.create_task(self._watch_grid_events(stop))
        broadcaster = None if self.grid_services is None else self.grid_services.broadcaster
        broadcast = None if broadcaster is None else asyncio.create_task(broadcaster.run(stop))
        try:
            await self._run(stop, loop)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if broadcast is not None:
                # Stopped: the broadcaster ends by itself and writes the signal samples it
                # holds (cancelled, it could drop them); cancelled if the loop failed or
                # the broadcaster hangs.
                if not stop.is_set():
                    broadcast.cancel()
                try:
                    await asyncio.wait_for(broadcast, timeout=BROADCAST_STOP_S)
                except asyncio.CancelledError:
                    pass  # cancelled just above: the loop itself failed or was cancelled
                except TimeoutError:
                    LOG.warning("the regulation broadcast did not stop in time")

    async def _watch_grid_events(self, stop: asyncio.Event) -> None:
        """Re-plan as soon as the site limits in force change (a grid event recorded by
        ``v2ghub site limit`` or the API, from any process, or one starting or ending),
        or the regulation commitment in force does (one starting, ending or cancelled)."""
        services = self.grid_services
        while not stop.is_set():
            await asyncio.sleep(self.settings.grid_poll_s)
            now = self.clock.now()
            try:
                limits = await asyncio.to_thread(self.store.site_limits, now)
                commitment = (
                    None
                    if services is None
                    else await asyncio.to_thread(services.read_commitment, now)
                )
            except Exception:
                LOG.exception("could not read the grid events")
                continue
            if self._grid_limits is not None and limits != self._grid_limits:
                self._grid_limits = limits
                self.trigger("grid event: site limits changed")
            if services is not None and _commitment_key(commitment) != _commitment_key(
                services.commitment
            ):
                services.commitment = commitment  # one trigger per change
                self.trigger("regulation: the commitment in force changed")

    async def _run(self, stop: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
        while not stop.is_set():
            started = loop.time()
            if self._reasons:
                LOG.debug("re-planning for: %s", "; ".join(self._reasons))
            self._triggered.clear()
            self._reasons.clear()
            try:
                await self.run_once()
            except StorageError as error:
                # The setpoints went out; only their record is lost, and the failure
                # could not be recorded either: said once a minute, not a traceback.
                self.status.failed()
                self.storage_alarm.note(error)
            except Exception as error:
                LOG.exception("control instant failed")
                self.status.failed()
                await self._record_failure(error)
            interval_s = self.clock.seconds(self.settings.control_interval_s)
            wait_s = max(0.0, interval_s - (loop.time() - started))
            if await self._wait(stop, wait_s) and not stop.is_set():
                await self._wait(stop, self.settings.debounce_s, triggers=False)

    async def _wait(self, stop: asyncio.Event, timeout_s: float, *, triggers: bool = True) -> bool:
        """Wait until ``stop``, a trigger (if ``triggers``) or the timeout; whether a
        trigger ended the wait."""
        waits = [asyncio.ensure_future(stop.wait())]
        if triggers:
            waits.append(asyncio.ensure_future(self._triggered.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return triggers and self._triggered.is_set()

    async def _record_failure(self, error: Exception) -> None:
        event = Event(
            at=self.clock.now(),
            kind=EventKind.CONTROL_FAILED,
            detail=f"{type(error).__name__}: {error}",
        )
        try:
            await asyncio.to_thread(self.store.record_event, event)
        except StorageError as storage:
            self.storage_alarm.note(storage)
        except Exception:
            LOG.exception("could not record the failure")
