"""One shard's day with one planner: what a worker runs (no Ray here, so it can be
called in any process, and tested alone)."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from v2ghub.model.case import CityCase
from v2ghub.model.problem import Planner
from v2ghub.model.signals import GridSignals
from v2ghub.scale.parts import write_parts
from v2ghub.scale.pieces import ShardPiece, shard_piece
from v2ghub.scenarios.build import block_case
from v2ghub.scenarios.config import Scenario
from v2ghub.scenarios.shards import CityLayout
from v2ghub.sim.engine import Simulator
from v2ghub.sim.metrics import evaluate
from v2ghub.sim.runner import fresh_planner

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ShardTask:
    """One block of a city, one planner, one coordination round.

    ``context_kw`` is the base load the shard plans against (per step of the city's grid,
    :mod:`v2ghub.scale.coordination`); ``final`` marks the round whose plans are kept: its
    run writes Parquet parts into ``folder`` and returns its sums and samples.
    """

    layout: CityLayout
    block: int
    planner: Planner | str
    planner_number: int
    control_steps: int
    context_kw: FloatArray
    coordination_round: int
    final: bool
    folder: Path

    @property
    def key(self) -> str:
        """A name for the task, unique in the run."""
        return (
            f"{self.layout.city_number}/{self.planner_number}/"
            f"{self.coordination_round}/{self.block}"
        )


def shard_case(scenario: Scenario, task: ShardTask) -> CityCase:
    """The block's case, planning against the task's context in place of the base load
    (and the block's share of the city's renewable surplus)."""
    case = block_case(scenario, task.layout, block=task.block)
    share = case.fleet.n_sessions / max(task.layout.n_vehicles, 1)
    surplus = case.signals.renewable_surplus_kw
    signals = GridSignals(
        base_load_kw=np.asarray(task.context_kw, dtype=np.float64),
        renewable_surplus_kw=surplus if share == 1 else surplus * share,
        label=case.signals.label,
    )
    return replace(case, signals=signals)


def peak_rss_kib() -> int:
    """This process's peak resident memory so far, KiB (Linux reports ``ru_maxrss`` so)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def run_shard(
    scenario: Scenario, task: ShardTask, *, on_step: Callable[[int], None] | None = None
) -> ShardPiece:
    """Simulate the task's shard; write its parts when final; return its piece."""
    started = time.perf_counter()
    case = shard_case(scenario, task)
    run = Simulator(
        case, fresh_planner(task.planner), control_steps=task.control_steps, on_step=on_step
    ).run()
    result = evaluate(run)
    if task.final:
        write_parts(
            result,
            task.folder,
            city=task.layout.city_number,
            planner=task.planner_number,
            block=task.block,
        )
    return shard_piece(
        result,
        block=task.block,
        coordination_round=task.coordination_round,
        city_sessions=task.layout.n_vehicles,
        final=task.final,
        peak_rss_kib=peak_rss_kib(),
        seconds=time.perf_counter() - started,
    )
