"""The JSON bodies of ``/api/v1/grid/openadr`` (pydantic): the OpenADR VEN's view of each
VTN event, times ISO 8601 with their offset (the city's local time)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel


class VtnStatus(StrEnum):
    """A VTN event's status as OpenADR 2.0b names it."""

    NONE = "none"
    FAR = "far"
    NEAR = "near"
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class VtnEventOut(BaseModel):
    """One VTN event as the VEN last saw it, and what it became in the store."""

    source: str
    """The VEN that received it: ``openadr:VEN``."""
    vtn_event_id: str
    modification_number: int
    signal_name: str
    """The event's signal names, comma-separated (``none``: no signal)."""
    site_ids: list[str]
    """Our sites it names (an operator sees its own only)."""
    starts_at: datetime
    ends_at: datetime
    status: str
    """As the VTN last sent it: ``far``, ``near``, ``active``, ``completed``, ``cancelled``."""
    opt_state: str
    """``optIn`` or ``optOut``: the VEN's answer."""
    opt_reason: str
    """Why: the flexibility notes of an opt-in, what could not be followed for an opt-out."""
    received_at: datetime
    updated_at: datetime
    grid_event_ids: list[int]
    """The grid events (``/api/v1/grid-events``) its latest modification became: an import
    limit per site and interval (none when opted out of or cancelled)."""
    price_event_ids: list[int]
    """The price events its latest modification became (a price per site and interval)."""
