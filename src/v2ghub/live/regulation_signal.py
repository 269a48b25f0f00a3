"""The regulation signal live: where it comes from, and its broadcast to the chargers.

Sources
-------
- **A file replayed on a schedule** (``serve --regulation-signal FILE``, the CSV the twin
  reads: :func:`v2ghub.scenarios.signals_csv.load_signal_csv`). The file's first sample is
  aligned to the start of each commitment and the file loops over it; its times give only
  its step. Replayed samples are recorded in the store as they fall due
  (``source="file:NAME"``), so what was asked can be scored and paid.
- **The grid role's API** (``POST /api/v1/grid/regulation/signal``): samples with their
  times, recorded by the API and handed here (:meth:`SignalBroadcaster.post`). A posted
  sample holds from its time until the next one; a posted signal older than
  :data:`POSTED_SIGNAL_HOLD_S` no longer holds, and the file (or 0) takes over.

Broadcast
---------
At every signal step (``step_s`` on the server's clock, from the file or
:data:`v2ghub.defaults.REGULATION_SIGNAL_STEP_S`) while a commitment is in force, the
signal in force goes out as one ``AFRRSignal`` (``timestamp`` = the step's instant,
``signal`` = the value times :data:`v2ghub.units.AFRR_SIGNAL_SCALE`) to every station with
an EVSE that accepted a ``CentralFrequency`` profile, all concurrently. A value equal to
the last one sent is sent again only every :data:`RESEND_UNCHANGED_S` (a station that
missed one catches up); each station answers, and the answers are counted.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from ocpp.messages import Call, validate_payload
from ocpp.v21 import call as call_v21

from v2ghub.defaults import REGULATION_SIGNAL_STEP_S
from v2ghub.live.clock import Clock
from v2ghub.live.outcomes import SendOutcome, SendStatus
from v2ghub.live.profiles import utc_timestamp
from v2ghub.regulation.signals import RegulationSignal
from v2ghub.store.regulation import Commitment, SignalSample
from v2ghub.units import signal_to_afrr

LOG = logging.getLogger(__name__)

OCPP_21 = "2.1"
"""The ``ocpp`` package's name of the schemas AFRRSignal is checked against."""

POSTED_SIGNAL_HOLD_S = 60.0
"""How long a posted sample holds with no newer one (clock seconds)."""
RESEND_UNCHANGED_S = 30.0
"""An unchanged signal is broadcast again after this long (clock seconds)."""
RECORD_BATCH = 30
"""Replayed samples are written to the store this many at a time."""


class CallStation(Protocol):
    def __call__(
        self, station_id: str, payload: object, *, validated: bool = False
    ) -> Awaitable[SendOutcome]: ...


class SignalStore(Protocol):
    def add_signals(self, samples: Sequence[SignalSample], *, source: str, at: datetime) -> int: ...


class SignalBroadcaster:
    """Follows the signal's sources and broadcasts it to the participating stations.

    The control loop says which commitment is in force (:meth:`commit`) and which stations
    follow it (:meth:`set_participants`); the API hands in posted samples (:meth:`post`).
    """

    def __init__(
        self,
        *,
        clock: Clock,
        call_station: CallStation,
        store: SignalStore,
        signal_file: RegulationSignal | None = None,
        file_name: str = "",
        step_s: float | None = None,
        send_timeout_s: float = 5.0,
    ) -> None:
        self.clock = clock
        self.call_station = call_station
        self.store = store
        self.signal_file = signal_file
        self.file_name = file_name
        self.step_s = step_s or (signal_file.step_s if signal_file else REGULATION_SIGNAL_STEP_S)
        self.send_timeout_s = send_timeout_s
        self.commitment: Commitment | None = None
        self.participants: frozenset[str] = frozenset()
        self._posted_at: list[float] = []
        self._posted: list[float] = []
        self._last_sent: tuple[int, float] | None = None
        self._to_record: list[SignalSample] = []
        self.answers: Counter[str] = Counter()
        """Stations' answers to AFRRSignal, by status."""
        self.broadcasts = 0
        self.messages = 0
        self.last_signal: float | None = None
        self.last_signal_at: datetime | None = None
        self.skipped_busy = 0
        """Station-steps skipped because the station was still answering an earlier one."""
        self._in_flight: dict[str, asyncio.Future[SendOutcome]] = {}
        self._writes: set[asyncio.Future[None]] = set()

    # --- from the control loop and the API -------------------------------------------------

    def commit(self, commitment: Commitment | None) -> None:
        self.commitment = commitment

    def set_participants(self, station_ids: frozenset[str]) -> None:
        self.participants = station_ids

    def post(self, samples: Sequence[SignalSample]) -> None:
        """Samples posted through the API (already recorded by it); call on the loop."""
        for sample in samples:
            at_s = sample.at.timestamp()
            index = bisect.bisect_right(self._posted_at, at_s)
            self._posted_at.insert(index, at_s)
            self._posted.insert(index, sample.signal)
        if len(self._posted_at) > 10_000:  # keep the recent past only
            del self._posted_at[:-5_000]
            del self._posted[:-5_000]

    # --- the signal in force ---------------------------------------------------------------

    def signal_at(self, now: datetime) -> tuple[float, str]:
        """The signal in force at ``now`` and where it came from (``api``, ``file``,
        ``none``)."""
        now_s = now.timestamp()
        index = bisect.bisect_right(self._posted_at, now_s) - 1
        if index >= 0 and now_s - self._posted_at[index] <= POSTED_SIGNAL_HOLD_S:
            return self._posted[index], "api"
        if self.signal_file is not None and self.commitment is not None:
            elapsed_s = now_s - self.commitment.starts_at.timestamp()
            if elapsed_s >= 0:
                k = int(elapsed_s // self.signal_file.step_s) % self.signal_file.values.size
                return float(self.signal_file.values[k]), "file"
        return 0.0, "none"

    # --- the broadcast ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Broadcast at every signal step until ``stop``; never raises for a station."""
        try:
            while not stop.is_set():
                now = self.clock.now()
                step_start = _floor(now, self.step_s)
                next_step = step_start + timedelta(seconds=self.step_s)
                try:
                    await self.step(step_start)
                except Exception:  # a broadcast that fails must not end the loop
                    LOG.exception("regulation signal broadcast failed")
                wait_s = self.clock.seconds((next_step - self.clock.now()).total_seconds())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=max(wait_s, 0.0))
        finally:
            # The samples held are written and the answers counted, whatever ends the run.
            await asyncio.shield(self.settle())
            await asyncio.shield(self.flush())

    async def step(self, at: datetime) -> int:
        """Broadcast the signal in force at ``at`` if a commitment holds; stations sent.

        The sends are started, not awaited: the next step goes out on time whatever the
        stations take to answer. A station still answering an earlier signal is skipped
        (OCPP allows one request in flight per connection: this one would wait behind it
        and arrive late); it gets the next.
        """
        commitment = self.commitment
        if commitment is None or not commitment.in_force(at):
            return 0
        signal, source = self.signal_at(at)
        if source == "file":
            self._to_record.append(SignalSample(at, signal))
            if len(self._to_record) >= RECORD_BATCH:
                self._keep(asyncio.ensure_future(self.flush()))
        self.last_signal, self.last_signal_at = signal, at
        value = signal_to_afrr(signal)
        at_s = at.timestamp()
        if (
            self._last_sent is not None
            and self._last_sent[0] == value
            and at_s - self._last_sent[1] < RESEND_UNCHANGED_S
        ):
            return 0
        busy = {station for station, task in self._in_flight.items() if not task.done()}
        stations = [station for station in sorted(self.participants) if station not in busy]
        self.skipped_busy += len(self.participants & busy)
        if not stations:
            return 0
        request = call_v21.AFRRSignal(timestamp=utc_timestamp(at), signal=value)
        # Checked once here, not once per station: the payload is the same for all.
        frame = Call(
            unique_id="-",
            action="AFRRSignal",
            payload={"timestamp": request.timestamp, "signal": value},
        )
        await validate_payload(frame, OCPP_21)
        for station_id in stations:
            task = asyncio.ensure_future(self._send(station_id, request))
            task.add_done_callback(self._answered)
            self._in_flight[station_id] = task
        self._last_sent = (value, at_s)
        self.broadcasts += 1
        self.messages += len(stations)
        return len(stations)

    def _answered(self, task: asyncio.Future[SendOutcome]) -> None:
        if not task.cancelled():
            self.answers[str(task.result().status.value)] += 1

    def _keep(self, task: asyncio.Future[None]) -> None:
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def settle(self) -> None:
        """Wait for the answers and writes under way (a test's or a stop's)."""
        waiting: list[asyncio.Future[Any]] = [*self._in_flight.values(), *self._writes]
        if waiting:
            await asyncio.wait(waiting, timeout=self.send_timeout_s)

    async def _send(self, station_id: str, request: call_v21.AFRRSignal) -> SendOutcome:
        try:
            return await asyncio.wait_for(
                self.call_station(station_id, request, validated=True), self.send_timeout_s
            )
        except TimeoutError:
            return SendOutcome(SendStatus.TIMEOUT)

    async def flush(self) -> None:
        """Record the replayed samples not recorded yet."""
        if not self._to_record:
            return
        samples, self._to_record = self._to_record, []
        source = f"file:{self.file_name}"[:96]
        try:
            await asyncio.to_thread(
                self.store.add_signals, samples, source=source, at=self.clock.now()
            )
        except Exception:
            LOG.exception("could not record %d regulation signal samples", len(samples))


def _floor(now: datetime, step_s: float) -> datetime:
    """``now`` rounded down to a multiple of ``step_s`` since the Unix epoch."""
    now_s = now.timestamp()
    return now - timedelta(seconds=now_s - (now_s // step_s) * step_s)
