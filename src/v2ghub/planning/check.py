"""One checked path from a problem to a schedule: :func:`check` and :func:`plan_safely`.

The twin, ``v2ghub plan`` and the live control loop all go through :func:`plan_safely`:
plan, check the schedule against the design's guarantees, and fall back to the safe
charge-only plan (with the reason) when the planner raises, times out or breaks one.

A schedule keeps the guarantees when, for every row ``i`` and checked step ``t``
(``dt_h`` the step length, ``e`` the stored energy):

- power is zero outside ``arrival_step[i] <= t < departure_step[i]``;
- ``-max_discharge_kw[i] - tol <= p[i, t] <= max_charge_kw[i] + tol``;
- per site ``s``: ``-export_limit_kw[s] - tol_s <= sum_{i at s} p[i, t] <= import_limit_kw[s]
  + tol_s`` with ``tol_s = tol + 1e-9 * |limit|`` (sums of many rows round);
- ``e[i, t+1] = e[i, t] + dt_h * (eta_c * max(p, 0) + min(p, 0) / eta_d)`` never leaves
  ``[energy_min_kwh - tol * 1 h, energy_max_kwh + tol * 1 h]`` by a step that pushes it
  further out (a vehicle that plugs in below its window may charge back into it).

Energy short of the target at departure is not a violation: planners report it per
vehicle, and physics may make it unavoidable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from v2ghub.errors import PlanningError
from v2ghub.model.problem import Planner, Problem, Schedule
from v2ghub.planning._check_kernel import (
    ABOVE,
    BELOW,
    CHARGE,
    DISCHARGE,
    NOT_FINITE,
    UNPLUGGED,
    check_rows,
)

FloatArray = npt.NDArray[np.float64]

TOLERANCE_KW = 1e-5
"""How far (kW) a schedule may pass a limit before it counts as broken (solver rounding)."""

SAFE_PLANNER_NAME = "safe-fallback"


class ViolationKind(StrEnum):
    """Which guarantee a schedule breaks."""

    SHAPE = "shape"
    NOT_FINITE = "not finite"
    UNPLUGGED = "power while unplugged"
    CHARGE_LIMIT = "above charging limit"
    DISCHARGE_LIMIT = "beyond discharging limit"
    SITE_IMPORT = "above site import limit"
    SITE_EXPORT = "beyond site export limit"
    ENERGY_BELOW_WINDOW = "energy below the SoC window"
    ENERGY_ABOVE_WINDOW = "energy above the SoC window"


@dataclass(frozen=True)
class Violation:
    """One broken guarantee: its kind, where (row or site index, step) and by how much.

    ``row`` is a row of the problem (a vehicle, or a forecast row), ``site`` an index into
    its site arrays; ``excess`` is in kW (power limits) or kWh (energy window).
    """

    kind: ViolationKind
    count: int
    row: int | None = None
    site: int | None = None
    step: int | None = None
    excess: float = 0.0
    detail: str = ""
    """More about it, where the kind alone says too little (a wrong shape's numbers)."""

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.site is not None:
            where.append(f"site {self.site}")
        if self.step is not None:
            where.append(f"step {self.step}")
        at = f" at {', '.join(where)}" if where else ""
        more = f" ({self.count:,} cases)" if self.count > 1 else ""
        by = f" by {self.excess:.6g}" if self.excess else ""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.kind.value}{detail}{at}{by}{more}"


def check(
    problem: Problem,
    schedule: Schedule,
    *,
    steps: int | None = None,
    tolerance_kw: float = TOLERANCE_KW,
) -> list[Violation]:
    """Every guarantee ``schedule`` breaks on ``problem`` (empty: it keeps them all).

    ``steps`` limits the check to the first steps (the ones that will be applied before
    the next plan); by default every step the schedule covers is checked. A schedule must
    cover at least ``min(control_steps, horizon)`` steps and at most the horizon. At most
    one violation per kind is returned, the worst, with the number of cases.

    Examples
    --------
    >>> from v2ghub.planning import UncontrolledPlanner
    >>> from v2ghub.planning.check import check
    >>> from v2ghub.scenarios.examples import small_problem
    >>> problem = small_problem()
    >>> check(problem, UncontrolledPlanner().plan(problem))
    []
    """
    n_rows, horizon = problem.n_vehicles, problem.grid.length
    needed = min(problem.control_steps, horizon)
    if not isinstance(schedule, Schedule) or not isinstance(schedule.power_kw, np.ndarray):
        what = type(schedule.power_kw if isinstance(schedule, Schedule) else schedule).__name__
        return [Violation(ViolationKind.SHAPE, 1, detail=f"a {what}, not a Schedule of arrays")]
    power = schedule.power_kw
    if power.ndim != 2 or power.shape[0] != n_rows or not needed <= power.shape[1] <= horizon:
        expected = f"({n_rows}, {needed}..{horizon})"
        return [Violation(ViolationKind.SHAPE, 1, detail=f"{power.shape}, not {expected}")]
    n_steps = power.shape[1] if steps is None else min(max(steps, 0), power.shape[1])
    if n_rows == 0 or n_steps == 0:
        return []
    power = np.asarray(power[:, :n_steps], dtype=np.float64)
    counts, worst, rows, steps_at, site_kw, finite = check_rows(
        power,
        _floats(problem.energy_kwh),
        _ints(problem.arrival_step),
        _ints(problem.departure_step),
        _floats(problem.max_charge_kw),
        _floats(problem.max_discharge_kw),
        _floats(problem.charge_efficiency),
        _floats(problem.discharge_efficiency),
        _floats(problem.energy_min_kwh),
        _floats(problem.energy_max_kwh),
        _ints(problem.site_index),
        problem.import_limit_kw.shape[0],
        problem.dt_h,
        tolerance_kw,
        tolerance_kw * 1.0,  # kWh: the power tolerance held for an hour
        bool(power.flags.f_contiguous and not power.flags.c_contiguous),
    )
    found = [
        Violation(
            kind,
            int(counts[index]),
            row=int(rows[index]),
            step=int(steps_at[index]),
            excess=float(worst[index]),
        )
        for kind, index in _ROW_KINDS
        if counts[index]
    ]
    if finite:
        found += _site_violations(problem, site_kw, tolerance_kw)
    return found


_ROW_KINDS = (
    (ViolationKind.NOT_FINITE, NOT_FINITE),
    (ViolationKind.UNPLUGGED, UNPLUGGED),
    (ViolationKind.CHARGE_LIMIT, CHARGE),
    (ViolationKind.DISCHARGE_LIMIT, DISCHARGE),
    (ViolationKind.ENERGY_BELOW_WINDOW, BELOW),
    (ViolationKind.ENERGY_ABOVE_WINDOW, ABOVE),
)
"""Each per-row kind and its index in the kernel's arrays, in the order reported."""


def _floats(values: npt.NDArray[np.float64]) -> FloatArray:
    return np.ascontiguousarray(values, dtype=np.float64)


def _ints(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return np.ascontiguousarray(values, dtype=np.int64)


def _site_violations(problem: Problem, site_kw: FloatArray, tolerance_kw: float) -> list[Violation]:
    """Site import and export limits, every checked step (``site_kw``: sites x steps), the
    problem's ``site_load_kw`` counted."""
    if problem.site_load_kw is not None:
        site_kw = site_kw + problem.site_load_kw[:, : site_kw.shape[1]]
    found = []
    for kind, limit, sign in (
        (ViolationKind.SITE_IMPORT, problem.import_limit_kw, 1.0),
        (ViolationKind.SITE_EXPORT, problem.export_limit_kw, -1.0),
    ):
        finite = np.isfinite(limit)
        slack = tolerance_kw + 1e-9 * np.abs(np.where(finite, limit, 0.0))
        excess = np.where(finite[:, None], sign * site_kw - limit[:, None], -np.inf)
        bad = excess > slack[:, None]
        if bad.any():
            worst = int(np.argmax(np.where(bad, excess, -np.inf)))
            site, step = np.unravel_index(worst, bad.shape)
            found.append(
                Violation(
                    kind,
                    int(bad.sum()),
                    site=int(site),
                    step=int(step),
                    excess=float(excess.flat[worst]),
                )
            )
    return found


def safe_plan(problem: Problem, reason: str) -> Schedule:
    """The fallback: charge-only at full power within all limits, with the reason recorded."""
    from v2ghub.planning.uncontrolled import UncontrolledPlanner  # noqa: PLC0415 - no cycle

    schedule = UncontrolledPlanner().plan(problem)
    return Schedule(power_kw=schedule.power_kw, planner=SAFE_PLANNER_NAME, fallback_reason=reason)


def planner_name(planner: Planner) -> str:
    """The planner's ``name``, else its class name."""
    name = getattr(planner, "name", None)
    return name if isinstance(name, str) else type(planner).__name__


def plan_safely(
    planner: Planner,
    problem: Problem,
    *,
    steps: int | None = None,
    timeout_s: float | None = None,
    tolerance_kw: float = TOLERANCE_KW,
    on_planned: Callable[[float], None] | None = None,
    describe: Callable[[Violation], str] = str,
) -> Schedule:
    """Plan ``problem`` with ``planner``, check the schedule, fall back if it fails.

    The schedule is returned when :func:`check` finds nothing (over its first ``steps``,
    or all). Otherwise, and when the planner raises or (with ``timeout_s``) does not answer
    within that many wall seconds, the safe charge-only plan comes back with
    ``fallback_reason`` saying why. A planner that times out runs on in its daemon thread
    (Python cannot stop it); its late answer is dropped. ``on_planned`` is told the seconds
    the planner took. ``describe`` words a violation for the reason (the live loop names
    stations and sites instead of row and site numbers).

    Examples
    --------
    >>> from v2ghub.planning.check import plan_safely
    >>> from v2ghub.scenarios.examples import small_problem
    >>> class Reckless:
    ...     name = "reckless"
    ...     def plan(self, problem):
    ...         import numpy as np
    ...         from v2ghub.model import Schedule
    ...         power = np.full((problem.n_vehicles, problem.grid.length), 1000.0)
    ...         return Schedule(power_kw=power, planner=self.name)
    >>> schedule = plan_safely(Reckless(), small_problem())
    >>> schedule.planner
    'safe-fallback'
    >>> schedule.fallback_reason.split(":")[0]
    "planner 'reckless' broke a guarantee"
    """
    name = planner_name(planner)
    started = time.perf_counter()
    outcome = _run(planner, problem, timeout_s)
    if on_planned is not None:
        on_planned(time.perf_counter() - started)
    if outcome is None:
        return safe_plan(problem, f"planner {name!r} timed out after {timeout_s:g} s")
    if isinstance(outcome, Exception):
        return safe_plan(problem, f"planner {name!r} failed: {type(outcome).__name__}: {outcome}")
    broken = _broken(
        name, problem, outcome, steps=steps, tolerance_kw=tolerance_kw, describe=describe
    )
    return outcome if broken is None else safe_plan(problem, broken)


def plan_checked(
    planner: Planner,
    problem: Problem,
    *,
    steps: int | None = None,
    tolerance_kw: float = TOLERANCE_KW,
) -> Schedule:
    """Plan ``problem`` with ``planner`` and check the schedule; no fallback.

    For a plan a person asked for (``v2ghub plan``): the planner's own error propagates,
    and a schedule that breaks a guarantee raises :class:`~v2ghub.errors.PlanningError`
    naming it, so no unchecked schedule is ever written. :func:`plan_safely` is this with
    the fallback a running system needs.
    """
    schedule = planner.plan(problem)
    broken = _broken(
        planner_name(planner), problem, schedule, steps=steps, tolerance_kw=tolerance_kw
    )
    if broken is not None:
        raise PlanningError(broken)
    return schedule


def _broken(
    name: str,
    problem: Problem,
    schedule: Schedule,
    *,
    steps: int | None,
    tolerance_kw: float,
    describe: Callable[[Violation], str] = str,
) -> str | None:
    """What guarantees the schedule breaks, in one sentence, or ``None``."""
    violations = check(problem, schedule, steps=steps, tolerance_kw=tolerance_kw)
    if not violations:
        return None
    return f"planner {name!r} broke a guarantee: {'; '.join(describe(v) for v in violations)}"


def _run(
    planner: Planner, problem: Problem, timeout_s: float | None
) -> Schedule | Exception | None:
    """The planner's schedule, the error it raised, or ``None`` if it timed out."""
    if timeout_s is None:
        try:
            return planner.plan(problem)
        except Exception as error:  # reported as the fallback's reason
            return error
    outcome: list[Schedule | Exception] = []

    def work() -> None:
        try:
            outcome.append(planner.plan(problem))
        except Exception as error:  # reported as the fallback's reason
            outcome.append(error)

    worker = threading.Thread(target=work, name=f"planner-{planner_name(planner)}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    return outcome[0] if outcome else None
