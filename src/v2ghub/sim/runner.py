"""Run every city of a scenario with every planner, one city in memory at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from functools import partial

from v2ghub.model.case import CityCase
from v2ghub.planning import make_planner
from v2ghub.sim.engine import Simulator
from v2ghub.sim.metrics import RunResult, RunSummary, evaluate, summarise
from v2ghub.sim.regulation_service import RegulationFollower, RegulationOffer


def _share_done(report: Callable[[str, float], None], label: str, length: int, done: int) -> None:
    report(label, done / length)


def run_cases(
    cases: Iterable[CityCase],
    planners: Sequence[str],
    *,
    control_steps: int = 1,
    on_step: Callable[[str, float], None] | None = None,
    on_result: Callable[[RunResult], None] | None = None,
    regulation: RegulationOffer | None = None,
) -> list[RunSummary]:
    """Simulate each case with each planner; cities in order, planners within each city.

    ``cases`` may be a generator: each case and its full results are dropped once
    ``on_result`` (which may write per-session detail) has seen them, so memory holds one
    city at a time. ``on_step(label, share)`` is told the share (0-1) of the current run
    done after each step. With ``regulation``, every run also offers frequency regulation
    (:mod:`v2ghub.sim.regulation_service`).
    """
    summaries = []
    for case in cases:
        for name in planners:
            label = f"{case.city} / {name}"
            hook = (
                partial(_share_done, on_step, label, max(case.grid.length, 1))
                if on_step is not None
                else None
            )
            follower = (
                RegulationFollower(case.grid, timezone=case.tariff.timezone, offer=regulation)
                if regulation is not None
                else None
            )
            run = Simulator(
                case,
                make_planner(name),
                control_steps=control_steps,
                on_step=hook,
                regulation=follower,
            ).run()
            result = evaluate(run)
            if on_result is not None:
                on_result(result)
            summaries.append(summarise(result))
    return summaries


def with_peak_reduction(results: list[RunSummary], reference: str) -> list[RunSummary]:
    """Summaries with ``peak_reduction_kw`` set against each city's ``reference`` planner."""
    reference_peak = {r.city: r.metrics.peak_kw for r in results if r.planner == reference}
    updated = []
    for result in results:
        base = reference_peak.get(result.city, result.metrics.peak_kw)
        metrics = replace(result.metrics, peak_reduction_kw=base - result.metrics.peak_kw)
        updated.append(replace(result, metrics=metrics))
    return updated
