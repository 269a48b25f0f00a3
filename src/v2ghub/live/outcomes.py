"""What became of a setpoint sent to a station: :class:`SendOutcome`.

The outcome's text (``str(outcome)``) is what the store keeps as a setpoint's status and
what logs and ``v2ghub station`` show: ``Accepted``, ``Rejected: <reason code>``,
``CallError: <code>: <description>``, ``Timeout: ...``, ``Offline``, ``NotSent: ...``,
``Error: ...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SendStatus(StrEnum):
    """How a request to a station ended."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    """The station answered, and not ``Accepted``."""
    CALL_ERROR = "CallError"
    """The station answered with an OCPP CallError."""
    TIMEOUT = "Timeout"
    """No answer in time."""
    OFFLINE = "Offline"
    """The station is not connected (or went away while we waited)."""
    NOT_SENT = "NotSent"
    """Nothing was sent: the command does not fit the station."""
    ERROR = "Error"
    """Sending failed in our own code (the detail names the exception)."""


@dataclass(frozen=True)
class SendOutcome:
    """A request's :class:`SendStatus` and what more there is to say (may be empty)."""

    status: SendStatus
    detail: str = ""
    station_status: str | None = None
    """The status the station answered with, when it is not one of ours (e.g.
    ``NotSupported``): the text shows it in place of ``Rejected``, as the station said it."""

    @property
    def accepted(self) -> bool:
        return self.status is SendStatus.ACCEPTED

    def __str__(self) -> str:
        head = self.station_status or self.status.value
        return f"{head}: {self.detail}" if self.detail else head


ACCEPTED = SendOutcome(SendStatus.ACCEPTED)
OFFLINE = SendOutcome(SendStatus.OFFLINE)


def answered(status: str, reason_code: str | None = None) -> SendOutcome:
    """The outcome of a station's answer ``status`` (with its ``statusInfo.reasonCode``).

    Anything but ``Accepted`` is :attr:`SendStatus.REJECTED`; a status other than
    ``Rejected`` is kept as the station's own (its text reads ``NotSupported: reason``,
    as it did before the outcome was typed), so nothing the station said is lost.
    """
    if status == SendStatus.ACCEPTED.value:
        return ACCEPTED
    own = None if status == SendStatus.REJECTED.value else status
    return SendOutcome(SendStatus.REJECTED, reason_code or "", station_status=own)
