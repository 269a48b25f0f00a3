"""The run's Parquet tables as TableWriter writes them: the rows and types of
sessions_table and meter_table, read back as text where they were written as dictionaries,
with the statistics settlement chooses row groups by."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from v2ghub.model.fleet import ChargerKind
from v2ghub.planning import make_planner
from v2ghub.report.outputs import TableWriter, meter_table, sessions_table
from v2ghub.scenarios.build import synthetic_cases
from v2ghub.scenarios.config import ScenarioFile, SimulationSettings, resolve
from v2ghub.sim.engine import Simulator
from v2ghub.sim.metrics import RunResult, evaluate


@pytest.fixture(scope="module")
def results() -> list[RunResult]:
    """Shenzhen, 400 vehicles, two planners (two runs in each file)."""
    settings = SimulationSettings(vehicles_per_city=400, cities=("Shenzhen",))
    case = synthetic_cases(resolve(ScenarioFile(simulation=settings)))[0]
    return [evaluate(Simulator(case, make_planner(name)).run()) for name in ("tou", "v2g-rules")]


@pytest.mark.parametrize("table_of", [sessions_table, meter_table])
def test_written_tables_read_back_as_the_runs_tables(
    table_of: object, results: list[RunResult], tmp_path: Path
) -> None:
    assert callable(table_of)
    path = tmp_path / "table.parquet"
    with TableWriter(path, table_of) as writer:
        for result in results:
            writer.write(result)
    expected = pa.concat_tables([table_of(result) for result in results])
    back = pq.read_table(path)
    assert not any(pa.types.is_dictionary(field.type) for field in expected.schema)
    assert back.schema.equals(expected.schema)
    assert back.equals(expected)
    assert set(back.column("planner").to_pylist()) == {"tou", "v2g-rules"}
    assert len(set(back.column("site_id").to_pylist())) > 1


def test_text_columns_name_each_sessions_site_kind_and_price(
    results: list[RunResult], tmp_path: Path
) -> None:
    result = results[1]
    case = result.run.case
    site_ids = case.sites.site_ids
    path = tmp_path / "sessions.parquet"
    with TableWriter(path, sessions_table) as writer:
        writer.write(result)
    sessions = pq.read_table(path)
    assert sessions.column("site_id").to_pylist() == [
        site_ids[i] for i in case.fleet.site_index.tolist()
    ]
    assert sessions.column("charger_kind").to_pylist() == [
        ChargerKind(k).name.lower() for k in case.fleet.charger_kind.tolist()
    ]
    meter = meter_table(result)
    prices = result.run.prices
    for row in meter.slice(0, 50).to_pylist():
        level = [k.name.lower() for k in prices.level_kind].index(row["period"])
        assert row["import_price_cny_per_kwh"] == str(prices.import_price_cny_per_kwh[level])
        assert row["export_price_cny_per_kwh"] == str(prices.export_price_cny_per_kwh[level])


def test_each_runs_row_group_states_its_city_and_planner(
    results: list[RunResult], tmp_path: Path
) -> None:
    path = tmp_path / "meter.parquet"
    with TableWriter(path, meter_table) as writer:
        for result in results:
            writer.write(result)
    metadata = pq.ParquetFile(path).metadata
    names = [metadata.schema.column(i).name for i in range(metadata.num_columns)]
    stated = []
    for k in range(metadata.num_row_groups):
        group = metadata.row_group(k)
        city = group.column(names.index("city")).statistics
        planner = group.column(names.index("planner")).statistics
        assert city.min == city.max == "Shenzhen"
        assert city.null_count == planner.null_count == 0
        assert planner.min == planner.max
        stated.append(planner.min)
        assert group.column(names.index("session_id")).statistics is None
    assert stated == ["tou", "v2g-rules"]
