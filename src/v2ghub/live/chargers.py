"""Simulated V2X charging stations that speak real OCPP (2.1, 2.0.1 or 1.6J, client side)
to any CSMS: ``v2ghub chargers``.

Each station holds one websocket (subprotocol ``ocpp2.1``, ``ocpp2.0.1`` or ``ocpp1.6``,
HTTP Basic auth with the station id as user), boots, reports its status, sends heartbeats,
and serves a stream of vehicles: each visit is one transaction. A 2.x station sends
TransactionEvent Started, the vehicle's NotifyEVChargingNeeds, a TransactionEvent Updated
every meter interval, Ended when the vehicle leaves, and obeys SetChargingProfile,
UpdateDynamicSchedule and ClearChargingProfile; a 1.6 station is in
:mod:`v2ghub.live.charger_station16`. Any other request is answered with a NotImplemented
CallError.

Many stations run in one process: one shared tick steps every battery as arrays
(:class:`~v2ghub.live.charger_fleet.BatteryBank`) and spreads the meter values of the
stations over the meter interval; each station's own task only sends what the tick queued.
Events made while a station is offline are kept and sent in order after it reconnects (on
2.x a TransactionEvent with ``offline=True`` and its original seqNo, in the same
transaction). All time comes from a
:class:`~v2ghub.live.clock.Clock`, so a :class:`~v2ghub.live.clock.ScaledClock` runs a day
in minutes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import time
import uuid
from datetime import datetime, timedelta
from urllib.parse import quote

import numpy as np
import numpy.typing as npt
from ocpp import v21, v201
from ocpp.exceptions import OCPPError
from ocpp.routing import on
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.typing import Subprotocol

from v2ghub.live.charger_config import (
    ChargerConfig,
    FleetConfig,
    FleetStats,
    StationStats,
    StationView,
    make_fleet_config,
)
from v2ghub.live.charger_fleet import BatteryBank
from v2ghub.live.charger_frequency import FrequencyMode, GridFrequency, RegulationSamples
from v2ghub.live.charger_messages import (
    FREQUENCY_MODES,
    MODE_CENTRAL_FREQUENCY,
    CallAnswer,
    ChargingProfile,
    ProfileCriteria,
    ProfileRefusedError,
    Request,
    SchedulePeriod,
    ScheduleRates,
    boot_notification,
    charging_needs,
    meter_value,
    parse_profile,
    period_command_kw,
    seconds_between,
    status_notification,
    transaction_event,
)
from v2ghub.live.charger_station import (
    DEFAULT_HEARTBEAT_S,
    Collector,
    FleetContext,
    Outgoing,
    StationBase,
    StationLink,
)
from v2ghub.live.charger_station16 import Station16
from v2ghub.live.clock import Clock
from v2ghub.live.ocpp_adapter import ChargePoint21, ChargePoint201
from v2ghub.live.ocpp_payloads import obj, parse_time
from v2ghub.store.records import OcppVersion
from v2ghub.units import SECONDS_PER_HOUR

LOGGER = logging.getLogger(__name__)

__all__ = [
    "ChargerConfig",
    "ChargerFleet",
    "FleetConfig",
    "FleetStats",
    "StationStats",
    "StationView",
    "make_fleet_config",
    "run_fleet",
]

RETRY_AFTER_ERROR_S = 60.0
REGULATION_TICKS_PER_SAMPLE = 4
"""While an EVSE is in a frequency mode the fleet ticks this often per sample interval."""
MAX_METER_PHASES = 100
"""Stations are spread over this many slots of the meter interval, not all at once."""
_OFFLINE_FLAGGED = frozenset({"TransactionEvent"})
"""The 2.x requests that say they were made offline (``offline=True``)."""


class _Station(StationBase[ChargingProfile]):
    """An OCPP 2.1 or 2.0.1 station: each visit is one TransactionEvent transaction."""

    meter_actions = frozenset({"TransactionEvent"})

    def __init__(self, fleet: FleetContext, index: int, config: ChargerConfig) -> None:
        super().__init__(fleet, index, config)
        self.link_class = _Link21 if config.ocpp_version is OcppVersion.V21 else _Link201
        self.transaction_id: str | None = None

    def boot_payload(self, *, first: bool) -> Request:
        return boot_notification(station_id=self.config.station_id, first=first)

    def status_payload(self, now: datetime) -> Request:
        return status_notification(at=now, occupied=self.vehicle is not None)

    def transaction_label(self) -> str | None:
        return self.transaction_id

    def payload_to_send(self, item: Outgoing) -> Request:
        # Only TransactionEvent has an ``offline`` field; the other requests made offline
        # (NotifyEVChargingNeeds) go as they were made.
        if not item.offline or item.action not in _OFFLINE_FLAGGED:
            return item.payload
        return {**item.payload, "offline": True}

    # -- vehicles and transactions (called from the fleet's tick) --

    def sample(self, now: datetime) -> None:
        if self.profiles:
            self.apply_profiles(now)
        if self.fleet.regulation.active(self.index):
            return  # in a frequency mode the samples go in batches: report_regulation
        self._transaction_event("Updated", now, "MeterValuePeriodic", "Sample.Periodic")

    def report_regulation(self, now: datetime) -> None:
        """Send the samples taken in a frequency mode since the last report as one
        TransactionEvent Updated (MeterValuePeriodic), one ``meterValue`` per sample."""
        regulation = self.fleet.regulation
        samples = regulation.take(self.index, regulation.seconds(now))
        if not samples or self.transaction_id is None:
            return
        meters = [
            meter_value(
                at=sample.at,
                import_wh=sample.import_wh,
                export_wh=sample.export_wh,
                power_kw=sample.power_kw,
                soc=sample.soc,
                context="Sample.Periodic",
            )
            for sample in samples
        ]
        self._transaction_event(
            "Updated", now, "MeterValuePeriodic", "Sample.Periodic", meters=meters
        )

    def start(self, now: datetime) -> None:
        vehicle = self.arrive(now)
        self.transaction_id = str(uuid.UUID(bytes=self.rng.bytes(16), version=4))
        self.apply_profiles(now)
        self.enqueue("StatusNotification", status_notification(at=now, occupied=True))
        self._transaction_event(
            "Started", now, "CablePluggedIn", "Transaction.Begin", id_token=vehicle.id_token
        )
        needs = charging_needs(
            vehicle=vehicle,
            energy_kwh=float(self.fleet.bank.energy_kwh[self.index]),
            version=self.config.ocpp_version,
            dc=self.config.dc,
        )
        self.enqueue("NotifyEVChargingNeeds", needs)

    def end(self, now: datetime) -> None:
        self.report_regulation(now)
        self.fleet.regulation.stop(self.index)
        self._transaction_event(
            "Ended",
            now,
            "EVCommunicationLost",
            "Transaction.End",
            stopped_reason="EVDisconnected",
        )
        self.transaction_id = None
        self.leave(now)
        self.enqueue("StatusNotification", status_notification(at=now, occupied=False))

    def _transaction_event(
        self,
        event_type: str,
        now: datetime,
        trigger: str,
        context: str,
        *,
        id_token: str | None = None,
        stopped_reason: str | None = None,
        meters: list[Request] | None = None,
    ) -> None:
        """Queue a TransactionEvent with the meter now (or ``meters``, already taken)."""
        if self.transaction_id is None:
            return
        bank, i = self.fleet.bank, self.index
        if event_type == "Ended":
            state = "Idle"
        elif event_type == "Started":
            state = "EVConnected"
        else:
            state = self.charging_state()
        meter = meters or meter_value(
            at=now,
            import_wh=float(bank.import_wh[i]),
            export_wh=float(bank.export_wh[i]),
            power_kw=float(bank.power_kw[i]),
            soc=bank.soc(i),
            context=context,
        )
        payload = transaction_event(
            event_type=event_type,
            at=now,
            seq_no=self.seq_no,
            transaction_id=self.transaction_id,
            trigger_reason=trigger,
            charging_state=state,
            meter=meter,
            id_token=id_token,
            stopped_reason=stopped_reason,
        )
        self.seq_no += 1
        self.enqueue("TransactionEvent", payload)

    # -- charging profiles (called from the CSMS's requests) --

    def set_profile(self, evse_id: int, profile: object) -> tuple[str, str | None]:
        """Store a SetChargingProfile's ``chargingProfile``; (status, reasonCode)."""
        now = self.fleet.clock.now()
        if evse_id not in (0, 1):
            return "Rejected", "UnknownEvse"
        try:
            parsed = parse_profile(
                profile,
                received_at=now,
                version=self.config.ocpp_version,
                can_discharge=self.config.can_discharge,
            )
        except ProfileRefusedError as refused:
            LOGGER.info("%s refused a profile: %s", self.config.station_id, refused)
            return "Rejected", refused.reason_code
        if parsed.purpose == "TxProfile" and (
            self.transaction_id is None
            or (parsed.transaction_id not in (None, self.transaction_id))
        ):
            return "Rejected", "TxNotFound"
        self.change_profiles(now, added=parsed)
        return "Accepted", None

    def update_profile(self, profile_id: int, update: object) -> tuple[str, str | None]:
        """Apply an UpdateDynamicSchedule's ``scheduleUpdate``; (status, reasonCode)."""
        profile = self.profiles.get(profile_id)
        if profile is None:
            return "Rejected", "UnknownProfile"
        rates = ScheduleRates.from_payload(
            obj(update, "scheduleUpdate"),
            rate_unit=profile.rate_unit,
            phases=None,
            field="scheduleUpdate",
        )
        if rates.demands_discharge and not self.config.can_discharge:
            return "Rejected", "V2XNotSupported"
        self.change_profiles(self.fleet.clock.now(), added=profile.updated(rates))
        return "Accepted", None

    def clear_profiles(self, profile_id: int | None, criteria: ProfileCriteria) -> str:
        """ClearChargingProfile by id or by criteria; Accepted or Unknown."""
        matched = [
            p.profile_id
            for p in self.profiles.values()
            if profile_id in (None, p.profile_id) and criteria.matches(p)
        ]
        if not matched:
            return "Unknown"
        self.change_profiles(self.fleet.clock.now(), removed=matched)
        return "Accepted"

    def apply_profiles(self, now: datetime) -> None:
        """Set the bank's command from the profiles in force at ``now``.

        TxProfile wins over TxDefaultProfile, the highest stack level within a purpose;
        a ChargingStationMaxProfile caps the result. A period in a frequency mode hands
        the EVSE to the fleet's :class:`~v2ghub.live.charger_frequency.FrequencyModes`
        (the cap joins its limits). The fleet calls this again when a period in force
        ends (``profile_review_s``). While offline longer than a profile's
        ``maxOfflineDuration`` is not modelled: profiles stay in force.
        """
        bank, i = self.fleet.bank, self.index
        changes = (p.next_change_after(now) for p in self.profiles.values())
        next_change = min((at for at in changes if at is not None), default=None)
        self.fleet.profile_review_s[i] = (
            math.inf if next_change is None else self.fleet.regulation.seconds(next_change)
        )
        command_kw, follows = math.nan, False
        chosen = None
        for purpose in ("TxProfile", "TxDefaultProfile"):
            ranked = sorted(
                (p for p in self.profiles.values() if p.purpose == purpose),
                key=lambda p: -p.stack_level,
            )
            chosen = next((q for q in (p.period_at(now) for p in ranked) if q), None)
            if chosen is not None:
                command_kw, follows = period_command_kw(chosen)
                break
        caps = sorted(
            (p for p in self.profiles.values() if p.purpose == "ChargingStationMaxProfile"),
            key=lambda p: -p.stack_level,
        )
        cap = next((q for q in (p.period_at(now) for p in caps) if q), None)
        if chosen is not None and chosen.mode in FREQUENCY_MODES:
            self._follow_frequency(now, chosen, cap)
            return
        self._leave_frequency_mode(now)
        if cap is not None:
            command_kw = math.inf if math.isnan(command_kw) else command_kw
            if cap.limit_kw is not None:
                command_kw = min(command_kw, max(cap.limit_kw, 0.0))
            if cap.discharge_limit_kw is not None:
                command_kw = max(command_kw, cap.discharge_limit_kw)
        bank.command_kw[i] = command_kw
        bank.follows_setpoint[i] = follows

    def _follow_frequency(
        self, now: datetime, period: SchedulePeriod, cap: SchedulePeriod | None
    ) -> None:
        """Follow ``period``'s watt curve (CentralFrequency or LocalFrequency) within its
        limits and ``cap``'s."""
        cap_kw = None if cap is None or cap.limit_kw is None else max(cap.limit_kw, 0.0)
        limits_kw = [period.limit_kw, cap_kw]
        discharge_limits_kw = [
            period.discharge_limit_kw,
            None if cap is None else cap.discharge_limit_kw,
        ]
        limit_kw = min((x for x in limits_kw if x is not None), default=math.inf)
        discharge_limit_kw = max(
            (x for x in discharge_limits_kw if x is not None), default=-math.inf
        )
        fleet, i = self.fleet, self.index
        mode = (
            FrequencyMode.CENTRAL if period.mode == MODE_CENTRAL_FREQUENCY else FrequencyMode.LOCAL
        )
        fleet.bank.frequency.set_mode(
            i,
            mode,
            baseline_kw=period.baseline_kw,
            curve=period.curve,
            limit_kw=limit_kw,
            discharge_limit_kw=discharge_limit_kw,
        )
        if not fleet.regulation.active(i):
            fleet.regulation.start(i, fleet.regulation.seconds(now))
        fleet.refresh_commands(np.array([i]), now)

    def _leave_frequency_mode(self, now: datetime) -> None:
        """Back to the profiles' plain command: the samples taken so far, and one now, are
        reported."""
        fleet, i = self.fleet, self.index
        if fleet.bank.frequency.mode[i] != FrequencyMode.NONE:
            fleet.bank.frequency.clear(i)
        if fleet.regulation.active(i):
            fleet.regulation.next_sample_s[i] = fleet.regulation.seconds(now)
            fleet.record_samples(now)
            self.report_regulation(now)
            fleet.regulation.stop(i)

    def receive_signal(self, raw_timestamp: object, signal: int, *, arrived_at: datetime) -> str:
        """An AFRRSignal: Accepted when the EVSE is in CentralFrequency mode (it follows the
        signal from its timestamp, or from now if that has passed), else Rejected.

        Records the delay from the timestamp to ``arrived_at`` (wall seconds)."""
        fleet, i = self.fleet, self.index
        at = parse_time(raw_timestamp, "timestamp")
        fleet.collector.afrr_delays_s.append(fleet.clock.seconds(seconds_between(at, arrived_at)))
        fleet.collector.afrr_timestamps_s.append(at.timestamp())
        modes = fleet.bank.frequency
        if modes.mode[i] != FrequencyMode.CENTRAL:
            return "Rejected"
        now = fleet.clock.now()
        if at <= now:
            fleet.advance(now)
            modes.signal[i] = signal
            fleet.refresh_commands(np.array([i]), now)
        else:
            # One signal waits per EVSE: a later one that arrives first replaces it.
            modes.pending_signal[i] = signal
            modes.pending_at_s[i] = fleet.regulation.seconds(at)
        return "Accepted"


class _Link(StationLink):
    """The station end of a 2.x connection: the profile requests both versions share."""

    station: _Station

    def _answer(self, action: str, status: str, reason: str | None) -> object:
        if status != "Accepted":
            self.count_refused(action)
        info = None if reason is None else {"reason_code": reason}
        answer: object = getattr(self.results, action)(status=status, status_info=info)
        return answer

    @on("SetChargingProfile")
    def on_set_charging_profile(
        self, *, evse_id: int, charging_profile: object, **_: object
    ) -> object:
        status, reason = self.station.set_profile(evse_id, charging_profile)
        return self._answer("SetChargingProfile", status, reason)

    @on("ClearChargingProfile")
    def on_clear_charging_profile(
        self,
        charging_profile_id: int | None = None,
        charging_profile_criteria: object = None,
        **_: object,
    ) -> object:
        criteria = ProfileCriteria.from_payload(charging_profile_criteria)
        status = self.station.clear_profiles(charging_profile_id, criteria)
        answer: object = self.results.ClearChargingProfile(status=status)
        return answer


class _Link21(_Link, ChargePoint21):
    results = v21.call_result
    requests = v21.call

    @on("AFRRSignal")
    def on_afrr_signal(self, *, timestamp: object, signal: int, **_: object) -> object:
        status = self.station.receive_signal(timestamp, signal, arrived_at=self.arrived_at)
        reason = None if status == "Accepted" else "NoSignalWattCurve"
        return self._answer("AFRRSignal", status, reason)

    @on("UpdateDynamicSchedule")
    def on_update_dynamic_schedule(
        self, *, charging_profile_id: int, schedule_update: object, **_: object
    ) -> object:
        status, reason = self.station.update_profile(charging_profile_id, schedule_update)
        return self._answer("UpdateDynamicSchedule", status, reason)


class _Link201(_Link, ChargePoint201):
    results = v201.call_result
    requests = v201.call


AnyStation = _Station | Station16


def _make_station(fleet: FleetContext, index: int, config: ChargerConfig) -> AnyStation:
    if config.ocpp_version is OcppVersion.V16:
        return Station16(fleet, index, config)
    return _Station(fleet, index, config)


class ChargerFleet:
    """Runs the stations of a :class:`FleetConfig` against a CSMS; inspectable while running."""

    def __init__(self, config: FleetConfig, *, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.bank = BatteryBank(
            len(config.stations),
            charge_efficiency=config.charge_efficiency,
            discharge_efficiency=config.discharge_efficiency,
        )
        self.collector = Collector()
        self.epoch = clock.now()
        self.regulation = RegulationSamples(
            len(config.stations),
            epoch=self.epoch,
            sample_s=config.regulation_sample_s,
            report_s=config.regulation_report_s,
        )
        self.profile_review_s = np.full(len(config.stations), np.inf)
        self.grid = (
            GridFrequency.synthetic(seed=config.frequency_seed, day_of=self.epoch)
            if config.frequency_trace is None
            else GridFrequency(config.frequency_trace)
        )
        self._stations = [_make_station(self, i, c) for i, c in enumerate(config.stations)]
        self._by_id = {s.config.station_id: s for s in self._stations}
        self._bank_at: datetime | None = None
        self._stopping = asyncio.Event()
        self._meter_values_sent = 0
        self._cpu_s = 0.0
        self._wall_s = 0.0

    def station(self, station_id: str) -> StationView:
        """The station now."""
        return self._by_id[station_id].view()

    def advance(self, now: datetime) -> None:
        """Step every battery to ``now`` (before any command changes).

        AFRRSignals that wait for their timestamp take effect on the way, at that
        instant; EVSEs in LocalFrequency mode hold the command of the frequency at the
        start of each step (a step lasts at most one tick of the fleet).
        """
        if self._bank_at is None:
            self._bank_at = now
            return
        modes = self.bank.frequency
        while (at_s := modes.next_pending_s(self.regulation.seconds(now))) is not None:
            at = max(self.epoch + timedelta(seconds=at_s), self._bank_at)
            self._step_to(at)
            self.refresh_commands(modes.apply_pending(at_s), at)
        self._step_to(now)

    def _step_to(self, at: datetime) -> None:
        assert self._bank_at is not None
        if at <= self._bank_at:
            return
        local = np.flatnonzero(self.bank.frequency.mode == FrequencyMode.LOCAL)
        if local.size:
            self.refresh_commands(local, self._bank_at)
        self.bank.step(seconds_between(self._bank_at, at) / SECONDS_PER_HOUR)
        self._bank_at = at

    def refresh_commands(self, rows: npt.NDArray[np.intp], at: datetime) -> None:
        """Set the commands of the EVSEs ``rows`` (in a frequency mode) from their latest
        signal or the grid frequency at ``at``."""
        if rows.size:
            frequency_hz = self.grid.at(at)
            self.bank.command_kw[rows] = self.bank.frequency.command_kw(rows, frequency_hz)
            self.bank.follows_setpoint[rows] = True

    async def run(
        self, *, duration_s: float | None = None, stop: asyncio.Event | None = None
    ) -> FleetStats:
        """Run until ``duration_s`` simulated seconds have passed or ``stop`` is set."""
        cpu0, wall0 = time.process_time(), time.perf_counter()
        start = self.clock.now()
        if not self.grid.covers(start):
            LOGGER.warning(
                "the frequency trace does not cover %s: stations in LocalFrequency mode "
                "measure the nominal frequency outside it",
                start.isoformat(),
            )
        self._bank_at = start
        tasks = [asyncio.create_task(self._keep_connected(s)) for s in self._stations]
        ticker = asyncio.create_task(self._tick(start))
        waiters: list[asyncio.Task[object]] = [asyncio.create_task(self._stopping.wait())]
        if stop is not None:
            waiters.append(asyncio.create_task(stop.wait()))
        if duration_s is not None:
            waiters.append(asyncio.create_task(asyncio.sleep(self.clock.seconds(duration_s))))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._stopping.set()
            for w in (*waiters, ticker):
                w.cancel()
            for s in self._stations:
                s.wakeup.set()
            # Stations online get a moment to send what is queued, then everything stops.
            _, pending = await asyncio.wait(tasks, timeout=self.config.response_timeout_s)
            for t in pending:
                t.cancel()
            await asyncio.gather(*tasks, ticker, *waiters, return_exceptions=True)
        self._cpu_s = time.process_time() - cpu0
        self._wall_s = time.perf_counter() - wall0
        return self.stats()

    def stats(self) -> FleetStats:
        """Counts so far (final after :meth:`run` returns)."""
        c = self.collector
        p50, p99, _ = _percentiles(np.array(c.latencies_ms))
        delay_p50, delay_p99, delay_max = _percentiles(np.frombuffer(c.afrr_delays_s))
        return FleetStats(
            calls_sent=dict(c.calls_sent),
            call_errors=dict(c.call_errors),
            rejections=dict(c.rejections),
            requests_received=dict(c.requests_received),
            requests_refused=dict(c.requests_refused),
            latency_p50_ms=p50,
            latency_p99_ms=p99,
            afrr_delay_p50_s=delay_p50,
            afrr_delay_p99_s=delay_p99,
            afrr_delay_max_s=delay_max,
            reconnects=c.reconnects,
            connect_failures=c.connect_failures,
            unsent_events=sum(len(s.outbox) for s in self._stations),
            meter_values_sent=self._meter_values_sent,
            cpu_s=self._cpu_s,
            wall_s=self._wall_s,
            stations={
                s.config.station_id: StationStats(
                    import_wh=float(self.bank.import_wh[s.index]),
                    export_wh=float(self.bank.export_wh[s.index]),
                    soc=self.bank.soc(s.index),
                    transactions_started=s.visits,
                    transactions_ended=s.ended,
                    requests_received=s.requests_received,
                )
                for s in self._stations
            },
        )

    # -- the shared tick --

    async def _tick(self, start: datetime) -> None:
        """Every ``meter_interval_s / phases`` one group of stations ticks; while any EVSE
        is in a frequency mode, the fleet also ticks every quarter of
        ``regulation_sample_s`` in between (samples, reports, periods that end)."""
        phases = max(1, min(MAX_METER_PHASES, len(self._stations)))
        groups = [self._stations[g::phases] for g in range(phases)]
        step_s = self.config.meter_interval_s / phases
        fine_step_s = self.config.regulation_sample_s / REGULATION_TICKS_PER_SAMPLE
        k, last_s = 1, 0.0
        while not self._stopping.is_set():
            target_s = k * step_s
            between = self.bank.frequency.active() and last_s + fine_step_s < target_s
            if between:
                target_s = last_s + fine_step_s
            delay_s = target_s - seconds_between(start, self.clock.now())
            if delay_s > 0:
                await asyncio.sleep(self.clock.seconds(delay_s))
            now = self.clock.now()
            self.advance(now)
            self.regulation_tick(now)
            if not between:
                for s in groups[k % phases]:
                    s.tick(now)
                k += 1
            last_s = target_s

    def record_samples(self, now: datetime) -> None:
        """Take the meter samples due at ``now`` (EVSEs in a frequency mode)."""
        bank = self.bank
        self.regulation.record(
            self.regulation.seconds(now),
            import_wh=bank.import_wh,
            export_wh=bank.export_wh,
            power_kw=bank.power_kw,
            soc=np.where(bank.plugged, bank.energy_kwh / bank.capacity_kwh, np.nan),
        )

    def regulation_tick(self, now: datetime) -> None:
        """Periods that end, samples and reports of the EVSEs in a frequency mode."""
        now_s = self.regulation.seconds(now)
        for i in np.flatnonzero(self.profile_review_s <= now_s):
            self._stations[i].apply_profiles(now)
        if not np.isfinite(self.regulation.next_report_s).any():
            return
        self.record_samples(now)
        for i in self.regulation.due_reports(now_s):
            station = self._stations[i]
            if isinstance(station, _Station):
                station.report_regulation(now)

    # -- one station's connection --

    async def _keep_connected(self, station: AnyStation) -> None:
        cfg, sc = self.config, station.config
        uri = f"{cfg.url.rstrip('/')}/{quote(sc.station_id, safe='')}"
        headers = {}
        if sc.password is not None:
            token = base64.b64encode(f"{sc.station_id}:{sc.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        failures, connected_before = 0, False
        while not self._stopping.is_set():
            opened = False
            try:
                async with connect(
                    uri,
                    subprotocols=[Subprotocol(sc.ocpp_version.value)],
                    additional_headers=headers,
                    ssl=cfg.ssl_context,
                    proxy=None,
                    compression=None,
                    open_timeout=cfg.response_timeout_s,
                ) as ws:
                    if ws.subprotocol != sc.ocpp_version.value:
                        raise InvalidHandshake(f"CSMS chose subprotocol {ws.subprotocol!r}")
                    opened = True
                    if connected_before:
                        self.collector.reconnects += 1
                    first, connected_before, failures = not connected_before, True, 0
                    await self._serve_connection(station, ws, first=first)
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, InvalidURI) as exc:
                LOGGER.warning("%s: connection lost or refused: %r", sc.station_id, exc)
            except Exception:
                # A fault in one station must not stop the others; it reconnects.
                LOGGER.exception("%s: unexpected error", sc.station_id)
            if not opened:
                self.collector.connect_failures += 1
            self._went_offline(station)
            if self._stopping.is_set():
                return
            failures += 1
            backoff_s = min(5.0 * 2 ** min(failures - 1, 10), cfg.max_backoff_s)
            backoff_s *= float(station.rng.uniform(0.5, 1.0))
            await self._sleep_or_stop(self.clock.seconds(backoff_s))

    def _went_offline(self, station: AnyStation) -> None:
        if station.online:
            station.online = False
            station.offline_since = self.clock.now()

    async def _sleep_or_stop(self, wall_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), wall_s)

    async def _serve_connection(
        self,
        station: AnyStation,
        ws: ClientConnection,
        *,
        first: bool,
    ) -> None:
        link = station.link_class(
            station.config.station_id, ws, response_timeout=self.config.response_timeout_s
        )
        link.station = station
        reader = asyncio.create_task(link.start())
        session = asyncio.create_task(self._session(station, link, first=first))
        try:
            await asyncio.wait({reader, session}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, session):
                task.cancel()
            results = await asyncio.gather(reader, session, return_exceptions=True)
        self._went_offline(station)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result

    async def _session(self, station: AnyStation, link: StationLink, *, first: bool) -> None:
        station.heartbeat_interval_s = await self._boot(station, link, first=first)
        station.online = True
        station.offline_since = None
        now = self.clock.now()
        if not station.serving:
            # Vehicles come once the station has first been accepted, so a run starts online.
            station.serving = True
            station.schedule_next(now, first=True)
        await self._call(link, "StatusNotification", station.status_payload(now))
        last_sent = time.monotonic()
        while True:
            while station.outbox:
                item = station.outbox[0]
                payload = station.payload_to_send(item)
                if payload is not None:
                    station.answered(item, await self._call(link, item.action, payload))
                    if item.action in station.meter_actions:
                        self._meter_values_sent += 1
                    last_sent = time.monotonic()
                station.outbox.popleft()
            if self._stopping.is_set():
                return
            station.wakeup.clear()
            if station.outbox:
                continue
            heartbeat_wall_s = self.clock.seconds(station.heartbeat_interval_s)
            remaining_s = heartbeat_wall_s - (time.monotonic() - last_sent)
            try:
                await asyncio.wait_for(station.wakeup.wait(), max(remaining_s, 0.0))
            except TimeoutError:
                await self._call(link, "Heartbeat", {})
                last_sent = time.monotonic()

    async def _boot(self, station: AnyStation, link: StationLink, *, first: bool) -> float:
        """BootNotification until Accepted; the heartbeat interval (simulated s)."""
        payload = station.boot_payload(first=first)
        while True:
            answer = await self._call(link, "BootNotification", payload)
            interval_s = None if answer is None else answer.interval_s
            given_s = interval_s if interval_s is not None and interval_s > 0 else None
            if answer is not None and answer.status == "Accepted":
                return DEFAULT_HEARTBEAT_S if given_s is None else given_s
            wait_s = RETRY_AFTER_ERROR_S if given_s is None else given_s
            LOGGER.info("%s: boot not accepted, retrying in %s s", link.id, wait_s)
            await self._sleep_or_stop(self.clock.seconds(wait_s))
            if self._stopping.is_set():
                raise asyncio.CancelledError

    async def _call(self, link: StationLink, action: str, payload: Request) -> CallAnswer | None:
        """Send one request; the answer, or ``None`` after a CallError (counted, logged) or
        an answer that cannot be read (a rejection, logged).

        A lost connection or a timeout propagates: the caller reconnects and resends.
        """
        request = getattr(link.requests, action)(**payload)
        self.collector.calls_sent[action] += 1
        began = time.perf_counter()
        try:
            result = await link.call(
                request, suppress=False, skip_schema_validation=not self.config.validate_messages
            )
        except OCPPError as error:
            self.collector.latencies_ms.append((time.perf_counter() - began) * 1000)
            self.collector.call_errors[action] += 1
            LOGGER.warning("%s: %s failed with CallError %r", link.id, action, error)
            return None
        self.collector.latencies_ms.append((time.perf_counter() - began) * 1000)
        try:
            answer = CallAnswer.from_result(result)
        except OCPPError as error:
            # Only without schema validation: the station goes on as after a refusal.
            self.collector.rejections[action] += 1
            LOGGER.warning("%s: the answer to %s cannot be read: %s", link.id, action, error)
            return None
        if answer.status is not None and answer.status not in _FINE_STATUSES:
            self.collector.rejections[action] += 1
            LOGGER.warning("%s: %s answered %s", link.id, action, answer.status)
        return answer


def _percentiles(values: npt.NDArray[np.float64]) -> tuple[float, float, float]:
    """p50, p99 and max of ``values`` (NaN for none)."""
    if not values.size:
        return math.nan, math.nan, math.nan
    p50, p99 = np.percentile(values, [50, 99])
    return float(p50), float(p99), float(values.max())


_FINE_STATUSES = frozenset({"Accepted", "Processing", "NoChargingProfile"})


async def run_fleet(
    config: FleetConfig,
    *,
    clock: Clock,
    duration_s: float | None = None,
    stop: asyncio.Event | None = None,
) -> FleetStats:
    """Run the simulated stations of ``config`` until ``duration_s`` (simulated) or ``stop``."""
    return await ChargerFleet(config, clock=clock).run(duration_s=duration_s, stop=stop)
