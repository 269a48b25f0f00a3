"""NotifyEVChargingNeeds: the vehicle's needs as a typed record (OCPP's units: W, Wh, A, V,
percent), and as the store's :class:`~v2ghub.store.records.EvNeeds` (kW, kWh, 0-1)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from v2ghub.live.ocpp_payloads import number, obj, parse_time, text
from v2ghub.store.records import EvNeeds
from v2ghub.units import current_to_kw, percent_to_fraction, w_to_kw, wh_to_kwh

AC_PHASES = {"AC_single_phase": 1, "AC_two_phase": 2, "AC_three_phase": 3}
"""Phases of an AC transfer mode (AC_BPT and others: three); ``evMaxVoltage`` is per phase."""
DEFAULT_AC_PHASES = 3
DEFAULT_AC_VOLTAGE_V = 230.0


def _first(*values: float | None) -> float | None:
    return next((value for value in values if value is not None), None)


@dataclass(frozen=True)
class ChargingNeeds:
    """The parts of a ``chargingNeeds`` object that v2ghub uses (``None``: not sent).

    ``battery_capacity_wh`` and ``soc_percent`` come from ``dcChargingParameters``, or on
    AC from ``customData`` (AC parameters carry no battery size or SoC; v2ghub's simulated
    chargers send them there). The ``*_request_wh`` energies are still to be delivered
    (relative to the energy stored now), as OCPP 2.1 defines them.
    """

    requested_energy_transfer: str | None
    control_mode: str | None
    departure_at: datetime | None
    battery_capacity_wh: float | None
    soc_percent: float | None
    energy_amount_wh: float | None
    """2.0.1 ``energyAmount`` (DC, else AC)."""
    ac_max_current_a: float | None
    ac_max_voltage_v: float | None
    dc_max_power_w: float | None
    target_soc_percent: float | None
    target_energy_request_wh: float | None
    min_v2x_energy_request_wh: float | None
    max_charge_power_w: float | None
    max_discharge_power_w: float | None
    min_charge_power_w: float | None
    min_discharge_power_w: float | None

    @classmethod
    def from_payload(cls, raw: object) -> ChargingNeeds:
        needs = obj(raw, "chargingNeeds")
        dc = obj(needs.get("dc_charging_parameters"), "chargingNeeds.dcChargingParameters")
        ac = obj(needs.get("ac_charging_parameters"), "chargingNeeds.acChargingParameters")
        v2x = obj(needs.get("v2x_charging_parameters"), "chargingNeeds.v2xChargingParameters")
        extra = obj(needs.get("custom_data"), "chargingNeeds.customData")

        def dc_number(key: str) -> float | None:
            return number(dc, key, field=f"dcChargingParameters.{key}")

        def v2x_number(key: str) -> float | None:
            return number(v2x, key, field=f"v2xChargingParameters.{key}")

        departure = needs.get("departure_time")
        return cls(
            requested_energy_transfer=text(needs, "requested_energy_transfer"),
            control_mode=text(needs, "control_mode"),
            departure_at=None if departure is None else parse_time(departure, "departureTime"),
            battery_capacity_wh=_first(
                dc_number("ev_energy_capacity"),
                number(extra, "ev_energy_capacity", field="customData.evEnergyCapacity"),
            ),
            soc_percent=_first(
                dc_number("state_of_charge"),
                number(extra, "state_of_charge", field="customData.stateOfCharge"),
            ),
            energy_amount_wh=_first(
                dc_number("energy_amount"),
                number(ac, "energy_amount", field="acChargingParameters.energyAmount"),
            ),
            ac_max_current_a=number(
                ac, "ev_max_current", field="acChargingParameters.evMaxCurrent"
            ),
            ac_max_voltage_v=number(
                ac, "ev_max_voltage", field="acChargingParameters.evMaxVoltage"
            ),
            dc_max_power_w=dc_number("ev_max_power"),
            target_soc_percent=v2x_number("target_soc"),
            target_energy_request_wh=v2x_number("ev_target_energy_request"),
            min_v2x_energy_request_wh=v2x_number("ev_min_v2x_energy_request"),
            max_charge_power_w=v2x_number("max_charge_power"),
            max_discharge_power_w=v2x_number("max_discharge_power"),
            min_charge_power_w=v2x_number("min_charge_power"),
            min_discharge_power_w=v2x_number("min_discharge_power"),
        )


def _kw(power_w: float | None) -> float | None:
    return None if power_w is None else w_to_kw(power_w)


def ev_needs(station_id: str, evse_id: int, needs: ChargingNeeds, received_at: datetime) -> EvNeeds:
    """A NotifyEVChargingNeeds request as the store's :class:`EvNeeds`.

    The target is ``targetSoC`` x capacity when given (2.1), else stored energy plus
    ``evTargetEnergyRequest`` (2.1) or ``energyAmount`` (2.0.1), which are energy still to
    be delivered; the floor is stored energy plus ``evMinV2XEnergyRequest`` (negative
    when the vehicle is above the lowest level it accepts for V2X), never below 0. The
    most it charges: 2.1 ``maxChargePower``, else DC ``evMaxPower``, else AC
    ``evMaxCurrent`` x ``evMaxVoltage`` (230 V unless sent) x the transfer mode's phases.
    """
    battery_kwh = (
        None if needs.battery_capacity_wh is None else wh_to_kwh(needs.battery_capacity_wh)
    )
    soc = None if needs.soc_percent is None else percent_to_fraction(needs.soc_percent)
    stored_kwh = None if battery_kwh is None or soc is None else battery_kwh * soc
    target_kwh = None
    if needs.target_soc_percent is not None and battery_kwh is not None:
        target_kwh = battery_kwh * percent_to_fraction(needs.target_soc_percent)
    elif stored_kwh is not None:
        request_wh = _first(needs.target_energy_request_wh, needs.energy_amount_wh)
        if request_wh is not None:
            target_kwh = stored_kwh + wh_to_kwh(request_wh)
    min_kwh = None
    if needs.min_v2x_energy_request_wh is not None and stored_kwh is not None:
        min_kwh = max(stored_kwh + wh_to_kwh(needs.min_v2x_energy_request_wh), 0.0)
    max_charge_kw = _kw(_first(needs.max_charge_power_w, needs.dc_max_power_w))
    if max_charge_kw is None and needs.ac_max_current_a is not None:
        phases = AC_PHASES.get(str(needs.requested_energy_transfer), DEFAULT_AC_PHASES)
        voltage_v = needs.ac_max_voltage_v
        max_charge_kw = current_to_kw(
            needs.ac_max_current_a,
            voltage_v=DEFAULT_AC_VOLTAGE_V if voltage_v is None else voltage_v,
            phases=phases,
        )
    return EvNeeds(
        station_id=station_id,
        evse_id=evse_id,
        received_at=received_at,
        departure_at=needs.departure_at,
        battery_kwh=battery_kwh,
        soc=soc,
        target_energy_kwh=target_kwh,
        min_energy_kwh=min_kwh,
        max_charge_kw=max_charge_kw,
        max_discharge_kw=_kw(needs.max_discharge_power_w),
        min_charge_kw=_kw(needs.min_charge_power_w),
        min_discharge_kw=_kw(needs.min_discharge_power_w),
        control_mode=needs.control_mode,
    )
