"""The city's summary from its shards' pieces, exactly.

Pieces are added in block order, so the result does not depend on which worker ran which
shard nor on how many there were. Curves are summed per step over the city's grid and
then folded onto the day (:func:`~v2ghub.sim.metrics.fold_daily`); the peak and valley
are read from ``base + sum_s ev_load_s``, never from the shards' own peaks. Money adds in
integer fen; the flat wear price is applied once to the city's metered discharge in Wh
(``round_fen(Wh * price / 1000)``), as the unsharded run does. Shares are ratios of sums.
Mean SoC is the plugged-weighted mean: ``sum_s mean_s[t] * plugged_s[t] /
sum_s plugged_s[t]``. Samples (SoC traces, bills, owners) are the shards' samples put
together, each shard's in proportion to its sessions (at most the unsharded sizes).
Timings (``planner_seconds``, ``simulate_seconds``) are the shards' seconds added:
CPU-seconds across the workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

import numpy as np

from v2ghub.model.signals import GridSignals
from v2ghub.model.time_grid import TimeGrid
from v2ghub.regulation.envelope import EnvelopeHour
from v2ghub.scale.pieces import ShardPiece, ShardSums
from v2ghub.settlement.kpis import VALLEY_SHARE_RULE, VALLEY_SHARE_RULE_PRIVATE
from v2ghub.settlement.money import fen_to_cny, round_fen
from v2ghub.sim.metrics import (
    BILL_SAMPLE_SIZE,
    CityMetrics,
    DailyCurves,
    RunSummary,
    fold_daily,
)
from v2ghub.sim.run_state import SOC_SAMPLE_SIZE
from v2ghub.sim.wear import OWNER_SAMPLE_SIZE, OwnerWearSample
from v2ghub.units import WH_PER_KWH


def _share(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 1.0


def _total(sums: Sequence[ShardSums], name: str) -> float:
    """A float sum over shards, added in block order."""
    total = 0.0
    for item in sums:
        total += getattr(item, name)
    return total


def _count(sums: Sequence[ShardSums], name: str) -> int:
    return sum(int(getattr(item, name)) for item in sums)


def _envelope(pieces: Sequence[ShardPiece]) -> tuple[EnvelopeHour, ...]:
    """Hour by hour, the shards' envelopes added (sites never span shards)."""
    first = pieces[0].envelope
    merged = []
    for k, hour in enumerate(first):
        hours = [piece.envelope[k] for piece in pieces]
        merged.append(
            replace(
                hour,
                planned_kw=float(sum(h.planned_kw for h in hours)),
                raise_kw=np.sum([h.raise_kw for h in hours], axis=0),
                lower_kw=np.sum([h.lower_kw for h in hours], axis=0),
                plugged=sum(h.plugged for h in hours),
            )
        )
    return tuple(merged)


def _degradation_cny(pieces: Sequence[ShardPiece], sums: Sequence[ShardSums]) -> Decimal:
    flat = pieces[0].flat_degradation_cny_per_kwh
    if flat is not None:
        wh = _count(sums, "discharged_wh")
        return round_fen(Decimal(wh) * Decimal(str(flat)) / WH_PER_KWH)
    return fen_to_cny(sum(int(s.degradation_fen or 0) for s in sums))


def merge_pieces(
    pieces: Sequence[ShardPiece],
    *,
    grid: TimeGrid,
    timezone: str,
    signals: GridSignals,
) -> RunSummary:
    """The city's :class:`~v2ghub.sim.metrics.RunSummary` from the final pieces of its
    shards (one per block, any order) and the city's own ``signals`` on ``grid``."""
    ordered = sorted(pieces, key=lambda piece: piece.block)
    sums = [piece.sums for piece in ordered if piece.sums is not None]
    if len(sums) != len(ordered):
        raise ValueError("merge_pieces needs the final round's pieces (with sums)")
    steps_per_day = round(24 / grid.dt_h)
    ev_load = np.zeros(grid.length)
    charge = np.zeros(grid.length)
    discharge = np.zeros(grid.length)
    plugged = np.zeros(grid.length, dtype=np.int64)
    soc_weighted = np.zeros(grid.length)
    for piece in ordered:
        ev_load += piece.ev_load_kw
        charge += piece.charge_kw
        discharge += piece.discharge_kw
        plugged += piece.plugged
        soc_weighted += np.where(piece.plugged > 0, piece.mean_soc, 0.0) * piece.plugged
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_soc = np.where(plugged > 0, soc_weighted / np.maximum(plugged, 1), np.nan)
    if len(ordered) == 1:  # one shard: its own figures, bit for bit
        mean_soc = ordered[0].mean_soc
    curves = DailyCurves(
        base_load_kw=np.asarray(signals.base_load_kw[:steps_per_day]),
        ev_load_kw=fold_daily(ev_load, steps_per_day, 1),
        charge_kw=fold_daily(charge, steps_per_day, 1),
        discharge_kw=fold_daily(discharge, steps_per_day, 1),
        renewable_surplus_kw=np.asarray(signals.renewable_surplus_kw[:steps_per_day]),
    )
    total = curves.total_load_kw
    absorbed = np.minimum(np.maximum(curves.ev_load_kw, 0.0), curves.renewable_surplus_kw)
    charged = _total(sums, "charged_kwh")
    valley_share = _share(_total(sums, "valley_import_kwh"), charged)
    valley_share_private = _share(
        _total(sums, "private_valley_import_kwh"), _total(sums, "private_charged_kwh")
    )
    bill_fen = _count(sums, "bill_fen")
    metrics = CityMetrics(
        city=ordered[0].city,
        planner=ordered[0].planner,
        sessions=_count(sums, "sessions"),
        v2g_sessions=_count(sums, "v2g_sessions"),
        baseline_peak_kw=float(curves.base_load_kw.max()),
        peak_kw=float(total.max()),
        peak_reduction_kw=0.0,
        baseline_valley_kw=float(curves.base_load_kw.min()),
        valley_kw=float(total.min()),
        valley_fill_kw=float(total.min() - curves.base_load_kw.min()),
        renewable_surplus_kwh=float(curves.renewable_surplus_kw.sum() * grid.dt_h),
        renewable_absorbed_kwh=float(absorbed.sum() * grid.dt_h),
        energy_charged_kwh=charged,
        energy_discharged_kwh=_total(sums, "discharged_kwh"),
        valley_share=valley_share,
        valley_share_private=valley_share_private,
        valley_rule_met=valley_share >= VALLEY_SHARE_RULE
        and valley_share_private >= VALLEY_SHARE_RULE_PRIVATE,
        required_energy_kwh=_total(sums, "required_kwh"),
        delivered_energy_kwh=_total(sums, "delivered_kwh"),
        unmet_energy_kwh=_total(sums, "unmet_kwh"),
        unavoidable_shortfall_kwh=_total(sums, "unavoidable_kwh"),
        vehicles_short=_count(sums, "vehicles_short"),
        owner_cost_cny=fen_to_cny(bill_fen),
        degradation_cost_cny=_degradation_cny(ordered, sums),
        site_limit_violations=_count(sums, "site_limit_violations"),
        fallbacks=_count(sums, "fallbacks"),
        planner_seconds=_total(sums, "planner_seconds"),
        simulate_seconds=_total(sums, "simulate_seconds"),
        calendar_fade_kwh=_total(sums, "calendar_fade_kwh"),
        cycle_fade_kwh=_total(sums, "cycle_fade_kwh"),
        capacity_fade_kwh=_total(sums, "capacity_fade_kwh"),
        v2g_fade_kwh=_total(sums, "v2g_fade_kwh"),
        v2g_fade_value_cny=fen_to_cny(_count(sums, "v2g_fade_value_fen")),
        v2g_payment_cny=fen_to_cny(_count(sums, "v2g_payment_fen")),
        v2g_owners=_count(sums, "v2g_owners"),
        v2g_owners_wear_above_payment=_count(sums, "v2g_owners_wear_above_payment"),
    )
    return RunSummary(
        city=metrics.city,
        planner=metrics.planner,
        grid=grid,
        timezone=timezone,
        metrics=metrics,
        curves=curves,
        mean_soc=mean_soc,
        soc_sample=np.concatenate([piece.soc_sample for piece in ordered])[:SOC_SAMPLE_SIZE],
        bill_sample_fen=np.concatenate([piece.bill_sample_fen for piece in ordered])[
            :BILL_SAMPLE_SIZE
        ],
        total_bill_fen=bill_fen,
        envelope=_envelope(ordered),
        owner_wear=OwnerWearSample(
            np.concatenate([piece.owner_wear.payment_fen for piece in ordered])[:OWNER_SAMPLE_SIZE],
            np.concatenate([piece.owner_wear.wear_value_fen for piece in ordered])[
                :OWNER_SAMPLE_SIZE
            ],
        ),
    )
