"""Battery ageing: the cited equations by hand, their monotonicity, and the twin's wear
figures (sessions, summary.json, the report's Battery wear section)."""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2ghub.cli import build_parser
from v2ghub.model.battery_ageing import (
    AgeingModel,
    calendar_fade,
    cycle_fade,
    power_law_increment,
    wear_price_cny_per_kwh,
)
from v2ghub.model.case import CityCase
from v2ghub.model.fleet import Chemistry, Fleet
from v2ghub.model.problem import Problem, Schedule
from v2ghub.planning import make_planner
from v2ghub.report.html import render_html
from v2ghub.report.outputs import sessions_table, summary_document
from v2ghub.scenarios.ageing_data import ageing_model, planning_wear_price
from v2ghub.scenarios.build import synthetic_cases
from v2ghub.scenarios.catalog import vehicle_models
from v2ghub.scenarios.config import Scenario, ScenarioFile, SimulationSettings, resolve
from v2ghub.settlement.money import fen_to_cny
from v2ghub.sim.engine import Simulator
from v2ghub.sim.metrics import RunResult, evaluate, summarise
from v2ghub.sim.wear import value_fen
from v2ghub.twin.options import scenario_from_options

MODEL = ageing_model()
R = 8.314462618
SECONDS_PER_YEAR = 365 * 86_400
AGE_DAYS = 4 * 365  # the shipped assumption: every vehicle 4 years old
ONE = np.ones(1)


def _lfp() -> np.ndarray:
    return np.array([Chemistry.LFP], dtype=np.int8)


def _nmc() -> np.ndarray:
    return np.array([Chemistry.NMC], dtype=np.int8)


# ------------------------------------------------------------------ the equations by hand


def test_lfp_cycle_fade_of_1000_full_cycles_at_1c_and_full_depth() -> None:
    # Naumann 2020: (0.0630 * 1 + 0.0971) * (4.0253 * (1 - 0.6)^3 + 1.0923) = 0.21612 %
    # per sqrt(FEC); 1000 FEC: 0.21612 * 31.623 = 6.834 % of capacity.
    rate = MODEL.lfp.cycle_rate_per_sqrt_fec(c_rate=ONE, dod=ONE)
    fade = power_law_increment(rate=rate, exponent=0.5, prior_exposure=0 * ONE, exposure=1000 * ONE)
    assert fade[0] == pytest.approx(0.06834, abs=1e-5)


def test_lfp_calendar_fade_of_a_year_at_25c_and_half_charge() -> None:
    # Naumann 2018: 1.2571e-5 * (2.8575 * 0 + 0.60225) * sqrt(365 * 86400 s) = 4.252 %.
    rate = MODEL.lfp.calendar_rate_per_sqrt_s(soc=0.5 * ONE, temperature_k=298.15)
    fade = power_law_increment(
        rate=rate, exponent=0.5, prior_exposure=0 * ONE, exposure=SECONDS_PER_YEAR * ONE
    )
    assert fade[0] == pytest.approx(0.04252, abs=1e-5)


def test_lfp_calendar_fade_is_faster_hot_and_full() -> None:
    # At 45 C and SoC 1: exp(-17126 / R * (1/318.15 - 1/298.15)) = 1.5414 times the rate,
    # and 2.8575 * 0.125 + 0.60225 = 0.95944: a year fades 10.46 %.
    rate = MODEL.lfp.calendar_rate_per_sqrt_s(soc=ONE, temperature_k=318.15)
    assert rate[0] * math.sqrt(SECONDS_PER_YEAR) == pytest.approx(0.10457, abs=1e-5)


def test_nmc_calendar_and_cycle_rates_at_half_charge() -> None:
    # Schmalstieg 2014 at SoC 0.5 (3.697 V in the shipped voltage table), 25 C:
    # alpha = (7.543 * 3.697 - 23.75) * 1e6 * exp(-6976 / 298.15) = 2.8522e-4 per day^0.75,
    # a year: alpha * 365^0.75 = 2.382 %; at full depth
    # beta = 7.348e-3 * (3.697 - 3.667)^2 + 7.6e-4 + 4.081e-3 = 4.8476e-3 per sqrt(Ah), and
    # 1000 FEC of the 2.15 Ah cell (4,300 Ah through it): beta * sqrt(4300) = 31.79 %.
    half = 0.5 * ONE
    assert MODEL.nmc.voltage_v(half)[0] == pytest.approx(3.697)
    alpha = MODEL.nmc.calendar_rate_per_day(soc=half, temperature_k=298.15)
    assert alpha[0] == pytest.approx(2.8522e-4, rel=1e-4)
    assert alpha[0] * 365**0.75 == pytest.approx(0.02382, abs=1e-5)
    beta = MODEL.nmc.cycle_rate_per_sqrt_ah(soc=half, dod=ONE)
    assert beta[0] == pytest.approx(4.8476e-3, rel=1e-4)
    assert beta[0] * math.sqrt(4300) == pytest.approx(0.3179, abs=1e-4)


def test_a_day_continues_from_the_assumed_history() -> None:
    # One day at SoC 0.5, 25 C after 4 years: k * (sqrt(1461 d) - sqrt(1460 d)) in seconds.
    k = 1.2571e-5 * 0.60225
    expected = k * (math.sqrt(1461 * 86_400) - math.sqrt(AGE_DAYS * 86_400))
    fade = calendar_fade(MODEL, chemistry=_lfp(), mean_soc=0.5 * ONE, days=ONE)
    assert fade[0] == pytest.approx(expected, rel=1e-9)
    assert fade[0] == pytest.approx(2.9115e-5, rel=1e-4)
    # A 44.9 kWh pack that drove 12,000 km a year at 0.15 kWh/km: 7,200 kWh = 160.36 FEC.
    # Charging 20 kWh (0.4454 FEC, depth 0.4454) at 7 kW (0.1559C):
    prior = 4 * 12_000 * 0.15 / 44.9
    fec = 20 / 44.9
    rate = (0.0630 * 7 / 44.9 + 0.0971) * (4.0253 * (fec - 0.6) ** 3 + 1.0923) / 100
    cycle = cycle_fade(
        MODEL,
        chemistry=_lfp(),
        battery_kwh=44.9 * ONE,
        charged_kwh=20 * ONE,
        c_rate=7 / 44.9 * ONE,
        mean_soc=0.6 * ONE,
    )
    assert cycle[0] == pytest.approx(rate * (math.sqrt(prior + fec) - math.sqrt(prior)), rel=1e-9)


def test_fade_is_valued_at_the_pack_price_over_the_end_of_life_fade() -> None:
    # BNEF's 2024 China pack price 94 USD/kWh at 7.2 CNY/USD, worn out at 20 % fade.
    assert MODEL.assumptions.replacement_cny_per_kwh == Decimal("676.8")
    assert MODEL.assumptions.fade_value_cny_per_kwh == Decimal("3384")
    # 1 Wh of capacity: 338.4 fen -> 338; 1.5 Wh: 507.6 -> 508; none: 0.
    assert value_fen(np.array([0.001, 0.0015, 0.0]), MODEL).tolist() == [338, 508, 0]


def test_wear_price_is_the_valued_fade_of_one_more_kwh_per_kwh_delivered() -> None:
    fleet = _fleet(n=1, soc_arrival=0.45, soc_target=0.9, battery_kwh=44.9, efficiency=0.9)
    need = 0.45 * 44.9

    def fade(charged_kwh: float) -> float:
        return float(
            cycle_fade(
                MODEL,
                chemistry=_lfp(),
                battery_kwh=44.9 * ONE,
                charged_kwh=charged_kwh * ONE,
                c_rate=7 / 44.9 * ONE,
                mean_soc=0.675 * ONE,
            )[0]
        )

    slope = [fade(need + 1) - fade(need)]
    expected = slope[0] * 44.9 * 3384 / 0.9
    price = wear_price_cny_per_kwh(fleet, MODEL)
    assert price[0] == pytest.approx(expected, rel=1e-9)
    # Mid-life LFP: about 0.19 CNY per kWh delivered, near the flat default of 0.2.
    assert price[0] == pytest.approx(0.19, abs=0.01)
    nmc = wear_price_cny_per_kwh(replace(fleet, chemistry=_nmc()), MODEL)
    assert nmc[0] > 3 * price[0]  # the 2014 NMC cell wears far faster per cycle


# ------------------------------------------------------------------ monotonicity

chemistries = st.sampled_from([Chemistry.LFP, Chemistry.NMC])
fractions = st.floats(0.0, 1.0)


@settings(max_examples=200, deadline=None)
@given(
    chemistry=chemistries,
    battery_kwh=st.floats(10.0, 150.0),
    charged=st.floats(0.0, 200.0),
    more=st.floats(0.0, 100.0),
    c_rate=st.floats(0.01, 3.0),
    mean_soc=fractions,
)
def test_more_throughput_never_fades_less(
    *,
    chemistry: Chemistry,
    battery_kwh: float,
    charged: float,
    more: float,
    c_rate: float,
    mean_soc: float,
) -> None:
    fades = cycle_fade(
        MODEL,
        chemistry=np.full(2, chemistry, dtype=np.int8),
        battery_kwh=np.full(2, battery_kwh),
        charged_kwh=np.array([charged, charged + more]),
        c_rate=np.full(2, c_rate),
        mean_soc=np.full(2, mean_soc),
    )
    assert fades[0] >= 0
    assert fades[1] >= fades[0]


@settings(max_examples=200, deadline=None)
@given(
    chemistry=chemistries,
    low=fractions,
    high=fractions,
    days=st.floats(0.01, 30.0),
    temperature_c=st.floats(-20.0, 50.0),
)
def test_higher_mean_soc_never_fades_less_on_the_calendar(
    *, chemistry: Chemistry, low: float, high: float, days: float, temperature_c: float
) -> None:
    low, high = min(low, high), max(low, high)
    model = AgeingModel(
        lfp=MODEL.lfp,
        nmc=MODEL.nmc,
        assumptions=replace(MODEL.assumptions, temperature_c=temperature_c),
    )
    fades = calendar_fade(
        model,
        chemistry=np.full(2, chemistry, dtype=np.int8),
        mean_soc=np.array([low, high]),
        days=np.full(2, days),
    )
    assert fades[0] >= 0
    assert fades[1] >= fades[0]


def test_a_fleet_without_chemistry_is_lfp() -> None:
    soc, days = np.array([0.3, 0.8]), np.ones(2)
    default = calendar_fade(MODEL, chemistry=None, mean_soc=soc, days=days)
    lfp = calendar_fade(MODEL, chemistry=np.zeros(2, dtype=np.int8), mean_soc=soc, days=days)
    assert default.tolist() == lfp.tolist()


def test_a_mixed_fleet_fades_each_vehicle_as_a_fleet_of_its_chemistry() -> None:
    n = 6
    soc = np.linspace(0.2, 0.9, n)
    battery_kwh = np.linspace(40.0, 80.0, n)
    charged_kwh = np.linspace(5.0, 70.0, n)
    c_rate = np.full(n, 0.15)
    mixed = np.array([Chemistry.LFP, Chemistry.NMC] * (n // 2), dtype=np.int8)

    def fades(chemistry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calendar = calendar_fade(MODEL, chemistry=chemistry, mean_soc=soc, days=np.ones(n))
        cycle = cycle_fade(
            MODEL,
            chemistry=chemistry,
            battery_kwh=battery_kwh,
            charged_kwh=charged_kwh,
            c_rate=c_rate,
            mean_soc=soc,
        )
        return calendar, cycle

    for kind in (Chemistry.LFP, Chemistry.NMC):
        rows = mixed == kind
        one = fades(np.full(n, kind, dtype=np.int8))
        for of_mixed, of_one in zip(fades(mixed), one, strict=True):
            assert of_mixed[rows].tolist() == of_one[rows].tolist()
            assert (of_one > 0).all()


# ------------------------------------------------------------------ data


def test_every_shipped_vehicle_model_has_a_sourced_chemistry() -> None:
    models = vehicle_models()
    assert {m.chemistry for m in models} == {"LFP"}
    assert all("chemistry" in m.source for m in models)


def test_fleet_refuses_an_unknown_chemistry() -> None:
    with pytest.raises(ValueError, match="session 1: chemistry must be one of LFP, NMC"):
        _fleet(n=2, chemistry=np.array([0, 7], dtype=np.int8))


def test_synthetic_fleets_carry_the_models_chemistry() -> None:
    case = next(iter(synthetic_cases(_scenario(("uncontrolled",)))))
    assert case.fleet.chemistry is not None
    assert set(case.fleet.chemistry.tolist()) == {Chemistry.LFP}


# ------------------------------------------------------------------ the twin


def _fleet(
    *,
    n: int,
    soc_arrival: float = 0.4,
    soc_target: float = 0.9,
    battery_kwh: float = 60.0,
    efficiency: float = 0.9,
    chemistry: np.ndarray | None = None,
) -> Fleet:
    return Fleet(
        site_index=np.zeros(n, dtype=np.int64),
        battery_kwh=np.full(n, battery_kwh),
        soc_arrival=np.full(n, soc_arrival),
        soc_target=np.full(n, soc_target),
        soc_min=np.full(n, 0.2),
        soc_max=np.full(n, 1.0),
        max_charge_kw=np.full(n, 7.0),
        max_discharge_kw=np.full(n, 7.0),
        charge_efficiency=np.full(n, efficiency),
        discharge_efficiency=np.full(n, efficiency),
        arrival_s=np.zeros(n, dtype=np.int64),
        departure_s=np.full(n, 36_000, dtype=np.int64),
        v2g_opt_in=np.ones(n, dtype=bool),
        charger_kind=np.zeros(n, dtype=np.int8),
        chemistry=chemistry,
    )


def _scenario(planners: tuple[str, ...]) -> Scenario:
    settings = SimulationSettings(vehicles_per_city=150, cities=("Shanghai",), planners=planners)
    return resolve(ScenarioFile(simulation=settings))


@pytest.fixture(scope="module")
def runs() -> dict[str, RunResult]:
    """Shanghai, 150 vehicles: charging only and the V2G rule planner."""
    scenario = _scenario(("uncontrolled", "v2g-rules"))
    case = next(iter(synthetic_cases(scenario)))
    return {
        planner: evaluate(Simulator(case, make_planner(planner)).run())
        for planner in scenario.simulation.planners
    }


def test_charging_only_wears_nothing_to_v2g(runs: dict[str, RunResult]) -> None:
    result = runs["uncontrolled"]
    assert result.wear is not None
    assert result.wear.v2g_fade_kwh.tolist() == [0.0] * result.run.case.fleet.n_sessions
    assert result.metrics.v2g_owners == 0
    assert result.metrics.v2g_fade_value_cny == Decimal(0)
    assert result.metrics.capacity_fade_kwh > result.metrics.cycle_fade_kwh > 0


def test_mean_soc_while_plugged_lies_between_arrival_and_departure(
    runs: dict[str, RunResult],
) -> None:
    run = runs["uncontrolled"].run
    fleet = run.case.fleet
    first, end = run.case.plugged_steps()
    plugged_h = (end - first) * run.case.grid.dt_h
    plugged = plugged_h > 0
    mean = run.soc_hours[plugged] / plugged_h[plugged]
    final = run.energy_final_kwh[plugged] / fleet.battery_kwh[plugged]
    # Charging only: the SoC rises from arrival to departure, end-of-step values.
    assert np.all(mean >= fleet.soc_arrival[plugged] - 1e-9)
    assert np.all(mean <= final + 1e-9)
    assert np.any(mean < final - 0.01)


def test_v2g_wear_matches_the_planners_marginal_price(runs: dict[str, RunResult]) -> None:
    result = runs["v2g-rules"]
    wear = result.wear
    assert wear is not None
    fleet = result.run.case.fleet
    discharged = result.outcomes.discharged_kwh
    owners = discharged > 0
    assert owners.sum() == result.metrics.v2g_owners > 0
    assert np.all(wear.v2g_fade_kwh[~owners] == 0)
    assert np.all(wear.v2g_fade_kwh[owners] > 0)
    # The wear of each owner's discharge is close to the model's marginal price times the
    # energy delivered (the square-root law barely bends over one day's extra cycling)
    # where the discharge stays below the session's need: a larger one deepens the day's
    # cycle well past the depth the price was taken at, and wears more than linearly.
    price = wear_price_cny_per_kwh(fleet, MODEL)
    need = result.outcomes.required_kwh
    served = owners & (result.outcomes.unmet_kwh == 0) & (discharged > 1) & (discharged < need)
    assert served.any()
    ratio = (wear.v2g_fade_value_fen[served] / 100) / (price[served] * discharged[served])
    assert np.all((ratio > 0.8) & (ratio < 1.25))
    # What V2G paid: the discharge at the export prices (to within a fen per line).
    levels = result.run.export_kwh_by_level
    export = np.array([float(p) for p in result.run.prices.export_price_cny_per_kwh])
    paid_cny = (levels @ export)[owners]
    assert np.allclose(wear.v2g_payment_fen[owners] / 100, paid_cny, atol=0.01 * levels.shape[1])
    m = result.metrics
    assert m.v2g_fade_kwh == pytest.approx(float(wear.v2g_fade_kwh.sum()))
    assert m.v2g_fade_value_cny == fen_to_cny(int(wear.v2g_fade_value_fen.sum())) > 0
    assert m.v2g_payment_cny == fen_to_cny(int(wear.v2g_payment_fen.sum())) > m.v2g_fade_value_cny


def test_sessions_table_and_summary_carry_the_wear(runs: dict[str, RunResult]) -> None:
    result = runs["v2g-rules"]
    assert result.wear is not None
    table = sessions_table(result)
    assert table.column("v2g_fade_kwh").to_pylist() == result.wear.v2g_fade_kwh.tolist()
    assert table.column("v2g_fade_value_fen").to_pylist() == result.wear.v2g_fade_value_fen.tolist()
    assert table.column("capacity_fade_kwh").to_pylist() == pytest.approx(
        (result.wear.calendar_fade_kwh + result.wear.cycle_fade_kwh).tolist()
    )
    summaries = [summarise(r) for r in runs.values()]
    document = summary_document(summaries, planners=list(runs), scenario={})
    city = document["planners"]["v2g-rules"]["cities"]["Shanghai"]
    total = document["planners"]["v2g-rules"]["total"]
    assert city["v2g_fade_value_cny"] == str(result.metrics.v2g_fade_value_cny)
    assert total["v2g_fade_value_cny"] == str(result.metrics.v2g_fade_value_cny)
    assert total["v2g_payment_cny"] == str(result.metrics.v2g_payment_cny)
    assert total["v2g_owners"] == result.metrics.v2g_owners
    assert total["capacity_fade_kwh"] == pytest.approx(result.metrics.capacity_fade_kwh, abs=1e-6)
    assert document["planners"]["uncontrolled"]["total"]["v2g_fade_kwh"] == 0


def test_report_has_a_battery_wear_section_with_numbers(runs: dict[str, RunResult]) -> None:
    summaries = [summarise(r) for r in runs.values()]
    text = render_html(summaries, title="wear", notes=[])
    section = text[text.index('<section id="battery-wear">') :]
    section = section[: section.index("</section>")]
    assert "<h2>Battery wear</h2>" in section
    m = runs["v2g-rules"].metrics
    assert f'<td class="num">{m.v2g_fade_value_cny:,}</td>' in section
    assert f'<td class="num">{m.v2g_payment_cny:,}</td>' in section
    assert f'<td class="num">{m.v2g_owners:,}</td>' in section
    assert "3,384 CNY per kWh of capacity" in section
    assert "Wear and pay per owner" in section
    assert section.count("data:image/png;base64,") == 1


# ------------------------------------------------------------------ wear priced for planners


def _model_case() -> CityCase:
    settings = SimulationSettings(
        vehicles_per_city=150, cities=("Shanghai",), planners=("v2g-rules",), wear="model"
    )
    return next(iter(synthetic_cases(resolve(ScenarioFile(simulation=settings)))))


def test_planners_see_a_flat_price_or_the_models_price_per_vehicle() -> None:
    flat_case = next(iter(synthetic_cases(_scenario(("v2g-rules",)))))
    assert flat_case.degradation_cny_per_kwh == 0.2
    case = _model_case()
    prices = wear_price_cny_per_kwh(case.fleet, MODEL)
    assert isinstance(case.degradation_cny_per_kwh, np.ndarray)
    assert case.degradation_cny_per_kwh.tolist() == prices.tolist()
    assert 0.1 < float(np.median(prices)) < 0.4  # mid-life LFP, 25 C
    assert planning_wear_price(case.fleet, wear="flat", flat_cny_per_kwh=0.7) == 0.7
    with pytest.raises(ValueError, match="wear must be one of flat, model, not 'linear'"):
        planning_wear_price(case.fleet, wear="linear", flat_cny_per_kwh=0.2)
    with pytest.raises(ValueError, match="one price or one per session \\(150\\)"):
        replace(case, degradation_cny_per_kwh=prices[:-1])


class _Recording:
    """A planner that notes each problem's vehicles and wear prices, and plans by rules."""

    name = "recording"

    def __init__(self) -> None:
        self.inner = make_planner("v2g-rules")
        self.seen: list[tuple[np.ndarray, np.ndarray, int]] = []

    def plan(self, problem: Problem) -> Schedule:
        n = problem.n_plugged
        self.seen.append((problem.vehicle_index[:n].copy(), problem.degradation.copy(), n))
        return self.inner.plan(problem)


def test_the_twin_gives_each_plugged_vehicle_its_own_wear_price() -> None:
    case = _model_case()
    planner = _Recording()
    run = Simulator(case, planner).run()
    assert len(planner.seen) > 10
    prices = case.degradation
    for vehicles, degradation, n in planner.seen:
        assert degradation[:n].tolist() == prices[vehicles].tolist()
        assert np.all(degradation[n:] == 0)  # the expected arrivals never discharge
    # The planning rate's cost: each session's discharge at its own price, to the fen.
    result = evaluate(run)
    wh = np.round(result.outcomes.discharged_kwh * 1000)
    expected = sum(
        Decimal(int(w)) * Decimal(round(p * 1e9)) / Decimal(10**12)
        for w, p in zip(wh, prices, strict=True)
    )
    assert result.metrics.energy_discharged_kwh > 0
    assert abs(result.metrics.degradation_cost_cny - expected) <= Decimal("0.01") * len(wh)
    assert float(result.metrics.degradation_cost_cny) == pytest.approx(
        float(result.outcomes.discharged_kwh @ prices), abs=0.01 * len(wh)
    )


def test_simulate_chooses_the_wear_price_on_the_command_line() -> None:
    args = build_parser().parse_args(["simulate", "--wear", "model", "--cities", "Hefei"])
    assert args.wear == "model"
    scenario = scenario_from_options(cities=args.cities, wear=args.wear)
    assert scenario.settings.simulation.wear == "model"
    assert scenario_from_options(cities="Hefei").settings.simulation.wear == "flat"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--wear", "linear"])


def test_a_scenario_file_refuses_an_unknown_wear_pricing() -> None:
    with pytest.raises(ValueError, match="wear"):
        SimulationSettings(wear="linear")
