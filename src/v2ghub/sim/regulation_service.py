"""Frequency regulation in the twin: promise capacity each offered hour, follow the signal.

At the first energy step of each offered hour (local time) the fleet commits a symmetric
capacity ``C``: ``share`` times the smaller of its headroom up and down that lasts the
whole hour (:mod:`v2ghub.regulation.capacity`, site limits included). Within the hour,
every energy step (15 minutes) is lived at the signal's step (2 s): participation factors
are set from the headroom left for the rest of the hour, and each signal sample moves
every vehicle by its share (:mod:`v2ghub.regulation.dispatch`) through the battery
physics. What the fleet delivered against what was asked is scored per hour, PJM-style
(:mod:`v2ghub.regulation.scoring`). The energy plan keeps running around it: the planner
sees the state of charge regulation left behind at its next control instant.

Chargers answer a new signal value ``response_delay_s`` late (one 2-s sample by default:
a broadcast signal through the charger's control loop), so the response lags the request
and the score shows it.

With ``frequency_response`` the fleet also gives primary frequency response: droop with a
deadband (:mod:`v2ghub.regulation.frequency_response`) on a frequency trace, rated at the
committed capacity. Its largest ask (at the +-0.2 Hz limit: 6% of the capacity at the
default 5% droop and 0.05 Hz deadband) is held back from the regulation signal, so both
together never ask more than the promise: each sample moves the fleet by
``(1 - m) * signal + droop_fraction(f)`` of the capacity.

Signals and frequency traces are seeded synthetic ones unless given (a user's CSV files,
:mod:`v2ghub.scenarios.signals_csv`): a given trace is replayed from its start in each
offered hour (offered hour ``k`` reads from ``k`` hours into it, wrapping around).

The planner sees, per step of its horizon (:meth:`RegulationFollower.planning_terms`),
the value of a kW of symmetric headroom in the offered hours still to commit (the city's
capacity rate plus its mileage rate times the signal's mileage per hour) and, in an hour
already committed, the commitment: the fast and LP planners keep that headroom. Capacity
sold ahead in a market (``commitments_kw``) is committed as sold, whatever the headroom,
and the planner keeps it from the start of the day; what the fleet cannot hold shows in
the score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from v2ghub.defaults import (
    REGULATION_HOURS,
    REGULATION_RESPONSE_DELAY_S,
    REGULATION_SIGNAL_STEP_S,
)
from v2ghub.model.headroom import PluggedFleet, site_headroom
from v2ghub.model.time_grid import TimeGrid
from v2ghub.regulation.dispatch import participation, setpoints
from v2ghub.regulation.frequency_response import droop_fraction
from v2ghub.regulation.scoring import Score, score_hours
from v2ghub.regulation.signals import (
    FREQUENCY_LIMIT_HZ,
    NOMINAL_FREQUENCY_HZ,
    FrequencyTrace,
    RegulationSignal,
    synthetic_frequency,
    synthetic_signal,
)
from v2ghub.sim.battery import step_batteries
from v2ghub.units import KW_PER_MW, SECONDS_PER_HOUR

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MIN_CAPACITY_KW = 1e-6
DEFAULT_HOURS = REGULATION_HOURS  # a midday and an evening pair, when grids are short of it


@dataclass(frozen=True)
class RegulationOffer:
    """What the twin offers: which local hours, how much of the headroom, which signal."""

    hours: tuple[int, ...] = DEFAULT_HOURS
    share: float = 1.0
    signal: Literal["dynamic", "traditional"] = "dynamic"
    step_s: float = REGULATION_SIGNAL_STEP_S
    seed: int = 0
    response_delay_s: float = REGULATION_RESPONSE_DELAY_S
    frequency_response: bool = True
    signal_trace: RegulationSignal | None = None
    frequency_trace: FrequencyTrace | None = None

    def __post_init__(self) -> None:
        if not self.hours or any(not 0 <= h <= 23 for h in self.hours):
            raise ValueError(f"hours must be local hours 0-23, got {self.hours}")
        if not 0 < self.share <= 1:
            raise ValueError(f"share must be in (0, 1], got {self.share}")
        if self.step_s <= 0:
            raise ValueError(f"step_s must be > 0, got {self.step_s}")
        if self.response_delay_s < 0:
            raise ValueError(f"response_delay_s must be >= 0, got {self.response_delay_s}")

    @property
    def frequency_reserve(self) -> float:
        """Share of the capacity held back for frequency response (its largest ask)."""
        if not self.frequency_response:
            return 0.0
        worst = NOMINAL_FREQUENCY_HZ + FREQUENCY_LIMIT_HZ
        return float(droop_fraction(np.array([worst]))[0])


@dataclass(frozen=True)
class HourResult:
    """One offered hour: the promise, the headroom behind it, what was asked and done."""

    start: datetime
    capacity_kw: float
    raise_kw: float
    lower_kw: float
    requested_kw: FloatArray
    delivered_kw: FloatArray
    score: Score | None
    frequency_kw: FloatArray  # the part of requested_kw that is frequency response


@dataclass(eq=False)
class _Hour:
    start: datetime
    signal: RegulationSignal
    frequency_fraction: FloatArray  # per sample, of the capacity (0 without the service)
    sold_kw: float | None = None  # committed ahead, else the hour commits its headroom
    capacity_kw: float = -1.0
    raise_kw: float = 0.0
    lower_kw: float = 0.0
    requested_kw: list[FloatArray] = field(default_factory=list)
    frequency_kw: list[FloatArray] = field(default_factory=list)
    delivered_kw: list[FloatArray] = field(default_factory=list)
    samples_done: int = 0

    def asked(self, reserve: float) -> FloatArray:
        """Per sample, what the hour asks of the fleet, as a fraction of the capacity."""
        return (1.0 - reserve) * self.signal.values + self.frequency_fraction


def _replayed(values: FloatArray, *, first: int, count: int) -> FloatArray:
    """``count`` samples of a trace from sample ``first`` on, wrapping around its end."""
    return np.asarray(values[(first + np.arange(count)) % values.size])


class RegulationFollower:
    """The twin's regulation service for one city's grid (see the module docstring)."""

    def __init__(
        self,
        grid: TimeGrid,
        *,
        timezone: str,
        offer: RegulationOffer,
        value_cny_per_mw_h: float = 0.0,
        mileage_cny_per_mw: float = 0.0,
        commitments_kw: Mapping[int, float] | None = None,
    ) -> None:
        self.grid = grid
        self.offer = offer
        # Capacity sold ahead (a market's accepted offers), by local hour: those hours
        # commit exactly that, and the planner keeps it from the start.
        self.commitments_kw = dict(commitments_kw or {})
        step_s = grid.step.total_seconds()
        samples = step_s / offer.step_s
        if abs(samples - round(samples)) > 1e-9 or SECONDS_PER_HOUR % step_s:
            raise ValueError("the signal step must divide the energy step, which divides an hour")
        self.samples_per_step = round(samples)
        self.delay_samples = round(offer.response_delay_s / offer.step_s)
        self.hour_of_step: dict[int, _Hour] = {}
        zone = ZoneInfo(timezone)
        day = grid.start.astimezone(zone).date()
        per_hour = round(SECONDS_PER_HOUR / offer.step_s)
        for k, hour in enumerate(sorted(set(offer.hours))):
            start = datetime(day.year, day.month, day.day, hour, tzinfo=zone)
            first = round((start - grid.start).total_seconds() / step_s)
            count = round(SECONDS_PER_HOUR / step_s)
            if first < 0 or first + count > grid.length:
                continue
            state = _Hour(
                start=start,
                signal=self._signal(start, hour, k * per_hour, per_hour),
                frequency_fraction=self._frequency(start, hour, k * per_hour, per_hour),
                sold_kw=self.commitments_kw.get(hour),
            )
            for step in range(first, first + count):
                self.hour_of_step[step] = state
        self.step_h = grid.dt_h
        hours = list(dict.fromkeys(self.hour_of_step.values()))
        self.mileage_per_hour = (
            float(np.mean([np.abs(np.diff(h.signal.values)).sum() for h in hours]))
            if hours
            else 0.0
        )
        # What a kW of symmetric headroom kept for an hour earns (CNY/kW-h).
        self.value_cny_per_kw_h = (
            value_cny_per_mw_h + mileage_cny_per_mw * self.mileage_per_hour
        ) / KW_PER_MW

    def _signal(self, start: datetime, hour: int, first: int, count: int) -> RegulationSignal:
        offer = self.offer
        if offer.signal_trace is not None:
            trace = offer.signal_trace
            if abs(trace.step_s - offer.step_s) > 1e-9:
                raise ValueError(
                    f"the signal file's step is {trace.step_s:g} s, the offer's {offer.step_s:g} s"
                )
            values = _replayed(trace.values, first=first, count=count)
            return RegulationSignal(start=start, step_s=offer.step_s, values=values)
        return synthetic_signal(
            offer.signal,
            duration_s=SECONDS_PER_HOUR,
            step_s=offer.step_s,
            seed=offer.seed * 24 + hour,
            start=start,
        )

    def _frequency(self, start: datetime, hour: int, first: int, count: int) -> FloatArray:
        offer = self.offer
        if not offer.frequency_response:
            return np.zeros(count)
        if offer.frequency_trace is not None:
            trace = offer.frequency_trace
            if abs(trace.step_s - offer.step_s) > 1e-9:
                raise ValueError(
                    f"the frequency file's step is {trace.step_s:g} s, "
                    f"the offer's {offer.step_s:g} s"
                )
            hz = _replayed(trace.frequency_hz, first=first, count=count)
        else:
            hz = synthetic_frequency(
                duration_s=SECONDS_PER_HOUR,
                step_s=offer.step_s,
                seed=offer.seed * 24 + hour + 1_000_003,
                start=start,
            ).frequency_hz
        return droop_fraction(hz)

    def planning_terms(self, step: int, horizon: int) -> dict[str, FloatArray]:
        """The planner's regulation terms for ``horizon`` steps from ``step``.

        ``regulation_price_cny_per_kw_h`` in offered hours not yet committed and
        ``regulation_commitment_kw`` in the hour under way (see the module docstring).
        """
        price = np.zeros(horizon)
        commitment = np.zeros(horizon)
        for k in range(horizon):  # steps, never vehicles
            hour = self.hour_of_step.get(step + k)
            if hour is None:
                continue
            if hour.capacity_kw >= 0:
                commitment[k] = hour.capacity_kw
            elif hour.sold_kw is not None:
                commitment[k] = hour.sold_kw
            else:
                price[k] = self.value_cny_per_kw_h
        if not price.any() and not commitment.any():
            return {}
        return {"regulation_price_cny_per_kw_h": price, "regulation_commitment_kw": commitment}

    def covers(self, step: int) -> bool:
        """Whether ``step`` lies in an offered hour."""
        return step in self.hour_of_step

    def follow(
        self, *, step: int, fleet: PluggedFleet, end_step: IntArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Live one energy step at the signal's pace, the plugged vehicles ``fleet`` (who
        leave at ``end_step``) moving around their planned power.

        Returns
        -------
        (energy_after_kwh, charged_kwh, discharged_kwh) per vehicle, grid side.
        """
        hour = self.hour_of_step[step]
        hour_steps = round(SECONDS_PER_HOUR / self.grid.step.total_seconds())
        steps_done = hour.samples_done // self.samples_per_step
        remaining_h = (hour_steps - steps_done) * self.step_h
        room = site_headroom(
            fleet,
            hours_to_departure=((end_step - step) * self.step_h).astype(np.float64),
            duration_h=remaining_h,
        )
        if hour.capacity_kw < 0:  # the hour's first step: commit
            hour.raise_kw = room.raise_total_kw
            hour.lower_kw = room.lower_total_kw
            offered = self.offer.share * min(hour.raise_kw, hour.lower_kw)
            # Below a milliwatt there is nothing to follow (and signals over it overflow).
            hour.capacity_kw = (
                hour.sold_kw
                if hour.sold_kw is not None
                else (offered if offered >= MIN_CAPACITY_KW else 0.0)
            )
        shares = participation(room, hour.capacity_kw)
        dt_h = self.offer.step_s / SECONDS_PER_HOUR
        planned_kw = fleet.planned_kw
        charged = np.zeros_like(fleet.energy_kwh)
        discharged = np.zeros_like(fleet.energy_kwh)
        energy = fleet.energy_kwh
        setpoint = np.empty_like(planned_kw)
        planned_total = float(planned_kw.sum())
        start = hour.samples_done
        asked = hour.asked(self.offer.frequency_reserve)
        values = asked[start : start + self.samples_per_step]
        # The chargers act on the value asked ``delay_samples`` ago (nothing before the hour).
        lagged = start - self.delay_samples
        acted = np.concatenate(
            (np.zeros(max(-lagged, 0)), asked[max(lagged, 0) : lagged + values.size])
        )
        delivered = np.empty(values.size)
        for k, value in enumerate(acted.tolist()):  # signal samples, never vehicles
            setpoints(planned_kw, shares, value, out=setpoint)
            energy, applied = step_batteries(
                energy_kwh=energy,
                setpoint_kw=setpoint,
                max_charge_kw=fleet.max_charge_kw,
                max_discharge_kw=fleet.max_discharge_kw,
                charge_efficiency=fleet.charge_efficiency,
                discharge_efficiency=fleet.discharge_efficiency,
                energy_min_kwh=fleet.energy_min_kwh,
                energy_max_kwh=fleet.energy_max_kwh,
                dt_h=dt_h,
            )
            charged += np.maximum(applied, 0.0) * dt_h
            discharged += np.maximum(-applied, 0.0) * dt_h
            delivered[k] = float(applied.sum()) - planned_total
        hour.requested_kw.append(values * hour.capacity_kw)
        frequency = hour.frequency_fraction[start : start + values.size]
        hour.frequency_kw.append(frequency * hour.capacity_kw)
        hour.delivered_kw.append(delivered)
        hour.samples_done += values.size
        return energy, charged, discharged

    def results(self) -> list[HourResult]:
        """Every offered hour that ran, scored."""
        hours = list(dict.fromkeys(self.hour_of_step.values()))
        out = []
        for hour in hours:
            if hour.capacity_kw < 0:
                continue
            requested = np.concatenate(hour.requested_kw)
            delivered = np.concatenate(hour.delivered_kw)
            capacity = hour.capacity_kw
            score = None
            if capacity > 0:
                scored = score_hours(
                    requested / capacity,
                    delivered / capacity,
                    capacity_mw=capacity / KW_PER_MW,
                    step_s=self.offer.step_s,
                )
                score = scored[0] if scored else None
            out.append(
                HourResult(
                    start=hour.start,
                    capacity_kw=capacity,
                    raise_kw=hour.raise_kw,
                    lower_kw=hour.lower_kw,
                    requested_kw=requested,
                    delivered_kw=delivered,
                    score=score,
                    frequency_kw=np.concatenate(hour.frequency_kw),
                )
            )
        return out
