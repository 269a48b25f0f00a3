"""What an EVSE is told to follow in OCPP 2.1's frequency modes, and the curves that say it.

An EVSE taking part in regulation gets a charging profile whose period carries its
baseline (the planned setpoint) and a curve of power against a signal:

``CentralFrequency`` (a regulation commitment)
    ``v2xSignalWattCurve``: the AFRRSignal's integer signal (the regulation signal -1..1
    times :data:`v2ghub.units.AFRR_SIGNAL_SCALE`) against watts, three points
    ``(-scale, -lower_share)``, ``(0, 0)``, ``(+scale, +raise_share)``; the station moves
    to ``baseline + curve(signal)`` whenever an AFRRSignal arrives, so the aggregator
    broadcasts one small message a signal step instead of a setpoint per EVSE.
``LocalFrequency`` (primary frequency response)
    ``v2xFreqWattCurve``: droop with a deadband (:mod:`v2ghub.regulation.frequency_response`),
    four points ``(f0 - d - droop * f0, -lower_share)``, ``(f0 - d, 0)``, ``(f0 + d, 0)``,
    ``(f0 + d + droop * f0, +raise_share)`` with ``f0`` 50 Hz and ``d`` the deadband: above
    nominal the EVSE charges more, below it charges less or discharges, in proportion.

Shares are kW per unit of signal, each way, >= 0; the sign convention is the project's
(+ = more charging).
"""

from __future__ import annotations

from dataclasses import dataclass

from v2ghub.regulation.frequency_response import (
    DEFAULT_DEADBAND_HZ,
    DEFAULT_DROOP,
    NOMINAL_FREQUENCY_HZ,
)
from v2ghub.store.regulation import RegulationMode
from v2ghub.units import AFRR_SIGNAL_SCALE, kw_to_w


@dataclass(frozen=True)
class RegulationShare:
    """One EVSE's part in regulation: kW it moves per unit of signal each way.

    ``commitment_id`` is the commitment followed (``CentralFrequency``), ``None`` for
    droop (``LocalFrequency``), whose curve uses ``deadband_hz`` and ``droop``.
    """

    mode: RegulationMode
    raise_share_kw: float
    lower_share_kw: float
    commitment_id: int | None = None
    deadband_hz: float = DEFAULT_DEADBAND_HZ
    droop: float = DEFAULT_DROOP

    def __post_init__(self) -> None:
        for name in ("raise_share_kw", "lower_share_kw"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0 kW, got {getattr(self, name)}")

    def differs(self, other: RegulationShare | None, *, tolerance_kw: float) -> bool:
        """Whether a station told ``other`` must be told this one instead."""
        return (
            other is None
            or other.mode is not self.mode
            or other.commitment_id != self.commitment_id
            or abs(other.raise_share_kw - self.raise_share_kw) > tolerance_kw
            or abs(other.lower_share_kw - self.lower_share_kw) > tolerance_kw
        )

    def signal_watt_curve(self) -> list[tuple[int, float]]:
        """``(signal, W)`` points of the ``v2xSignalWattCurve``."""
        return [
            (-AFRR_SIGNAL_SCALE, _watts(-self.lower_share_kw)),
            (0, 0.0),
            (AFRR_SIGNAL_SCALE, _watts(self.raise_share_kw)),
        ]

    def freq_watt_curve(self) -> list[tuple[float, float]]:
        """``(Hz, W)`` points of the ``v2xFreqWattCurve`` (droop with a deadband)."""
        full_hz = self.droop * NOMINAL_FREQUENCY_HZ
        low = NOMINAL_FREQUENCY_HZ - self.deadband_hz
        high = NOMINAL_FREQUENCY_HZ + self.deadband_hz
        return [
            (round(low - full_hz, 4), _watts(-self.lower_share_kw)),
            (round(low, 4), 0.0),
            (round(high, 4), 0.0),
            (round(high + full_hz, 4), _watts(self.raise_share_kw)),
        ]


def _watts(power_kw: float) -> float:
    return float(round(kw_to_w(power_kw))) + 0.0
