"""The compiled feasibility cut against a plain numpy rendering of the same rules."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from v2ghub.model import Problem
from v2ghub.planning.limits import fit_site_limits
from v2ghub.planning.stepping import make_feasible, plugged_at

from .strategies import problems

FloatArray = npt.NDArray[np.float64]


def _reference(problem: Problem, power_kw: FloatArray) -> FloatArray:
    """Step by step with whole-array numpy operations: the rules, written plainly."""
    out = np.zeros_like(power_kw)
    energy = problem.energy_kwh.copy()
    dt_h = problem.dt_h
    for step in range(power_kw.shape[1]):
        power = np.where(plugged_at(problem, step), power_kw[:, step], 0.0)
        power = np.clip(power, -problem.max_discharge_kw, problem.max_charge_kw)
        room = np.maximum(problem.energy_max_kwh - energy, 0.0)
        available = np.maximum(energy - problem.energy_min_kwh, 0.0)
        charge = np.minimum(np.maximum(power, 0.0), room / (problem.charge_efficiency * dt_h))
        discharge = np.minimum(
            np.maximum(-power, 0.0), available * problem.discharge_efficiency / dt_h
        )
        charge, discharge = fit_site_limits(
            charge_kw=charge,
            discharge_kw=discharge,
            must_charge_kw=charge,
            site_index=problem.site_index,
            import_limit_kw=problem.import_limit_kw,
            export_limit_kw=problem.export_limit_kw,
        )
        energy += charge * problem.charge_efficiency * dt_h
        energy -= discharge * dt_h / problem.discharge_efficiency
        out[:, step] = charge - discharge
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems(), data=st.data())
def test_compiled_cut_matches_the_rules(problem: Problem, data: st.DataObject) -> None:
    shape = (problem.n_vehicles, problem.grid.length)
    wild = st.floats(-80.0, 80.0, allow_nan=False)
    power = np.array(
        data.draw(st.lists(wild, min_size=shape[0] * shape[1], max_size=shape[0] * shape[1]))
    )
    power = power.reshape(shape)
    np.testing.assert_allclose(make_feasible(problem, power), _reference(problem, power), atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(problem=problems())
def test_a_feasible_plan_is_left_alone(problem: Problem) -> None:
    first = make_feasible(problem, np.full((problem.n_vehicles, problem.grid.length), 5.0))
    np.testing.assert_allclose(make_feasible(problem, first), first, atol=1e-9)
