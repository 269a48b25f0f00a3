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

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from v2ghub.defaults import REGULATION_DURATION_H
from v2ghub.live.live_problem import LiveProblem
from v2ghub.live.regulation_modes import RegulationShare
from v2ghub.model.headroom import PluggedFleet, site_headroom
from v2ghub.regulation.dispatch import participation
from v2ghub.regulation.frequency_response import DEFAULT_DEADBAND_HZ, DEFAULT_DROOP
from v2ghub.store.records import OcppVersion
from v2ghub.store.regulation import Commitment, RegulationMode
from v2ghub.units import SECONDS_PER_HOUR

if TYPE_CHECKING:  # the control loop imports this module
    from v2ghub.live.control import SetpointCommand

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


def assign_regulation(
    live: LiveProblem,
    commands: list[SetpointCommand],
    *,
    now: datetime,
    commitment: Commitment | None,
    frequency_response: FrequencyResponse | None = None,
) -> RegulationAssignment:
    """``commands`` (one per plugged row, in row order) with the shares of the EVSEs that
    follow the ``commitment`` in force at ``now``, or else the frequency response."""
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
    fleet = PluggedFleet(
        planned_kw=baseline_kw,
        energy_kwh=problem.energy_kwh[:n],
        energy_min_kwh=problem.energy_min_kwh[:n],
        energy_max_kwh=problem.energy_max_kwh[:n],
        target_energy_kwh=problem.target_energy_kwh[:n],
        max_charge_kw=problem.max_charge_kw[:n],
        max_discharge_kw=problem.max_discharge_kw[:n],
        charge_efficiency=problem.charge_efficiency[:n],
        discharge_efficiency=problem.discharge_efficiency[:n],
        site_index=problem.site_index[:n],
        import_limit_kw=problem.import_limit_kw,
        export_limit_kw=problem.export_limit_kw,
    )
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
    shares = participation(room, capacity_kw)
    # Whole watts, rounded down: never beyond a vehicle's or a site's headroom.
    raise_kw = np.floor(shares.raise_share_kw * 1000.0) / 1000.0
    lower_kw = np.floor(shares.lower_share_kw * 1000.0) / 1000.0
    takes_part = (raise_kw >= MIN_SHARE_KW) | (lower_kw >= MIN_SHARE_KW)
    response = frequency_response or FrequencyResponse()
    commitment_id = (
        commitment.commitment_id
        if commitment is not None and mode is RegulationMode.CENTRAL_FREQUENCY
        else None
    )
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
