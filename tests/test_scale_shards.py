"""Shard blocks, the coordination's equations and the exact merge, without Ray: shards are
run here in this process (:func:`v2ghub.scale.shard_run.run_shard`), as a worker runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2ghub import Scenario, Twin
from v2ghub.errors import InputError
from v2ghub.model.fleet import Fleet
from v2ghub.scale.coordination import (
    damped_loads,
    jacobi_contexts,
    proportional_context,
    rounds_for,
)
from v2ghub.scale.merge import merge_pieces
from v2ghub.scale.parts import join_parts
from v2ghub.scale.shard_run import ShardTask, run_shard
from v2ghub.scenarios.build import block_case, city_signals, iter_synthetic_cases
from v2ghub.scenarios.shards import (
    block_rng,
    block_sizes,
    city_fleet,
    city_layout,
    generate_block,
)
from v2ghub.scenarios.synthetic import generate_fleet
from v2ghub.sim.runner import with_peak_reduction
from v2ghub.twin.result import TwinResult

CITIES = ("Shenzhen", "Kunming")
BLOCK = 120


def _settings(vehicles: int, cities: tuple[str, ...] = CITIES) -> Any:
    return Scenario.pilot_cities(cities=list(cities), vehicles_per_city=vehicles).settings


def _same_fleet(a: Fleet, b: Fleet) -> None:
    for name in Fleet.__dataclass_fields__:
        left, right = getattr(a, name), getattr(b, name)
        if name == "session_ids":
            continue
        np.testing.assert_array_equal(left, right, err_msg=name)


@given(
    st.integers(min_value=1, max_value=10**7),
    st.integers(min_value=100, max_value=50_000),
)
def test_blocks_add_up_to_the_city_and_only_the_last_is_short(n: int, block: int) -> None:
    sizes = block_sizes(n, block_vehicles=block)
    assert sum(sizes) == n
    assert all(size == block for size in sizes[:-1])
    assert 1 <= sizes[-1] <= block


def test_block_zero_is_the_fleet_drawn_before_blocks_existed() -> None:
    settings = _settings(300)
    for number, city in enumerate(CITIES):
        old = generate_fleet(
            n_vehicles=300,
            city=city,
            day=settings.simulation.date,
            timezone=settings.city_data[city].timezone,
            mix=settings.fleet,
            models=settings.vehicle_models,
            rng=np.random.default_rng([settings.simulation.seed, number]),
        )
        new = city_fleet(settings, city_number=number)
        _same_fleet(old.fleet, new.fleet)
        assert old.sites.site_ids == new.sites.site_ids
        np.testing.assert_array_equal(old.sites.import_limit_kw, new.sites.import_limit_kw)


def test_block_streams_differ_and_block_zero_keeps_the_city_stream() -> None:
    first = block_rng(7, 2, 0).random(4)
    np.testing.assert_array_equal(first, np.random.default_rng([7, 2]).random(4))
    assert not np.array_equal(block_rng(7, 2, 1).random(4), block_rng(7, 2, 2).random(4))


def test_a_site_never_spans_two_blocks_and_site_ids_are_unique() -> None:
    settings = _settings(500, ("Shenzhen",))
    whole = city_fleet(settings, city_number=0, block_vehicles=BLOCK)
    sizes = block_sizes(500, block_vehicles=BLOCK)
    block_of_session = np.repeat(np.arange(len(sizes)), sizes)
    blocks_per_site = [
        set(block_of_session[whole.fleet.site_index == site].tolist())
        for site in range(whole.sites.n_sites)
    ]
    assert all(len(blocks) == 1 for blocks in blocks_per_site if blocks)
    assert len(set(whole.sites.site_ids)) == whole.sites.n_sites
    assert any(site.startswith("Shenzhen-block3-") for site in whole.sites.site_ids)


def test_the_city_is_its_blocks_one_after_the_other_with_city_wide_ids() -> None:
    settings = _settings(500, ("Shenzhen",))
    whole = city_fleet(settings, city_number=0, block_vehicles=BLOCK)
    start = first_site = 0
    for k, size in enumerate(block_sizes(500, block_vehicles=BLOCK)):
        block = generate_block(
            settings, city_number=0, block=k, numbered=True, block_vehicles=BLOCK
        )
        rows = whole.fleet.take(np.arange(start, start + size))
        # The city's site numbers run on from the previous block's.
        _same_fleet(block.fleet, replace(rows, site_index=rows.site_index - first_site))
        n_sites = block.sites.n_sites
        assert whole.sites.site_ids[first_site : first_site + n_sites] == block.sites.site_ids
        assert block.fleet.session_ids is not None
        assert block.fleet.session_ids[0] == f"Shenzhen-{start}"
        assert block.fleet.session_ids[-1] == f"Shenzhen-{start + size - 1}"
        start += size
        first_site += n_sites


def test_a_block_case_shares_the_city_grid_and_grid_context() -> None:
    settings = _settings(500, ("Shenzhen",))
    [whole] = iter_synthetic_cases(settings, block_vehicles=BLOCK)
    layout = city_layout(settings, city_number=0, block_vehicles=BLOCK)
    assert layout.grid == whole.grid
    assert layout.n_vehicles == 500
    for k in range(layout.n_blocks):
        case = block_case(settings, layout, block=k)
        assert case.grid == whole.grid
        np.testing.assert_array_equal(case.signals.base_load_kw, whole.signals.base_load_kw)
    signals = city_signals(settings, layout)
    np.testing.assert_array_equal(signals.base_load_kw, whole.signals.base_load_kw)


def test_proportional_contexts_add_up_to_the_base_load() -> None:
    base = np.array([100.0, 250.0, 80.0])
    parts = [proportional_context(base, shard_sessions=n, city_sessions=10) for n in (4, 4, 2)]
    np.testing.assert_allclose(np.sum(parts, axis=0), base)
    np.testing.assert_array_equal(
        proportional_context(base, shard_sessions=10, city_sessions=10), base
    )


def test_jacobi_contexts_are_base_plus_the_others_damped_loads() -> None:
    base = np.array([10.0, 20.0])
    first = damped_loads(None, [np.array([1.0, 2.0]), np.array([3.0, 5.0])])
    second = damped_loads(first, [np.array([3.0, 0.0]), np.array([1.0, 1.0])], damping=0.5)
    np.testing.assert_allclose(second[0], [2.0, 1.0])
    np.testing.assert_allclose(second[1], [2.0, 3.0])
    contexts = jacobi_contexts(base, second)
    np.testing.assert_allclose(contexts[0], [12.0, 23.0])
    np.testing.assert_allclose(contexts[1], [12.0, 21.0])
    with pytest.raises(ValueError, match=r"damping must lie in \(0, 1\]"):
        damped_loads(first, first, damping=0.0)


def test_only_a_peak_priced_city_of_several_shards_takes_rounds() -> None:
    assert rounds_for(n_shards=4, prices_peak=False, jacobi_rounds=2) == 1
    assert rounds_for(n_shards=1, prices_peak=True, jacobi_rounds=2) == 1
    assert rounds_for(n_shards=4, prices_peak=True, jacobi_rounds=2) == 3
    assert rounds_for(n_shards=4, prices_peak=True) == 1  # round 0 alone by default


def _in_process(
    scenario: Scenario, planners: list[str], folder: Path, block: int
) -> tuple[list[Any], list[tuple[int, int, int]]]:
    """Every city, planner and block run here, merged as the Ray driver merges them."""
    settings = scenario.settings
    summaries, keys = [], []
    for number in range(len(settings.simulation.cities)):
        layout = city_layout(settings, city_number=number, block_vehicles=block)
        signals = city_signals(settings, layout)
        for p, planner in enumerate(planners):
            pieces = [
                run_shard(
                    settings,
                    ShardTask(
                        layout=layout,
                        block=k,
                        planner=planner,
                        planner_number=p,
                        control_steps=settings.simulation.control_steps,
                        context_kw=proportional_context(
                            signals.base_load_kw,
                            shard_sessions=n,
                            city_sessions=layout.n_vehicles,
                        ),
                        coordination_round=0,
                        final=True,
                        folder=folder,
                    ),
                )
                for k, n in enumerate(layout.block_sessions)
            ]
            summaries.append(
                merge_pieces(
                    pieces[::-1],  # any order: the merge sorts by block
                    grid=layout.grid,
                    timezone=settings.city_data[layout.city].timezone,
                    signals=signals,
                )
            )
            keys += [(number, p, k) for k in range(layout.n_blocks)]
    return summaries, keys


def _without_seconds(document: dict[str, Any]) -> str:
    for planner in document["planners"].values():
        for figures in [*planner["cities"].values(), planner["total"]]:
            for key in [k for k in figures if k.endswith("_seconds")]:
                del figures[key]
    return json.dumps(document, sort_keys=True, default=str)


RULES = ["uncontrolled", "tou", "v2g-rules"]


def test_one_shard_a_city_merges_to_the_unsharded_summary_exactly(tmp_path: Path) -> None:
    scenario = Scenario.pilot_cities(cities=list(CITIES), vehicles_per_city=150)
    whole = Twin(scenario, planners=RULES).run()
    summaries, keys = _in_process(scenario, RULES, tmp_path, block=1000)
    merged = TwinResult(
        runs=tuple(with_peak_reduction(summaries, RULES[0])),
        info=whole.info,
        notes=whole.notes,
        folder=tmp_path,
    )
    assert _without_seconds(merged.summary_document()) == _without_seconds(whole.summary_document())
    for ours, theirs in zip(merged.runs, whole.runs, strict=True):
        np.testing.assert_array_equal(ours.curves.ev_load_kw, theirs.curves.ev_load_kw)
        np.testing.assert_array_equal(ours.mean_soc, theirs.mean_soc)
        np.testing.assert_array_equal(ours.bill_sample_fen, theirs.bill_sample_fen)
        np.testing.assert_array_equal(ours.soc_sample, theirs.soc_sample)
        assert [h.raise_kw.tolist() for h in ours.envelope] == [
            h.raise_kw.tolist() for h in theirs.envelope
        ]
    join_parts(tmp_path, keys, metadata=merged.saved_metadata())
    assert pq.read_table(tmp_path / "sessions.parquet").equals(whole.sessions())
    assert pq.read_table(tmp_path / "meter.parquet").equals(whole.meter())
    assert not (tmp_path / "parts").exists()
    assert TwinResult.read(tmp_path).runs[0].metrics == merged.runs[0].metrics


def test_many_shards_merge_to_the_unsharded_run_of_the_same_sessions(tmp_path: Path) -> None:
    scenario = Scenario.pilot_cities(cities=list(CITIES), vehicles_per_city=500)
    whole = Twin(scenario, planners=RULES, block_vehicles=BLOCK).run()
    summaries, keys = _in_process(scenario, RULES, tmp_path, block=BLOCK)
    join_parts(tmp_path, keys)
    # Rule planners plan each vehicle alone: the sessions' outcomes are the same.
    assert pq.read_table(tmp_path / "sessions.parquet").equals(whole.sessions())
    assert pq.read_table(tmp_path / "meter.parquet").equals(whole.meter())
    for ours, theirs in zip(summaries, whole.runs, strict=True):
        a, b = ours.metrics, theirs.metrics
        # Money and counts are exact; float sums differ only in the order of addition.
        assert (a.owner_cost_cny, a.degradation_cost_cny, a.v2g_payment_cny) == (
            b.owner_cost_cny,
            b.degradation_cost_cny,
            b.v2g_payment_cny,
        )
        assert (a.sessions, a.v2g_sessions, a.vehicles_short, a.v2g_owners) == (
            b.sessions,
            b.v2g_sessions,
            b.vehicles_short,
            b.v2g_owners,
        )
        assert ours.total_bill_fen == theirs.total_bill_fen
        for name in ("peak_kw", "valley_kw", "energy_charged_kwh", "valley_share"):
            assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-12), name
        np.testing.assert_allclose(ours.curves.ev_load_kw, theirs.curves.ev_load_kw, atol=1e-9)
        np.testing.assert_allclose(ours.mean_soc, theirs.mean_soc, rtol=1e-12)
        assert ours.bill_sample_fen.size == theirs.bill_sample_fen.size == 500
        assert sum(h.plugged for h in ours.envelope) == sum(h.plugged for h in theirs.envelope)
    assert whole.metrics("Shenzhen", "tou").owner_cost_cny > Decimal(0)


@pytest.mark.parametrize(
    ("options", "refused"),
    [
        ({"market": True}, "--market"),
        ({"regulation": True}, "--regulation"),
        ({"demand_response": True}, "--demand-response"),
    ],
)
def test_sharding_refuses_what_it_does_not_cover_yet(options: dict[str, Any], refused: str) -> None:
    scenario = Scenario.pilot_cities(cities=["Shenzhen"], vehicles_per_city=40)
    twin = Twin(scenario, planners=["tou"], workers=2, **options)
    with pytest.raises(InputError, match=f"--workers does not yet shard {refused}"):
        twin.check()


def test_sharding_refuses_the_valley_rule_planners_and_bad_options() -> None:
    scenario = Scenario.pilot_cities(cities=["Shenzhen"], vehicles_per_city=40)
    with pytest.raises(InputError, match=r"does not yet shard --pilot-rules"):
        Twin(scenario, planners=["mpc+rules"], ray_address="auto").check()
    with pytest.raises(InputError, match="workers must be at least 1, got 0"):
        Twin(scenario, workers=0)
    with pytest.raises(InputError, match="block_vehicles must be at least 1"):
        Twin(scenario, block_vehicles=0)


def test_a_plain_run_never_imports_ray() -> None:
    code = (
        "import sys\n"
        "from v2ghub.cli import main\n"
        "from v2ghub import Scenario, Twin\n"
        "Twin(Scenario.pilot_cities(cities=['Shenzhen'], vehicles_per_city=20),"
        " planners=['tou']).run()\n"
        "print('ray' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"


def test_the_command_line_takes_workers_and_refuses_zero(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from v2ghub.cli import build_parser  # noqa: PLC0415

    args = build_parser().parse_args(["simulate", "--workers", "3", "--ray-address", "auto"])
    assert (args.workers, args.ray_address) == (3, "auto")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--workers", "0"])
    assert "--workers: must be at least 1, got 0" in capsys.readouterr().err
