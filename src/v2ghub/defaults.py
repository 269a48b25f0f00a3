"""The defaults a user sees, in one table: each with its unit and where its value comes from.

Code imports the module-level constants; :data:`DEFAULTS` lists them again with a unit and a
source, for the documentation and for the test that keeps the two (and the places that
still define a copy) equal. Values that come from data files (cities' tariffs and limits in
``data/cities.toml``, vehicle models in ``data/vehicles.toml``) stay in those files with
their own sources.

Source tags as in FACTS.md: [V] a cited source says it; [S] one secondary source only;
[M] an estimate or arithmetic, not verified; "choice" is a modelling choice, with its
reason.

This module sits below every layer: it imports nothing of ours.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

DefaultValue = (
    float | int | str | dt.date | Path | tuple[float, ...] | tuple[int, ...] | tuple[str, ...]
)


@dataclass(frozen=True)
class Default:
    """One default: its constant's name, value, unit and the reason for the value."""

    name: str
    value: DefaultValue
    unit: str
    source: str


# --- Vehicles of user session files and of the live aggregator -----------------------------
CHARGE_EFFICIENCY = 0.92
"""Share of grid energy stored in the battery, when a session does not say."""
DISCHARGE_EFFICIENCY = 0.92
"""Share of battery energy delivered to the grid, when a session does not say."""
SOC_MIN = 0.2
"""SoC floor for V2G discharge, when a session does not say."""
SOC_MAX = 1.0
"""SoC ceiling for charging, when a session does not say."""
TARGET_SOC = 0.9
"""SoC a live vehicle wants by departure when it does not say."""

# --- The synthetic pilot fleet (scenarios.config.FleetMix) --------------------------------
SYNTHETIC_AC_EFFICIENCY = 0.90
"""One-way efficiency of a home AC charger in the synthetic fleet."""
SYNTHETIC_DC_EFFICIENCY = 0.92
"""One-way efficiency of a workplace or public DC charger in the synthetic fleet."""
SYNTHETIC_SOC_MIN = 0.3
"""SoC floor the synthetic fleet's owners set for V2G."""
SYNTHETIC_SOC_MAX = 1.0
HOME_SOC_TARGET = 0.9
AWAY_SOC_TARGET = 0.8

# --- Money ---------------------------------------------------------------------------------
DEGRADATION_CNY_PER_KWH = "0.2"
"""Battery wear per kWh discharged; text, so that ``Decimal`` and ``float`` read it exactly."""
MPC_PEAK_PRICE_CNY_PER_KW = 1.0
"""The day's share of a capacity (demand) charge the receding-horizon planner prices."""
MPC_WHOLE_PLAN_EVERY = 4
"""The receding-horizon planner re-plans every vehicle at every this many-th instant."""
MPC_VALLEY_RULE_MARGIN = 0.02
"""Points the receding-horizon planner adds to the valley rule's shares when it keeps it."""
VALLEY_RULE_PENALTY_CNY_PER_KWH = 5.0
"""Price of each kWh of valley charging the pilots' valley rule misses."""

# --- What `v2ghub simulate` runs ------------------------------------------------------------
SIMULATION_DATE = dt.date(2025, 7, 16)
SEED = 2025
VEHICLES_PER_CITY = 10_000
STEP_MINUTES = 15
CONTROL_INTERVAL_MINUTES = 15
PLANNERS = ("uncontrolled", "tou", "v2g-rules", "mpc")
OUT_DIR = Path("v2ghub-out")
PLAN_PLANNER = "lp"
"""The planner of ``v2ghub plan``."""

# --- The live aggregator -------------------------------------------------------------------
DATA_DIR = Path("v2ghub-data")
"""Folder of the embedded SQLite database, relative to the working directory."""
LIVE_CONTROL_INTERVAL_S = 60.0
"""Seconds between two plans of the live control loop."""
LIVE_DWELL_H = 8.0
"""Hours a live session without a departure is taken to stay (recorded as assumed)."""
LIVE_BATTERY_KWH = 60.0
"""Battery of a live vehicle that sends none (recorded as assumed)."""
OCPP_PORT = 9000
"""Port of the OCPP server (``v2ghub serve --port``)."""
API_PORT = 8000
"""Port of the web API and dashboard (``v2ghub serve --api-port``)."""
AC_PHASE_VOLTAGE_V = 220.0
"""Phase voltage at which an OCPP 1.6 limit in A is turned into kW and back (China's
low-voltage grid, 220/380 V)."""
AC_PHASES = 3
"""Phases of an OCPP 1.6 AC station whose configuration does not say
(``ConnectorPhaseRotation``)."""
LIVE_CITY = "Shenzhen"
"""City whose tariff the live aggregator plans with unless told (``--city``)."""

# --- Grid services -------------------------------------------------------------------------
REGULATION_HOURS = (10, 11, 19, 20)
"""Local hours the twin offers frequency regulation in."""
REGULATION_SIGNAL_STEP_S = 2.0
REGULATION_RESPONSE_DELAY_S = 2.0
REGULATION_DURATION_H = 1.0
"""How long a regulation promise must hold at full deflection."""
ENVELOPE_DURATIONS_H = (0.25, 1.0, 4.0)
"""How long each deflection of the flexibility envelope must hold."""
FREQUENCY_DEADBAND_HZ = 0.05
DROOP = 0.05
DEMAND_RESPONSE_START_HOUR = 18
DEMAND_RESPONSE_END_HOUR = 19
DEMAND_RESPONSE_KW_PER_VEHICLE = 0.5

# --- Distribution feeders (`simulate --feeders`) -----------------------------------------
FEEDER_VOLTAGE_BAND_PU = (0.90, 1.07)
"""Bus voltages a feeder must keep, per unit of nominal."""
FEEDER_BASE_PEAK_TRAFO_LOADING = 0.6
"""The most loaded transformer's loading from a feeder's own loads at the city's peak."""
FEEDER_LOADING_MARGIN = 0.01
"""Of each rating, kept free by the planners' feeder caps for what linearisation leaves out."""
FEEDER_VOLTAGE_MARGIN_PU = 0.002
"""Of the voltage band, kept free by the planners' feeder caps."""

_EFFICIENCY = "share (0-1)"
_SOC = "share of the battery (0-1)"
_AC_EFFICIENCY_SOURCE = (
    "FACTS.md: charging efficiency 72-93% AC, 3-phase 87-93% [V, ev2gym data]; "
    "0.92^2 = 0.85 matches the 0.75-0.85 round trip [M]"
)

DEFAULTS: tuple[Default, ...] = (
    Default("CHARGE_EFFICIENCY", CHARGE_EFFICIENCY, _EFFICIENCY, _AC_EFFICIENCY_SOURCE),
    Default("DISCHARGE_EFFICIENCY", DISCHARGE_EFFICIENCY, _EFFICIENCY, _AC_EFFICIENCY_SOURCE),
    Default(
        "SOC_MIN",
        SOC_MIN,
        _SOC,
        "choice: a fifth of the pack kept for the owner's unplanned trips [M]",
    ),
    Default("SOC_MAX", SOC_MAX, _SOC, "choice: no ceiling unless the owner sets one"),
    Default("TARGET_SOC", TARGET_SOC, _SOC, "choice: a nearly full pack, as owners ask [M]"),
    Default(
        "SYNTHETIC_AC_EFFICIENCY",
        SYNTHETIC_AC_EFFICIENCY,
        _EFFICIENCY,
        "FACTS.md: 3-phase AC 87-93% [V]; a 7 kW home charger taken near the middle [M]",
    ),
    Default(
        "SYNTHETIC_DC_EFFICIENCY",
        SYNTHETIC_DC_EFFICIENCY,
        _EFFICIENCY,
        "FACTS.md: 87-93% [V]; DC conversion taken at the upper part [M]",
    ),
    Default(
        "SYNTHETIC_SOC_MIN",
        SYNTHETIC_SOC_MIN,
        _SOC,
        "choice: pilot owners keep a larger reserve than the session default [M]",
    ),
    Default("SYNTHETIC_SOC_MAX", SYNTHETIC_SOC_MAX, _SOC, "choice: no ceiling"),
    Default(
        "HOME_SOC_TARGET",
        HOME_SOC_TARGET,
        _SOC,
        "choice: overnight at home there is time to fill the pack nearly [M]",
    ),
    Default(
        "AWAY_SOC_TARGET",
        AWAY_SOC_TARGET,
        _SOC,
        "choice: shorter stays at work and public stations [M]",
    ),
    Default(
        "DEGRADATION_CNY_PER_KWH",
        DEGRADATION_CNY_PER_KWH,
        "CNY/kWh discharged",
        "FACTS.md: LFP pack ~600 CNY/kWh over 3,000 cycles [M]",
    ),
    Default(
        "MPC_PEAK_PRICE_CNY_PER_KW",
        MPC_PEAK_PRICE_CNY_PER_KW,
        "CNY/kW of the day's peak",
        "two-part tariff of ~30 CNY per kW and month = ~1 CNY per kW a day [M]",
    ),
    Default(
        "MPC_WHOLE_PLAN_EVERY",
        MPC_WHOLE_PLAN_EVERY,
        "control instants",
        "measured: hourly at 15-minute instants, the nine-city day's objective is within "
        "0.6% of re-planning all at every instant in each city (0.7% lower in all), in 3.3 "
        "times less time (benchmarks/bench_mpc_incremental.py)",
    ),
    Default(
        "MPC_VALLEY_RULE_MARGIN",
        MPC_VALLEY_RULE_MARGIN,
        "share (0-1)",
        "measured: Shenzhen day, 2,000 vehicles: 59.7% in valley hours without a margin, "
        "61.8% with 0.02",
    ),
    Default(
        "VALLEY_RULE_PENALTY_CNY_PER_KWH",
        VALLEY_RULE_PENALTY_CNY_PER_KWH,
        "CNY/kWh short of the rule",
        "choice: above every TOU price in data/cities.toml, so the rule is kept wherever the "
        "stays allow it",
    ),
    Default(
        "SIMULATION_DATE",
        SIMULATION_DATE,
        "date",
        "choice: a summer Wednesday, when critical peaks apply (FACTS.md TOU table)",
    ),
    Default("SEED", SEED, "integer", "choice: any fixed seed; the same seed, the same result"),
    Default(
        "VEHICLES_PER_CITY",
        VEHICLES_PER_CITY,
        "vehicles",
        "choice: a pilot district, seconds to run per planner",
    ),
    Default(
        "STEP_MINUTES",
        STEP_MINUTES,
        "minutes",
        "choice: the 15-minute settlement interval of metering and markets",
    ),
    Default(
        "CONTROL_INTERVAL_MINUTES",
        CONTROL_INTERVAL_MINUTES,
        "minutes",
        "choice: plan every step (and on every arrival)",
    ),
    Default(
        "PLANNERS",
        PLANNERS,
        "planner names",
        "choice: the baseline, the two rule-based planners and the receding-horizon one",
    ),
    Default("OUT_DIR", OUT_DIR, "path", "choice: a folder beside the user's files"),
    Default(
        "PLAN_PLANNER",
        PLAN_PLANNER,
        "planner name",
        "choice: `plan` serves one site, where the exact LP runs in seconds",
    ),
    Default("DATA_DIR", DATA_DIR, "path", "choice: a folder beside the user's files"),
    Default(
        "LIVE_CONTROL_INTERVAL_S",
        LIVE_CONTROL_INTERVAL_S,
        "s",
        "choice: a minute, well inside OCPP profile updates and the 15-minute meter interval",
    ),
    Default(
        "LIVE_DWELL_H",
        LIVE_DWELL_H,
        "h",
        "choice: an overnight or working-day stay; a vehicle that states its departure replaces it",
    ),
    Default(
        "LIVE_BATTERY_KWH",
        LIVE_BATTERY_KWH,
        "kWh",
        "[M] about the mid-size battery of the vehicle models in data/vehicles.toml",
    ),
    Default("OCPP_PORT", OCPP_PORT, "port", "choice: the port OCPP servers commonly use"),
    Default("API_PORT", API_PORT, "port", "choice: the usual port of a Python web service"),
    Default(
        "AC_PHASE_VOLTAGE_V",
        AC_PHASE_VOLTAGE_V,
        "V",
        "GB/T 156-2017 standard voltages: 220/380 V low-voltage distribution in China",
    ),
    Default(
        "AC_PHASES",
        AC_PHASES,
        "phases",
        "choice: public and depot AC chargers of 11-22 kW are three-phase",
    ),
    Default(
        "LIVE_CITY",
        LIVE_CITY,
        "city",
        "choice: a pilot city with a published TOU tariff and discharge price",
    ),
    Default(
        "REGULATION_HOURS",
        REGULATION_HOURS,
        "local hours (0-23)",
        "FACTS.md: midday valley and evening peak (about 18-22 h) [S]; a pair of each",
    ),
    Default(
        "REGULATION_SIGNAL_STEP_S",
        REGULATION_SIGNAL_STEP_S,
        "s",
        "FACTS.md: AGC regulation signals are sent every 2-4 s; the shortest taken",
    ),
    Default(
        "REGULATION_RESPONSE_DELAY_S",
        REGULATION_RESPONSE_DELAY_S,
        "s",
        "choice: one signal sample through the charger's control loop [M]",
    ),
    Default(
        "REGULATION_DURATION_H",
        REGULATION_DURATION_H,
        "h",
        "choice: one market hour",
    ),
    Default(
        "ENVELOPE_DURATIONS_H",
        ENVELOPE_DURATIONS_H,
        "h",
        "choice: a quarter hour, a market hour, an evening",
    ),
    Default(
        "FREQUENCY_DEADBAND_HZ",
        FREQUENCY_DEADBAND_HZ,
        "Hz",
        "FACTS.md: deadband ~+-0.05 Hz for new resources [M]",
    ),
    Default(
        "DROOP",
        DROOP,
        "share of nominal frequency (0-1)",
        "FACTS.md: 2-10% asked of new resources [M]; 5% taken",
    ),
    Default(
        "DEMAND_RESPONSE_START_HOUR",
        DEMAND_RESPONSE_START_HOUR,
        "local hour (0-23)",
        "assumption: the first hour of the evening peak, about 18-22 h (FACTS.md [S])",
    ),
    Default(
        "DEMAND_RESPONSE_END_HOUR",
        DEMAND_RESPONSE_END_HOUR,
        "local hour (0-23)",
        "assumption: a one-hour event",
    ),
    Default(
        "DEMAND_RESPONSE_KW_PER_VEHICLE",
        DEMAND_RESPONSE_KW_PER_VEHICLE,
        "kW per plugged vehicle",
        "assumption: half a kW below the baseline, not a programme's rule",
    ),
    Default(
        "FEEDER_VOLTAGE_BAND_PU",
        FEEDER_VOLTAGE_BAND_PU,
        "pu of nominal (low, high)",
        "GB/T 12325-2008: 220 V single-phase supply within +7% and -10% of nominal (the "
        "households on a low-voltage feeder) [S]",
    ),
    Default(
        "FEEDER_BASE_PEAK_TRAFO_LOADING",
        FEEDER_BASE_PEAK_TRAFO_LOADING,
        "share of the rating (0-1)",
        "assumption: distribution transformers are sized with room for growth (50-70% peak "
        "utilisation is usual planning practice) [M]; the test feeders' rated loads are design "
        "values (the Kerber village's alone fill 88%)",
    ),
    Default(
        "FEEDER_LOADING_MARGIN",
        FEEDER_LOADING_MARGIN,
        "share of a rating (0-1)",
        "measured: charging at the caps puts the binding element at 99.0% of its rating in "
        "AC on the three standard feeders (tests/test_feeder_limits.py)",
    ),
    Default(
        "FEEDER_VOLTAGE_MARGIN_PU",
        FEEDER_VOLTAGE_MARGIN_PU,
        "pu",
        "choice: the voltage's counterpart of the loading margin (a fifth of a percent)",
    ),
)
"""Every default above, with its unit and source."""
