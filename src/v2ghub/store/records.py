"""The records that cross the store's boundary: what the OCPP server writes, what the
control loop reads, what settlement of live meter data reads.

Plain frozen dataclasses, one per row; times are timezone-aware UTC ``datetime``; energy
registers are integer Wh (cumulative, as a charger's meter counts them); power is kW with
the project's sign (+ charging, - discharging).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class OcppVersion(StrEnum):
    """The OCPP versions the server speaks (the websocket subprotocol names)."""

    V21 = "ocpp2.1"
    V201 = "ocpp2.0.1"
    V16 = "ocpp1.6"


@dataclass(frozen=True)
class Station:
    """A registered charging station (one websocket connection, one or more EVSEs)."""

    station_id: str
    site_id: str
    password_hash: str
    v2x_allowed: bool
    """Discharge may be commanded. Stations on OCPP 2.0.1 are charge-only unless configured
    otherwise (their limits are never negative)."""
    max_power_kw: float
    """What one EVSE of the station can charge or discharge at most (kW, positive)."""
    ocpp_version: OcppVersion | None = None
    """The version of the station's last connection (``None`` before it first connects)."""
    vendor: str | None = None
    model: str | None = None
    last_boot_at: datetime | None = None


@dataclass(frozen=True)
class MeterSample:
    """One meter reading of a transaction (from TransactionEvent or MeterValues)."""

    station_id: str
    transaction_id: str
    seq_no: int
    """The transaction event's sequence number; a replay with the same (station,
    transaction, seq_no) is the same reading and is stored once."""
    measured_at: datetime
    import_register_wh: int
    """Energy.Active.Import.Register: energy the EVSE has delivered to the vehicle."""
    export_register_wh: int
    """Energy.Active.Export.Register: energy the vehicle has given back."""
    power_kw: float | None = None
    soc: float | None = None
    """State of charge, 0-1."""


@dataclass(frozen=True)
class StatusReport:
    """An EVSE's status as a StatusNotification said it."""

    station_id: str
    evse_id: int
    status: str
    at: datetime


@dataclass(frozen=True)
class EvNeeds:
    """A vehicle's charging needs (NotifyEVChargingNeeds), latest per EVSE wins."""

    station_id: str
    evse_id: int
    received_at: datetime
    departure_at: datetime | None
    battery_kwh: float | None
    soc: float | None
    """State of charge when the needs were sent, 0-1."""
    target_energy_kwh: float | None
    """Energy the owner asks to be stored at departure (absolute, kWh)."""
    min_energy_kwh: float | None
    """Energy that must stay in the battery at all times (the owner's floor, kWh)."""
    max_charge_kw: float | None
    max_discharge_kw: float | None
    """0 or ``None``: the vehicle does not offer discharge."""
    control_mode: str | None = None
    transaction_id: str | None = None
    min_charge_kw: float | None = None
    """The least power the vehicle charges at when it charges (2.1 ``minChargePower``)."""
    min_discharge_kw: float | None = None
    """The least power it discharges at when it discharges (2.1 ``minDischargePower``)."""


@dataclass(frozen=True)
class PluggedSession:
    """An open transaction as the control loop sees it: everything a ``Problem`` row needs."""

    station_id: str
    evse_id: int
    transaction_id: str
    site_id: str
    ocpp_version: OcppVersion
    started_at: datetime
    departure_at: datetime | None
    battery_kwh: float | None
    energy_kwh: float | None
    """Stored energy now (from the last SoC reading or the needs, plus metered energy
    since); ``None`` when nothing told it."""
    target_energy_kwh: float | None
    min_energy_kwh: float | None
    max_charge_kw: float
    max_discharge_kw: float
    """0 unless both the station and the vehicle allow discharge."""
    import_register_wh: int
    export_register_wh: int
    last_meter_at: datetime | None
    min_charge_kw: float = 0.0
    """Below this a charging setpoint is not followed: it is sent as 0 instead."""
    min_discharge_kw: float = 0.0
    """Below this a discharging setpoint is not followed: it is sent as 0 instead."""
    control_mode: str | None = None
    """The vehicle's 2.1 ``controlMode``: ``ScheduledControl`` gets the whole plan as a
    schedule, anything else a dynamic setpoint."""
    soc: float | None = None
    """The latest metered state of charge (0-1), if a meter value carried one: what is
    known of a vehicle that sent no needs (an OCPP 1.6 one)."""


@dataclass(frozen=True)
class Setpoint:
    """A charging profile sent to an EVSE, and how the station answered."""

    station_id: str
    evse_id: int
    transaction_id: str | None
    sent_at: datetime
    setpoint_kw: float
    """Signed: + charge, - discharge (a 2.1 CentralSetpoint; a 2.0.1 limit is >= 0)."""
    discharge_limit_kw: float
    planner: str
    status: str
    """The station's answer: Accepted, Rejected, or CallError/Timeout with the reason."""
    fallback_reason: str | None = None


class EventKind(StrEnum):
    """What an :class:`Event` of the log is about; the value is what the database keeps and
    ``v2ghub station`` shows."""

    BOOT = "boot"
    """A station sent a BootNotification (detail: its reason)."""
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    CONNECTION_REFUSED = "connection refused"
    """A websocket handshake was refused (unknown id, wrong password, already connected)."""
    STALE_CONNECTION = "stale connection"
    """A station's old connection stopped answering pings and was closed."""
    REFUSED = "refused"
    """A TransactionEvent the store refused (registers going backwards, a bad field)."""
    PLANNER_FALLBACK = "planner-fallback"
    """The control loop sent the safe charge-only plan (detail: why)."""
    ASSUMED = "assumed"
    """The control loop assumed defaults for what the store does not know."""
    SETPOINT_NOT_ACCEPTED = "setpoint-not-accepted"
    CONTROL_FAILED = "control-failed"
    API_WRITE = "api-write"
    """A change made through the web API (detail: what; ``actor``: the token's name)."""
    OPENADR = "openadr"
    """The OpenADR VEN registered, lost its VTN, or opted in to an event (detail: what)."""
    OPENADR_OPT_OUT = "openadr-opt-out"
    """The OpenADR VEN opted out of a VTN event (detail: the event and why)."""


@dataclass(frozen=True)
class Event:
    """Something worth keeping in the log: a boot, a refused connection, a planner failure."""

    at: datetime
    kind: EventKind
    detail: str
    station_id: str | None = None
    actor: str | None = None
    """Who made the change through the web API (a token's name); None for the server."""


@dataclass(frozen=True)
class TransactionEventRecord:
    """A TransactionEvent as the store takes it.

    ``evse_id`` may be ``None`` after a transaction's first event (OCPP names the EVSE
    once); ``samples`` are the event's register readings.
    """

    station_id: str
    evse_id: int | None
    transaction_id: str
    event_type: str
    """``Started``, ``Updated`` or ``Ended``."""
    seq_no: int
    at: datetime
    trigger_reason: str
    samples: Sequence[MeterSample] = ()
    id_token: str | None = None
    stopped_reason: str | None = None
    offline: bool = False


class StoredStatus(StrEnum):
    """What became of a TransactionEvent written to the store."""

    STORED = "stored"
    REPLAY = "replay"
    """Already stored (same station, transaction and ``seq_no``): nothing changed."""
    REFUSED = "refused"
    """Refused (``reason`` says why): nothing of the event was stored."""


@dataclass(frozen=True)
class StoredEvent:
    """The store's answer to one TransactionEvent of a group commit."""

    status: StoredStatus
    reason: str = ""
    """Why it was refused (the check's message); empty otherwise."""
