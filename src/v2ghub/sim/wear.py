"""Battery wear of a twin run, per session: capacity fade and what the owner's V2G cost.

Each session is one vehicle's day (:mod:`v2ghub.model.battery_ageing` has the models):

* **calendar fade** over ``max(24 h, the session's length)`` at the day's mean SoC: the
  plugged steps' SoC as the run metered it (``SimulationRun.soc_hours``), and away from
  the charger the mean of the departure and arrival SoC (driving drains the battery
  evenly from one to the other, the same every day);
* **cycle fade** of the energy charged into the battery, at the charger's C-rate;
* **V2G fade**: the cycle fade less the same vehicle's fade had it only charged what it
  kept (charged minus discharged energy, battery side), so the part due to discharging;
* its **value**, at :attr:`~v2ghub.model.battery_ageing.WearAssumptions.fade_value_cny_per_kwh`
  (integer fen, half up), beside **what V2G paid** the owner: the session's discharged
  energy at each price level's export price (fen, as billed).

Fade is an estimate (a float); money derived from it is integer fen.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TypedDict

import numpy as np
import numpy.typing as npt

from v2ghub.model.battery_ageing import AgeingModel, calendar_fade, cycle_fade
from v2ghub.settlement.money import amount_fen, energy_wh, fen_to_cny, price_nano, row_sums
from v2ghub.sim.run_state import SimulationRun
from v2ghub.units import SECONDS_PER_DAY, SECONDS_PER_HOUR

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

HOURS_PER_DAY = 24
FEN_PER_CNY = 100


class WearTotals(TypedDict):
    """A run's wear summed over its sessions (the names of its ``summary.json`` keys)."""

    calendar_fade_kwh: float
    cycle_fade_kwh: float
    capacity_fade_kwh: float
    v2g_fade_kwh: float
    v2g_fade_value_cny: Decimal
    v2g_payment_cny: Decimal
    v2g_owners: int
    v2g_owners_wear_above_payment: int


@dataclass(frozen=True)
class SessionWear:
    """Per session (the fleet's order): fade in kWh of capacity, money in fen."""

    mean_soc: FloatArray
    calendar_fade_kwh: FloatArray
    cycle_fade_kwh: FloatArray
    v2g_fade_kwh: FloatArray
    v2g_fade_value_fen: IntArray
    v2g_payment_fen: IntArray

    @property
    def capacity_fade_kwh(self) -> FloatArray:
        """Calendar plus cycle fade."""
        return self.calendar_fade_kwh + self.cycle_fade_kwh

    def totals(self) -> WearTotals:
        """Sums over the sessions, named as in ``summary.json``; the owners who discharged
        and, of them, those whose wear was worth more than V2G paid them."""
        discharged = self.v2g_payment_fen > 0
        return WearTotals(
            calendar_fade_kwh=float(self.calendar_fade_kwh.sum()),
            cycle_fade_kwh=float(self.cycle_fade_kwh.sum()),
            capacity_fade_kwh=float(self.capacity_fade_kwh.sum()),
            v2g_fade_kwh=float(self.v2g_fade_kwh.sum()),
            v2g_fade_value_cny=fen_to_cny(int(self.v2g_fade_value_fen.sum())),
            v2g_payment_cny=fen_to_cny(int(self.v2g_payment_fen.sum())),
            v2g_owners=int(np.count_nonzero(discharged)),
            v2g_owners_wear_above_payment=int(
                np.count_nonzero(discharged & (self.v2g_fade_value_fen > self.v2g_payment_fen))
            ),
        )


def value_fen(fade_kwh: FloatArray, model: AgeingModel) -> IntArray:
    """What ``fade_kwh`` of capacity is worth, in whole fen (half up; fade is >= 0)."""
    fen_per_kwh = float(model.assumptions.fade_value_cny_per_kwh) * FEN_PER_CNY
    return np.floor(fade_kwh * fen_per_kwh + 0.5).astype(np.int64)


def day_mean_soc(run: SimulationRun) -> tuple[FloatArray, FloatArray]:
    """Per session: the day's mean SoC and the day's length in days (see the module)."""
    fleet = run.case.fleet
    grid = run.case.grid
    first, end = run.case.plugged_steps()
    plugged_h = (end - first) * grid.dt_h
    soc_final = run.energy_final_kwh / fleet.battery_kwh
    if run.soc_hours.shape == (fleet.n_sessions,):
        plugged_soc_h = run.soc_hours
    else:  # a run made without SoC metering: the plugged hours at the mean of both ends
        plugged_soc_h = plugged_h * (fleet.soc_arrival + soc_final) / 2
    session_h = (fleet.departure_s - fleet.arrival_s) / SECONDS_PER_HOUR
    day_h = np.maximum(np.maximum(session_h, plugged_h), HOURS_PER_DAY)
    away_h = day_h - plugged_h
    mean_soc = (plugged_soc_h + away_h * (fleet.soc_arrival + soc_final) / 2) / day_h
    return np.clip(mean_soc, 0.0, 1.0), day_h * SECONDS_PER_HOUR / SECONDS_PER_DAY


def session_wear(
    run: SimulationRun, model: AgeingModel, *, export_wh: IntArray | None = None
) -> SessionWear:
    """The wear of every session of ``run`` (see the module for what each part means).

    ``export_wh``: the run's metered export per session and price level (integer Wh),
    when already read (:func:`~v2ghub.settlement.money.energy_wh` of its export kWh).
    """
    fleet = run.case.fleet
    mean_soc, days = day_mean_soc(run)
    charged_kwh = run.energy_charged_kwh * fleet.charge_efficiency
    discharged_kwh = run.energy_discharged_kwh / fleet.discharge_efficiency
    kept_kwh = np.maximum(charged_kwh - discharged_kwh, 0.0)
    c_rate = fleet.max_charge_kw / fleet.battery_kwh

    def fade_of(energy_kwh: FloatArray) -> FloatArray:
        return cycle_fade(
            model,
            chemistry=fleet.chemistry,
            battery_kwh=fleet.battery_kwh,
            charged_kwh=energy_kwh,
            c_rate=c_rate,
            mean_soc=mean_soc,
        )

    cycle = fade_of(charged_kwh)
    v2g = np.maximum(cycle - fade_of(kept_kwh), 0.0)
    calendar = calendar_fade(model, chemistry=fleet.chemistry, mean_soc=mean_soc, days=days)
    v2g_fade_kwh = v2g * fleet.battery_kwh
    export_nano = price_nano(run.prices.export_price_cny_per_kwh)
    if export_wh is None:
        export_wh = energy_wh(run.export_kwh_by_level)
    payment = row_sums(amount_fen(export_wh, export_nano[None, :]))
    return SessionWear(
        mean_soc=mean_soc,
        calendar_fade_kwh=calendar * fleet.battery_kwh,
        cycle_fade_kwh=cycle * fleet.battery_kwh,
        v2g_fade_kwh=v2g_fade_kwh,
        v2g_fade_value_fen=value_fen(v2g_fade_kwh, model),
        v2g_payment_fen=payment,
    )


OWNER_SAMPLE_SIZE = 5_000


@dataclass(frozen=True)
class OwnerWearSample:
    """A seeded sample (at most :data:`OWNER_SAMPLE_SIZE`) of the owners who discharged:
    what V2G paid each and what its V2G wear was worth (fen), for the report's figure."""

    payment_fen: IntArray
    wear_value_fen: IntArray

    @staticmethod
    def empty() -> OwnerWearSample:
        """No owner."""
        return OwnerWearSample(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))

    @staticmethod
    def of(wear: SessionWear, *, seed: int = 0) -> OwnerWearSample:
        """The sample of one run's sessions."""
        owners = np.flatnonzero(wear.v2g_payment_fen > 0)
        if owners.size > OWNER_SAMPLE_SIZE:
            chosen = np.random.default_rng(seed).choice(owners, OWNER_SAMPLE_SIZE, replace=False)
            owners = np.sort(chosen)
        return OwnerWearSample(wear.v2g_payment_fen[owners], wear.v2g_fade_value_fen[owners])
