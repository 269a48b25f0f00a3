"""What every simulated station shares, whatever OCPP version it speaks.

:class:`StationBase` holds a station's queue of outgoing messages, its vehicle visits
(drawn from the station's own seeded generator; the battery lives in the fleet's
:class:`~v2ghub.live.charger_fleet.BatteryBank`) and its charging profiles; the 2.x and 1.6
stations subclass it and decide what to say. :class:`StationLink` is the station end of
one websocket: it answers the CSMS's requests, counting each one and each one refused.
The fleet that runs the stations (:class:`~v2ghub.live.chargers.ChargerFleet`) is seen
through :class:`FleetContext` only.
"""

from __future__ import annotations

import asyncio
import logging
from array import array
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from types import ModuleType
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
from ocpp.exceptions import NotImplementedError as OcppNotImplementedError
from ocpp.exceptions import NotSupportedError, OCPPError
from ocpp.messages import Call, MessageType, unpack
from ocpp.v16.enums import Action as Action16
from ocpp.v21.enums import Action as Action21
from ocpp.v201.enums import Action as Action201

from v2ghub.live.charger_config import ChargerConfig, FleetConfig, StationView
from v2ghub.live.charger_fleet import BatteryBank
from v2ghub.live.charger_frequency import RegulationSamples
from v2ghub.live.charger_messages import CallAnswer, Request, Vehicle, later
from v2ghub.live.clock import Clock
from v2ghub.live.ocpp_adapter import deliver_answer, handle_call, handles, send_frame
from v2ghub.scenarios.catalog import vehicle_models
from v2ghub.units import SECONDS_PER_HOUR

LOGGER = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_S = 300.0
"""Heartbeat interval (simulated s) until a BootNotification answer gives one."""


@dataclass
class Outgoing:
    """A request the station made and has not yet had answered."""

    action: str
    payload: Request
    offline: bool
    """Made while the station was offline."""
    visit: int | None = None
    """OCPP 1.6: the visit whose CSMS-assigned transactionId the payload gets when sent."""


@dataclass
class Collector:
    """What a fleet's stations sent and received, counted as it happens."""

    calls_sent: Counter[str] = field(default_factory=Counter)
    call_errors: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    requests_received: Counter[str] = field(default_factory=Counter)
    requests_refused: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    afrr_delays_s: array[float] = field(default_factory=lambda: array("d"))
    afrr_timestamps_s: array[float] = field(default_factory=lambda: array("d"))
    """Each AFRRSignal's own ``timestamp`` (Unix seconds), beside its delay."""
    """Each AFRRSignal's delay from its timestamp to its arrival, wall seconds (the fleet's
    clock, converted when accelerated); negative when it came ahead of its time."""
    reconnects: int = 0
    connect_failures: int = 0


class FleetContext(Protocol):
    """The fleet as its stations see it."""

    @property
    def config(self) -> FleetConfig: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def bank(self) -> BatteryBank: ...

    @property
    def collector(self) -> Collector: ...

    @property
    def regulation(self) -> RegulationSamples: ...

    @property
    def profile_review_s(self) -> npt.NDArray[np.float64]:
        """When each EVSE's profiles in force change next (``regulation`` time axis)."""

    def advance(self, now: datetime) -> None:
        """Step every battery to ``now`` (before any command changes)."""

    def record_samples(self, now: datetime) -> None:
        """Take the meter samples due at ``now`` (EVSEs in a frequency mode)."""

    def refresh_commands(self, rows: npt.NDArray[np.intp], at: datetime) -> None:
        """Set the commands of EVSEs ``rows`` (in a frequency mode) as at ``at``."""


class _Profile(Protocol):
    @property
    def profile_id(self) -> int: ...

    @property
    def purpose(self) -> str: ...


ProfileT = TypeVar("ProfileT", bound=_Profile)


class StationBase(Generic[ProfileT]):
    """One station's protocol state; its vehicle lives in the fleet's ``BatteryBank``.

    Subclasses say what the station sends (:meth:`tick`, :meth:`boot_payload`,
    :meth:`status_payload`), how a queued request goes on the wire
    (:meth:`payload_to_send`) and what an answer changes (:meth:`answered`).
    """

    link_class: Callable[..., StationLink]
    """Builds the station end of a connection: ``(station_id, ws, response_timeout=...)``."""
    dropped_offline: ClassVar[frozenset[str]] = frozenset({"StatusNotification"})
    """Requests not kept while offline: the state is sent again after the next boot."""
    meter_actions: ClassVar[frozenset[str]]
    """Requests that carry a meter reading (counted in ``FleetStats.meter_values_sent``)."""

    def __init__(self, fleet: FleetContext, index: int, config: ChargerConfig) -> None:
        self.fleet = fleet
        self.index = index
        self.config = config
        self.rng = np.random.default_rng([fleet.config.seed, index])
        self.outbox: deque[Outgoing] = deque()
        self.wakeup = asyncio.Event()
        self.online = False
        self.offline_since: datetime | None = None
        self.seq_no = 0
        self.vehicle: Vehicle | None = None
        self.next_arrival_at: datetime | None = None
        self.visits = 0
        self.ended = 0
        self.profiles: dict[int, ProfileT] = {}
        self.heartbeat_interval_s = DEFAULT_HEARTBEAT_S
        self.serving = False
        self.requests_received = 0
        """Requests the CSMS sent this station (all kinds)."""

    # -- what a version decides --

    def start(self, now: datetime) -> None:
        """A vehicle arrives (:meth:`arrive`) and its transaction starts."""
        raise NotImplementedError

    def end(self, now: datetime) -> None:
        """The vehicle's transaction ends and it leaves (:meth:`leave`)."""
        raise NotImplementedError

    def sample(self, now: datetime) -> None:
        """While a vehicle is plugged: follow the profiles, send a meter value when due."""
        raise NotImplementedError

    def apply_profiles(self, now: datetime) -> None:
        """Set the bank's command from the profiles in force at ``now``."""
        raise NotImplementedError

    def boot_payload(self, *, first: bool) -> Request:
        """The BootNotification (``first``: the first connection of the run)."""
        raise NotImplementedError

    def status_payload(self, now: datetime) -> Request:
        """The StatusNotification of the station's state now (sent after each boot)."""
        raise NotImplementedError

    def transaction_label(self) -> str | None:
        """The running transaction's id as the CSMS knows it, ``None`` when none."""
        raise NotImplementedError

    def payload_to_send(self, item: Outgoing) -> Request | None:
        """The payload of a queued request as it goes on the wire; ``None``: drop it."""
        return item.payload

    def answered(self, item: Outgoing, answer: CallAnswer | None) -> None:
        """A queued request was answered (``None``: a CallError or an unreadable answer)."""

    # -- vehicles (called from the fleet's tick) --

    def tick(self, now: datetime) -> None:
        """Departure, arrival or a periodic meter value, whichever is due."""
        if self.vehicle is not None and now >= self.vehicle.departure_at:
            self.end(now)
        elif self.vehicle is None and self.next_arrival_at is not None:
            if now >= self.next_arrival_at:
                self.start(now)
        elif self.vehicle is not None:
            self.sample(now)

    def charging_state(self) -> str:
        """Charging, SuspendedEVSE (told 0) or SuspendedEV (the vehicle takes nothing), by
        the power of the last step; the same words in OCPP 1.6 and 2.x."""
        bank, i = self.fleet.bank, self.index
        if bank.power_kw[i] != 0:
            # Discharging has no state of its own: it is energy transfer, as charging is.
            return "Charging"
        return "SuspendedEVSE" if bank.command_kw[i] == 0 else "SuspendedEV"

    def schedule_next(self, after: datetime, *, first: bool) -> None:
        """Draw when the next vehicle arrives (``None`` when the station has had its share)."""
        cfg = self.fleet.config
        if cfg.vehicles_per_station is not None and self.visits >= cfg.vehicles_per_station:
            self.next_arrival_at = None
            return
        if first:
            wait_s = float(self.rng.uniform(0.0, cfg.first_arrival_within_s))
        else:
            wait_s = float(self.rng.exponential(cfg.mean_idle_h * SECONDS_PER_HOUR))
        self.next_arrival_at = later(after, wait_s)

    def arrive(self, now: datetime) -> Vehicle:
        """A vehicle drawn from the fleet mix plugs in at ``now``."""
        cfg = self.fleet.config
        models = [m for m in vehicle_models() if m.v2g_capable or not self.config.can_discharge]
        shares = np.array([m.share for m in models])
        model = models[int(self.rng.choice(len(models), p=shares / shares.sum()))]
        vehicle_kw = model.dc_max_kw if self.config.dc else model.ac_max_kw
        max_charge_kw = min(self.config.max_power_kw, vehicle_kw)
        dwell_s = float(self.rng.uniform(*cfg.dwell_h)) * SECONDS_PER_HOUR
        self.visits += 1
        vehicle = Vehicle(
            id_token=f"{self.config.station_id}-EV{self.visits}",
            model=model.model,
            battery_kwh=model.battery_kwh,
            arrival_soc=float(self.rng.uniform(*cfg.arrival_soc)),
            target_soc=float(self.rng.uniform(*cfg.target_soc)),
            min_soc=cfg.min_soc,
            max_charge_kw=max_charge_kw,
            max_discharge_kw=max_charge_kw if self.config.can_discharge else 0.0,
            arrived_at=now,
            departure_at=later(now, dwell_s),
        )
        self.vehicle = vehicle
        self.seq_no = 0
        self.fleet.bank.plug(
            self.index,
            energy_kwh=vehicle.arrival_soc * vehicle.battery_kwh,
            capacity_kwh=vehicle.battery_kwh,
            floor_kwh=vehicle.min_soc * vehicle.battery_kwh,
            target_kwh=vehicle.target_soc * vehicle.battery_kwh,
            max_charge_kw=vehicle.max_charge_kw,
            max_discharge_kw=vehicle.max_discharge_kw,
        )
        return vehicle

    def leave(self, now: datetime) -> None:
        """The vehicle leaves: its TxProfiles go with it; the next one is drawn."""
        self.fleet.bank.unplug(self.index)
        self.ended += 1
        self.vehicle = None
        for profile_id in [k for k, p in self.profiles.items() if p.purpose == "TxProfile"]:
            self.profiles.pop(profile_id, None)
        self.schedule_next(now, first=False)

    def change_profiles(
        self, now: datetime, *, removed: Iterable[int] = (), added: ProfileT | None = None
    ) -> None:
        """Remove the profiles ``removed`` and add ``added`` at ``now``: the batteries are
        stepped to ``now`` first, so the command in force until now is the old one."""
        self.fleet.advance(now)
        for profile_id in removed:
            self.profiles.pop(profile_id, None)
        if added is not None:
            self.profiles[added.profile_id] = added
        self.apply_profiles(now)

    def enqueue(self, action: str, payload: Request, *, visit: int | None = None) -> None:
        """Queue a request; one of :attr:`dropped_offline` made offline is not kept."""
        if action in self.dropped_offline and not self.online:
            return
        self.outbox.append(Outgoing(action, payload, offline=not self.online, visit=visit))
        self.wakeup.set()

    def view(self) -> StationView:
        """The station now."""
        bank, i = self.fleet.bank, self.index
        command = float(bank.command_kw[i])
        return StationView(
            station_id=self.config.station_id,
            online=self.online,
            transaction_id=self.transaction_label(),
            vehicle=self.vehicle,
            setpoint_kw=None if np.isnan(command) or np.isinf(command) else command,
            power_kw=float(bank.power_kw[i]),
            soc=bank.soc(i),
            energy_kwh=float(bank.energy_kwh[i]) if bank.plugged[i] else None,
            import_register_wh=float(bank.import_wh[i]),
            export_register_wh=float(bank.export_wh[i]),
            seq_no=self.seq_no,
            queued_events=len(self.outbox),
            profile_ids=tuple(sorted(self.profiles)),
        )


class StationLink:
    """The station end of one websocket: answers the CSMS's requests for ``station``.

    Mixed into the ``ocpp`` package's ``ChargePoint`` of the station's version; its
    ``route_message`` counts every request and each one refused, answers a request the
    station has no handler for with a NotImplemented CallError (NotSupported when OCPP
    has no such action) and keeps the connection after a malformed frame.
    """

    id: str
    station: StationBase[Any]
    results: ModuleType
    """The ``ocpp`` package's ``call_result`` module of the link's version."""
    requests: ModuleType
    """The ``ocpp`` package's ``call`` module of the link's version."""
    call: Callable[..., Awaitable[object]]
    """The ``ocpp`` package's ``ChargePoint.call`` (declared here, defined there)."""
    start: Callable[[], Coroutine[Any, Any, None]]
    """The ``ocpp`` package's ``ChargePoint.start``: read frames until the line closes."""

    arrived_at: datetime
    """When the frame being handled arrived (the fleet's clock)."""

    async def route_message(self, raw_msg: str | bytes) -> None:
        self.arrived_at = self.station.fleet.clock.now()
        try:
            message = unpack(raw_msg)
        except OCPPError:
            LOGGER.warning("%s: a frame that is not OCPP was dropped: %.200r", self.id, raw_msg)
            return
        if message.message_type_id == MessageType.Call:
            await self._serve_request(message)
        elif message.message_type_id in (MessageType.CallResult, MessageType.CallError):
            deliver_answer(self, message)

    async def _serve_request(self, message: Call) -> None:
        stats = self.station.fleet.collector
        action = str(message.action)
        stats.requests_received[action] += 1
        self.station.requests_received += 1
        try:
            if not handles(self, action):
                known = action in _KNOWN_ACTIONS
                error = OcppNotImplementedError if known else NotSupportedError
                raise error(details={"cause": f"{action} is not implemented by this station"})
            await handle_call(self, message)
        except OCPPError as error:
            stats.requests_refused[action] += 1
            await send_frame(self, message.create_call_error(error).to_json())

    def count_refused(self, action: str) -> None:
        """Count a request the station answered with a refusal."""
        self.station.fleet.collector.requests_refused[action] += 1


_KNOWN_ACTIONS = frozenset(
    action.value for actions in (Action21, Action201, Action16) for action in actions
)
