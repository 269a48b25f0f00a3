"""The OCPP server under 100,000 random and mutated frames on real connections.

Three authenticated stations (OCPP 2.1, 2.0.1 and 1.6J) send a deterministic mix of frames
(:class:`FrameFactory`, :class:`FrameFactory16`): random bytes and text, random JSON, valid
messages, mutations of valid messages, answers to nothing and replays. An oracle
(:func:`expected_answer`) says from the frame alone what the server must answer; the
answers are read by a task of their own while the sender keeps a window of frames in
flight, and matched in order (the server answers one connection's frames in the order
they came). The requests the server sends a 1.6 station of its own (GetConfiguration,
SetChargingProfile, ClearChargingProfile) are answered as a station would and are not
answers to its frames. Afterwards the server still takes a new connection of each
version, and no transaction's meter registers go backwards.

A 1.6 station's transaction ids come from the server (StartTransaction's answer): its
valid MeterValues and StopTransaction use an id the server returned, so that the
registers of those transactions are checked too.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import multiprocessing
import random
import shutil
import tempfile
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from ocpp import v16, v21, v201
from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.v16 import call as call_v16
from ocpp.v16 import datatypes as datatypes_v16
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from v2ghub.live import charger_messages as messages
from v2ghub.live.clock import ScaledClock
from v2ghub.live.csms import _message_id
from v2ghub.live.security import basic_header, hash_password
from v2ghub.live.server import CsmsServer, ServerSettings
from v2ghub.store import schema
from v2ghub.store.records import MeterSample, OcppVersion
from v2ghub.store.repository import Store

NOON = datetime(2026, 7, 1, 4, 0, tzinfo=UTC)
PASSWORD = "correct-horse-battery-staple-0123"
SEED = 20260701
FRAMES = 100_000
"""Frames in all, split among the stations."""
WINDOW = 256
"""Frames that expect an answer and may be in flight at once, per connection."""
MAX_FRAME_CHARS = 200_000
"""Below the server's 256 KiB frame limit even when every character takes one byte."""
ANSWER_TIMEOUT_S = 60.0
QUIET_S = 0.5
"""A 1.6 connection is closed once the server has sent it no request for this long."""
STATIONS = {"FZ-21": OcppVersion.V21, "FZ-201": OcppVersion.V201, "FZ-16": OcppVersion.V16}
NOISY_LOGGERS = ("ocpp", "v2ghub.live", "websockets")

Frame = str | bytes


# --- the oracle -------------------------------------------------------------------------


HANDLED: dict[OcppVersion, frozenset[str]] = {
    OcppVersion.V21: frozenset(
        {
            "BootNotification",
            "Heartbeat",
            "StatusNotification",
            "Authorize",
            "TransactionEvent",
            "MeterValues",
            "NotifyEVChargingNeeds",
        }
    ),
    OcppVersion.V16: frozenset(
        {
            "BootNotification",
            "Heartbeat",
            "StatusNotification",
            "Authorize",
            "StartTransaction",
            "StopTransaction",
            "MeterValues",
            "DataTransfer",
        }
    ),
}
"""The requests the server answers, by version (2.0.1 as 2.1)."""
HANDLED[OcppVersion.V201] = HANDLED[OcppVersion.V21]
SPEC_ACTIONS: dict[OcppVersion, frozenset[str]] = {
    OcppVersion.V21: frozenset(action.value for action in v21.enums.Action),
    OcppVersion.V201: frozenset(action.value for action in v201.enums.Action),
    OcppVersion.V16: frozenset(action.value for action in v16.enums.Action),
}
"""Every action of each version's specification."""
ERROR_CODES: dict[OcppVersion, frozenset[str]] = {
    # OCPP-J 1.6, 4.2.3: the spelling of its enum, typos kept by the errata.
    OcppVersion.V16: frozenset(
        {
            "NotImplemented",
            "NotSupported",
            "InternalError",
            "ProtocolError",
            "SecurityError",
            "FormationViolation",
            "PropertyConstraintViolation",
            "OccurenceConstraintViolation",
            "TypeConstraintViolation",
            "GenericError",
        }
    ),
    # OCPP 2.0.1 and 2.1, part 4 (OCPP-J), 4.3.
    OcppVersion.V21: frozenset(
        {
            "FormatViolation",
            "GenericError",
            "InternalError",
            "MessageTypeNotSupported",
            "NotImplemented",
            "NotSupported",
            "OccurrenceConstraintViolation",
            "PropertyConstraintViolation",
            "ProtocolError",
            "RpcFrameworkError",
            "SecurityError",
            "TypeConstraintViolation",
        }
    ),
}
"""The CallError codes of each version."""
ERROR_CODES[OcppVersion.V201] = ERROR_CODES[OcppVersion.V21]
FORMAT_VIOLATION = {
    OcppVersion.V16: "FormationViolation",
    OcppVersion.V201: "FormatViolation",
    OcppVersion.V21: "FormatViolation",
}
NOT_YET_ITS_VERSIONS_CODE: dict[OcppVersion, frozenset[str]] = {
    # Every 1.6 CallError goes out in 1.6's spelling (formation_spelling; pinned by
    # test_a_16_frame_a_handler_refuses_gets_a_16_error_code).
    OcppVersion.V16: frozenset(),
    OcppVersion.V21: frozenset(),
    OcppVersion.V201: frozenset(),
}
"""CallError codes not of the connection's version that the server is known to send."""


@dataclass(frozen=True)
class Expected:
    """The answer a frame must get: a CallError only, or a CallResult or CallError; when
    ``error_code`` is given, a CallError with that code. A CallError's code is one of
    ``version``'s (:data:`ERROR_CODES`)."""

    unique_id: str
    error_only: bool
    version: OcppVersion
    error_code: str | None = None


def expected_answer(frame: Frame, version: OcppVersion) -> Expected | None:
    """What the server must answer to ``frame`` on a ``version`` connection (``None``:
    nothing, it answers nothing).

    A Call (four elements, type 2) with a string message id gets one answer with that id:
    a ProtocolError when its action is not a string, a FormatViolation (1.6:
    FormationViolation) when its payload is not an object, NotImplemented for an action
    of ``version`` the server does not handle and NotSupported for an action ``version``
    does not have. A CallResult or CallError that parses is an answer to nothing and gets
    none. Anything else cannot be parsed and gets a CallError carrying the frame's message
    id (cut to OCPP's 36 characters) or "-1" when none can be read. Every CallError's code
    is one of ``version``'s (1.6 spells some differently).
    """
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return Expected("-1", error_only=True, version=version)
    if not isinstance(data, list) or not data:
        return Expected("-1", error_only=True, version=version)
    readable_id = data[1][:36] if len(data) > 1 and isinstance(data[1], str) else "-1"
    kind = data[0]
    if kind == 2 and len(data) == 4:
        return _expected_for_call(data[1], data[2], data[3], version)
    # The ocpp package reads a CallResult's optional 4th element as its action, and a
    # CallError's details are optional: such frames parse.
    if (kind == 3 and len(data) in (3, 4)) or (kind == 4 and len(data) in (4, 5)):
        return None
    return Expected(readable_id, error_only=True, version=version)


def _expected_for_call(unique_id: Any, action: Any, payload: Any, version: OcppVersion) -> Expected:
    if not isinstance(unique_id, str):
        return Expected("-1", error_only=True, version=version, error_code="ProtocolError")
    if not isinstance(action, str):
        return Expected(unique_id, error_only=True, version=version, error_code="ProtocolError")
    if not isinstance(payload, dict):
        code = FORMAT_VIOLATION[version]
        return Expected(unique_id, error_only=True, version=version, error_code=code)
    if action in HANDLED[version]:
        return Expected(unique_id, error_only=False, version=version)
    code = "NotImplemented" if action in SPEC_ACTIONS[version] else "NotSupported"
    return Expected(unique_id, error_only=True, version=version, error_code=code)


# --- the frames -------------------------------------------------------------------------

_UNICODE = (
    "é",
    "中文",
    "\u0000",
    "\u202e",
    "\U0001f50b",
    "\U0001f697\u200d",
    "\ufeff",
    "\\",
    '"',
    "\n",
    "Ω" * 40,
)
_HUGE_NUMBERS: tuple[Any, ...] = (
    10**30,
    -(10**30),
    2**63,
    2**64 + 1,
    -(2**63) - 1,
    1e308,
    -1e308,
    5e-324,
    float("nan"),
    float("inf"),
    0,
    -1,
)
_NUMBER_TEXTS = (
    "-1",
    "-0",
    "1e400",
    "-1e400",
    "NaN",
    "Infinity",
    "",
    " ",
    "1,5",
    "0x1F",
    "1_000",
    "\uff11\uff12",
    "9" * 30,
    "1e15",
)
"""What a number written as a string (1.6 sampled values) is mutated into."""
_TIME_TEXTS = (
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "2026-02-30T00:00:00Z",
    "24:00",
    "",
)
"""What a dateTime is mutated into, besides the same instant written otherwise or a
plausible time from a clock set wrong (:data:`_CLOCK_ERRORS`): edges of the calendar,
impossible dates, not a dateTime."""
_CLOCK_ERRORS = (timedelta(hours=-3), timedelta(seconds=-40), timedelta(hours=3))
"""How far a station's clock is set wrong when a dateTime is mutated into a plausible one:
its readings come out of order, and the store must keep every transaction's registers
(and an EVSE's outside any transaction) from going backwards in time (pinned by
test_a_transactions_readings_never_go_backwards_whichever_message_brings_them and
test_a_reading_outside_a_transaction_is_checked_against_its_neighbours)."""
_ACTIONS = (
    "BootNotification",
    "Heartbeat",
    "StatusNotification",
    "Authorize",
    "TransactionEvent",
    "MeterValues",
    "NotifyEVChargingNeeds",
    "StartTransaction",
    "StopTransaction",
    "GetConfiguration",
    "Reset",
    "SetChargingProfile",
    "DataTransfer",
    "NoSuchAction",
    "",
)


def _text(rng: random.Random, length: int) -> str:
    """Random valid UTF-8 text: any code point but the surrogates."""
    points = [
        int(0x20 + r * 0x5F) if r < 0.5 else int((r - 0.5) * 2 * 0x110000)
        for r in (rng.random() for _ in range(length))
    ]
    return "".join(chr(0xFFFD if 0xD800 <= p <= 0xDFFF else p) for p in points)


def _random_json(rng: random.Random, depth: int = 0) -> Any:  # noqa: PLR0911 (one per kind)
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.randint(-(2**40), 2**40)
    if kind == 3:
        return rng.choice(_HUGE_NUMBERS)
    if kind == 4:
        return rng.choice((_text(rng, rng.randrange(12)), rng.choice(_UNICODE)))
    if kind == 5:
        return rng.uniform(-1e6, 1e6)
    if kind in (6, 7):
        return {
            rng.choice((_text(rng, 6), "seqNo", "value", "evseId", "customData")): _random_json(
                rng, depth + 1
            )
            for _ in range(rng.randrange(4))
        }
    return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]


def _nested(rng: random.Random) -> Any:
    """A deeply nested value: shallow enough to parse, or far too deep to."""
    depth = rng.choice((50, 200, 5_000, 60_000))
    return json.loads("[" * depth + "]" * depth) if depth <= 200 else _Deep(depth)


@dataclass(frozen=True)
class _Deep:
    """Nesting Python's json cannot build: spliced into the frame's text at the end."""

    depth: int


def _dumps(value: Any) -> str:
    text = json.dumps(value, default=lambda deep: f"@@deep{deep.depth}@@", ensure_ascii=False)
    while "@@deep" in text:
        start = text.index('"@@deep')
        end = text.index('@@"', start) + 3
        depth = int(text[start + 7 : end - 3])
        text = text[:start] + "[" * depth + "]" * depth + text[end:]
    return text


_CAMEL_KEYS: dict[str, str] = {}


def _camel_case(value: Any) -> Any:
    """The ocpp package's snake_case -> camelCase of payload keys, each key converted once."""
    if isinstance(value, dict):
        converted = {}
        for key, item in value.items():
            if key not in _CAMEL_KEYS:
                _CAMEL_KEYS[key] = next(iter(snake_to_camel_case({key: None})))
            converted[_CAMEL_KEYS[key]] = _camel_case(item)
        return converted
    if isinstance(value, list):
        return [_camel_case(item) for item in value]
    return value


class FrameFactory:
    """One station's frames, reproducible from ``rng``; keeps a valid transaction going."""

    def __init__(self, rng: random.Random, version: OcppVersion, tag: str) -> None:
        self.rng = rng
        self.version = version
        self.tag = tag
        self.count = 0
        self.at = NOON - timedelta(hours=3)
        self.transaction = 0
        self.seq_no = 0
        self.import_wh = 1_000.0
        self.export_wh = 0.0
        self.sent: deque[Frame] = deque(maxlen=50)
        self.kinds: Counter[str] = Counter()
        self.kind = ""
        """The kind of the frame :meth:`next` returned last."""
        self.answers_due = 0
        """Frames sent so far that expect an answer (counted by the sender)."""

    def new_id(self) -> str:
        self.count += 1
        return f"{self.tag}-{self.count}"

    def sending_valid(self, unique_id: str, action: str) -> None:
        """A valid request from :meth:`valid` goes out as ``unique_id``."""

    def answered(self, unique_id: str, answer: list[Any]) -> None:
        """The server answered the valid request ``unique_id`` with ``answer``."""

    # valid payloads (camelCase, as on the wire)

    def _meter(self) -> dict[str, Any]:
        self.at += timedelta(milliseconds=500)
        self.import_wh += self.rng.uniform(0, 30)
        self.export_wh += self.rng.uniform(0, 5) if self.rng.random() < 0.3 else 0
        return messages.meter_value(
            at=self.at,
            import_wh=self.import_wh,
            export_wh=self.export_wh,
            power_kw=self.rng.uniform(-7, 11),
            soc=self.rng.random(),
            context="Sample.Periodic",
        )

    def _transaction_event(self) -> dict[str, Any]:
        if self.seq_no == 0:
            self.transaction += 1
            return self._event("Started", "CablePluggedIn", id_token="TAG-1")
        if self.seq_no > self.rng.randrange(3, 20):
            ended = self._event("Ended", "EVDeparted", stopped_reason="EVDisconnected")
            self.seq_no = 0
            return ended
        return self._event("Updated", "MeterValuePeriodic")

    def _event(self, event_type: str, trigger: str, **extra: Any) -> dict[str, Any]:
        payload = messages.transaction_event(
            event_type=event_type,
            at=self.at,
            seq_no=self.seq_no,
            transaction_id=f"{self.tag}-T{self.transaction}",
            trigger_reason=trigger,
            charging_state="Charging",
            meter=self._meter(),
            **extra,
        )
        self.seq_no += 1
        return payload

    def valid(self) -> tuple[str, dict[str, Any]]:
        """A valid request: its action and payload."""
        choice = self.rng.randrange(10)
        payload: dict[str, Any]
        if choice == 0:
            action, payload = "Heartbeat", {}
        elif choice == 1:
            action = "BootNotification"
            payload = messages.boot_notification(station_id=self.tag, first=False)
        elif choice == 2:
            action = "StatusNotification"
            payload = messages.status_notification(at=self.at, occupied=True)
        elif choice == 3:
            action, payload = "Authorize", {"id_token": {"id_token": "TAG-1", "type": "Local"}}
        elif choice == 4:
            action = "MeterValues"
            payload = {"evse_id": 1, "meter_value": [self._meter()]}
        elif choice == 5:
            action = "NotifyEVChargingNeeds"
            vehicle = messages.Vehicle(
                id_token="TAG-1",
                model="fuzz",
                battery_kwh=60.0,
                arrival_soc=0.3,
                target_soc=0.9,
                min_soc=0.2,
                max_charge_kw=11.0,
                max_discharge_kw=11.0,
                arrived_at=self.at,
                departure_at=self.at + timedelta(hours=4),
            )
            payload = messages.charging_needs(
                vehicle=vehicle, energy_kwh=20.0, version=self.version, dc=self.rng.random() < 0.3
            )
        else:
            action, payload = "TransactionEvent", self._transaction_event()
        camel: dict[str, Any] = _camel_case(payload)
        return action, camel

    # mutations

    def _mutate_value(self, value: Any) -> Any:  # noqa: PLR0911 (one per mutation)
        """``value`` with one element dropped, added or changed somewhere inside it."""
        if isinstance(value, dict) and value and self.rng.random() < 0.6:
            key = self.rng.choice(list(value))
            copy = dict(value)
            copy[key] = self._mutate_value(copy[key])
            return copy
        if isinstance(value, list) and value and self.rng.random() < 0.6:
            copy_list = list(value)
            index = self.rng.randrange(len(copy_list))
            copy_list[index] = self._mutate_value(copy_list[index])
            return copy_list
        operation = self.rng.randrange(7)
        if isinstance(value, dict) and operation < 2:
            copy = dict(value)
            if operation == 0 and copy:
                del copy[self.rng.choice(list(copy))]
            else:
                copy[self.rng.choice(("extra", "customData", "seqNo", _text(self.rng, 4)))] = (
                    _random_json(self.rng)
                )
            return copy
        if operation == 2:
            return self.rng.choice(_HUGE_NUMBERS)
        if operation == 3:
            return self.rng.choice(_UNICODE) * self.rng.choice((1, 3, 1000))
        if operation == 4:
            return _nested(self.rng)
        if operation == 5 and isinstance(value, int | float) and not isinstance(value, bool):
            return -value if self.rng.random() < 0.5 else str(value)
        if operation == 5 and isinstance(value, str):
            return self._mutate_text(value)
        return _random_json(self.rng)

    def _mutate_text(self, value: str) -> Any:
        """A number written as a string made odd or a number; a dateTime made odd, or
        written otherwise (naive, nanoseconds, another offset)."""
        if value[:4].isdigit() and "T" in value:
            try:
                moment = datetime.fromisoformat(value).astimezone(UTC)
            except ValueError:
                return self.rng.choice(_TIME_TEXTS)
            return self.rng.choice(
                (
                    *_TIME_TEXTS,
                    moment.replace(tzinfo=None).isoformat(),
                    moment.strftime("%Y-%m-%dT%H:%M:%S.%f789Z"),
                    moment.astimezone(timezone(timedelta(hours=14))).isoformat(),
                    moment.astimezone(timezone(timedelta(hours=-12))).isoformat(),
                    *((moment + error).isoformat() for error in _CLOCK_ERRORS),
                )
            )
        try:
            number = float(value)
        except ValueError:
            return _random_json(self.rng)
        return self.rng.choice((*_NUMBER_TEXTS, number, str(-number)))

    def _mutated(self) -> Frame:
        action, payload = self.valid()
        unique_id: Any = self.new_id()
        frame: list[Any] = [2, unique_id, action, payload]
        operation = self.rng.randrange(12)
        if operation < 6:
            frame[3] = self._mutate_value(payload)
        elif operation == 6:
            frame[0] = self.rng.choice((3, 4, 5, 0, -2, 2.0, "2", None, [2], True))
        elif operation == 7:
            frame[2] = self.rng.choice((*_ACTIONS, 7, None, {"a": 1}, self.rng.choice(_UNICODE)))
        elif operation == 8:
            frame[1] = self.rng.choice(
                (7, None, 2.5, ["x"], {"id": 1}, "", "x" * 40, self.rng.choice(_UNICODE))
            )
        elif operation == 9:
            del frame[self.rng.randrange(len(frame))]
        elif operation == 10:
            frame.append(_random_json(self.rng))
        else:
            frame[3] = self.rng.choice(([], "payload", 7, None, [payload]))
        return _dumps(frame)

    def _answer_to_nothing(self) -> Frame:
        unique_id = self.rng.choice((self.new_id(), "nobody-asked", "-1"))
        if self.rng.random() < 0.5:
            return _dumps([3, unique_id, _random_json(self.rng)])
        code = self.rng.choice(("InternalError", "NotSupported", "Nonsense", 7))
        return _dumps([4, unique_id, code, _text(self.rng, 10), {}])

    def next(self) -> Frame:
        """The next frame (its kind in :attr:`kind`)."""
        roll = self.rng.random()
        frame: Frame
        if roll < 0.06:
            self.kind = "random bytes"
            frame = self.rng.randbytes(self.rng.randrange(1, 300))
        elif roll < 0.12:
            self.kind = "random text"
            frame = _text(self.rng, self.rng.randrange(0, 300))
        elif roll < 0.22:
            self.kind = "random JSON"
            value = _random_json(self.rng)
            if self.rng.random() < 0.5:
                tail = [_random_json(self.rng, 3) for _ in range(self.rng.randrange(4))]
                value = [self.rng.choice((2, 3, 4)), self.new_id(), *tail]
            frame = _dumps(value)
        elif roll < 0.38:
            self.kind = "valid"
            action, payload = self.valid()
            unique_id = self.new_id()
            self.sending_valid(unique_id, action)
            frame = _dumps([2, unique_id, action, payload])
        elif roll < 0.88:
            self.kind = "mutated"
            frame = self._mutated()
        elif roll < 0.93:
            self.kind = "answer to nothing"
            frame = self._answer_to_nothing()
        else:
            self.kind = "replay"
            frame = self.rng.choice(self.sent) if self.sent else _dumps([2, "r", "Heartbeat", {}])
        if isinstance(frame, str) and len(frame) > MAX_FRAME_CHARS:
            self.kind = "oversized, replaced"
            frame = _dumps([2, self.new_id(), "Heartbeat", {"pad": "x" * 100}])
        self.kinds[self.kind] += 1
        self.sent.append(frame)
        return frame


def _stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _payload16(request: object) -> dict[str, Any]:
    """An ``ocpp.v16.call`` request's payload as on the wire (camelCase, no ``None``)."""
    camel: dict[str, Any] = _camel_case(remove_nones(serialize_as_dict(request)))
    return camel


class FrameFactory16(FrameFactory):
    """A 1.6 station's frames: the same mix, its own valid messages.

    The server assigns the transaction ids: the valid MeterValues and StopTransaction
    that follow a valid StartTransaction use the id its answer returned (a MeterValues now
    and then one of an earlier transaction). The id is taken once :data:`WINDOW` more
    frames that expect an answer have gone out after the start (:attr:`answers_due`): by
    then its answer has come whatever the timing (the window had to make room for them,
    and answers come in order), so the frames do not depend on when answers arrive. Only
    a message sent valid moves the transaction on (a mutated StopTransaction leaves it
    open); the meter's registers only go forward, whatever the message.
    """

    def __init__(self, rng: random.Random, tag: str) -> None:
        super().__init__(rng, OcppVersion.V16, tag)
        self.import_register_wh = 1_000
        self.export_register_wh = 0
        self.returned_ids: list[int] = []
        """The transaction ids the server returned to valid StartTransactions, in order."""
        self.open_id: int | None = None
        self.readings = 0
        """MeterValues made for the open transaction."""
        self.starting = ""
        """The message id of the valid StartTransaction whose id is awaited ("": none)."""
        self.start_answered: int | None = None
        """The transaction id its answer returned, once it has come."""
        self.start_known_at = 0
        """The :attr:`answers_due` by which its answer has come for sure."""
        self.step = ""
        """What the message :meth:`valid` made last does to the transaction, once sent."""

    def sending_valid(self, unique_id: str, action: str) -> None:
        if self.step == "start":
            self.starting, self.start_answered = unique_id, None
            self.start_known_at = self.answers_due + 1 + WINDOW
        elif self.step == "reading":
            self.readings += 1
        elif self.step == "stop":
            self.open_id = None
        self.step = ""

    def answered(self, unique_id: str, answer: list[Any]) -> None:
        if unique_id != self.starting or self.start_answered is not None:
            return
        returned = answer[2].get("transactionId") if answer[0] == 3 else None
        if isinstance(returned, int) and not isinstance(returned, bool):
            self.start_answered = returned

    def _take_started(self) -> None:
        """Open the transaction the awaited StartTransaction's answer named (none: the
        start failed, a new one is made)."""
        if self.start_answered is not None:
            self.returned_ids.append(self.start_answered)
            self.open_id, self.readings = self.start_answered, 0
        self.starting = ""

    def _meter16(self) -> datatypes_v16.MeterValue:
        self.at += timedelta(milliseconds=500)
        self.import_register_wh += self.rng.randrange(31)
        if self.rng.random() < 0.3:
            self.export_register_wh += self.rng.randrange(6)
        # The export register now in Wh, now in kWh (exact to the Wh either way).
        export = (
            datatypes_v16.SampledValue(
                value=str(self.export_register_wh),
                measurand="Energy.Active.Export.Register",
                unit="Wh",
            )
            if self.rng.random() < 0.5
            else datatypes_v16.SampledValue(
                value=f"{self.export_register_wh / 1000:.3f}",
                measurand="Energy.Active.Export.Register",
                unit="kWh",
            )
        )
        return datatypes_v16.MeterValue(
            timestamp=_stamp(self.at),
            sampled_value=[
                datatypes_v16.SampledValue(
                    value=str(self.import_register_wh),
                    context="Sample.Periodic",
                    measurand="Energy.Active.Import.Register",
                    unit="Wh",
                ),
                export,
                datatypes_v16.SampledValue(
                    value=f"{self.rng.uniform(-7_000, 11_000):.1f}",
                    measurand="Power.Active.Import",
                    unit="W",
                ),
                datatypes_v16.SampledValue(
                    value=str(self.rng.randrange(101)), measurand="SoC", unit="Percent"
                ),
            ],
        )

    def _transaction_message(self) -> object | None:
        """The next message of the station's transaction; ``None`` while its start waits
        for the server's answer."""
        if self.starting:
            if self.answers_due < self.start_known_at:
                return None
            self._take_started()
        if self.open_id is None:
            self.at += timedelta(milliseconds=500)
            self.step = "start"
            start: object = call_v16.StartTransaction(
                connector_id=1,
                id_tag="TAG-1",
                meter_start=self.import_register_wh,
                timestamp=_stamp(self.at),
            )
            return start
        # Shorter than a 2.x station's: more starts and stops, each with an id to wait for.
        if self.readings > self.rng.randrange(3, 12):
            meter = self._meter16()
            stop: object = call_v16.StopTransaction(
                meter_stop=self.import_register_wh,
                timestamp=meter.timestamp,
                transaction_id=self.open_id,
                reason="EVDisconnected",
                id_tag="TAG-1",
                transaction_data=[meter],
            )
            self.step = "stop"
            return stop
        self.step = "reading"
        transaction_id = self.open_id
        if self.rng.random() < 0.1:
            transaction_id = self.rng.choice(self.returned_ids)
        reading: object = call_v16.MeterValues(
            connector_id=1, meter_value=[self._meter16()], transaction_id=transaction_id
        )
        return reading

    def valid(self) -> tuple[str, dict[str, Any]]:
        """A valid 1.6 request: its action and payload."""
        choice = self.rng.randrange(10)
        self.step = ""
        request = self._transaction_message() if choice >= 6 else None
        if request is None:
            request = self._other_message(choice % 6)
        return type(request).__name__, _payload16(request)

    def _other_message(self, choice: int) -> object:
        if choice == 0:
            return call_v16.Heartbeat()
        if choice == 1:
            return call_v16.BootNotification(
                charge_point_model="F16", charge_point_vendor="Fuzz", firmware_version="1.6.0"
            )
        if choice == 2:
            return call_v16.StatusNotification(
                connector_id=1,
                error_code="NoError",
                status=self.rng.choice(("Available", "Preparing", "Charging", "Finishing")),
                timestamp=_stamp(self.at),
            )
        if choice == 3:
            return call_v16.Authorize(id_tag="TAG-1")
        if choice == 4:
            return call_v16.DataTransfer(vendor_id="org.fuzz", message_id="probe", data="{}")
        # Readings of the connector, not of a transaction (stored with the one open on it).
        return call_v16.MeterValues(connector_id=1, meter_value=[self._meter16()])


STATION_CONFIGURATION = {
    "ChargingScheduleAllowedChargingRateUnit": "Power",
    "ConnectorPhaseRotation": "1.RST",
    "NumberOfConnectors": "1",
}
"""A 1.6 station's configuration, as it answers GetConfiguration."""


def station_answer(action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """What a 1.6 station answers the server's request (``None``: it does not do that)."""
    if action == "GetConfiguration":
        asked = payload.get("key") or list(STATION_CONFIGURATION)
        answer: dict[str, Any] = {
            "configurationKey": [
                {"key": key, "readonly": True, "value": STATION_CONFIGURATION[key]}
                for key in asked
                if key in STATION_CONFIGURATION
            ]
        }
        unknown = [key for key in asked if key not in STATION_CONFIGURATION]
        if unknown:
            answer["unknownKey"] = unknown
        return answer
    if action in ("SetChargingProfile", "ClearChargingProfile"):
        return {"status": "Accepted"}
    return None


def _reply(request: list[Any]) -> str:
    """The frame a station answers the server's request ``[2, id, action, payload]`` with."""
    _, unique_id, action, payload = request
    answer = station_answer(action, payload)
    if answer is None:
        return json.dumps([4, unique_id, "NotImplemented", f"{action} is not simulated", {}])
    return json.dumps([3, unique_id, answer])


# --- the run ----------------------------------------------------------------------------


@dataclass
class Tally:
    """What one station's connection saw."""

    frames: int = 0
    expected_answers: int = 0
    answers: int = 0
    call_results: int = 0
    call_errors: Counter[str] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)
    reconnects: int = 0
    lost_to_close: int = 0
    close_codes: list[int | None] = field(default_factory=list)
    server_requests: Counter[str] = field(default_factory=Counter)
    """The server's own requests, answered (never counted as answers)."""
    valid_refused: Counter[str] = field(default_factory=Counter)
    """Valid requests answered with a CallError, by action and code."""
    foreign_codes: Counter[str] = field(default_factory=Counter)
    """CallError codes that are not of the connection's OCPP version."""
    internal_errors: list[str] = field(default_factory=list)
    """The first frames answered with an InternalError, with the answer."""
    transaction_ids: list[int] = field(default_factory=list)
    """A 1.6 station's transaction ids as the server returned them."""


@dataclass(frozen=True)
class _Sent:
    """A frame that expects an answer: what it must get, and what it was."""

    expected: Expected
    kind: str
    frame: Frame


def _shown(frame: Frame, chars: int = 300) -> str:
    return repr(frame[:chars])


class _Link:
    """One websocket connection with its reader task and expected answers in order.

    The server's own requests (type 2) are answered at once with :func:`station_answer`
    and skipped: they are not answers to this station's frames.
    """

    def __init__(
        self,
        ws: ClientConnection,
        tally: Tally,
        on_answer: Callable[[str, list[Any]], None] | None = None,
    ) -> None:
        self.ws = ws
        self.tally = tally
        self.on_answer = on_answer
        self.pending: deque[_Sent] = deque()
        self.window = asyncio.Semaphore(WINDOW)
        self.drained = asyncio.Event()
        self.closed = asyncio.Event()
        self.last_request_s = 0.0
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if message[0] == 2:
                    await self._answer_request(message)
                else:
                    self._match(message, raw)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self.drained.set()
            for _ in range(WINDOW):  # a sender waiting for room learns of the close
                self.window.release()

    async def _answer_request(self, request: list[Any]) -> None:
        self.tally.server_requests[request[2]] += 1
        self.last_request_s = time.monotonic()
        await self.ws.send(_reply(request))

    def _match(self, answer: list[Any], raw: Frame) -> None:
        tally = self.tally
        tally.answers += 1
        if not self.pending:
            tally.mismatches.append(f"unexpected answer {_shown(raw)}")
            return
        sent = self.pending.popleft()
        expected = sent.expected
        self.window.release()
        if not self.pending:
            self.drained.set()
        if answer[0] == 4:
            tally.call_errors[answer[2]] += 1
            if answer[2] == "InternalError" and len(tally.internal_errors) < 5:
                tally.internal_errors.append(f"{_shown(sent.frame)} -> {_shown(raw)}")
            if sent.kind == "valid":
                tally.valid_refused[f"{json.loads(sent.frame)[2]} {answer[2]}"] += 1
        elif answer[0] == 3:
            tally.call_results += 1
        if answer[0] == 4 and answer[2] not in ERROR_CODES[expected.version]:
            tally.foreign_codes[answer[2]] += 1
        good_type = answer[0] == 4 or (answer[0] == 3 and not expected.error_only)
        good_code = answer[0] != 4 or expected.error_code in (None, answer[2])
        if not good_type or not good_code or answer[1] != expected.unique_id:
            tally.mismatches.append(f"{_shown(sent.frame)}: expected {expected}, got {_shown(raw)}")
        elif sent.kind == "valid" and self.on_answer is not None:
            self.on_answer(expected.unique_id, answer)

    async def send(self, frame: Frame, expected: Expected | None, kind: str = "") -> None:
        if expected is not None:
            await self.window.acquire()
            if self.closed.is_set():
                raise ConnectionClosed(None, None)
            self.pending.append(_Sent(expected, kind, frame))
            self.drained.clear()
        await self.ws.send(frame)

    async def settle(self) -> None:
        """Wait until the server has sent a request and then none for :data:`QUIET_S` (a
        1.6 station's connection: the server configures it after its first message)."""
        deadline_s = time.monotonic() + ANSWER_TIMEOUT_S
        while time.monotonic() < deadline_s:
            quiet = time.monotonic() - self.last_request_s > QUIET_S
            if self.closed.is_set() or (self.tally.server_requests and quiet):
                return
            await asyncio.sleep(0.05)
        pytest.fail(f"the server never stopped sending requests: {self.tally.server_requests}")


def _connect(url: str, station_id: str, version: OcppVersion) -> Any:
    return connect(
        f"{url}/ocpp/{station_id}",
        subprotocols=[Subprotocol(version.value)],
        additional_headers={"Authorization": basic_header(station_id, PASSWORD)},
        max_size=None,
        compression=None,
    )


async def _open(
    url: str,
    station_id: str,
    version: OcppVersion,
    tally: Tally,
    on_answer: Callable[[str, list[Any]], None] | None = None,
) -> _Link:
    for _ in range(500):
        try:
            return _Link(await _connect(url, station_id, version), tally, on_answer)
        except InvalidStatus:  # 409 until the server has let the old connection go
            await asyncio.sleep(0.01)
    pytest.fail(f"{station_id} cannot connect again")


async def _finish(link: _Link, station_id: str, version: OcppVersion) -> None:
    """Send a last Heartbeat, wait for every answer (and for a 1.6 station, until the
    server has done configuring it), then close."""
    final = Expected(f"{station_id}-final", error_only=False, version=version)
    await link.send(json.dumps([2, final.unique_id, "Heartbeat", {}]), final, "final")
    link.tally.expected_answers += 1
    try:
        await asyncio.wait_for(link.drained.wait(), ANSWER_TIMEOUT_S)
    except TimeoutError:
        pending = link.pending[0].expected if link.pending else None
        pytest.fail(f"{station_id}: {len(link.pending)} answers missing, first {pending}")
    if version is OcppVersion.V16:
        await link.settle()
    await link.ws.close()
    await link.reader


async def _fuzz_station(
    url: str, station_id: str, version: OcppVersion, frames: int, seed: int
) -> tuple[Tally, Counter[str]]:
    rng = random.Random(f"{seed}-{station_id}")
    factory = (
        FrameFactory16(rng, station_id)
        if version is OcppVersion.V16
        else FrameFactory(rng, version, station_id)
    )
    tally = Tally()
    link = await _open(url, station_id, version, tally, factory.answered)
    for _ in range(frames):
        frame = factory.next()
        expected = expected_answer(frame, version)
        tally.frames += 1
        tally.expected_answers += expected is not None
        factory.answers_due += expected is not None
        try:
            if link.closed.is_set():
                raise ConnectionClosed(None, None)
            await link.send(frame, expected, factory.kind)
        except ConnectionClosed:
            # The server may end a connection (it must not for this mix): count it, go on.
            await link.reader
            tally.reconnects += 1
            tally.lost_to_close += len(link.pending)
            tally.close_codes.append(link.ws.close_code)
            link = await _open(url, station_id, version, tally, factory.answered)
    await _finish(link, station_id, version)
    if isinstance(factory, FrameFactory16):
        tally.transaction_ids = factory.returned_ids
    return tally, factory.kinds


def fuzz_client(
    url: str, station_id: str, version: str, frames: int, seed: int
) -> tuple[Tally, Counter[str]]:
    """One station's fuzzing in a process of its own (the server keeps a core to itself)."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return asyncio.run(_fuzz_station(url, station_id, OcppVersion(version), frames, seed))


async def _heartbeat_on_a_new_connection(url: str, station_id: str, version: OcppVersion) -> Tally:
    """What a new connection's Heartbeat gets, with the requests the server sends."""
    tally = Tally()
    link = await _open(url, station_id, version, tally)
    await _finish(link, station_id, version)
    return tally


@pytest.fixture
def fast_data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data folder in memory (/dev/shm) when there is one: fsync costs nothing there."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        yield tmp_path / "data"
        return
    folder = Path(tempfile.mkdtemp(prefix="v2ghub-fuzz-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def store(fast_data_dir: Path) -> Iterator[Store]:
    with Store.open(data_dir=fast_data_dir) as opened:
        for station_id in STATIONS:
            opened.add_station(
                station_id, site_id="s1", password_hash=hash_password(PASSWORD), v2x_allowed=True
            )
        yield opened


@pytest.fixture
async def server(store: Store, tmp_path: Path) -> AsyncIterator[CsmsServer]:
    settings = ServerSettings(host="127.0.0.1", port=0, tls_folder=tmp_path / "tls")
    async with CsmsServer(store, settings, clock=ScaledClock(NOON)) as running:
        yield running


def _backwards(samples: list[MeterSample]) -> list[str]:
    """Where registers fall: transaction events in ``seq_no`` order, MeterValues in time."""
    problems = []
    events = sorted((s for s in samples if s.seq_no >= 0), key=lambda s: (s.seq_no, s.measured_at))
    readings = sorted((s for s in samples if s.seq_no < 0), key=lambda s: s.measured_at)
    for ordered in (events, readings):
        for before, after in itertools.pairwise(ordered):
            if (
                after.import_register_wh < before.import_register_wh
                or after.export_register_wh < before.export_register_wh
            ):
                problems.append(f"{before} then {after}")
    return problems


def _outside_readings(store: Store) -> dict[tuple[str, int], list[MeterSample]]:
    """Each EVSE's readings outside any transaction, in time order."""
    values = schema.meter_values.c
    query = (
        sa.select(schema.meter_values)
        .where(values.transaction_id == schema.NO_TRANSACTION)
        .order_by(values.station_id, values.evse_id, values.measured_at)
    )
    readings: dict[tuple[str, int], list[MeterSample]] = {}
    with store.engine.connect() as connection:
        for row in connection.execute(query):
            readings.setdefault((row.station_id, row.evse_id), []).append(
                MeterSample(
                    station_id=row.station_id,
                    transaction_id=row.transaction_id,
                    seq_no=row.seq_no,
                    measured_at=row.measured_at,
                    import_register_wh=row.import_register_wh,
                    export_register_wh=row.export_register_wh,
                )
            )
    return readings


def _shares(frames: int, stations: int) -> list[int]:
    """``frames`` split among ``stations`` as evenly as can be.

    >>> _shares(100_000, 3)
    [33334, 33333, 33333]
    """
    return [frames // stations + (i < frames % stations) for i in range(stations)]


async def test_the_server_survives_100k_fuzzed_frames(
    server: CsmsServer, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    for name in NOISY_LOGGERS:
        caplog.set_level(logging.CRITICAL, logger=name)
    began = time.perf_counter()
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(STATIONS), mp_context=context) as clients:
        results = await asyncio.gather(
            *(
                loop.run_in_executor(
                    clients, fuzz_client, server.url, station_id, version.value, frames, SEED
                )
                for (station_id, version), frames in zip(
                    STATIONS.items(), _shares(FRAMES, len(STATIONS)), strict=True
                )
            )
        )
    seconds = time.perf_counter() - began
    tallies = {station_id: tally for station_id, (tally, _) in zip(STATIONS, results, strict=True)}
    kinds = sum((station_kinds for _, station_kinds in results), Counter[str]())
    report = {
        station_id: {
            "frames": t.frames,
            "expected answers": t.expected_answers,
            "answers": t.answers,
            "call results": t.call_results,
            "call errors": dict(t.call_errors.most_common()),
            "valid requests refused": dict(t.valid_refused.most_common()),
            "server requests answered": dict(t.server_requests),
            "codes not of the version": dict(t.foreign_codes),
            "transactions started": len(t.transaction_ids),
            "reconnects": t.reconnects,
            "internal errors (first)": t.internal_errors,
        }
        for station_id, t in tallies.items()
    }
    print(f"\nfuzz: {FRAMES} frames in {seconds:.1f} s; mix {dict(kinds)}")
    print(json.dumps(report, indent=1, ensure_ascii=False))

    for station_id, tally in tallies.items():
        assert tally.mismatches == [], (station_id, tally.mismatches[:5])
        assert set(tally.foreign_codes) <= NOT_YET_ITS_VERSIONS_CODE[STATIONS[station_id]]
        assert tally.reconnects == 0, (station_id, tally.close_codes)
        assert tally.answers == tally.expected_answers, station_id
    assert sum(t.frames for t in tallies.values()) == FRAMES
    # The mix reached the handlers, not only the parser.
    assert all(t.call_results > 1_000 for t in tallies.values())
    # The 1.6 station was configured, and its transactions ran on the ids it was given.
    station16 = tallies["FZ-16"]
    assert station16.server_requests["GetConfiguration"] > 0
    assert station16.server_requests["SetChargingProfile"] > 0
    assert station16.server_requests["ClearChargingProfile"] > 0
    assert len(set(station16.transaction_ids)) > 50

    # Still serving: a new connection of each version has its Heartbeat answered, and a
    # 1.6 one is configured again.
    for station_id, version in STATIONS.items():
        after = await _heartbeat_on_a_new_connection(server.url, station_id, version)
        assert (after.call_results, after.mismatches) == (1, []), station_id
        if version is OcppVersion.V16:
            assert after.server_requests == {"GetConfiguration": 1, "SetChargingProfile": 1}

    sessions = store.sessions()
    assert len(sessions) > 100
    problems = []
    for session in sessions:
        problems += _backwards(store.meter_samples(session.station_id, session.transaction_id))
    assert problems == []
    # Readings outside any transaction never go backwards either, whatever the clocks said.
    outside = _outside_readings(store)
    counts = {f"{station_id}/{evse_id}": len(v) for (station_id, evse_id), v in outside.items()}
    print(f"readings outside a transaction per EVSE: {counts}")
    for (station_id, evse_id), readings in outside.items():
        assert _backwards(readings) == [], (station_id, evse_id)
    assert store.count_meter_values() > 1_000
    # The registers checked above include the 1.6 station's transactions, many readings.
    readings16 = sum(
        len(store.meter_samples("FZ-16", str(transaction_id)))
        for transaction_id in set(station16.transaction_ids)
    )
    print(f"FZ-16: {len(set(station16.transaction_ids))} transactions, {readings16} readings")
    assert readings16 > 500


@given(st.one_of(st.text(), st.binary()))
def test_a_message_id_is_read_from_any_frame(frame: str | bytes) -> None:
    unique_id = _message_id(frame)
    assert isinstance(unique_id, str)
    assert len(unique_id) <= 36


def test_a_message_id_is_read_from_frames_nested_too_deep() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert _message_id(deep) == "-1"
    assert _message_id(f'[2,"deep-1","Heartbeat",{deep}]') == "-1"


# --- what the fuzzing found ---------------------------------------------------------------


async def test_a_binary_frame_that_is_not_utf8_gets_a_call_error(server: CsmsServer) -> None:
    """It used to end the connection: the CallError's details held the raw bytes."""
    async with _connect(server.url, "FZ-21", OcppVersion.V21) as ws:
        await ws.send(b"\xff\xfe\xfd not UTF-8")
        assert json.loads(await ws.recv())[:3] == [4, "-1", "FormatViolation"]
        await ws.send(json.dumps([2, "h1", "Heartbeat", {}]))
        assert json.loads(await ws.recv())[:2] == [3, "h1"]


async def test_a_frame_nested_too_deep_to_parse_gets_a_call_error(server: CsmsServer) -> None:
    """It used to end the connection: reading its message id hit the recursion limit."""
    deep = "[" * 100_000 + "]" * 100_000
    async with _connect(server.url, "FZ-21", OcppVersion.V21) as ws:
        await ws.send(f'[2,"deep-1","Heartbeat",{{"customData":{deep}}}]')
        assert json.loads(await ws.recv())[:3] == [4, "-1", "FormatViolation"]
        await ws.send(json.dumps([2, "h2", "Heartbeat", {}]))
        assert json.loads(await ws.recv())[:2] == [3, "h2"]


async def test_a_call_with_an_action_not_a_string_is_answered_with_its_id(
    server: CsmsServer,
) -> None:
    async with _connect(server.url, "FZ-201", OcppVersion.V201) as ws:
        await ws.send(json.dumps([2, "x1", 5, {}]))
        assert json.loads(await ws.recv())[:3] == [4, "x1", "ProtocolError"]


async def test_a_call_error_does_not_echo_the_frame(server: CsmsServer) -> None:
    """The details name the cause, cut short; the frame (up to 256 KiB) is not sent back."""
    async with _connect(server.url, "FZ-21", OcppVersion.V21) as ws:
        padding = "\U0001f50b" * 30_000
        frame = json.dumps([2, "b1", "BootNotification", {"reason": padding}], ensure_ascii=False)
        await ws.send(frame)
        raw = await ws.recv()
        error = json.loads(raw)
        assert error[:2] == [4, "b1"]
        assert "ocpp_message" not in error[4]
        assert len(raw) < 5_000  # the cause is cut to 255 characters


async def _ask(ws: ClientConnection, unique_id: str, action: str, payload: dict[str, Any]) -> Any:
    """Send one request and return its answer; the server's own requests meanwhile are
    answered as a station would."""
    await ws.send(json.dumps([2, unique_id, action, payload]))
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message[0] != 2:
            return message
        await ws.send(_reply(message))


async def _start16(ws: ClientConnection, at: datetime) -> int:
    """Start a transaction on connector 1 of a 1.6 station; the id the server gave it."""
    start = call_v16.StartTransaction(
        connector_id=1, id_tag="TAG-1", meter_start=1_000, timestamp=_stamp(at)
    )
    answer = await _ask(ws, "start", "StartTransaction", _payload16(start))
    assert answer[0] == 3, answer
    transaction_id: int = answer[2]["transactionId"]
    return transaction_id


def _meter_values16(at: datetime, import_wh: int, transaction_id: int | None) -> dict[str, Any]:
    registers = [
        datatypes_v16.SampledValue(
            value=str(import_wh), measurand="Energy.Active.Import.Register", unit="Wh"
        ),
        datatypes_v16.SampledValue(value="0", measurand="Energy.Active.Export.Register", unit="Wh"),
    ]
    reading = datatypes_v16.MeterValue(timestamp=_stamp(at), sampled_value=registers)
    return _payload16(
        call_v16.MeterValues(connector_id=1, meter_value=[reading], transaction_id=transaction_id)
    )


TOO_BIG = 2**63
"""One more than the largest integer a 64-bit database column holds."""
LATER = "2026-07-01T01:00:10Z"
_STATUS = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
_FOUND_16 = [
    pytest.param(
        "StatusNotification",
        {**_STATUS, "timestamp": "2026-02-30T00:00:00Z"},
        "timestamp",
        id="impossible-date",
    ),
    pytest.param(
        "MeterValues",
        {
            "connectorId": 1,
            "meterValue": [
                {
                    "timestamp": LATER,
                    "sampledValue": [
                        {"value": "NaN", "measurand": "Energy.Active.Import.Register"}
                    ],
                }
            ],
        },
        "value",
        id="register-not-a-number",
    ),
    pytest.param(
        "MeterValues",
        {**_meter_values16(NOON - timedelta(hours=3), 1_100, None), "connectorId": TOO_BIG},
        "connectorId",
        id="connector-beyond-64-bits",
    ),
    pytest.param(
        "StatusNotification",
        {**_STATUS, "connectorId": TOO_BIG},
        "connectorId",
        id="status-connector-beyond-64-bits",
    ),
    pytest.param(
        "StopTransaction",
        {"meterStop": TOO_BIG, "timestamp": LATER, "transactionId": "started"},
        "meterStop",
        id="meter-stop-beyond-64-bits",
    ),
    pytest.param(
        "StatusNotification",
        {**_STATUS, "timestamp": "9999-12-31T23:59:59-14:00"},
        "timestamp",
        id="time-past-year-9999-in-utc",
    ),
    pytest.param(
        "StopTransaction",
        {"meterStop": 1_200, "timestamp": "0001-01-01T00:00:00+14:00", "transactionId": 1},
        "timestamp",
        id="time-before-year-1-in-utc",
    ),
]


@pytest.mark.parametrize(("action", "payload", "field_name"), _FOUND_16)
async def test_a_16_frame_a_handler_refuses_gets_a_16_error_code(
    server: CsmsServer, action: str, payload: dict[str, Any], field_name: str
) -> None:
    """The fuzzing's 1.6 frames that pass the schema but that a handler cannot take: each
    gets a CallError in 1.6's spelling that names the field, not an InternalError, and
    the connection stays up."""
    async with _connect(server.url, "FZ-16", OcppVersion.V16) as ws:
        started = await _start16(ws, NOON - timedelta(hours=3))
        if payload.get("transactionId") == "started":
            payload = {**payload, "transactionId": started}
        answer = await _ask(ws, "found-1", action, payload)
        assert answer[:2] == [4, "found-1"], answer
        assert answer[2] in ERROR_CODES[OcppVersion.V16] - {"InternalError"}, answer
        assert field_name in answer[3], answer
        assert (await _ask(ws, "beat", "Heartbeat", {}))[:2] == [3, "beat"]


def _started_event(transaction_id: str, *, import_wh: float) -> dict[str, Any]:
    at = NOON - timedelta(hours=3)
    meter = messages.meter_value(
        at=at, import_wh=import_wh, export_wh=0, power_kw=7, soc=0.5, context="Transaction.Begin"
    )
    event = messages.transaction_event(
        event_type="Started",
        at=at,
        seq_no=0,
        transaction_id=transaction_id,
        trigger_reason="CablePluggedIn",
        charging_state="Charging",
        meter=meter,
        id_token="TAG-1",
    )
    camel: dict[str, Any] = _camel_case(event)
    return camel


async def test_one_event_that_cannot_be_stored_fails_no_other(server: CsmsServer) -> None:
    """A 2.0.1 station's TransactionEvent whose register does not fit 64 bits, committed
    in one group with a 1.6 station's valid MeterValues: the 1.6 station's is stored and
    acknowledged all the same."""
    at = NOON - timedelta(hours=3)
    async with (
        _connect(server.url, "FZ-21", OcppVersion.V21) as ws21,
        _connect(server.url, "FZ-201", OcppVersion.V201) as ws201,
        _connect(server.url, "FZ-16", OcppVersion.V16) as ws16,
    ):
        transaction_id = await _start16(ws16, at)
        reading = _meter_values16(at + timedelta(seconds=10), 1_100, transaction_id)
        # The store's writer is kept busy while "first" is committed on its own: the two
        # events that come meanwhile are committed together after it.
        busy = asyncio.create_task(server.write(lambda _: time.sleep(1.5)))
        await asyncio.sleep(0.1)
        first = _started_event("first", import_wh=0)
        answer_first = asyncio.create_task(_ask(ws21, "first", "TransactionEvent", first))
        await asyncio.sleep(0.3)
        answer_bad, answer_reading = await asyncio.gather(
            _ask(ws201, "bad", "TransactionEvent", _started_event("bad", import_wh=1e19)),
            _ask(ws16, "reading", "MeterValues", reading),
        )
        assert (await answer_first)[:2] == [3, "first"]
        await busy
    assert answer_bad[:2] == [4, "bad"]
    assert answer_reading == [3, "reading", {}]


async def test_a_reading_outside_a_transaction_is_checked_against_its_neighbours(
    server: CsmsServer,
) -> None:
    """Two readings of a 1.6 connector with no transaction, the second measured before
    the first with higher registers (a station clock set wrong): the second is refused,
    as it would be within a transaction."""
    at = NOON - timedelta(hours=3)
    async with _connect(server.url, "FZ-16", OcppVersion.V16) as ws:
        later = _meter_values16(at + timedelta(seconds=10), 2_000, None)
        assert await _ask(ws, "later", "MeterValues", later) == [3, "later", {}]
        earlier = _meter_values16(at, 5_000, None)
        answer = await _ask(ws, "earlier", "MeterValues", earlier)
    assert answer[:3] == [4, "earlier", "PropertyConstraintViolation"]


async def test_a_transactions_readings_never_go_backwards_whichever_message_brings_them(
    server: CsmsServer, store: Store
) -> None:
    """A 1.6 transaction's readings come as MeterValues of the connector (stored with the
    transaction open on it) and as MeterValues naming the transaction (stored as its
    events); one from a clock set three hours ahead must not let later ones go backwards."""
    at = NOON - timedelta(hours=3)
    async with _connect(server.url, "FZ-16", OcppVersion.V16) as ws:
        transaction_id = await _start16(ws, at)
        readings = (
            _meter_values16(NOON, 1_100, None),  # the clock three hours ahead
            _meter_values16(at + timedelta(seconds=10), 1_200, transaction_id),
            _meter_values16(at + timedelta(seconds=20), 1_300, None),
        )
        answers = [
            await _ask(ws, f"r{i}", "MeterValues", reading) for i, reading in enumerate(readings)
        ]
    assert all(a[0] == 3 or a[2] == "PropertyConstraintViolation" for a in answers), answers
    assert _backwards(store.meter_samples("FZ-16", str(transaction_id))) == []


async def test_a_reading_after_a_transaction_stopped_does_not_add_to_it(
    server: CsmsServer, store: Store
) -> None:
    """A MeterValues naming a transaction that stopped, measured 40 s after its stop (the
    fuzzing names earlier transactions now and then): whatever the answer, the
    transaction's registers stay where StopTransaction left them."""
    at = NOON - timedelta(hours=3)
    async with _connect(server.url, "FZ-16", OcppVersion.V16) as ws:
        transaction_id = await _start16(ws, at)
        stopped_at = at + timedelta(seconds=20)
        stop = {
            "meterStop": 1_300,
            "timestamp": _stamp(stopped_at),
            "transactionId": transaction_id,
        }
        assert (await _ask(ws, "stop", "StopTransaction", stop))[0] == 3
        late = _meter_values16(stopped_at + timedelta(seconds=40), 5_000, transaction_id)
        answer = await _ask(ws, "late", "MeterValues", late)
    assert answer[0] == 3 or answer[2] == "PropertyConstraintViolation", answer
    (session,) = (s for s in store.sessions() if s.transaction_id == str(transaction_id))
    assert (session.import_register_wh, session.last_meter_at) == (1_300, stopped_at)
