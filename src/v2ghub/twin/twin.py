"""The digital twin as an object: :class:`Twin` runs a :class:`~v2ghub.twin.Scenario` with
planner objects and returns a :class:`~v2ghub.twin.TwinResult`."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from v2ghub import __version__
from v2ghub.errors import InputError
from v2ghub.model.case import CityCase
from v2ghub.model.problem import Planner, capabilities_of
from v2ghub.network.feeders import FeederOptions, check_network_file
from v2ghub.planning import make_planner
from v2ghub.regulation.demand_response import DemandResponseEvent
from v2ghub.scale.coordination import JACOBI_ROUNDS
from v2ghub.scenarios.build import iter_synthetic_cases
from v2ghub.scenarios.config import DEFAULT_DEMAND_RESPONSE, DemandResponseEntry
from v2ghub.scenarios.market_config import MarketSettings, default_market
from v2ghub.scenarios.shards import BLOCK_VEHICLES
from v2ghub.sim.metrics import RunResult
from v2ghub.sim.regulation_service import RegulationOffer
from v2ghub.sim.runner import fresh_planner, run_cases, with_peak_reduction
from v2ghub.twin.progress import Progress, progress_callback
from v2ghub.twin.result import RunInfo, TwinResult
from v2ghub.twin.scenario import Scenario

if TYPE_CHECKING:
    from v2ghub.scale.ray_runner import ShardedRun


@dataclass(frozen=True)
class _DemandResponse:
    events: list[DemandResponseEvent]
    note: str | None


class Twin:
    """A scenario and the planners to compare on it, ready to run.

    Parameters
    ----------
    scenario:
        What to simulate (:class:`~v2ghub.twin.Scenario`).
    planners:
        Planner objects (anything with ``name`` and ``plan(Problem) -> Schedule``) or
        registered names (``"mpc"``, ``"fast"``, ...); default: the scenario's. The first
        is the reference for peak reduction. Each run gets a fresh copy of an object.
    regulation:
        ``True`` to offer frequency regulation at the default hours (10, 11, 19, 20 local)
        with the scenario's seed, or a :class:`~v2ghub.sim.regulation_service.RegulationOffer`.
    market:
        ``True`` to sell the fleet's day-ahead headroom in the scenario's capacity market
        (else the shipped one) before the day, or :class:`MarketSettings`; a scenario file
        with a ``[market]`` table runs it either way.
    demand_response:
        ``True`` to answer the default event (18:00-19:00 local, 0.5 kW a plugged vehicle)
        when the scenario names none and no market is asked for, or the events (scenario
        entries).
        The scenario's own ``[[demand_response]]`` events are always answered.
    workers:
        Shard each city's synthetic fleet and run the shards as Ray tasks on a local Ray
        runtime of this many CPUs, started for the run (:mod:`v2ghub.scale`). ``None``
        with no ``ray_address``: one process, one city at a time, Ray never imported.
    ray_address:
        Run the shards on the Ray cluster at this address instead (its workers must see
        the run's folder).
    block_vehicles:
        Most vehicles of a shard block (:mod:`v2ghub.scenarios.shards`); fleets are drawn
        in such blocks whether or not they are sharded, so a fleet depends on it beyond
        its first block. The default keeps every fleet of up to 25,000 vehicles a city as
        it always was.
    jacobi_rounds:
        When sharded, the rounds after the first in which the shards of a planner that
        prices the area's peak re-plan against each other's loads
        (:mod:`v2ghub.scale.coordination`); 0 keeps the proportional first round alone.

    Examples
    --------
    >>> from v2ghub import Scenario, Twin
    >>> scenario = Scenario.pilot_cities(cities=["Shenzhen"], vehicles_per_city=40)
    >>> result = Twin(scenario, planners=["uncontrolled", "tou"]).run()
    >>> result.planners, result.cities
    (('uncontrolled', 'tou'), ('Shenzhen',))
    >>> tou = result.metrics("Shenzhen", "tou")
    >>> tou.sessions, tou.fallbacks, tou.energy_discharged_kwh
    (40, 0, 0.0)
    """

    def __init__(
        self,
        scenario: Scenario,
        planners: Sequence[Planner | str] | None = None,
        *,
        regulation: RegulationOffer | bool = False,
        market: MarketSettings | bool = False,
        demand_response: Sequence[DemandResponseEntry] | bool = False,
        workers: int | None = None,
        ray_address: str | None = None,
        block_vehicles: int = BLOCK_VEHICLES,
        jacobi_rounds: int = JACOBI_ROUNDS,
    ) -> None:
        if workers is not None and workers < 1:
            raise InputError(f"workers must be at least 1, got {workers}")
        if jacobi_rounds < 0:
            raise InputError(f"jacobi_rounds must be at least 0, got {jacobi_rounds}")
        if block_vehicles < 1:
            raise InputError(f"block_vehicles must be at least 1, got {block_vehicles}")
        self.workers = workers
        self.ray_address = ray_address
        self.block_vehicles = block_vehicles
        self.jacobi_rounds = jacobi_rounds
        # The figures of the last sharded run (memory, seconds, rounds' loads), if any.
        self.last_sharded_run: ShardedRun | None = None
        self.scenario = scenario
        self.planners: tuple[Planner | str, ...] = tuple(
            planners if planners is not None else scenario.planners
        )
        if not self.planners:
            raise InputError("a twin needs at least one planner")
        names = [self._name(p) for p in self.planners]
        if len(set(names)) != len(names):
            raise InputError(f"planner names must differ, got {', '.join(names)}")
        self.planner_names = tuple(names)
        settings = scenario.settings
        if regulation is True:
            regulation = RegulationOffer(seed=scenario.seed)
        self.regulation: RegulationOffer | None = regulation or None
        market_asked = market is not False
        if market is True:
            market = settings.market or default_market()
        self.market: MarketSettings | None = market or settings.market
        self._demand_response = self._events(demand_response, market_asked=market_asked)

    @staticmethod
    def _name(planner: Planner | str) -> str:
        return planner if isinstance(planner, str) else planner.name

    def _events(
        self, asked: Sequence[DemandResponseEntry] | bool, *, market_asked: bool
    ) -> _DemandResponse:
        """The events each city answers on its simulated day, and a note saying what."""
        settings = self.scenario.settings
        entries = tuple(settings.demand_response)
        origin = "from the scenario file"
        if not isinstance(asked, bool):
            entries, origin = (*entries, *asked), "given to the twin"
        elif asked and not entries and not market_asked:
            entries = (DEFAULT_DEMAND_RESPONSE,)
            origin = "the --demand-response default, an assumption"
        with_events = settings.model_copy(update={"demand_response": entries})
        events = [
            event
            for city, day in self.scenario.days().items()
            for event in with_events.demand_response_events(city, day)
        ]
        if not events:
            return _DemandResponse([], None)
        return _DemandResponse(
            events,
            f"Demand response: {len(events)} event(s) ({origin}); the baseline is the same "
            "planner's run without the event; delivered energy is credited up to what was "
            "requested, step by step.",
        )

    @property
    def sharded(self) -> bool:
        """Whether the run shards its cities across Ray workers."""
        return self.workers is not None or self.ray_address is not None

    def check(self) -> None:
        """Refuse a planner that cannot take the scenario's fleets at every control
        instant, a feeder network file the feeders cannot use, and, when sharded, what
        sharding does not cover yet (raises :class:`~v2ghub.errors.InputError`)."""
        if self.sharded:
            self._check_shardable()
        network_file = self.scenario.settings.simulation.feeder_network
        if self.scenario.settings.simulation.feeders and network_file is not None:
            check_network_file(network_file)
        largest = self.scenario.largest_fleet
        for planner in self.planners:
            made = make_planner(planner) if isinstance(planner, str) else planner
            most = capabilities_of(made).max_sessions
            if most is not None and largest > most:
                raise InputError(
                    f"the {made.name} planner plans at most {most:,} sessions per city in the "
                    f"twin ({largest:,} asked); use fewer --vehicles, or v2ghub plan for one "
                    "day-ahead solve"
                )

    def _check_shardable(self) -> None:
        """Sharding covers synthetic fleets with the planners alone; the grid services and
        the valley rule couple a city's vehicles in ways its rounds do not reconcile yet."""
        refused = []
        if self.scenario.sessions is not None:
            refused.append("--sessions")
        if self.regulation is not None:
            refused.append("--regulation")
        if self.market is not None:
            refused.append("--market")
        if self._demand_response.events:
            refused.append("--demand-response")
        if any(capabilities_of(fresh_planner(p)).valley_rule for p in self.planners):
            refused.append("--pilot-rules (the +rules planners)")
        if self.scenario.settings.simulation.feeders:
            refused.append("--feeders")
        if refused:
            raise InputError(
                f"--workers does not yet shard {', '.join(refused)}: run without --workers "
                "and --ray-address"
            )

    def run(
        self,
        *,
        progress: Progress = False,
        workdir: Path | str | None = None,
    ) -> TwinResult:
        """Simulate every city with every planner and return the result.

        ``progress``: ``True`` for a progress bar (on standard error), or a callable told
        ``(label, share done)`` after every step. Per-session tables go to ``workdir``
        (default: a temporary folder, removed with the result).
        """
        self.check()
        owned = workdir is None
        folder = Path(tempfile.mkdtemp(prefix="v2ghub-run-")) if workdir is None else Path(workdir)
        try:
            return self._run_into(folder, progress=progress, owned=owned)
        except BaseException:
            if owned:  # nothing of a failed run is left behind
                shutil.rmtree(folder, ignore_errors=True)
            raise

    def _run_into(self, folder: Path, *, progress: Progress, owned: bool) -> TwinResult:
        folder.mkdir(parents=True, exist_ok=True)
        if self.sharded:
            return self._run_sharded_into(folder, progress=progress, owned=owned)
        from v2ghub.report.outputs import (  # noqa: PLC0415 - heavy imports only when run
            TableWriter,
            meter_table,
            sessions_table,
        )

        total = len(self.scenario.cities) * len(self.planners)
        with (
            progress_callback(progress, total) as on_step,
            TableWriter(folder / "sessions.parquet", sessions_table) as sessions,
            TableWriter(folder / "meter.parquet", meter_table) as meter,
        ):

            def on_result(result: RunResult) -> None:
                sessions.write(result)
                meter.write(result)

            settings = self.scenario.settings.simulation
            summaries = run_cases(
                self._cases(),
                self.planners,
                control_steps=settings.control_steps,
                on_step=on_step,
                on_result=on_result,
                regulation=self.regulation,
                demand_response=self._demand_response.events,
                market=self.market,
                feeders=self._feeders(),
            )
            runs = with_peak_reduction(summaries, self.planner_names[0])
            result = TwinResult(
                runs=tuple(runs),
                info=self._info(runs[0].grid.start.date().isoformat() if runs else None),
                notes=tuple(self._notes()),
                folder=folder,
                _owned=owned,
            )
            sessions.add_metadata(result.saved_metadata())
        return result

    def _feeders(self) -> FeederOptions | None:
        """The feeders the scenario asks for (None: none)."""
        simulation = self.scenario.settings.simulation
        if not simulation.feeders:
            return None
        return FeederOptions(
            simulation.feeders, seed=simulation.seed, network_file=simulation.feeder_network
        )

    def _cases(self) -> Iterable[CityCase]:
        if self.scenario.sessions is None and self.block_vehicles != BLOCK_VEHICLES:
            return iter_synthetic_cases(self.scenario.settings, block_vehicles=self.block_vehicles)
        return self.scenario.cases()

    def _run_sharded_into(self, folder: Path, *, progress: Progress, owned: bool) -> TwinResult:
        """Run the shards on Ray (imported here only), merge, join the parts."""
        from v2ghub.scale.parts import PartJoiner  # noqa: PLC0415
        from v2ghub.scale.ray_runner import run_sharded  # noqa: PLC0415 - Ray only when asked

        total = len(self.scenario.cities) * len(self.planners)
        joiner = PartJoiner(folder)
        try:
            with progress_callback(progress, total) as on_step:
                sharded = run_sharded(
                    self.scenario.settings,
                    self.planners,
                    control_steps=self.scenario.settings.simulation.control_steps,
                    folder=folder,
                    workers=self.workers,
                    address=self.ray_address,
                    on_step=on_step,
                    block_vehicles=self.block_vehicles,
                    jacobi_rounds=self.jacobi_rounds,
                    joiner=joiner,
                )
            runs = with_peak_reduction(sharded.summaries, self.planner_names[0])
            result = TwinResult(
                runs=tuple(runs),
                info=self._info(runs[0].grid.start.date().isoformat() if runs else None),
                notes=tuple(self._notes()),
                folder=folder,
                _owned=owned,
            )
        except BaseException:
            joiner.abort()
            raise
        joiner.close(result.saved_metadata())
        self.last_sharded_run = sharded
        return result

    def _info(self, date: str | None) -> RunInfo:
        scenario = self.scenario
        settings = scenario.settings.simulation
        return RunInfo(
            date=date,
            step_minutes=settings.step_minutes,
            control_interval_minutes=settings.control_interval_minutes,
            seed=settings.seed,
            vehicles_per_city=scenario.vehicles_per_city,
            sessions_file=str(scenario.sessions.path) if scenario.sessions else None,
            cities=scenario.cities,
            planners=self.planner_names,
            version=__version__,
        )

    def _notes(self) -> list[str]:
        notes = self.scenario.notes()
        if self._demand_response.note is not None:
            notes.append(self._demand_response.note)
        return notes
