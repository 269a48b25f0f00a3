"""``/api/v1/grid/regulation``: the regulation signal and commitments from the grid, and
what the fleet does with them.

- ``POST .../signal`` (grid, admin): signal samples, recorded in the store all or none
  (``source="api:TOKEN"``) and then handed to the running server's broadcaster
  (:class:`v2ghub.live.regulation_signal.SignalBroadcaster`), on the control loop's event
  loop (this API runs on a thread and loop of its own).
- ``.../commitments`` (grid, admin write; operators read): commitments made, listed and
  cancelled; every write is recorded in the event log with the token's name, and the
  control loop is asked to plan again, so it follows a commitment in force from its next
  instant.
- ``GET`` the state (:mod:`v2ghub.api.regulation_view`) and ``.../response``, the signal
  against the fleet's measured response for a plot.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from v2ghub.api.auth import Principal, allow, refuse
from v2ghub.api.context import ApiContext, context
from v2ghub.api.regulation_models import (
    CommitmentIn,
    CommitmentOut,
    RegulationNow,
    RegulationResponse,
    SignalIn,
    SignalPosted,
)
from v2ghub.api.regulation_view import (
    MAX_WINDOW,
    commitment_out,
    default_window,
    regulation_now,
    response_series,
    signal_in_force,
)
from v2ghub.store.api_tokens import Role
from v2ghub.store.records import Event, EventKind
from v2ghub.store.regulation import SignalSample

router = APIRouter(prefix="/api/v1/grid/regulation", tags=["regulation"])

Api = Annotated[ApiContext, Depends(context)]
Grid = Annotated[Principal, Depends(allow(Role.ADMIN, Role.GRID))]
"""Who may send the signal and make or cancel commitments."""
Watching = Annotated[Principal, Depends(allow(Role.ADMIN, Role.GRID, Role.OPERATOR))]
"""Who may read them."""
LIST_FROM = timedelta(days=1)
"""Commitments are listed from this long before now unless asked."""
LIST_AHEAD = timedelta(days=3660)
"""... to this long after it (commitments are made days ahead, not decades)."""


def _record(api: ApiContext, caller: Principal, what: str) -> None:
    api.store.record_event(
        Event(at=api.now(), kind=EventKind.API_WRITE, detail=what, actor=caller.name)
    )


def _replan(api: ApiContext, reason: str) -> None:
    if api.control is not None:
        api.control.replan(reason)


def _aware(name: str, value: datetime | None) -> None:
    if value is not None and value.utcoffset() is None:
        raise refuse(422, f"{name} must have a UTC offset, got {value.isoformat()}", name)


@router.post("/signal", response_model=SignalPosted, summary="Send the regulation signal")
async def post_signal(body: SignalIn, api: Api, caller: Grid) -> SignalPosted:
    """Record regulation signal samples (-1..1 of the committed capacity, + = more
    charging; each holds from its time until the next) and hand them to the broadcaster,
    which sends the one in force to the following stations at every signal step while a
    commitment holds. All or none: a bad sample is refused (422 naming it) and nothing is
    recorded. Grid and admin."""
    samples = [SignalSample(sample.at, sample.signal) for sample in body.samples]

    def write() -> SignalPosted:
        now = api.now()
        recorded = api.store.add_signals(samples, source=caller.actor()[:96], at=now)
        handed = api.control is not None and api.control.post_signal(samples)
        signal, signal_at = signal_in_force(api, now)
        return SignalPosted(
            recorded=recorded, broadcast=handed, signal_now=signal, signal_now_at=signal_at
        )

    return await run_in_threadpool(write)


@router.get("", response_model=RegulationNow, summary="Regulation now")
async def get_regulation(api: Api, caller: Watching) -> RegulationNow:
    """The commitment in force, how the control loop shared it at its last instant (or the
    frequency response it follows), the signal last broadcast and the stations' answers,
    and the last 24 hours' whole committed hours scored from the chargers' power readings
    (correlation, delay, precision, their composite, mileage)."""
    return await run_in_threadpool(regulation_now, api)


@router.get("/response", response_model=RegulationResponse, summary="Signal and response")
async def get_response(
    api: Api,
    caller: Watching,
    start: Annotated[
        datetime | None, Query(description="default: the current or last committed hour")
    ] = None,
    end: Annotated[datetime | None, Query(description="default: now")] = None,
) -> RegulationResponse:
    """The signal and the fleet's measured response (fractions of the committed capacity)
    on the score's 2-s grid within ``[start, end)`` (at most 24 hours, up to now), thinned
    to at most 2,000 samples."""
    _aware("start", start)
    _aware("end", end)

    def read() -> RegulationResponse:
        now = api.now()
        if start is None and end is None:
            first, last = default_window(api, now)
        else:
            last = end if end is not None else now
            first = start if start is not None else last - timedelta(hours=1)
        if last <= first and (start is not None or end is not None):
            raise refuse(422, f"end ({last.isoformat()}) is not after start", "end")
        if last - first > MAX_WINDOW:
            raise refuse(422, "the window may span at most 24 hours", "end")
        return response_series(api, first, last)

    return await run_in_threadpool(read)


@router.get("/commitments", response_model=list[CommitmentOut], summary="List commitments")
async def list_commitments(
    api: Api,
    caller: Watching,
    start: Annotated[datetime | None, Query(description="default: a day before now")] = None,
    end: Annotated[datetime | None, Query(description="default: open")] = None,
    include_cancelled: bool = True,
) -> list[CommitmentOut]:
    """Commitments that overlap ``[start, end)``, in start order."""
    _aware("start", start)
    _aware("end", end)

    def read() -> list[CommitmentOut]:
        now = api.now()
        first = start if start is not None else now - LIST_FROM
        last = end if end is not None else max(now, first) + LIST_AHEAD
        if last <= first:
            raise refuse(422, f"end ({last.isoformat()}) is not after start", "end")
        found = api.store.commitments(
            overlapping=(first, last), include_cancelled=include_cancelled
        )
        return [commitment_out(api, commitment, now) for commitment in found]

    return await run_in_threadpool(read)


@router.post(
    "/commitments", response_model=CommitmentOut, status_code=201, summary="Commit capacity"
)
async def add_commitment(body: CommitmentIn, api: Api, caller: Grid) -> CommitmentOut:
    """Commit the fleet to follow the signal with ``capacity_kw`` each way from
    ``starts_at`` to ``ends_at``. The control loop plans with its headroom and shares it
    from its next instant. Grid and admin."""
    if body.ends_at <= body.starts_at:
        raise refuse(422, f"ends_at ({body.ends_at.isoformat()}) is not after starts_at", "ends_at")

    def write() -> CommitmentOut:
        now = api.now()
        if body.ends_at <= now:
            raise refuse(422, f"ends_at ({body.ends_at.isoformat()}) has passed", "ends_at")
        commitment_id = api.store.add_commitment(
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            capacity_kw=body.capacity_kw,
            source=caller.actor()[:96],
            at=now,
            external_id=body.external_id,
        )
        _record(
            api,
            caller,
            f"regulation commitment {commitment_id}: {body.capacity_kw:g} kW from "
            f"{api.local(body.starts_at).isoformat()} to {api.local(body.ends_at).isoformat()}",
        )
        _replan(api, f"regulation commitment {commitment_id} made")
        (stored,) = api.store.commitments(commitment_id=commitment_id)
        return commitment_out(api, stored, now)

    return await run_in_threadpool(write)


@router.delete(
    "/commitments/{commitment_id}", response_model=CommitmentOut, summary="Cancel a commitment"
)
async def cancel_commitment(commitment_id: int, api: Api, caller: Grid) -> CommitmentOut:
    """Cancel a commitment: it stops holding at once (the loop stops following it at its
    next instant); its hours before are still scored. Grid and admin."""

    def write() -> CommitmentOut:
        now = api.now()
        if not api.store.commitments(commitment_id=commitment_id):
            raise refuse(404, f"no regulation commitment {commitment_id}", "commitment_id")
        if not api.store.cancel_commitment(commitment_id, by=caller.actor()[:96], at=now):
            raise refuse(
                409, f"regulation commitment {commitment_id} is already cancelled", "commitment_id"
            )
        _record(api, caller, f"regulation commitment {commitment_id} cancelled")
        _replan(api, f"regulation commitment {commitment_id} cancelled")
        (stored,) = api.store.commitments(commitment_id=commitment_id)
        return commitment_out(api, stored, now)

    return await run_in_threadpool(write)
