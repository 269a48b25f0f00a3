"""What a simulated OCPP 1.6J station says: requests to the central system and its
configuration keys, pure functions with no I/O.

Requests are plain ``dict`` objects with snake_case keys (:data:`Request`), the keywords of
the ``ocpp`` package's ``ocpp.v16.call`` dataclasses, which camelCase and validate them.
Units on the wire are OCPP's: Wh, W, percent; 1.6 sends every sampled value as a string.

Metering choices:

- ``Energy.Active.Import.Register``: whole Wh, rounded down, cumulative over the station's
  life; ``meterStart`` and ``meterStop`` are the same register. A station that can
  discharge also sends ``Energy.Active.Export.Register``.
- One of ``Power.Active.Import`` or ``Power.Active.Export``, whichever way power flows,
  never negative (W, one decimal): a reader that sums import minus export gets the
  project's sign (+ charging, - discharging).
- ``SoC``: percent with one decimal, location EV.

The transactionId of MeterValues and StopTransaction is not in these payloads: the central
system assigns it in its answer to StartTransaction, perhaps after these were made offline,
so the station adds it when it sends them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from v2ghub.live.charger_messages import Request, timestamp
from v2ghub.units import fraction_to_percent, kw_to_w

CHARGE_POINT_VENDOR = "v2ghub"
CHARGE_POINT_MODEL = "v2ghub-sim-v16"
CONNECTOR_ID = 1
"""A simulated station has one connector."""
ID_TAG_MAX_LENGTH = 20
"""OCPP 1.6 ``IdToken`` is a CiString20."""

CHARGE_PROFILE_MAX_STACK_LEVEL = 8
CHARGING_SCHEDULE_MAX_PERIODS = 24
MAX_CHARGING_PROFILES_INSTALLED = 10

# Configuration keys (OCPP 1.6 section 9) a simulated station reports.
METER_VALUE_SAMPLE_INTERVAL = "MeterValueSampleInterval"
NUMBER_OF_CONNECTORS = "NumberOfConnectors"
ALLOWED_CHARGING_RATE_UNIT = "ChargingScheduleAllowedChargingRateUnit"
MAX_STACK_LEVEL_KEY = "ChargeProfileMaxStackLevel"
MAX_PERIODS_KEY = "ChargingScheduleMaxPeriods"
MAX_PROFILES_KEY = "MaxChargingProfilesInstalled"
CONNECTOR_PHASE_ROTATION = "ConnectorPhaseRotation"


def id_tag(id_token: str) -> str:
    """A vehicle's token as a 1.6 idTag: its last :data:`ID_TAG_MAX_LENGTH` characters."""
    return id_token[-ID_TAG_MAX_LENGTH:]


def boot_notification16(*, station_id: str) -> Request:
    """BootNotification: vendor and model, the station id as serial number."""
    return {
        "charge_point_vendor": CHARGE_POINT_VENDOR,
        "charge_point_model": CHARGE_POINT_MODEL,
        "charge_point_serial_number": station_id[:25],
        "firmware_version": "sim-1",
    }


def status_notification16(*, at: datetime, status: str) -> Request:
    """StatusNotification of connector 1 (``status`` a 1.6 ChargePointStatus)."""
    return {
        "connector_id": CONNECTOR_ID,
        "error_code": "NoError",
        "status": status,
        "timestamp": timestamp(at),
    }


def authorize(*, id_token: str) -> Request:
    """Authorize the vehicle's token."""
    return {"id_tag": id_tag(id_token)}


def start_transaction(*, at: datetime, id_token: str, import_wh: float) -> Request:
    """StartTransaction on connector 1; ``meterStart`` is the import register (Wh)."""
    return {
        "connector_id": CONNECTOR_ID,
        "id_tag": id_tag(id_token),
        "meter_start": math.floor(import_wh),
        "timestamp": timestamp(at),
    }


def meter_value16(
    *,
    at: datetime,
    import_wh: float,
    export_wh: float | None,
    power_kw: float,
    soc: float | None,
    context: str,
) -> Request:
    """One MeterValue: the registers (export only when ``export_wh`` is given), the power
    as import or export, and SoC (0-1 in, percent out)."""
    sampled = [_sample(str(math.floor(import_wh)), "Energy.Active.Import.Register", context, "Wh")]
    if export_wh is not None:
        sampled.append(
            _sample(str(math.floor(export_wh)), "Energy.Active.Export.Register", context, "Wh")
        )
    measurand = "Power.Active.Export" if power_kw < 0 else "Power.Active.Import"
    sampled.append(_sample(f"{kw_to_w(abs(power_kw)):.1f}", measurand, context, "W"))
    if soc is not None:
        soc_sample = _sample(f"{fraction_to_percent(soc):.1f}", "SoC", context, "Percent")
        soc_sample["location"] = "EV"
        sampled.append(soc_sample)
    return {"timestamp": timestamp(at), "sampled_value": sampled}


def _sample(value: str, measurand: str, context: str, unit: str) -> Request:
    return {
        "value": value,
        "context": context,
        "measurand": measurand,
        "location": "Outlet",
        "unit": unit,
    }


def meter_values(*, meter: Request) -> Request:
    """MeterValues of connector 1 (the station adds the transactionId when it sends it)."""
    return {"connector_id": CONNECTOR_ID, "meter_value": [meter]}


def stop_transaction(*, at: datetime, id_token: str, import_wh: float, final: Request) -> Request:
    """StopTransaction, reason EVDisconnected, with the final reading as transactionData
    (the station adds the transactionId when it sends it)."""
    return {
        "meter_stop": math.floor(import_wh),
        "timestamp": timestamp(at),
        "reason": "EVDisconnected",
        "id_tag": id_tag(id_token),
        "transaction_data": [final],
    }


@dataclass(frozen=True)
class Configuration16:
    """The configuration keys a simulated 1.6 station reports (GetConfiguration)."""

    current_only: bool
    """Schedules in A (``Current``), else in W (``Power``)."""
    dc: bool
    meter_interval_s: int
    """``MeterValueSampleInterval``: seconds between meter values, 0 for none."""

    def keys(self) -> dict[str, tuple[str, bool]]:
        """Every key: (value, read-only)."""
        return {
            NUMBER_OF_CONNECTORS: ("1", True),
            ALLOWED_CHARGING_RATE_UNIT: ("Current" if self.current_only else "Power", True),
            MAX_STACK_LEVEL_KEY: (str(CHARGE_PROFILE_MAX_STACK_LEVEL), True),
            MAX_PERIODS_KEY: (str(CHARGING_SCHEDULE_MAX_PERIODS), True),
            MAX_PROFILES_KEY: (str(MAX_CHARGING_PROFILES_INSTALLED), True),
            METER_VALUE_SAMPLE_INTERVAL: (str(self.meter_interval_s), False),
            CONNECTOR_PHASE_ROTATION: ("1.NotApplicable" if self.dc else "1.RST", True),
        }

    def answer(self, asked: list[str] | None) -> Request:
        """GetConfiguration's answer to ``asked`` (``None`` or empty: every key)."""
        keys = self.keys()
        names = asked or list(keys)
        known = [name for name in names if name in keys]
        answer: Request = {
            "configuration_key": [
                {"key": name, "readonly": keys[name][1], "value": keys[name][0]} for name in known
            ]
        }
        unknown = [name for name in names if name not in keys]
        if unknown:
            answer["unknown_key"] = unknown
        return answer

    def change(self, key: str, value: str) -> tuple[str, int | None]:
        """ChangeConfiguration: (status, the new meter interval when it changes).

        Accepted for a whole number of seconds >= 0 as ``MeterValueSampleInterval``;
        Rejected for another value of it or for a read-only key; NotSupported for a key the
        station does not have.
        """
        keys = self.keys()
        if key not in keys:
            return "NotSupported", None
        if key != METER_VALUE_SAMPLE_INTERVAL:
            return "Rejected", None
        try:
            interval_s = int(value)
        except ValueError:
            return "Rejected", None
        if interval_s < 0:
            return "Rejected", None
        return "Accepted", interval_s
