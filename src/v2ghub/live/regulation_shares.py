"""Which EVSEs follow regulation at a control instant, and by how much: the twin's
participation factors (:mod:`v2ghub.regulation.dispatch`) on the live plan.

At each control instant with a regulation commitment in force (or primary frequency
response switched on), every plugged vehicle's headroom around its command's setpoint
(the baseline) is computed as the twin computes it (:func:`v2ghub.model.headroom.site_headroom`:
power limits, SoC window, departure need, site limits), held for what is left of the
commitment's hour (frequency response: :data:`v2ghub.defaults.REGULATION_DURATION_H`). The
capacity is then split over the EVSEs that can follow a broadcast signal, in proportion to
their headroom each way (:func:`v2ghub.regulation.dispatch.participation`).

Who takes part: OCPP 2.1 sessions allowed to discharge (their station is registered for V2X
and their battery is known), the only ones that can hold a ``CentralFrequency`` or
``LocalFrequency`` profile. The others (2.0.1, 1.6, charge-only) keep their setpoints and
are left out of the commitment: sending them a setpoint every signal step would cost one
message per EVSE every 2-4 s; the headroom they could have given is reported
(:attr:`RegulationAssignment.left_out_kw`) so the cost of leaving them out is measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from v2ghub.defaults import REGULATION_DURATION_H
from v2ghub.live.live_problem import LiveProblem, SessionKey
from v2ghub.live.regulation_modes import RegulationShare
from v2ghub.model.headroom import PluggedFleet, site_headroom
from v2ghub.regulation.frequency_response import DEFAULT_DEADBAND_HZ, DEFAULT_DROOP
from v2ghub.store.records import OcppVersion
from v2ghub.store.regulation import Commitment, RegulationMode
from v2ghub.units import SECONDS_PER_HOUR

if TYPE_CHECKING:  # the control loop imports this module
    from v2ghub.live.control import SetpointCommand

FloatArray = npt.NDArray[np.float64]

SPARE_EPSILON_KW = 1e-9
"""Spare room below this is none (a ratio over it would overflow)."""
MIN_SHARE_KW = 0.05
"""An EVSE whose shares are both below this follows nothing (its curve would be flat)."""


@dataclass(frozen=True)
class FrequencyResponse:
    """Primary frequency response: ``rated_kw`` each way at full droop (0: off)."""

    rated_kw: float = 0.0
    deadband_hz: float = DEFAULT_DEADBAND_HZ
    droop: float = DEFAULT_DROOP

    def __post_init__(self) -> None:
        if not self.rated_kw >= 0:
            raise ValueError(f"frequency response rated_kw must be >= 0, got {self.rated_kw}")


@dataclass(frozen=True)
class RegulationAssignment:
    """The commands with each participating EVSE's share, and the fleet's figures.

    ``capacity_kw`` is what is followed (a commitment's, or the rated droop response);
    ``raise_kw``/``lower_kw`` the participants' summed shares each way (below the capacity
    when their headroom is); ``left_out_kw`` the symmetric headroom of the vehicles that
    cannot follow a broadcast signal.
    """

    commands: list[SetpointCommand]
    mode: RegulationMode | None
    capacity_kw: float
    participants: int
    raise_kw: float
    lower_kw: float
    left_out_kw: float


def sticky_shares(room_kw: FloatArray, kept_kw: FloatArray, capacity_kw: float) -> FloatArray:
    """Each EVSE's share of ``capacity_kw`` in one direction, keeping what it holds.

    With ``k_i = min(kept_i, room_i)`` (a share held is kept while the EVSE has room for
    it), the deficit ``D = max(C - sum(k), 0)`` is given to the spare room
    ``s_i = room_i - k_i`` pro rata:

        share_i = k_i + s_i * min(1, D / sum(s))

    With nothing held this is the twin's participation by headroom
    (:func:`v2ghub.regulation.dispatch.participation`): ``room_i * min(1, C / sum(room))``.
    """
    keep = np.minimum(np.maximum(kept_kw, 0.0), room_kw)
    deficit_kw = max(capacity_kw - float(keep.sum()), 0.0)
    spare = room_kw - keep
    spare_kw = float(spare.sum())
    if spare_kw <= SPARE_EPSILON_KW or deficit_kw <= 0:
        return np.asarray(keep)
    return np.asarray(keep + spare * min(1.0, deficit_kw / spare_kw))


def _kept(
    rows: Sequence[SessionKey],
    previous: Mapping[tuple[str, int, str], RegulationShare],
    mode: RegulationMode,
    commitment_id: int | None,
) -> tuple[FloatArray, FloatArray]:
    """The shares each row holds now in ``mode`` for ``commitment_id`` (else 0), kW."""
    held = [previous.get((key.station_id, key.evse_id, key.transaction_id)) for key in rows]
    same = [
        share
        if share is not None and share.mode is mode and share.commitment_id == commitment_id
        else None
        for share in held
    ]
    raise_kw = np.array([0.0 if s is None else s.raise_share_kw for s in same], dtype=np.float64)
    lower_kw = np.array([0.0 if s is None else s.lower_share_kw for s in same], dtype=np.float64)
    return raise_kw, lower_kw


def assign_regulation(
    live: LiveProblem,
    commands: list[SetpointCommand],
    *,
    now: datetime,
    commitment: Commitment | None,
    frequency_response: FrequencyResponse | None = None,
    previous: Mapping[tuple[str, int, str], RegulationShare] | None = None,
) -> RegulationAssignment:
    """``commands`` (one per plugged row, in row order) with the shares of the EVSEs that
    follow the ``commitment`` in force at ``now``, or else the frequency response.

    ``previous`` are the shares the EVSEs hold now (accepted), by (station, EVSE,
    transaction): those of the same mode and commitment are kept while they fit
    (:func:`sticky_shares`), so that a vehicle arriving or leaving does not re-send every
    other EVSE its profile."""
    problem = live.problem
    n = problem.n_plugged
    if commitment is not None and commitment.in_force(now):
        mode = RegulationMode.CENTRAL_FREQUENCY
        capacity_kw = commitment.capacity_kw
        hour_end_s = (now.timestamp() // SECONDS_PER_HOUR + 1) * SECONDS_PER_HOUR
        duration_h = (min(hour_end_s, commitment.ends_at.timestamp()) - now.timestamp()) / (
            SECONDS_PER_HOUR
        )
    elif frequency_response is not None and frequency_response.rated_kw > 0:
        mode = RegulationMode.LOCAL_FREQUENCY
        capacity_kw = frequency_response.rated_kw
        duration_h = REGULATION_DURATION_H
    else:
        return RegulationAssignment(commands, None, 0.0, 0, 0.0, 0.0, 0.0)
    if n == 0 or len(commands) != n:
        return RegulationAssignment(commands, mode, capacity_kw, 0, 0.0, 0.0, 0.0)
    duration_h = max(duration_h, problem.dt_h / 60)  # the hour's last seconds still count
    baseline_kw = np.array([c.setpoint_kw for c in commands], dtype=np.float64)
    fleet = PluggedFleet.of(problem, baseline_kw)
    room = site_headroom(
        fleet,
        hours_to_departure=problem.departure_step[:n].astype(np.float64) * problem.dt_h,
        duration_h=duration_h,
    )
    follows = np.array(
        [key.ocpp_version is OcppVersion.V21 for key in live.rows[:n]], dtype=bool
    ) & (problem.max_discharge_kw[:n] > 0)
    left_out_kw = float(min(room.raise_kw[~follows].sum(), room.lower_kw[~follows].sum()))
    room = replace(
        room,
        raise_kw=np.where(follows, room.raise_kw, 0.0),
        lower_kw=np.where(follows, room.lower_kw, 0.0),
    )
    commitment_id = (
        commitment.commitment_id
        if commitment is not None and mode is RegulationMode.CENTRAL_FREQUENCY
        else None
    )
    kept_raise, kept_lower = _kept(live.rows[:n], previous or {}, mode, commitment_id)
    # Whole watts, rounded down: never beyond a vehicle's or a site's headroom.
    raise_kw = np.floor(sticky_shares(room.raise_kw, kept_raise, capacity_kw) * 1000.0) / 1000.0
    lower_kw = np.floor(sticky_shares(room.lower_kw, kept_lower, capacity_kw) * 1000.0) / 1000.0
    takes_part = (raise_kw >= MIN_SHARE_KW) | (lower_kw >= MIN_SHARE_KW)
    response = frequency_response or FrequencyResponse()
    out = list(commands)
    for i in np.flatnonzero(takes_part):  # the edge: one payload per participating EVSE
        out[i] = replace(
            commands[i],
            schedule_kw=(),
            step_s=0,
            regulation=RegulationShare(
                mode=mode,
                raise_share_kw=float(raise_kw[i]),
                lower_share_kw=float(lower_kw[i]),
                commitment_id=commitment_id,
                deadband_hz=response.deadband_hz,
                droop=response.droop,
            ),
        )
    return RegulationAssignment(
        commands=out,
        mode=mode,
        capacity_kw=capacity_kw,
        participants=int(takes_part.sum()),
        raise_kw=float(raise_kw[takes_part].sum()),
        lower_kw=float(lower_kw[takes_part].sum()),
        left_out_kw=left_out_kw,
    )
