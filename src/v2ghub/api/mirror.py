"""The control loop's state, copied from ``serve``'s process to the web API's own process.

The web API runs in a process of its own (:mod:`v2ghub.api.web_process`) so that its work
never shares an interpreter lock with the chargers' event loop. What it showed from the
loop's memory in the same process now comes over one duplex pipe:

- from ``serve`` (:class:`MirrorPublisher`), every :data:`MIRROR_INTERVAL_S` of wall time,
  one :class:`MirrorUpdate`: the latest plan snapshot and the setpoints in force only when
  the loop replaced them (each is one object, replaced whole, so an identity check says
  so), the site power rows appended since the last update, the loop's counts, the
  stations connected and their metered power, the grid services' figures and the OCPP
  side's metrics text. The update is gathered on the chargers' event loop (references and
  small copies) and pickled and written by a thread of its own: with a plan for 1,000
  chargers an update is about 270 kB, and writing it on the loop held every charger's
  message for as long as the web process took to read it (4.8 ms a write at the median,
  32 ms at the 99th percentile);
- from the web process (:class:`RemoteControl`), the commands the API gives the loop: a
  re-plan (a grid event written) and recorded regulation signal samples to broadcast.

The copy is at most :data:`MIRROR_INTERVAL_S` older than the loop (the API's fleet-now is
at most a second old anyway). A write never goes through the pipe: grid events, limits and
tokens are rows of the store, which both processes open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection

from v2ghub.api.context import RegulationLive, regulation_live
from v2ghub.live.grid_services import GridServices
from v2ghub.live.live_state import LiveStatus, PlanSnapshot
from v2ghub.live.metrics import LiveMetrics
from v2ghub.store.records import Setpoint
from v2ghub.store.regulation import SignalSample
from v2ghub.store.site_power import SitePowerRecord

LOG = logging.getLogger("v2ghub.api")

MIRROR_INTERVAL_S = 0.5
"""Wall seconds between two updates of the web process's copy."""
WRITER_STOP_TIMEOUT_S = 5.0
"""At the end, the longest the updates still queued may take to be written."""


@dataclass(frozen=True)
class MirrorUpdate:
    """One update of the web process's copy (``None``: unchanged since the last)."""

    latest: PlanSnapshot | None
    latest_changed: bool
    setpoints: tuple[Setpoint, ...] | None
    power_rows: tuple[SitePowerRecord, ...]
    plans: int
    fallbacks: int
    failures: int
    last_instant_monotonic_s: float | None
    connected: frozenset[str]
    measured_kw: dict[str, float]
    regulation: RegulationLive | None
    metrics_text: bytes


@dataclass(frozen=True)
class Replan:
    reason: str


@dataclass(frozen=True)
class PostSignal:
    samples: tuple[SignalSample, ...]


@dataclass(frozen=True)
class LoopSide:
    """What ``serve``'s process copies to the web process, and where commands go."""

    status: LiveStatus
    connected: Callable[[], frozenset[str]]
    """The stations connected now."""
    measured: Callable[[], dict[str, float]]
    """The latest metered power per station, kW."""
    metrics: LiveMetrics
    trigger: Callable[[str], None]
    """The control loop's re-plan trigger."""
    grid_services: GridServices | None = None


class MirrorPublisher:
    """``serve``'s side: sends updates while running and carries out the web process's
    commands on the control loop's event loop."""

    def __init__(
        self, connection: Connection, side: LoopSide, *, interval_s: float = MIRROR_INTERVAL_S
    ) -> None:
        self._connection = connection
        self._status = side.status
        self._connected = side.connected
        self._measured = side.measured
        self._metrics = side.metrics
        self._trigger = side.trigger
        self._services = side.grid_services
        self._interval_s = interval_s
        self._rows: list[SitePowerRecord] = []
        self._sent_latest: object = _NOTHING
        self._sent_setpoints: object = _NOTHING
        self._broken = False
        self._outbox: queue.SimpleQueue[MirrorUpdate | None] = queue.SimpleQueue()
        self.updates_gathered = 0
        """Updates :meth:`run` has handed to its writer thread."""
        side.status.power_log.listen(self._rows.extend)

    def update(self) -> MirrorUpdate:
        """What changed since the last update (and marks it sent)."""
        status = self._status
        latest, setpoints = status.latest, status.setpoints
        latest_changed = latest is not self._sent_latest
        setpoints_changed = setpoints is not self._sent_setpoints
        self._sent_latest, self._sent_setpoints = latest, setpoints
        rows, self._rows[:] = tuple(self._rows), []
        return MirrorUpdate(
            latest=latest if latest_changed else None,
            latest_changed=latest_changed,
            setpoints=setpoints if setpoints_changed else None,
            power_rows=rows,
            plans=status.plans,
            fallbacks=status.fallbacks,
            failures=status.failures,
            last_instant_monotonic_s=status.last_instant_monotonic_s,
            connected=self._connected(),
            measured_kw=self._measured(),
            regulation=None if self._services is None else regulation_live(self._services),
            metrics_text=self._metrics.text(),
        )

    def send(self) -> bool:
        """Send one update now, on the caller's thread; False once the web process has
        gone."""
        return self._write(self.update())

    def _write(self, update: MirrorUpdate) -> bool:
        if self._broken:
            return False
        try:
            self._connection.send(update)
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            self._broken = True
            LOG.warning("the web API's process has gone: its copy of the loop is no longer kept")
            return False
        return True

    def _write_queued(self) -> None:
        """The writer thread: send the updates in order until told to stop (None)."""
        while (update := self._outbox.get()) is not None:
            if not self._write(update):
                return

    async def run(self) -> None:
        """Gather an update every interval and hand it to the writer thread until
        cancelled; take commands as they come."""
        loop = asyncio.get_running_loop()
        loop.add_reader(self._connection.fileno(), self._take_command)
        writer = threading.Thread(
            target=self._write_queued, name="v2ghub-web-mirror-writer", daemon=True
        )
        writer.start()
        try:
            while not self._broken:
                self._outbox.put(self.update())
                self.updates_gathered += 1
                await asyncio.sleep(self._interval_s)
        finally:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(self._connection.fileno())
            self._outbox.put(None)
            # What is queued is written before the pipe closes (the web process reads on).
            await asyncio.shield(asyncio.to_thread(writer.join, WRITER_STOP_TIMEOUT_S))

    def _take_command(self) -> None:
        try:
            command = self._connection.recv()
        except (EOFError, OSError):
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._connection.fileno())
            return
        if isinstance(command, Replan):
            self._trigger(command.reason)
        elif isinstance(command, PostSignal):
            broadcaster = None if self._services is None else self._services.broadcaster
            if broadcaster is not None:
                broadcaster.post(list(command.samples))
        else:
            LOG.warning("the web API's process sent %r: ignored", type(command).__name__)


class _Nothing:
    """Not sent yet (a plan snapshot may be None)."""


_NOTHING = _Nothing()


@dataclass
class Mirror:
    """The web process's side: a copy of the loop's state, kept by :meth:`follow` on a
    thread of its own. ``status`` is a :class:`LiveStatus` that only this copy writes;
    the routes read it as they read the loop's own in the same process."""

    status: LiveStatus = field(default_factory=LiveStatus)
    connected: frozenset[str] = frozenset()
    measured_kw: dict[str, float] = field(default_factory=dict)
    regulation: RegulationLive | None = None
    metrics_text: bytes = b""
    primed_until: datetime | None = None
    """The last stored site power row when the log was primed: rows up to it are there."""
    updates: int = 0

    def apply(self, update: MirrorUpdate) -> None:
        status = self.status
        if update.latest_changed:
            status.latest = update.latest
        if update.setpoints is not None:
            status.setpoints = update.setpoints
        rows = update.power_rows
        if self.primed_until is not None:
            rows = tuple(row for row in rows if row.at > self.primed_until)
        if rows:
            status.power_log.append(rows)
        status.plans, status.fallbacks, status.failures = (
            update.plans,
            update.fallbacks,
            update.failures,
        )
        status.last_instant_monotonic_s = update.last_instant_monotonic_s
        self.connected = update.connected
        self.measured_kw = update.measured_kw
        self.regulation = update.regulation
        self.metrics_text = update.metrics_text
        self.updates += 1

    def follow(self, connection: Connection, on_end: Callable[[], None]) -> threading.Thread:
        """Apply updates from ``connection`` on a daemon thread until ``serve`` closes it
        (or dies); then call ``on_end``."""

        def receive() -> None:
            try:
                while True:
                    message = connection.recv()
                    if isinstance(message, MirrorUpdate):
                        self.apply(message)
            except (EOFError, OSError):
                pass
            finally:
                on_end()

        thread = threading.Thread(target=receive, name="v2ghub-web-mirror", daemon=True)
        thread.start()
        return thread


class RemoteControl:
    """The control loop as the web process reaches it: commands down the pipe (sends from
    the API's threads, one at a time), the grid services' figures from the copy."""

    def __init__(self, connection: Connection, mirror: Mirror) -> None:
        self._connection = connection
        self._mirror = mirror
        self._lock = threading.Lock()

    def _send(self, command: Replan | PostSignal) -> bool:
        try:
            with self._lock:
                self._connection.send(command)
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            LOG.warning("serve's process is gone: %s not handed over", type(command).__name__)
            return False
        return True

    def replan(self, reason: str) -> bool:
        return self._send(Replan(reason))

    def post_signal(self, samples: Sequence[SignalSample]) -> bool:
        figures = self._mirror.regulation
        if figures is None or not figures.broadcasting:
            return False
        return self._send(PostSignal(tuple(samples)))

    def regulation(self) -> RegulationLive | None:
        return self._mirror.regulation


class MirroredMetrics(LiveMetrics):
    """The web process's metrics: its own (requests, the feed) after the copy of the OCPP
    server's, one text for ``/metrics``."""

    def __init__(self, mirror: Mirror) -> None:
        super().__init__()
        self.drop_ocpp()
        self._mirror = mirror

    def text(self) -> bytes:
        return self._mirror.metrics_text + super().text()
