"""Battery capacity fade from calendar and cycle ageing, per vehicle, as whole arrays.

Two semi-empirical models from the literature, one per cell chemistry (coefficients and
their sources in ``v2ghub/data/battery_ageing.toml``):

* **LFP/graphite** (Naumann et al. 2018, doi:10.1016/j.est.2018.01.019, calendar; Naumann
  et al. 2020, doi:10.1016/j.jpowsour.2019.227666, cycle)::

      calendar_loss = k_ref * exp(-Ea / R * (1/T - 1/T_ref)) * (c * (SoC - 0.5)^3 + d) * t_s^0.5
      cycle_loss    = (a * C_rate + b) * (c' * (DOD - 0.6)^3 + d') * FEC^0.5 / 100

* **NMC/graphite** (Schmalstieg et al. 2014, doi:10.1016/j.jpowsour.2014.02.012)::

      calendar_loss = (a_V * V(SoC) + b_V) * 1e6 * exp(c_T / T) * t_days^0.75
      cycle_loss    = (q_V * (V(SoC) - V_0)^2 + q_0 + q_DOD * DOD) * Q_Ah^0.5

  with ``V(SoC)`` the cell's open-circuit voltage and ``Q_Ah`` the charge plus discharge
  throughput of the 2.15 Ah test cell (``2 * FEC * 2.15``).

Losses are fractions of the nominal capacity. Both are power laws ``loss = rate * x^p`` in
an exposure ``x`` (time, or cycles) with a rate set by the stress (SoC, temperature, depth,
C-rate). A day's exposure ``x`` adds ``rate * ((x0 + x)^p - x0^p)`` to a vehicle that has
already had ``x0``: the day's stress, on the stretch of the curve the vehicle has reached
(a square-root law fades a new pack far faster than an older one). The history (age and
driving) is an assumption of :class:`WearAssumptions`.

A day's cycle exposure counts the energy charged into the battery, in full equivalent
cycles (FEC = charged kWh / battery kWh): in steady state a vehicle drives away what it
charges, so every kWh charged is also a kWh discharged, and each kWh a vehicle gives back
to the grid (V2G) is discharged and charged again, one kWh more of both. The day's depth
of discharge is taken as its FEC (at most 1), the depth of the one cycle a day of driving
and charging makes.

What fade is worth: a pack is worn out at ``end_of_life_fade`` (e.g. 20%) of its capacity,
so each kWh of capacity lost uses up ``replacement_cny_per_kwh / end_of_life_fade`` CNY of
a pack that costs ``replacement_cny_per_kwh`` a kWh new.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from v2ghub.model.fleet import DEFAULT_CHEMISTRY, Chemistry, Fleet
from v2ghub.units import (
    DAYS_PER_YEAR,
    KELVIN_AT_ZERO_CELSIUS,
    PERCENT_PER_FRACTION,
    SECONDS_PER_DAY,
)

FloatArray = npt.NDArray[np.float64]

GAS_CONSTANT_J_PER_MOL_K = 8.314462618
NAUMANN_REFERENCE_K = 298.15  # the calendar model's reference temperature (25 C)
SQUARE_ROOT = 0.5  # the exponent of every square-root law here
WEAR_PRICE_STEP_KWH = 1.0  # the extra energy the marginal wear price is measured over


def _cube(x: FloatArray) -> FloatArray:
    """``x^3`` as two products: NumPy's ``x ** 3`` calls ``pow`` per element, some 50 times
    slower for a million vehicles (the last bit may differ from ``pow``'s)."""
    return np.asarray(x * x * x)


@dataclass(frozen=True)
class LfpAgeing:
    """Naumann et al.'s LFP/graphite coefficients (Sony/Murata US26650FTC1 cells)."""

    calendar_k_ref_per_sqrt_s: float
    calendar_activation_j_per_mol: float
    calendar_soc_cubic: float
    calendar_soc_offset: float
    cycle_c_rate_slope: float
    cycle_c_rate_offset: float
    cycle_dod_cubic: float
    cycle_dod_offset: float

    def calendar_rate_per_sqrt_s(self, *, soc: FloatArray, temperature_k: float) -> FloatArray:
        """``k_T(T) * k_SoC(SoC)``: calendar loss per square root of a second."""
        k_temperature = self.calendar_k_ref_per_sqrt_s * np.exp(
            -self.calendar_activation_j_per_mol
            / GAS_CONSTANT_J_PER_MOL_K
            * (1 / temperature_k - 1 / NAUMANN_REFERENCE_K)
        )
        k_soc = self.calendar_soc_cubic * _cube(soc - 0.5) + self.calendar_soc_offset
        return np.asarray(np.maximum(k_temperature * k_soc, 0.0))

    def cycle_rate_per_sqrt_fec(self, *, c_rate: FloatArray, dod: FloatArray) -> FloatArray:
        """``k_C(C_rate) * k_DOD(DOD) / 100``: cycle loss per square root of an FEC."""
        k_c_rate = self.cycle_c_rate_slope * c_rate + self.cycle_c_rate_offset
        k_dod = self.cycle_dod_cubic * _cube(dod - 0.6) + self.cycle_dod_offset
        return np.asarray(np.maximum(k_c_rate * k_dod, 0.0) / PERCENT_PER_FRACTION)


@dataclass(frozen=True)
class NmcAgeing:
    """Schmalstieg et al.'s NMC/graphite coefficients (Sanyo UR18650E, 2.15 Ah)."""

    calendar_voltage_slope: float
    calendar_voltage_offset: float
    calendar_temperature_k: float
    calendar_time_exponent: float
    cycle_voltage_quadratic: float
    cycle_voltage_centre_v: float
    cycle_offset: float
    cycle_dod_slope: float
    cell_capacity_ah: float
    ocv_soc: tuple[float, ...]
    ocv_v: tuple[float, ...]

    def voltage_v(self, soc: FloatArray) -> FloatArray:
        """The cell's open-circuit voltage at ``soc`` (linear between the table's points)."""
        return np.asarray(np.interp(soc, self.ocv_soc, self.ocv_v))

    def calendar_rate_per_day(self, *, soc: FloatArray, temperature_k: float) -> FloatArray:
        """``alpha``: calendar loss per day to the power ``calendar_time_exponent``."""
        voltage = self.calendar_voltage_slope * self.voltage_v(soc) + self.calendar_voltage_offset
        alpha = voltage * 1e6 * np.exp(self.calendar_temperature_k / temperature_k)
        return np.asarray(np.maximum(alpha, 0.0))

    def cycle_rate_per_sqrt_ah(self, *, soc: FloatArray, dod: FloatArray) -> FloatArray:
        """``beta``: cycle loss per square root of an Ah of the test cell's throughput."""
        beta = (
            self.cycle_voltage_quadratic * (self.voltage_v(soc) - self.cycle_voltage_centre_v) ** 2
            + self.cycle_offset
            + self.cycle_dod_slope * dod
        )
        return np.asarray(np.maximum(beta, 0.0))


@dataclass(frozen=True)
class WearAssumptions:
    """What the models need beyond the day itself (each stated in the data file).

    ``replacement_cny_per_kwh`` is the price of a new pack per kWh; a pack is at its end of
    life after losing ``end_of_life_fade`` of its capacity. Every vehicle is taken to be
    ``age_years`` old, having driven ``annual_driving_km`` a year at
    ``consumption_kwh_per_km``, at ``temperature_c``.
    """

    temperature_c: float
    end_of_life_fade: float
    replacement_cny_per_kwh: Decimal
    age_years: float
    annual_driving_km: float
    consumption_kwh_per_km: float

    def __post_init__(self) -> None:
        if not 0 < self.end_of_life_fade < 1:
            raise ValueError("end_of_life_fade must lie within (0, 1)")
        if not self.temperature_c > -KELVIN_AT_ZERO_CELSIUS:
            raise ValueError("temperature_c must be above absolute zero")
        if min(self.age_years, self.annual_driving_km, self.consumption_kwh_per_km) <= 0:
            raise ValueError("age_years, annual_driving_km and consumption_kwh_per_km must be > 0")

    @property
    def temperature_k(self) -> float:
        """The cell temperature in kelvin."""
        return self.temperature_c + KELVIN_AT_ZERO_CELSIUS

    @property
    def fade_value_cny_per_kwh(self) -> Decimal:
        """What one kWh of capacity lost is worth: ``replacement / end_of_life_fade``."""
        return self.replacement_cny_per_kwh / Decimal(str(self.end_of_life_fade))

    @property
    def daily_driving_kwh(self) -> float:
        """Energy driven (so charged) on an average day of the vehicle's past."""
        return self.annual_driving_km * self.consumption_kwh_per_km / DAYS_PER_YEAR


@dataclass(frozen=True)
class AgeingModel:
    """The coefficients of each chemistry and the shared assumptions."""

    lfp: LfpAgeing
    nmc: NmcAgeing
    assumptions: WearAssumptions


def power_law_increment(
    *, rate: FloatArray, exponent: float, prior_exposure: FloatArray, exposure: FloatArray
) -> FloatArray:
    """Loss that ``exposure`` adds after ``prior_exposure`` under ``loss = rate * x^exponent``:
    ``rate * ((prior_exposure + exposure)^exponent - prior_exposure^exponent)``.

    Increasing in ``rate`` (>= 0) and in ``exposure`` (>= 0).
    """
    grown = (prior_exposure + exposure) ** exponent - prior_exposure**exponent
    return np.asarray(rate * np.maximum(grown, 0.0))


def _chemistry(chemistry: npt.NDArray[np.int8] | None, n: int) -> npt.NDArray[np.int8]:
    if chemistry is None:
        return np.full(n, DEFAULT_CHEMISTRY, dtype=np.int8)
    return chemistry


Rows = npt.NDArray[np.bool_] | slice


def _rows(chosen: npt.NDArray[np.bool_]) -> Rows:
    """The rows ``chosen`` marks, as every row when it marks them all (a fleet of one
    chemistry): a view of each array, not a copy."""
    return slice(None) if chosen.all() else chosen


def calendar_fade(
    model: AgeingModel,
    *,
    chemistry: npt.NDArray[np.int8] | None,
    mean_soc: FloatArray,
    days: FloatArray,
) -> FloatArray:
    """Calendar capacity fade (fraction of capacity) over ``days`` at ``mean_soc``.

    Parameters
    ----------
    model:
        Coefficients and assumptions (temperature, age).
    chemistry:
        Per vehicle, a :class:`Chemistry` value (``None``: all :data:`DEFAULT_CHEMISTRY`).
    mean_soc:
        Per vehicle, the time-weighted mean SoC (0-1) over the period.
    days:
        Per vehicle, the period's length in days.

    Returns
    -------
    The fade the period adds after ``age_years``. For an SoC ``s`` the LFP stress factor
    ``c (s - 0.5)^3 + d`` and the NMC voltage ``V(s)`` both rise with ``s``, so more time at
    a higher SoC never fades less.
    """
    n = mean_soc.shape[0]
    kind = _chemistry(chemistry, n)
    assumed = model.assumptions
    prior_days = np.full(n, assumed.age_years * DAYS_PER_YEAR)
    temperature_k = assumed.temperature_k
    fade = np.zeros(n)
    is_lfp = kind == Chemistry.LFP
    is_nmc = ~is_lfp
    if is_lfp.any():
        lfp = _rows(is_lfp)
        fade[lfp] = power_law_increment(
            rate=model.lfp.calendar_rate_per_sqrt_s(soc=mean_soc[lfp], temperature_k=temperature_k),
            exponent=SQUARE_ROOT,
            prior_exposure=prior_days[lfp] * SECONDS_PER_DAY,
            exposure=days[lfp] * SECONDS_PER_DAY,
        )
    if is_nmc.any():
        nmc = _rows(is_nmc)
        fade[nmc] = power_law_increment(
            rate=model.nmc.calendar_rate_per_day(soc=mean_soc[nmc], temperature_k=temperature_k),
            exponent=model.nmc.calendar_time_exponent,
            prior_exposure=prior_days[nmc],
            exposure=days[nmc],
        )
    return fade


def cycle_fade(
    model: AgeingModel,
    *,
    chemistry: npt.NDArray[np.int8] | None,
    battery_kwh: FloatArray,
    charged_kwh: FloatArray,
    c_rate: FloatArray,
    mean_soc: FloatArray,
) -> FloatArray:
    """Cycle capacity fade (fraction of capacity) of a day that charged ``charged_kwh``.

    Parameters
    ----------
    model:
        Coefficients and assumptions (age, daily driving).
    chemistry:
        Per vehicle, a :class:`Chemistry` value (``None``: all :data:`DEFAULT_CHEMISTRY`).
    battery_kwh:
        Per vehicle, the battery's capacity.
    charged_kwh:
        Per vehicle, the energy stored into the battery that day (battery side); the day
        cycles ``FEC = charged_kwh / battery_kwh`` at a depth ``DOD = min(FEC, 1)``.
    c_rate:
        Per vehicle, the charge rate (1/h): charger power over battery capacity (LFP only).
    mean_soc:
        Per vehicle, the day's mean SoC (0-1; NMC only, through the cell voltage).

    Returns
    -------
    The fade the day adds after ``age_years`` of driving ``daily_driving_kwh`` a day (as
    many FEC). More energy charged never fades less: both the exposure and the depth (so
    the rate) grow with it.
    """
    n = battery_kwh.shape[0]
    kind = _chemistry(chemistry, n)
    assumed = model.assumptions
    fec = charged_kwh / battery_kwh
    dod = np.minimum(fec, 1.0)
    prior_fec = assumed.daily_driving_kwh * assumed.age_years * DAYS_PER_YEAR / battery_kwh
    fade = np.zeros(n)
    is_lfp = kind == Chemistry.LFP
    is_nmc = ~is_lfp
    if is_lfp.any():
        lfp = _rows(is_lfp)
        fade[lfp] = power_law_increment(
            rate=model.lfp.cycle_rate_per_sqrt_fec(c_rate=c_rate[lfp], dod=dod[lfp]),
            exponent=SQUARE_ROOT,
            prior_exposure=prior_fec[lfp],
            exposure=fec[lfp],
        )
    if is_nmc.any():
        nmc = _rows(is_nmc)
        # Schmalstieg's Q is the test cell's charge plus discharge throughput in Ah.
        ah_per_fec = 2 * model.nmc.cell_capacity_ah
        fade[nmc] = power_law_increment(
            rate=model.nmc.cycle_rate_per_sqrt_ah(soc=mean_soc[nmc], dod=dod[nmc]),
            exponent=SQUARE_ROOT,
            prior_exposure=prior_fec[nmc] * ah_per_fec,
            exposure=fec[nmc] * ah_per_fec,
        )
    return fade


def extra_cycle_fade(
    model: AgeingModel,
    *,
    chemistry: npt.NDArray[np.int8] | None,
    battery_kwh: FloatArray,
    base_kwh: FloatArray,
    extra_kwh: FloatArray,
    c_rate: FloatArray,
    mean_soc: FloatArray,
) -> FloatArray:
    """The cycle fade (fraction) that charging ``extra_kwh`` more than ``base_kwh`` adds:
    ``cycle_fade(base + extra) - cycle_fade(base)`` (>= 0, see :func:`cycle_fade`)."""
    base, more = (
        cycle_fade(
            model,
            chemistry=chemistry,
            battery_kwh=battery_kwh,
            charged_kwh=charged_kwh,
            c_rate=c_rate,
            mean_soc=mean_soc,
        )
        for charged_kwh in (base_kwh, base_kwh + extra_kwh)
    )
    return np.asarray(np.maximum(more - base, 0.0))


def wear_price_cny_per_kwh(fleet: Fleet, model: AgeingModel) -> FloatArray:
    """Per vehicle, the wear cost of discharging one more kWh to the grid (CNY/kWh).

    A kWh delivered takes ``1 / discharge_efficiency`` kWh from the battery, which the
    vehicle charges again: that much more throughput on top of the day's expected
    charging (the session's need, ``target - arrival`` energy). Its price is the cycle
    fade that extra energy adds, valued at :attr:`WearAssumptions.fade_value_cny_per_kwh`::

        price = (fade(need + step) - fade(need)) / step * battery_kwh
                * fade_value_cny_per_kwh / discharge_efficiency

    with ``step`` = :data:`WEAR_PRICE_STEP_KWH` of battery-side energy, the C-rate of the
    session's charger and the session's mean of arrival and target SoC. The slope of a
    square-root law falls as a pack ages, so the price depends on the assumed history.
    """
    fade = extra_cycle_fade(
        model,
        chemistry=fleet.chemistry,
        battery_kwh=fleet.battery_kwh,
        base_kwh=np.maximum(fleet.target_energy_kwh - fleet.energy_arrival_kwh, 0.0),
        extra_kwh=np.full(fleet.n_sessions, WEAR_PRICE_STEP_KWH),
        c_rate=fleet.max_charge_kw / fleet.battery_kwh,
        mean_soc=(fleet.soc_arrival + fleet.soc_target) / 2,
    )
    fade_kwh_per_kwh = fade * fleet.battery_kwh / WEAR_PRICE_STEP_KWH
    value = float(model.assumptions.fade_value_cny_per_kwh)
    return np.asarray(fade_kwh_per_kwh * value / fleet.discharge_efficiency)
