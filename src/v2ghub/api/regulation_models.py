"""The JSON bodies of ``/api/v1/grid/regulation`` (pydantic): units in field names, times
ISO 8601 with their offset (the city's local time).

The regulation signal is a fraction of the committed capacity, -1..1, + = more charging
(:mod:`v2ghub.regulation.signals`); so is the fleet's measured response.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, Field

from v2ghub.api.models import Body

MAX_SAMPLES = 1000
"""Signal samples one request may post."""


class SignalSampleIn(Body):
    at: AwareDatetime
    """When the sample starts to hold (with its UTC offset)."""
    signal: float = Field(ge=-1.0, le=1.0, allow_inf_nan=False)
    """-1..1 of the committed capacity, + = more charging."""


class SignalIn(Body):
    """Regulation signal samples, recorded all or none."""

    samples: list[SignalSampleIn] = Field(min_length=1, max_length=MAX_SAMPLES)


class SignalPosted(BaseModel):
    recorded: int
    """Samples recorded."""
    broadcast: bool
    """Whether they were handed to the running server's broadcaster (False: no control
    loop, or no broadcaster, here: recorded only)."""
    signal_now: float | None
    """The recorded signal in force now: the last sample at or before now (None: none)."""
    signal_now_at: datetime | None


class CommitmentIn(Body):
    """A symmetric regulation capacity the fleet commits to follow the signal with."""

    starts_at: AwareDatetime
    ends_at: AwareDatetime
    capacity_kw: float = Field(gt=0, allow_inf_nan=False)
    """kW each way."""
    external_id: str | None = Field(default=None, max_length=128)
    """The grid operator's id of the commitment, kept as given."""


class CommitmentOut(BaseModel):
    commitment_id: int
    starts_at: datetime
    ends_at: datetime
    capacity_kw: float
    source: str
    """Who committed it: ``api:TOKEN``, ``file:NAME``, ``cli``."""
    external_id: str | None
    recorded_at: datetime
    cancelled_at: datetime | None
    cancelled_by: str | None
    in_force: bool


class RegulationHourOut(BaseModel):
    """A whole committed hour, scored from the chargers' power readings
    (:mod:`v2ghub.regulation.live_score`); scores are 0 to 1."""

    commitment_id: int
    start: datetime
    capacity_kw: float
    correlation: float
    delay: float
    precision: float
    composite: float
    """``(correlation + delay + precision) / 3``."""
    delay_s: float
    mileage_mw: float
    expected_energy_kwh: float
    """What the following EVSEs were told, sampled on the signal's grid."""
    measured_energy_kwh: float
    evse_count: int
    reporting_share: float
    """Of the (EVSE, sample) pairs that followed, the share with a recent reading."""


class RegulationNow(BaseModel):
    """What the fleet follows now, and how it did in the last day's committed hours."""

    at: datetime
    commitment: CommitmentOut | None
    """The commitment in force now (the control loop follows it from its next instant)."""
    mode: str | None
    """``CentralFrequency`` (a commitment's signal), ``LocalFrequency`` (droop on the
    local frequency) or None, at the control loop's last instant."""
    capacity_kw: float
    """What is followed: the commitment's capacity, or the rated droop response."""
    participants: int
    """EVSEs given a share at the last instant."""
    following_stations: int
    """Stations the signal is broadcast to (those that accepted a CentralFrequency share)."""
    raise_kw: float
    """The participants' shares summed: more charging at a signal of +1."""
    lower_kw: float
    """Less charging (or discharging) at a signal of -1."""
    left_out_kw: float
    """Symmetric headroom of vehicles that cannot follow a broadcast signal."""
    last_signal: float | None
    """The last signal the broadcaster put out, and the step's time."""
    last_signal_at: datetime | None
    broadcasts: int
    messages: int
    """AFRRSignal requests sent (one per station per broadcast)."""
    answers: dict[str, int]
    """The stations' answers to them, by status."""
    hours: list[RegulationHourOut]
    """Whole committed hours of the last 24 h, scored (an hour is scored once it ends)."""
    live: bool
    """Whether this server runs a control loop that follows regulation (else the loop's
    figures are 0 and only the store is read)."""


class ResponseSegment(BaseModel):
    """The signal and the fleet's response at ``first_at + k * step_s``."""

    commitment_id: int
    capacity_kw: float
    first_at: datetime
    step_s: float
    signal: list[float]
    """Fractions of the capacity, + = more charging."""
    response: list[float]
    """The following EVSEs' measured power minus their baselines, over the capacity."""


class RegulationResponse(BaseModel):
    """The signal against the fleet's measured response, on the score's grid (every
    ``stride``-th sample when the window holds more than can be drawn)."""

    start: datetime
    end: datetime
    stride: int
    segments: list[ResponseSegment]
    """One per committed clock hour (or its part) within the window, in time order."""
