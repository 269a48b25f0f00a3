"""How much the OCPP server writes when stations misbehave or the storage cannot take it.

:class:`StationBudget` bounds what one station can make the server write to the event log
and to the program's log (a station with valid credentials sending BootNotifications in a
loop would otherwise grow both without bound); :class:`StorageAlarm` says that the storage
is full (or read-only, or failing) in one line a minute, not a traceback per refused
message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from v2ghub.store.database import StorageError

LOGGER = logging.getLogger("v2ghub.live")

STATION_WRITES_PER_MINUTE = 10.0
"""Event rows and log lines a station may cause each minute, on average."""
STATION_WRITES_BURST = 30
"""...and at once: a boot, its connection events and a few refusals fit easily."""
STORAGE_REPORT_INTERVAL_S = 60.0
"""A storage problem is logged at most this often (s)."""
MAX_BUDGETS = 10_000
"""Budgets kept at most; beyond it, those of stations quiet long enough to be full again
are forgotten (they would start full anyway)."""


@dataclass
class _Bucket:
    tokens: float
    updated_s: float
    limited: bool = False


class TokenBuckets:
    """A token bucket per key: ``burst`` tokens, ``per_minute`` back a minute.

    Keys whose bucket is full again are forgotten once :data:`MAX_BUDGETS` are kept (they
    would start full anyway), so a stream of new keys cannot grow memory without bound.
    """

    def __init__(
        self, *, per_minute: float, burst: int, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        if not per_minute > 0 or burst < 1:
            raise ValueError(f"per_minute must be > 0 and burst >= 1, got {per_minute}, {burst}")
        self.per_minute = per_minute
        self.burst = burst
        self._monotonic = monotonic
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> bool:
        """Take a token of ``key``'s bucket; ``False`` (nothing taken) when it is empty."""
        bucket = self._bucket(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False

    def give_back(self, key: str) -> None:
        """Return a token taken for something that did not count after all."""
        bucket = self._bucket(key)
        bucket.tokens = min(float(self.burst), bucket.tokens + 1.0)

    def spent(self, key: str) -> float:
        """Tokens of ``key``'s bucket in use now (0 for a full bucket)."""
        return self.burst - self._bucket(key).tokens

    def newly_limited(self, key: str) -> bool:
        """Mark ``key`` as limited; whether it was not before (since its bucket was last
        full): the moment to say so, once."""
        bucket = self._bucket(key)
        was_limited, bucket.limited = bucket.limited, True
        return not was_limited

    def _bucket(self, key: str) -> _Bucket:
        now_s = self._monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUDGETS:
                self._forget_full(now_s)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now_s)
            return bucket
        self._refill(bucket, now_s)
        return bucket

    def _refill(self, bucket: _Bucket, now_s: float) -> None:
        gained = (now_s - bucket.updated_s) * self.per_minute / 60.0
        bucket.tokens = min(float(self.burst), bucket.tokens + gained)
        bucket.updated_s = now_s
        if bucket.tokens >= self.burst:
            bucket.limited = False  # quiet long enough: the next limit is news again

    def _forget_full(self, now_s: float) -> None:
        for key, bucket in list(self._buckets.items()):
            self._refill(bucket, now_s)
            if bucket.tokens >= self.burst:
                del self._buckets[key]


class StationBudget:
    """What each station may make the server write: a :class:`TokenBuckets` per station.

    Each written event row or log line costs one token; a station has
    :data:`STATION_WRITES_BURST` and gets :data:`STATION_WRITES_PER_MINUTE` back a minute.
    When a station runs out, one log line says that its writes are being limited; nothing
    more is said until its bucket has filled up again (it slowed down) and it runs out
    again. The messages themselves are still handled: only the record of them is thinned.
    """

    def __init__(
        self,
        *,
        per_minute: float = STATION_WRITES_PER_MINUTE,
        burst: int = STATION_WRITES_BURST,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._buckets = TokenBuckets(per_minute=per_minute, burst=burst, monotonic=monotonic)
        self.refused = 0
        """Writes refused so far, all stations."""

    def allow(self, station_id: str) -> bool:
        """Whether one more event row or log line of ``station_id`` may be written now."""
        if self._buckets.take(station_id):
            return True
        self.refused += 1
        if self._buckets.newly_limited(station_id):
            LOGGER.warning(
                "%s: more than %g events and log lines a minute: further ones of this "
                "station are not written until it slows down",
                station_id,
                self._buckets.per_minute,
            )
        return False


class StorageAlarm:
    """Says that the storage cannot take writes: one log line at most every
    :data:`STORAGE_REPORT_INTERVAL_S`, with how many writes were refused since the last."""

    def __init__(
        self,
        *,
        interval_s: float = STORAGE_REPORT_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self._monotonic = monotonic
        self._reported_s: float | None = None
        self._since_report = 0
        self.refused = 0
        """Writes refused for the storage so far."""

    def note(self, error: StorageError) -> None:
        """One write was refused by the storage (``error``)."""
        self.refused += 1
        self._since_report += 1
        now_s = self._monotonic()
        if self._reported_s is not None and now_s - self._reported_s < self.interval_s:
            return
        LOGGER.error(
            "%s (writes refused since the last such line: %d; messages are not acknowledged, "
            "so stations keep them and send them again)",
            error,
            self._since_report,
        )
        self._reported_s = now_s
        self._since_report = 0
