"""``/api/v1/history``: measured against planned power per site and interval.

The range ``[start, end)`` is cut every ``interval_s`` seconds from ``start`` (the last
interval ends at ``end``). Per site and interval, ``measured_kw`` and ``planned_kw`` are
the time-weighted means of what the control loop recorded at its instants: the site's
metered power then, and the sum of its setpoints (:mod:`v2ghub.store.site_power` states
the rule). Null where nothing was recorded (before the loop ran, an interval in the future,
a gap while the server was down). Values are kW to the watt, + charging.

Reads are bounded so that one request stays cheap: at most :data:`MAX_RANGE` and
:data:`MAX_INTERVALS` intervals of at least :data:`MIN_INTERVAL_S` seconds.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime
from starlette.concurrency import run_in_threadpool

from v2ghub.api.auth import Caller, refuse, require, require_site
from v2ghub.api.context import ApiContext, context
from v2ghub.api.models import History, SiteHistory
from v2ghub.store.api_tokens import Role
from v2ghub.store.site_power import HOLD, Intervals, SiteSeries, interval_means

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


def history_out(api: ApiContext, cut: Intervals, series: list[SiteSeries]) -> History:
    edges_s = cut.edges_s()
    now_s = (api.now() - cut.start).total_seconds()
    hold_s = HOLD.total_seconds()

    def kw(values: list[float]) -> list[float | None]:
        return [None if math.isnan(value) else round(value, KW_DECIMALS) for value in values]

    sites = [
        SiteHistory(
            site_id=site.site_id,
            measured_kw=kw(
                interval_means(
                    site.at_s, site.measured_kw, edges_s=edges_s, now_s=now_s, hold_s=hold_s
                ).tolist()
            ),
            planned_kw=kw(
                interval_means(
                    site.at_s, site.planned_kw, edges_s=edges_s, now_s=now_s, hold_s=hold_s
                ).tolist()
            ),
        )
        for site in series
    ]
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

    def read() -> History:
        if site_id is not None and not any(
            station.site_id == site_id for station in api.store.stations()
        ):
            raise refuse(404, f"no station is at site {site_id!r}", "site_id")
        log = api.status.power_log if api.status is not None else None
        if log is not None and log.covers(start - HOLD):  # the recent hours: from memory
            series = log.series(start=start, end=end, origin=start, site_ids=visible)
        else:
            series = api.store.site_power(start=start, end=end, origin=start, site_ids=visible)
        return history_out(api, cut, series)

    return await run_in_threadpool(read)
