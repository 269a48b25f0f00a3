"""The web API's JSON bodies (pydantic): units in field names, times ISO 8601 with their
offset (the city's local time), money as exact decimal strings of CNY.

Power follows the project's sign: + charging (the fleet draws from the grid),
- discharging (it gives back).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer

Money = Annotated[
    Decimal, PlainSerializer(lambda value: f"{value:.2f}", return_type=str, when_used="json")
]
"""CNY, exact to the fen, as a decimal string in JSON ("12.30")."""


class Body(BaseModel):
    """A request body: unknown fields are refused (422 naming them)."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """Every refusal: what was wrong, and the field when one was."""

    detail: str
    field: str | None = None


# Fleet now ---------------------------------------------------------------------------------


class SiteNow(BaseModel):
    site_id: str
    plugged_vehicles: int
    measured_kw: float | None
    """Sum of the site's latest metered powers (None: no reading yet)."""
    planned_kw: float | None
    """What the setpoints in force add up to (None: the loop has not planned yet)."""
    import_limit_kw: float | None
    """None: no limit."""
    export_limit_kw: float | None
    plan_ahead_kw: list[float]
    """The site's planned net power per plan step from the last plan's instant (empty
    before the first plan); ``FleetNow.plan_step_s`` long each."""


class EnvelopeNow(BaseModel):
    """How far the fleet can move its power from the plan and hold it, per duration."""

    at: datetime
    planned_kw: float
    plugged_vehicles: int
    durations_h: list[float]
    raise_kw: list[float]
    """More charging / less discharging (the grid's regulation down)."""
    lower_kw: list[float]
    """Less charging / more discharging (the grid's regulation up)."""


class SetpointNow(BaseModel):
    station_id: str
    evse_id: int
    transaction_id: str | None
    sent_at: datetime
    setpoint_kw: float
    discharge_limit_kw: float
    planner: str
    status: str
    """The station's last answer: Accepted, Rejected: reason, Offline, ..."""
    fallback_reason: str | None


class VehicleNow(BaseModel):
    station_id: str
    evse_id: int
    transaction_id: str
    site_id: str
    energy_kwh: float
    target_energy_kwh: float
    energy_max_kwh: float
    soc: float
    """Stored energy over the usable maximum, 0-1."""
    target_soc: float
    planned_kw: float
    departure_at: datetime


class GridEventOut(BaseModel):
    event_id: int
    site_id: str
    kind: Literal["limit", "demand-response"]
    import_limit_kw: float | None
    export_limit_kw: float | None
    requested_reduction_kw: float | None
    starts_at: datetime
    ends_at: datetime | None
    reason: str
    source: str
    external_id: str | None
    recorded_at: datetime
    cancelled_at: datetime | None
    cancelled_by: str | None
    in_force: bool


class FleetNow(BaseModel):
    at: datetime
    plugged_vehicles: int
    measured_kw: float | None
    planned_kw: float | None
    sites: list[SiteNow]
    envelope: EnvelopeNow | None
    last_plan_at: datetime | None
    planner: str | None
    fallback_reason: str | None
    setpoints: list[SetpointNow] = []
    """Empty for the grid role (it sees totals only); not in the live feed's events."""
    vehicles: list[VehicleNow] = []
    """Empty for the grid role; in the live feed, only when the loop planned again."""
    grid_events: list[GridEventOut]
    """Grid events in force now."""
    plan_step_s: int | None
    """Length of a step of ``SiteNow.plan_ahead_kw``."""


# Grid events -------------------------------------------------------------------------------


class SiteLimitIn(Body):
    """A site limit: the site's connection limits from ``starts_at`` (default now) until
    ``ends_at`` (default: until replaced). Give at least one limit; null is no limit."""

    site_id: str = Field(min_length=1, max_length=64)
    import_limit_kw: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    export_limit_kw: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    reason: str = Field(default="web API", max_length=500)
    external_id: str | None = Field(default=None, max_length=128)


class NeedsIn(Body):
    """What an owner (or the operator for them) says of a plugged vehicle that cannot say it
    itself (an OCPP 1.6 or 2.0.1 one): when it leaves and what it needs. The loop plans with
    it from its next instant, as with a vehicle's own NotifyEVChargingNeeds."""

    departure_at: AwareDatetime
    target_energy_kwh: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Energy to be stored at departure, kWh."""
    battery_kwh: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    soc: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    """State of charge now, 0-1 (a meter value's SoC, when there is one, is newer)."""
    min_energy_kwh: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Energy that must stay in the battery at all times, kWh."""


class DemandResponseIn(Body):
    """A demand-response request: the site takes ``reduce_kw`` less than it is planned to
    now, from ``starts_at`` (default now) until ``ends_at`` (required). It becomes the
    site's import limit ``max(0, planned now - reduce_kw)`` for that while."""

    site_id: str = Field(min_length=1, max_length=64)
    reduce_kw: float = Field(gt=0, allow_inf_nan=False)
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime
    reason: str = Field(default="demand response", max_length=500)
    external_id: str | None = Field(default=None, max_length=128)


# Stations and sessions ---------------------------------------------------------------------


class EvseOut(BaseModel):
    evse_id: int
    status: str
    updated_at: datetime


class StationOut(BaseModel):
    station_id: str
    site_id: str
    connected: bool
    ocpp_version: str | None
    v2x_allowed: bool
    max_power_kw: float
    vendor: str | None
    model: str | None
    last_boot_at: datetime | None
    evses: list[EvseOut]


class SessionOut(BaseModel):
    station_id: str
    evse_id: int
    transaction_id: str
    site_id: str
    owner_id: str | None
    started_at: datetime
    ended_at: datetime | None
    energy_asked_kwh: float | None
    """What the vehicle asked to reach (its needs' target less its energy then), if told."""
    delivered_kwh: float
    discharged_kwh: float
    soc: float | None
    owed_cny: Money | None
    """Net to the owner from the settlement ledger (+ received, - paid); None until the
    session's day is settled (``v2ghub settle --live``)."""


# History -----------------------------------------------------------------------------------


class SiteHistory(BaseModel):
    site_id: str
    measured_kw: list[float | None]
    """Mean metered power per interval (None: no reading in it)."""
    planned_kw: list[float | None]
    """Mean of the setpoints in force over the interval (None: nothing recorded)."""


class History(BaseModel):
    start: datetime
    end: datetime
    interval_s: int
    times: list[datetime]
    """The start of each interval."""
    sites: list[SiteHistory]


# Money -------------------------------------------------------------------------------------


class StreamMoney(BaseModel):
    stream: str
    """A ledger stream: charging, discharge, wear, ..."""
    amount_cny: Money
    """Net to the parties the caller sees (+ received, - paid)."""


class Today(BaseModel):
    """The city's local day so far, of the sites (or the owner) the caller sees."""

    day: str
    charged_kwh: float
    discharged_kwh: float
    sessions: int
    settled: bool
    """Whether the ledger holds this day (``v2ghub settle --live``); money is empty if not."""
    money: list[StreamMoney]


class StreamTotalOut(BaseModel):
    party: str
    stream: str
    received_cny: Money
    paid_cny: Money


class StatementLineOut(BaseModel):
    period: str
    session_id: str
    kind: str
    party: str
    counterparty: str
    stream: str
    energy_kwh: str
    rate_cny: str
    amount_cny: Money
    cause: str


class StatementOut(BaseModel):
    scope: str
    party: str | None
    periods: list[str]
    totals: list[StreamTotalOut]
    net_cny: dict[str, Money]
    lines: list[StatementLineOut]


# Health ------------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    store_reachable: bool
    control_loop_alive: bool
    last_plan_age_s: float | None
    connected_stations: int
