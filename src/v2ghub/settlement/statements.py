"""Statements for one party (or a group of parties) over a day or a month of the ledger.

``v2ghub settle`` posts one ledger period per city, planner and day
(``DATE/CITY/PLANNER``). A statement gathers, over every period of a day (``YYYY-MM-DD``)
or a month (``YYYY-MM``), optionally of one city or planner, the latest version of every
ledger key that is not withdrawn, and states each line from the side of the party it
concerns:

    amount_fen = +line.amount_fen   when the party is the payee (received)
    amount_fen = -line.amount_fen   when the party is the payer (paid)

A line between two parties of the same group (both ``owner:``) is stated once for each.
Totals are sums of integer fen per (party, stream), so they are exact to the fen, and a
party's net over the statement equals the sum of `Ledger.balances` over its periods.

The party is an id (``owner:S1``, ``operator:site-7``, ``aggregator``, ``grid``), a group
prefix ending in ``:`` (``owner:`` = every owner), or None for every party. The ledger
filters one period at a time (`Ledger.latest`, through its ``(period, ...)`` index), so a
month of hundreds of thousands of lines is read without the other periods' lines.

The ledger is opened read-only (`Ledger.open_read_only`): a statement never creates or
changes a ledger, and reads one snapshot while ``settle`` may post.
"""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from v2ghub.errors import InputError
from v2ghub.files import ANY_REGULAR_FILE, atomic_texts, writing_into
from v2ghub.settlement.ledger import GROUP_SEPARATOR, Ledger, Lines, StreamTotal
from v2ghub.settlement.money import fen_to_cny
from v2ghub.settlement.settle import STATEMENT_COLUMNS
from v2ghub.settlement.streams import cny_text, kwh_text

# settle's statements.csv columns, with the ledger key (session_id, kind) after the period.
STATEMENT_CSV_COLUMNS = (STATEMENT_COLUMNS[0], "session_id", "kind", *STATEMENT_COLUMNS[1:])
"""Columns of ``statement.csv``; ``amount_cny`` is + received, - paid (exact text)."""

_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
_DAY = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])")


@dataclass(frozen=True)
class Statement:
    """The statement lines of one party or group, with exact totals.

    Attributes
    ----------
    ledger
        The ledger file read.
    scope
        The day (``YYYY-MM-DD``) or month (``YYYY-MM``) stated.
    party
        The party id or group prefix; None for every party.
    city, planner
        The city and planner the periods were limited to, or None.
    periods
        The periods read, sorted.
    period, session_id, kind, party_id, counterparty, stream, rate, cause
        One entry per statement line (text), in ledger order: by period, session id and
        kind; a line stated for both its sides has the payee's side first.
    energy_wh
        The quantity the rate applies to, Wh (as on the ledger line, unsigned).
    amount_fen
        Signed fen: + received by ``party_id``, - paid by it.
    totals
        Fen received and paid per (party, stream), sorted.
    net_fen
        Received minus paid per party over the statement.
    """

    ledger: str
    scope: str
    party: str | None
    city: str | None
    planner: str | None
    periods: tuple[str, ...]
    period: npt.NDArray[np.str_]
    session_id: npt.NDArray[np.str_]
    kind: npt.NDArray[np.str_]
    party_id: npt.NDArray[np.str_]
    counterparty: npt.NDArray[np.str_]
    stream: npt.NDArray[np.str_]
    energy_wh: npt.NDArray[np.int64]
    rate: npt.NDArray[np.str_]
    amount_fen: npt.NDArray[np.int64]
    cause: npt.NDArray[np.str_]
    totals: tuple[StreamTotal, ...]
    net_fen: dict[str, int]

    def __len__(self) -> int:
        return len(self.amount_fen)


def statement(
    ledger: Path | str,
    *,
    party: str | None,
    month: str | None = None,
    day: str | None = None,
    city: str | None = None,
    planner: str | None = None,
) -> Statement:
    """The statement of ``party`` over a day or a month of the ledger at ``ledger``.

    Give exactly one of ``month`` (``YYYY-MM``) and ``day`` (``YYYY-MM-DD``).

    Raises
    ------
    InputError
        The ledger file does not exist or is not a ledger; the month or day is not a date
        of that form; no period matches; the party has no line in the periods. The message
        names the file and the field.
    """
    path = Path(ledger)
    scope, field = _scope(month=month, day=day)
    if party is not None and not party.strip():
        raise InputError("must not be empty (an id such as owner:S1, or owner:)", field="party")
    try:
        with Ledger.open_read_only(path) as opened:
            periods = _periods(opened, path, scope=scope, field=field, city=city, planner=planner)
            batches = [opened.latest(name, party=party) for name in periods]
    except sqlite3.DatabaseError as error:
        raise InputError(f"cannot read the ledger ({error})", file=path) from None
    period = np.repeat(np.array(periods, dtype=np.str_), [len(batch) for batch in batches])
    session_id, kind, payer, payee, stream, cause = (
        _joined(batches, name)
        for name in ("session_id", "kind", "payer", "payee", "stream", "cause")
    )
    rate = np.array([text for batch in batches for text in batch.rate], dtype=np.str_)
    energy_wh, amount_fen = (
        np.concatenate([getattr(batch, name) for batch in batches]).astype(np.int64)
        for name in ("energy_wh", "amount_fen")
    )
    received = _matches(payee, party)
    paid = _matches(payer, party)
    if not (received.any() or paid.any()):
        whose = f"for party {party!r}" if party is not None else "that is not withdrawn"
        hint = " (a group is written with a trailing colon, e.g. owner:)" if party else ""
        raise InputError(
            f"has no line {whose} in {scope}{hint}",
            file=path,
            field="party" if party is not None else field,
        )
    # Each line once per side the statement is for; sorted back into ledger order (the
    # sort is stable, so a line stated for both sides shows the payee's side first).
    line = np.concatenate((np.flatnonzero(received), np.flatnonzero(paid)))
    order = np.argsort(line, kind="stable")
    line = line[order]
    sign = np.concatenate((np.ones(received.sum(), np.int64), -np.ones(paid.sum(), np.int64)))
    signed = amount_fen[line] * sign[order]
    statement_party = np.concatenate((payee[received], payer[paid]))[order]
    totals = _totals(statement_party, stream[line], signed)
    net: dict[str, int] = {}
    for total in totals:
        net[total.party] = net.get(total.party, 0) + total.received_fen - total.paid_fen
    return Statement(
        ledger=str(path),
        scope=scope,
        party=party,
        city=city,
        planner=planner,
        periods=tuple(periods),
        period=period[line],
        session_id=session_id[line],
        kind=kind[line],
        party_id=statement_party,
        counterparty=np.concatenate((payer[received], payee[paid]))[order],
        stream=stream[line],
        energy_wh=energy_wh[line],
        rate=rate[line],
        amount_fen=signed,
        cause=cause[line],
        totals=tuple(totals),
        net_fen=net,
    )


def write_statement(result: Statement, out: Path) -> tuple[Path, Path]:
    """Write ``statement.csv`` and ``statement.json`` into ``out``; their paths.

    Each file replaces the old one only when both are written (see
    :func:`~v2ghub.files.atomic_texts`); a device or a symbolic link there is refused.
    """
    if out.exists() and not out.is_dir():
        raise InputError("is a file; give the folder to write the statement into", file=out)
    with writing_into(out):
        out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "statement.csv", out / "statement.json"
    outputs = [(csv_path, ANY_REGULAR_FILE), (json_path, ANY_REGULAR_FILE)]
    with atomic_texts(outputs) as (lines_file, totals_file):
        writer = csv.writer(lines_file, lineterminator="\n")
        writer.writerow(STATEMENT_CSV_COLUMNS)
        text = [
            result.period,
            result.session_id,
            result.kind,
            result.party_id,
            result.counterparty,
            result.stream,
            kwh_text(result.energy_wh),
            result.rate,
            cny_text(result.amount_fen),
            result.cause,
        ]
        writer.writerows(zip(*(column.tolist() for column in text), strict=True))
        json.dump(statement_json(result), totals_file, indent=2)
        totals_file.write("\n")
    return csv_path, json_path


def statement_json(result: Statement) -> dict[str, Any]:
    """What ``statement.json`` holds: the selection, periods, line count and exact totals."""
    return {
        "ledger": result.ledger,
        "scope": result.scope,
        "party": result.party,
        "city": result.city,
        "planner": result.planner,
        "periods": list(result.periods),
        "lines": len(result),
        "totals": [
            {
                "party": total.party,
                "stream": total.stream,
                "received_cny": str(fen_to_cny(total.received_fen)),
                "paid_cny": str(fen_to_cny(total.paid_fen)),
                "net_cny": str(fen_to_cny(total.received_fen - total.paid_fen)),
            }
            for total in result.totals
        ],
        "net_cny": {party: str(fen_to_cny(fen)) for party, fen in result.net_fen.items()},
    }


def _scope(*, month: str | None, day: str | None) -> tuple[str, str]:
    """The checked day or month and the name of its field."""
    if (month is None) == (day is None):
        raise InputError("give exactly one of a month (YYYY-MM) and a day (YYYY-MM-DD)")
    if month is not None:
        if not _MONTH.fullmatch(month):
            raise InputError(f"{month!r} is not a month YYYY-MM", field="month")
        return month, "month"
    assert day is not None
    if not _DAY.fullmatch(day) or not _is_date(day):
        raise InputError(f"{day!r} is not a day YYYY-MM-DD", field="day")
    return day, "day"


def _is_date(day: str) -> bool:
    try:
        date.fromisoformat(day)
    except ValueError:
        return False
    return True


def _joined(batches: list[Lines], name: str) -> npt.NDArray[np.str_]:
    """One text column of every period's lines, in period order."""
    return np.concatenate([getattr(batch, name) for batch in batches]).astype(np.str_)


def _periods(
    ledger: Ledger,
    path: Path,
    *,
    scope: str,
    field: str,
    city: str | None,
    planner: str | None,
) -> list[str]:
    """The periods whose date is ``scope`` (a day, or a month's days), of the city/planner."""
    # A day's periods start with "DATE/", a month's with "YYYY-MM-".
    posted = ledger.periods(scope + ("/" if field == "day" else "-"))
    if not posted:
        raise InputError(f"has no period posted for {scope}", file=path, field=field)
    places = [_city_and_planner(period) for period in posted]
    chosen = [
        period
        for period, (period_city, period_planner) in zip(posted, places, strict=True)
        if city in {None, period_city} and planner in {None, period_planner}
    ]
    if not chosen:
        city_missing = city is not None and all(place[0] != city for place in places)
        position, name, wanted = (0, "city", city) if city_missing else (1, "planner", planner)
        known = ", ".join(sorted({place[position] for place in places}))
        raise InputError(
            f"has no period of {scope} for {name} {wanted!r} (posted: {known})",
            file=path,
            field=name,
        )
    return chosen


def _city_and_planner(period: str) -> tuple[str, str]:
    """``"2025-07-16/Shenzhen/mpc"`` -> ``("Shenzhen", "mpc")``."""
    _, _, place = period.partition("/")
    city, _, planner = place.rpartition("/")
    return city, planner


def _matches(parties: npt.NDArray[np.str_], party: str | None) -> npt.NDArray[np.bool_]:
    """Which of ``parties`` the statement is for (the same test as the SQL filter)."""
    if party is None:
        return np.ones(parties.shape, dtype=np.bool_)
    if party.endswith(GROUP_SEPARATOR):
        return np.asarray(np.strings.startswith(parties, party), dtype=np.bool_)
    return np.asarray(parties == party, dtype=np.bool_)


def _totals(
    party: npt.NDArray[np.str_], stream: npt.NDArray[np.str_], signed_fen: npt.NDArray[np.int64]
) -> list[StreamTotal]:
    """Fen received (positive amounts) and paid (negative ones) per (party, stream)."""
    parties, party_index = np.unique(party, return_inverse=True)
    streams, stream_index = np.unique(stream, return_inverse=True)
    cell = party_index.reshape(-1) * streams.size + stream_index.reshape(-1)
    received = np.zeros(parties.size * streams.size, dtype=np.int64)
    paid = np.zeros_like(received)
    np.add.at(received, cell, np.maximum(signed_fen, 0))
    np.add.at(paid, cell, np.maximum(-signed_fen, 0))
    present = np.zeros(received.size, dtype=np.bool_)
    present[cell] = True
    return [
        StreamTotal(
            party=str(parties[index // streams.size]),
            stream=str(streams[index % streams.size]),
            received_fen=int(received[index]),
            paid_fen=int(paid[index]),
        )
        for index in np.flatnonzero(present).tolist()
    ]


__all__ = ["STATEMENT_CSV_COLUMNS", "Statement", "statement", "statement_json", "write_statement"]
