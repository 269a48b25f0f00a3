"""How the CSMS reads meter values and charging needs out of OCPP payloads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ocpp.charge_point import camel_to_snake_case
from ocpp.exceptions import FormatViolationError

from v2ghub.live.charging_needs import ChargingNeeds, ev_needs
from v2ghub.live.ocpp_payloads import meter_samples, meter_values, parse_time

RECEIVED = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)


def test_per_phase_values_are_not_the_register() -> None:
    meter_value = camel_to_snake_case(
        [
            {
                "timestamp": "2026-07-01T02:00:00Z",
                "sampledValue": [
                    {"value": 9000, "measurand": "Energy.Active.Import.Register"},
                    {"value": 3000, "measurand": "Energy.Active.Import.Register", "phase": "L1"},
                    {"value": 7000, "measurand": "Power.Active.Import"},
                    {"value": 2300, "measurand": "Power.Active.Import", "phase": "L1-N"},
                ],
            }
        ]
    )
    [sample] = meter_samples("CP-1", "T-1", 1, meter_values(meter_value), export_wh=450)
    assert sample.import_register_wh == 9_000
    assert sample.export_register_wh == 450  # none in the message: the stored one
    assert sample.power_kw == pytest.approx(7.0)


def test_meter_samples_scale_units_and_sign_power() -> None:
    meter_value = camel_to_snake_case(
        [
            {
                "timestamp": "2026-07-01T10:00:10+08:00",
                "sampledValue": [
                    {
                        "value": 12.5,
                        "measurand": "Energy.Active.Import.Register",
                        "unitOfMeasure": {"unit": "kWh"},
                    },
                    {
                        "value": 3,
                        "measurand": "Energy.Active.Export.Register",
                        "unitOfMeasure": {"unit": "Wh", "multiplier": 3},
                    },
                    {"value": 7000, "measurand": "Power.Active.Export"},
                    {"value": 61.5, "measurand": "SoC", "unitOfMeasure": {"unit": "Percent"}},
                ],
            },
            # Power only: not a register reading.
            {
                "timestamp": "2026-07-01T02:00:20Z",
                "sampledValue": [{"value": 11000, "measurand": "Power.Active.Import"}],
            },
            # The default measurand is the import register, in Wh.
            {"timestamp": "2026-07-01T02:00:30Z", "sampledValue": [{"value": 12600}]},
        ]
    )
    samples = meter_samples("CP-1", "T-9", 4, meter_values(meter_value))
    assert len(samples) == 2
    first, second = samples
    assert first.measured_at == datetime(2026, 7, 1, 2, 0, 10, tzinfo=UTC)
    assert (first.import_register_wh, first.export_register_wh) == (12_500, 3_000)
    assert first.power_kw == pytest.approx(-7.0)
    assert first.soc == pytest.approx(0.615)
    assert (first.station_id, first.transaction_id, first.seq_no) == ("CP-1", "T-9", 4)
    # No export register: it stays where the message's previous reading left it.
    assert (second.import_register_wh, second.export_register_wh) == (12_600, 3_000)
    assert second.power_kw is None


def test_v21_needs_give_absolute_energies_and_discharge() -> None:
    needs = camel_to_snake_case(
        {
            "requestedEnergyTransfer": "DC_BPT",
            "controlMode": "DynamicControl",
            "departureTime": "2026-07-01T18:30:00+08:00",
            "dcChargingParameters": {
                "evMaxCurrent": 200,
                "evMaxVoltage": 400,
                "evEnergyCapacity": 60000,
                "stateOfCharge": 40,
            },
            "v2xChargingParameters": {
                "maxChargePower": 11000,
                "maxDischargePower": 7000,
                "minChargePower": 1400,
                "minDischargePower": 2000,
                "targetSoC": 80,
                "evMinV2XEnergyRequest": -12000,
            },
        }
    )
    result = ev_needs("CP-1", 1, ChargingNeeds.from_payload(needs), RECEIVED)
    assert result.departure_at == datetime(2026, 7, 1, 10, 30, tzinfo=UTC)
    assert result.battery_kwh == pytest.approx(60.0)
    assert result.soc == pytest.approx(0.40)
    assert result.target_energy_kwh == pytest.approx(48.0)  # 80% of 60 kWh
    assert result.min_energy_kwh == pytest.approx(12.0)  # 24 kWh stored - 12 kWh
    assert result.max_charge_kw == pytest.approx(11.0)
    assert result.max_discharge_kw == pytest.approx(7.0)
    assert (result.min_charge_kw, result.min_discharge_kw) == (1.4, 2.0)
    assert result.control_mode == "DynamicControl"


def test_v201_needs_are_charge_only_with_energy_amount() -> None:
    needs = camel_to_snake_case(
        {
            "requestedEnergyTransfer": "DC",
            "departureTime": "2026-07-01T09:00:00Z",
            "dcChargingParameters": {
                "evMaxCurrent": 100,
                "evMaxVoltage": 400,
                "evMaxPower": 22000,
                "evEnergyCapacity": 50000,
                "stateOfCharge": 30,
                "energyAmount": 20000,
            },
        }
    )
    result = ev_needs("CP-2", 1, ChargingNeeds.from_payload(needs), RECEIVED)
    assert result.target_energy_kwh == pytest.approx(35.0)  # 15 kWh stored + 20 kWh
    assert result.max_charge_kw == pytest.approx(22.0)
    assert result.max_discharge_kw is None
    assert result.min_energy_kwh is None


def test_ac_needs_read_battery_and_soc_from_custom_data() -> None:
    needs = camel_to_snake_case(
        {
            "requestedEnergyTransfer": "AC_single_phase",
            "acChargingParameters": {
                "energyAmount": 10000,
                "evMinCurrent": 6,
                "evMaxCurrent": 32,
                "evMaxVoltage": 230,
            },
            "customData": {"vendorId": "v2ghub", "evEnergyCapacity": 50000, "stateOfCharge": 50},
        }
    )
    result = ev_needs("CP-3", 1, ChargingNeeds.from_payload(needs), RECEIVED)
    assert result.battery_kwh == pytest.approx(50.0)
    assert result.target_energy_kwh == pytest.approx(35.0)  # 25 kWh stored + 10 kWh
    assert result.max_charge_kw == pytest.approx(32 * 230 / 1000)


def test_ac_needs_take_power_from_current_and_voltage() -> None:
    needs = camel_to_snake_case(
        {
            "requestedEnergyTransfer": "AC_three_phase",
            "acChargingParameters": {
                "energyAmount": 10000,
                "evMinCurrent": 6,
                "evMaxCurrent": 16,
                "evMaxVoltage": 400,
            },
        }
    )
    result = ev_needs("CP-3", 2, ChargingNeeds.from_payload(needs), RECEIVED)
    assert result.max_charge_kw == pytest.approx(16 * 400 * 3 / 1000)
    assert result.target_energy_kwh is None  # no battery size or SoC: nothing absolute
    assert result.departure_at is None


@pytest.mark.parametrize(
    ("text", "message"),
    [(None, "timestamp must be a dateTime string"), ("yesterday", "'yesterday' is not a dateTime")],
)
def test_bad_times_are_format_violations(text: object, message: str) -> None:
    with pytest.raises(FormatViolationError) as caught:
        parse_time(text, "timestamp")
    assert message in str(caught.value.description)


def test_naive_times_are_taken_as_utc() -> None:
    assert parse_time("2026-07-01T02:00:00", "timestamp") == datetime(2026, 7, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("needs", "message"),
    [
        (
            {"dc_charging_parameters": {"ev_energy_capacity": "60 kWh"}},
            "dcChargingParameters.ev_energy_capacity must be a number, got '60 kWh'",
        ),
        ({"v2x_charging_parameters": [1]}, "chargingNeeds.v2xChargingParameters must be an "),
        ({"departure_time": "soon"}, "departureTime: 'soon' is not a dateTime"),
    ],
)
def test_needs_of_the_wrong_type_name_the_field(needs: dict[str, object], message: str) -> None:
    with pytest.raises(FormatViolationError) as caught:
        ChargingNeeds.from_payload(needs)
    assert message in str(caught.value.description)


def test_a_meter_value_without_a_number_names_the_field() -> None:
    raw = [{"timestamp": "2026-07-01T02:00:00Z", "sampled_value": [{"value": True}]}]
    with pytest.raises(FormatViolationError) as caught:
        meter_values(raw)
    assert str(caught.value.description) == (
        "meterValue[0].sampledValue[0].value must be a number, got 'True'"
    )
