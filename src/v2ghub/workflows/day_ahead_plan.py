"""``v2ghub plan``: every session of a file planned over a price series at once, checked,
and written as a schedule (and a summary of its exact cost)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from v2ghub import defaults
from v2ghub.choices import PLAN_PLANNERS
from v2ghub.errors import InputError
from v2ghub.files import Replaces, atomic_texts, check_replaceable
from v2ghub.model.fleet import ChargerKind
from v2ghub.model.problem import Planner, Problem, capabilities_of
from v2ghub.model.sites import SiteLimits
from v2ghub.model.valley_rule import ValleyRule, valley_steps
from v2ghub.planning import make_planner
from v2ghub.planning.check import plan_checked
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.lp import LpPlanner
from v2ghub.scenarios.day_ahead import (
    check_prices_for_lp,
    day_ahead_problem,
    sessions_without_step,
)
from v2ghub.scenarios.prices_csv import load_prices_csv
from v2ghub.scenarios.sessions_csv import load_sessions_csv
from v2ghub.scenarios.sites_csv import load_sites_csv
from v2ghub.workflows.plan_blocks import PluggedPlan, plan_in_site_blocks

FloatArray = npt.NDArray[np.float64]

DEFAULT_PLAN_PLANNER = defaults.PLAN_PLANNER
# A share this far below the rule's still meets it (the planners' rounding).
RULE_TOLERANCE = 1e-6
PEAK_PRICE_PLANNERS = ("lp", "fast")


@dataclass(frozen=True)
class DayAheadPlan:
    """What was written: the planner's name and the plan's summary (``--summary``)."""

    planner: str
    summary: dict[str, Any]
    warnings: tuple[str, ...] = ()
    """One line each, for the user: e.g. the sessions that got no whole price step."""


def non_negative(text: str, option: str) -> float:
    """The value of a numeric option: a finite number >= 0."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise InputError(f"{option}: not a number: {text!r}") from None
    if not (value.is_finite() and value >= 0 and math.isfinite(float(value))):
        raise InputError(f"{option}: must be a finite number >= 0, got {text!r}")
    return float(value)


def _outputs(out: Path, summary: Path | None, *, force: bool) -> list[tuple[Path, Replaces]]:
    """The files to write, each with what it may replace: an earlier plan's file, an empty
    file, or (with ``force``) any regular file; never a device, a folder or, without
    ``force``, a symbolic link."""
    from v2ghub.report.schedule_files import (  # noqa: PLC0415 - writing only
        is_plan_summary,
        is_schedule_csv,
    )

    outputs = [(out, Replaces("v2ghub schedule", is_schedule_csv, force=force, option="--out"))]
    if summary is not None:
        outputs.append(
            (
                summary,
                Replaces("v2ghub plan summary", is_plan_summary, force=force, option="--summary"),
            )
        )
    return outputs


def _check_paths(outputs: list[tuple[Path, Replaces]], inputs: list[Path]) -> None:
    for output, rule in outputs:
        check_replaceable(output, rule)
        if any(output.resolve() == source.resolve() for source in inputs):
            raise InputError("is also an input file; write the output elsewhere", file=output)
    if len(outputs) == 2 and outputs[0][0].resolve() == outputs[1][0].resolve():
        raise InputError("--summary and --out name the same file", file=outputs[0][0])


def valley_rule_figures(
    problem: Problem, rule: ValleyRule, power_kw: FloatArray
) -> dict[str, float | bool | None]:
    """The valley rule's figures of a plan: the shares of the charging energy (grid side)
    in valley steps, of all sessions and of those on home chargers (None where nothing is
    charged), and whether both rules are met; a block of vehicles at a time."""
    from v2ghub.report.schedule_files import vehicle_blocks  # noqa: PLC0415 - writing only

    valley = valley_steps(problem.period_kind)[: power_kw.shape[1]]
    sums = np.zeros((2, 2))  # (all, private) x (charged, in valley)
    for first, last in vehicle_blocks(problem.n_vehicles, problem.grid.length):
        charged_kw = np.maximum(power_kw[first:last], 0.0)
        per_vehicle = np.stack((charged_kw.sum(axis=1), charged_kw[:, valley].sum(axis=1)))
        sums[0] += per_vehicle.sum(axis=1)
        sums[1] += per_vehicle[:, rule.private[first:last]].sum(axis=1)
    share = [valley / charged if charged > 0 else None for charged, valley in sums]
    met = all(
        reached is None or reached >= wanted - RULE_TOLERANCE
        for reached, wanted in zip(share, (rule.share, rule.private_share), strict=True)
    )
    return {
        "valley_share": None if share[0] is None else round(share[0], 6),
        "valley_share_private": None if share[1] is None else round(share[1], 6),
        "valley_rule_met": met,
    }


def plans_sites_apart(planner: Planner, problem: Problem) -> bool:
    """Whether ``planner`` plans each site of ``problem`` from that site's vehicles alone,
    so that :func:`~v2ghub.workflows.plan_blocks.plan_in_site_blocks` plans the same: the
    fast planner itself without a peak price, the valley rule or the departure guard
    (each of which couples the whole fleet), on a problem without regulation headroom."""
    return (
        type(planner) is FastPlanner
        and planner.peak_price_cny_per_kw == 0
        and not planner.keep_valley_rule
        and not planner.guard
        and problem.valley_rule is None
        and not problem.regulation_price.any()
        and not problem.regulation_commitment.any()
    )


def plan_files(
    *,
    sessions: Path,
    prices: Path,
    out: Path,
    sites: Path | None = None,
    summary: Path | None = None,
    planner: str | Planner = DEFAULT_PLAN_PLANNER,
    degradation_cny_per_kwh: str = defaults.DEGRADATION_CNY_PER_KWH,
    peak_price_cny_per_kw: str | None = None,
    force: bool = False,
    pilot_rules: bool = False,
) -> DayAheadPlan:
    """Read the files, plan every session with ``planner`` (a name of
    :data:`PLAN_PLANNERS` or a planner object of one's own), check the schedule against
    the guarantees (a broken one raises :class:`~v2ghub.errors.PlanningError`, never is
    written), then write ``out`` (and ``summary``); both are replaced only together.

    An existing ``out`` or ``summary`` is replaced only if it is an earlier plan's file (by
    its header or keys) or empty, unless ``force``; a device, a folder or (without
    ``force``) a symbolic link never is (:mod:`v2ghub.files`).

    With ``pilot_rules`` the plan keeps the pilots' valley rule (``lp+rules`` or
    ``fast+rules``: 60% of the charging energy in the valley steps, 80% on home chargers,
    each relaxed at a stated penalty where the plugged hours do not allow it;
    :mod:`v2ghub.model.valley_rule`); the valley steps are the lowest-priced ones."""
    from v2ghub.report.schedule_files import (  # noqa: PLC0415 - writing only
        plan_summary,
        write_schedule_rows,
        write_summary,
    )

    if isinstance(planner, str) and planner not in PLAN_PLANNERS:
        raise InputError(
            f"--planner: unknown planner {planner!r} (known: {', '.join(PLAN_PLANNERS)})"
        )
    degradation = non_negative(degradation_cny_per_kwh, "--degradation-cny-per-kwh")
    peak_price = 0.0
    if peak_price_cny_per_kw is not None:
        takes_peak = (
            planner in PEAK_PRICE_PLANNERS
            if isinstance(planner, str)
            else capabilities_of(planner).peak_price
        )
        if not takes_peak:
            raise InputError(
                "--peak-price-cny-per-kw applies to --planner lp or fast, not "
                f"{planner if isinstance(planner, str) else planner.name!r}"
            )
        peak_price = non_negative(peak_price_cny_per_kw, "--peak-price-cny-per-kw")
    if pilot_rules and planner not in PEAK_PRICE_PLANNERS:
        raise InputError(
            "--pilot-rules applies to --planner lp or fast, not "
            f"{planner if isinstance(planner, str) else planner.name!r}"
        )
    outputs = _outputs(out, summary, force=force)
    _check_paths(outputs, [p for p in (sessions, prices, sites) if p is not None])
    read = load_sessions_csv(sessions)
    limits = (
        load_sites_csv(sites, site_ids=read.site_ids)
        if sites is not None
        else SiteLimits.unlimited(read.site_ids)
    )
    series = load_prices_csv(prices)
    # Arrow's memory pool keeps what the CSV reader freed (a third of a GB for 2 million
    # sessions) for reads to come; there are none, and the plan's array comes next.
    pa.default_memory_pool().release_unused()
    problem = day_ahead_problem(
        fleet=read.fleet,
        sites=limits,
        prices=series,
        degradation_cny_per_kwh=degradation,
        sessions_file=sessions,
        session_rows=read.rows,
    )
    if pilot_rules:
        home = read.fleet.charger_kind[problem.vehicle_index] == ChargerKind.HOME
        problem = replace(problem, valley_rule=ValleyRule(private=home))
    # Sessions with no whole price step are planned at zero power: their need is
    # unavoidable shortfall, counted in the summary and in one warning line.
    unplanned = sessions_without_step(fleet=read.fleet, grid=series.grid, session_rows=read.rows)
    warning = unplanned.warning(fleet=read.fleet, grid=series.grid, sessions_file=sessions)
    fleet = read.fleet
    session_ids = (
        fleet.session_ids
        if fleet.session_ids is not None
        else np.char.add("#", np.arange(fleet.n_sessions).astype(np.str_))
    )
    # The problem holds copies of what it plans from the fleet: the loader's arrays (a
    # quarter of a GB for 2 million sessions) are freed before the plan is made.
    del read, fleet
    chosen: Planner
    if not isinstance(planner, str):
        chosen = planner
    elif planner == "lp":
        check_prices_for_lp(problem, prices=series, prices_file=prices)
        chosen = LpPlanner(peak_price_cny_per_kw=peak_price, keep_valley_rule=pilot_rules)
    elif planner == "fast":
        chosen = FastPlanner(peak_price_cny_per_kw=peak_price, keep_valley_rule=pilot_rules)
    else:
        chosen = make_planner(planner)
    started = time.perf_counter()
    power_kw: FloatArray | PluggedPlan
    if plans_sites_apart(chosen, problem):
        # A block of sites at a time, keeping each session's plugged steps only (the whole
        # plan of 2 million sessions over 144 steps is 2.3 GB of float64).
        power_kw = plan_in_site_blocks(chosen, problem)
    else:
        power_kw = plan_checked(chosen, problem).power_kw
    solve_seconds = time.perf_counter() - started
    figures = plan_summary(
        problem=problem,
        power_kw=power_kw,
        prices=series,
        planner=chosen.name,
        solve_seconds=solve_seconds,
        peak_price_cny_per_kw=peak_price,
    )
    figures = unplanned.add_to_summary(figures, session_ids=session_ids)
    if problem.valley_rule is not None and isinstance(power_kw, np.ndarray):
        figures |= valley_rule_figures(problem, problem.valley_rule, power_kw)
    for output, _ in outputs:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InputError(
                f"cannot make the folder ({error.strerror or error})", file=output.parent
            ) from None
    # Both files are written to temporary files and renamed only once both are written
    # and checked again: a failure in either leaves both as they were.
    with atomic_texts(outputs) as handles:
        write_schedule_rows(
            handles[0],
            problem=problem,
            power_kw=power_kw,
            session_ids=session_ids[problem.vehicle_index],
            grid=problem.grid,
            utc_offsets_s=series.utc_offsets_s,
        )
        if summary is not None:
            write_summary(handles[1], figures)
    return DayAheadPlan(
        planner=chosen.name, summary=figures, warnings=() if warning is None else (warning,)
    )
