"""Run every city of a scenario with every planner."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial

from v2ghub.model.case import CityCase
from v2ghub.planning import make_planner
from v2ghub.sim.engine import Simulator
from v2ghub.sim.metrics import RunResult, evaluate


def run_all(
    cases: Sequence[CityCase],
    planners: Sequence[str],
    *,
    control_steps: int = 1,
    on_progress: Callable[[str, int], None] | None = None,
) -> list[RunResult]:
    """One evaluated run per city and planner, cities in order, planners within each city.

    ``on_progress(label, steps_done)`` is told after each simulated step.
    """
    results = []
    for case in cases:
        for name in planners:
            planner = make_planner(name)
            label = f"{case.city} / {name}"
            step_hook = partial(on_progress, label) if on_progress is not None else None
            run = Simulator(case, planner, control_steps=control_steps, on_step=step_hook).run()
            results.append(evaluate(run))
    return results


def with_peak_reduction(results: list[RunResult], reference: str) -> list[RunResult]:
    """Results with ``peak_reduction_kw`` set against each city's ``reference`` planner."""

    reference_peak = {
        r.metrics.city: r.metrics.peak_kw for r in results if r.run.planner == reference
    }
    updated = []
    for result in results:
        base = reference_peak.get(result.metrics.city, result.metrics.peak_kw)
        metrics = replace(result.metrics, peak_reduction_kw=base - result.metrics.peak_kw)
        updated.append(replace(result, metrics=metrics))
    return updated
