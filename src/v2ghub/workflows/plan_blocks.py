"""A day-ahead plan of millions of sessions made a block of sites at a time and kept as
each vehicle's plugged steps only.

A planner whose plan of a site depends on that site's vehicles alone (the fast planner
without a peak price or the valley rule: both price the whole fleet together) plans the
same powers, to the last bit, whether it sees the whole problem or a block of sites:
:func:`plan_in_site_blocks` plans and checks the problem a block at a time, and keeps of
each block's plan only the steps each vehicle is plugged for (:class:`PluggedPlan`; every
other step is zero by the guarantees). A vehicle at a site without limits is coupled to
no other, so such sites' vehicles are blocked a row range at a time, whatever their site.

For 2 million sessions over 144 steps the whole plan's array is 2.3 GB of float64; the
plugged steps of sessions plugged for 6.5 hours on average are 0.4 GB, and a block's plan
is :data:`PLAN_BLOCK_VALUES` values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from v2ghub.errors import PlanningError
from v2ghub.model.problem import Planner, Problem
from v2ghub.planning.check import TOLERANCE_KW, Violation, ViolationKind, check, planner_name
from v2ghub.workflows._plan_blocks_kernel import dense_rows, keep_plugged

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PLAN_BLOCK_VALUES = 1 << 23
"""Vehicles x steps planned at once (64 MB of float64); a limited site's vehicles are
never split, so a block holds more where one site does."""

_KIND_ORDER = (
    ViolationKind.SHAPE,
    ViolationKind.NOT_FINITE,
    ViolationKind.UNPLUGGED,
    ViolationKind.CHARGE_LIMIT,
    ViolationKind.DISCHARGE_LIMIT,
    ViolationKind.ENERGY_BELOW_WINDOW,
    ViolationKind.ENERGY_ABOVE_WINDOW,
    ViolationKind.SITE_IMPORT,
    ViolationKind.SITE_EXPORT,
)
"""The order in which :func:`~v2ghub.planning.check.check` reports the kinds."""


@dataclass(frozen=True)
class PluggedPlan:
    """A plan (kW, vehicles x steps, + charging) holding each vehicle's plugged steps only.

    Vehicle ``i``'s power in step ``arrival_step[i] + k`` is
    ``power_kw[offsets[i] + k]`` for ``0 <= k < departure_step[i] - arrival_step[i]``; it
    is zero in every other step. :meth:`rows` gives a block of vehicles as a dense array,
    as :mod:`v2ghub.report.schedule_files` reads a plan.
    """

    arrival_step: IntArray
    departure_step: IntArray
    offsets: IntArray
    power_kw: FloatArray
    n_steps: int

    @classmethod
    def zeros(cls, problem: Problem) -> PluggedPlan:
        """A plan of zeros for ``problem``'s vehicles."""
        arrival = np.ascontiguousarray(problem.arrival_step, dtype=np.int64)
        departure = np.ascontiguousarray(problem.departure_step, dtype=np.int64)
        offsets = np.zeros(arrival.size + 1, dtype=np.int64)
        np.cumsum(departure - arrival, out=offsets[1:])
        return cls(
            arrival_step=arrival,
            departure_step=departure,
            offsets=offsets,
            power_kw=np.zeros(int(offsets[-1])),
            n_steps=problem.grid.length,
        )

    @property
    def shape(self) -> tuple[int, int]:
        """(vehicles, steps), as the dense plan's."""
        return (self.arrival_step.size, self.n_steps)

    def set_rows(self, rows: IntArray, block_kw: FloatArray) -> None:
        """Keep the plugged steps of ``block_kw`` (``rows.size`` x steps) as the plan of
        vehicles ``rows``."""
        keep_plugged(
            block_kw,
            np.ascontiguousarray(rows, dtype=np.int64),
            self.arrival_step,
            self.departure_step,
            self.offsets,
            self.power_kw,
        )

    def rows(self, first: int, last: int) -> FloatArray:
        """The plan of vehicles ``first .. last - 1`` as a dense column-major array (the
        layout of the planners' own plans, which the summary's kernel reads fastest)."""
        block_kw = np.empty((last - first, self.n_steps), order="F")
        dense_rows(
            first, self.arrival_step, self.departure_step, self.offsets, self.power_kw, block_kw
        )
        return block_kw


def site_blocks(problem: Problem, max_values: int | None = None) -> list[IntArray]:
    """The vehicle rows of each block, ascending, of about ``max_values`` vehicles x steps
    (default :data:`PLAN_BLOCK_VALUES`).

    The vehicles of a site with an import or export limit (or other load) are in one block,
    consecutive sites together; the vehicles of the other sites are coupled to none and
    are cut in row ranges.
    """
    values = PLAN_BLOCK_VALUES if max_values is None else max_values
    per_block = max(1, values // max(problem.grid.length, 1))
    n_sites = problem.import_limit_kw.shape[0]
    limited = np.isfinite(problem.import_limit_kw) | np.isfinite(problem.export_limit_kw)
    if problem.site_load_kw is not None:
        limited |= np.any(problem.site_load_kw != 0, axis=1)
    at_limited = limited[problem.site_index]
    blocks: list[IntArray] = []
    if at_limited.any():
        counts = np.bincount(problem.site_index[at_limited], minlength=n_sites)
        # Each limited site joins the block where its first vehicle would fall.
        block_of_site = (np.cumsum(counts) - counts) // per_block
        vehicle_block = block_of_site[problem.site_index[at_limited]]
        rows = np.flatnonzero(at_limited)
        order = np.argsort(vehicle_block, kind="stable")
        cuts = np.flatnonzero(np.diff(vehicle_block[order])) + 1
        blocks += [rows[part] for part in np.split(order, cuts)]
    free = np.flatnonzero(~at_limited)
    blocks += [free[first : first + per_block] for first in range(0, free.size, per_block)]
    return blocks


def _merged(found: list[Violation]) -> list[Violation]:
    """The violations of all blocks as one check of the whole plan reports them: per kind
    the number of cases summed and the worst case kept."""
    merged: list[Violation] = []
    for kind in _KIND_ORDER:
        same = [v for v in found if v.kind == kind]
        if same:
            worst = max(same, key=lambda v: v.excess)
            merged.append(replace(worst, count=sum(v.count for v in same)))
    return merged


def plan_in_site_blocks(
    planner: Planner,
    problem: Problem,
    *,
    max_values: int | None = None,
    tolerance_kw: float = TOLERANCE_KW,
) -> PluggedPlan:
    """Plan ``problem`` with ``planner`` a block of sites at a time (:func:`site_blocks`),
    check each block's schedule against the guarantees, and keep the plugged steps.

    Only for a planner whose plan of a site depends on that site's vehicles alone: then
    the plan is the one the planner makes of the whole problem, and so is the check (the
    rows and sites a violation names are the whole problem's).

    Raises
    ------
    PlanningError
        When a block's schedule breaks a guarantee, naming every kind broken in any block
        (after every block is planned), as :func:`~v2ghub.planning.check.plan_checked`.
    """
    plan = PluggedPlan.zeros(problem)
    found: list[Violation] = []
    for rows in site_blocks(problem, max_values):
        part = problem.rows(rows)
        schedule = planner.plan(part)
        violations = check(part, schedule, tolerance_kw=tolerance_kw)
        found += [v if v.row is None else replace(v, row=int(rows[v.row])) for v in violations]
        if not found:
            plan.set_rows(rows, schedule.power_kw)
    if found:
        broken = "; ".join(str(v) for v in _merged(found))
        raise PlanningError(f"planner {planner_name(planner)!r} broke a guarantee: {broken}")
    return plan
