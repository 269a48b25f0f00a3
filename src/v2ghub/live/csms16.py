"""An OCPP 1.6J station as the CSMS sees it: its messages read into the same store rows
as a 2.x station's, and the smart-charging requests it is sent.

1.6 has no TransactionEvent: each transaction message becomes one
:class:`~v2ghub.store.records.TransactionEventRecord` with a ``seq_no`` that follows
from its time, so that a message replayed after a reconnect is stored once and a late one
is checked between its neighbours, exactly as for 2.x:

- StartTransaction: ``Started``, ``seq_no`` 0. The CSMS assigns the transaction id: an
  integer that follows from the connector, start time and ``meterStart``, so that a
  StartTransaction sent again gets the same id (two different transactions that would
  share one take the next free number).
- MeterValues naming a transaction: ``Updated``, ``seq_no`` = 2 + 2 x the tenths of a
  second from the start to the message's latest reading.
- StopTransaction: ``Ended``, ``seq_no`` = 3 + 2 x the tenths of a second to the stop
  (after any reading of the same tenth), with ``transactionData`` and ``meterStop``.

A 1.6 StartTransaction carries no export register. A charge-only station's is 0; a V2X
station's starts where the connector's last transaction left it, and when the connector
has had none the transaction's registers start at its first meter value (said in the
event log): counting a lifetime export register from 0 would pay for energy never given.

After the station boots (or at its first message on a connection), the CSMS reads its
configuration (:data:`~v2ghub.live.profiles16.CONFIGURATION_KEYS`) and installs its
TxDefaultProfile; a transaction's first accepted TxProfile is checked with
GetCompositeSchedule, and it is cleared when the transaction stops.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from ocpp.exceptions import PropertyConstraintViolationError
from ocpp.routing import on
from ocpp.v16 import call as call_v16

from v2ghub.live.control import SetpointCommand
from v2ghub.live.csms import StationConnection, StationHub, note_power
from v2ghub.live.ocpp_adapter import ChargePoint16
from v2ghub.live.ocpp_payloads import lacks_export, meter_samples, meter_values, parse_time
from v2ghub.live.profiles16 import (
    CONFIGURATION_KEYS,
    Rates,
    clear_profile_v16,
    composite_power_kw,
    composite_schedule_v16,
    sent_power_kw,
    tx_default_profile_v16,
    tx_profile_v16,
)
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

STARTED_SEQ_NO = 0
MAX_SEQ_NO = 2**31 - 1
MAX_ID_ATTEMPTS = 1000
VERIFY_DURATION_S = 60
"""How far ahead GetCompositeSchedule looks when a TxProfile is checked."""
VERIFY_TOLERANCE_KW = 0.1
ACCEPTED = {"status": "Accepted"}


class Hub16(StationHub, Protocol):
    """What a 1.6 connection needs beyond a 2.x one: the safe limit of its connectors."""

    async def fallback_limit_kw(self, station_id: str, connectors: int) -> float:
        """Each connector's TxDefaultProfile limit, kW (the site's share, never more)."""
        ...

    def profile_id(self, evse_id: int, transaction_id: str) -> int:
        """The id of a transaction's TxProfile (the same every time)."""
        ...


def update_seq_no(started_at: datetime, measured_at: datetime) -> int:
    """The ``seq_no`` of a MeterValues message whose latest reading is at ``measured_at``.

    >>> from datetime import UTC, timedelta
    >>> start = datetime(2026, 7, 1, 18, tzinfo=UTC)
    >>> later = start + timedelta(seconds=10)
    >>> update_seq_no(start, later), ended_seq_no(start, later)
    (202, 203)
    """
    return _seq_no(started_at, measured_at, 2)


def ended_seq_no(started_at: datetime, stopped_at: datetime) -> int:
    """The ``seq_no`` of a StopTransaction at ``stopped_at``."""
    return _seq_no(started_at, stopped_at, 3)


def _seq_no(started_at: datetime, at: datetime, offset: int) -> int:
    tenths = max(0, math.floor((at - started_at).total_seconds() * 10))
    return min(offset + 2 * tenths, MAX_SEQ_NO - 1 + offset % 2)


def candidate_transaction_id(
    connector_id: int, started_at: datetime, meter_start_wh: int, attempt: int
) -> int:
    """The ``attempt``-th candidate id of a transaction (positive, 31 bits)."""
    key = f"{connector_id}/{started_at.isoformat()}/{meter_start_wh}/{attempt}"
    return zlib.crc32(key.encode()) % (2**31 - 1) + 1


def assign_transaction_id(
    store: LiveStore, station_id: str, connector_id: int, started_at: datetime, meter_start_wh: int
) -> int:
    """The id of the transaction that starts so: the one it was given before if this is a
    StartTransaction sent again, else the first candidate no other transaction holds."""
    for attempt in range(MAX_ID_ATTEMPTS):
        candidate = candidate_transaction_id(connector_id, started_at, meter_start_wh, attempt)
        stored = store.session_start(station_id, str(candidate))
        if stored is None or stored == (connector_id, started_at):
            return candidate
    raise RuntimeError(f"no free transaction id for {station_id} in {MAX_ID_ATTEMPTS} attempts")


class Handlers16(StationConnection):
    """The messages an OCPP 1.6J station sends, and what the CSMS asks it."""

    hub: Hub16
    rates: Rates
    """How the station takes limits (its configuration; W, 3 phases until read)."""
    _configured: bool
    _v2x: bool | None
    _starts: dict[str, datetime]
    """Start of each transaction seen on this connection (for ``seq_no``)."""
    _verified: set[str]

    def prepared(self) -> None:
        self.rates = Rates()
        self._configured = False
        self._v2x = None
        self._starts = {}
        self._verified = set()

    def _configure_soon(self) -> None:
        """Read the configuration and install the TxDefaultProfile once per connection,
        after the answer to the message being handled."""
        if not self._configured:
            self._configured = True
            self.after_answer(self.configure)

    async def configure(self) -> None:
        """GetConfiguration, then the TxDefaultProfile; a refusal is logged as an event."""
        try:
            answer = await self.request(call_v16.GetConfiguration(key=list(CONFIGURATION_KEYS)))
            self.rates = Rates.from_configuration(_configuration(answer))
        except Exception as error:  # a station that cannot say keeps the defaults
            if self.hub.may_log(self.id):
                LOGGER.warning("%s: GetConfiguration failed: %s", self.id, error)
        limit_kw = await self.hub.fallback_limit_kw(self.id, self.rates.connectors)
        try:
            answer = await self.request(tx_default_profile_v16(limit_kw, rates=self.rates))
            status = str(getattr(answer, "status", "?"))
        except Exception as error:
            status = f"{type(error).__name__}: {error}"
        if status != "Accepted":
            detail = f"TxDefaultProfile of {limit_kw:g} kW per connector not accepted: {status}"
            await self._log(EventKind.SETPOINT_NOT_ACCEPTED, detail)

    async def _log(self, kind: EventKind, detail: str) -> None:
        if self.hub.may_log(self.id):
            LOGGER.warning("%s: %s", self.id, detail)
        await self.hub.log_event(Event(self.hub.now(), kind, detail, self.id))

    # --- smart charging -------------------------------------------------------------------

    def setpoint_request(
        self, command: SetpointCommand, *, profile_id: int, now: datetime
    ) -> call_v16.SetChargingProfile:
        """The TxProfile of ``command`` in the station's unit (``ValueError``: it does not fit)."""
        return tx_profile_v16(command, profile_id=profile_id, now=now, rates=self.rates)

    async def verify(self, command: SetpointCommand) -> None:
        """Ask the station what it will do (GetCompositeSchedule) after its transaction's
        first accepted TxProfile; a station that will do otherwise is logged."""
        if command.transaction_id in self._verified:
            return
        self._verified.add(command.transaction_id)
        sent_kw = sent_power_kw(command, self.rates)
        try:
            answer = await self.request(
                composite_schedule_v16(command.evse_id, VERIFY_DURATION_S, self.rates)
            )
        except Exception as error:
            LOGGER.warning("%s: GetCompositeSchedule failed: %s", self.id, error)
            return
        will_kw = composite_power_kw(answer, self.rates)
        if will_kw is None or abs(will_kw - sent_kw) > VERIFY_TOLERANCE_KW:
            self._verified.discard(command.transaction_id)
            shown = "no schedule" if will_kw is None else f"{will_kw:g} kW"
            await self._log(
                EventKind.SETPOINT_NOT_ACCEPTED,
                f"connector {command.evse_id}, transaction {command.transaction_id}: sent "
                f"{sent_kw:g} kW, the composite schedule says {shown}",
            )

    # --- handlers -------------------------------------------------------------------------

    @on("BootNotification")
    async def on_boot_notification(
        self, *, charge_point_vendor: str, charge_point_model: str, **_: object
    ) -> object:
        now = self.hub.now()
        station_id = self.id
        await self.hub.write(
            lambda store: store.record_boot(
                station_id,
                ocpp_version=OcppVersion.V16,
                vendor=charge_point_vendor,
                model=charge_point_model,
                at=now,
            )
        )
        await self.hub.log_event(Event(now, EventKind.BOOT, "BootNotification", station_id))
        self._configured = False
        self._configure_soon()
        return self.results.BootNotification(
            current_time=now.isoformat(), interval=300, status="Accepted"
        )

    @on("Heartbeat")
    def on_heartbeat(self, **_: object) -> object:
        self._configure_soon()
        return self.results.Heartbeat(current_time=self.hub.now().isoformat())

    @on("StatusNotification")
    async def on_status_notification(
        self, *, connector_id: int, status: str, timestamp: object = None, **_: object
    ) -> object:
        at = self.hub.now() if timestamp is None else parse_time(timestamp, "timestamp")
        station_id = self.id
        bounded(connector_id, "connectorId", MAX_OCPP_INTEGER)
        await self.hub.store_status(station_id, connector_id, str(status), at)
        self._configure_soon()
        return self.results.StatusNotification()

    @on("Authorize")
    def on_authorize(self, **_: object) -> object:
        return self.results.Authorize(id_tag_info=ACCEPTED)

    @on("DataTransfer")
    def on_data_transfer(self, *, vendor_id: str, **_: object) -> object:
        if self.hub.may_log(self.id):
            LOGGER.info(
                "%s: DataTransfer from vendor %.60s answered UnknownVendorId", self.id, vendor_id
            )
        return self.results.DataTransfer(status="UnknownVendorId")

    @on("StartTransaction")
    async def on_start_transaction(
        self, *, connector_id: int, id_tag: str, meter_start: int, timestamp: object, **_: object
    ) -> object:
        started_at = parse_time(timestamp, "timestamp")
        station_id = self.id
        bounded(connector_id, "connectorId", MAX_OCPP_INTEGER)
        bounded(meter_start, "meterStart", MAX_REGISTER_WH)
        transaction = await self.hub.write(
            lambda store: assign_transaction_id(
                store, station_id, connector_id, started_at, meter_start
            )
        )
        transaction_id = str(transaction)
        export_wh = await self._start_export_wh(connector_id)
        samples = []
        if export_wh is not None:
            samples.append(
                MeterSample(
                    station_id=station_id,
                    transaction_id=transaction_id,
                    seq_no=STARTED_SEQ_NO,
                    measured_at=started_at,
                    import_register_wh=int(meter_start),
                    export_register_wh=export_wh,
                )
            )
        else:
            await self._log(
                EventKind.ASSUMED,
                f"transaction {transaction_id}: 1.6 gives no export register at the start and "
                f"connector {connector_id} has had no transaction: its registers start at its "
                "first meter value",
            )
        record = TransactionEventRecord(
            station_id=station_id,
            evse_id=connector_id,
            transaction_id=transaction_id,
            event_type="Started",
            seq_no=STARTED_SEQ_NO,
            at=started_at,
            trigger_reason="StartTransaction",
            samples=samples,
            id_token=id_tag,
        )
        result = await self._store(record)
        self._starts[transaction_id] = started_at
        if result.status is StoredStatus.STORED:
            self.hub.replan(f"{station_id} transaction {transaction_id} started")
        self._configure_soon()
        return self.results.StartTransaction(transaction_id=transaction, id_tag_info=ACCEPTED)

    async def _start_export_wh(self, connector_id: int) -> int | None:
        """Where a new transaction's export register starts (see the module's docstring)."""
        station_id = self.id
        if self._v2x is None:
            station = await self.hub.write(lambda store: store.station(station_id))
            self._v2x = bool(station is not None and station.v2x_allowed)
        if not self._v2x:
            return 0
        return await self.hub.write(lambda store: store.last_export_wh(station_id, connector_id))

    async def _started_at(self, transaction_id: str) -> datetime | None:
        started = self._starts.get(transaction_id)
        if started is None:
            station_id = self.id
            stored = await self.hub.write(
                lambda store: store.session_start(station_id, transaction_id)
            )
            if stored is not None:
                started = self._starts[transaction_id] = stored[1]
        return started

    async def _store(self, record: TransactionEventRecord) -> StoredEvent:
        """Store a transaction message; a refused one is logged and answered with a
        CallError that says why."""
        result = await self.hub.store_transaction_event(record)
        if result.status is StoredStatus.REFUSED:
            await self._log(EventKind.REFUSED, result.reason)
            raise PropertyConstraintViolationError(description=result.reason)
        known_evse = self.hub.measured.evse(
            record.station_id, record.transaction_id, record.evse_id
        )
        if known_evse is not None:
            note_power(self.hub.measured, record.station_id, known_evse, record.samples)
        return result

    @on("MeterValues")
    async def on_meter_values(
        self,
        *,
        connector_id: int,
        meter_value: object,
        transaction_id: int | None = None,
        **_: object,
    ) -> object:
        values = meter_values(meter_value, v16=True)
        station_id = self.id
        bounded(connector_id, "connectorId", MAX_OCPP_INTEGER)
        started_at = None if transaction_id is None else await self._started_at(str(transaction_id))
        if transaction_id is None or started_at is None or not values:
            # No transaction the store knows: kept on the connector, as a 2.x MeterValues.
            export_wh = 0
            if lacks_export(values):
                export_wh = await self.hub.write(
                    lambda store: store.evse_export_wh(station_id, connector_id)
                )
            samples = meter_samples(station_id, "", -1, values, export_wh=export_wh)
            measured_at = min((s.measured_at for s in samples), default=self.hub.now())
            try:
                await self.hub.write(
                    lambda store: store.add_meter_values(
                        station_id, connector_id, samples, at=measured_at
                    )
                )
            except ValueError as error:
                raise PropertyConstraintViolationError(description=str(error)) from error
            note_power(self.hub.measured, station_id, connector_id, samples)
            self._configure_soon()
            return self.results.MeterValues()
        transaction = str(transaction_id)
        seq_no = update_seq_no(started_at, max(value.measured_at for value in values))
        export_wh = 0
        if lacks_export(values):
            export_wh = await self.hub.write(
                lambda store: store.latest_export_wh(station_id, transaction)
            )
        record = TransactionEventRecord(
            station_id=station_id,
            evse_id=connector_id,
            transaction_id=transaction,
            event_type="Updated",
            seq_no=seq_no,
            at=max(value.measured_at for value in values),
            trigger_reason="MeterValuePeriodic",
            samples=meter_samples(station_id, transaction, seq_no, values, export_wh=export_wh),
        )
        await self._store(record)
        self._configure_soon()
        return self.results.MeterValues()

    @on("StopTransaction")
    async def on_stop_transaction(
        self,
        *,
        meter_stop: int,
        timestamp: object,
        transaction_id: int,
        reason: str | None = None,
        transaction_data: object = None,
        **_: object,
    ) -> object:
        stopped_at = parse_time(timestamp, "timestamp")
        bounded(meter_stop, "meterStop", MAX_REGISTER_WH)
        transaction = str(transaction_id)
        station_id = self.id
        started_at = await self._started_at(transaction)
        if started_at is None:
            await self._log(
                EventKind.REFUSED,
                f"StopTransaction for transaction {transaction}, which this station never "
                "started here: nothing stored",
            )
            return self.results.StopTransaction(id_tag_info=ACCEPTED)
        seq_no = ended_seq_no(started_at, stopped_at)
        values = meter_values(transaction_data, "transactionData", v16=True)
        export_wh = await self.hub.write(
            lambda store: store.latest_export_wh(station_id, transaction)
        )
        samples = meter_samples(station_id, transaction, seq_no, values, export_wh=export_wh)
        final_export_wh = (
            max(samples, key=lambda s: s.measured_at).export_register_wh if samples else export_wh
        )
        samples.append(
            MeterSample(
                station_id=station_id,
                transaction_id=transaction,
                seq_no=seq_no,
                measured_at=stopped_at,
                import_register_wh=int(meter_stop),
                export_register_wh=final_export_wh,
            )
        )
        record = TransactionEventRecord(
            station_id=station_id,
            evse_id=None,
            transaction_id=transaction,
            event_type="Ended",
            seq_no=seq_no,
            at=stopped_at,
            trigger_reason="StopTransaction",
            samples=samples,
            stopped_reason=reason or "Local",
        )
        result = await self._store(record)
        if result.status is StoredStatus.STORED:
            self.hub.transaction_ended(station_id, transaction)
            self.hub.measured.ended(station_id, transaction)
            self.hub.replan(f"{station_id} transaction {transaction} ended")
            stored = await self.hub.write(
                lambda store: store.session_start(station_id, transaction)
            )
            if stored is not None:
                profile_id = self.hub.profile_id(stored[0], transaction)
                self.after_answer(lambda: self._clear(profile_id))
        self._starts.pop(transaction, None)
        self._verified.discard(transaction)
        return self.results.StopTransaction(id_tag_info=ACCEPTED)

    async def _clear(self, profile_id: int) -> None:
        """Remove a finished transaction's TxProfile (a station that already dropped it
        answers Unknown, which is fine)."""
        try:
            await self.request(clear_profile_v16(profile_id))
        except Exception as error:
            LOGGER.info("%s: ClearChargingProfile %d failed: %s", self.id, profile_id, error)


def _configuration(answer: object) -> dict[str, str]:
    """A GetConfiguration answer's known keys and their values."""
    keys = getattr(answer, "configuration_key", None) or []
    values: dict[str, str] = {}
    for entry in keys:
        if isinstance(entry, Mapping) and isinstance(entry.get("key"), str):
            value = entry.get("value")
            if isinstance(value, str):
                values[entry["key"]] = value
    return values


def formation_spelling(frame: str) -> str:
    """A CallError frame with 1.6's ``FormationViolation`` for 2.x's ``FormatViolation``
    (OCPP-J 1.6, 4.2.3): the ``ocpp`` package raises the 2.x name whatever the version.

    >>> formation_spelling('[4,"1","FormatViolation","bad",{}]')
    '[4, "1", "FormationViolation", "bad", {}]'
    """
    if not frame.startswith("[4"):
        return frame
    try:
        message = json.loads(frame)
    except ValueError:
        return frame
    if isinstance(message, list) and len(message) > 2 and message[2] == "FormatViolation":
        message[2] = "FormationViolation"
        return json.dumps(message)
    return frame


MAX_OCPP_INTEGER = 2**31 - 1
MAX_REGISTER_WH = 2**62
"""Registers beyond this do not fit the store's 64-bit columns with room to add."""


def bounded(value: int, field: str, maximum: int) -> int:
    """``value`` if within ``[0, maximum]``; else a PropertyConstraintViolation naming
    ``field`` (the 1.6 schemas bound no integer; the store's columns do)."""
    if not 0 <= value <= maximum:
        raise PropertyConstraintViolationError(
            description=f"{field} {value} is outside 0..{maximum}"
        )
    return value


class Station16(Handlers16, ChargePoint16):
    """A connected OCPP 1.6J station."""

    async def _send(self, message: str) -> None:
        """Every frame goes out through here (the package's and ours)."""
        await super()._send(formation_spelling(message))
