"""The one place where v2ghub reaches into the ``ocpp`` package's private members.

The package's public API (``ChargePoint.start``, ``route_message``, ``call``, the ``call``
and ``call_result`` modules, ``@on``) cannot answer a malformed frame with a CallError and
keep the connection, drop an answer to no pending request, or count the requests a
simulated station refuses: for those, v2ghub overrides ``route_message`` and uses the
members below. ``tests/test_ocpp_adapter.py`` checks that each still exists with the
signature and behaviour relied on, so an upgrade of ``ocpp`` that changes them fails
there, loudly, not in production. The package carries no type hints (mypy sees ``Any``):
the ``type: ignore`` comments here (subclassing its classes, reaching its private members)
are the only ones of the live aggregator.
"""

from __future__ import annotations

from ocpp import v16, v21, v201
from ocpp.exceptions import InternalError
from ocpp.messages import Call, CallError, CallResult

from v2ghub.store.database import StorageError


class ChargePoint21(v21.ChargePoint):  # type: ignore[misc]  # ocpp has no type hints
    """The ``ocpp`` package's OCPP 2.1 endpoint (either end of a connection)."""


class ChargePoint201(v201.ChargePoint):  # type: ignore[misc]  # ocpp has no type hints
    """The ``ocpp`` package's OCPP 2.0.1 endpoint (either end of a connection)."""


class ChargePoint16(v16.ChargePoint):  # type: ignore[misc]  # ocpp has no type hints
    """The ``ocpp`` package's OCPP 1.6J endpoint (either end of a connection)."""


class NotStoredError(InternalError):  # type: ignore[misc]  # ocpp has no type hints
    """The storage cannot take a station's message (full, read-only, failing): an
    InternalError CallError that says so; the station keeps the message and sends it again
    later."""

    def __init__(self, error: StorageError) -> None:
        super().__init__(
            description=f"{error.problem}: the message was not stored; send it again later"
        )
        self.storage_error = error


def handles(endpoint: object, action: str) -> bool:
    """Whether ``endpoint`` has an ``@on`` handler for ``action`` (its ``route_map``)."""
    return action in endpoint.route_map  # type: ignore[attr-defined]


async def handle_call(endpoint: object, message: Call) -> None:
    """Validate ``message`` against the schema, run its ``@on`` handler and send the answer
    (``ChargePoint._handle_call``).

    Raises the ``OCPPError`` of a payload that breaks the schema; an error in the handler
    is sent to the peer as a CallError by the package itself.
    """
    await endpoint._handle_call(message)  # type: ignore[attr-defined]


def deliver_answer(endpoint: object, message: CallResult | CallError) -> None:
    """Hand an answer to the pending ``call()`` waiting for it (``_response_queue``)."""
    endpoint._response_queue.put_nowait(message)  # type: ignore[attr-defined]


async def send_frame(endpoint: object, frame: str) -> None:
    """Send one OCPP-J frame over the endpoint's connection (``ChargePoint._send``)."""
    await endpoint._send(frame)  # type: ignore[attr-defined]
