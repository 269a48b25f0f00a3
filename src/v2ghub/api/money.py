"""``/api/v1/statements`` and ``/api/v1/today``: money from the settlement ledger
(``v2ghub settle --live`` posts one period ``DATE/CITY/live`` per local day), and what each
session's owner is owed (:func:`owed_fen`).

Who sees which party (a party is ``owner:STATION/TRANSACTION``, ``operator:SITE``,
``aggregator`` or ``grid``):

- admin: any party, or every party when none is named;
- operator: ``operator:SITE`` of its own sites, named;
- owner: the owner parties of its own sessions (those whose id token is its owner id);
  with no party named, its statement is every line of those parties;
- grid: ``grid``.

Money is integer fen in the ledger and exact decimal CNY strings here. ``/today``'s money
is the net (+ received, - paid) per stream to the parties the caller stands for: the
aggregator for admin (every party's nets add up to 0), its sites' operators, its
sessions' owners, the grid.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from v2ghub.api.auth import Caller, Principal, refuse
from v2ghub.api.context import ApiContext, context
from v2ghub.api.models import (
    StatementLineOut,
    StatementOut,
    StreamMoney,
    StreamTotalOut,
    Today,
)
from v2ghub.errors import InputError
from v2ghub.settlement.ledger import GROUP_SEPARATOR, Ledger, StreamTotal
from v2ghub.settlement.live_settle import LIVE_PLANNER
from v2ghub.settlement.market import AGGREGATOR
from v2ghub.settlement.money import fen_to_cny
from v2ghub.settlement.statements import Statement, statement
from v2ghub.settlement.streams import kwh_text
from v2ghub.store.api_reads import SessionFilter, SessionView
from v2ghub.store.api_tokens import Role
from v2ghub.units import wh_to_kwh

router = APIRouter(prefix="/api/v1", tags=["money"])

Api = Annotated[ApiContext, Depends(context)]

GRID = "grid"
OWNER_GROUP = f"owner{GROUP_SEPARATOR}"
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
_LINE_FIELDS = (
    "period",
    "session_id",
    "kind",
    "party_id",
    "counterparty",
    "stream",
    "energy_wh",
    "rate",
    "amount_fen",
    "cause",
)


def owner_party(session_id: str) -> str:
    return f"{OWNER_GROUP}{session_id}"


def operator_party(site_id: str) -> str:
    return f"operator{GROUP_SEPARATOR}{site_id}"


def live_periods(ledger: Ledger, days: Iterable[date]) -> list[str]:
    """The live periods (``DATE/CITY/live``) posted for ``days``."""
    suffix = f"/{LIVE_PLANNER}"
    return [
        period
        for day in sorted(set(days))
        for period in ledger.periods(f"{day.isoformat()}/")
        if period.endswith(suffix)
    ]


def local_days(start: datetime, end: datetime, timezone: ZoneInfo) -> list[date]:
    """The city's local days from ``start``'s to ``end``'s."""
    first, last = (at.astimezone(timezone).date() for at in (start, end))
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def owed_fen(
    ledger_path: Path | None, sessions: Sequence[SessionView], *, timezone: ZoneInfo, now: datetime
) -> dict[str, int]:
    """Net fen to each session's owner (``owner:STATION/TRANSACTION``, + received) over the
    ledger's latest lines with the session's id, for the sessions that have any.

    The ledger is opened once and only the live periods of the local days the sessions
    span (from their start to their end, or now) are read; an absent or unreadable ledger
    owes nothing.
    """
    if ledger_path is None or not sessions:
        return {}
    days = {
        day
        for session in sessions
        for day in local_days(session.started_at, session.ended_at or now, timezone)
    }
    wanted = np.array(sorted({session.session_id for session in sessions}), dtype=np.str_)
    net = np.zeros(wanted.size, dtype=np.int64)
    seen = np.zeros(wanted.size, dtype=np.bool_)
    try:
        with Ledger.open_read_only(ledger_path) as ledger:
            for period in live_periods(ledger, days):
                lines = ledger.latest(period, party=OWNER_GROUP)
                owner = np.char.add(OWNER_GROUP, lines.session_id)
                sign = (lines.payee == owner).astype(np.int64) - (lines.payer == owner)
                place = np.searchsorted(wanted, lines.session_id)
                mine = (sign != 0) & (
                    wanted[np.minimum(place, wanted.size - 1)] == lines.session_id
                )
                np.add.at(net, place[mine], sign[mine] * lines.amount_fen[mine])
                seen[place[mine]] = True
    except InputError:
        return {}
    return {
        str(session_id): int(fen) for session_id, fen in zip(wanted[seen], net[seen], strict=True)
    }


# Statements --------------------------------------------------------------------------------


def _scope(day: str | None, month: str | None) -> None:
    """422 unless exactly one of a valid day (YYYY-MM-DD) and month (YYYY-MM) is given."""
    if (day is None) == (month is None):
        raise refuse(422, "give exactly one of day (YYYY-MM-DD) and month (YYYY-MM)", "day")
    if day is not None:
        try:
            valid = _DAY.fullmatch(day) is not None and date.fromisoformat(day) is not None
        except ValueError:
            valid = False
        if not valid:
            raise refuse(422, f"{day!r} is not a day YYYY-MM-DD", "day")
    if month is not None and not _MONTH.fullmatch(month):
        raise refuse(422, f"{month!r} is not a month YYYY-MM", "month")


def _owned_parties(api: ApiContext, caller: Principal) -> frozenset[str]:
    owner_id = caller.token.owner_id
    views = api.store.session_views(SessionFilter(owner_id=owner_id), now=api.now())
    return frozenset(owner_party(view.session_id) for view in views)


def _statement_parties(
    api: ApiContext, caller: Principal, party: str | None
) -> tuple[str | None, frozenset[str] | None]:
    """The party to ask the ledger for, and the parties to keep of its lines (None: all);
    403 for a party outside the caller's, 422 when an operator names none."""
    role = caller.role
    if role is Role.ADMIN:
        return party, None
    if role is Role.GRID:
        if party not in (None, GRID):
            raise refuse(403, f"the grid role sees the party {GRID!r} only", "party")
        return GRID, None
    if role is Role.OPERATOR:
        if party is None:
            raise refuse(422, "party: name one, operator:SITE of one of your sites", "party")
        if party not in {operator_party(site) for site in caller.token.site_ids}:
            raise refuse(403, f"token {caller.name!r} has no access to party {party!r}", "party")
        return party, None
    owned = _owned_parties(api, caller)
    if party is None:
        return OWNER_GROUP, owned
    if party not in owned:
        raise refuse(403, f"party {party!r} is not one of your sessions' owners", "party")
    return party, None


def restricted(result: Statement, parties: Collection[str]) -> Statement | None:
    """``result``'s lines stated for ``parties`` only, totals and nets recomputed; None
    when none is."""
    keep = np.isin(result.party_id, list(parties))
    if not keep.any():
        return None
    kept = {name: getattr(result, name)[keep] for name in _LINE_FIELDS}
    received: dict[tuple[str, str], int] = {}
    paid: dict[tuple[str, str], int] = {}
    net: dict[str, int] = {}
    for party, stream, fen in zip(
        kept["party_id"].tolist(), kept["stream"].tolist(), kept["amount_fen"].tolist(), strict=True
    ):
        side = received if fen >= 0 else paid
        side[(party, stream)] = side.get((party, stream), 0) + abs(fen)
        net[party] = net.get(party, 0) + fen
    totals = tuple(
        StreamTotal(party, stream, received.get((party, stream), 0), paid.get((party, stream), 0))
        for party, stream in sorted(received.keys() | paid.keys())
    )
    return replace(result, **kept, totals=totals, net_fen=dict(sorted(net.items())))


def statement_out(result: Statement, party: str | None) -> StatementOut:
    columns = {
        "period": result.period.tolist(),
        "session_id": result.session_id.tolist(),
        "kind": result.kind.tolist(),
        "party": result.party_id.tolist(),
        "counterparty": result.counterparty.tolist(),
        "stream": result.stream.tolist(),
        "energy_kwh": kwh_text(result.energy_wh).tolist(),
        "rate_cny": result.rate.tolist(),
        "amount_cny": [fen_to_cny(fen) for fen in result.amount_fen.tolist()],
        "cause": result.cause.tolist(),
    }
    return StatementOut(
        scope=result.scope,
        party=party,
        periods=list(result.periods),
        totals=[
            StreamTotalOut(
                party=total.party,
                stream=total.stream,
                received_cny=fen_to_cny(total.received_fen),
                paid_cny=fen_to_cny(total.paid_fen),
            )
            for total in result.totals
        ],
        net_cny={name: fen_to_cny(fen) for name, fen in result.net_fen.items()},
        lines=[
            StatementLineOut(**dict(zip(columns, line, strict=True)))
            for line in zip(*columns.values(), strict=True)
        ],
    )


def read_statement(
    api: ApiContext, caller: Principal, party: str | None, day: str | None, month: str | None
) -> StatementOut:
    asked, keep = _statement_parties(api, caller, party)
    if api.ledger_path is None:
        raise refuse(404, "no settlement ledger is configured (serve --ledger)")
    try:
        result = statement(api.ledger_path, party=asked, day=day, month=month)
    except InputError as error:
        raise refuse(404, error.problem, error.field) from None
    if keep is not None:
        mine = restricted(result, keep)
        if mine is None:
            raise refuse(404, f"has no line for your sessions in {result.scope}", "party")
        result = mine
    return statement_out(result, asked if keep is None else None)


@router.get("/statements", response_model=StatementOut, summary="A party's statement")
async def get_statement(
    api: Api,
    caller: Caller,
    party: Annotated[
        str | None, Query(description="owner:STATION/TRANSACTION, operator:SITE, grid, ...")
    ] = None,
    day: Annotated[str | None, Query(description="YYYY-MM-DD")] = None,
    month: Annotated[str | None, Query(description="YYYY-MM")] = None,
) -> StatementOut:
    """The settlement ledger's lines of a day or a month, stated for one party (+ received,
    - paid), with exact totals per party and stream. Which parties a role may ask for is
    stated in the module docstring."""
    _scope(day, month)
    return await run_in_threadpool(read_statement, api, caller, party, day, month)


# Today -------------------------------------------------------------------------------------


def _today_parties(caller: Principal, session_ids: Sequence[str]) -> frozenset[str]:
    if caller.role is Role.ADMIN:
        return frozenset({AGGREGATOR})
    if caller.role is Role.GRID:
        return frozenset({GRID})
    if caller.role is Role.OPERATOR:
        return frozenset(operator_party(site) for site in caller.token.site_ids)
    return frozenset(owner_party(session_id) for session_id in session_ids)


def day_money(
    ledger_path: Path | None, day: date, parties: Collection[str]
) -> tuple[bool, list[StreamMoney]]:
    """Whether the ledger holds ``day``'s live periods, and the net per stream to
    ``parties`` over them."""
    if ledger_path is None:
        return False, []
    wanted = np.array(sorted(parties), dtype=np.str_)
    net: dict[str, int] = {}
    try:
        with Ledger.open_read_only(ledger_path) as ledger:
            periods = live_periods(ledger, [day])
            for period in periods if wanted.size else ():
                lines = ledger.latest(period, party=_ledger_filter(wanted))
                received, paid = np.isin(lines.payee, wanted), np.isin(lines.payer, wanted)
                signed = lines.amount_fen * (received.astype(np.int64) - paid)
                streams, stream_index = np.unique(
                    lines.stream[received | paid], return_inverse=True
                )
                fen = np.zeros(streams.size, dtype=np.int64)
                np.add.at(fen, stream_index, signed[received | paid])
                for stream, amount_fen in zip(streams.tolist(), fen.tolist(), strict=True):
                    net[stream] = net.get(stream, 0) + amount_fen
    except InputError:
        return False, []
    money = [StreamMoney(stream=s, amount_cny=fen_to_cny(fen)) for s, fen in sorted(net.items())]
    return bool(periods), money


def _ledger_filter(parties: npt.NDArray[np.str_]) -> str | None:
    """What the ledger can filter ``parties``' lines by: the party, their group
    (``owner:``), or nothing."""
    if parties.size == 1:
        return str(parties[0])
    groups = {str(party).partition(GROUP_SEPARATOR)[0] for party in parties.tolist()}
    return f"{groups.pop()}{GROUP_SEPARATOR}" if len(groups) == 1 else None


def today(api: ApiContext, caller: Principal) -> Today:
    now = api.now()
    day = now.astimezone(api.timezone).date()
    start = datetime.combine(day, time(), tzinfo=api.timezone)
    owner_id = caller.token.owner_id if caller.role is Role.OWNER else None
    energy = api.store.day_energy(
        start=start,
        now=now,
        site_ids=None if owner_id is not None else caller.site_filter(),
        owner_id=owner_id,
    )
    settled, money = day_money(api.ledger_path, day, _today_parties(caller, energy.session_ids))
    return Today(
        day=day.isoformat(),
        charged_kwh=wh_to_kwh(energy.delivered_wh),
        discharged_kwh=wh_to_kwh(energy.exported_wh),
        sessions=len(energy.session_ids),
        settled=settled,
        money=money,
    )


@router.get("/today", response_model=Today, summary="The day so far")
async def get_today(api: Api, caller: Caller) -> Today:
    """The city's local day so far: energy charged and discharged and sessions (of the
    sites the caller sees, or an owner's own), and, once the day is settled, money per
    stream."""
    return await run_in_threadpool(today, api, caller)
