"""The table of defaults: every entry documented, and the code's defaults are the table's."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from v2ghub import cli, defaults, planning
from v2ghub.api.web_server import WebSettings
from v2ghub.defaults import DEFAULTS
from v2ghub.live import charger_config, command_line, live_problem
from v2ghub.live.profiles16 import Rates
from v2ghub.model import valley_rule
from v2ghub.network import feeder_limits, feeders
from v2ghub.planning import mpc, reserve
from v2ghub.regulation import envelope, frequency_response
from v2ghub.scenarios import config, sessions_csv
from v2ghub.sim.regulation_service import RegulationOffer
from v2ghub.store import database
from v2ghub.workflows import day_ahead_plan

TABLE = {entry.name: entry.value for entry in DEFAULTS}


def _field_defaults(cls: type[Any]) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls)}


def test_every_entry_has_a_unit_and_a_source() -> None:
    for entry in DEFAULTS:
        assert entry.unit.strip(), entry.name
        assert entry.source.strip(), entry.name


def test_the_table_is_the_module_constants() -> None:
    names = [entry.name for entry in DEFAULTS]
    assert len(names) == len(set(names))
    constants = {
        name: value
        for name, value in vars(defaults).items()
        if name.isupper() and not name.startswith("_") and name != "DEFAULTS"
    }
    assert constants == TABLE


SIMULATION = config.SimulationSettings()
FLEET = config.FleetMix()
CONTROL = _field_defaults(live_problem.ControlSettings)
SIMULATED_FLEET = _field_defaults(charger_config.FleetConfig)
OFFER = RegulationOffer()

# (where the code keeps a default, its value there, the table's name for it)
CODE_DEFAULTS: list[tuple[str, object, str]] = [
    ("SimulationSettings.date", SIMULATION.date, "SIMULATION_DATE"),
    ("SimulationSettings.seed", SIMULATION.seed, "SEED"),
    ("SimulationSettings.vehicles_per_city", SIMULATION.vehicles_per_city, "VEHICLES_PER_CITY"),
    ("SimulationSettings.step_minutes", SIMULATION.step_minutes, "STEP_MINUTES"),
    (
        "SimulationSettings.control_interval_minutes",
        SIMULATION.control_interval_minutes,
        "CONTROL_INTERVAL_MINUTES",
    ),
    ("SimulationSettings.planners", SIMULATION.planners, "PLANNERS"),
    (
        "SimulationSettings.degradation_cny_per_kwh",
        str(SIMULATION.degradation_cny_per_kwh),
        "DEGRADATION_CNY_PER_KWH",
    ),
    ("FleetMix.ac_efficiency", FLEET.ac_efficiency, "SYNTHETIC_AC_EFFICIENCY"),
    ("FleetMix.dc_efficiency", FLEET.dc_efficiency, "SYNTHETIC_DC_EFFICIENCY"),
    ("FleetMix.soc_min", FLEET.soc_min, "SYNTHETIC_SOC_MIN"),
    ("FleetMix.soc_max", FLEET.soc_max, "SYNTHETIC_SOC_MAX"),
    ("FleetMix.home_soc_target", FLEET.home_soc_target, "HOME_SOC_TARGET"),
    ("FleetMix.away_soc_target", FLEET.away_soc_target, "AWAY_SOC_TARGET"),
    (
        "config.DEFAULT_DEMAND_RESPONSE.start",
        config.DEFAULT_DEMAND_RESPONSE.start,
        "DEMAND_RESPONSE_START_HOUR",
    ),
    (
        "config.DEFAULT_DEMAND_RESPONSE.end",
        config.DEFAULT_DEMAND_RESPONSE.end,
        "DEMAND_RESPONSE_END_HOUR",
    ),
    (
        "config.DEFAULT_DEMAND_RESPONSE.reduction_kw_per_vehicle",
        config.DEFAULT_DEMAND_RESPONSE.reduction_kw_per_vehicle,
        "DEMAND_RESPONSE_KW_PER_VEHICLE",
    ),
    ("sessions_csv.DEFAULT_SOC_MIN", sessions_csv.DEFAULT_SOC_MIN, "SOC_MIN"),
    ("sessions_csv.DEFAULT_SOC_MAX", sessions_csv.DEFAULT_SOC_MAX, "SOC_MAX"),
    (
        "sessions_csv.DEFAULT_CHARGE_EFFICIENCY",
        sessions_csv.DEFAULT_CHARGE_EFFICIENCY,
        "CHARGE_EFFICIENCY",
    ),
    (
        "sessions_csv.DEFAULT_DISCHARGE_EFFICIENCY",
        sessions_csv.DEFAULT_DISCHARGE_EFFICIENCY,
        "DISCHARGE_EFFICIENCY",
    ),
    (
        "ControlSettings.control_interval_s",
        CONTROL["control_interval_s"],
        "LIVE_CONTROL_INTERVAL_S",
    ),
    ("ControlSettings.default_target_soc", CONTROL["default_target_soc"], "TARGET_SOC"),
    ("ControlSettings.default_min_soc", CONTROL["default_min_soc"], "SOC_MIN"),
    ("ControlSettings.soc_max", CONTROL["soc_max"], "SOC_MAX"),
    ("ControlSettings.charge_efficiency", CONTROL["charge_efficiency"], "CHARGE_EFFICIENCY"),
    (
        "ControlSettings.discharge_efficiency",
        CONTROL["discharge_efficiency"],
        "DISCHARGE_EFFICIENCY",
    ),
    (
        "ControlSettings.degradation_cny_per_kwh",
        str(CONTROL["degradation_cny_per_kwh"]),
        "DEGRADATION_CNY_PER_KWH",
    ),
    ("FleetConfig.min_soc", SIMULATED_FLEET["min_soc"], "SOC_MIN"),
    ("FleetConfig.charge_efficiency", SIMULATED_FLEET["charge_efficiency"], "CHARGE_EFFICIENCY"),
    (
        "FleetConfig.discharge_efficiency",
        SIMULATED_FLEET["discharge_efficiency"],
        "DISCHARGE_EFFICIENCY",
    ),
    ("store.database.DEFAULT_DATA_DIR", database.DEFAULT_DATA_DIR, "DATA_DIR"),
    ("live.command_line.DEFAULT_DATA_DIR", command_line.DEFAULT_DATA_DIR, "DATA_DIR"),
    ("cli.DEFAULT_OUT", cli.DEFAULT_OUT, "OUT_DIR"),
    ("day_ahead_plan.DEFAULT_PLAN_PLANNER", day_ahead_plan.DEFAULT_PLAN_PLANNER, "PLAN_PLANNER"),
    ("command_line.DEFAULT_PORT", command_line.DEFAULT_PORT, "OCPP_PORT"),
    ("WebSettings.port", WebSettings().port, "API_PORT"),
    ("profiles16.Rates.voltage_v", Rates().voltage_v, "AC_PHASE_VOLTAGE_V"),
    ("profiles16.Rates.phases", Rates().phases, "AC_PHASES"),
    ("command_line.DEFAULT_CITY", command_line.DEFAULT_CITY, "LIVE_CITY"),
    ("ControlSettings.default_dwell_h", CONTROL["default_dwell_h"], "LIVE_DWELL_H"),
    (
        "ControlSettings.default_battery_kwh",
        CONTROL["default_battery_kwh"],
        "LIVE_BATTERY_KWH",
    ),
    (
        "planning.MPC_PEAK_PRICE_CNY_PER_KW",
        planning.MPC_PEAK_PRICE_CNY_PER_KW,
        "MPC_PEAK_PRICE_CNY_PER_KW",
    ),
    ("mpc.WHOLE_PLAN_EVERY", mpc.WHOLE_PLAN_EVERY, "MPC_WHOLE_PLAN_EVERY"),
    ("mpc.VALLEY_RULE_MARGIN", mpc.VALLEY_RULE_MARGIN, "MPC_VALLEY_RULE_MARGIN"),
    (
        "valley_rule.VALLEY_RULE_PENALTY_CNY_PER_KWH",
        valley_rule.VALLEY_RULE_PENALTY_CNY_PER_KWH,
        "VALLEY_RULE_PENALTY_CNY_PER_KWH",
    ),
    ("feeders.VOLTAGE_BAND_PU", feeders.VOLTAGE_BAND_PU, "FEEDER_VOLTAGE_BAND_PU"),
    (
        "feeders.BASE_PEAK_TRAFO_LOADING",
        feeders.BASE_PEAK_TRAFO_LOADING,
        "FEEDER_BASE_PEAK_TRAFO_LOADING",
    ),
    ("feeder_limits.LOADING_MARGIN", feeder_limits.LOADING_MARGIN, "FEEDER_LOADING_MARGIN"),
    (
        "feeder_limits.VOLTAGE_MARGIN_PU",
        feeder_limits.VOLTAGE_MARGIN_PU,
        "FEEDER_VOLTAGE_MARGIN_PU",
    ),
    ("RegulationOffer.hours", OFFER.hours, "REGULATION_HOURS"),
    ("RegulationOffer.step_s", OFFER.step_s, "REGULATION_SIGNAL_STEP_S"),
    ("RegulationOffer.response_delay_s", OFFER.response_delay_s, "REGULATION_RESPONSE_DELAY_S"),
    ("reserve.REGULATION_DURATION_H", reserve.REGULATION_DURATION_H, "REGULATION_DURATION_H"),
    ("envelope.ENVELOPE_DURATIONS_H", envelope.ENVELOPE_DURATIONS_H, "ENVELOPE_DURATIONS_H"),
    (
        "frequency_response.DEFAULT_DEADBAND_HZ",
        frequency_response.DEFAULT_DEADBAND_HZ,
        "FREQUENCY_DEADBAND_HZ",
    ),
    ("frequency_response.DEFAULT_DROOP", frequency_response.DEFAULT_DROOP, "DROOP"),
]


def _as_table_value(value: object) -> object:
    """The table keeps a demand-response hour as an hour, the code as a time of day."""
    if isinstance(value, dt.time):
        assert value.minute == 0
        return value.hour
    return value


@pytest.mark.parametrize(
    ("where", "value", "name"), CODE_DEFAULTS, ids=[c[0] for c in CODE_DEFAULTS]
)
def test_the_code_uses_the_tables_values(where: str, value: object, name: str) -> None:
    assert name in TABLE, f"{where}: {name} is not in the table"
    assert _as_table_value(value) == TABLE[name], f"{where} differs from defaults.{name}"


def test_every_entry_is_used_by_the_code() -> None:
    assert {name for _, _, name in CODE_DEFAULTS} == set(TABLE)
