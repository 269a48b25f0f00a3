"""A real OpenADR VTN (openleadr's server) on loopback for the VEN's tests, and helpers
to dispatch it and wait on it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from openleadr import OpenADRServer

RESOURCE_ID = "r-depot"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Vtn:
    """A test VTN: the openleadr server, the VEN names that registered, the opt answers
    and the usage reported (time, kW)."""

    server: Any
    url: str
    ven_id: str
    registered: list[str] = field(default_factory=list)
    opts: dict[str, str] = field(default_factory=dict)
    usage_kw: list[tuple[datetime, float]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def running_vtn(*, ven_id: str, ven_name: str) -> AsyncIterator[Vtn]:
    """A plain-HTTP VTN on loopback that knows one VEN, polled every second."""
    port = free_port()
    known = {"ven_id": ven_id, "ven_name": ven_name, "registration_id": "reg"}
    server = OpenADRServer(
        vtn_id="TEST-VTN",
        http_port=port,
        http_host="127.0.0.1",
        requested_poll_freq=timedelta(seconds=1),
        show_fingerprint=False,
        ven_lookup=lambda ven_id: known,  # openleadr passes ven_id by name
    )
    vtn = Vtn(server, f"http://127.0.0.1:{port}/OpenADR2/Simple/2.0b", ven_id)

    def registration(payload: dict[str, Any]) -> tuple[str, str]:
        vtn.registered.append(str(payload.get("ven_name")))
        return ven_id, "reg"

    async def register_report(  # noqa: PLR0917 - openleadr's handler signature
        ven_id: str,
        resource_id: str,
        measurement: str,
        unit: str,
        scale: str,
        min_sampling_interval: timedelta,
        max_sampling_interval: timedelta,
    ) -> tuple[Callable[..., Awaitable[None]], timedelta] | None:
        if measurement != "RealPower":
            return None

        async def received(data: list[tuple[datetime, float]]) -> None:
            vtn.usage_kw.extend(data)

        return received, timedelta(seconds=1)

    server.add_handler("on_create_party_registration", registration)
    server.add_handler("on_register_report", register_report)
    await server.run()
    try:
        yield vtn
    finally:
        with contextlib.suppress(Exception):
            await server.stop()


def dispatch(vtn: Vtn, *, target_kw: float, minutes: float = 10.0) -> str:
    """Add a LOAD_DISPATCH event for the depot's resource starting now; its id."""

    def answered(ven_id: str, event_id: str, opt_type: str) -> None:
        vtn.opts[event_id] = opt_type

    event_id: str = vtn.server.add_event(
        ven_id=vtn.ven_id,
        signal_name="LOAD_DISPATCH",
        signal_type="setpoint",
        intervals=[
            {
                "dtstart": datetime.now(UTC),
                "duration": timedelta(minutes=minutes),
                "signal_payload": target_kw,
            }
        ],
        targets=[{"resource_id": RESOURCE_ID}],
        callback=answered,
    )
    return event_id


async def until(check: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    """Wait until ``check()`` holds (a deadline for a hang, not a timing assert)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}")
        await asyncio.sleep(0.1)
