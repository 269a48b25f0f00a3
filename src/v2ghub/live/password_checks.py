"""Password checks of the OCPP handshakes, bounded so that a flood of bad passwords cannot
keep a real station out.

The password hash is slow on purpose (:mod:`v2ghub.live.security`): two hundred wrong
passwords at once used to queue two hundred hashes, in the thread pool the store's reads
also wait in, ahead of a real station's. :class:`PasswordChecks` runs the hashes in threads
of their own, at most as many at once as the machine has cores, and gives each client
address a budget of failed attempts (:data:`FAILED_ATTEMPTS_BURST`, then
:data:`FAILED_ATTEMPTS_PER_MINUTE`): an attempt takes a token before its hash is computed
and gets it back when the password was right, so a flood from one address costs at most
the budget in hashes, and the rest are refused at once without one.

Checks that wait for a thread are served by need, not by arrival: first the addresses a
station has logged in from before (in this server's life), then the address with fewest
attempts under way. A real station's check waits for the hashes running, not for those a
flood queued ahead of it.

Stations behind one address (a site's router) share its budget, but only failures spend
it. Behind a reverse proxy every station has the proxy's address: there, raise the budget.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from v2ghub.live.security import verify_password
from v2ghub.live.write_limits import TokenBuckets

FAILED_ATTEMPTS_BURST = 20
"""Failed password attempts an address may make at once..."""
FAILED_ATTEMPTS_PER_MINUTE = 20.0
"""...and then each minute, on average."""
KNOWN_ADDRESSES = 10_000
"""Addresses remembered for having logged a station in (the most recent)."""


class FairSlots:
    """``slots`` places for work; those waiting get one in order of their priority (lower
    first, then arrival)."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiting: list[tuple[tuple[float, ...], int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    async def acquire(self, priority: tuple[float, ...]) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._arrivals), turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # given a place just as it was cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1


def default_concurrent_checks() -> int:
    """Password hashes computed at once by default: one per core."""
    return max(1, os.cpu_count() or 1)


class PasswordChecks:
    """Bounded password checks: ``concurrent`` hashes at once in threads of their own
    (``None``: unbounded, in the default thread pool), and ``failed_burst`` failed attempts
    per address, ``failed_per_minute`` more each minute (``failed_burst`` ``None``: no
    limit per address)."""

    def __init__(
        self,
        *,
        concurrent: int | None,
        failed_burst: int | None = FAILED_ATTEMPTS_BURST,
        failed_per_minute: float = FAILED_ATTEMPTS_PER_MINUTE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if concurrent is not None and concurrent < 1:
            raise ValueError(f"concurrent password checks must be >= 1, got {concurrent}")
        self._threads = (
            None
            if concurrent is None
            else ThreadPoolExecutor(max_workers=concurrent, thread_name_prefix="v2ghub-password")
        )
        self._slots = None if concurrent is None else FairSlots(concurrent)
        self._known: OrderedDict[str, None] = OrderedDict()
        """Addresses a station logged in from, oldest first."""
        self._failures = (
            None
            if failed_burst is None
            else TokenBuckets(per_minute=failed_per_minute, burst=failed_burst, monotonic=monotonic)
        )
        self.hashed = 0
        """Passwords hashed so far."""
        self.refused_unchecked = 0
        """Attempts refused without a hash: their address had spent its budget."""

    def may_try(self, address: str) -> bool:
        """Take a try of ``address``'s budget; ``False``: it has failed too often lately
        (refuse the attempt without checking it)."""
        if self._failures is None or self._failures.take(address):
            return True
        self.refused_unchecked += 1
        return False

    def succeeded(self, address: str) -> None:
        """The try taken for ``address`` succeeded: it does not count as a failure, and
        the address's checks go first from now on."""
        if self._failures is not None:
            self._failures.give_back(address)
        self._known[address] = None
        self._known.move_to_end(address)
        if len(self._known) > KNOWN_ADDRESSES:
            self._known.popitem(last=False)

    async def verify(self, address: str, password: str, stored_hash: str) -> bool:
        """Whether ``password`` matches ``stored_hash``, hashed in the checks' threads
        when ``address``'s turn comes."""
        loop = asyncio.get_running_loop()
        if self._slots is None:
            self.hashed += 1
            return await loop.run_in_executor(None, verify_password, password, stored_hash)
        spent = 0.0 if self._failures is None else self._failures.spent(address)
        await self._slots.acquire((0.0 if address in self._known else 1.0, spent))
        try:
            self.hashed += 1
            return await loop.run_in_executor(self._threads, verify_password, password, stored_hash)
        finally:
            self._slots.release()

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
