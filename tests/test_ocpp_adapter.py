"""The ``ocpp`` package's private members that v2ghub relies on (through
:mod:`v2ghub.live.ocpp_adapter`) still exist and behave as relied on: an upgrade of the
package that changes them fails here, loudly."""

from __future__ import annotations

import asyncio
import inspect
import json

import pytest
from ocpp.charge_point import ChargePoint
from ocpp.exceptions import FormatViolationError
from ocpp.messages import Call, CallResult, unpack
from ocpp.routing import on
from ocpp.v21 import call, call_result

from v2ghub.live.ocpp_adapter import (
    ChargePoint21,
    ChargePoint201,
    deliver_answer,
    handle_call,
    handles,
    send_frame,
)


class FakeConnection:
    """Records the frames an endpoint sends."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, frame: str) -> None:
        self.sent.append(frame)

    async def recv(self) -> str:
        await asyncio.sleep(3600)
        return ""


def on_heartbeat(self: object, **_: object) -> object:
    return call_result.Heartbeat(current_time="2026-07-01T00:00:00Z")


class Station(ChargePoint21):
    # ``@on`` spelled as a call: the decorator carries no type hints.
    on_heartbeat = on("Heartbeat")(on_heartbeat)  # the name must match (create_route_map)


def test_the_private_members_have_the_signatures_relied_on() -> None:
    assert list(inspect.signature(ChargePoint._handle_call).parameters) == ["self", "msg"]
    assert inspect.iscoroutinefunction(ChargePoint._handle_call)
    assert list(inspect.signature(ChargePoint._send).parameters) == ["self", "message"]
    assert inspect.iscoroutinefunction(ChargePoint._send)
    assert list(inspect.signature(ChargePoint.call).parameters) == [
        "self",
        "payload",
        "suppress",
        "unique_id",
        "skip_schema_validation",
    ]
    assert list(inspect.signature(ChargePoint.route_message).parameters) == ["self", "raw_msg"]
    endpoint = ChargePoint201("CP-1", FakeConnection())
    assert isinstance(endpoint._response_queue, asyncio.Queue)
    assert isinstance(endpoint.route_map, dict)


async def test_handles_reads_the_route_map() -> None:
    station = Station("CP-1", FakeConnection())
    assert handles(station, "Heartbeat")
    assert not handles(station, "BootNotification")


async def test_handle_call_answers_through_the_connection() -> None:
    connection = FakeConnection()
    station = Station("CP-1", connection)
    await handle_call(station, Call(unique_id="42", action="Heartbeat", payload={}))
    [frame] = connection.sent
    assert json.loads(frame) == [3, "42", {"currentTime": "2026-07-01T00:00:00Z"}]


async def test_handle_call_raises_a_schema_violation() -> None:
    station = Station("CP-1", FakeConnection())
    with pytest.raises(FormatViolationError):
        await handle_call(station, Call(unique_id="7", action="Heartbeat", payload={"x": 1}))


async def test_send_frame_sends_text_as_is() -> None:
    connection = FakeConnection()
    await send_frame(Station("CP-1", connection), '[2,"1","Heartbeat",{}]')
    assert connection.sent == ['[2,"1","Heartbeat",{}]']


async def test_deliver_answer_completes_a_pending_call() -> None:
    connection = FakeConnection()
    station = Station("CP-1", connection)
    pending = asyncio.create_task(station.call(call.Heartbeat(), unique_id="u-1"))
    while not connection.sent:
        await asyncio.sleep(0.001)
    answer = unpack(json.dumps([3, "u-1", {"currentTime": "2026-07-01T00:00:00Z"}]))
    assert isinstance(answer, CallResult)
    deliver_answer(station, answer)
    result = await asyncio.wait_for(pending, 1.0)
    assert result.current_time == "2026-07-01T00:00:00Z"
