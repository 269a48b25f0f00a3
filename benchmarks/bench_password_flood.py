"""A real station's connect while a flood of bad passwords hits the OCPP server.

The server (in this process, on loopback, its SQLite store in a temporary folder) has one
registered station. Each round starts ``--flood`` handshakes with a wrong password at
once, then the real station connects with its right one and sends a BootNotification;
the time from its connect to the boot's answer is measured. Each round's flood comes from
a fresh loopback address (127.0.0.x; the real station is 127.0.0.1), so an address's
budget of failed attempts starts full every round.

Three servers in the same run:

- **unbounded**: every password check at once, in the default thread pool, no limit per
  address (how the server checked passwords before the limits);
- **bounded**: the server's defaults: checks one per core in threads of their own, and
  each address refused unchecked once it has spent its budget of failed attempts;
- **spread**: the bounded server against a flood spread over as many addresses as it has
  attempts (one each), so that no address budget applies: what the bound on concurrent
  checks alone does;
- **no check**: the bounded server against as many handshakes that name no station (refused
  before any lookup or hash): what the flood's connections alone cost, the floor.

The baseline is the real station's connect with no flood, on the same server. Printed:
median and worst connect per server, and ratios to the unbounded server.

Run: ``python benchmarks/bench_password_flood.py [--flood 200] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from v2ghub.live.clock import SystemClock
from v2ghub.live.security import basic_header, hash_password
from v2ghub.live.server import CsmsServer, ServerSettings
from v2ghub.store.repository import Store

PASSWORD = "bench-password-0123456789-abcdef"
WRONG = "wrong-password-wrong-password-00"
STATION = "CP-1"
BOOT = {"reason": "PowerUp", "chargingStation": {"model": "X1", "vendorName": "Acme"}}


@dataclass(frozen=True)
class Result:
    name: str
    quiet_ms: list[float]
    flooded_ms: list[float]
    hashed: int
    refused_unchecked: int


async def _attempt(
    url: str, password: str, source: str, *, boot: bool, path: str = f"/ocpp/{STATION}"
) -> float:
    """One handshake as the station from ``source``; ms to the boot's answer (or refusal)."""
    began = time.perf_counter()
    try:
        async with connect(
            f"{url}{path}",
            subprotocols=[Subprotocol("ocpp2.1")],
            additional_headers={"Authorization": basic_header(STATION, password)},
            local_addr=(source, 0),
            open_timeout=60,
            compression=None,
        ) as ws:
            if boot:
                await ws.send(json.dumps([2, "b", "BootNotification", BOOT]))
                answer = json.loads(await ws.recv())
                if answer[2]["status"] != "Accepted":
                    raise RuntimeError(f"boot not accepted: {answer}")
    except InvalidStatus:
        if boot:
            raise
    return (time.perf_counter() - began) * 1000


async def _flood_attempts(url: str, sources: list[str], path: str, ready: EventType) -> None:
    attackers = [
        asyncio.create_task(_attempt(url, WRONG, source, boot=False, path=path))
        for source in sources
    ]
    await asyncio.sleep(0)  # every connect is under way
    ready.set()
    await asyncio.gather(*attackers)


def _flood(url: str, sources: list[str], path: str, ready: EventType) -> None:
    """The attacker: its own process, so that its side of the handshakes does not share
    the server's event loop (it shares the machine's cores, as an attacker on it would)."""
    asyncio.run(_flood_attempts(url, sources, path, ready))


async def _run(
    name: str, store: Store, settings: ServerSettings, *, flood: int, rounds: int
) -> Result:
    spread = name == "spread"
    path = "/" if name == "no check" else f"/ocpp/{STATION}"
    quiet_ms, flooded_ms = [], []
    async with CsmsServer(store, settings, clock=SystemClock()) as server:
        for round_no in range(rounds):
            quiet_ms.append(await _attempt(server.url, PASSWORD, "127.0.0.1", boot=True))
            sources = [
                f"127.1.{k // 250}.{k % 250 + 1}" if spread else f"127.0.0.{round_no + 10}"
                for k in range(round_no * flood, (round_no + 1) * flood)
            ]
            processes = multiprocessing.get_context("spawn")
            ready = processes.Event()
            attacker = processes.Process(target=_flood, args=(server.url, sources, path, ready))
            attacker.start()
            await asyncio.to_thread(ready.wait)
            await asyncio.sleep(0.05)  # the flood's handshakes reach the server
            flooded_ms.append(await _attempt(server.url, PASSWORD, "127.0.0.1", boot=True))
            await asyncio.to_thread(attacker.join)
        return Result(
            name,
            quiet_ms,
            flooded_ms,
            server.passwords.hashed,
            server.passwords.refused_unchecked,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flood", type=int, default=200, help="bad attempts at once")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(data_dir=Path(folder))
        store.add_station(STATION, site_id="s1", password_hash=hash_password(PASSWORD))
        base = ServerSettings(host="127.0.0.1", port=0, tls_folder=Path(folder) / "tls")
        servers = [
            ("unbounded", replace(base, password_checks_at_once=None, failed_attempts_burst=None)),
            ("bounded", base),
            ("spread", base),
            ("no check", base),
        ]
        results = [
            asyncio.run(
                _run(
                    name,
                    store,
                    settings,
                    flood=args.flood,
                    rounds=args.rounds,
                )
            )
            for name, settings in servers
        ]
        store.close()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC: a real station's connect + boot during "
        f"{args.flood} bad-password handshakes at once, {args.rounds} rounds"
    )
    reference = statistics.median(results[0].flooded_ms)
    print(
        f"{'server':<10} {'quiet p50':>10} {'flood p50':>10} {'flood max':>10} "
        f"{'vs unbounded':>13} {'hashed':>7} {'refused unchecked':>18}"
    )
    for result in results:
        p50 = statistics.median(result.flooded_ms)
        print(
            f"{result.name:<10} {statistics.median(result.quiet_ms):>8.1f}ms "
            f"{p50:>8.1f}ms {max(result.flooded_ms):>8.1f}ms {p50 / reference:>12.3f}x "
            f"{result.hashed:>7} {result.refused_unchecked:>18}"
        )


if __name__ == "__main__":
    main()
