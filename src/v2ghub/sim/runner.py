"""Run every city of a scenario with every planner, one city in memory at a time."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from v2ghub.errors import InputError
from v2ghub.model.case import CityCase
from v2ghub.model.problem import Planner, capabilities_of
from v2ghub.model.valley_rule import RULES_SUFFIX
from v2ghub.network.feeder_limits import feeder_caps, feeder_shortfall_kwh
from v2ghub.network.feeder_summary import summarise_feeders
from v2ghub.network.feeders import (
    Feeder,
    FeederOptions,
    attach_sites,
    base_load_scale,
    sees_feeders,
)
from v2ghub.planning import make_planner
from v2ghub.planning.mpc import RecedingHorizonPlanner
from v2ghub.regulation.demand_response import DemandResponseEvent
from v2ghub.scenarios.market_config import MarketSettings
from v2ghub.settlement.rates import rate_cards
from v2ghub.sim.demand_response_service import DemandResponseService
from v2ghub.sim.engine import Simulator
from v2ghub.sim.market_day import (
    clear_demand_response,
    clear_regulation,
    market_outcomes,
    probe_events,
)
from v2ghub.sim.market_forecast import TwinForecast
from v2ghub.sim.metrics import RunResult, RunSummary, evaluate, summarise, with_market
from v2ghub.sim.regulation_service import RegulationFollower, RegulationOffer
from v2ghub.sim.run_state import SimulationRun
from v2ghub.sim.valley_reach import ValleyReach, settled, valley_reach
from v2ghub.units import SECONDS_PER_DAY


def _share_done(report: Callable[[str, float], None], label: str, length: int, done: int) -> None:
    report(label, done / length)


def fresh_planner(planner: Planner | str) -> Planner:
    """A planner for one run: a registered name is made anew; an object is copied, so a
    planner that keeps state between calls starts each run clean."""
    return make_planner(planner) if isinstance(planner, str) else copy.deepcopy(planner)


def _expecting_arrivals(planner: Planner) -> Planner:
    """``planner`` (a run's own copy) asking for the groups of sessions expected later, if
    it is a receding-horizon planner: under a feeder, the evening's arrivals at a compound
    need room that the vehicles plugged in the afternoon would otherwise take (in the
    nine-city day with 20 feeders a city, 7,430 kWh left short that the caps allowed)."""
    if isinstance(planner, RecedingHorizonPlanner):
        planner.capabilities = replace(planner.capabilities, expected_arrivals=True)
    return planner


def run_cases(
    cases: Iterable[CityCase],
    planners: Sequence[Planner | str],
    *,
    control_steps: int = 1,
    on_step: Callable[[str, float], None] | None = None,
    on_result: Callable[[RunResult], None] | None = None,
    regulation: RegulationOffer | None = None,
    demand_response: Sequence[DemandResponseEvent] = (),
    market: MarketSettings | None = None,
    feeders: FeederOptions | None = None,
) -> list[RunSummary]:
    """Simulate each case with each planner; cities in order, planners within each city.

    ``cases`` may be a generator: each case and its full results are dropped once
    ``on_result`` (which may write per-session detail) has seen them, so memory holds one
    city at a time. ``on_step(label, share)`` is told the share (0-1) of the current run
    done after each step. ``planners`` are registered names or planner objects (each run
    gets its own copy, see :func:`fresh_planner`). With ``regulation``, every run also
    offers frequency regulation (:mod:`v2ghub.sim.regulation_service`); every run
    answers the ``demand_response`` events of its city
    (:mod:`v2ghub.sim.demand_response_service`). With ``market``, each city first sells
    what its fleet can deliver (:mod:`v2ghub.sim.market_day`): regulation once per city,
    demand response per planner (sized by a forecast run of that planner); every run then
    honours what was sold, and each run's summary carries what the sales paid. With
    ``feeders``, each city's compounds get that many distribution feeders (built once per
    city) and each run's summary what its charging did to them (AC power flow at every
    step, :mod:`v2ghub.network`); the planners that see them plan within their caps, and
    a receding-horizon one is told the sessions expected later at the capped sites.
    """
    summaries = []
    for case in cases:
        cleared = clear_regulation(case, market) if market is not None else None
        sold_kw = cleared.regulation_commitments(case.tariff.timezone) if cleared else {}
        if market is not None:
            _check_apart(case, demand_response, probe_events(case, market))
        follower = partial(regulation_follower, case, regulation)
        city_feeders = (
            attach_sites(
                case.sites,
                feeders.count,
                seed=feeders.seed,
                city=case.city,
                network_file=feeders.network_file,
            )
            if feeders is not None and feeders.count
            else ()
        )
        caps = feeder_caps(city_feeders, case.sites, _load_scale(case)) if city_feeders else None
        no_room_kwh = feeder_shortfall_kwh(case.fleet, case.grid, caps) if caps is not None else 0.0
        reach = None
        city_summaries = []
        for planner in planners:
            run_planner = fresh_planner(planner)
            if caps is not None and sees_feeders(run_planner.name):
                run_planner = _expecting_arrivals(run_planner)
            if reach is None and capabilities_of(run_planner).valley_rule:
                reach = valley_reach(case, settle=False, caps=caps)
            day = (
                clear_demand_response(
                    cleared,
                    case,
                    market,
                    forecast=TwinForecast(
                        case=case,
                        planner=fresh_planner(planner),
                        follower=follower,
                        events=demand_response,
                        control_steps=control_steps,
                        signal=market.forecast,
                    ),
                )
                if cleared is not None and market is not None
                else None
            )
            events = [*demand_response, *(day.demand_response_events(case.city) if day else ())]
            label = f"{case.city} / {run_planner.name}"
            hook = (
                partial(_share_done, on_step, label, max(case.grid.length, 1))
                if on_step is not None
                else None
            )
            responder = (
                DemandResponseService(case, events)
                if any(e.city in (None, case.city) for e in events)
                else None
            )
            run = Simulator(
                case,
                run_planner,
                control_steps=control_steps,
                on_step=hook,
                regulation=follower(sold_kw),
                demand_response=responder,
                site_caps=caps if sees_feeders(run_planner.name) else None,
            ).run()
            result = evaluate(run)
            if day is not None:
                result = with_market(result, market_outcomes(day, run))
            if on_result is not None:
                on_result(result)
            summary = summarise(result)
            if city_feeders:
                seen = sees_feeders(run_planner.name)
                summary = _with_feeders(
                    summary, run, city_feeders, no_room_kwh=no_room_kwh if seen else 0.0
                )
            city_summaries.append(summary)
        if reach is not None:
            # Did the day allow the rule? A run that met it says so; else look for a plan.
            met = any(r.metrics.valley_rule_met for r in city_summaries)
            reach = (
                replace(reach, stepwise_plan_meets_rule=True) if met else settled(case, reach, caps)
            )
        summaries += with_valley_rule(city_summaries, reach)
    return summaries


def _load_scale(case: CityCase) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The city's base load per step of the run over its peak (the feeders' loads)."""
    return base_load_scale(
        np.asarray(case.signals.base_load_kw[: case.grid.length], dtype=np.float64),
        round(SECONDS_PER_DAY / case.grid.step.total_seconds()),
    )


def _with_feeders(
    summary: RunSummary, run: SimulationRun, feeders: Sequence[Feeder], *, no_room_kwh: float
) -> RunSummary:
    """``summary`` with what ``run``'s charging did to the city's ``feeders`` (and, for a
    planner that saw their limits, the energy they left no room for)."""
    found = summarise_feeders(feeders, run.site_power_kw, _load_scale(run.case))
    metrics = replace(
        summary.metrics,
        feeders=found.feeders,
        feeder_steps=found.feeder_steps,
        feeder_steps_overloaded=found.overloaded_steps,
        feeder_steps_voltage_out=found.voltage_out_steps,
        feeders_overloaded=found.feeders_overloaded,
        feeder_worst_loading=found.worst_loading,
        feeder_min_vm_pu=found.min_vm_pu,
        feeder_max_vm_pu=found.max_vm_pu,
        feeder_shortfall_kwh=no_room_kwh,
    )
    return replace(summary, metrics=metrics, feeders=found)


def with_valley_rule(results: list[RunSummary], reach: ValleyReach | None) -> list[RunSummary]:
    """One city's summaries with the valley rule's reach and, for each rule-keeping
    planner ``X+rules`` run beside ``X``, the owners' extra cost of keeping it."""
    if reach is None:
        return results
    cost = {r.planner: r.metrics.owner_cost_cny for r in results}
    updated = []
    for result in results:
        plain = result.planner.removesuffix(RULES_SUFFIX)
        metrics = replace(
            result.metrics,
            valley_share_reachable=reach.share,
            valley_share_private_reachable=reach.private_share,
            valley_reach_exact=reach.exact,
            valley_rule_met_stepwise=bool(reach.stepwise_plan_meets_rule),
            valley_rule_cost_cny=(
                result.metrics.owner_cost_cny - cost[plain]
                if plain != result.planner and plain in cost
                else None
            ),
        )
        updated.append(replace(result, metrics=metrics))
    return updated


def _check_apart(
    case: CityCase,
    events: Sequence[DemandResponseEvent],
    sold: Sequence[DemandResponseEvent],
) -> None:
    """Refuse a city's event that overlaps an hour of demand response its market trades."""
    zone = ZoneInfo(case.tariff.timezone)
    for hour in sold:
        for event in events:
            if (
                event.city in (None, case.city)
                and event.start < hour.end
                and hour.start < event.end
            ):
                raise InputError(
                    f"the demand-response event {event.start.astimezone(zone):%H:%M}-"
                    f"{event.end.astimezone(zone):%H:%M} overlaps the hour the market trades at "
                    f"{hour.start.astimezone(zone):%H:%M} in {case.city}: answer one or the other"
                )


def regulation_follower(
    case: CityCase, offer: RegulationOffer | None, sold_kw: Mapping[int, float]
) -> RegulationFollower | None:
    """The regulation service of a run: ``offer`` (None: none) and the hours sold ahead
    (``sold_kw``, kW by local hour); None when there is neither."""
    return _follower(case, offer, sold_kw) if offer is not None or sold_kw else None


def _follower(
    case: CityCase, offer: RegulationOffer | None, sold_kw: Mapping[int, float]
) -> RegulationFollower:
    """The regulation service of a case, its headroom valued at the city's rates; hours
    sold ahead (``sold_kw`` by local hour) commit what was sold."""
    card = rate_cards([case.city])[case.city]
    offer = offer if offer is not None else RegulationOffer(hours=tuple(sold_kw))
    if sold_kw:
        offer = replace(offer, hours=tuple(sorted(set(offer.hours) | set(sold_kw))))
    return RegulationFollower(
        case.grid,
        timezone=case.tariff.timezone,
        offer=offer,
        value_cny_per_mw_h=float(card.regulation_capacity_cny_per_mw_h),
        mileage_cny_per_mw=float(card.regulation_mileage_cny_per_mw),
        commitments_kw=sold_kw,
    )


def with_peak_reduction(results: list[RunSummary], reference: str) -> list[RunSummary]:
    """Summaries with ``peak_reduction_kw`` set against each city's ``reference`` planner."""
    reference_peak = {r.city: r.metrics.peak_kw for r in results if r.planner == reference}
    updated = []
    for result in results:
        base = reference_peak.get(result.city, result.metrics.peak_kw)
        metrics = replace(result.metrics, peak_reduction_kw=base - result.metrics.peak_kw)
        updated.append(replace(result, metrics=metrics))
    return updated
