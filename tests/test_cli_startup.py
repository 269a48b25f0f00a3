"""The command line starts light: its parser is built from :mod:`v2ghub.choices` and the
parser modules, and those agree with the registries they stand in for."""

from __future__ import annotations

import subprocess
import sys

from v2ghub.choices import PLAN_PLANNERS, PLANNER_NAMES, shipped_city_names
from v2ghub.planning import PLANNERS
from v2ghub.scenarios.catalog import pilot_cities

HEAVY = (
    "fastapi",
    "sqlalchemy",
    "ocpp",
    "openleadr",
    "scipy",
    "numba",
    "matplotlib",
    "numpy",
    "pydantic",
    "pyarrow",
)


def test_the_planner_names_are_the_registrys() -> None:
    assert tuple(PLANNERS) == PLANNER_NAMES


def test_plan_offers_the_day_ahead_planners() -> None:
    assert PLAN_PLANNERS == ("lp", "uncontrolled", "tou", "v2g-rules", "fast")


def test_the_shipped_city_names_are_the_catalogs() -> None:
    assert shipped_city_names() == tuple(pilot_cities())


def test_the_parser_loads_no_heavy_library() -> None:
    code = (
        "import sys, v2ghub.cli; v2ghub.cli.build_parser(); "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
