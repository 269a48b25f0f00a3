"""What a worker returns for one shard: small whatever the shard's size.

A shard's run leaves its per-session detail in Parquet parts (:mod:`v2ghub.scale.parts`)
and hands back a :class:`ShardPiece`: its per-step curves (kW over the city's grid), the
sums the city's metrics are made of (money in integer fen, metered discharge in integer
Wh, energies in kWh), counts, and seeded samples sized in proportion to the shard's share
of the city. :mod:`v2ghub.scale.merge` adds pieces into the city's summary exactly: money
summed in fen, peaks taken from summed curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from v2ghub.model.fleet import ChargerKind
from v2ghub.model.tariff import PeriodKind
from v2ghub.regulation.envelope import EnvelopeHour
from v2ghub.settlement.money import NANO_PER_CNY, amount_fen, energy_wh
from v2ghub.sim.metrics import BILL_SAMPLE_SIZE, RunResult
from v2ghub.sim.run_state import SOC_SAMPLE_SIZE
from v2ghub.sim.wear import OWNER_SAMPLE_SIZE, OwnerWearSample, SessionWear

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ShardSums:
    """Sums over a shard's sessions (the parts of :class:`~v2ghub.sim.metrics.CityMetrics`).

    ``degradation_fen`` is the wear of the discharge at per-session prices, each session
    rounded to the fen (``None`` with one flat price: the city's total Wh are priced once,
    as the unsharded run does).
    """

    sessions: int
    v2g_sessions: int
    charged_kwh: float
    discharged_kwh: float
    valley_import_kwh: float
    private_charged_kwh: float
    private_valley_import_kwh: float
    required_kwh: float
    delivered_kwh: float
    unmet_kwh: float
    unavoidable_kwh: float
    vehicles_short: int
    bill_fen: int
    discharged_wh: int
    degradation_fen: int | None
    site_limit_violations: int
    fallbacks: int
    planner_seconds: float
    simulate_seconds: float
    calendar_fade_kwh: float
    cycle_fade_kwh: float
    capacity_fade_kwh: float
    v2g_fade_kwh: float
    v2g_fade_value_fen: int
    v2g_payment_fen: int
    v2g_owners: int
    v2g_owners_wear_above_payment: int


@dataclass(frozen=True)
class ShardPiece:
    """One shard's run of one planner, as the driver needs it.

    ``ev_load_kw``, ``charge_kw``, ``discharge_kw`` and ``plugged`` are per step of the
    city's grid; ``mean_soc`` the mean SoC of the plugged vehicles per step (NaN when none).
    ``sums`` is ``None`` for a coordination round that is not the last (only the load
    is needed then). ``peak_rss_kib`` is the worker process's peak resident memory so far.
    """

    city: str
    planner: str
    block: int
    coordination_round: int
    ev_load_kw: FloatArray
    charge_kw: FloatArray
    discharge_kw: FloatArray
    plugged: IntArray
    mean_soc: FloatArray
    sums: ShardSums | None
    soc_sample: FloatArray
    bill_sample_fen: IntArray
    owner_wear: OwnerWearSample
    envelope: tuple[EnvelopeHour, ...]
    flat_degradation_cny_per_kwh: float | None
    peak_rss_kib: int
    seconds: float


def sample_size(total: int, shard: int, city: int) -> int:
    """A shard's part of a city-wide sample of ``total``: ``ceil(total * shard / city)``."""
    return min(shard, math.ceil(total * shard / city)) if city else 0


def _chosen(n: int, size: int, seed: int) -> IntArray:
    """``size`` of ``range(n)`` in order, chosen by ``seed`` (all when ``size >= n``)."""
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def owner_sample(wear: SessionWear, *, size: int, seed: int) -> OwnerWearSample:
    """At most ``size`` of the owners who discharged (as ``OwnerWearSample.of``)."""
    owners = np.flatnonzero(wear.v2g_payment_fen > 0)
    if owners.size > size:
        owners = np.sort(np.random.default_rng(seed).choice(owners, size, replace=False))
    return OwnerWearSample(wear.v2g_payment_fen[owners], wear.v2g_fade_value_fen[owners])


def shard_sums(result: RunResult) -> ShardSums:
    """The sums of a shard's run (as :func:`~v2ghub.sim.metrics.city_metrics` adds them)."""
    run, outcomes = result.run, result.outcomes
    fleet = run.case.fleet
    valley = np.array([k == PeriodKind.VALLEY for k in run.prices.level_kind], dtype=bool)
    valley_import = run.import_kwh_by_level[:, valley].sum(axis=1)
    private = fleet.charger_kind == ChargerKind.HOME
    discharged_wh = energy_wh(outcomes.discharged_kwh)
    price = run.case.degradation_cny_per_kwh
    degradation_fen = (
        int(amount_fen(discharged_wh, np.round(price * NANO_PER_CNY).astype(np.int64)).sum())
        if isinstance(price, np.ndarray)
        else None
    )
    wear = result.wear
    assert wear is not None  # evaluate() always prices the wear
    totals = wear.totals()
    discharged = wear.v2g_payment_fen > 0
    return ShardSums(
        sessions=fleet.n_sessions,
        v2g_sessions=int(np.count_nonzero(fleet.discharge_limit_kw > 0)),
        charged_kwh=float(outcomes.charged_kwh.sum()),
        discharged_kwh=float(outcomes.discharged_kwh.sum()),
        valley_import_kwh=float(valley_import.sum()),
        private_charged_kwh=float(outcomes.charged_kwh[private].sum()),
        private_valley_import_kwh=float(valley_import[private].sum()),
        required_kwh=float(outcomes.required_kwh.sum()),
        delivered_kwh=float(outcomes.delivered_kwh.sum()),
        unmet_kwh=float(outcomes.unmet_kwh.sum()),
        unavoidable_kwh=float(outcomes.unavoidable_kwh.sum()),
        vehicles_short=int(np.count_nonzero(outcomes.unmet_kwh)),
        bill_fen=int(outcomes.bill_fen.sum()),
        discharged_wh=int(discharged_wh.sum()),
        degradation_fen=degradation_fen,
        site_limit_violations=run.site_limit_violations,
        fallbacks=len(run.fallback_reasons),
        planner_seconds=run.planner_seconds,
        simulate_seconds=run.total_seconds,
        calendar_fade_kwh=totals["calendar_fade_kwh"],
        cycle_fade_kwh=totals["cycle_fade_kwh"],
        capacity_fade_kwh=totals["capacity_fade_kwh"],
        v2g_fade_kwh=totals["v2g_fade_kwh"],
        v2g_fade_value_fen=int(wear.v2g_fade_value_fen.sum()),
        v2g_payment_fen=int(wear.v2g_payment_fen.sum()),
        v2g_owners=int(np.count_nonzero(discharged)),
        v2g_owners_wear_above_payment=totals["v2g_owners_wear_above_payment"],
    )


def shard_piece(
    result: RunResult,
    *,
    block: int,
    coordination_round: int,
    city_sessions: int,
    final: bool,
    peak_rss_kib: int,
    seconds: float,
) -> ShardPiece:
    """The piece of a shard's evaluated run; samples sized by the shard's share of the
    city's ``city_sessions`` and drawn with the block's number as seed (block 0 of a
    one-block city thus samples exactly as the unsharded run)."""
    run = result.run
    n = run.case.fleet.n_sessions
    price = run.case.degradation_cny_per_kwh
    empty_float, empty_int = np.zeros((0, run.case.grid.length)), np.zeros(0, dtype=np.int64)
    bills = result.outcomes.bill_fen
    wear = result.wear
    assert wear is not None
    return ShardPiece(
        city=run.case.city,
        planner=run.planner,
        block=block,
        coordination_round=coordination_round,
        ev_load_kw=run.ev_load_kw,
        charge_kw=run.charge_kw,
        discharge_kw=run.discharge_kw,
        plugged=run.plugged_count,
        mean_soc=run.mean_soc,
        sums=shard_sums(result) if final else None,
        soc_sample=(
            run.soc_sample[: sample_size(SOC_SAMPLE_SIZE, n, city_sessions)]
            if final
            else empty_float
        ),
        bill_sample_fen=(
            bills[_chosen(bills.size, sample_size(BILL_SAMPLE_SIZE, n, city_sessions), block)]
            if final
            else empty_int
        ),
        owner_wear=(
            owner_sample(wear, size=sample_size(OWNER_SAMPLE_SIZE, n, city_sessions), seed=block)
            if final
            else OwnerWearSample.empty()
        ),
        envelope=run.envelope if final else (),
        flat_degradation_cny_per_kwh=None if isinstance(price, np.ndarray) else float(price),
        peak_rss_kib=peak_rss_kib,
        seconds=seconds,
    )
