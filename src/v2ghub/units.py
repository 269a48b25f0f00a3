"""Units and the sign convention: the only place where quantities are converted.

Quantities carry their unit in their name (``power_kw``, ``energy_kwh``, ``dt_h``,
``price_cny_per_kwh``); ``soc`` is a fraction 0-1.

Sign convention: **positive power = charging** (the vehicle imports from the grid),
**negative power = discharging** (vehicle-to-grid export). Power is measured at the
charger (grid side); energy stored in the battery differs by the efficiencies:

    stored_kwh = charge_efficiency * charged_kwh             (charging)
    stored_kwh = -discharged_kwh / discharge_efficiency      (discharging)
"""

from __future__ import annotations

from datetime import timedelta

SECONDS_PER_HOUR = 3600
MINUTES_PER_HOUR = 60
SECONDS_PER_MINUTE = 60
SECONDS_PER_DAY = 86_400
MINUTES_PER_DAY = 1440
WH_PER_KWH = 1000
KW_PER_MW = 1000
KWH_PER_MWH = 1000
W_PER_KW = 1000
MICROSECONDS_PER_SECOND = 1_000_000
DAYS_PER_YEAR = 365
KELVIN_AT_ZERO_CELSIUS = 273.15


def hours(duration: timedelta) -> float:
    """Length of ``duration`` in hours (the ``dt_h`` of a step)."""
    return duration.total_seconds() / SECONDS_PER_HOUR


def minutes_to_timedelta(minutes: float) -> timedelta:
    """A duration given in minutes, as a ``timedelta``."""
    return timedelta(minutes=minutes)


def kwh_to_wh(energy_kwh: float) -> float:
    """Kilowatt-hours to watt-hours."""
    return energy_kwh * WH_PER_KWH


def kw_to_mw(power_kw: float) -> float:
    """Kilowatts to megawatts."""
    return power_kw / KW_PER_MW


def kw_to_w(power_kw: float) -> float:
    """Kilowatts to watts."""
    return power_kw * W_PER_KW


def w_to_kw(power_w: float) -> float:
    """Watts to kilowatts."""
    return power_w / W_PER_KW


PERCENT_PER_FRACTION = 100


def wh_to_kwh(energy_wh: float) -> float:
    """Watt-hours to kilowatt-hours."""
    return energy_wh / WH_PER_KWH


def current_to_kw(current_a: float, *, voltage_v: float, phases: int = 1) -> float:
    """Power of a current: ``kW = A * V * phases / 1000`` (``voltage_v`` per phase for AC;
    ``phases=1`` for DC)."""
    return w_to_kw(current_a * voltage_v * phases)


def percent_to_fraction(percent: float) -> float:
    """A percentage (an OCPP SoC, 0-100) as a fraction (0-1)."""
    return percent / PERCENT_PER_FRACTION


def fraction_to_percent(fraction: float) -> float:
    """A fraction (0-1) as a percentage (0-100)."""
    return fraction * PERCENT_PER_FRACTION


def kw_to_current(power_kw: float, *, voltage_v: float, phases: int = 1) -> float:
    """The current of a power, the inverse of :func:`current_to_kw`:
    ``A = kW * 1000 / (V * phases)``."""
    return kw_to_w(power_kw) / (voltage_v * phases)


AFRR_SIGNAL_SCALE = 1000
"""OCPP 2.1 AFRRSignal ``signal`` integers per unit of regulation signal (per-mille): the
regulation signal -1..1 (+ = more charging, :mod:`v2ghub.regulation.signals`) times 1000 is
the integer sent, and the x axis of a ``v2xSignalWattCurve``."""


def signal_to_afrr(signal: float) -> int:
    """A regulation signal (-1..1, + = more charging) as an AFRRSignal integer:
    ``round(signal * 1000)``."""
    return round(signal * AFRR_SIGNAL_SCALE)


def afrr_to_signal(value: int) -> float:
    """An AFRRSignal integer as a regulation signal: ``value / 1000`` (-1..1 when the
    sender kept to the scale)."""
    return value / AFRR_SIGNAL_SCALE
