"""``/api/v1/run``: the finished twin run that ``serve --show-run FOLDER`` shows beside the
live fleet: the day's curves (kW per step, in the city's local time) per city and planner,
with each planner's headline figures.

The folder is read once with :meth:`v2ghub.twin.result.TwinResult.read` and kept until its
``sessions.parquet`` changes (a run folder is written whole, so that file changing means a
new run).
"""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Depends
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from v2ghub.api.auth import Caller, refuse, require
from v2ghub.api.context import ApiContext, context
from v2ghub.api.models import Money
from v2ghub.errors import InputError
from v2ghub.sim.metrics import RunSummary
from v2ghub.store.api_tokens import Role
from v2ghub.twin.result import TwinResult

router = APIRouter(prefix="/api/v1", tags=["twin run"])
Api = Annotated[ApiContext, Depends(context)]

KW_DECIMALS = 3


class RunPlanner(BaseModel):
    """One planner's day in one city: curves (one value per step) and headline figures."""

    planner: str
    total_load_kw: list[float]
    """Base load plus the fleet's net load."""
    ev_load_kw: list[float]
    """The fleet's net power: charging less discharging (+ charging, - discharging)."""
    charge_kw: list[float]
    discharge_kw: list[float]
    """Discharging power as a positive number."""
    sessions: int
    v2g_sessions: int
    peak_kw: float
    peak_reduction_kw: float
    """Against the run's reference planner (its first)."""
    valley_fill_kw: float
    energy_charged_kwh: float
    energy_discharged_kwh: float
    unmet_energy_kwh: float
    vehicles_short: int
    owner_cost_cny: Money
    site_limit_violations: int
    fallbacks: int


class RunCity(BaseModel):
    city: str
    timezone: str
    times: list[datetime]
    """The start of each step, the city's local time."""
    step_s: int
    base_load_kw: list[float]
    renewable_surplus_kw: list[float]
    planners: list[RunPlanner]


class RunView(BaseModel):
    """A finished twin run, as the dashboard plots it."""

    folder: str
    """The folder's name."""
    date: str | None
    seed: int
    vehicles_per_city: int | None
    sessions_file: str | None
    planners: list[str]
    cities: list[RunCity]
    notes: list[str]


def _kw(values: npt.NDArray[np.float64]) -> list[float]:
    return [float(v) for v in np.round(np.asarray(values, dtype=np.float64), KW_DECIMALS)]


def _planner(run: RunSummary) -> RunPlanner:
    curves, metrics = run.curves, run.metrics
    return RunPlanner(
        planner=run.planner,
        total_load_kw=_kw(curves.total_load_kw),
        ev_load_kw=_kw(curves.ev_load_kw),
        charge_kw=_kw(curves.charge_kw),
        discharge_kw=_kw(curves.discharge_kw),
        sessions=metrics.sessions,
        v2g_sessions=metrics.v2g_sessions,
        peak_kw=metrics.peak_kw,
        peak_reduction_kw=metrics.peak_reduction_kw,
        valley_fill_kw=metrics.valley_fill_kw,
        energy_charged_kwh=metrics.energy_charged_kwh,
        energy_discharged_kwh=metrics.energy_discharged_kwh,
        unmet_energy_kwh=metrics.unmet_energy_kwh,
        vehicles_short=metrics.vehicles_short,
        owner_cost_cny=metrics.owner_cost_cny,
        site_limit_violations=metrics.site_limit_violations,
        fallbacks=metrics.fallbacks,
    )


def _city(result: TwinResult, city: str) -> RunCity:
    runs = [result.run(city, planner) for planner in result.planners]
    first = runs[0]
    zone = ZoneInfo(first.timezone)
    steps = first.curves.base_load_kw.size
    return RunCity(
        city=city,
        timezone=first.timezone,
        times=[first.grid.time_at(k).astimezone(zone) for k in range(steps)],
        step_s=first.grid.step_s,
        base_load_kw=_kw(first.curves.base_load_kw),
        renewable_surplus_kw=_kw(first.curves.renewable_surplus_kw),
        planners=[_planner(run) for run in runs],
    )


@functools.lru_cache(maxsize=4)
def _read(folder: Path, written_ns: int) -> RunView:
    """``folder``'s run (``written_ns``, its ``sessions.parquet``'s time, keys the cache)."""
    result = TwinResult.read(folder)
    return RunView(
        folder=folder.name,
        date=result.info.date,
        seed=result.info.seed,
        vehicles_per_city=result.info.vehicles_per_city,
        sessions_file=result.info.sessions_file,
        planners=list(result.planners),
        cities=[_city(result, city) for city in result.cities],
        notes=list(result.notes),
    )


def run_view(folder: Path) -> RunView:
    """The run written to ``folder`` (``InputError`` if it is not one)."""
    sessions = folder / "sessions.parquet"
    try:
        written_ns = sessions.stat().st_mtime_ns
    except OSError:
        raise InputError(
            "not found: not the output folder of a v2ghub run", file=sessions
        ) from None
    return _read(folder.resolve(), written_ns)


@router.get("/run", response_model=RunView, summary="The twin run shown")
async def get_run(api: Api, caller: Caller) -> RunView:
    """The finished twin run ``serve --show-run FOLDER`` shows: per city the day's base
    load and per planner the fleet's curves (kW per step, + charging) and headline
    figures. 404 when no run is shown. Admin, operator and grid roles."""
    require(caller, Role.ADMIN, Role.OPERATOR, Role.GRID)
    folder = api.run_folder
    if folder is None:
        raise refuse(404, "no twin run is shown (serve --show-run FOLDER)")
    try:
        return await run_in_threadpool(run_view, folder)
    except InputError as error:
        raise refuse(
            503, f"the run folder {folder.name!r} cannot be read: {error.problem}"
        ) from None
