"""The fast planner with a peak price: never dearer than ignoring the peak, close to the LP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from v2ghub.model import Problem, TimeGrid
from v2ghub.planning import fast
from v2ghub.planning.fast import FastPlanner
from v2ghub.planning.lp import LpPlanner
from v2ghub.planning.objective import ScheduleCost, schedule_cost
from v2ghub.planning.stepping import make_feasible

from .guarantees import check_guarantees, shortfall_kwh
from .strategies import problems
from .test_fast import shenzhen_day_ahead

FloatArray = npt.NDArray[np.float64]
PEAK_SETTINGS = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PEAK_PRICES = st.floats(0.05, 20.0)
# Share of the LP's gross money (|energy cost| + |export revenue| + |degradation| + |peak
# cost|) by which the fast plan may cost more. Measured over about 10,000 random problems
# without site limits and peak prices of 0.05-20 CNY/kW: 95% within 0.3%, 99% within 2.5%,
# the worst 10.1% (six vehicles, a five-step peak plateau that six iterations do not
# flatten; twelve would bring it to 2.9%); ignoring the peak, up to 86%. The gross, not
# the objective: revenue and cost can all but cancel (an LP objective of 2.2 CNY with
# fast 0.9 CNY dearer is 39% of the objective but 0.4% of the gross).
GAP_SHARE_OF_GROSS = 0.12
ROUNDING_CNY = 1e-6


def _cost(problem: Problem, power_kw: FloatArray, peak_price: float) -> ScheduleCost:
    return schedule_cost(problem, power_kw, peak_price_cny_per_kw=peak_price)


def _gross_cny(cost: ScheduleCost) -> float:
    parts = (
        cost.energy_cost_cny,
        cost.export_revenue_cny,
        cost.degradation_cost_cny,
        cost.peak_cost_cny,
    )
    return sum(abs(part) for part in parts)


@PEAK_SETTINGS
@given(problem=problems(), peak_price=PEAK_PRICES)
def test_the_peak_price_never_costs_more_than_ignoring_it(
    problem: Problem, peak_price: float
) -> None:
    ignoring = FastPlanner().plan(problem).power_kw
    power_kw = FastPlanner(peak_price_cny_per_kw=peak_price).plan(problem).power_kw
    check_guarantees(problem, power_kw)
    assert shortfall_kwh(problem, power_kw).sum() <= shortfall_kwh(problem, ignoring).sum() + 1e-4
    with_peak = _cost(problem, power_kw, peak_price).objective_cny
    without = _cost(problem, ignoring, peak_price).objective_cny
    assert with_peak <= without + ROUNDING_CNY * max(1.0, abs(without))


@PEAK_SETTINGS
@given(problem=problems(limited_sites=False), peak_price=PEAK_PRICES)
def test_the_peak_price_comes_close_to_the_lp(problem: Problem, peak_price: float) -> None:
    # Without site limits fast without a peak price is the LP's optimum; what is left here
    # is the price iterations' gap.
    lp = _cost(
        problem, LpPlanner(peak_price_cny_per_kw=peak_price).plan(problem).power_kw, peak_price
    )
    power_kw = FastPlanner(peak_price_cny_per_kw=peak_price).plan(problem).power_kw
    fast_cny = _cost(problem, power_kw, peak_price).objective_cny
    assert fast_cny >= lp.objective_cny - 1e-4  # below the LP would mean a broken limit
    assert fast_cny <= lp.objective_cny + GAP_SHARE_OF_GROSS * _gross_cny(lp) + ROUNDING_CNY


def _evening_peak() -> Problem:
    """One V2G vehicle plugged for 4 hours under an evening peak, one flat price.

    Base load 10, 10, 50, 10 kW; the vehicle holds 20 kWh and must leave with 20 kWh;
    10 kW each way, 90% efficient each way; 1 CNY/kWh to buy and to sell.
    """
    steps = 4
    one = np.ones(1)
    return Problem(
        grid=TimeGrid(datetime(2025, 7, 16, 16, tzinfo=UTC), timedelta(hours=1), steps),
        control_steps=steps,
        vehicle_index=np.zeros(1, dtype=np.int64),
        site_index=np.zeros(1, dtype=np.int64),
        energy_kwh=one * 20.0,
        energy_min_kwh=one * 0.0,
        energy_max_kwh=one * 40.0,
        target_energy_kwh=one * 20.0,
        max_charge_kw=one * 10.0,
        max_discharge_kw=one * 10.0,
        charge_efficiency=one * 0.9,
        discharge_efficiency=one * 0.9,
        departure_step=np.array([steps]),
        arrival_step=np.zeros(1, dtype=np.int64),
        import_limit_kw=one * np.inf,
        export_limit_kw=one * np.inf,
        import_price_cny_per_kwh=np.ones(steps),
        export_price_cny_per_kwh=np.ones(steps),
        period_kind=np.zeros(steps, dtype=np.int8),
        base_load_kw=np.array([10.0, 10.0, 50.0, 10.0]),
        renewable_surplus_kw=np.zeros(steps),
    )


def test_a_vehicle_shaves_the_evening_peak() -> None:
    # Discharging 10 kW in the peak hour takes 10 / 0.9 kWh from the battery; buying it
    # back in another hour takes 10 / 0.81 kWh from the grid: 2.35 CNY of losses for
    # 10 kW off the peak, worth 10 CNY at 1 CNY/kW. The peak falls from 50 to 40 kW.
    problem = _evening_peak()
    peak_price = 1.0
    losses_cny = 10.0 / 0.81 - 10.0
    ignoring = _cost(problem, FastPlanner().plan(problem).power_kw, peak_price)
    assert ignoring.peak_kw == pytest.approx(50.0)
    assert ignoring.objective_cny == pytest.approx(50.0)
    power_kw = FastPlanner(peak_price_cny_per_kw=peak_price).plan(problem).power_kw
    shaved = _cost(problem, power_kw, peak_price)
    assert power_kw[0, 2] == pytest.approx(-10.0)
    assert shaved.peak_kw == pytest.approx(40.0)
    assert shaved.objective_cny == pytest.approx(40.0 + losses_cny)
    assert shortfall_kwh(problem, power_kw)[0] == pytest.approx(0.0, abs=1e-9)
    lp = _cost(problem, LpPlanner(peak_price_cny_per_kw=peak_price).plan(problem).power_kw, 1.0)
    assert lp.objective_cny == pytest.approx(shaved.objective_cny, abs=1e-4)


def test_fast_with_the_peak_price_is_close_to_the_lp_on_a_synthetic_day() -> None:
    # The seeded Shenzhen day (1,000 vehicles, 136 steps, binding sites) at 1 CNY/kW:
    # fast ignoring the peak is 6.2% above the LP, with it 1.29% above (eight
    # column-generation iterations).
    problem = shenzhen_day_ahead(1_000)
    lp = _cost(problem, LpPlanner(peak_price_cny_per_kw=1.0).plan(problem).power_kw, 1.0)
    ignoring = _cost(problem, FastPlanner().plan(problem).power_kw, 1.0)
    power_kw = FastPlanner(peak_price_cny_per_kw=1.0).plan(problem).power_kw
    check_guarantees(problem, power_kw)
    with_peak = _cost(problem, power_kw, 1.0)
    assert ignoring.objective_cny > 1.05 * lp.objective_cny
    assert with_peak.objective_cny <= 1.02 * lp.objective_cny
    assert with_peak.peak_kw < ignoring.peak_kw - 500.0


@pytest.mark.parametrize("peak_price", [-1.0, float("nan"), float("inf")])
def test_fast_refuses_a_peak_price_that_is_negative_or_not_finite(peak_price: float) -> None:
    with pytest.raises(ValueError, match="peak_price_cny_per_kw must be a finite number >= 0"):
        FastPlanner(peak_price_cny_per_kw=peak_price)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems())
def test_no_peak_price_plans_exactly_as_before(problem: Problem) -> None:
    def no_iterations(*args: object, **kwargs: object) -> FloatArray:
        raise AssertionError("the price iterations ran without a peak price")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fast, "plan_with_peak_price", no_iterations)
        power_kw = FastPlanner(peak_price_cny_per_kw=0.0).plan(problem).power_kw
    before = make_feasible(problem, FastPlanner().solve_at_prices(problem))
    np.testing.assert_array_equal(power_kw, before)
