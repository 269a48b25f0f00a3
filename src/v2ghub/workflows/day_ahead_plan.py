"""``v2ghub plan``: every session of a file planned over a price series at once, checked,
and written as a schedule (and a summary of its exact cost)."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np

from v2ghub import defaults
from v2ghub.choices import PLAN_PLANNERS
from v2ghub.errors import InputError
from v2ghub.files import atomic_text
from v2ghub.model.problem import Planner, capabilities_of
from v2ghub.model.sites import SiteLimits
from v2ghub.planning import make_planner
from v2ghub.planning.check import plan_checked
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.lp import LpPlanner
from v2ghub.scenarios.day_ahead import check_prices_for_lp, day_ahead_problem
from v2ghub.scenarios.prices_csv import load_prices_csv
from v2ghub.scenarios.sessions_csv import load_sessions_csv
from v2ghub.scenarios.sites_csv import load_sites_csv

DEFAULT_PLAN_PLANNER = defaults.PLAN_PLANNER
PEAK_PRICE_PLANNERS = ("lp", "fast")


@dataclass(frozen=True)
class DayAheadPlan:
    """What was written: the planner's name and the plan's summary (``--summary``)."""

    planner: str
    summary: dict[str, Any]


def non_negative(text: str, option: str) -> float:
    """The value of a numeric option: a finite number >= 0."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise InputError(f"{option}: not a number: {text!r}") from None
    if not (value.is_finite() and value >= 0 and math.isfinite(float(value))):
        raise InputError(f"{option}: must be a finite number >= 0, got {text!r}")
    return float(value)


def _check_paths(out: Path, summary: Path | None, inputs: list[Path]) -> None:
    outputs = [out] + ([summary] if summary is not None else [])
    for output in outputs:
        if output.is_dir():
            raise InputError("is a folder; give the name of the file to write", file=output)
        if any(output.resolve() == source.resolve() for source in inputs):
            raise InputError("is also an input file; write the output elsewhere", file=output)
    if summary is not None and summary.resolve() == out.resolve():
        raise InputError("--summary and --out name the same file", file=out)


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
) -> DayAheadPlan:
    """Read the files, plan every session with ``planner`` (a name of
    :data:`PLAN_PLANNERS` or a planner object of one's own), check the schedule against
    the guarantees (a broken one raises :class:`~v2ghub.errors.PlanningError`, never is
    written), then write ``out`` (and ``summary``); both are replaced only together."""
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
    _check_paths(out, summary, [p for p in (sessions, prices, sites) if p is not None])
    read = load_sessions_csv(sessions)
    limits = (
        load_sites_csv(sites, site_ids=read.site_ids)
        if sites is not None
        else SiteLimits.unlimited(read.site_ids)
    )
    series = load_prices_csv(prices)
    problem = day_ahead_problem(
        fleet=read.fleet,
        sites=limits,
        prices=series,
        degradation_cny_per_kwh=degradation,
        sessions_file=sessions,
        session_rows=read.rows,
    )
    chosen: Planner
    if not isinstance(planner, str):
        chosen = planner
    elif planner == "lp":
        check_prices_for_lp(problem, prices=series, prices_file=prices)
        chosen = LpPlanner(peak_price_cny_per_kw=peak_price)
    elif planner == "fast":
        chosen = FastPlanner(peak_price_cny_per_kw=peak_price)
    else:
        chosen = make_planner(planner)
    started = time.perf_counter()
    schedule = plan_checked(chosen, problem)
    solve_seconds = time.perf_counter() - started
    figures = plan_summary(
        problem=problem,
        power_kw=schedule.power_kw,
        prices=series,
        planner=chosen.name,
        solve_seconds=solve_seconds,
        peak_price_cny_per_kw=peak_price,
    )
    fleet = read.fleet
    session_ids = (
        fleet.session_ids
        if fleet.session_ids is not None
        else np.char.add("#", np.arange(fleet.n_sessions).astype(np.str_))
    )
    for output in [out] + ([summary] if summary is not None else []):
        output.parent.mkdir(parents=True, exist_ok=True)
    # Both files are written to temporary files and renamed at the end: a failure in
    # either leaves neither half-written.
    with contextlib.ExitStack() as files:
        schedule_file = files.enter_context(atomic_text(out))
        summary_file = files.enter_context(atomic_text(summary)) if summary is not None else None
        write_schedule_rows(
            schedule_file,
            problem=problem,
            power_kw=schedule.power_kw,
            session_ids=session_ids,
            grid=problem.grid,
        )
        if summary_file is not None:
            write_summary(summary_file, figures)
    return DayAheadPlan(planner=chosen.name, summary=figures)
