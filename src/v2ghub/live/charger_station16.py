"""A simulated OCPP 1.6J station (subprotocol ``ocpp1.6``).

A visit: StatusNotification Preparing, Authorize(idTag), StartTransaction (the central
system assigns the integer transactionId in its answer), MeterValues of both registers at
Transaction.Begin, then MeterValues every
``MeterValueSampleInterval`` (at most as often as the fleet's meter interval), then, when
the vehicle leaves, StopTransaction (reason EVDisconnected, the final reading as
transactionData), Finishing and Available. Charging, SuspendedEV and SuspendedEVSE follow
what the battery does.

Offline, requests are queued in the order they are made and sent after the next boot: the
MeterValues and StopTransaction of a transaction whose StartTransaction is still queued
get the transactionId its answer assigns, when they are sent. A request the line dropped
before its answer stays first in the queue and is sent again. Authorize and
StatusNotification made offline are not kept: the station authorizes the vehicle locally
(as ``LocalAuthorizeOffline`` allows) and reports its state after boot.

The power in force is the limit of the stacked charging profiles
(:func:`~v2ghub.live.charger_profiles16.limit_in_force`): the TxProfile of the running
transaction, else the TxDefaultProfile, capped by a ChargePointMaxProfile; with none, the
station's and vehicle's maximum. A positive limit charges up to the owner's target (the car
stops at its own charge limit); a negative one discharges, down to the owner's floor.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime

from ocpp import v16
from ocpp.routing import on

from v2ghub.live.charger_config import ChargerConfig
from v2ghub.live.charger_messages import (
    CallAnswer,
    ProfileRefusedError,
    Request,
    seconds_between,
    timestamp,
)
from v2ghub.live.charger_messages16 import (
    MAX_CHARGING_PROFILES_INSTALLED,
    Configuration16,
    authorize,
    boot_notification16,
    meter_value16,
    meter_values,
    start_transaction,
    status_notification16,
    stop_transaction,
)
from v2ghub.live.charger_profiles16 import (
    TX_PROFILE,
    ChargingProfile16,
    Limit,
    composite_schedule,
    limit_in_force,
    limit_in_unit,
    parse_profile16,
)
from v2ghub.live.charger_station import FleetContext, Outgoing, StationBase, StationLink
from v2ghub.live.ocpp_adapter import ChargePoint16

LOGGER = logging.getLogger(__name__)


class Station16(StationBase[ChargingProfile16]):
    """A simulated OCPP 1.6J station (one connector)."""

    dropped_offline = frozenset({"StatusNotification", "Authorize"})
    meter_actions = frozenset({"StartTransaction", "MeterValues", "StopTransaction"})

    def __init__(self, fleet: FleetContext, index: int, config: ChargerConfig) -> None:
        super().__init__(fleet, index, config)
        self.link_class = Link16
        self.configuration = Configuration16(
            current_only=config.current_only,
            dc=config.dc,
            meter_interval_s=max(1, round(fleet.config.meter_interval_s)),
        )
        self.transaction_ids: dict[int, int] = {}
        """Visit -> the transactionId the central system assigned it."""
        self.status: str | None = None
        """The connector's status as last reported (or queued)."""
        self.last_meter_at: datetime | None = None

    @property
    def rate_unit(self) -> str:
        """The one ``chargingRateUnit`` the station takes."""
        return "A" if self.config.current_only else "W"

    @property
    def transaction_id(self) -> int | None:
        """The running transaction's id, once the central system has assigned it."""
        return None if self.vehicle is None else self.transaction_ids.get(self.visits)

    def transaction_label(self) -> str | None:
        return None if self.transaction_id is None else str(self.transaction_id)

    def boot_payload(self, *, first: bool) -> Request:
        return boot_notification16(station_id=self.config.station_id)

    def status_payload(self, now: datetime) -> Request:
        self.status = "Available" if self.vehicle is None else self.charging_state()
        return status_notification16(at=now, status=self.status)

    # -- vehicles and transactions (called from the fleet's tick) --

    def sample(self, now: datetime) -> None:
        self.apply_profiles(now)
        self._report_status(now, self.charging_state())
        if self._meter_due(now):
            self.last_meter_at = now
            self.seq_no += 1
            payload = meter_values(meter=self._meter(now, "Sample.Periodic"))
            self.enqueue("MeterValues", payload, visit=self.visits)

    def _meter_due(self, now: datetime) -> bool:
        interval_s = self.configuration.meter_interval_s
        if interval_s <= 0 or self.last_meter_at is None:
            return False
        # The fleet visits a station once a fleet interval: due within half of one.
        slack_s = self.fleet.config.meter_interval_s / 2
        return seconds_between(self.last_meter_at, now) >= interval_s - slack_s

    def start(self, now: datetime) -> None:
        vehicle = self.arrive(now)
        self.apply_profiles(now)
        self._report_status(now, "Preparing")
        self.enqueue("Authorize", authorize(id_token=vehicle.id_token))
        payload = start_transaction(
            at=now,
            id_token=vehicle.id_token,
            import_wh=float(self.fleet.bank.import_wh[self.index]),
        )
        self.enqueue("StartTransaction", payload, visit=self.visits)
        # Both registers at the start: StartTransaction's meterStart has the import only.
        begin = meter_values(meter=self._meter(now, "Transaction.Begin"))
        self.enqueue("MeterValues", begin, visit=self.visits)
        self.seq_no += 1
        self.last_meter_at = now

    def end(self, now: datetime) -> None:
        vehicle = self.vehicle
        assert vehicle is not None
        final = self._meter(now, "Transaction.End")
        payload = stop_transaction(
            at=now,
            id_token=vehicle.id_token,
            import_wh=float(self.fleet.bank.import_wh[self.index]),
            final=final,
        )
        self.seq_no += 1
        self.enqueue("StopTransaction", payload, visit=self.visits)
        self.leave(now)
        self._report_status(now, "Finishing")
        self._report_status(now, "Available")

    def _meter(self, now: datetime, context: str) -> Request:
        bank, i = self.fleet.bank, self.index
        return meter_value16(
            at=now,
            import_wh=float(bank.import_wh[i]),
            export_wh=float(bank.export_wh[i]) if self.config.can_discharge else None,
            power_kw=float(bank.power_kw[i]),
            soc=bank.soc(i),
            context=context,
        )

    def _report_status(self, now: datetime, status: str) -> None:
        if status != self.status:
            self.status = status
            self.enqueue("StatusNotification", status_notification16(at=now, status=status))

    def payload_to_send(self, item: Outgoing) -> Request | None:
        if item.visit is None or item.action == "StartTransaction":
            return item.payload
        transaction_id = self.transaction_ids.get(item.visit)
        if transaction_id is not None:
            return {**item.payload, "transaction_id": transaction_id}
        if item.action == "MeterValues":
            return item.payload  # a reading outside any transaction the CSMS knows
        LOGGER.warning(
            "%s: %s dropped: its StartTransaction got no transactionId",
            self.config.station_id,
            item.action,
        )
        return None

    def answered(self, item: Outgoing, answer: CallAnswer | None) -> None:
        if item.visit is None:
            return
        if item.action == "StartTransaction" and answer is not None:
            if answer.transaction_id is not None:
                self.transaction_ids[item.visit] = answer.transaction_id
        elif item.action == "StopTransaction":
            self.transaction_ids.pop(item.visit, None)

    # -- what the central system asks (called from the link) --

    def set_profile(self, connector_id: int, raw: object) -> str:
        """SetChargingProfile: Accepted or Rejected (the reason is logged)."""
        now = self.fleet.clock.now()
        try:
            profile = parse_profile16(
                raw,
                connector_id=connector_id,
                received_at=now,
                rate_unit=self.rate_unit,
                can_discharge=self.config.can_discharge,
            )
            self._check_room(profile)
        except ProfileRefusedError as refused:
            LOGGER.info("%s refused a profile: %s", self.config.station_id, refused)
            return "Rejected"
        replaced = [k for k, p in self.profiles.items() if _replaces(profile, p)]
        self.change_profiles(now, removed=replaced, added=profile)
        return "Accepted"

    def _check_room(self, profile: ChargingProfile16) -> None:
        if profile.purpose == TX_PROFILE:
            if self.vehicle is None:
                raise ProfileRefusedError("NoTransaction", "a TxProfile needs a transaction")
            if profile.transaction_id not in (None, self.transaction_id):
                raise ProfileRefusedError(
                    "TxNotFound", f"transaction {profile.transaction_id} is not running"
                )
        kept = sum(not _replaces(profile, p) for p in self.profiles.values())
        if kept >= MAX_CHARGING_PROFILES_INSTALLED:
            raise ProfileRefusedError("TooManyProfiles", f"{kept} profiles installed")

    def clear_profiles(
        self,
        *,
        profile_id: int | None,
        connector_id: int | None,
        purpose: str | None,
        stack_level: int | None,
    ) -> str:
        """ClearChargingProfile by id, else by the criteria given: Accepted or Unknown."""
        matched = [
            p.profile_id
            for p in self.profiles.values()
            if (profile_id is not None and p.profile_id == profile_id)
            or (
                profile_id is None
                and connector_id in (None, p.connector_id)
                and purpose in (None, p.purpose)
                and stack_level in (None, p.stack_level)
            )
        ]
        if not matched:
            return "Unknown"
        self.change_profiles(self.fleet.clock.now(), removed=matched)
        return "Accepted"

    def composite(self, connector_id: int, duration_s: int, unit: str | None) -> Request:
        """GetCompositeSchedule: the limits in force from now for ``duration_s``, in
        ``unit`` (W or A; the station's own when ``None``), within the station's maximum
        power either way, which is also the limit where no profile is in force. Rejected
        for an unknown connector or A on a DC station."""
        unit = unit or self.rate_unit
        if connector_id not in (0, 1) or duration_s < 0 or (unit == "A" and self.config.dc):
            return {"status": "Rejected"}
        now = self.fleet.clock.now()
        start = now.replace(microsecond=now.microsecond // 1000 * 1000)
        periods = composite_schedule(
            self.profiles.values(),
            start=start,
            duration_s=duration_s,
            transaction_start=start if self.vehicle is None else self.vehicle.arrived_at,
            fallback=Limit(self.config.max_power_kw, None),
        )
        max_kw = self.config.max_power_kw
        schedule_periods: list[Request] = []
        for offset_s, limit in periods:
            power_kw = min(max(limit.power_kw, -max_kw), max_kw)
            period: Request = {
                "start_period": offset_s,
                "limit": limit_in_unit(power_kw, unit=unit, phases=limit.phases),
            }
            if limit.phases is not None:
                period["number_phases"] = limit.phases
            schedule_periods.append(period)
        return {
            "status": "Accepted",
            "connector_id": connector_id,
            "schedule_start": timestamp(start),
            "charging_schedule": {
                "duration": duration_s,
                "start_schedule": timestamp(start),
                "charging_rate_unit": unit,
                "charging_schedule_period": schedule_periods,
            },
        }

    def change_configuration(self, key: str, value: str) -> str:
        """ChangeConfiguration: Accepted, Rejected or NotSupported."""
        status, interval_s = self.configuration.change(key, value)
        if interval_s is not None:
            self.configuration = Configuration16(
                current_only=self.configuration.current_only,
                dc=self.configuration.dc,
                meter_interval_s=interval_s,
            )
        return status

    def apply_profiles(self, now: datetime) -> None:
        """Set the bank's command from the profiles in force at ``now`` (NaN: none, full
        power); a negative limit is followed as a setpoint."""
        start = now if self.vehicle is None else self.vehicle.arrived_at
        limit = limit_in_force(self.profiles.values(), now, transaction_start=start)
        bank, i = self.fleet.bank, self.index
        bank.command_kw[i] = math.nan if limit is None else limit.power_kw
        bank.follows_setpoint[i] = limit is not None and limit.power_kw < 0


def _replaces(new: ChargingProfile16, old: ChargingProfile16) -> bool:
    """A profile replaces one with its id, or with its purpose, stack level and connector."""
    return new.profile_id == old.profile_id or (
        new.purpose == old.purpose
        and new.stack_level == old.stack_level
        and new.connector_id == old.connector_id
    )


class Link16(StationLink, ChargePoint16):
    """The station end of a 1.6 connection."""

    station: Station16
    results = v16.call_result
    requests = v16.call

    def _answer(self, action: str, status: str, *, refused: bool) -> object:
        if refused:
            self.count_refused(action)
        answer: object = getattr(self.results, action)(status=status)
        return answer

    @on("SetChargingProfile")
    def on_set_charging_profile(
        self, *, connector_id: int, cs_charging_profiles: object, **_: object
    ) -> object:
        status = self.station.set_profile(connector_id, cs_charging_profiles)
        return self._answer("SetChargingProfile", status, refused=status != "Accepted")

    @on("ClearChargingProfile")
    def on_clear_charging_profile(
        self,
        id: int | None = None,  # the field's name in OCPP 1.6
        connector_id: int | None = None,
        charging_profile_purpose: str | None = None,
        stack_level: int | None = None,
        **_: object,
    ) -> object:
        status = self.station.clear_profiles(
            profile_id=id,
            connector_id=connector_id,
            purpose=charging_profile_purpose,
            stack_level=stack_level,
        )
        return self._answer("ClearChargingProfile", status, refused=False)

    @on("GetCompositeSchedule")
    def on_get_composite_schedule(
        self,
        *,
        connector_id: int,
        duration: int,
        charging_rate_unit: str | None = None,
        **_: object,
    ) -> object:
        answer = self.station.composite(connector_id, duration, charging_rate_unit)
        if answer["status"] != "Accepted":
            self.count_refused("GetCompositeSchedule")
        result: object = self.results.GetCompositeSchedule(**answer)
        return result

    @on("GetConfiguration")
    def on_get_configuration(self, key: list[str] | None = None, **_: object) -> object:
        answer: object = self.results.GetConfiguration(**self.station.configuration.answer(key))
        return answer

    @on("ChangeConfiguration")
    def on_change_configuration(self, *, key: str, value: str, **_: object) -> object:
        status = self.station.change_configuration(key, value)
        return self._answer("ChangeConfiguration", status, refused=status != "Accepted")
