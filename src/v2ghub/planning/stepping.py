"""Shared arithmetic of the step-by-step rule planners."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from v2ghub.model.problem import Problem, Schedule
from v2ghub.planning._feasible_kernel import feasible_power
from v2ghub.planning.limits import fit_site_limits

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass
class FleetState:
    """The mutable copy of stored energy a rule planner rolls forward over its steps."""

    energy_kwh: FloatArray
    charge_step_kwh: FloatArray  # stored energy gained in one step at full charging power
    discharge_step_kwh: FloatArray  # stored energy lost in one step at full discharging power

    @staticmethod
    def of(problem: Problem) -> FleetState:
        """Start from the problem's stored energy."""
        dt_h = problem.dt_h
        return FleetState(
            energy_kwh=problem.energy_kwh.copy(),
            charge_step_kwh=problem.max_charge_kw * problem.charge_efficiency * dt_h,
            discharge_step_kwh=problem.max_discharge_kw * dt_h / problem.discharge_efficiency,
        )


def steps_to_plan(problem: Problem) -> int:
    """How many steps a rule planner rolls out: the control interval, within the horizon."""
    return min(problem.control_steps, problem.grid.length)


def contiguous_floats(values: npt.ArrayLike) -> FloatArray:
    """A C-contiguous float64 array, as compiled kernels take (no copy if it already is)."""
    return np.ascontiguousarray(values, dtype=np.float64)


def contiguous_ints(values: npt.ArrayLike) -> IntArray:
    """A C-contiguous int64 array, as compiled kernels take (no copy if it already is)."""
    return np.ascontiguousarray(values, dtype=np.int64)


def plugged_at(problem: Problem, step: int) -> npt.NDArray[np.bool_]:
    """Which vehicles are plugged during ``step``."""
    return (problem.arrival_step <= step) & (problem.departure_step > step)


def future_count(mask: npt.NDArray[np.bool_], step: int, departure_step: IntArray) -> IntArray:
    """Per vehicle, the number of steps ``s`` with ``step < s < departure_step`` and ``mask[s]``."""
    cumulative = np.concatenate(([0], np.cumsum(mask, dtype=np.int64)))
    end = np.maximum(departure_step, step + 1)
    return np.asarray(cumulative[end] - cumulative[step + 1], dtype=np.int64)


def stored_to_charge_kw(stored_kwh: FloatArray, problem: Problem) -> FloatArray:
    """Charger power that stores ``stored_kwh`` in one step."""
    return stored_kwh / (problem.charge_efficiency * problem.dt_h)


def stored_to_discharge_kw(stored_kwh: FloatArray, problem: Problem) -> FloatArray:
    """Charger power (magnitude) delivered to the grid when the battery gives ``stored_kwh``."""
    return stored_kwh * problem.discharge_efficiency / problem.dt_h


def site_room_at(problem: Problem, step: int) -> tuple[FloatArray, FloatArray]:
    """Per site, how far the rows' summed power may rise and fall at ``step``: the limits
    less the site's other load there (``Problem.site_load_kw``)."""
    if problem.site_load_kw is None:
        return problem.import_limit_kw, problem.export_limit_kw
    load = problem.site_load_kw[:, step]
    return problem.import_limit_kw - load, problem.export_limit_kw + load


def apply_step(
    problem: Problem,
    state: FleetState,
    step: int,
    *,
    charge_kw: FloatArray,
    discharge_kw: FloatArray,
    must_charge_kw: FloatArray,
) -> FloatArray:
    """Fit one step into the site limits (less the sites' other load at ``step``), roll
    the stored energy on, return signed power."""
    import_room_kw, export_room_kw = site_room_at(problem, step)
    charge_kw, discharge_kw = fit_site_limits(
        charge_kw=charge_kw,
        discharge_kw=discharge_kw,
        must_charge_kw=must_charge_kw,
        site_index=problem.site_index,
        import_limit_kw=import_room_kw,
        export_limit_kw=export_room_kw,
    )
    dt_h = problem.dt_h
    state.energy_kwh += charge_kw * problem.charge_efficiency * dt_h
    state.energy_kwh -= discharge_kw * dt_h / problem.discharge_efficiency
    return charge_kw - discharge_kw


def site_derating(problem: Problem, step: int) -> FloatArray:
    """Per vehicle, the share of its charger power its site can give all plugged vehicles at once.

    ``min(1, import room / sum of max_charge_kw of the site's plugged vehicles)`` (the room:
    the import limit less the site's other load at ``step``): the power a rule planner may
    count on in later steps, when every vehicle wants to charge.
    """
    plugged = plugged_at(problem, step)
    connected_kw = np.bincount(
        problem.site_index,
        weights=np.where(plugged, problem.max_charge_kw, 0.0),
        minlength=problem.import_limit_kw.shape[0],
    )
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        room_kw = np.maximum(site_room_at(problem, step)[0], 0.0)
        share = np.where(connected_kw > 0, room_kw / connected_kw, 1.0)
    return np.asarray(np.clip(share, 0.0, 1.0)[problem.site_index])


def charge_toward_target(
    problem: Problem,
    state: FleetState,
    step: int,
    *,
    price: FloatArray | None,
) -> tuple[FloatArray, FloatArray]:
    """Charging that reaches each vehicle's target, into the cheapest steps if ``price`` is given.

    Without ``price`` a vehicle charges as fast as it can (uncontrolled). With it, a vehicle
    leaves to the strictly cheaper steps before its departure what they can hold, and
    spreads the rest of its need evenly over the steps as cheap as this one:

        later = full_step * derate * #{s : step < s < departure, price[s] < price[step]}
        now   = clip((need - later) / #{s : step <= s < departure, price[s] == price[step]},
                     0, full_step)

    where ``derate`` is the vehicle's :func:`site_derating`, so that a shared site's limit
    does not leave too much for later. Spreading instead of charging at full power keeps
    the start of the valley from becoming a new peak.

    Returns
    -------
    (charge_kw, must_charge_kw): the power to charge now and the part of it that cannot
    wait (what the remaining plugged steps could not deliver otherwise).
    """
    plugged = plugged_at(problem, step)
    need_kwh = np.maximum(problem.target_energy_kwh - state.energy_kwh, 0.0)
    full_kwh = np.minimum(state.charge_step_kwh, need_kwh)
    later_step_kwh = state.charge_step_kwh * site_derating(problem, step)
    if price is None:
        now_kwh = full_kwh
    else:
        cheaper = price < price[step]
        equal = price == price[step]
        later_kwh = later_step_kwh * future_count(cheaper, step, problem.departure_step)
        equal_steps = 1 + future_count(equal, step, problem.departure_step)
        now_kwh = np.clip((need_kwh - later_kwh) / equal_steps, 0.0, full_kwh)
    remaining_steps = np.maximum(problem.departure_step - step - 1, 0)
    must_kwh = np.clip(need_kwh - later_step_kwh * remaining_steps, 0.0, full_kwh)
    now_kwh = np.maximum(np.where(plugged, now_kwh, 0.0), np.where(plugged, must_kwh, 0.0))
    must_kwh = np.where(plugged, must_kwh, 0.0)
    return stored_to_charge_kw(now_kwh, problem), stored_to_charge_kw(must_kwh, problem)


def charge_only_schedule(
    problem: Problem, *, name: str, price: FloatArray | None, urgent_first: bool
) -> Schedule:
    """Roll :func:`charge_toward_target` over the planner's steps, without discharge.

    ``urgent_first`` gives energy that cannot wait priority at a full site; otherwise the
    site shares its capacity pro rata, as a plain load manager does.
    """
    steps = steps_to_plan(problem)
    state = FleetState.of(problem)
    power_kw = np.zeros((problem.n_vehicles, steps))
    no_discharge = np.zeros(problem.n_vehicles)
    for step in range(steps):
        charge_kw, must_kw = charge_toward_target(problem, state, step, price=price)
        power_kw[:, step] = apply_step(
            problem,
            state,
            step,
            charge_kw=charge_kw,
            discharge_kw=no_discharge,
            must_charge_kw=must_kw if urgent_first else charge_kw,
        )
    return Schedule(power_kw=power_kw, planner=name)


FEASIBLE_BLOCK_VALUES = 1 << 22
"""Values (vehicles x steps) cut at once when a plan is cut in place: 32 MB of float64."""


def make_feasible(problem: Problem, power_kw: FloatArray, *, overwrite: bool = False) -> FloatArray:
    """``power_kw`` cut, where needed, to the exact limits: charger power, the energy
    window along the path, and the sites.

    Solvers return values within their tolerances (an interior point without crossover
    may stand a hair outside a bound); this rolls the plan forward as the battery would
    and cuts what would cross a limit, so a schedule is feasible to the last digit. A
    site over its limit is scaled pro rata, discharge into the export limit first, then
    charging into the import limit plus what the remaining discharge frees (as
    :func:`~v2ghub.planning.limits.fit_site_limits` without priorities), the problem's
    ``site_load_kw`` counted in each site's sum. Compiled: it
    walks every vehicle at every step. Returns a column-major array.

    With ``overwrite`` a writable column-major float64 ``power_kw`` (what the planners
    make) is cut in place and returned, a block of vehicles at a time (the vehicles of a
    site with a limit in one block, in their order, so each site's sums add up as at
    once): the same values to the last bit, without a second array of the plan's size
    (2.3 GB for 2 million vehicles over 144 steps). Any other array is left alone and a
    new one returned, as without ``overwrite``.
    """
    # The sites' other load, made once (zeros without any), for every block below.
    site_load_kw = np.ascontiguousarray(problem.site_load, dtype=np.float64)
    if not (
        overwrite
        and power_kw.dtype == np.float64
        and power_kw.flags.f_contiguous
        and power_kw.flags.writeable
    ):
        return np.asarray(
            feasible_power(
                np.asfortranarray(power_kw, dtype=np.float64),
                *_limits(problem, None, site_load_kw),
            )
        )
    for rows in _site_blocks(problem, power_kw.shape[1]):
        # A slice of a column-major array is read as it is (each column's part is
        # contiguous); the rows of limited sites are gathered into a block of their own.
        block = power_kw[rows] if isinstance(rows, slice) else np.asfortranarray(power_kw[rows])
        power_kw[rows] = feasible_power(block, *_limits(problem, rows, site_load_kw))
    return power_kw


def _limits(
    problem: Problem, rows: slice | IntArray | None, site_load_kw: FloatArray
) -> tuple[
    IntArray,
    IntArray,
    FloatArray,
    FloatArray,
    FloatArray,
    FloatArray,
    FloatArray,
    FloatArray,
    FloatArray,
    IntArray,
    FloatArray,
    FloatArray,
    FloatArray,
    float,
]:
    """The arguments of :func:`feasible_power` after the power: those of the vehicles
    ``rows`` (all with ``None``), every site's limits and ``site_load_kw``."""
    pick = slice(None) if rows is None else rows
    return (
        contiguous_ints(problem.arrival_step[pick]),
        contiguous_ints(problem.departure_step[pick]),
        contiguous_floats(problem.max_charge_kw[pick]),
        contiguous_floats(problem.max_discharge_kw[pick]),
        contiguous_floats(problem.charge_efficiency[pick]),
        contiguous_floats(problem.discharge_efficiency[pick]),
        contiguous_floats(problem.energy_kwh[pick]),
        contiguous_floats(problem.energy_min_kwh[pick]),
        contiguous_floats(problem.energy_max_kwh[pick]),
        contiguous_ints(problem.site_index[pick]),
        contiguous_floats(problem.import_limit_kw),
        contiguous_floats(problem.export_limit_kw),
        site_load_kw,
        float(problem.dt_h),
    )


def _site_blocks(problem: Problem, steps: int) -> list[slice | IntArray]:
    """Blocks of about :data:`FEASIBLE_BLOCK_VALUES` values that :func:`feasible_power`
    may cut one at a time: the vehicles of a site with a limit (which share its room) all
    in one block, in row order; the others anywhere (an unlimited site scales nothing)."""
    n = problem.n_vehicles
    size = max(1, FEASIBLE_BLOCK_VALUES // max(steps, 1))
    limited = np.isfinite(problem.import_limit_kw) | np.isfinite(problem.export_limit_kw)
    if not limited[problem.site_index].any():
        return [slice(first, min(first + size, n)) for first in range(0, n, size)]
    key = np.where(limited[problem.site_index], problem.site_index, -1)
    order = np.argsort(key, kind="stable")  # unlimited first, then site by site
    sorted_key = key[order]
    # A block may end before position j when row j is unlimited or starts another site.
    ends = np.flatnonzero((sorted_key[1:] < 0) | (sorted_key[1:] != sorted_key[:-1])) + 1
    ends = np.append(ends, n)
    blocks: list[slice | IntArray] = []
    first = 0
    while first < n:  # blocks, never vehicles
        fitting = int(np.searchsorted(ends, first + size, side="right")) - 1
        last = int(ends[max(fitting, 0)])
        if last <= first:  # one site larger than a block: it is a block of its own
            last = int(ends[np.searchsorted(ends, first, side="right")])
        blocks.append(order[first:last])
        first = last
    return blocks


def guard_departures(problem: Problem, power_kw: FloatArray, steps: int) -> FloatArray:
    """The first ``steps`` of a plan, with every vehicle's urgent energy put first.

    A planner that sees only the vehicles plugged in now can fill a shared site's cheap
    hours with them and leave too little for what comes later. Before the plan's first
    steps are applied, this rolls them forward and, at each, charges at least what a
    vehicle could no longer make up later at its share of its site
    (:func:`charge_toward_target`'s urgent part), in place of any discharge; at a full
    site the urgent energy keeps its share first (:func:`~v2ghub.planning.limits.fit_site_limits`).
    Steps after ``steps`` are returned unchanged.
    """
    out = np.array(power_kw, dtype=np.float64, order="F", copy=True)
    state = FleetState.of(problem)
    for step in range(min(steps, out.shape[1])):  # steps, never vehicles
        _, must_kw = charge_toward_target(problem, state, step, price=None)
        planned = out[:, step]
        urgent = must_kw > 0
        charge_kw = np.where(urgent, np.maximum(planned, must_kw), np.maximum(planned, 0.0))
        discharge_kw = np.where(urgent, 0.0, np.maximum(-planned, 0.0))
        out[:, step] = apply_step(
            problem,
            state,
            step,
            charge_kw=charge_kw,
            discharge_kw=discharge_kw,
            must_charge_kw=must_kw,
        )
    return out
