"""The feeders' batched AC power flow against pandapower's own Newton-Raphson, run for real,
and how a city's sites sit on feeders (:mod:`v2ghub.network`)."""

from __future__ import annotations

import copy
import os
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from v2ghub.errors import InputError
from v2ghub.model.sites import SiteLimits
from v2ghub.network.feeders import (
    BASE_PEAK_TRAFO_LOADING,
    FEEDER_KINDS,
    attach_sites,
    build_network,
    check_network_file,
    feeder_day,
)
from v2ghub.network.pandapower_import import pandapower
from v2ghub.network.power_flow import FeederModel, bus_powers, feeder_model, solve_day

pp = pandapower()
VM_TOLERANCE_PU = 1e-8
LOADING_TOLERANCE = 1e-6  # of the rating


@cache
def _network(kind: str) -> Any:
    return build_network(kind, seed=3)


@cache
def _model(kind: str) -> FeederModel:
    return feeder_model(copy.deepcopy(_network(kind)), name=kind)


def _pandapower(net: Any, load_mw: np.ndarray, load_mvar: np.ndarray) -> Any:
    """pandapower's own power flow with the loads set to these powers."""
    solved = copy.deepcopy(net)
    solved.load["p_mw"] = load_mw
    solved.load["q_mvar"] = load_mvar
    solved.load["scaling"] = 1.0
    pp.runpp(
        solved,
        calculate_voltage_angles=True,
        trafo_model="t",
        trafo_loading="current",
        tolerance_mva=1e-11,
        numba=False,
    )
    return solved


def _assert_same(model: FeederModel, ours: Any, step: int, theirs: Any) -> None:
    vm = np.array([ours.vm_pu[model.bus_of[int(b)], step] for b in theirs.bus.index])
    assert np.max(np.abs(vm - theirs.res_bus.vm_pu.to_numpy())) < VM_TOLERANCE_PU
    lines = ours.line_loading[:, step] * 100
    assert np.max(np.abs(lines - theirs.res_line.loading_percent.to_numpy())) < (
        LOADING_TOLERANCE * 100
    )
    trafos = ours.trafo_loading[:, step] * 100
    assert np.max(np.abs(trafos - theirs.res_trafo.loading_percent.to_numpy())) < (
        LOADING_TOLERANCE * 100
    )


@pytest.mark.parametrize("kind", list(FEEDER_KINDS))
def test_a_day_in_one_batch_is_pandapowers_power_flow_at_every_step(kind: str) -> None:
    model = _model(kind)
    scales = np.array([0.2, 0.7, 1.0, 1.4])
    bus_mw, bus_mvar = bus_powers(model, scales)
    ours = solve_day(model, bus_mw, bus_mvar)
    assert ours.converged.all()
    for step, scale in enumerate(scales):
        theirs = _pandapower(_network(kind), model.load_mw * scale, model.load_mvar * scale)
        _assert_same(model, ours, step, theirs)
    # More load, lower voltages and higher loadings, step by step.
    assert np.all(np.diff(np.nanmin(ours.vm_pu, axis=0)) < 0)
    assert np.all(np.diff(np.nanmax(ours.trafo_loading, axis=0)) > 0)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.floats(min_value=0.0, max_value=0.06, allow_nan=False), min_size=15, max_size=15),
    st.floats(min_value=0.0, max_value=0.5),
)
def test_any_loads_of_the_cigre_feeder_match_pandapower(
    loads_mw: list[float], power_factor_q: float
) -> None:
    model = _model("cigre-lv")
    load_mw = np.array(loads_mw)
    load_mvar = load_mw * power_factor_q
    bus_mw = np.zeros((model.n_buses, 1))
    bus_mvar = np.zeros((model.n_buses, 1))
    np.add.at(bus_mw[:, 0], model.load_bus, load_mw)
    np.add.at(bus_mvar[:, 0], model.load_bus, load_mvar)
    ours = solve_day(model, bus_mw, bus_mvar)
    assert ours.converged.all()
    _assert_same(model, ours, 0, _pandapower(_network("cigre-lv"), load_mw, load_mvar))


def test_a_load_beyond_what_the_feeder_can_carry_is_no_solution_never_a_number() -> None:
    model = _model("kerber-dorf")
    bus_mw, bus_mvar = bus_powers(model, np.array([1.0, 60.0]))
    flow = solve_day(model, bus_mw, bus_mvar)
    assert flow.converged.tolist() == [True, False]
    assert np.isnan(flow.vm_pu[:, 1]).all()
    assert np.isnan(flow.trafo_loading[:, 1]).all()
    assert np.isfinite(flow.vm_pu[:, 0]).all()


def _compounds(count: int, workplaces: int = 0) -> SiteLimits:
    ids = tuple(f"Town-home-transformer-{k}" for k in range(count)) + tuple(
        f"Town-workplace-{k}" for k in range(workplaces)
    )
    limits = np.full(len(ids), 350.0)
    return SiteLimits(ids, limits, limits.copy())


def test_each_feeder_serves_one_compound_on_its_households() -> None:
    sites = _compounds(5, workplaces=2)
    feeders = attach_sites(sites, 4, seed=3, city="Town")
    assert [f.kind for f in feeders] == [
        "kerber-vorstadt",
        "kerber-dorf",
        "cigre-lv",
        "kerber-vorstadt",
    ]
    assert [f.site_rows.tolist() for f in feeders] == [[0], [1], [2], [3]]
    assert [f.name for f in feeders] == [f"Town-feeder-{k}" for k in range(4)]
    for feeder in feeders:
        # Every kW of a site lands somewhere on the feeder, as MW.
        assert feeder.site_to_bus_mw.sum(axis=0).A1.tolist() == pytest.approx([1e-3])
    cigre = feeders[2]
    spread = cigre.site_to_bus_mw[:, 0].toarray()[:, 0]
    loads = _network("cigre-lv").load
    homes = loads[loads.name.str.startswith("Load R")]
    residential = {cigre.model.bus_of[int(b)] for b in homes.bus}
    assert set(np.flatnonzero(spread)) == residential  # the R loads, never the businesses
    assert len(residential) == 6
    # More feeders asked for than compounds: one per compound.
    assert len(attach_sites(_compounds(2), 5, seed=3)) == 2


def test_the_loads_alone_fill_the_transformer_to_its_planned_share_at_the_peak() -> None:
    feeders = attach_sites(_compounds(3), 3, seed=3)
    steps = 3
    for feeder in feeders:
        quiet = np.zeros((3, steps))
        day = feeder_day(feeder, quiet, np.array([0.5, 1.0, 0.8]))
        assert day.max_trafo_loading[1] == pytest.approx(BASE_PEAK_TRAFO_LOADING, abs=5e-3)
        assert not day.overloaded.any()
        assert not day.voltage_out.any()


def test_charging_on_a_feeder_is_pandapowers_flow_with_the_households_loads_raised() -> None:
    (feeder,) = attach_sites(_compounds(1), 1, seed=3)
    model = feeder.model
    charging_kw = 400.0
    site_power = np.array([[0.0, charging_kw]])
    day = feeder_day(feeder, site_power, np.array([1.0, 1.0]))
    rated = model.load_mw
    load_mw = rated * feeder.base_scale + charging_kw / 1e3 * rated / rated.sum()
    theirs = _pandapower(_network("kerber-vorstadt"), load_mw, model.load_mvar * feeder.base_scale)
    assert day.max_trafo_loading[1] == pytest.approx(
        theirs.res_trafo.loading_percent.max() / 100, abs=LOADING_TOLERANCE
    )
    assert day.min_vm_pu[1] == pytest.approx(theirs.res_bus.vm_pu.min(), abs=VM_TOLERANCE_PU)
    assert day.max_trafo_loading[1] > 1.0  # 400 kW more on a 630 kVA transformer at 60%
    assert day.overloaded.tolist() == [False, True]


def test_the_same_seed_builds_the_same_feeder() -> None:
    first = build_network("kerber-vorstadt", seed=8)
    again = build_network("kerber-vorstadt", seed=8)
    assert first.line.std_type.tolist() == again.line.std_type.tolist()


def test_feeders_from_bad_input_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown feeder kind 'ring'"):
        build_network("ring", seed=1)
    not_a_network = tmp_path / "net.json"
    not_a_network.write_text('{"hello": 1}')
    with pytest.raises(InputError, match=r"net\.json.*cannot read the pandapower network"):
        build_network("file", seed=1, path=not_a_network)
    with pytest.raises(InputError, match="at least 0"):
        attach_sites(_compounds(1), -1, seed=1)
    # Rooftop PV as a static generator: the batched model has loads only, so it refuses.
    with_pv = copy.deepcopy(_network("cigre-lv"))
    pp.create_sgen(with_pv, int(with_pv.load.bus.iloc[0]), p_mw=0.01)
    with pytest.raises(InputError, match=r"found 1 external grids and 1 generators in service"):
        feeder_model(with_pv, name="pv")


def test_a_good_network_file_is_checked_once_until_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import v2ghub.network.feeders as feeders_module  # noqa: PLC0415

    network = tmp_path / "feeder.json"
    pp.to_json(_network("cigre-lv"), str(network))
    models = []
    real_model = feeder_model

    def counted(net: Any, *, name: str) -> FeederModel:
        models.append(name)
        return real_model(net, name=name)

    monkeypatch.setattr(feeders_module, "feeder_model", counted)
    check_network_file(network)
    check_network_file(network)  # the command line checks, then the run: one build
    assert models == ["network"]
    stamp = network.stat().st_mtime_ns
    os.utime(network, ns=(stamp + 10**9, stamp + 10**9))
    check_network_file(network)
    assert models == ["network", "network"]


def test_pandapower_leaves_pyarrows_time_zones_alone() -> None:
    """pandapower's import (through pandera) sets PYARROW_IGNORE_TIMEZONE, with which
    pyarrow takes 09:00 in Shanghai for 09:00 UTC: v2ghub's import of it takes it back."""
    pandapower()
    assert "PYARROW_IGNORE_TIMEZONE" not in os.environ
    nine = datetime(2026, 7, 1, 9, tzinfo=ZoneInfo("Asia/Shanghai"))
    utc = pa.array([nine], type=pa.timestamp("us", tz="UTC"))
    assert utc[0].as_py() == datetime(2026, 7, 1, 1, tzinfo=ZoneInfo("UTC"))
