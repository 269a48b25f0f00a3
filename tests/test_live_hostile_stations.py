"""Hostile clients of the OCPP server: floods of bad passwords, and a station with valid
credentials that sends too much. Behaviour only (limits applied, real stations still
served); how long a connect takes under a flood is measured in
``benchmarks/bench_password_flood.py``."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from v2ghub.cli import build_parser
from v2ghub.errors import InputError
from v2ghub.live import password_checks
from v2ghub.live.clock import ScaledClock
from v2ghub.live.commands import serve_settings
from v2ghub.live.password_checks import FairSlots
from v2ghub.live.security import basic_header, hash_password, verify_password
from v2ghub.live.server import CsmsServer, ServerSettings
from v2ghub.live.write_limits import STATION_WRITES_BURST, TokenBuckets
from v2ghub.store.records import EventKind
from v2ghub.store.repository import Store

from .test_live_server import NOON, PASSWORD, _connect

ATTACKER = "127.0.0.2"
"""Another loopback address: the flood does not come from where the real station is."""
BOOT = {"reason": "PowerUp", "chargingStation": {"model": "X1", "vendorName": "Acme"}}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(data_dir=tmp_path / "data") as opened:
        opened.add_station("CP-1", site_id="s1", password_hash=hash_password(PASSWORD))
        yield opened


def settings(tmp_path: Path, **limits: Any) -> ServerSettings:
    return ServerSettings(host="127.0.0.1", port=0, tls_folder=tmp_path / "tls", **limits)


@pytest.fixture
async def server(store: Store, tmp_path: Path) -> AsyncIterator[CsmsServer]:
    async with CsmsServer(store, settings(tmp_path), clock=ScaledClock(NOON)) as running:
        yield running


async def attempt(
    server: CsmsServer, password: str, *, source: str = "127.0.0.1", boot: bool = False
) -> int:
    """One handshake as CP-1 from ``source``: 101 when accepted (then, with ``boot``, a
    BootNotification that must be accepted), else the refusal's HTTP status."""
    try:
        async with connect(
            f"{server.url}/ocpp/CP-1",
            subprotocols=[Subprotocol("ocpp2.1")],
            additional_headers={"Authorization": basic_header("CP-1", password)},
            local_addr=(source, 0),
            open_timeout=30,
        ) as ws:
            if boot:
                await ws.send(json.dumps([2, "b", "BootNotification", BOOT]))
                answer = json.loads(await asyncio.wait_for(ws.recv(), 30))
                assert answer[2]["status"] == "Accepted"
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


async def test_a_flood_of_bad_passwords_costs_its_address_budget_and_no_more(
    server: CsmsServer, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="v2ghub")
    flood = [
        asyncio.create_task(attempt(server, "wrong-password-wrong-password", source=ATTACKER))
        for _ in range(120)
    ]
    real = await attempt(server, PASSWORD, boot=True)
    statuses = await asyncio.gather(*flood)

    assert real == 101
    budget = server.settings.failed_attempts_burst
    assert budget is not None
    # Each failed attempt of the address took a try; once they were spent the rest were
    # refused at once, without a hash.
    assert statuses.count(401) == budget
    assert statuses.count(429) == 120 - budget
    assert server.passwords.hashed == budget + 1  # and the real station's
    assert server.passwords.refused_unchecked == 120 - budget
    # One line a minute per kind of refusal, not one per attempt; the same in the event log.
    refusals = [r for r in caplog.records if "connection refused" in r.getMessage()]
    assert len(refusals) == 2
    assert {e.detail for e in store.events(kind=EventKind.CONNECTION_REFUSED)} == {
        "wrong station id or password",
        f"too many failed password attempts from '{ATTACKER}': refused unchecked",
    }
    # The real station's address was never limited.
    assert await attempt(server, "wrong-password-wrong-password") == 401


async def test_an_address_refused_for_failures_is_told_when_to_come_back(
    store: Store, tmp_path: Path
) -> None:
    limits = settings(tmp_path, failed_attempts_burst=2)
    async with CsmsServer(store, limits, clock=ScaledClock(NOON)) as server:
        assert [await attempt(server, "wrong-password-wrong-password") for _ in range(2)] == [
            401,
            401,
        ]
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                f"{server.url}/ocpp/CP-1",
                subprotocols=[Subprotocol("ocpp2.1")],
                additional_headers={"Authorization": basic_header("CP-1", PASSWORD)},
            ):
                pass
        assert refused.value.response.status_code == 429
        assert refused.value.response.headers["Retry-After"] == "60"


async def test_stations_that_log_in_do_not_spend_their_address_budget(
    store: Store, tmp_path: Path
) -> None:
    # A site's router: many stations, one address. Only failures count against it.
    limits = settings(tmp_path, failed_attempts_burst=2)
    async with CsmsServer(store, limits, clock=ScaledClock(NOON)) as server:
        assert [await attempt(server, PASSWORD) for _ in range(6)] == [101] * 6
        assert await attempt(server, "wrong-password-wrong-password") == 401
        assert await attempt(server, PASSWORD) == 101


async def test_password_checks_run_at_most_as_many_at_once_as_configured(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def counted(password: str, stored_hash: str) -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.02)  # long enough for the others to start, were they allowed
            return verify_password(password, stored_hash)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(password_checks, "verify_password", counted)
    limits = settings(tmp_path, password_checks_at_once=2, failed_attempts_burst=None)
    async with CsmsServer(store, limits, clock=ScaledClock(NOON)) as server:
        statuses = await asyncio.gather(
            *(attempt(server, "wrong-password-wrong-password") for _ in range(12))
        )
    assert statuses == [401] * 12
    assert most == 2


async def test_a_station_that_boots_in_a_loop_cannot_grow_the_event_log(
    server: CsmsServer, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="v2ghub")
    async with _connect(server, "CP-1") as ws:
        for n in range(150):
            await ws.send(json.dumps([2, f"b{n}", "BootNotification", BOOT]))
            answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert answer[2]["status"] == "Accepted"  # still served: only the record thins
        for n in range(50):  # and frames that each get a CallError
            await ws.send(json.dumps([2, f"x{n}", "BootNotification", {"reason": 7}]))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))[0] == 4

    written = [e for e in store.events(limit=1_000) if e.station_id == "CP-1"]
    # The budget, and what came back to it while the test ran (10 a minute).
    assert STATION_WRITES_BURST - 5 <= len(written) <= STATION_WRITES_BURST + 1
    lines = [r.getMessage() for r in caplog.records if "CP-1" in r.getMessage()]
    limited = [line for line in lines if "events and log lines a minute" in line]
    assert limited == [
        "CP-1: more than 10 events and log lines a minute: further ones of this station "
        "are not written until it slows down"
    ]
    assert len(lines) <= STATION_WRITES_BURST + 2


def test_a_bucket_gives_its_burst_then_its_rate() -> None:
    now_s = [0.0]
    buckets = TokenBuckets(per_minute=6.0, burst=3, monotonic=lambda: now_s[0])
    assert [buckets.take("a") for _ in range(4)] == [True, True, True, False]
    assert buckets.take("b")  # another key has its own
    assert buckets.newly_limited("a")
    assert not buckets.newly_limited("a")  # said once
    now_s[0] = 9.0  # 0.9 of a token back
    assert not buckets.take("a")
    now_s[0] = 10.0
    assert buckets.take("a")
    assert not buckets.take("a")
    buckets.give_back("a")
    assert buckets.take("a")
    now_s[0] = 100.0  # full again: the next limit is news again
    assert buckets.take("a")
    assert buckets.newly_limited("a")


@given(
    steps=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=30.0), st.integers(0, 5)), max_size=60
    ),
    per_minute=st.floats(min_value=0.5, max_value=120.0),
    burst=st.integers(1, 40),
)
def test_a_bucket_never_grants_more_than_its_burst_and_rate(
    steps: list[tuple[float, int]], per_minute: float, burst: int
) -> None:
    now_s = [0.0]
    buckets = TokenBuckets(per_minute=per_minute, burst=burst, monotonic=lambda: now_s[0])
    granted = 0
    for wait_s, takes in steps:
        now_s[0] += wait_s
        granted += sum(buckets.take("key") for _ in range(takes))
        assert granted <= burst + per_minute * now_s[0] / 60.0 + 1e-9


async def test_waiting_checks_are_served_by_need_not_by_arrival() -> None:
    slots = FairSlots(1)
    await slots.acquire((1.0, 0.0))  # a check running: the others wait
    served: list[str] = []

    async def check(name: str, priority: tuple[float, float]) -> None:
        await slots.acquire(priority)
        served.append(name)
        slots.release()

    flood = [asyncio.create_task(check(f"flood-{n}", (1.0, float(n)))) for n in range(3)]
    gone = asyncio.create_task(check("gone", (0.0, 0.0)))
    known = asyncio.create_task(check("known", (0.0, 0.0)))
    fresh = asyncio.create_task(check("fresh", (1.0, 0.0)))
    await asyncio.sleep(0)
    gone.cancel()  # a client that hung up while waiting gives up its turn
    await asyncio.sleep(0)
    slots.release()
    await asyncio.gather(*flood, known, fresh)
    # The address a station logged in from first, then the fewest attempts under way,
    # then arrival.
    assert served == ["known", "flood-0", "fresh", "flood-1", "flood-2"]


def test_serve_takes_the_address_budget_from_its_options() -> None:
    parser = build_parser()
    default = serve_settings(parser.parse_args(["serve"]))
    assert default.failed_attempts_burst == 20
    assert default.password_checks_at_once is not None
    behind_proxy = serve_settings(
        parser.parse_args(["serve", "--failed-attempts-per-address", "500"])
    )
    assert (behind_proxy.failed_attempts_burst, behind_proxy.failed_attempts_per_minute) == (
        500,
        500.0,
    )
    unlimited = serve_settings(parser.parse_args(["serve", "--failed-attempts-per-address", "0"]))
    assert unlimited.failed_attempts_burst is None
    with pytest.raises(InputError, match=r"--failed-attempts-per-address must be >= 0, got -1"):
        serve_settings(parser.parse_args(["serve", "--failed-attempts-per-address", "-1"]))
