"""One connected charging station, as the CSMS sees it: the OCPP messages it sends and the
answers it gets. :class:`StationConnection` reads frames and sends requests whatever the
version; :class:`Handlers2x` answers OCPP 2.1 and 2.0.1 (:mod:`v2ghub.live.csms16`
answers 1.6).

Every message that changes state is written to the store (in the store's writer thread)
and committed before the answer goes back, so a station may forget a meter value as soon
as it is acknowledged. Payloads are read into typed records at once
(:mod:`v2ghub.live.ocpp_payloads`, :mod:`v2ghub.live.charging_needs`). A frame that is not
OCPP, breaks the schema or fails in a handler gets an OCPP CallError; the connection stays
up.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from types import ModuleType
from typing import Any, Protocol, TypeVar

from ocpp import v16, v21, v201
from ocpp.exceptions import (
    FormatViolationError,
    InternalError,
    NotSupportedError,
    OCPPError,
    PropertyConstraintViolationError,
    ProtocolError,
)
from ocpp.exceptions import (
    NotImplementedError as NotImplementedCallError,
)
from ocpp.messages import Call, CallError, MessageType, unpack
from ocpp.routing import on
from ocpp.v16.enums import Action as Action16
from ocpp.v21.enums import Action as Action21
from ocpp.v201.enums import Action as Action201

from v2ghub.live.charging_needs import ChargingNeeds, ev_needs
from v2ghub.live.live_state import MeasuredPower
from v2ghub.live.metrics import LiveMetrics
from v2ghub.live.ocpp_adapter import (
    ChargePoint21,
    ChargePoint201,
    NotStoredError,
    deliver_answer,
    handle_call,
    handles,
    send_frame,
)
from v2ghub.live.ocpp_payloads import (
    ChargingStationInfo,
    TransactionInfo,
    lacks_export,
    meter_samples,
    meter_values,
    obj,
    parse_time,
    required_number,
    text,
)
from v2ghub.live.outcomes import SendOutcome, answered
from v2ghub.live.store_seam import LiveStore
from v2ghub.store.records import (
    Event,
    EventKind,
    MeterSample,
    OcppVersion,
    StoredEvent,
    StoredStatus,
    TransactionEventRecord,
)

LOGGER = logging.getLogger("v2ghub.live")

HEARTBEAT_INTERVAL_S = 300
"""How often stations are asked to send a Heartbeat (they send meter values far more often)."""

T = TypeVar("T")


class StationHub(Protocol):
    """What a station connection needs from the server around it."""

    metrics: LiveMetrics
    measured: MeasuredPower

    def now(self) -> datetime: ...

    async def write(self, work: Callable[[LiveStore], T], /) -> T:
        """Run ``work(store)`` in the store's writer thread and return its result.

        A storage that cannot take the write raises :class:`NotStoredError`: the message
        being handled is refused with a CallError that says so, and not acknowledged.
        """
        ...

    async def store_transaction_event(self, event: TransactionEventRecord) -> StoredEvent:
        """Store a TransactionEvent (group-committed with others) and say what became of
        it (:class:`NotStoredError` as :meth:`write`)."""
        ...

    async def store_status(self, station_id: str, evse_id: int, status: str, at: datetime) -> None:
        """Keep an EVSE's status (group-committed with others; :class:`NotStoredError`
        as :meth:`write`)."""
        ...

    def replan(self, reason: str) -> None:
        """Ask the control loop for a new plan soon."""
        ...

    def spawn(self, work: Awaitable[None], /) -> None:
        """Run ``work`` beside the connection (its failure is logged, never raised)."""
        ...

    async def log_event(self, event: Event, /) -> None:
        """Keep ``event`` in the store's event log, within its station's budget; a storage
        that cannot take it is reported once a minute, never raised."""
        ...

    def may_log(self, station_id: str, /) -> bool:
        """Whether a log line about ``station_id`` may be written now (its budget)."""
        ...

    def transaction_ended(self, station_id: str, transaction_id: str) -> None:
        """Forget what was sent for a finished transaction."""
        ...


class HandlerLog(logging.LoggerAdapter[logging.Logger]):
    """What the ``ocpp`` package logs for one station's connection.

    The package logs every exception a handler raises with its traceback. A refusal a
    handler chose (an ``OCPPError``: its CallError says why) is one line instead, a
    message the storage could not take nothing (the storage alarm says that once a
    minute), and all of it within the station's budget (:meth:`StationHub.may_log`).
    """

    def __init__(self, station: StationConnection) -> None:
        super().__init__(logging.getLogger("ocpp"), {})
        self.station = station

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, NotStoredError):
            return
        if not self.station.hub.may_log(self.station.id):
            return
        if isinstance(error, OCPPError):
            LOGGER.warning("%s: CallError %s: %s", self.station.id, error.code, error.description)
            return
        super().exception(msg, *args, **kwargs)


CALL_RESULTS: dict[OcppVersion, ModuleType] = {
    OcppVersion.V21: v21.call_result,
    OcppVersion.V201: v201.call_result,
    OcppVersion.V16: v16.call_result,
}
"""The ``ocpp`` package's answer payloads of each version."""
ACTIONS: dict[OcppVersion, frozenset[str]] = {
    OcppVersion.V21: frozenset(member.value for member in Action21),
    OcppVersion.V201: frozenset(member.value for member in Action201),
    OcppVersion.V16: frozenset(member.value for member in Action16),
}
"""Every action of each version (a request outside them is NotSupported)."""


def _message_id(raw: object) -> str:
    """The message id of a frame that could not be unpacked, or "-1" when there is none."""
    try:
        frame = json.loads(raw) if isinstance(raw, str | bytes) else None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return "-1"
    if isinstance(frame, list) and len(frame) > 1 and isinstance(frame[1], str):
        return frame[1][:36]
    return "-1"


class StationConnection:
    """One station's connection, whatever its OCPP version: frames in, requests out.

    Mixed with the handlers of the negotiated version into the ``ocpp`` package's
    ``ChargePoint`` of that version (:func:`station_connection`).
    """

    id: str
    version: OcppVersion
    hub: StationHub
    results: ModuleType
    """The ``ocpp`` package's ``call_result`` module of the connection's version."""
    _awaited: set[str]
    call: Callable[..., Awaitable[object]]
    """The ``ocpp`` package's ``ChargePoint.call`` (declared here, defined there)."""
    start: Callable[[], Awaitable[None]]
    """The ``ocpp`` package's ``ChargePoint.start``: read and route frames until closed."""
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger]
    """Where the ``ocpp`` package logs for the connection (:class:`HandlerLog`)."""
    _after_answer: list[Callable[[], Awaitable[None]]]
    """Requests a handler wants sent once its answer is out (:meth:`after_answer`)."""

    # --- frames -----------------------------------------------------------------------------

    async def route_message(self, raw_msg: str | bytes) -> None:
        """Route one frame; never let a bad one end the connection."""
        try:
            message = unpack(raw_msg)
        except OCPPError as error:
            await self._send_error(_message_id(raw_msg), error)
            return
        except Exception as error:
            await self._send_error(
                _message_id(raw_msg), FormatViolationError(description=str(error))
            )
            return
        if message.message_type_id == MessageType.Call:
            await self._route_call(message)
        elif message.message_type_id in (MessageType.CallResult, MessageType.CallError):
            if isinstance(message.unique_id, str) and message.unique_id in self._awaited:
                deliver_answer(self, message)
            elif self.hub.may_log(self.id):
                LOGGER.warning("%s: answer to no pending request dropped: %.200s", self.id, raw_msg)

    async def _route_call(self, message: Call) -> None:
        if not isinstance(message.unique_id, str) or not isinstance(message.action, str):
            # A readable message id is answered even when the action is not a string.
            unique_id = message.unique_id if isinstance(message.unique_id, str) else "-1"
            await self._send_error(
                unique_id, ProtocolError(description="messageId and action must be strings")
            )
            return
        if not isinstance(message.payload, dict):
            await self._send_error(
                message.unique_id, FormatViolationError(description="payload must be an object")
            )
            return
        if not handles(self, message.action):
            await self._send_error(message.unique_id, self._unhandled(message.action))
            return
        started_s = time.perf_counter()
        try:
            await handle_call(self, message)
        except OCPPError as error:
            self._after_answer.clear()
            await self._send_error(message.unique_id, error)
        except Exception as error:
            self._after_answer.clear()
            LOGGER.exception("%s: %s failed", self.id, message.action)
            await self._send_error(message.unique_id, InternalError(description=str(error)))
        finally:
            metrics = self.hub.metrics
            metrics.ocpp_messages.labels(action=message.action).inc()
            metrics.ocpp_seconds.observe(time.perf_counter() - started_s)
        for work in self._after_answer:
            self.hub.spawn(work())
        self._after_answer.clear()

    def after_answer(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` once the answer to the message being handled has been sent (a
        request to the station from inside a handler would wait for an answer the station
        sends only after it has ours)."""
        self._after_answer.append(work)

    def _unhandled(self, action: str) -> OCPPError:
        if action in ACTIONS[self.version]:
            return NotImplementedCallError(description=f"no handler for {action}")
        return NotSupportedError(description=f"{action} is not an action of {self.version}")

    async def _send_error(self, unique_id: str, error: OCPPError) -> None:
        if self.hub.may_log(self.id):
            LOGGER.warning("%s: CallError %s: %s", self.id, error.code, error.description)
        # The ocpp package puts the whole offending message in the details ("ocpp_message"):
        # raw bytes cannot be sent as JSON, and echoing a 256 KiB frame helps nobody.
        details = {
            str(key): value if isinstance(value, int | float | bool) else str(value)[:255]
            for key, value in (error.details or {}).items()
            if key != "ocpp_message"
        }
        frame = CallError(
            unique_id=unique_id,
            error_code=error.code,
            error_description=str(error.description)[:255],
            error_details=details,
        )
        await send_frame(self, frame.to_json())

    def prepared(self) -> None:
        """Called once the connection is set up (a version's own state starts here)."""

    async def request(self, payload: object, *, validated: bool = False) -> object:
        """Send a request to the station and return its answer.

        Raises ``OCPPError`` when the station answers with a CallError and
        ``TimeoutError`` when it does not answer in time: never a silent ``None``.
        ``validated``: the payload was checked against its schema already; neither it nor
        the answer is checked again.
        """
        unique_id = str(uuid.uuid4())
        self._awaited.add(unique_id)
        try:
            answer: object = await self.call(
                payload, suppress=False, unique_id=unique_id, skip_schema_validation=validated
            )
            return answer
        finally:
            self._awaited.discard(unique_id)


class Handlers2x(StationConnection):
    """The messages an OCPP 2.1 or 2.0.1 station sends.

    The ``ocpp`` package passes a payload's fields as snake_case keyword arguments (nested
    objects as dicts); each handler reads them into typed records first.
    """

    @on("BootNotification")
    async def on_boot_notification(
        self, *, charging_station: object, reason: object, **_: object
    ) -> object:
        station = ChargingStationInfo.from_payload(charging_station)
        now = self.hub.now()
        station_id, version = self.id, self.version
        await self.hub.write(
            lambda store: store.record_boot(
                station_id,
                ocpp_version=version,
                vendor=station.vendor_name,
                model=station.model,
                at=now,
            )
        )
        await self.hub.log_event(Event(now, EventKind.BOOT, str(reason), station_id))
        return self.results.BootNotification(
            current_time=now.isoformat(), interval=HEARTBEAT_INTERVAL_S, status="Accepted"
        )

    @on("Heartbeat")
    def on_heartbeat(self, **_: object) -> object:
        return self.results.Heartbeat(current_time=self.hub.now().isoformat())

    @on("StatusNotification")
    async def on_status_notification(
        self, *, timestamp: object, connector_status: object, evse_id: int, **_: object
    ) -> object:
        at = parse_time(timestamp, "timestamp")
        status = str(connector_status)
        station_id = self.id
        await self.hub.store_status(station_id, evse_id, status, at)
        return self.results.StatusNotification()

    @on("Authorize")
    def on_authorize(self, **_: object) -> object:
        return self.results.Authorize(id_token_info={"status": "Accepted"})

    @on("TransactionEvent")
    async def on_transaction_event(
        self,
        *,
        event_type: str,
        timestamp: object,
        trigger_reason: str,
        seq_no: int,
        transaction_info: object,
        evse: object = None,
        id_token: object = None,
        meter_value: object = None,
        offline: bool = False,
        **_: object,
    ) -> object:
        info = TransactionInfo.from_payload(transaction_info)
        values = meter_values(meter_value)
        station_id, transaction_id = self.id, info.transaction_id
        export_wh = 0
        if lacks_export(values):
            export_wh = await self.hub.write(
                lambda store: store.latest_export_wh(station_id, transaction_id)
            )
        # Only the first event must name the EVSE; the store keeps it.
        evse_id = None if evse is None else int(required_number(obj(evse, "evse"), "id"))
        token = None if id_token is None else text(obj(id_token, "idToken"), "id_token")
        event = TransactionEventRecord(
            station_id=station_id,
            evse_id=evse_id,
            transaction_id=transaction_id,
            event_type=event_type,
            seq_no=seq_no,
            at=parse_time(timestamp, "timestamp"),
            trigger_reason=trigger_reason,
            samples=meter_samples(station_id, transaction_id, seq_no, values, export_wh=export_wh),
            id_token=token,
            stopped_reason=info.stopped_reason,
            offline=offline,
        )
        result = await self.hub.store_transaction_event(event)
        known_evse = self.hub.measured.evse(station_id, transaction_id, evse_id)
        if known_evse is not None:
            note_power(self.hub.measured, station_id, known_evse, event.samples)
        if result.status is StoredStatus.REFUSED:
            await self.hub.log_event(
                Event(self.hub.now(), EventKind.REFUSED, result.reason, station_id)
            )
            raise PropertyConstraintViolationError(description=result.reason)
        stored = result.status is StoredStatus.STORED
        if stored and event_type == "Ended":
            self.hub.transaction_ended(station_id, transaction_id)
            self.hub.measured.ended(station_id, transaction_id)
        if stored and event_type in ("Started", "Ended"):
            self.hub.replan(f"{station_id} transaction {transaction_id} {event_type.lower()}")
        if id_token is not None:
            return self.results.TransactionEvent(id_token_info={"status": "Accepted"})
        return self.results.TransactionEvent()

    @on("MeterValues")
    async def on_meter_values(self, *, evse_id: int, meter_value: object, **_: object) -> object:
        values = meter_values(meter_value)
        station_id = self.id
        export_wh = 0
        if lacks_export(values):
            export_wh = await self.hub.write(
                lambda store: store.evse_export_wh(station_id, evse_id)
            )
        samples = meter_samples(station_id, "", -1, values, export_wh=export_wh)
        # The transaction open on the EVSE when measured: station time, as its start is.
        measured_at = min((s.measured_at for s in samples), default=self.hub.now())
        try:
            await self.hub.write(
                lambda store: store.add_meter_values(station_id, evse_id, samples, at=measured_at)
            )
        except ValueError as error:
            raise PropertyConstraintViolationError(description=str(error)) from error
        note_power(self.hub.measured, station_id, evse_id, samples)
        return self.results.MeterValues()

    @on("NotifyEVChargingNeeds")
    async def on_notify_ev_charging_needs(
        self, *, charging_needs: object, evse_id: int, **_: object
    ) -> object:
        needs = ev_needs(
            self.id, evse_id, ChargingNeeds.from_payload(charging_needs), self.hub.now()
        )
        await self.hub.write(lambda store: store.record_needs(needs))
        self.hub.replan(f"{self.id} EVSE {evse_id} sent its charging needs")
        return self.results.NotifyEVChargingNeeds(status="Accepted")


class _Station21(Handlers2x, ChargePoint21):
    pass


class _Station201(Handlers2x, ChargePoint201):
    pass


def station_connection(
    station_id: str,
    connection: object,
    version: OcppVersion,
    hub: StationHub,
    *,
    timeout_s: float,
    kinds: dict[OcppVersion, type[StationConnection]] | None = None,
) -> StationConnection:
    """The handler object for one connected station speaking ``version`` (``kinds``: the
    class of each version, 2.1 and 2.0.1 by default)."""
    known: dict[OcppVersion, type[StationConnection]] = {
        OcppVersion.V21: _Station21,
        OcppVersion.V201: _Station201,
        **(kinds or {}),
    }
    kind = known[version]
    station: StationConnection = kind(station_id, connection, response_timeout=timeout_s)  # type: ignore[call-arg]
    station.version = version
    station.results = CALL_RESULTS[version]
    station.hub = hub
    station.logger = HandlerLog(station)
    station._awaited = set()
    station._after_answer = []
    station.prepared()
    return station


def note_power(
    measured: MeasuredPower, station_id: str, evse_id: int, samples: Sequence[MeterSample]
) -> None:
    """Keep the latest power reading of ``samples``, if any has one."""
    timed = [(s.measured_at, s.power_kw) for s in samples if s.power_kw is not None]
    if timed:
        at, power_kw = max(timed, key=lambda pair: pair[0])
        measured.note(station_id, evse_id, float(power_kw), at)


def answer_outcome(result: object) -> SendOutcome:
    """What a station answered (``Accepted``, ``Rejected``...) with its reason, if any."""
    status = getattr(result, "status", "Accepted")
    info = getattr(result, "status_info", None)
    reason = info.get("reason_code") if isinstance(info, dict) else None
    return answered(str(status), None if reason is None else str(reason))
