"""What a planner sees (:class:`Problem`) and what it returns (:class:`Schedule`).

A planner never knows whether it runs in the twin or live: it gets a read-only
``Problem`` for the vehicles plugged in now and a horizon of steps from now, and returns a
``Schedule`` of charger power per vehicle and step (kW, + charging / - discharging).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from v2ghub.model.time_grid import TimeGrid
from v2ghub.model.valley_rule import ValleyRule

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


_PER_STEP = frozenset(
    {
        "import_price_cny_per_kwh",
        "export_price_cny_per_kwh",
        "period_kind",
        "base_load_kw",
        "renewable_surplus_kw",
        "regulation_price_cny_per_kw_h",
        "regulation_commitment_kw",
    }
)
_PER_SITE = frozenset({"import_limit_kw", "export_limit_kw"})
_PER_SITE_AND_STEP = frozenset({"site_load_kw"})


@dataclass(frozen=True)
class Problem:
    """The read-only planning view at one control instant.

    Per-vehicle arrays have one entry per plugged vehicle; per-step arrays one entry per
    step of ``grid`` (the horizon, which starts now); per-site arrays one per site.

    Each vehicle ``i`` is plugged for steps ``arrival_step[i] .. departure_step[i] - 1`` of
    the horizon (in the twin every vehicle is plugged now: ``arrival_step`` is 0; a
    day-ahead plan also holds vehicles that arrive later). ``energy_kwh`` is its stored
    energy when it plugs in. Its stored energy must stay in
    ``[energy_min_kwh, energy_max_kwh]`` and should reach ``target_energy_kwh`` by
    ``departure_step``. Stored energy evolves as

        e[t+1] = e[t] + charge_efficiency * max(p[t], 0) * dt_h
                      + min(p[t], 0) * dt_h / discharge_efficiency

    with ``-max_discharge_kw <= p[t] <= max_charge_kw`` (``max_discharge_kw`` is zero for
    vehicles that did not opt in to V2G), and per site and step
    ``-export_limit_kw <= sum of p <= import_limit_kw``.

    The last ``expected_count`` rows are not vehicles but a forecast: each stands for a
    group of sessions expected to plug in later at one site (``arrival_step >= 1``), with
    their summed energies and charger power and no V2G. Planners plan them like vehicles,
    so that the vehicles plugged in now leave the site room for them; their power is
    never sent to a charger.

    Frequency regulation (optional, per step; ``None`` = none): the fleet earns
    ``regulation_price_cny_per_kw_h`` for every kW of symmetric headroom it keeps in a
    step (how far its power can move both up and down and hold for an hour, see
    :mod:`v2ghub.regulation.capacity`), and must keep at least
    ``regulation_commitment_kw`` of it where a market accepted an offer.

    ``site_load_kw`` (optional, sites x steps; ``None`` = zero) is load at each site that
    is not the problem's to plan, e.g. the plans other vehicles hold while a receding-horizon
    planner re-plans only what changed (:mod:`v2ghub.planning.held_plan`): the site limits
    bound it plus the rows' power, ``-export_limit_kw <= site_load_kw + sum of p <=
    import_limit_kw``.

    ``degradation_cny_per_kwh`` prices battery wear per kWh discharged: one price for all,
    or one per row (e.g. from a battery ageing model). ``valley_rule`` (optional) is the
    pilots' valley rule with what was metered before now (:mod:`v2ghub.model.valley_rule`);
    planners made to keep it (``capabilities.valley_rule``) plan within it, the others
    ignore it.
    """

    grid: TimeGrid
    control_steps: int
    vehicle_index: IntArray
    site_index: IntArray
    energy_kwh: FloatArray
    energy_min_kwh: FloatArray
    energy_max_kwh: FloatArray
    target_energy_kwh: FloatArray
    max_charge_kw: FloatArray
    max_discharge_kw: FloatArray
    charge_efficiency: FloatArray
    discharge_efficiency: FloatArray
    departure_step: IntArray
    arrival_step: IntArray
    import_limit_kw: FloatArray
    export_limit_kw: FloatArray
    import_price_cny_per_kwh: FloatArray
    export_price_cny_per_kwh: FloatArray
    period_kind: npt.NDArray[np.int8]
    base_load_kw: FloatArray
    renewable_surplus_kw: FloatArray
    degradation_cny_per_kwh: float | FloatArray = 0.0
    expected_count: int = 0
    regulation_price_cny_per_kw_h: FloatArray | None = None
    regulation_commitment_kw: FloatArray | None = None
    valley_rule: ValleyRule | None = None
    site_load_kw: FloatArray | None = None

    def __post_init__(self) -> None:
        n = self.vehicle_index.shape[0]
        horizon = self.grid.length
        n_sites = self.import_limit_kw.shape[0]
        if self.site_load_kw is not None:
            if self.site_load_kw.shape != (n_sites, horizon):
                raise ValueError(f"Problem.site_load_kw must have shape ({n_sites}, {horizon})")
            self.site_load_kw.setflags(write=False)
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, np.ndarray) or f.name == "site_load_kw":
                continue
            expected = horizon if f.name in _PER_STEP else n_sites if f.name in _PER_SITE else n
            if value.shape != (expected,):
                raise ValueError(f"Problem.{f.name} must have shape ({expected},)")
            value.setflags(write=False)
        if self.valley_rule is not None and self.valley_rule.private.shape != (n,):
            raise ValueError(f"Problem.valley_rule.private must have shape ({n},)")
        if not 0 <= self.expected_count <= n:
            raise ValueError("Problem.expected_count must lie within 0..number of rows")
        if not self.control_steps >= 1:
            raise ValueError("Problem.control_steps must be >= 1")
        if n and (self.departure_step.min() < 1 or self.departure_step.max() > horizon):
            raise ValueError("Problem.departure_step must lie within 1..horizon")
        arrival = self.arrival_step
        if n and (arrival.min() < 0 or np.any(arrival >= self.departure_step)):
            raise ValueError("Problem.arrival_step must lie within 0..departure_step - 1")

    @property
    def n_vehicles(self) -> int:
        """Number of plugged vehicles in the problem."""
        return int(self.vehicle_index.shape[0])

    @property
    def n_plugged(self) -> int:
        """Number of rows that are vehicles (the forecast rows excluded)."""
        return self.n_vehicles - self.expected_count

    @property
    def regulation_price(self) -> FloatArray:
        """Per step, CNY per kW of symmetric regulation headroom and hour (0 = none)."""
        if self.regulation_price_cny_per_kw_h is None:
            return np.zeros(self.grid.length)
        return self.regulation_price_cny_per_kw_h

    @property
    def regulation_commitment(self) -> FloatArray:
        """Per step, kW of symmetric headroom the fleet has promised (0 = none)."""
        if self.regulation_commitment_kw is None:
            return np.zeros(self.grid.length)
        return self.regulation_commitment_kw

    @property
    def degradation(self) -> FloatArray:
        """Per row, the battery wear price, CNY per kWh discharged."""
        if isinstance(self.degradation_cny_per_kwh, np.ndarray):
            return self.degradation_cny_per_kwh
        return np.full(self.n_vehicles, float(self.degradation_cny_per_kwh))

    @property
    def site_load(self) -> FloatArray:
        """Per site and step, the load not the problem's to plan, kW (zeros if none)."""
        if self.site_load_kw is None:
            return np.zeros((self.import_limit_kw.shape[0], self.grid.length))
        return self.site_load_kw

    def site_room_kw(self) -> tuple[FloatArray, FloatArray]:
        """Per site and step, how far the rows' summed power may rise and fall:
        ``(import_limit_kw - site_load_kw, export_limit_kw + site_load_kw)``; infinite
        where the site has no limit."""
        load = self.site_load
        return (
            self.import_limit_kw[:, None] - load,
            self.export_limit_kw[:, None] + load,
        )

    @property
    def dt_h(self) -> float:
        """Step length in hours."""
        return self.grid.dt_h

    def rows(self, index: IntArray) -> Problem:
        """The problem of the rows ``index`` only, with the same horizon, sites, prices and
        signals: plugged rows, then any forecast rows (which stay forecast rows)."""
        index = np.asarray(index, dtype=np.int64)
        forecast = index >= self.n_plugged
        if np.any(forecast[:-1] > forecast[1:]):
            raise ValueError("Problem.rows takes the plugged rows first, then forecast rows")
        per_vehicle = {
            f.name: getattr(self, f.name)[index]
            for f in fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
            and f.name not in _PER_STEP | _PER_SITE | _PER_SITE_AND_STEP
        }
        rule = self.valley_rule
        if rule is not None:
            rule = replace(rule, private=rule.private[index])
        return replace(self, **per_vehicle, expected_count=int(forecast.sum()), valley_rule=rule)


@dataclass(frozen=True)
class Schedule:
    """Charger power per vehicle and step, kW (+ charging, - discharging).

    ``power_kw`` has shape ``(n_vehicles, n_steps)``, rows in the order of the problem's
    vehicles, columns from the problem's first step; ``n_steps`` is at least the problem's
    ``control_steps`` (or its horizon, if shorter). ``fallback_reason`` is set when a safe
    fallback plan replaced the planner's.
    """

    power_kw: FloatArray
    planner: str
    fallback_reason: str | None = None

    @property
    def n_steps(self) -> int:
        """Number of steps the schedule covers."""
        return int(self.power_kw.shape[1])


@dataclass(frozen=True)
class PlannerCapabilities:
    """What a planner can take beyond the plain problem, so callers need not guess.

    ``max_sessions``: the most sessions it plans at every control instant in the twin
    (``None``: no limit). ``peak_price``: it plans against a peak (capacity) price.
    ``regulation_headroom``: it values and keeps the problem's regulation headroom
    (``regulation_price_cny_per_kw_h``, ``regulation_commitment_kw``).
    ``expected_arrivals``: it wants forecast rows for the sessions expected later
    (``Problem.expected_count``). ``valley_rule``: it keeps the pilots' valley rule
    (``Problem.valley_rule``), so callers should supply it.
    """

    max_sessions: int | None = None
    peak_price: bool = False
    regulation_headroom: bool = False
    expected_arrivals: bool = False
    valley_rule: bool = False


class Planner(Protocol):
    """Anything that turns a :class:`Problem` into a :class:`Schedule`.

    A planner may also describe itself with a ``capabilities`` attribute
    (:class:`PlannerCapabilities`, see :class:`DescribedPlanner`); one without is taken to
    have none of them.
    """

    name: str

    def plan(self, problem: Problem) -> Schedule:
        """Plan the problem's vehicles over (at least) its control steps."""
        ...


@runtime_checkable
class DescribedPlanner(Protocol):
    """A planner that states its :class:`PlannerCapabilities`."""

    name: str

    @property
    def capabilities(self) -> PlannerCapabilities:
        """What it can take beyond the plain problem."""
        ...

    def plan(self, problem: Problem) -> Schedule:
        """Plan the problem's vehicles over (at least) its control steps."""
        ...


def capabilities_of(planner: Planner) -> PlannerCapabilities:
    """The planner's capabilities (none stated: none)."""
    if isinstance(planner, DescribedPlanner):
        return planner.capabilities
    return PlannerCapabilities()
