"""Following a regulation signal: participation factors once per interval, one multiply-add
per signal step.

A committed capacity ``C`` (kW) is split over the vehicles in proportion to their headroom
(:mod:`v2ghub.regulation.capacity`) once per interval: vehicle ``i`` moves by
``raise_share_kw[i] = C * raise_kw[i] / sum(raise_kw)`` per unit of a positive signal
and by ``lower_share_kw[i] = C * lower_kw[i] / sum(lower_kw)`` per unit of a negative one,
so at signal ``s`` (-1..1, + = more charging) its setpoint is

    planned_kw[i] + s * (raise_share_kw[i] if s >= 0 else lower_share_kw[i]).

The fleet then moves by exactly ``s * C`` whenever ``C`` is within the headroom, and no
vehicle is asked beyond its own. The shares change only at interval boundaries: a charger
can be sent its two shares once and then follow a broadcast signal (what OCPP 2.1's
frequency and AFRR modes allow), so a signal step needs no per-vehicle message at all,
where sending each vehicle its new setpoint would change every participating vehicle's
setpoint at almost every step (:func:`changed_setpoints` counts them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from v2ghub.regulation.capacity import Headroom

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Participation:
    """Each vehicle's kW per unit of signal, fixed for an interval."""

    raise_share_kw: FloatArray
    lower_share_kw: FloatArray
    capacity_kw: float

    @property
    def n_participating(self) -> int:
        """Vehicles with a share in either direction."""
        return int(np.count_nonzero((self.raise_share_kw > 0) | (self.lower_share_kw > 0)))


def participation(headroom: Headroom, capacity_kw: float) -> Participation:
    """Split ``capacity_kw`` over the vehicles by headroom, in each direction.

    Where the headroom in a direction is below the capacity, every vehicle gives all of
    its headroom there (the fleet then delivers less than asked, and the score shows it).
    """
    if capacity_kw < 0:
        raise ValueError(f"capacity_kw must be >= 0, got {capacity_kw}")

    def shares(kw: FloatArray) -> FloatArray:
        total = float(kw.sum())
        if total <= 0:
            return np.zeros_like(kw)
        return kw if capacity_kw >= total else kw * (capacity_kw / total)

    return Participation(
        raise_share_kw=shares(headroom.raise_kw),
        lower_share_kw=shares(headroom.lower_kw),
        capacity_kw=capacity_kw,
    )


def setpoints(
    planned_kw: FloatArray,
    shares: Participation,
    signal: float,
    *,
    out: FloatArray | None = None,
) -> FloatArray:
    """Every vehicle's setpoint at one signal value (``out`` is reused if given)."""
    share = shares.raise_share_kw if signal >= 0 else shares.lower_share_kw
    result = np.multiply(share, signal, out=out)
    return np.add(result, planned_kw, out=result)


def changed_setpoints(before_kw: FloatArray, after_kw: FloatArray, *, tolerance_kw: float) -> int:
    """How many vehicles' setpoints moved by more than ``tolerance_kw`` between two steps:
    the messages a per-vehicle setpoint path would send."""
    return int(np.count_nonzero(np.abs(after_kw - before_kw) > tolerance_kw))
