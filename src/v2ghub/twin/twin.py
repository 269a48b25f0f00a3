"""The digital twin as an object: :class:`Twin` runs a :class:`~v2ghub.twin.Scenario` with
planner objects and returns a :class:`~v2ghub.twin.TwinResult`."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from v2ghub import __version__
from v2ghub.errors import InputError
from v2ghub.model.problem import Planner, capabilities_of
from v2ghub.planning import make_planner
from v2ghub.regulation.demand_response import DemandResponseEvent
from v2ghub.scenarios.config import DEFAULT_DEMAND_RESPONSE, DemandResponseEntry
from v2ghub.scenarios.market_config import MarketSettings, default_market
from v2ghub.sim.metrics import RunResult
from v2ghub.sim.regulation_service import RegulationOffer
from v2ghub.sim.runner import run_cases, with_peak_reduction
from v2ghub.twin.progress import Progress, progress_callback
from v2ghub.twin.result import RunInfo, TwinResult
from v2ghub.twin.scenario import Scenario


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
    ) -> None:
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

    def check(self) -> None:
        """Refuse a planner that cannot take the scenario's fleets at every control
        instant (raises :class:`~v2ghub.errors.InputError`)."""
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
                self.scenario.cases(),
                self.planners,
                control_steps=settings.control_steps,
                on_step=on_step,
                on_result=on_result,
                regulation=self.regulation,
                demand_response=self._demand_response.events,
                market=self.market,
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
