"""The simulated stations' configuration and what a fleet run reports.

:class:`ChargerConfig` (one station), :class:`FleetConfig` (the stations, their vehicles
and how they reach the CSMS) and :func:`make_fleet_config`; :class:`StationView`,
:class:`StationStats` and :class:`FleetStats`, what :class:`~v2ghub.live.chargers.ChargerFleet`
shows and reports. Plain frozen dataclasses, checked when built; the OCPP client is in
:mod:`v2ghub.live.chargers`.
"""

from __future__ import annotations

import math
import ssl
from dataclasses import dataclass, field
from typing import Any

from v2ghub import defaults
from v2ghub.live.charger_messages import AC_MAX_KW, Vehicle
from v2ghub.regulation.signals import FrequencyTrace
from v2ghub.store.records import OcppVersion


@dataclass(frozen=True)
class ChargerConfig:
    """One simulated station (one EVSE, one connector)."""

    station_id: str
    password: str | None = field(default=None, repr=False)
    """HTTP Basic password (security profiles 1 and 2); ``None`` sends no header."""
    ocpp_version: OcppVersion = OcppVersion.V21
    max_power_kw: float = 11.0
    """At most this much charging or discharging; above 22 kW the station is DC."""
    v2x: bool = True
    """The station can discharge: on OCPP 2.1 by CentralSetpoint; on 2.0.1 and 1.6
    (configured so) by a negative limit, the convention bidirectional chargers used before
    2.1."""
    current_only: bool = False
    """OCPP 1.6 AC only: the station takes charging schedules in A, not W
    (``ChargingScheduleAllowedChargingRateUnit`` ``Current``); else in W (``Power``)."""

    def __post_init__(self) -> None:
        if self.current_only and (self.ocpp_version is not OcppVersion.V16 or self.dc):
            raise ValueError(
                f"{self.station_id}: current_only is for an OCPP 1.6 AC station, not "
                f"{self.ocpp_version.value} at {self.max_power_kw} kW"
            )

    @property
    def dc(self) -> bool:
        """DC station (above 22 kW) rather than AC."""
        return self.max_power_kw > AC_MAX_KW

    @property
    def can_discharge(self) -> bool:
        """Discharge is possible: a V2X station (2.1, or 2.0.1 configured for it)."""
        return self.v2x


@dataclass(frozen=True)
class FleetConfig:
    """Simulated stations, their vehicles and how they reach the CSMS."""

    url: str
    """``ws://`` or ``wss://`` base; each station appends ``/<station_id>``."""
    stations: tuple[ChargerConfig, ...]
    meter_interval_s: float = 10.0
    """Simulated seconds between TransactionEvent Updated messages of a station."""
    seed: int = 0
    ssl_context: ssl.SSLContext | None = None
    vehicles_per_station: int | None = None
    """Visits per station; ``None``: vehicles keep coming until the run ends."""
    first_arrival_within_s: float = 600.0
    """The first vehicle of each station arrives uniformly within this many seconds."""
    dwell_h: tuple[float, float] = (2.0, 6.0)
    """A visit lasts uniformly between these many hours."""
    mean_idle_h: float = 0.5
    """Mean (exponential) time a station stays free between two vehicles."""
    arrival_soc: tuple[float, float] = (0.2, 0.6)
    target_soc: tuple[float, float] = (0.8, 0.95)
    min_soc: float = defaults.SOC_MIN
    charge_efficiency: float = defaults.CHARGE_EFFICIENCY
    discharge_efficiency: float = defaults.DISCHARGE_EFFICIENCY
    validate_messages: bool = True
    """Check every message against the OCPP JSON schemas (costs CPU at scale)."""
    response_timeout_s: float = 30.0
    """Wall-clock seconds to wait for an answer before the connection counts as lost."""
    max_backoff_s: float = 300.0
    """Reconnect backoff doubles from 5 s up to this (simulated seconds, with jitter)."""
    regulation_sample_s: float = 2.0
    """In an OCPP 2.1 frequency mode an EVSE samples its meter every this many simulated
    seconds..."""
    regulation_report_s: float = 10.0
    """...and sends the samples every this many, as one TransactionEvent Updated."""
    frequency_trace: FrequencyTrace | None = field(default=None, repr=False)
    """The grid frequency all stations measure (LocalFrequency mode), evaluated at the
    fleet clock's time (nominal outside it); ``None``: the seeded synthetic one."""
    frequency_seed: int = 0
    """Seed of the synthetic frequency (``frequency_trace`` ``None``): one day at 1 s from
    UTC midnight of the run's start, repeating daily."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("ws://", "wss://")):
            raise ValueError(f"url must start with ws:// or wss://, got {self.url!r}")
        ids = [s.station_id for s in self.stations]
        if len(set(ids)) != len(ids):
            raise ValueError("station ids must be unique")
        if not self.meter_interval_s > 0:
            raise ValueError(f"meter_interval_s must be positive, got {self.meter_interval_s}")
        if not 0 < self.regulation_sample_s <= self.regulation_report_s:
            raise ValueError(
                "need 0 < regulation_sample_s <= regulation_report_s, got "
                f"{self.regulation_sample_s} and {self.regulation_report_s}"
            )
        if not 0 <= self.min_soc <= self.arrival_soc[0] <= self.arrival_soc[1] <= 1:
            raise ValueError(
                f"need 0 <= min_soc <= arrival_soc <= 1, got {self.min_soc}, {self.arrival_soc}"
            )


def make_fleet_config(
    *,
    url: str,
    count: int,
    password: str | None = None,
    id_prefix: str = "SIM",
    v201_share: float = 0.0,
    v16_share: float = 0.0,
    current_only_share: float = 0.0,
    max_power_kw: float = 11.0,
    v2x: bool = True,
    seed: int = 0,
    **options: Any,
) -> FleetConfig:
    """``count`` stations ``SIM0001``...: the last ``round(count * v16_share)`` speak OCPP
    1.6; of the others, the last ``round(others * v201_share)`` speak 2.0.1 and are
    charge-only, the rest 2.1. ``v2x`` applies to the 2.1 and 1.6 stations. Of the 1.6
    stations, when AC, the last ``round(count_16 * current_only_share)`` take schedules in
    A only (``current_only``).

    ``options`` are the other :class:`FleetConfig` fields.
    """
    for name, share in (
        ("v201_share", v201_share),
        ("v16_share", v16_share),
        ("current_only_share", current_only_share),
    ):
        if not 0 <= share <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {share}")
    v16_count = round(count * v16_share)
    others = count - v16_count
    v201_count = round(others * v201_share)
    dc = max_power_kw > AC_MAX_KW
    current_only_count = 0 if dc else round(v16_count * current_only_share)
    width = max(4, len(str(count)))

    def version(i: int) -> OcppVersion:
        if i >= others:
            return OcppVersion.V16
        return OcppVersion.V201 if i >= others - v201_count else OcppVersion.V21

    stations = tuple(
        ChargerConfig(
            station_id=f"{id_prefix}{i + 1:0{width}d}",
            password=password,
            ocpp_version=version(i),
            max_power_kw=max_power_kw,
            v2x=v2x and version(i) is not OcppVersion.V201,
            current_only=i >= count - current_only_count,
        )
        for i in range(count)
    )
    return FleetConfig(url=url, stations=stations, seed=seed, **options)


@dataclass(frozen=True)
class StationView:
    """A station as tests and dashboards see it now."""

    station_id: str
    online: bool
    transaction_id: str | None
    """As the CSMS knows it; on OCPP 1.6 ``None`` until the StartTransaction is answered."""
    vehicle: Vehicle | None
    setpoint_kw: float | None
    """The command in force (+ charge, - discharge); ``None``: no profile, full power."""
    power_kw: float
    """Power applied over the last step (+ charge, - discharge)."""
    soc: float | None
    energy_kwh: float | None
    import_register_wh: float
    export_register_wh: float
    seq_no: int
    """Transaction messages made so far in the transaction (2.x: the next seqNo)."""
    queued_events: int
    profile_ids: tuple[int, ...]


@dataclass(frozen=True)
class StationStats:
    """What one station metered over the run."""

    import_wh: float
    export_wh: float
    soc: float | None
    transactions_started: int
    transactions_ended: int
    requests_received: int = 0
    """Requests the CSMS sent the station (all kinds, AFRRSignals included)."""


@dataclass(frozen=True)
class FleetStats:
    """What a fleet run sent, received and metered."""

    calls_sent: dict[str, int]
    """Requests the stations sent, by action."""
    call_errors: dict[str, int]
    """CallErrors the CSMS answered, by action (each one is also logged)."""
    rejections: dict[str, int]
    """Answers with a status other than Accepted, by action."""
    requests_received: dict[str, int]
    """Requests the CSMS sent to the stations, by action."""
    requests_refused: dict[str, int]
    """Of those, answered Rejected or with a CallError, by action."""
    latency_p50_ms: float
    latency_p99_ms: float
    """Request-to-response wall-clock latency of the stations' calls (NaN when none)."""
    reconnects: int
    connect_failures: int
    unsent_events: int
    """Events still queued when the run ended (the CSMS never got them)."""
    meter_values_sent: int
    cpu_s: float
    """Process CPU time during the run (includes anything else in the process)."""
    wall_s: float
    stations: dict[str, StationStats]
    afrr_delay_p50_s: float = math.nan
    afrr_delay_p99_s: float = math.nan
    afrr_delay_max_s: float = math.nan
    """Delay of the AFRRSignals from their timestamp to their arrival at a station, wall
    seconds (NaN when none came; ``requests_received["AFRRSignal"]`` counts them). The
    timestamp is the CSMS's clock, the arrival the fleet's: an offset between them is in
    the delay."""


__all__ = [
    "ChargerConfig",
    "FleetConfig",
    "FleetStats",
    "StationStats",
    "StationView",
    "make_fleet_config",
]
