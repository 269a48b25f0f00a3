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

    @property
    def accepted(self) -> bool:
        return self.status is SendStatus.ACCEPTED

    def __str__(self) -> str:
        return f"{self.status.value}: {self.detail}" if self.detail else self.status.value


ACCEPTED = SendOutcome(SendStatus.ACCEPTED)
OFFLINE = SendOutcome(SendStatus.OFFLINE)


def answered(status: str, reason_code: str | None = None) -> SendOutcome:
    """The outcome of a station's answer ``status`` (with its ``statusInfo.reasonCode``).

    Anything but ``Accepted`` is :attr:`SendStatus.REJECTED`; a status other than
    ``Rejected`` is kept in the detail so that nothing the station said is lost.
    """
    if status == SendStatus.ACCEPTED.value:
        return ACCEPTED
    parts = [] if status == SendStatus.REJECTED.value else [status]
    if reason_code:
        parts.append(reason_code)
    return SendOutcome(SendStatus.REJECTED, ": ".join(parts))
