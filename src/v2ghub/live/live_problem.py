"""The live aggregator's planning problem: the plugged sessions of the store as the same
:class:`~v2ghub.model.problem.Problem` the twin builds, and a planner run that always ends
in a schedule within the limits.

The horizon starts at ``now`` itself (not at a step boundary): step ``k`` covers
``[now + k*step, now + (k+1)*step)``, in the city's time zone. Each step is priced by the
tariff at its start, in local time (:meth:`~v2ghub.model.tariff.Tariff.price_levels`, as
the twin does), so a step that straddles a tariff boundary takes the earlier price; the
first step, the one whose setpoints are sent, is always priced at ``now``, and the next
control instant (a minute later by default) prices afresh. A vehicle is plugged for the
whole steps before its departure (``departure_step = floor((departure - now) / step)``,
the twin's rule), at least one step (a vehicle already past its departure, or leaving
within a step, gets one step: it charges what it still needs now) and at most the
horizon (a longer stay is planned as if it ended at the horizon).

Defaults for what the store does not know are fields of :class:`ControlSettings`; every
use of one is listed in :attr:`LiveProblem.notes`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from v2ghub import defaults
from v2ghub.model.problem import Planner, Problem, Schedule
from v2ghub.model.time_grid import TimeGrid
from v2ghub.planning.check import (
    Violation,
    ViolationKind,
    plan_safely,
    planner_name,
    safe_plan,
)
from v2ghub.scenarios.catalog import CityData, pilot_cities
from v2ghub.scenarios.config import GridShape
from v2ghub.scenarios.load_shapes import grid_signals
from v2ghub.store.grid_prices import PriceEvent
from v2ghub.store.records import OcppVersion, PluggedSession
from v2ghub.units import SECONDS_PER_HOUR

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

FALLBACK_SUFFIX = "; charge-only within site limits"


@dataclass(frozen=True)
class LiveSite:
    """A site's connection limits, kW at the connection point (``inf`` = no limit)."""

    site_id: str
    import_limit_kw: float
    export_limit_kw: float = 0.0

    def __post_init__(self) -> None:
        for name in ("import_limit_kw", "export_limit_kw"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"site {self.site_id!r}: {name} must be >= 0, got {value}")


@dataclass(frozen=True)
class ControlSettings:
    """How the live aggregator plans.

    Attributes
    ----------
    city
        A shipped city (:func:`~v2ghub.scenarios.catalog.pilot_cities`): its TOU tariff,
        discharge price rule, time zone and solar share.
    sites
        The configured sites. A session on another site gets ``unknown_site_import_limit_kw``
        and ``unknown_site_export_limit_kw`` (default: no import limit beyond the chargers',
        no export), and a note says so.
    planner
        A name of :data:`v2ghub.planning.PLANNERS`; ``fast`` (exact per vehicle, for any
        fleet size) by default.
    planner_timeout_s
        Wall seconds a plan may take before the charge-only fallback is used (under the
        5 s in which a newly plugged vehicle must get its first profile).
    control_interval_s
        Seconds between two plans (on the loop's clock) when nothing triggers one sooner.
    step_minutes, horizon_hours
        Step length and the longest horizon planned.
    debounce_s
        Wall seconds a trigger waits for more triggers before re-planning.
    default_dwell_h
        A session without a departure time leaves this long after it plugged in.
    default_battery_kwh
        Battery when unknown: the shipped vehicle mix averages 54.8 kWh (share-weighted).
    unknown_soc
        Stored energy when unknown, as a share of the battery: low, so that charging toward
        the target never leaves the owner short; such a vehicle is never discharged.
    default_target_soc
        Target at departure when the owner gave none (the synthetic home target).
    default_min_soc, soc_max, charge_efficiency, discharge_efficiency
        A session's defaults (:mod:`v2ghub.defaults`), as a sessions file's.
    degradation_cny_per_kwh
        Battery wear per kWh discharged, the scenarios' default (:mod:`v2ghub.defaults`).
    grid_shape, base_load_vehicles
        The synthetic base load and solar surplus of the twin
        (:func:`~v2ghub.scenarios.load_shapes.grid_signals`), scaled to
        ``base_load_vehicles`` (default: the number of plugged sessions).
    limit_tolerance_kw
        How far a planner's first step may stand outside a limit before it is refused.
    setpoint_resolution_w
        Setpoints are sent in multiples of this (or at a vehicle's exact limit).
    resend_threshold_kw, refresh_s
        An unchanged setpoint is sent again only when it moved by more than
        ``resend_threshold_kw``, started or stopped, its limits changed, the last answer
        was not ``Accepted``, or the last send is ``refresh_s`` old (loop clock).
    send_timeout_s
        Wall seconds to wait for a station's answer (the OCPP server has its own timeout).
    grid_poll_s
        Wall seconds between two looks at the grid events (site limits) in the store; a
        change re-plans at once.
    send_wait_s
        Wall seconds a control instant waits for the answers before it ends; later answers
        are recorded at the next instant (a slow station never holds up the next plan).
    """

    city: str
    sites: tuple[LiveSite, ...]
    planner: str = "fast"
    planner_timeout_s: float = 4.0
    control_interval_s: float = defaults.LIVE_CONTROL_INTERVAL_S
    step_minutes: int = 15
    horizon_hours: float = 24.0
    debounce_s: float = 0.5
    default_dwell_h: float = defaults.LIVE_DWELL_H
    default_battery_kwh: float = defaults.LIVE_BATTERY_KWH
    unknown_soc: float = defaults.SOC_MIN
    default_target_soc: float = defaults.TARGET_SOC
    default_min_soc: float = defaults.SOC_MIN
    soc_max: float = defaults.SOC_MAX
    charge_efficiency: float = defaults.CHARGE_EFFICIENCY
    discharge_efficiency: float = defaults.DISCHARGE_EFFICIENCY
    unknown_site_import_limit_kw: float = math.inf
    unknown_site_export_limit_kw: float = 0.0
    degradation_cny_per_kwh: float = float(defaults.DEGRADATION_CNY_PER_KWH)
    grid_shape: GridShape = field(default_factory=GridShape)
    base_load_vehicles: int | None = None
    limit_tolerance_kw: float = 0.01
    setpoint_resolution_w: int = 100
    resend_threshold_kw: float = 0.2
    refresh_s: float = 900.0
    send_timeout_s: float = 30.0
    send_wait_s: float = 1.0
    grid_poll_s: float = 1.0

    def __post_init__(self) -> None:
        cities = pilot_cities()
        if self.city not in cities:
            raise ValueError(f"unknown city {self.city!r} (known: {', '.join(cities)})")
        ids = [s.site_id for s in self.sites]
        if len(set(ids)) != len(ids):
            raise ValueError(f"site ids must be unique, got {ids}")
        positive = (
            "planner_timeout_s",
            "control_interval_s",
            "step_minutes",
            "horizon_hours",
            "default_dwell_h",
            "default_battery_kwh",
            "refresh_s",
            "send_timeout_s",
            "send_wait_s",
            "grid_poll_s",
            "setpoint_resolution_w",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        non_negative = (
            "debounce_s",
            "unknown_site_import_limit_kw",
            "unknown_site_export_limit_kw",
            "degradation_cny_per_kwh",
            "limit_tolerance_kw",
            "resend_threshold_kw",
        )
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("unknown_soc", "default_target_soc", "default_min_soc", "soc_max"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within 0-1, got {getattr(self, name)}")
        for name in ("charge_efficiency", "discharge_efficiency"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within (0, 1], got {getattr(self, name)}")
        if self.horizon_steps < 1:
            raise ValueError("horizon_hours must hold at least one step")

    @property
    def step(self) -> timedelta:
        """Length of a planning step."""
        return timedelta(minutes=self.step_minutes)

    @property
    def horizon_steps(self) -> int:
        """The most steps a problem has."""
        return math.floor(self.horizon_hours * SECONDS_PER_HOUR / self.step.total_seconds())

    @property
    def control_steps(self) -> int:
        """Steps between two plans (at least 1: the live loop re-plans within a step)."""
        return max(1, math.floor(self.control_interval_s / self.step.total_seconds()))

    @property
    def city_data(self) -> CityData:
        """The city's shipped data."""
        return pilot_cities()[self.city]


SCHEDULED_CONTROL = "ScheduledControl"


@dataclass(frozen=True)
class SessionKey:
    """Which charger and transaction a problem row stands for."""

    station_id: str
    evse_id: int
    transaction_id: str
    ocpp_version: OcppVersion
    scheduled: bool = False
    """The vehicle asked for ScheduledControl (2.1): it gets the whole plan as a schedule."""


@dataclass(frozen=True)
class LiveProblem:
    """A problem built from the store, and what its rows are.

    Row ``i`` of ``problem`` is the session ``rows[i]`` at site ``site_ids[site_index[i]]``;
    ``notes`` lists every default used and every session past its departure.
    ``min_charge_kw`` and ``min_discharge_kw`` (per row, 0 = none) are the vehicles' least
    powers: the planner does not see them (they are not convex); the commands do.
    """

    problem: Problem
    rows: tuple[SessionKey, ...]
    site_ids: tuple[str, ...]
    notes: tuple[str, ...] = ()
    min_charge_kw: FloatArray | None = None
    min_discharge_kw: FloatArray | None = None


def _floats(sessions: Sequence[PluggedSession], name: str) -> FloatArray:
    """One optional numeric field of every session; ``None`` becomes NaN."""
    return np.array([getattr(s, name) for s in sessions], dtype=np.float64).reshape(-1)


def _note(
    notes: list[str], mask: BoolArray, rows: Sequence[SessionKey], what: str, assumed: str
) -> None:
    """Add ``what: assumed`` with the count and a first example, if ``mask`` has any."""
    count = int(np.count_nonzero(mask))
    if count:
        first = rows[int(np.flatnonzero(mask)[0])]
        notes.append(
            f"{count} session(s) {what} (first {first.station_id}/{first.evse_id}): {assumed}"
        )


def build_problem(
    sessions: Sequence[PluggedSession],
    *,
    now: datetime,
    settings: ControlSettings,
    prices: Sequence[PriceEvent] = (),
    regulation: tuple[float, datetime] | None = None,
) -> LiveProblem:
    """The planning problem of the plugged ``sessions`` at ``now``.

    Energy window per vehicle, as the twin's fleet has it (``Fleet.energy_min_kwh``):
    ``energy_min = min(energy, min_energy)``, ``energy_max = max(energy, soc_max * battery)``,
    target clipped to ``[0, energy_max]``. A vehicle may discharge (V2G) only when its
    session's ``max_discharge_kw > 0``, its station speaks OCPP 2.1 and its stored energy
    is known. Prices, period kinds, base load and solar surplus come from the city's
    tariff and the twin's synthetic shapes on the horizon's grid.

    ``regulation`` is a regulation commitment in force, ``(capacity_kw, ends_at)``: the
    steps that start before ``ends_at`` carry it as ``regulation_commitment_kw``, so the
    planner keeps that much headroom each way (:mod:`v2ghub.planning.reserve`).

    ``prices`` (price events, e.g. OpenADR ``ELECTRICITY_PRICE``, oldest recorded first)
    replace the tariff's import price of the steps they cover (:func:`event_import_prices`):
    the problem has one price series for all sites, so a step takes event prices only when
    every site with a plugged vehicle has one in force at the step's start, and then the
    highest of them (the dearest site's ask to import less is kept; a site with a cheaper
    event is planned as if it paid more). Steps where only some sites have one keep the
    tariff, and a note says so.

    Raises
    ------
    ValueError
        ``now`` is not timezone-aware.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    data = settings.city_data
    tariff = data.tariff()
    start = now.astimezone(ZoneInfo(tariff.timezone)).replace(microsecond=0)
    step_s = settings.step.total_seconds()
    rows = tuple(
        SessionKey(
            s.station_id,
            s.evse_id,
            s.transaction_id,
            s.ocpp_version,
            scheduled=s.ocpp_version is OcppVersion.V21 and s.control_mode == SCHEDULED_CONTROL,
        )
        for s in sessions
    )
    notes: list[str] = []

    # Departure steps: the twin's whole-step rule, within 1..horizon.
    departure_s = np.array(
        [s.departure_at.timestamp() if s.departure_at else math.nan for s in sessions],
        dtype=np.float64,
    )
    started_s = np.array([s.started_at.timestamp() for s in sessions], dtype=np.float64)
    no_departure = np.isnan(departure_s)
    departure_s = np.where(
        no_departure, started_s + settings.default_dwell_h * SECONDS_PER_HOUR, departure_s
    )
    whole_steps = np.floor((departure_s - start.timestamp()) / step_s)
    departure_step = np.clip(whole_steps, 1, settings.horizon_steps).astype(np.int64)
    _note(
        notes,
        no_departure,
        rows,
        "without a departure time",
        f"leave {settings.default_dwell_h:g} h after plug-in",
    )
    _note(
        notes, whole_steps < 1, rows, "past or within a step of departure", "planned for one step"
    )

    battery = _floats(sessions, "battery_kwh")
    no_battery = ~(battery > 0)
    battery = np.where(no_battery, settings.default_battery_kwh, battery)
    _note(
        notes, no_battery, rows, "without a battery size", f"{settings.default_battery_kwh:g} kWh"
    )

    def filled(name: str, share: float, what: str, assumed: str) -> tuple[FloatArray, BoolArray]:
        """A field of every session, missing values a ``share`` of the battery (noted)."""
        values = _floats(sessions, name)
        missing = ~(values >= 0)
        _note(notes, missing, rows, what, assumed)
        return np.where(missing, share * battery, values), missing

    # A vehicle that sent no needs (OCPP 1.6) but whose meter values carry its SoC: its
    # energy is that share of its battery (the battery assumed as noted above).
    stored = _floats(sessions, "energy_kwh")
    metered_soc = _floats(sessions, "soc")
    from_soc = ~(stored >= 0) & (metered_soc >= 0)
    _note(
        notes, from_soc, rows, "without needs but with a metered SoC", "that share of the battery"
    )
    stored = np.where(from_soc, metered_soc * battery, stored)
    no_energy = ~(stored >= 0)
    _note(
        notes,
        no_energy,
        rows,
        "without stored energy",
        f"{settings.unknown_soc:.0%} of the battery, no discharge",
    )
    energy = np.where(no_energy, settings.unknown_soc * battery, stored)
    min_energy, _ = filled(
        "min_energy_kwh",
        settings.default_min_soc,
        "without a minimum energy",
        f"{settings.default_min_soc:.0%} of the battery",
    )
    target, _ = filled(
        "target_energy_kwh",
        settings.default_target_soc,
        "without a target energy",
        f"{settings.default_target_soc:.0%} of the battery",
    )
    energy_max = np.maximum(energy, settings.soc_max * battery)

    max_charge = np.nan_to_num(np.maximum(_floats(sessions, "max_charge_kw"), 0.0))
    max_discharge = np.nan_to_num(np.maximum(_floats(sessions, "max_discharge_kw"), 0.0))
    # The store allows discharge per station (2.1 V2X, or 2.0.1 configured for it).
    may_discharge = ~no_energy

    site_ids = [s.site_id for s in settings.sites]
    import_limit = [s.import_limit_kw for s in settings.sites]
    export_limit = [s.export_limit_kw for s in settings.sites]
    known = {site_id: i for i, site_id in enumerate(site_ids)}
    site_index = np.empty(len(sessions), dtype=np.int64)
    for i, session in enumerate(sessions):
        if session.site_id not in known:
            known[session.site_id] = len(site_ids)
            site_ids.append(session.site_id)
            import_limit.append(settings.unknown_site_import_limit_kw)
            export_limit.append(settings.unknown_site_export_limit_kw)
            notes.append(
                f"site {session.site_id!r} is not configured: import limit "
                f"{settings.unknown_site_import_limit_kw:g} kW, export limit "
                f"{settings.unknown_site_export_limit_kw:g} kW"
            )
        site_index[i] = known[session.site_id]

    n = len(sessions)
    horizon = int(departure_step.max()) if n else 1
    grid = TimeGrid(start=start, step=settings.step, length=horizon)
    prices_of_tariff = tariff.price_levels(grid)
    import_price = event_import_prices(
        prices_of_tariff.import_series(),
        grid,
        prices,
        site_ids=[site_ids[k] for k in np.unique(site_index)],
        notes=notes,
    )
    signals = grid_signals(
        grid=grid,
        tariff=tariff,
        shape=settings.grid_shape,
        n_vehicles=max(1, settings.base_load_vehicles or n),
        solar_peak_share=data.solar_peak_share,
    )
    problem = Problem(
        grid=grid,
        control_steps=settings.control_steps,
        vehicle_index=np.arange(n, dtype=np.int64),
        site_index=site_index,
        energy_kwh=energy,
        energy_min_kwh=np.minimum(energy, min_energy),
        energy_max_kwh=energy_max,
        target_energy_kwh=np.clip(target, 0.0, energy_max),
        max_charge_kw=max_charge,
        max_discharge_kw=np.where(may_discharge, max_discharge, 0.0),
        charge_efficiency=np.full(n, settings.charge_efficiency),
        discharge_efficiency=np.full(n, settings.discharge_efficiency),
        departure_step=departure_step,
        arrival_step=np.zeros(n, dtype=np.int64),
        import_limit_kw=np.array(import_limit, dtype=np.float64),
        export_limit_kw=np.array(export_limit, dtype=np.float64),
        import_price_cny_per_kwh=import_price,
        export_price_cny_per_kwh=prices_of_tariff.export_series(),
        period_kind=prices_of_tariff.kind,
        base_load_kw=signals.base_load_kw,
        renewable_surplus_kw=signals.renewable_surplus_kw,
        degradation_cny_per_kwh=settings.degradation_cny_per_kwh,
        regulation_commitment_kw=_commitment_series(grid, regulation),
    )
    return LiveProblem(
        problem=problem,
        rows=rows,
        site_ids=tuple(site_ids),
        notes=tuple(notes),
        min_charge_kw=np.array([s.min_charge_kw for s in sessions], dtype=np.float64),
        min_discharge_kw=np.array([s.min_discharge_kw for s in sessions], dtype=np.float64),
    )


def _commitment_series(
    grid: TimeGrid, regulation: tuple[float, datetime] | None
) -> FloatArray | None:
    """The committed kW of each step of ``grid`` (steps starting before the end)."""
    if regulation is None:
        return None
    capacity_kw, ends_at = regulation
    step_s = grid.step.total_seconds()
    starts_s = grid.start.timestamp() + step_s * np.arange(grid.length)
    return np.where(starts_s < ends_at.timestamp(), capacity_kw, 0.0)


def event_import_prices(
    tariff_cny_per_kwh: FloatArray,
    grid: TimeGrid,
    prices: Sequence[PriceEvent],
    *,
    site_ids: Sequence[str],
    notes: list[str] | None = None,
) -> FloatArray:
    """The import price per step of ``grid``, CNY/kWh: the tariff's, replaced where price
    events cover the step's start at every one of ``site_ids`` (the sites with a plugged
    vehicle) by the highest of their prices. Of two events of one site covering a step, the
    one recorded last (later in ``prices``) holds. A step that some sites' events cover but
    not all keeps the tariff, and ``notes`` (if given) says so once.

    >>> from datetime import UTC, datetime, timedelta
    >>> start = datetime(2026, 7, 1, tzinfo=UTC)
    >>> grid = TimeGrid(start=start, step=timedelta(hours=1), length=3)
    >>> hour = timedelta(hours=1)
    >>> event = PriceEvent(1, "a", start + hour, start + 2 * hour, 2.5, "openadr:ven", start)
    >>> event_import_prices(np.full(3, 0.6), grid, [event], site_ids=["a"]).tolist()
    [0.6, 2.5, 0.6]
    >>> event_import_prices(np.full(3, 0.6), grid, [event], site_ids=["a", "b"]).tolist()
    [0.6, 0.6, 0.6]
    """
    result = np.array(tariff_cny_per_kwh, dtype=np.float64, copy=True)
    wanted = list(dict.fromkeys(site_ids))
    events = [event for event in prices if event.site_id in wanted]
    if not events:
        return result
    step_s = grid.step.total_seconds()
    starts_s = grid.start.timestamp() + step_s * np.arange(grid.length)
    by_site = np.full((len(wanted), grid.length), np.nan)
    row = {site_id: k for k, site_id in enumerate(wanted)}
    for event in events:  # a few events, never vehicles
        covers = (starts_s >= event.starts_at.timestamp()) & (starts_s < event.ends_at.timestamp())
        by_site[row[event.site_id], covers] = event.import_price_cny_per_kwh
    priced = ~np.isnan(by_site)
    everywhere = priced.all(axis=0)
    result[everywhere] = by_site[:, everywhere].max(axis=0)
    partly = priced.any(axis=0) & ~everywhere
    if notes is not None and partly.any():
        missing = [site for k, site in enumerate(wanted) if not priced[k, partly].all()]
        notes.append(
            f"price events not applied where site(s) {', '.join(missing)} have none "
            "(one price series for all sites): tariff kept"
        )
    return result


def describe_violation(live: LiveProblem, schedule: Schedule, violation: Violation) -> str:
    """A broken guarantee in the operator's terms: the station and EVSE, or the site, and
    the power against the limit."""
    if violation.kind is ViolationKind.SHAPE:
        shape = schedule.power_kw.shape
        return f"returned power of shape {shape}, expected ({live.problem.n_vehicles}, >=1)"
    step = violation.step or 0
    when = f" in step {step}" if step else ""
    more = f" ({violation.count:,} cases)" if violation.count > 1 else ""
    if violation.row is not None:
        return _row_violation(live, schedule, violation, step) + when + more
    if violation.site is not None:
        return _site_violation(live, schedule, violation, step, when) + more
    return str(violation)


def _row_violation(live: LiveProblem, schedule: Schedule, violation: Violation, step: int) -> str:
    problem, row, kind = live.problem, violation.row or 0, violation.kind
    where = _where(live, row)
    if kind is ViolationKind.NOT_FINITE:
        return f"returned non-finite power for {where}"
    asked = f"asked {where} for {schedule.power_kw[row, step]:.3f} kW"
    if kind is ViolationKind.CHARGE_LIMIT:
        return f"{asked}, above its charging limit {problem.max_charge_kw[row]:g} kW"
    if kind is ViolationKind.DISCHARGE_LIMIT:
        return f"{asked}, beyond its discharging limit {problem.max_discharge_kw[row]:g} kW"
    energy = kind in (ViolationKind.ENERGY_BELOW_WINDOW, ViolationKind.ENERGY_ABOVE_WINDOW)
    return f"{asked}: {kind.value} by {violation.excess:.6g} {'kWh' if energy else 'kW'}"


def _site_violation(
    live: LiveProblem, schedule: Schedule, violation: Violation, step: int, when: str
) -> str:
    problem, site = live.problem, violation.site or 0
    site_kw = float(schedule.power_kw[problem.site_index == site, step].sum())
    if violation.kind is ViolationKind.SITE_IMPORT:
        side, limit_kw = "import", problem.import_limit_kw[site]
    else:
        side, limit_kw = "export", problem.export_limit_kw[site]
    return (
        f"planned {site_kw:.3f} kW at site {live.site_ids[site]!r}{when}, beyond its "
        f"{side} limit {limit_kw:g} kW"
    )


def _where(live: LiveProblem, row: int) -> str:
    key = live.rows[row] if row < len(live.rows) else None
    return f"{key.station_id}/{key.evse_id}" if key else f"row {row}"


class _Guarded:
    """A planner that releases ``busy`` when its plan ends (even after a timeout) and
    keeps the schedule it returned."""

    def __init__(self, planner: Planner, busy: threading.Lock | None) -> None:
        self.planner = planner
        self.name = planner_name(planner)
        self.busy = busy
        self.returned: Schedule | None = None

    def plan(self, problem: Problem) -> Schedule:
        try:
            self.returned = self.planner.plan(problem)
            return self.returned
        finally:
            if self.busy is not None:
                self.busy.release()


def plan(
    live: LiveProblem,
    planner: Planner,
    *,
    timeout_s: float,
    tolerance_kw: float = 0.01,
    busy: threading.Lock | None = None,
) -> Schedule:
    """The planner's schedule, or the safe charge-only plan and why.

    Plans through :func:`v2ghub.planning.check.plan_safely`: the planner runs in a daemon
    thread, waited for ``timeout_s`` wall seconds, and the safe plan (charge-only at full
    power within every limit) replaces it when it raises, times out, or breaks a guarantee
    in the steps that will be sent: the first, or all of them when a vehicle under
    ScheduledControl gets the whole plan. A timed-out planner cannot be stopped; with
    ``busy`` (a lock held while a planner runs) a new plan is not started while an
    earlier one is still running, and the fallback says so. A broken guarantee is told
    with the station or site (:func:`describe_violation`).
    """
    problem = live.problem
    name = planner_name(planner)
    if problem.n_vehicles == 0:
        return Schedule(power_kw=np.zeros((0, 1)), planner=name)
    if busy is not None and not busy.acquire(blocking=False):
        return safe_plan(
            problem, f"planner {name!r} is still running an earlier plan{FALLBACK_SUFFIX}"
        )
    guarded = _Guarded(planner, busy)

    def describe(violation: Violation) -> str:
        # Called only for a schedule the planner returned in time, which it keeps.
        returned = guarded.returned
        return str(violation) if returned is None else describe_violation(live, returned, violation)

    schedule = plan_safely(
        guarded,
        problem,
        steps=None if any(key.scheduled for key in live.rows) else 1,
        timeout_s=timeout_s,
        tolerance_kw=tolerance_kw,
        describe=describe,
    )
    reason = schedule.fallback_reason
    if reason is None:
        return schedule
    return replace(schedule, fallback_reason=reason + FALLBACK_SUFFIX)


def warm_up(planner: Planner, settings: ControlSettings, *, now: datetime) -> None:
    """Plan one made-up V2X session once, and once under a regulation commitment, so that a
    planner's first real plan is not slowed by compiling its kernels (the ``fast``
    planner's compile takes seconds)."""
    session = PluggedSession(
        station_id="warm-up",
        evse_id=1,
        transaction_id="warm-up",
        site_id=settings.sites[0].site_id if settings.sites else "warm-up",
        ocpp_version=OcppVersion.V21,
        started_at=now,
        departure_at=now + timedelta(hours=8),
        battery_kwh=60.0,
        energy_kwh=30.0,
        target_energy_kwh=48.0,
        min_energy_kwh=12.0,
        max_charge_kw=11.0,
        max_discharge_kw=11.0,
        import_register_wh=0,
        export_register_wh=0,
        last_meter_at=None,
    )
    planner.plan(build_problem([session], now=now, settings=settings).problem)
    # And with a regulation commitment: its headroom reserve has kernels of its own.
    committed = (5.0, now + timedelta(hours=1))
    planner.plan(build_problem([session], now=now, settings=settings, regulation=committed).problem)
