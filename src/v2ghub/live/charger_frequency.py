"""OCPP 2.1 frequency modes of the simulated stations, for every EVSE at once.

A schedule period in ``CentralFrequency`` mode gives a ``v2xSignalWattCurve`` (points
``(signal, W)``, the signal an integer of the AFRRSignal requests that follow, see
:data:`v2ghub.units.AFRR_SIGNAL_SCALE`); one in ``LocalFrequency`` mode a
``v2xFreqWattCurve`` (points ``(Hz, W)``, against the frequency the station measures).
Either adds the curve to ``v2xBaseline`` and keeps within the period's limits:

    command_kw = clip(baseline_kw + curve_kw(x), discharge_limit_kw, limit_kw)

with ``curve_kw(x)`` linear between points and flat beyond the first and last (as
``numpy.interp``); ``x`` is the latest signal (0 before the first) or the grid frequency
now. The vehicle's own limits and its SoC window are the battery physics' (see
:class:`~v2ghub.live.charger_fleet.BatteryBank`).

:class:`FrequencyModes` holds each EVSE's mode, baseline, limits and curve as arrays
(curves padded to :data:`MAX_CURVE_POINTS`), so one call computes the commands of a
thousand EVSEs; :class:`GridFrequency` is the one frequency all simulated stations measure
(they share a grid); :class:`RegulationSamples` buffers the meter samples a station in a
frequency mode takes every few seconds until it reports them in one message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum

import numpy as np
import numpy.typing as npt
from ocpp.exceptions import FormatViolationError

from v2ghub.live.ocpp_payloads import required_number, required_objects
from v2ghub.regulation.signals import NOMINAL_FREQUENCY_HZ, FrequencyTrace, synthetic_frequency
from v2ghub.units import SECONDS_PER_DAY, w_to_kw

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]

MAX_CURVE_POINTS = 20
"""``maxItems`` of ``v2xSignalWattCurve`` and ``v2xFreqWattCurve`` in OCPP 2.1."""
SYNTHETIC_FREQUENCY_STEP_S = 1.0

Curve = tuple[tuple[float, float], ...]
"""Points ``(x, power_kw)`` of a watt curve, sorted by ``x`` (signal or Hz)."""


class FrequencyMode(IntEnum):
    """What an EVSE's power follows; ``NONE``: the command its profiles set."""

    NONE = 0
    CENTRAL = 1
    """CentralFrequency: the AFRRSignal through ``v2xSignalWattCurve``."""
    LOCAL = 2
    """LocalFrequency: the grid frequency through ``v2xFreqWattCurve``."""


def parse_curve(raw: object, *, x_key: str, field: str) -> Curve:
    """A watt curve of a schedule period (``x_key``: ``signal`` or ``frequency``; powers in
    W) as points ``(x, kW)`` sorted by ``x``. A missing or non-finite number is an OCPP
    ``FormatViolation`` naming the field."""
    points = []
    for i, point in enumerate(required_objects(raw, field)):
        x = required_number(point, x_key, field=f"{field}[{i}].{x_key}")
        power_w = required_number(point, "power", field=f"{field}[{i}].power")
        if not (math.isfinite(x) and math.isfinite(power_w)):
            raise FormatViolationError(
                description=f"{field}[{i}] must hold finite numbers, got {x_key} {x}, "
                f"power {power_w}"
            )
        points.append((x, w_to_kw(power_w)))
    return tuple(sorted(points, key=lambda point: point[0]))


def interpolate_rows(x_points: FloatArray, power_kw: FloatArray, x: FloatArray) -> FloatArray:
    """Each row's curve at its own ``x``: linear between points, flat beyond the ends.

    ``x_points`` and ``power_kw`` are ``(rows, points)``, each row sorted by ``x``; a row
    shorter than the others repeats its last point. ``x`` is one value per row. The same
    as ``numpy.interp`` row by row, with no loop over rows.
    """
    rows, width = x_points.shape
    if width == 1:
        return power_kw[:, 0].copy()
    index = np.arange(rows)
    # The segment [j - 1, j] with x_points[j - 1] <= x < x_points[j] (ends clamped).
    upper = np.clip((x_points <= x[:, None]).sum(axis=1), 1, width - 1)
    x0, x1 = x_points[index, upper - 1], x_points[index, upper]
    y0, y1 = power_kw[index, upper - 1], power_kw[index, upper]
    span = x1 - x0
    safe_span = np.where(span > 0, span, 1.0)
    weight = np.where(span > 0, np.clip((x - x0) / safe_span, 0.0, 1.0), (x >= x1) * 1.0)
    result: FloatArray = y0 + weight * (y1 - y0)
    return result


class FrequencyModes:
    """Each EVSE's frequency mode as arrays: mode, baseline, limits, curve, latest signal.

    Signals are kept in the AFRRSignal's integer units (the curve's ``x``). A signal whose
    timestamp lies ahead waits in ``pending_signal`` / ``pending_at_s`` (seconds on the
    fleet's time axis) until the physics reaches it.
    """

    def __init__(self, count: int) -> None:
        self.mode = np.zeros(count, dtype=np.int8)
        self.baseline_kw = np.zeros(count)
        self.limit_kw = np.full(count, np.inf)
        self.discharge_limit_kw = np.full(count, -np.inf)
        self.curve_x = np.zeros((count, MAX_CURVE_POINTS))
        self.curve_kw = np.zeros((count, MAX_CURVE_POINTS))
        self.signal = np.zeros(count)
        self.pending_signal = np.zeros(count)
        self.pending_at_s = np.full(count, np.inf)

    def set_mode(
        self,
        index: int,
        mode: FrequencyMode,
        *,
        baseline_kw: float,
        curve: Curve,
        limit_kw: float,
        discharge_limit_kw: float,
    ) -> None:
        """EVSE ``index`` follows ``curve`` in ``mode``; entering CentralFrequency starts
        from signal 0 (no signal yet)."""
        if not 1 <= len(curve) <= MAX_CURVE_POINTS:
            raise ValueError(f"a curve has 1 to {MAX_CURVE_POINTS} points, got {len(curve)}")
        if mode is FrequencyMode.CENTRAL and self.mode[index] != FrequencyMode.CENTRAL:
            self.signal[index] = 0.0
            self.pending_at_s[index] = np.inf
        self.mode[index] = mode
        self.baseline_kw[index] = baseline_kw
        self.limit_kw[index] = limit_kw
        self.discharge_limit_kw[index] = discharge_limit_kw
        xs, ys = zip(*curve, strict=True)
        pad = MAX_CURVE_POINTS - len(curve)
        self.curve_x[index] = np.pad(xs, (0, pad), mode="edge")
        self.curve_kw[index] = np.pad(ys, (0, pad), mode="edge")

    def clear(self, index: int) -> None:
        """EVSE ``index`` leaves its frequency mode (its signal is forgotten)."""
        self.mode[index] = FrequencyMode.NONE
        self.signal[index] = 0.0
        self.pending_at_s[index] = np.inf

    def active(self) -> bool:
        """Whether any EVSE is in a frequency mode."""
        return bool(self.mode.any())

    def command_kw(self, rows: IndexArray, frequency_hz: float) -> FloatArray:
        """The commands of EVSEs ``rows`` (each in a frequency mode) with the grid at
        ``frequency_hz``: ``clip(baseline + curve(x), discharge_limit, limit)``."""
        local = self.mode[rows] == FrequencyMode.LOCAL
        x = np.where(local, frequency_hz, self.signal[rows])
        power_kw = self.baseline_kw[rows] + interpolate_rows(
            self.curve_x[rows], self.curve_kw[rows], x
        )
        result: FloatArray = np.clip(power_kw, self.discharge_limit_kw[rows], self.limit_kw[rows])
        return result

    def next_pending_s(self, until_s: float) -> float | None:
        """The earliest pending signal's time if at or before ``until_s``, else ``None``."""
        earliest = float(self.pending_at_s.min()) if self.pending_at_s.size else math.inf
        return earliest if earliest <= until_s else None

    def apply_pending(self, at_s: float) -> IndexArray:
        """Make the signals pending at or before ``at_s`` the latest; their rows."""
        rows = np.flatnonzero(self.pending_at_s <= at_s)
        self.signal[rows] = self.pending_signal[rows]
        self.pending_at_s[rows] = np.inf
        return rows


class GridFrequency:
    """The grid frequency every simulated station measures, from a trace.

    Between samples the frequency is linear; outside the trace it is the nominal 50 Hz
    (no response asked), unless ``repeat_s`` is given: then the trace repeats with that
    period from its start, both ways.
    """

    def __init__(self, trace: FrequencyTrace, *, repeat_s: float | None = None) -> None:
        if repeat_s is not None and not repeat_s > 0:
            raise ValueError(f"repeat_s must be positive, got {repeat_s}")
        self.trace = trace
        self.repeat_s = repeat_s
        self._times_s = np.arange(trace.frequency_hz.size) * trace.step_s

    @classmethod
    def synthetic(cls, *, seed: int, day_of: datetime) -> GridFrequency:
        """:func:`~v2ghub.regulation.signals.synthetic_frequency` (``seed``) over the UTC day
        of ``day_of`` at 1 s, repeating daily: the same seed gives every run the same
        frequency at the same time of day."""
        day = day_of.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        trace = synthetic_frequency(
            duration_s=SECONDS_PER_DAY, step_s=SYNTHETIC_FREQUENCY_STEP_S, seed=seed, start=day
        )
        return cls(trace, repeat_s=SECONDS_PER_DAY)

    def covers(self, at: datetime) -> bool:
        """Whether ``at`` has a measured frequency (not the nominal fill-in)."""
        offset_s = (at - self.trace.start).total_seconds()
        return self.repeat_s is not None or 0 <= offset_s <= self._times_s[-1]

    def at(self, at: datetime) -> float:
        """The frequency at ``at``, Hz."""
        offset_s = (at - self.trace.start).total_seconds()
        if self.repeat_s is not None:
            offset_s %= self.repeat_s
        elif not 0 <= offset_s <= self._times_s[-1]:
            return NOMINAL_FREQUENCY_HZ
        return float(np.interp(offset_s, self._times_s, self.trace.frequency_hz))


@dataclass(frozen=True)
class Sample:
    """One meter sample of an EVSE in a frequency mode."""

    at: datetime
    import_wh: float
    export_wh: float
    power_kw: float
    soc: float | None


_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # the most even spread of phases over a fleet


class RegulationSamples:
    """Meter samples of EVSEs in a frequency mode, taken every ``sample_s`` and reported
    every ``report_s`` (seconds on the fleet's time axis from ``epoch``), as arrays.

    ``next_sample_s`` / ``next_report_s`` are ``inf`` for an EVSE not in a frequency mode.
    A buffer holds ``ceil(report_s / sample_s) + 2`` samples; a full one is due at once.
    """

    def __init__(self, count: int, *, epoch: datetime, sample_s: float, report_s: float) -> None:
        if not 0 < sample_s <= report_s:
            raise ValueError(
                f"need 0 < sample_s <= report_s, got sample_s {sample_s}, report_s {report_s}"
            )
        self.epoch = epoch
        self.sample_s = sample_s
        self.report_s = report_s
        self.capacity = math.ceil(report_s / sample_s) + 2
        self.next_sample_s = np.full(count, np.inf)
        self.next_report_s = np.full(count, np.inf)
        self.taken = np.zeros(count, dtype=np.intp)
        self.last_s = np.full(count, -np.inf)
        """When each EVSE last sampled: never twice at one instant."""
        shape = (count, self.capacity)
        self._at_s = np.zeros(shape)
        self._import_wh = np.zeros(shape)
        self._export_wh = np.zeros(shape)
        self._power_kw = np.zeros(shape)
        self._soc = np.zeros(shape)

    def seconds(self, at: datetime) -> float:
        """``at`` on the time axis (seconds from ``epoch``)."""
        return (at - self.epoch).total_seconds()

    def start(self, index: int, now_s: float) -> None:
        """EVSE ``index`` enters a frequency mode: samples from ``sample_s`` on, the first
        report between half a ``report_s`` and a whole one on (then every ``report_s``).

        The first report's phase is EVSE ``index``'s own, spread evenly over the fleet
        (``1 - frac(index * 0.618...) / 2`` of ``report_s``; EVSE 0 reports after a whole
        ``report_s``): real chargers count their reporting interval from their own
        transaction's start, so a thousand of them given their profiles in the same second
        do not all report in the same second ever after.
        """
        phase = 1.0 - math.fmod(index * _GOLDEN, 1.0) / 2
        first_s = max(round(phase * self.report_s / self.sample_s), 1) * self.sample_s
        self.next_sample_s[index] = now_s + self.sample_s
        self.next_report_s[index] = now_s + first_s

    def stop(self, index: int) -> None:
        """EVSE ``index`` leaves its frequency mode (take what is buffered first)."""
        self.next_sample_s[index] = np.inf
        self.next_report_s[index] = np.inf
        self.taken[index] = 0

    def active(self, index: int) -> bool:
        """Whether EVSE ``index`` samples."""
        return bool(np.isfinite(self.next_report_s[index]))

    def record(
        self,
        now_s: float,
        *,
        import_wh: FloatArray,
        export_wh: FloatArray,
        power_kw: FloatArray,
        soc: FloatArray,
    ) -> None:
        """Sample the EVSEs whose sample is due at ``now_s`` (arrays of every EVSE; ``soc``
        NaN for none); the next one ``sample_s`` after the due time (later ticks that
        fell behind skip the samples they missed). One already sampled at ``now_s`` is
        not sampled again."""
        rows = np.flatnonzero((self.next_sample_s <= now_s) & (self.last_s < now_s))
        if rows.size == 0:
            return
        rows = rows[self.taken[rows] < self.capacity]
        self.last_s[rows] = now_s
        slot = self.taken[rows]
        self._at_s[rows, slot] = now_s
        self._import_wh[rows, slot] = import_wh[rows]
        self._export_wh[rows, slot] = export_wh[rows]
        self._power_kw[rows, slot] = power_kw[rows]
        self._soc[rows, slot] = soc[rows]
        self.taken[rows] += 1
        behind = np.floor((now_s - self.next_sample_s[rows]) / self.sample_s)
        self.next_sample_s[rows] += (behind + 1) * self.sample_s

    def due_reports(self, now_s: float) -> IndexArray:
        """EVSEs whose report is due at ``now_s`` (or whose buffer is full)."""
        return np.flatnonzero((self.next_report_s <= now_s) | (self.taken >= self.capacity - 1))

    def take(self, index: int, now_s: float) -> list[Sample]:
        """EVSE ``index``'s buffered samples, oldest first; the buffer empties and the next
        report is due ``report_s`` after this one's due time."""
        n = int(self.taken[index])
        samples = [
            Sample(
                at=self.epoch + timedelta(seconds=float(self._at_s[index, k])),
                import_wh=float(self._import_wh[index, k]),
                export_wh=float(self._export_wh[index, k]),
                power_kw=float(self._power_kw[index, k]),
                soc=None if math.isnan(self._soc[index, k]) else float(self._soc[index, k]),
            )
            for k in range(n)
        ]
        self.taken[index] = 0
        if math.isfinite(self.next_report_s[index]):
            behind = max(math.floor((now_s - self.next_report_s[index]) / self.report_s), 0)
            self.next_report_s[index] += (behind + 1) * self.report_s
        return samples
