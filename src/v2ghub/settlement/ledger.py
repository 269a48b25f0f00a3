"""Double-entry settlement ledger on SQLite: exact, versioned, idempotent.

Rules
-----
- **Money is integer fen** (0.01 CNY, int64) and never negative: on every line the payer
  pays the payee ``amount_fen``. Each line is one debit and one credit, so the balances of
  all parties sum to exactly 0. Rates are ``Decimal`` kept as the caller's text (CNY per
  unit, ``""`` when none); energy is integer Wh. Nothing here is ever a float.
- **Keys.** A line is identified by ``(period, session_id, kind)``: the settlement period
  (e.g. ``"2025-07-16/Shenzhen/mpc"``), what caused the line (a charging session or event
  id) and the line's kind within it (``"charging"``, ``"discharge:owner-share"``).
- **Versions.** Entries are never updated or deleted. Each key has versions 1, 2, ...
  and only its latest version counts. Posting a period compares every line with its key's
  latest version: identical content (payer, payee, stream, energy_wh, rate, amount_fen,
  cause) is left alone, so re-running a settlement never counts twice; different content
  is a correction and becomes a new version; a key never seen before starts at version 1.
- **Withdrawal.** A key that the period had before but that the new batch lacks gets a new
  version with amount 0, energy 0, no rate and cause ``"withdrawn"`` (payer, payee and
  stream are kept so that the history still reads). A key already withdrawn is not
  withdrawn again; posting it again later is a correction.
- **One transaction.** ``post`` checks the whole batch first (every error names the line,
  counted from 0, and the field) and then writes the period in one transaction: all of it
  or nothing.

The latest version of a key is found through the unique index on
``(period, session_id, kind, version)``; the view ``latest_entries`` holds the latest
version of every key, withdrawn ones included.

Reading
-------
`Ledger.open_read_only` opens an existing ledger without ever writing or creating one, and
reads one snapshot (the state at its first read) until it is closed, so that a statement
can be drawn while ``settle`` posts. `Ledger.periods` lists the periods posted (by
prefix), `Ledger.latest` a period's current lines (of one party or a group of parties,
``owner:`` being every owner). This module holds all of the ledger's SQL.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import numpy.typing as npt

from v2ghub.errors import InputError

WITHDRAWN = "withdrawn"
"""The cause of the amount-0 version that withdraws a key."""

SCHEMA_VERSION = 1
GROUP_SEPARATOR = ":"
"""A party ending in this is a group prefix: ``owner:`` is every owner."""
_INT64_MAX = int(np.iinfo(np.int64).max)


class Stream(StrEnum):
    """Revenue streams a ledger line can belong to."""

    CHARGING = "charging"
    DISCHARGE = "discharge"
    DEMAND_RESPONSE = "demand_response"
    REGULATION_CAPACITY = "regulation_capacity"
    REGULATION_MILEAGE = "regulation_mileage"
    DEGRADATION = "degradation"


@dataclass(frozen=True)
class Lines:
    """A batch of ledger lines as columns, all of the same length.

    Attributes
    ----------
    session_id
        What caused the line: a charging session id (or an event id).
    kind
        The line's kind within the session, unique per ``(session_id, period)``, e.g.
        ``"charging"`` or ``"discharge:owner-share"``.
    payer, payee
        Party ids, e.g. ``"grid"``, ``"aggregator"``, ``"operator:site-7"``,
        ``"owner:S123"``.
    stream
        Revenue stream, one of `Stream`.
    energy_wh
        The quantity the rate applies to, Wh (capacity and mileage lines document their
        own unit).
    rate
        ``Decimal`` as text, e.g. ``"0.7704"`` CNY/kWh; ``""`` when there is none.
    amount_fen
        What the payer pays the payee, integer fen, ``>= 0``.
    cause
        Human-readable, e.g. ``"discharged 12.3 kWh at peak 2025-07-16 19:00"``.
    """

    session_id: npt.NDArray[np.str_]
    kind: npt.NDArray[np.str_]
    payer: npt.NDArray[np.str_]
    payee: npt.NDArray[np.str_]
    stream: npt.NDArray[np.str_]
    energy_wh: npt.NDArray[np.int64]
    rate: Sequence[str]
    amount_fen: npt.NDArray[np.int64]
    cause: npt.NDArray[np.str_]

    def __len__(self) -> int:
        return len(self.session_id)


@dataclass(frozen=True)
class PostResult:
    """What one `Ledger.post` did, counted in keys."""

    new: int
    """Keys seen for the first time (version 1)."""
    unchanged: int
    """Keys whose latest version already had this content; nothing written."""
    corrected: int
    """Keys whose content changed (or came back after a withdrawal); a new version each."""
    withdrawn: int
    """Keys the period had but the batch lacks; a new amount-0 version each."""


@dataclass(frozen=True)
class StreamTotal:
    """Fen one party received and paid in one revenue stream (latest versions)."""

    party: str
    stream: str
    received_fen: int
    paid_fen: int


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    period TEXT NOT NULL CHECK (period <> ''),
    session_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1),
    payer TEXT NOT NULL CHECK (payer <> ''),
    payee TEXT NOT NULL CHECK (payee <> '' AND payee <> payer),
    stream TEXT NOT NULL,
    energy_wh INTEGER NOT NULL CHECK (typeof(energy_wh) = 'integer'),
    rate TEXT NOT NULL,
    amount_fen INTEGER NOT NULL CHECK (typeof(amount_fen) = 'integer' AND amount_fen >= 0),
    cause TEXT NOT NULL,
    posted_at TEXT NOT NULL
);
-- The key's versions, in order: UNIQUE(period, session_id, kind, version), and the index
-- that finds a key's latest version with one seek.
CREATE UNIQUE INDEX IF NOT EXISTS entries_latest
    ON entries (period, session_id, kind, version);
CREATE VIEW IF NOT EXISTS latest_entries AS
    SELECT * FROM entries AS e
    WHERE NOT EXISTS (
        SELECT 1 FROM entries AS newer
        WHERE newer.period = e.period AND newer.session_id = e.session_id
            AND newer.kind = e.kind AND newer.version > e.version
    );
PRAGMA user_version = {SCHEMA_VERSION};
"""

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS staging (
    line INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    payer TEXT NOT NULL,
    payee TEXT NOT NULL,
    stream TEXT NOT NULL,
    energy_wh INTEGER NOT NULL,
    rate TEXT NOT NULL,
    amount_fen INTEGER NOT NULL,
    cause TEXT NOT NULL
);
CREATE TEMP TABLE IF NOT EXISTS changed (
    line INTEGER PRIMARY KEY,
    previous_version INTEGER
);
"""

_STAGE = """
INSERT INTO temp.staging
    (line, session_id, kind, payer, payee, stream, energy_wh, rate, amount_fen, cause)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

# Lines that are new or differ from their key's latest version (one index seek each).
_FIND_CHANGED = """
INSERT INTO temp.changed (line, previous_version)
SELECT s.line, e.version
FROM temp.staging AS s
LEFT JOIN main.entries AS e ON e.id = (
    SELECT m.id FROM main.entries AS m
    WHERE m.period = :period AND m.session_id = s.session_id AND m.kind = s.kind
    ORDER BY m.version DESC LIMIT 1
)
WHERE e.id IS NULL
    OR e.payer <> s.payer OR e.payee <> s.payee OR e.stream <> s.stream
    OR e.energy_wh <> s.energy_wh OR e.rate <> s.rate OR e.amount_fen <> s.amount_fen
    OR e.cause <> s.cause
"""

_INSERT_CHANGED = """
INSERT INTO main.entries (period, session_id, kind, version, payer, payee, stream,
    energy_wh, rate, amount_fen, cause, posted_at)
SELECT :period, s.session_id, s.kind, coalesce(c.previous_version, 0) + 1, s.payer,
    s.payee, s.stream, s.energy_wh, s.rate, s.amount_fen, s.cause, :posted_at
FROM temp.changed AS c JOIN temp.staging AS s ON s.line = c.line
ORDER BY c.line
"""

# Every key has exactly one version 1, so this counts the period's keys.
_COUNT_KEYS = "SELECT count(*) FROM main.entries WHERE period = ? AND version = 1"

_WITHDRAW = f"""
INSERT INTO main.entries (period, session_id, kind, version, payer, payee, stream,
    energy_wh, rate, amount_fen, cause, posted_at)
SELECT e.period, e.session_id, e.kind, e.version + 1, e.payer, e.payee, e.stream,
    0, '', 0, '{WITHDRAWN}', :posted_at
FROM main.latest_entries AS e
WHERE e.period = :period
    AND NOT (e.amount_fen = 0 AND e.cause = '{WITHDRAWN}')
    AND NOT EXISTS (
        SELECT 1 FROM temp.staging AS s WHERE s.session_id = e.session_id AND s.kind = e.kind
    )
ORDER BY e.session_id, e.kind
"""

_CURRENT = f"NOT (amount_fen = 0 AND cause = '{WITHDRAWN}')"


class Ledger:
    """A double-entry, versioned, idempotent ledger in one SQLite database.

    Open it with `Ledger.open`; use it as a context manager to close it. The module
    docstring states the rules.
    """

    def __init__(self, connection: sqlite3.Connection, *, read_only: bool = False) -> None:
        self._connection = connection
        self._read_only = read_only

    @classmethod
    def open(cls, path: Path | str) -> Ledger:
        """Open (and create if absent) the ledger at ``path``; ``":memory:"`` is allowed.

        The database runs in WAL mode with ``synchronous=FULL`` (a committed post survives a
        power cut) and foreign keys on.
        """
        connection = sqlite3.connect(str(path), isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")
            connection.execute("PRAGMA foreign_keys = ON")
            connection.execute("PRAGMA temp_store = MEMORY")
            (version,) = connection.execute("PRAGMA user_version").fetchone()
            if version not in {0, SCHEMA_VERSION}:
                raise ValueError(
                    f"{path}: ledger schema version {version} is not supported "
                    f"(this code reads version {SCHEMA_VERSION})"
                )
            connection.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
            connection.executescript(_STAGING)
        except BaseException:
            connection.close()
            raise
        return cls(connection)

    @classmethod
    def open_read_only(cls, path: Path | str) -> Ledger:
        """Open the existing ledger at ``path`` to read it; never creates or changes a file.

        The ledger reads one snapshot, taken at its first read, until it is closed (a
        statement's queries agree with each other while ``settle`` posts). `post` refuses.

        Raises
        ------
        InputError
            The file does not exist, cannot be read as SQLite, or is not a ledger of this
            schema version; one line naming the file.
        """
        file = Path(path)
        if not file.is_file():
            raise InputError("no such ledger file", file=file)
        uri = f"{file.resolve().as_uri()}?mode=ro"
        connection = sqlite3.connect(uri, uri=True, isolation_level=None)
        try:
            try:
                connection.execute("BEGIN")  # one snapshot for every read until close
                (version,) = connection.execute("PRAGMA user_version").fetchone()
                names = {
                    name
                    for (name,) in connection.execute(
                        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
                    )
                }
            except sqlite3.DatabaseError as error:
                raise InputError(f"cannot read the ledger ({error})", file=file) from None
            if not {"entries", "latest_entries"} <= names or version != SCHEMA_VERSION:
                raise InputError(
                    f"is not a v2ghub ledger of schema version {SCHEMA_VERSION}", file=file
                )
        except BaseException:
            connection.close()
            raise
        return cls(connection, read_only=True)

    def close(self) -> None:
        """Close the database."""
        self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def post(self, period: str, lines: Lines) -> PostResult:
        """Post one settlement period in one transaction; see the module docstring.

        Raises
        ------
        ValueError
            The batch is invalid (the message names the line and the field); nothing is
            written.
        """
        if self._read_only:
            raise ValueError("the ledger is open read-only; open it with Ledger.open to post")
        if not period.strip():
            raise ValueError("period: must not be empty")
        rows = _checked_rows(lines)
        posted_at = datetime.now(UTC).isoformat(timespec="microseconds")
        names = {"period": period, "posted_at": posted_at}
        db = self._connection
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM temp.staging")
            db.execute("DELETE FROM temp.changed")
            try:
                db.executemany(_STAGE, rows.staged())
            except UnicodeEncodeError as error:
                raise ValueError(rows.unencodable()) from error
            keys_before = db.execute(_COUNT_KEYS, (period,)).fetchone()[0]
            db.execute(_FIND_CHANGED, names)
            changed, corrected = db.execute(
                "SELECT count(*), count(previous_version) FROM temp.changed"
            ).fetchone()
            db.execute(_INSERT_CHANGED, names)
            new = changed - corrected
            withdrawn = 0
            if keys_before > len(rows) - new:  # some of the period's keys are not in the batch
                # Built after the bulk insert (one sort) rather than kept up during it.
                db.execute("CREATE INDEX temp.staging_key ON staging (session_id, kind)")
                withdrawn = db.execute(_WITHDRAW, names).rowcount
                db.execute("DROP INDEX temp.staging_key")
            db.execute("DELETE FROM temp.staging")
            db.execute("DELETE FROM temp.changed")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return PostResult(
            new=new, unchanged=len(rows) - changed, corrected=corrected, withdrawn=withdrawn
        )

    def balances(self, period: str | None = None) -> dict[str, int]:
        """Net fen per party (received minus paid) over the latest versions.

        Over one period, or all when ``period`` is None. The values sum to exactly 0.
        """
        where, parameters = _period_filter(period)
        query = f"""
            WITH current AS (
                SELECT payer, payee, amount_fen FROM latest_entries WHERE {where}
            )
            SELECT party, sum(fen) FROM (
                SELECT payee AS party, amount_fen AS fen FROM current
                UNION ALL
                SELECT payer AS party, -amount_fen AS fen FROM current
            )
            GROUP BY party ORDER BY party
        """
        return dict(self._connection.execute(query, parameters).fetchall())

    def totals(self, period: str | None = None) -> list[StreamTotal]:
        """Fen received and paid per (party, stream) over the latest versions."""
        where, parameters = _period_filter(period)
        query = f"""
            WITH current AS (
                SELECT payer, payee, stream, amount_fen FROM latest_entries WHERE {where}
            )
            SELECT party, stream, sum(received), sum(paid) FROM (
                SELECT payee AS party, stream, amount_fen AS received, 0 AS paid FROM current
                UNION ALL
                SELECT payer AS party, stream, 0 AS received, amount_fen AS paid FROM current
            )
            GROUP BY party, stream ORDER BY party, stream
        """
        return [
            StreamTotal(party=party, stream=stream, received_fen=received, paid_fen=paid)
            for party, stream, received, paid in self._connection.execute(query, parameters)
        ]

    def periods(self, prefix: str | None = None) -> list[str]:
        """The periods posted whose name starts with ``prefix`` (all when None), sorted.

        ``"2025-07-16/"`` gives a day's periods, ``"2025-07-"`` a month's. The range query
        uses the index on ``period`` (``LIKE`` would not, being case-insensitive).
        """
        parameters: tuple[object, ...] = ()
        if not prefix:
            query = "SELECT DISTINCT period FROM entries ORDER BY 1"
        elif ord(prefix[-1]) < sys.maxunicode:
            following = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # first text past the prefix
            query = (
                "SELECT DISTINCT period FROM entries WHERE period >= ? AND period < ? ORDER BY 1"
            )
            parameters = (prefix, following)
        else:
            query = "SELECT DISTINCT period FROM entries WHERE substr(period, 1, ?) = ? ORDER BY 1"
            parameters = (len(prefix), prefix)
        return [str(period) for (period,) in self._connection.execute(query, parameters)]

    def latest(self, period: str, *, party: str | None = None) -> Lines:
        """The period's lines as they stand now, ordered by (session_id, kind).

        Latest versions only; withdrawn keys are left out. With ``party``, only the lines
        it pays or receives: an id (``owner:S1``), or a group prefix ending in
        `GROUP_SEPARATOR` (``owner:`` is every owner).
        """
        condition, parameters = "1", dict[str, object]()
        if party is not None:
            side = (
                "substr({0}, 1, :length) = :party"
                if party.endswith(GROUP_SEPARATOR)
                else "{0} = :party"
            )
            condition = f"({side.format('payer')} OR {side.format('payee')})"
            parameters = {"party": party, "length": len(party)}
        query = f"""
            SELECT session_id, kind, payer, payee, stream, energy_wh, rate, amount_fen, cause
            FROM latest_entries WHERE period = :period AND {_CURRENT} AND {condition}
            ORDER BY session_id, kind
        """
        rows = self._connection.execute(query, {"period": period, **parameters}).fetchall()
        columns: list[tuple[object, ...]] = list(zip(*rows, strict=True)) or [()] * 9
        session_id, kind, payer, payee, stream, energy_wh, rate, amount_fen, cause = columns
        return Lines(
            session_id=np.array(session_id, dtype=np.str_),
            kind=np.array(kind, dtype=np.str_),
            payer=np.array(payer, dtype=np.str_),
            payee=np.array(payee, dtype=np.str_),
            stream=np.array(stream, dtype=np.str_),
            energy_wh=np.array(energy_wh, dtype=np.int64),
            rate=[str(value) for value in rate],
            amount_fen=np.array(amount_fen, dtype=np.int64),
            cause=np.array(cause, dtype=np.str_),
        )

    def history(self, *, period: str, session_id: str, kind: str) -> list[tuple[int, int, str]]:
        """Every version of one key, oldest first, as ``(version, amount_fen, cause)``."""
        query = """
            SELECT version, amount_fen, cause FROM entries
            WHERE period = ? AND session_id = ? AND kind = ?
            ORDER BY version
        """
        rows = self._connection.execute(query, (period, session_id, kind))
        return [(int(version), int(fen), str(cause)) for version, fen, cause in rows]


def _period_filter(period: str | None) -> tuple[str, tuple[str, ...]]:
    """SQL condition for 'latest, not withdrawn, in this period (or any)'."""
    if period is None:
        return _CURRENT, ()
    return f"period = ? AND {_CURRENT}", (period,)


_TEXT_FIELDS = ("session_id", "kind", "payer", "payee", "stream", "cause")
_INTEGER_FIELDS = ("energy_wh", "amount_fen")
_STREAMS = [stream.value for stream in Stream]


@dataclass(frozen=True)
class _Rows:
    """A checked batch as Python lists, in the staging table's column order."""

    columns: dict[str, list[str] | list[int]]

    def __len__(self) -> int:
        return len(self.columns["session_id"])

    def staged(self) -> Iterator[tuple[object, ...]]:
        c = self.columns
        return zip(
            range(len(self)),
            c["session_id"],
            c["kind"],
            c["payer"],
            c["payee"],
            c["stream"],
            c["energy_wh"],
            c["rate"],
            c["amount_fen"],
            c["cause"],
            strict=True,
        )

    def unencodable(self) -> str:
        """Message naming the first text that SQLite cannot store (a lone surrogate)."""
        for index in range(len(self)):
            for name in (*_TEXT_FIELDS, "rate"):
                value = self.columns[name][index]
                try:
                    str(value).encode("utf-8")
                except UnicodeEncodeError:
                    return f"line {index}, field {name}: {value!r} is not valid UTF-8 text"
        return "a text field is not valid UTF-8 text"  # pragma: no cover


def _checked_rows(lines: Lines) -> _Rows:
    """Check the whole batch; raise ValueError naming the first bad line and field."""
    lengths = {field.name: len(getattr(lines, field.name)) for field in fields(lines)}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name} {length}" for name, length in lengths.items())
        raise ValueError(f"columns have different lengths: {described}")
    text = {name: _text_column(name, getattr(lines, name)) for name in _TEXT_FIELDS}
    integers = {name: _integer_column(name, getattr(lines, name)) for name in _INTEGER_FIELDS}
    for name in ("session_id", "kind", "payer", "payee"):
        blank = (text[name] == "") | np.strings.isspace(text[name])
        _refuse_first(name, blank, text[name], "is empty")
    amount_fen = integers["amount_fen"]
    _refuse_first("amount_fen", amount_fen < 0, amount_fen, "is negative (fen must be >= 0)")
    _refuse_first("payee", text["payer"] == text["payee"], text["payee"], "is also the payer")
    _refuse_first(
        "stream",
        ~np.isin(text["stream"], _STREAMS),
        text["stream"],
        f"is not a stream (one of {', '.join(_STREAMS)})",
    )
    rates = lines.rate.tolist() if isinstance(lines.rate, np.ndarray) else list(lines.rate)
    _check_rates(rates)
    _check_unique_keys(text["session_id"], text["kind"])
    columns: dict[str, list[str] | list[int]] = {
        "session_id": text["session_id"].tolist(),
        "kind": text["kind"].tolist(),
        "payer": text["payer"].tolist(),
        "payee": text["payee"].tolist(),
        "stream": text["stream"].tolist(),
        "energy_wh": integers["energy_wh"].tolist(),
        "rate": rates,
        "amount_fen": amount_fen.tolist(),
        "cause": text["cause"].tolist(),
    }
    return _Rows(columns)


def _text_column(name: str, values: object) -> npt.NDArray[np.str_]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"field {name}: expected one column, got shape {array.shape}")
    if array.dtype.kind == "U":
        return array
    if array.size:
        raise ValueError(f"field {name}: expected text, got dtype {array.dtype}")
    return array.astype(np.str_)


def _integer_column(name: str, values: object) -> npt.NDArray[np.int64]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"field {name}: expected one column, got shape {array.shape}")
    if array.size and array.dtype.kind not in "iu":
        raise ValueError(
            f"field {name}: expected integers, got dtype {array.dtype} (never float for money)"
        )
    if array.size and array.dtype.kind == "u" and int(array.max()) > _INT64_MAX:
        index = int(np.argmax(array > _INT64_MAX))
        raise ValueError(f"line {index}, field {name}: {array[index]} does not fit in int64")
    return array.astype(np.int64, copy=False)


def _refuse_first(
    name: str, bad: npt.NDArray[np.bool_], values: npt.NDArray[np.generic], problem: str
) -> None:
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(f"line {index}, field {name}: {values[index].item()!r} {problem}")


def _check_rates(rates: list[str]) -> None:
    """Each rate is '' or a finite, non-negative Decimal written as text."""
    for rate in dict.fromkeys(rates):  # distinct rates, in order of first appearance
        if not isinstance(rate, str):
            problem = f"{rate!r} is not text (write the Decimal as a str)"
        elif rate == "":
            continue
        else:
            try:
                value = Decimal(rate)
            except InvalidOperation:
                problem = f"{rate!r} is not a decimal number"
            else:
                if rate != rate.strip() or not value.is_finite():
                    problem = f"{rate!r} is not a decimal number"
                elif value < 0:
                    problem = f"{rate!r} is negative"
                else:
                    continue
        index = next(i for i, candidate in enumerate(rates) if candidate == rate)
        raise ValueError(f"line {index}, field rate: {problem}")


_HASHED_CHARACTERS_MAX = 256
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def _check_unique_keys(session_id: npt.NDArray[np.str_], kind: npt.NDArray[np.str_]) -> None:
    """Refuse a batch in which a (session_id, kind) key appears twice.

    Vectorised first: an FNV-1a hash of each key over its UTF-32 code points; only when two
    hashes agree (a repeated key or, rarely, a collision) are the keys compared exactly.
    """
    if len(session_id) < 2:
        return
    width = session_id.dtype.itemsize + kind.dtype.itemsize
    if width // 4 <= _HASHED_CHARACTERS_MAX:
        hashes = np.full(len(session_id), _FNV_OFFSET, dtype=np.uint64)
        for column in (session_id, kind):
            code_points = np.ascontiguousarray(column).view(np.uint32).reshape(len(column), -1)
            for position in range(code_points.shape[1]):
                hashes = (hashes ^ code_points[:, position]) * _FNV_PRIME
        ordered = np.sort(hashes)
        if not np.any(ordered[1:] == ordered[:-1]):
            return
    first_line: dict[tuple[str, str], int] = {}
    for index, key in enumerate(zip(session_id.tolist(), kind.tolist(), strict=True)):
        earlier = first_line.setdefault(key, index)
        if earlier != index:
            raise ValueError(
                f"line {index}, fields session_id/kind: ({key[0]!r}, {key[1]!r}) "
                f"repeats line {earlier}"
            )
