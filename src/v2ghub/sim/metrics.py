"""What a run means for the grid, the owners and the pilot rules.

Daily curves fold the run's grid onto the 24 hours of the reported day: the load at
``hh:mm`` adds every step at ``hh:mm`` of any day of the grid (sessions arriving on the
day and leaving the next morning thus fill that day's early hours, as the previous
night's sessions would in steady state), divided by the number of arrival days.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from v2ghub.model.fleet import ChargerKind
from v2ghub.model.tariff import PeriodKind
from v2ghub.model.time_grid import TimeGrid
from v2ghub.network.feeder_summary import FeederSummary
from v2ghub.regulation.envelope import EnvelopeHour
from v2ghub.scenarios.ageing_data import ageing_model
from v2ghub.settlement.kpis import VALLEY_SHARE_RULE, VALLEY_SHARE_RULE_PRIVATE
from v2ghub.settlement.money import (
    NANO_PER_CNY,
    amount_fen,
    bills_fen,
    energy_wh,
    fen_to_cny,
    round_fen,
)
from v2ghub.sim.demand_response_service import EventResult
from v2ghub.sim.run_state import SimulationRun
from v2ghub.sim.wear import OwnerWearSample, SessionWear, session_wear

if TYPE_CHECKING:
    from v2ghub.sim.market_day import MarketOutcome
from v2ghub.sim.regulation_service import HourResult
from v2ghub.units import KW_PER_MW, WH_PER_KWH

FloatArray = npt.NDArray[np.float64]

UNMET_TOLERANCE_KWH = 1e-3  # a watt-hour: the meter's resolution, and above solver tolerances


def fold_daily(values: FloatArray, steps_per_day: int, days: int) -> FloatArray:
    """Fold a per-step series onto one day (sum over days, divided by ``days``)."""
    n_days = -(-values.size // steps_per_day)
    padded = np.zeros(n_days * steps_per_day)
    padded[: values.size] = values
    return np.asarray(padded.reshape(n_days, steps_per_day).sum(axis=0) / days)


@dataclass(frozen=True)
class SessionOutcomes:
    """Per session: energy asked for, delivered and missing; bill in fen; the metered
    energy it was billed for, per price level (``(sessions, levels)``, integer Wh)."""

    required_kwh: FloatArray
    delivered_kwh: FloatArray
    unmet_kwh: FloatArray
    unavoidable_kwh: FloatArray
    charged_kwh: FloatArray
    discharged_kwh: FloatArray
    bill_fen: npt.NDArray[np.int64]
    import_wh: npt.NDArray[np.int64]
    export_wh: npt.NDArray[np.int64]


@dataclass(frozen=True)
class CityMetrics:
    """The summary of one planner in one city (the keys of ``summary.json``)."""

    city: str
    planner: str
    sessions: int
    v2g_sessions: int
    baseline_peak_kw: float
    peak_kw: float
    peak_reduction_kw: float  # vs the same city's uncontrolled run, filled by compare()
    baseline_valley_kw: float
    valley_kw: float
    valley_fill_kw: float
    renewable_surplus_kwh: float
    renewable_absorbed_kwh: float
    energy_charged_kwh: float
    energy_discharged_kwh: float
    valley_share: float
    valley_share_private: float
    valley_rule_met: bool
    required_energy_kwh: float
    delivered_energy_kwh: float
    unmet_energy_kwh: float
    unavoidable_shortfall_kwh: float
    vehicles_short: int
    owner_cost_cny: Decimal
    degradation_cost_cny: Decimal  # battery wear of the discharge, at the planning rate
    site_limit_violations: int
    fallbacks: int
    planner_seconds: float
    simulate_seconds: float
    # Frequency regulation over the offered hours (0 when none was offered): the fleet's
    # mean headroom for the grid's regulation up (lowering its load) and down (raising
    # it), the mean symmetric capacity committed, the mean PJM-style composite score and
    # the total mileage.
    regulation_hours: int = 0
    regulation_capacity_up_mw: float = 0.0
    regulation_capacity_down_mw: float = 0.0
    regulation_committed_mw: float = 0.0
    regulation_score: float = 0.0
    regulation_mileage_mw: float = 0.0
    # Demand-response events that ran (0 without): the energy requested (requested kW x
    # the steps' hours) and delivered below the baseline, credited per step within
    # 0..requested (v2ghub.sim.demand_response_service); the sessions' dr_delivered_kwh
    # add up to it.
    dr_events: int = 0
    dr_requested_kwh: float = 0.0
    dr_delivered_kwh: float = 0.0
    # Day-ahead market sales (0 without a market): capacity sold over the day (MW-h, both
    # products), what it earned by performance and the penalties for what was not held.
    market_sold_mw_h: float = 0.0
    market_capacity_cny: Decimal = Decimal(0)
    market_penalty_cny: Decimal = Decimal(0)
    # Battery wear (v2ghub.sim.wear): capacity fade over the sessions' day, the part due
    # to V2G and its value, beside what V2G paid the owners (discharge at the export price).
    calendar_fade_kwh: float = 0.0
    cycle_fade_kwh: float = 0.0
    capacity_fade_kwh: float = 0.0
    v2g_fade_kwh: float = 0.0
    v2g_fade_value_cny: Decimal = Decimal(0)
    v2g_payment_cny: Decimal = Decimal(0)
    v2g_owners: int = 0
    v2g_owners_wear_above_payment: int = 0
    # The pilots' valley rule as a planning goal (v2ghub.sim.valley_reach), filled by
    # run_cases when some planner keeps it: the highest shares the day allowed (its
    # plugged hours, chargers, batteries and site limits; a bound no plan exceeds),
    # whether they came from the exact programmes (else a quick estimate), whether a plan
    # chargers follow step by step met both rules (a run of the day, or one the
    # programmes found where no run did), and for a
    # rule-keeping planner what keeping it cost the owners against the same planner
    # without the rule (None without that run).
    valley_share_reachable: float = math.nan
    valley_share_private_reachable: float = math.nan
    valley_reach_exact: bool = False
    valley_rule_met_stepwise: bool = False
    valley_rule_cost_cny: Decimal | None = None
    # Distribution feeders under the compounds (v2ghub.network), filled by run_cases with
    # feeders asked for: AC power flow at every step of the run.
    feeders: int = 0
    feeder_steps: int = 0
    feeder_steps_overloaded: int = 0
    feeder_steps_voltage_out: int = 0
    feeders_overloaded: int = 0
    feeder_worst_loading: float = math.nan
    feeder_min_vm_pu: float = math.nan
    feeder_max_vm_pu: float = math.nan
    # For a planner that sees the feeders' limits: the energy short at departure that the
    # caps left no room for, beyond each vehicle's own unavoidable shortfall.
    feeder_shortfall_kwh: float = 0.0


@dataclass(frozen=True)
class DailyCurves:
    """A run's curves over the reported day (kW per step)."""

    base_load_kw: FloatArray
    ev_load_kw: FloatArray
    charge_kw: FloatArray
    discharge_kw: FloatArray
    renewable_surplus_kw: FloatArray

    @property
    def total_load_kw(self) -> FloatArray:
        """Base load plus the fleet's net load."""
        return self.base_load_kw + self.ev_load_kw


def daily_curves(run: SimulationRun) -> DailyCurves:
    """Fold a run onto the reported day."""
    case = run.case
    steps_per_day = round(24 / case.grid.dt_h)
    days = case.arrival_days
    signals = case.signals
    return DailyCurves(
        base_load_kw=np.asarray(signals.base_load_kw[:steps_per_day]),
        ev_load_kw=fold_daily(run.ev_load_kw, steps_per_day, days),
        charge_kw=fold_daily(run.charge_kw, steps_per_day, days),
        discharge_kw=fold_daily(run.discharge_kw, steps_per_day, days),
        renewable_surplus_kw=np.asarray(signals.renewable_surplus_kw[:steps_per_day]),
    )


def session_outcomes(run: SimulationRun) -> SessionOutcomes:
    """Energy and money per session."""
    fleet = run.case.fleet
    grid = run.case.grid
    arrival = fleet.energy_arrival_kwh
    target = fleet.target_energy_kwh
    first, end = grid.plugged_steps(fleet.arrival_s, fleet.departure_s)
    steps = np.clip(np.minimum(end, grid.length) - first, 0, None)
    reachable = np.minimum(
        fleet.energy_max_kwh,
        arrival + fleet.max_charge_kw * fleet.charge_efficiency * grid.dt_h * steps,
    )
    unmet = np.maximum(target - run.energy_final_kwh, 0.0)
    unmet = np.where(unmet > UNMET_TOLERANCE_KWH, unmet, 0.0)
    import_wh = energy_wh(run.import_kwh_by_level)
    export_wh = energy_wh(run.export_kwh_by_level)
    bill = bills_fen(
        import_wh=import_wh,
        export_wh=export_wh,
        import_price_cny_per_kwh=run.prices.import_price_cny_per_kwh,
        export_price_cny_per_kwh=run.prices.export_price_cny_per_kwh,
    )
    return SessionOutcomes(
        required_kwh=np.maximum(target - arrival, 0.0),
        delivered_kwh=run.energy_final_kwh - arrival,
        unmet_kwh=unmet,
        unavoidable_kwh=np.maximum(target - reachable, 0.0),
        charged_kwh=run.energy_charged_kwh,
        discharged_kwh=run.energy_discharged_kwh,
        bill_fen=bill,
        import_wh=import_wh,
        export_wh=export_wh,
    )


def _share(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 1.0


def city_metrics(run: SimulationRun, outcomes: SessionOutcomes, curves: DailyCurves) -> CityMetrics:
    """The summary of one run."""
    fleet = run.case.fleet
    dt_h = run.case.grid.dt_h
    valley_levels = np.array([k == PeriodKind.VALLEY for k in run.prices.level_kind], dtype=bool)
    valley_import = run.import_kwh_by_level[:, valley_levels].sum(axis=1)
    private = fleet.charger_kind == ChargerKind.HOME
    charged = outcomes.charged_kwh
    valley_share = _share(float(valley_import.sum()), float(charged.sum()))
    valley_share_private = _share(
        float(valley_import[private].sum()), float(charged[private].sum())
    )
    total = curves.total_load_kw
    absorbed = np.minimum(np.maximum(curves.ev_load_kw, 0.0), curves.renewable_surplus_kw)
    return CityMetrics(
        city=run.case.city,
        planner=run.planner,
        sessions=fleet.n_sessions,
        v2g_sessions=int(np.count_nonzero(fleet.discharge_limit_kw > 0)),
        baseline_peak_kw=float(curves.base_load_kw.max()),
        peak_kw=float(total.max()),
        peak_reduction_kw=0.0,
        baseline_valley_kw=float(curves.base_load_kw.min()),
        valley_kw=float(total.min()),
        valley_fill_kw=float(total.min() - curves.base_load_kw.min()),
        renewable_surplus_kwh=float(curves.renewable_surplus_kw.sum() * dt_h),
        renewable_absorbed_kwh=float(absorbed.sum() * dt_h),
        energy_charged_kwh=float(charged.sum()),
        energy_discharged_kwh=float(outcomes.discharged_kwh.sum()),
        valley_share=valley_share,
        valley_share_private=valley_share_private,
        valley_rule_met=valley_share >= VALLEY_SHARE_RULE
        and valley_share_private >= VALLEY_SHARE_RULE_PRIVATE,
        required_energy_kwh=float(outcomes.required_kwh.sum()),
        delivered_energy_kwh=float(outcomes.delivered_kwh.sum()),
        unmet_energy_kwh=float(outcomes.unmet_kwh.sum()),
        unavoidable_shortfall_kwh=float(outcomes.unavoidable_kwh.sum()),
        vehicles_short=int(np.count_nonzero(outcomes.unmet_kwh)),
        owner_cost_cny=fen_to_cny(int(outcomes.bill_fen.sum())),
        degradation_cost_cny=degradation_cost_cny(run, outcomes.discharged_kwh),
        site_limit_violations=run.site_limit_violations,
        fallbacks=len(run.fallback_reasons),
        planner_seconds=run.planner_seconds,
        simulate_seconds=run.total_seconds,
        **_regulation_metrics(run),
        **_dr_metrics(run),
    )


def degradation_cost_cny(run: SimulationRun, discharged_kwh: FloatArray) -> Decimal:
    """Battery wear of the discharge at the planning rate: with one price, the metered Wh
    times it, rounded once to the fen; with one per session, each session's Wh times its
    price (to the nano-CNY), rounded to the fen, summed."""
    price = run.case.degradation_cny_per_kwh
    discharged_wh = energy_wh(discharged_kwh)
    if not isinstance(price, np.ndarray):
        return round_fen(Decimal(int(discharged_wh.sum())) * Decimal(str(price)) / WH_PER_KWH)
    price_nano = np.round(price * NANO_PER_CNY).astype(np.int64)
    return fen_to_cny(int(amount_fen(discharged_wh, price_nano).sum()))


def _regulation_metrics(run: SimulationRun) -> dict[str, Any]:
    hours = run.regulation_hours
    if not hours:
        return {}
    scores = [h.score.composite for h in hours if h.score is not None]
    return {
        "regulation_hours": len(hours),
        "regulation_capacity_up_mw": float(np.mean([h.lower_kw for h in hours])) / KW_PER_MW,
        "regulation_capacity_down_mw": float(np.mean([h.raise_kw for h in hours])) / KW_PER_MW,
        "regulation_committed_mw": float(np.mean([h.capacity_kw for h in hours])) / KW_PER_MW,
        "regulation_score": float(np.mean(scores)) if scores else 0.0,
        "regulation_mileage_mw": float(
            sum(h.score.mileage_mw for h in hours if h.score is not None)
        ),
    }


def _dr_metrics(run: SimulationRun) -> dict[str, Any]:
    events = run.demand_response_events
    if not events:
        return {}
    return {
        "dr_events": len(events),
        "dr_requested_kwh": sum(e.requested_kwh for e in events),
        "dr_delivered_kwh": sum(e.delivered_kwh for e in events),
    }


@dataclass(frozen=True)
class RunResult:
    """One planner in one city: the raw run and everything derived from it."""

    run: SimulationRun
    outcomes: SessionOutcomes
    curves: DailyCurves
    metrics: CityMetrics
    market: tuple[MarketOutcome, ...] = ()
    wear: SessionWear | None = None


def with_market(result: RunResult, outcomes: tuple[MarketOutcome, ...]) -> RunResult:
    """The result with its market sales settled (and their totals in the metrics)."""
    metrics = replace(
        result.metrics,
        market_sold_mw_h=sum(o.sold_kw for o in outcomes) / KW_PER_MW,
        market_capacity_cny=sum((o.amounts.capacity_cny for o in outcomes), Decimal(0)),
        market_penalty_cny=sum((o.amounts.penalty_cny for o in outcomes), Decimal(0)),
    )
    return replace(result, metrics=metrics, market=outcomes)


def evaluate(run: SimulationRun) -> RunResult:
    """Derive outcomes, daily curves and metrics of a run."""
    outcomes = session_outcomes(run)
    curves = daily_curves(run)
    wear = session_wear(run, ageing_model(), export_wh=outcomes.export_wh)
    metrics = replace(city_metrics(run, outcomes, curves), **wear.totals())
    return RunResult(run=run, outcomes=outcomes, curves=curves, metrics=metrics, wear=wear)


BILL_SAMPLE_SIZE = 20_000


@dataclass(frozen=True)
class RunSummary:
    """What the report keeps of a run: small whatever the fleet size.

    Per-session detail goes to ``sessions.parquet`` as each run finishes; the summary keeps
    the metrics, the daily curves, the SoC traces and a seeded sample of session bills.
    """

    city: str
    planner: str
    grid: TimeGrid
    timezone: str
    metrics: CityMetrics
    curves: DailyCurves
    mean_soc: FloatArray
    soc_sample: FloatArray
    bill_sample_fen: npt.NDArray[np.int64]
    total_bill_fen: int
    # Grid services, kept whole (a few per day): the flexibility envelope at the top of
    # each hour, the regulation hours and the demand-response events.
    envelope: tuple[EnvelopeHour, ...] = ()
    arrival_days: int = 1  # what the envelope's hours fold over, as the daily curves
    regulation_hours: tuple[HourResult, ...] = ()
    demand_response_events: tuple[EventResult, ...] = ()
    market: tuple[MarketOutcome, ...] = ()
    owner_wear: OwnerWearSample = field(default_factory=OwnerWearSample.empty)
    feeders: FeederSummary | None = None
    """The feeders under the city's compounds through this run (with feeders asked for)."""


def summarise(result: RunResult, *, seed: int = 0) -> RunSummary:
    """The light summary of a run (bills sampled down to ``BILL_SAMPLE_SIZE`` sessions)."""
    bills = result.outcomes.bill_fen
    if bills.size > BILL_SAMPLE_SIZE:
        chosen = np.random.default_rng(seed).choice(bills.size, BILL_SAMPLE_SIZE, replace=False)
        sample = bills[np.sort(chosen)]
    else:
        sample = bills.copy()
    case = result.run.case
    return RunSummary(
        city=case.city,
        planner=result.run.planner,
        grid=case.grid,
        timezone=case.tariff.timezone,
        metrics=result.metrics,
        curves=result.curves,
        mean_soc=result.run.mean_soc,
        soc_sample=result.run.soc_sample,
        bill_sample_fen=sample,
        total_bill_fen=int(bills.sum()),
        envelope=result.run.envelope,
        arrival_days=case.arrival_days,
        regulation_hours=result.run.regulation_hours,
        demand_response_events=result.run.demand_response_events,
        market=result.market,
        owner_wear=(
            OwnerWearSample.of(result.wear, seed=seed)
            if result.wear is not None
            else OwnerWearSample.empty()
        ),
    )
