"""The OCPP server under 100,000 random and mutated frames on real connections.

Two authenticated stations (OCPP 2.1 and 2.0.1) send a deterministic mix of frames
(:class:`FrameFactory`): random bytes and text, random JSON, valid messages, mutations of
valid messages, answers to nothing and replays. An oracle (:func:`expected_answer`) says
from the frame alone what the server must answer; the answers are read by a task of their
own while the sender keeps a window of frames in flight, and matched in order (the
server answers one connection's frames in the order they came). Afterwards the server
still takes a new connection, and no transaction's meter registers go backwards.
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
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ocpp.charge_point import snake_to_camel_case
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from v2ghub.live import charger_messages as messages
from v2ghub.live.clock import ScaledClock
from v2ghub.live.csms import _message_id
from v2ghub.live.security import basic_header, hash_password
from v2ghub.live.server import CsmsServer, ServerSettings
from v2ghub.store.records import MeterSample, OcppVersion
from v2ghub.store.repository import Store

NOON = datetime(2026, 7, 1, 4, 0, tzinfo=UTC)
PASSWORD = "correct-horse-battery-staple-0123"
SEED = 20260701
FRAMES = 100_000
"""Frames in all, split between the two stations."""
WINDOW = 256
"""Frames that expect an answer and may be in flight at once, per connection."""
MAX_FRAME_CHARS = 200_000
"""Below the server's 256 KiB frame limit even when every character takes one byte."""
ANSWER_TIMEOUT_S = 60.0
STATIONS = {"FZ-21": OcppVersion.V21, "FZ-201": OcppVersion.V201}
NOISY_LOGGERS = ("ocpp", "v2ghub.live", "websockets")

Frame = str | bytes


# --- the oracle -------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """The answer a frame must get: a CallError only, or a CallResult or CallError."""

    unique_id: str
    error_only: bool


def expected_answer(frame: Frame) -> Expected | None:
    """What the server must answer to ``frame`` (``None``: nothing, it answers nothing).

    A Call (four elements, type 2) with a string message id gets one answer with that id.
    A CallResult or CallError that parses is an answer to nothing and gets none. Anything
    else cannot be parsed and gets a CallError carrying the frame's message id (cut to
    OCPP's 36 characters) or "-1" when none can be read.
    """
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return Expected("-1", error_only=True)
    if not isinstance(data, list) or not data:
        return Expected("-1", error_only=True)
    readable_id = data[1][:36] if len(data) > 1 and isinstance(data[1], str) else "-1"
    kind = data[0]
    if kind == 2 and len(data) == 4:
        if isinstance(data[1], str):
            return Expected(data[1], error_only=False)
        return Expected("-1", error_only=True)
    # The ocpp package reads a CallResult's optional 4th element as its action, and a
    # CallError's details are optional: such frames parse.
    if (kind == 3 and len(data) in (3, 4)) or (kind == 4 and len(data) in (4, 5)):
        return None
    return Expected(readable_id, error_only=True)


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
_ACTIONS = (
    "BootNotification",
    "Heartbeat",
    "StatusNotification",
    "Authorize",
    "TransactionEvent",
    "MeterValues",
    "NotifyEVChargingNeeds",
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

    def new_id(self) -> str:
        self.count += 1
        return f"{self.tag}-{self.count}"

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
        return _random_json(self.rng)

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
        """The next frame."""
        roll = self.rng.random()
        frame: Frame
        if roll < 0.06:
            self.kinds["random bytes"] += 1
            frame = self.rng.randbytes(self.rng.randrange(1, 300))
        elif roll < 0.12:
            self.kinds["random text"] += 1
            frame = _text(self.rng, self.rng.randrange(0, 300))
        elif roll < 0.22:
            self.kinds["random JSON"] += 1
            value = _random_json(self.rng)
            if self.rng.random() < 0.5:
                tail = [_random_json(self.rng, 3) for _ in range(self.rng.randrange(4))]
                value = [self.rng.choice((2, 3, 4)), self.new_id(), *tail]
            frame = _dumps(value)
        elif roll < 0.38:
            self.kinds["valid"] += 1
            action, payload = self.valid()
            frame = _dumps([2, self.new_id(), action, payload])
        elif roll < 0.88:
            self.kinds["mutated"] += 1
            frame = self._mutated()
        elif roll < 0.93:
            self.kinds["answer to nothing"] += 1
            frame = self._answer_to_nothing()
        else:
            self.kinds["replay"] += 1
            frame = self.rng.choice(self.sent) if self.sent else _dumps([2, "r", "Heartbeat", {}])
        if isinstance(frame, str) and len(frame) > MAX_FRAME_CHARS:
            self.kinds["oversized, replaced"] += 1
            frame = _dumps([2, self.new_id(), "Heartbeat", {"pad": "x" * 100}])
        self.sent.append(frame)
        return frame


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


class _Link:
    """One websocket connection with its reader task and expected answers in order."""

    def __init__(self, ws: ClientConnection, tally: Tally) -> None:
        self.ws = ws
        self.tally = tally
        self.pending: deque[Expected] = deque()
        self.last_frames: deque[Frame] = deque(maxlen=WINDOW + 10)
        self.window = asyncio.Semaphore(WINDOW)
        self.drained = asyncio.Event()
        self.closed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self._match(raw)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self.drained.set()
            for _ in range(WINDOW):  # a sender waiting for room learns of the close
                self.window.release()

    def _match(self, raw: Frame) -> None:
        answer = json.loads(raw)
        tally = self.tally
        tally.answers += 1
        if not self.pending:
            tally.mismatches.append(f"unexpected answer {str(raw)[:200]}")
            return
        expected = self.pending.popleft()
        self.window.release()
        if not self.pending:
            self.drained.set()
        if answer[0] == 4:
            tally.call_errors[answer[2]] += 1
        elif answer[0] == 3:
            tally.call_results += 1
        good_type = answer[0] == 4 or (answer[0] == 3 and not expected.error_only)
        if not good_type or answer[1] != expected.unique_id:
            tally.mismatches.append(f"expected {expected}, got {str(raw)[:200]}")

    async def send(self, frame: Frame, expected: Expected | None) -> None:
        if expected is not None:
            await self.window.acquire()
            if self.closed.is_set():
                raise ConnectionClosed(None, None)
            self.pending.append(expected)
            self.drained.clear()
        self.last_frames.append(frame)
        await self.ws.send(frame)


def _connect(url: str, station_id: str, version: OcppVersion) -> Any:
    return connect(
        f"{url}/ocpp/{station_id}",
        subprotocols=[Subprotocol(version.value)],
        additional_headers={"Authorization": basic_header(station_id, PASSWORD)},
        max_size=None,
        compression=None,
    )


async def _open(url: str, station_id: str, version: OcppVersion, tally: Tally) -> _Link:
    for _ in range(500):
        try:
            return _Link(await _connect(url, station_id, version), tally)
        except InvalidStatus:  # 409 until the server has let the old connection go
            await asyncio.sleep(0.01)
    pytest.fail(f"{station_id} cannot connect again")


async def _fuzz_station(
    url: str, station_id: str, version: OcppVersion, frames: int, seed: int
) -> tuple[Tally, Counter[str]]:
    factory = FrameFactory(random.Random(f"{seed}-{station_id}"), version, station_id)
    tally = Tally()
    link = await _open(url, station_id, version, tally)
    for _ in range(frames):
        frame = factory.next()
        expected = expected_answer(frame)
        tally.frames += 1
        tally.expected_answers += expected is not None
        try:
            if link.closed.is_set():
                raise ConnectionClosed(None, None)
            await link.send(frame, expected)
        except ConnectionClosed:
            # The server may end a connection (it must not for this mix): count it, go on.
            await link.reader
            tally.reconnects += 1
            tally.lost_to_close += len(link.pending)
            tally.close_codes.append(link.ws.close_code)
            link = await _open(url, station_id, version, tally)
    final = Expected(f"{station_id}-final", error_only=False)
    await link.send(json.dumps([2, final.unique_id, "Heartbeat", {}]), final)
    tally.expected_answers += 1
    try:
        await asyncio.wait_for(link.drained.wait(), ANSWER_TIMEOUT_S)
    except TimeoutError:
        pytest.fail(f"{station_id}: {len(link.pending)} answers missing, first {link.pending[0]}")
    await link.ws.close()
    await link.reader
    return tally, factory.kinds


def fuzz_client(
    url: str, station_id: str, version: str, frames: int, seed: int
) -> tuple[Tally, Counter[str]]:
    """One station's fuzzing in a process of its own (the server keeps a core to itself)."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return asyncio.run(_fuzz_station(url, station_id, OcppVersion(version), frames, seed))


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
                    clients,
                    fuzz_client,
                    server.url,
                    station_id,
                    version.value,
                    FRAMES // len(STATIONS),
                    SEED,
                )
                for station_id, version in STATIONS.items()
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
            "reconnects": t.reconnects,
        }
        for station_id, t in tallies.items()
    }
    print(f"\nfuzz: {FRAMES} frames in {seconds:.1f} s; mix {dict(kinds)}")
    print(json.dumps(report, indent=1))

    for station_id, tally in tallies.items():
        assert tally.mismatches == [], (station_id, tally.mismatches[:5])
        assert tally.reconnects == 0, (station_id, tally.close_codes)
        assert tally.answers == tally.expected_answers, station_id
    assert sum(t.frames for t in tallies.values()) == FRAMES
    # The mix reached the handlers, not only the parser.
    assert all(t.call_results > 1_000 for t in tallies.values())

    # Still serving: a new connection is accepted and a valid Heartbeat answered.
    async with _connect(server.url, "FZ-21", OcppVersion.V21) as ws:
        await ws.send(json.dumps([2, "after", "Heartbeat", {}]))
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert answer[:2] == [3, "after"]

    sessions = store.sessions()
    assert len(sessions) > 100
    problems = []
    for session in sessions:
        problems += _backwards(store.meter_samples(session.station_id, session.transaction_id))
    for station_id in STATIONS:
        problems += _backwards(store.meter_samples(station_id, ""))
    assert problems == []
    assert store.count_meter_values() > 1_000


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
