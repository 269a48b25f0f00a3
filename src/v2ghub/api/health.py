"""``/health`` (is the store reachable, is the control loop alive, how old is the last
plan) and ``/metrics`` (Prometheus text format). Neither needs a token: they say nothing
about any station, vehicle or owner."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from v2ghub.api.context import ApiContext, context
from v2ghub.api.models import Health

router = APIRouter(tags=["health"])
Api = Annotated[ApiContext, Depends(context)]

ALIVE_INTERVALS = 3.0
"""The loop counts as alive if it finished an instant within this many control intervals
(wall time, at least 10 s)."""
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def _store_reachable(api: ApiContext) -> bool:
    try:
        with api.store.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError:
        return False
    return True


def health(api: ApiContext) -> Health:
    reachable = _store_reachable(api)
    status = api.status
    age_s = None
    alive = status is None  # showing a run folder only: no loop to be alive
    if status is not None:
        since_s = status.seconds_since_instant()
        allowed_s = max(10.0, ALIVE_INTERVALS * api.clock.seconds(api.control_interval_s))
        alive = since_s is not None and since_s <= allowed_s
        if status.latest is not None:
            age_s = (api.now() - status.latest.at).total_seconds()
    return Health(
        status="ok" if reachable and alive else "degraded",
        store_reachable=reachable,
        control_loop_alive=alive,
        last_plan_age_s=age_s,
        connected_stations=len(api.connected()),
    )


@router.get("/health", response_model=Health, summary="Health")
async def get_health(api: Api) -> JSONResponse:
    """200 when the store answers and the control loop finished an instant lately,
    503 otherwise (with the same body)."""
    body = await run_in_threadpool(health, api)
    return JSONResponse(
        body.model_dump(mode="json"), status_code=200 if body.status == "ok" else 503
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def get_metrics(api: Api) -> Response:
    """Connected stations, OCPP messages and their handling time, setpoints by answer, plans,
    fallbacks, plan time, API request time (Prometheus text format 0.0.4)."""
    return Response(api.metrics.text(), media_type=PROMETHEUS_TEXT)
