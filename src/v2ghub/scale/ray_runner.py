"""Run a scenario's synthetic cities sharded, as Ray tasks.

Each (city, planner, block, coordination round) is one Ray task (:func:`run_shard` in a
worker process); the driver holds only the layouts, the per-step curves of the pieces and
the merged summaries. Rounds of the peak coordination (:mod:`v2ghub.scale.coordination`)
wait for every block of their city and planner; everything else runs as soon as a worker
is free. With ``workers``, a local Ray runtime of that many CPUs is started (no dashboard,
quiet, its workers at the driver's priority) and stopped at the end; with ``address``, an
existing cluster is joined (its workers must see the run's folder: a shared file system).
A runtime already started in this process (``ray.is_initialized()``) is used as it is.

Failures: a task whose worker dies (killed, out of memory) is run again, up to
``MAX_RETRIES`` times (Ray's task retries); the shard starts over from its seed, so the
rerun is the same run. A task that still fails, or raises, ends the whole run with one
line naming the shard (:class:`ShardError`); the parts already written stay in the
run's work folder, which the caller removes, so no result is left that looks complete.

Progress: each task tells a small actor how many of its steps are done (every 5% of the
grid); the driver polls it and reports each ``"City / planner"`` run's share (every
block and round counted) to the usual progress callback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.exceptions

from v2ghub.errors import InputError, PlanningError
from v2ghub.model.problem import Planner, capabilities_of
from v2ghub.model.signals import GridSignals
from v2ghub.scale.coordination import (
    damped_loads,
    jacobi_contexts,
    proportional_context,
    rounds_for,
)
from v2ghub.scale.merge import merge_pieces
from v2ghub.scale.parts import PartJoiner
from v2ghub.scale.pieces import ShardPiece
from v2ghub.scale.shard_run import ShardTask, run_shard
from v2ghub.scenarios.build import city_signals
from v2ghub.scenarios.config import Scenario
from v2ghub.scenarios.shards import BLOCK_VEHICLES, CityLayout, city_layout
from v2ghub.sim.metrics import RunSummary
from v2ghub.sim.runner import fresh_planner

MAX_RETRIES = 2
"""Times a shard whose worker died is run again before the run fails."""

POLL_S = 0.25
PROGRESS_REPORTS = 20  # per task: every 5% of its steps


class ShardError(PlanningError):
    """A shard failed after its retries: the run stops (one line says which shard)."""


@ray.remote(num_cpus=0)
class StepCounter:
    """Steps done per task, as the tasks report them (a rerun starts its count over)."""

    def __init__(self) -> None:
        self.done: dict[str, int] = {}

    def set(self, key: str, steps: int) -> None:
        """Task ``key`` has done ``steps`` steps."""
        self.done[key] = steps

    def snapshot(self) -> dict[str, int]:
        """Every task's steps done so far."""
        return dict(self.done)


def _run_reporting(scenario: Scenario, task: ShardTask, counter: Any) -> ShardPiece:
    """A worker's task: run the shard, telling ``counter`` its steps now and then."""
    length = task.layout.grid.length
    every = max(1, length // PROGRESS_REPORTS)
    counter.set.remote(task.key, 0)

    def on_step(done: int) -> None:
        if done % every == 0 or done == length:
            counter.set.remote(task.key, done)

    return run_shard(scenario, task, on_step=on_step)


_shard_task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_run_reporting)


@dataclass
class _Group:
    """One city and planner: its blocks' pieces of the current round."""

    layout: CityLayout
    planner: Planner | str
    planner_number: int
    label: str
    rounds: int
    signals: GridSignals
    timezone: str
    coordination_round: int = 0
    pieces: dict[int, ShardPiece] = field(default_factory=dict)
    damped: list[np.ndarray[Any, np.dtype[np.float64]]] | None = None
    round_loads: list[list[np.ndarray[Any, np.dtype[np.float64]]]] = field(default_factory=list)


@dataclass(frozen=True)
class ShardedRun:
    """What a sharded run returns: the summaries (cities in order, planners within each),
    the (city, planner, block) numbers of the parts in that order, and figures about the
    run itself: each final piece's worker peak memory and seconds, per coordination
    round the fleet loads of each city and planner (to see the rounds converge), and the
    driver's seconds spent coordinating (contexts and merges)."""

    summaries: list[RunSummary]
    part_keys: list[tuple[int, int, int]]
    peak_rss_kib: list[int]
    shard_seconds: list[float]
    coordination_seconds: float
    join_seconds: float
    round_loads: dict[str, list[list[np.ndarray[Any, np.dtype[np.float64]]]]]


def connect(*, workers: int | None, address: str | None) -> bool:
    """Start or join Ray; whether this call started it (and so must stop it).

    A local runtime is always a new one of its own (``address="local"``), never a cluster
    that happens to run on this machine; joining one is asked for by ``address``.
    """
    if ray.is_initialized():
        return False
    if address is not None:
        try:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            problem = " ".join(str(error).split())[:300]
            raise InputError(
                f"--ray-address {address}: cannot join the cluster ({problem})"
            ) from None
        return True
    ray.init(
        address="local",
        num_cpus=workers,
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
        # Ray lowers its workers to nice 15 by default: on a shared machine they would
        # then wait for every other job, which a run asked for by its user should not.
        _system_config={"worker_niceness": 0},
    )
    return True


def _failure(task: ShardTask, label: str, error: BaseException) -> ShardError:
    """One line naming the shard and what went wrong."""
    where = f"shard {task.block} of {label} (round {task.coordination_round})"
    if isinstance(error, ray.exceptions.WorkerCrashedError | ray.exceptions.NodeDiedError):
        return ShardError(
            f"{where} failed: its worker died {MAX_RETRIES + 1} times (killed, or out of "
            "memory: try fewer --workers per machine)"
        )
    cause = error.cause if isinstance(error, ray.exceptions.RayTaskError) else None
    cause = cause if cause is not None else error
    what = " ".join(str(cause).split())[:300]
    return ShardError(f"{where} failed: {type(cause).__name__}: {what}")


def run_sharded(
    scenario: Scenario,
    planners: Sequence[Planner | str],
    *,
    control_steps: int,
    folder: Path,
    workers: int | None = None,
    address: str | None = None,
    on_step: Callable[[str, float], None] | None = None,
    block_vehicles: int = BLOCK_VEHICLES,
    jacobi_rounds: int | None = None,
    joiner: PartJoiner | None = None,
) -> ShardedRun:
    """Run every city of ``scenario`` with every planner, its blocks as Ray tasks; with
    ``joiner``, each run's parts are appended to it as soon as the runs before it are."""
    started_here = connect(workers=workers, address=address)
    try:
        return _Driver(
            scenario,
            planners,
            control_steps=control_steps,
            folder=folder,
            on_step=on_step,
            block_vehicles=block_vehicles,
            jacobi_rounds=jacobi_rounds,
            joiner=joiner,
        ).run()
    finally:
        if started_here:
            ray.shutdown()


class _Driver:
    """Submits the rounds, gathers the pieces, merges each city and planner."""

    def __init__(
        self,
        scenario: Scenario,
        planners: Sequence[Planner | str],
        *,
        control_steps: int,
        folder: Path,
        on_step: Callable[[str, float], None] | None,
        block_vehicles: int,
        jacobi_rounds: int | None,
        joiner: PartJoiner | None,
    ) -> None:
        self.scenario = scenario
        self.control_steps = control_steps
        self.folder = folder
        self.on_step = on_step
        self.coordination_s = 0.0
        self.scenario_ref = ray.put(scenario)
        self.counter = StepCounter.remote()  # type: ignore[attr-defined]
        self.pending: dict[Any, tuple[_Group, ShardTask]] = {}
        self.labels: dict[str, _Group] = {}
        self.groups: list[_Group] = []
        self.planners = tuple(planners)
        self.block_vehicles = block_vehicles
        self.extra = {} if jacobi_rounds is None else {"jacobi_rounds": jacobi_rounds}
        self.joiner = joiner
        self.joined = 0  # runs whose parts are appended
        self.join_s = 0.0

    def _start_cities(self) -> None:
        """Each city's layout (its blocks drawn once, one at a time), then its first round
        submitted at once, so workers start on a city while the next is laid out."""
        scenario = self.scenario
        for number, city in enumerate(scenario.simulation.cities):
            layout = city_layout(scenario, city_number=number, block_vehicles=self.block_vehicles)
            signals = city_signals(scenario, layout)
            timezone = scenario.city_data[city].timezone
            for p, planner in enumerate(self.planners):
                made = fresh_planner(planner)
                group = _Group(
                    layout=layout,
                    planner=planner,
                    planner_number=p,
                    label=f"{city} / {made.name}",
                    rounds=rounds_for(
                        n_shards=layout.n_blocks,
                        prices_peak=capabilities_of(made).peak_price,
                        **self.extra,
                    ),
                    signals=signals,
                    timezone=timezone,
                )
                self.groups.append(group)
                contexts = [
                    proportional_context(
                        signals.base_load_kw, shard_sessions=n, city_sessions=layout.n_vehicles
                    )
                    for n in layout.block_sessions
                ]
                self._submit(group, contexts)

    def run(self) -> ShardedRun:
        summaries: dict[int, RunSummary] = {}
        rss: list[int] = []
        seconds: list[float] = []
        try:
            self._start_cities()
            while self.pending:
                ready, _ = ray.wait(
                    list(self.pending), num_returns=len(self.pending), timeout=POLL_S
                )
                for ref in ready:
                    group, task = self.pending.pop(ref)
                    try:
                        piece: ShardPiece = ray.get(ref)
                    except ray.exceptions.RayError as error:
                        raise _failure(task, group.label, error) from None
                    group.pieces[task.block] = piece
                    if len(group.pieces) == group.layout.n_blocks:
                        done = self._round_done(group)
                        if done is not None:
                            summaries[self.groups.index(group)] = done
                            self._join_ready(summaries)
                            rss += [p.peak_rss_kib for p in group.pieces.values()]
                            seconds += [p.seconds for p in group.pieces.values()]
                            group.pieces = {}  # the driver keeps the merged summary only
                self._report(summaries)
        finally:
            for ref in self.pending:
                ray.cancel(ref, force=True)
        ordered = [summaries[i] for i in range(len(self.groups))]
        keys = [
            (g.layout.city_number, g.planner_number, block)
            for g in self.groups
            for block in range(g.layout.n_blocks)
        ]
        return ShardedRun(
            summaries=ordered,
            part_keys=keys,
            peak_rss_kib=rss,
            shard_seconds=seconds,
            coordination_seconds=self.coordination_s,
            join_seconds=self.join_s,
            round_loads={g.label: g.round_loads for g in self.groups},
        )

    def _join_ready(self, summaries: dict[int, RunSummary]) -> None:
        """Append the parts of the runs done, in order, as far as none is missing."""
        if self.joiner is None:
            return
        while self.joined in summaries:
            group = self.groups[self.joined]
            started = time.perf_counter()
            self.joiner.append(
                [
                    (group.layout.city_number, group.planner_number, block)
                    for block in range(group.layout.n_blocks)
                ]
            )
            self.join_s += time.perf_counter() - started
            self.joined += 1

    def _submit(self, group: _Group, contexts: list[np.ndarray[Any, np.dtype[np.float64]]]) -> None:
        final = group.coordination_round == group.rounds - 1
        for block, context in enumerate(contexts):
            task = ShardTask(
                layout=group.layout,
                block=block,
                planner=group.planner,
                planner_number=group.planner_number,
                control_steps=self.control_steps,
                context_kw=context,
                coordination_round=group.coordination_round,
                final=final,
                folder=self.folder,
            )
            self.labels[task.key] = group
            ref = _shard_task.remote(self.scenario_ref, task, self.counter)
            self.pending[ref] = (group, task)

    def _round_done(self, group: _Group) -> RunSummary | None:
        """The merged summary after the last round, else the next round submitted."""
        started = time.perf_counter()
        pieces = [group.pieces[b] for b in range(group.layout.n_blocks)]
        loads = [piece.ev_load_kw for piece in pieces]
        group.round_loads.append(loads)
        if group.coordination_round == group.rounds - 1:
            summary = merge_pieces(
                pieces,
                grid=group.layout.grid,
                timezone=group.timezone,
                signals=group.signals,
            )
            self.coordination_s += time.perf_counter() - started
            return summary
        group.damped = damped_loads(group.damped, loads)
        contexts = jacobi_contexts(group.signals.base_load_kw, group.damped)
        group.coordination_round += 1
        group.pieces = {}
        self.coordination_s += time.perf_counter() - started
        self._submit(group, contexts)
        return None

    def _report(self, merged: dict[int, RunSummary]) -> None:
        """Tell ``on_step`` each run's share done: steps over all its blocks and rounds."""
        if self.on_step is None:
            return
        done: dict[str, int] = {}
        for key, steps in ray.get(self.counter.snapshot.remote()).items():
            label = self.labels[key].label
            done[label] = done.get(label, 0) + steps
        for number, group in enumerate(self.groups):
            total = group.rounds * group.layout.n_blocks * group.layout.grid.length
            if number in merged:  # whatever counts the actor has yet to hear
                self.on_step(group.label, 1.0)
            elif group.label in done:
                self.on_step(group.label, min(1.0, done[group.label] / max(total, 1)))
