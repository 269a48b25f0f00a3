"""One connected charging station, as the CSMS sees it: the OCPP messages it sends and the
answers it gets, on OCPP 2.1 and 2.0.1.

Every message that changes state is written to the store (in the store's writer thread)
and committed before the answer goes back, so a station may forget a meter value as soon
as it is acknowledged. A frame that is not OCPP, breaks the schema or fails in a handler
gets an OCPP CallError; the connection stays up.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ocpp import v21, v201
from ocpp.charge_point import ChargePoint
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
from ocpp.v21.enums import Action as Action21
from ocpp.v201.enums import Action as Action201

from v2ghub.store.records import Event, EvNeeds, MeterSample, OcppVersion
from v2ghub.units import w_to_kw

LOGGER = logging.getLogger("v2ghub.live")

HEARTBEAT_INTERVAL_S = 300
"""How often stations are asked to send a Heartbeat (they send meter values far more often)."""

_WH_PER_UNIT = {"Wh": 1.0, "kWh": 1000.0}
_KW_PER_UNIT = {"W": 0.001, "kW": 1.0}
_AC_PHASES = {"AC_single_phase": 1, "AC_two_phase": 2, "AC_three_phase": 3}
"""Phases of an AC transfer mode (AC_BPT and others: three); ``evMaxVoltage`` is per phase."""


class StationHub(Protocol):
    """What a station connection needs from the server around it."""

    def now(self) -> datetime: ...

    async def write(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Run the store's ``method`` in the store's writer thread and return its result."""
        ...

    def replan(self, reason: str) -> None:
        """Ask the control loop for a new plan soon."""
        ...

    def transaction_ended(self, station_id: str, transaction_id: str) -> None:
        """Forget what was sent for a finished transaction."""
        ...


@dataclass(frozen=True)
class _Reading:
    import_wh: int | None = None
    export_wh: int | None = None
    power_kw: float | None = None
    soc: float | None = None


def parse_time(text: object, field: str) -> datetime:
    """An OCPP dateTime as aware UTC; a naive one is taken as UTC (OCPP requires UTC)."""
    if not isinstance(text, str):
        raise FormatViolationError(description=f"{field} must be a dateTime string")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise FormatViolationError(description=f"{field}: {text!r} is not a dateTime") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _scaled(sampled: dict[str, Any]) -> tuple[float, str]:
    unit = sampled.get("unit_of_measure") or {}
    multiplier = int(unit.get("multiplier", 0))
    return float(sampled["value"]) * 10.0**multiplier, str(unit.get("unit", ""))


def _reading(sampled_values: Sequence[dict[str, Any]]) -> _Reading:
    """Totals only: a per-phase value (with ``phase``) is a part, not the register."""
    import_wh = export_wh = None
    power_kw = soc = None
    for sampled in sampled_values:
        if sampled.get("phase"):
            continue
        measurand = sampled.get("measurand", "Energy.Active.Import.Register")
        value, unit = _scaled(sampled)
        if measurand == "Energy.Active.Import.Register":
            import_wh = round(value * _WH_PER_UNIT.get(unit or "Wh", 1.0))
        elif measurand == "Energy.Active.Export.Register":
            export_wh = round(value * _WH_PER_UNIT.get(unit or "Wh", 1.0))
        elif measurand == "Power.Active.Import":
            power_kw = (power_kw or 0.0) + value * _KW_PER_UNIT.get(unit or "W", 0.001)
        elif measurand == "Power.Active.Export":
            power_kw = (power_kw or 0.0) - value * _KW_PER_UNIT.get(unit or "W", 0.001)
        elif measurand == "SoC":
            soc = value / 100.0
    return _Reading(import_wh, export_wh, power_kw, soc)


def lacks_export(meter_value: Sequence[dict[str, Any]]) -> bool:
    """Whether a register reading in ``meter_value`` leaves the export register out."""
    readings = (_reading(entry.get("sampled_value", [])) for entry in meter_value)
    return any(r.import_wh is not None and r.export_wh is None for r in readings)


def meter_samples(
    station_id: str,
    transaction_id: str,
    seq_no: int,
    meter_value: Sequence[dict[str, Any]],
    *,
    export_wh: int = 0,
) -> list[MeterSample]:
    """The register readings in a message's ``meterValue`` list.

    A reading without an import register (only power or SoC) is not a register reading and
    is left out; one without an export register (a charge-only station's) keeps the export
    register where it was: ``export_wh``, or the message's previous reading.
    """
    samples = []
    for entry in meter_value:
        reading = _reading(entry.get("sampled_value", []))
        if reading.import_wh is None:
            continue
        if reading.export_wh is not None:
            export_wh = reading.export_wh
        samples.append(
            MeterSample(
                station_id=station_id,
                transaction_id=transaction_id,
                seq_no=seq_no,
                measured_at=parse_time(entry.get("timestamp"), "meterValue.timestamp"),
                import_register_wh=reading.import_wh,
                export_register_wh=export_wh,
                power_kw=reading.power_kw,
                soc=reading.soc,
            )
        )
    return samples


def _kilo(value: object) -> float | None:
    """W as kW, or Wh as kWh (``None`` stays ``None``)."""
    return None if value is None else w_to_kw(float(value))  # type: ignore[arg-type]


def ev_needs(
    station_id: str, evse_id: int, charging_needs: dict[str, Any], received_at: datetime
) -> EvNeeds:
    """A NotifyEVChargingNeeds request as the store's :class:`EvNeeds`.

    Energies: the battery is ``evEnergyCapacity`` and the SoC ``stateOfCharge`` (DC
    parameters, or ``customData`` on AC); the
    target is ``targetSoC`` x capacity when given (2.1), else stored energy plus
    ``evTargetEnergyRequest`` (2.1) or ``energyAmount`` (2.0.1), which are energy still to
    be delivered; the floor is stored energy plus ``evMinV2XEnergyRequest`` (negative
    when the vehicle is above the lowest level it accepts for V2X).
    """
    dc = charging_needs.get("dc_charging_parameters") or {}
    ac = charging_needs.get("ac_charging_parameters") or {}
    v2x = charging_needs.get("v2x_charging_parameters") or {}
    # AC parameters carry no battery size or SoC: a station may pass the vehicle's in
    # customData (as v2ghub's simulated chargers do).
    extra = charging_needs.get("custom_data") or {}
    battery_kwh = _kilo(dc.get("ev_energy_capacity", extra.get("ev_energy_capacity")))
    soc_percent = dc.get("state_of_charge", extra.get("state_of_charge"))
    soc = None if soc_percent is None else float(soc_percent) / 100.0
    stored_kwh = None if battery_kwh is None or soc is None else battery_kwh * soc
    target_kwh = None
    target_soc = v2x.get("target_soc")
    if target_soc is not None and battery_kwh is not None:
        target_kwh = battery_kwh * float(target_soc) / 100.0
    elif stored_kwh is not None:
        request_wh = v2x.get("ev_target_energy_request")
        if request_wh is None:
            request_wh = dc.get("energy_amount", ac.get("energy_amount"))
        if request_wh is not None:
            target_kwh = stored_kwh + float(request_wh) / 1000.0
    min_kwh = None
    floor_wh = v2x.get("ev_min_v2x_energy_request")
    if floor_wh is not None and stored_kwh is not None:
        min_kwh = max(stored_kwh + float(floor_wh) / 1000.0, 0.0)
    max_charge_kw = _kilo(v2x.get("max_charge_power"))
    if max_charge_kw is None:
        max_charge_kw = _kilo(dc.get("ev_max_power"))
    if max_charge_kw is None and ac.get("ev_max_current") is not None:
        phases = _AC_PHASES.get(str(charging_needs.get("requested_energy_transfer")), 3)
        volts = float(ac.get("ev_max_voltage", 230))
        max_charge_kw = float(ac["ev_max_current"]) * volts * phases / 1000
    departure = charging_needs.get("departure_time")
    return EvNeeds(
        station_id=station_id,
        evse_id=evse_id,
        received_at=received_at,
        departure_at=None if departure is None else parse_time(departure, "departureTime"),
        battery_kwh=battery_kwh,
        soc=soc,
        target_energy_kwh=target_kwh,
        min_energy_kwh=min_kwh,
        max_charge_kw=max_charge_kw,
        max_discharge_kw=_kilo(v2x.get("max_discharge_power")),
        min_charge_kw=_kilo(v2x.get("min_charge_power")),
        min_discharge_kw=_kilo(v2x.get("min_discharge_power")),
        control_mode=charging_needs.get("control_mode"),
    )


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
    """Handlers for the messages a station sends, shared by both OCPP versions.

    Mixed into the ``ocpp`` package's ``ChargePoint`` of the negotiated version
    (:func:`station_connection`).
    """

    id: str
    version: OcppVersion
    hub: StationHub
    _call_result: Any
    _awaited: set[str]

    def _answer(self, action: str, **fields: Any) -> Any:
        return getattr(self._call_result, action)(**fields)

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
                self._response_queue.put_nowait(message)  # type: ignore[attr-defined]
            else:
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
        if message.action not in self.route_map:  # type: ignore[attr-defined]
            await self._send_error(message.unique_id, self._unhandled(message.action))
            return
        try:
            await self._handle_call(message)  # type: ignore[attr-defined]
        except OCPPError as error:
            await self._send_error(message.unique_id, error)
        except Exception as error:
            LOGGER.exception("%s: %s failed", self.id, message.action)
            await self._send_error(message.unique_id, InternalError(description=str(error)))

    def _unhandled(self, action: str) -> OCPPError:
        actions = Action21 if self.version is OcppVersion.V21 else Action201
        if action in {member.value for member in actions}:
            return NotImplementedCallError(description=f"no handler for {action}")
        return NotSupportedError(description=f"{action} is not an action of {self.version}")

    async def _send_error(self, unique_id: str, error: OCPPError) -> None:
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
        await self._send(frame.to_json())  # type: ignore[attr-defined]

    async def request(self, payload: Any) -> Any:
        """Send a request to the station and return its answer.

        Raises ``OCPPError`` when the station answers with a CallError and
        ``TimeoutError`` when it does not answer in time: never a silent ``None``.
        """
        unique_id = str(uuid.uuid4())
        self._awaited.add(unique_id)
        try:
            return await ChargePoint.call(self, payload, suppress=False, unique_id=unique_id)
        finally:
            self._awaited.discard(unique_id)

    # --- handlers ---------------------------------------------------------------------------

    @on("BootNotification")
    async def on_boot_notification(
        self, *, charging_station: dict[str, Any], reason: str, **_: Any
    ) -> Any:
        now = self.hub.now()
        await self.hub.write(
            "record_boot",
            self.id,
            ocpp_version=self.version,
            vendor=charging_station.get("vendor_name"),
            model=charging_station.get("model"),
            at=now,
        )
        await self.hub.write(
            "record_event", Event(at=now, kind="boot", detail=reason, station_id=self.id)
        )
        return self._answer(
            "BootNotification",
            current_time=now.isoformat(),
            interval=HEARTBEAT_INTERVAL_S,
            status="Accepted",
        )

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> Any:
        return self._answer("Heartbeat", current_time=self.hub.now().isoformat())

    @on("StatusNotification")
    async def on_status_notification(
        self, timestamp: str, connector_status: str, evse_id: int, **_: Any
    ) -> Any:
        await self.hub.write(
            "set_evse_status",
            self.id,
            evse_id,
            connector_status,
            parse_time(timestamp, "timestamp"),
        )
        return self._answer("StatusNotification")

    @on("Authorize")
    def on_authorize(self, id_token: dict[str, Any], **_: Any) -> Any:
        return self._answer("Authorize", id_token_info={"status": "Accepted"})

    @on("TransactionEvent")
    async def on_transaction_event(
        self,
        *,
        event_type: str,
        timestamp: str,
        trigger_reason: str,
        seq_no: int,
        transaction_info: dict[str, Any],
        evse: dict[str, Any] | None = None,
        id_token: dict[str, Any] | None = None,
        meter_value: list[dict[str, Any]] | None = None,
        offline: bool = False,
        **_: Any,
    ) -> Any:
        transaction_id = str(transaction_info["transaction_id"])
        export_wh = 0
        if lacks_export(meter_value or []):
            export_wh = await self.hub.write("latest_export_wh", self.id, transaction_id)
        samples = meter_samples(
            self.id, transaction_id, seq_no, meter_value or [], export_wh=export_wh
        )
        try:
            stored = await self.hub.write(
                "transaction_event",
                station_id=self.id,
                # Only the first event must name the EVSE; the store keeps it.
                evse_id=None if evse is None else int(evse["id"]),
                transaction_id=transaction_id,
                event_type=event_type,
                seq_no=seq_no,
                at=parse_time(timestamp, "timestamp"),
                trigger_reason=trigger_reason,
                samples=samples,
                id_token=None if id_token is None else str(id_token.get("id_token")),
                stopped_reason=transaction_info.get("stopped_reason"),
                offline=offline,
            )
        except ValueError as error:
            await self.hub.write(
                "record_event",
                Event(at=self.hub.now(), kind="refused", detail=str(error), station_id=self.id),
            )
            raise PropertyConstraintViolationError(description=str(error)) from error
        if stored and event_type == "Ended":
            self.hub.transaction_ended(self.id, transaction_id)
        if stored and event_type in ("Started", "Ended"):
            self.hub.replan(f"{self.id} transaction {transaction_id} {event_type.lower()}")
        if id_token is not None:
            return self._answer("TransactionEvent", id_token_info={"status": "Accepted"})
        return self._answer("TransactionEvent")

    @on("MeterValues")
    async def on_meter_values(
        self, evse_id: int, meter_value: list[dict[str, Any]], **_: Any
    ) -> Any:
        export_wh = 0
        if lacks_export(meter_value):
            export_wh = await self.hub.write("evse_export_wh", self.id, evse_id)
        samples = meter_samples(self.id, "", -1, meter_value, export_wh=export_wh)
        # The transaction open on the EVSE when measured: station time, as its start is.
        measured_at = min((s.measured_at for s in samples), default=self.hub.now())
        try:
            await self.hub.write("add_meter_values", self.id, evse_id, samples, at=measured_at)
        except ValueError as error:
            raise PropertyConstraintViolationError(description=str(error)) from error
        return self._answer("MeterValues")

    @on("NotifyEVChargingNeeds")
    async def on_notify_ev_charging_needs(
        self, charging_needs: dict[str, Any], evse_id: int, **_: Any
    ) -> Any:
        needs = ev_needs(self.id, evse_id, charging_needs, self.hub.now())
        await self.hub.write("record_needs", needs)
        self.hub.replan(f"{self.id} EVSE {evse_id} sent its charging needs")
        return self._answer("NotifyEVChargingNeeds", status="Accepted")


class _Station21(StationConnection, v21.ChargePoint):  # type: ignore[misc]
    pass


class _Station201(StationConnection, v201.ChargePoint):  # type: ignore[misc]
    pass


def station_connection(
    station_id: str, connection: Any, version: OcppVersion, hub: StationHub, *, timeout_s: float
) -> StationConnection:
    """The handler object for one connected station speaking ``version``."""
    kind = _Station21 if version is OcppVersion.V21 else _Station201
    station: StationConnection = kind(station_id, connection, response_timeout=timeout_s)
    station.version = version
    station.hub = hub
    station._awaited = set()
    return station


def answer_status(result: Any) -> str:
    """The status a station answered (``Accepted``, ``Rejected``...) with its reason, if any."""
    status = str(getattr(result, "status", "Accepted"))
    info = getattr(result, "status_info", None)
    if status != "Accepted" and info:
        reason = info.get("reason_code") if isinstance(info, dict) else None
        if reason:
            return f"{status}: {reason}"
    return status
