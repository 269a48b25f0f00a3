"""``/api/v1/history``: measured against planned power per site and interval.

The range ``[start, end)`` is cut every ``interval_s`` seconds from ``start`` (the last
interval ends at ``end``). Per site and interval, ``measured_kw`` is the sum over the
site's meters (station, EVSE) of the mean of their ``power_kw`` readings in the interval
(null where none had one), ``planned_kw`` the mean over the interval's elapsed part of the
setpoints in force (0 for an interval wholly in the future); the rules are stated in
:mod:`v2ghub.store.api_reads`. Values are kW to the watt, + charging.

Reads are bounded so that one request stays cheap: at most :data:`MAX_RANGE` and
:data:`MAX_INTERVALS` intervals of at least :data:`MIN_INTERVAL_S` seconds.
"""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime
from starlette.concurrency import run_in_threadpool

from v2ghub.api.auth import Caller, refuse, require, require_site
from v2ghub.api.context import ApiContext, context
from v2ghub.api.models import History, SiteHistory
from v2ghub.store.api_reads import Intervals, SitePower
from v2ghub.store.api_tokens import Role

router = APIRouter(prefix="/api/v1", tags=["history"])

Api = Annotated[ApiContext, Depends(context)]

MAX_RANGE = timedelta(days=7)
MAX_INTERVALS = 2000
MIN_INTERVAL_S = 60
DEFAULT_INTERVAL_S = 900
KW_DECIMALS = 3
"""Powers are rounded to the watt."""


def intervals(start: AwareDatetime, end: AwareDatetime, interval_s: int) -> Intervals:
    """The checked range: 422 naming ``end`` or ``interval_s`` when it is too long."""
    if end <= start:
        raise refuse(422, f"end ({end.isoformat()}) must be after start", "end")
    if end - start > MAX_RANGE:
        raise refuse(422, f"end: the range may span at most {MAX_RANGE.days} days", "end")
    cut = Intervals(start=start, end=end, interval_s=interval_s)
    if cut.count > MAX_INTERVALS:
        raise refuse(
            422,
            f"interval_s: {cut.count} intervals of {interval_s} s; at most {MAX_INTERVALS} "
            "(choose a longer interval or a shorter range)",
            "interval_s",
        )
    return cut


def history_out(
    api: ApiContext, cut: Intervals, measured: SitePower, planned: SitePower
) -> History:
    sites = []
    for site_id in sorted(set(measured.site_ids) | set(planned.site_ids)):
        measured_kw = measured.row(site_id, missing=math.nan).tolist()
        planned_kw = planned.row(site_id, missing=0.0).tolist()
        sites.append(
            SiteHistory(
                site_id=site_id,
                measured_kw=[
                    None if math.isnan(value) else round(value, KW_DECIMALS)
                    for value in measured_kw
                ],
                planned_kw=[round(value, KW_DECIMALS) for value in planned_kw],
            )
        )
    return History(
        start=api.local(cut.start),
        end=api.local(cut.end),
        interval_s=cut.interval_s,
        times=[api.local(edge) for edge in cut.edges()[:-1]],
        sites=sites,
    )


@router.get("/history", response_model=History, summary="Measured and planned power")
async def get_history(
    *,
    api: Api,
    caller: Caller,
    start: Annotated[AwareDatetime, Query(description="ISO 8601 with a UTC offset")],
    end: Annotated[AwareDatetime, Query(description="after start, at most 7 days later")],
    interval_s: Annotated[
        int, Query(ge=MIN_INTERVAL_S, description="interval length, s")
    ] = DEFAULT_INTERVAL_S,
    site_id: Annotated[str | None, Query(description="one site only")] = None,
) -> History:
    """Measured and planned power (kW, + charging) per site and interval. Admin and grid
    see every site; an operator its own; owners are refused."""
    require(caller, Role.ADMIN, Role.GRID, Role.OPERATOR)
    visible = caller.site_filter()
    if site_id is not None:
        require_site(caller, site_id)
        visible = frozenset({site_id})
    cut = intervals(start, end, interval_s)
    # Two reads at once, each in a transaction of its own: the history comes in the time
    # of the longer one.
    measured, planned = await asyncio.gather(
        run_in_threadpool(api.store.measured_power, cut, site_ids=visible),
        run_in_threadpool(api.store.planned_power, cut, now=api.now(), site_ids=visible),
    )
    if site_id is not None and not measured.site_ids:
        raise refuse(404, f"no station is at site {site_id!r}", "site_id")
    return history_out(api, cut, measured, planned)
