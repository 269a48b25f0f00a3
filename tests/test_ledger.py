"""The settlement ledger: double entry, versions, idempotent re-posts, all-or-nothing posts."""

from __future__ import annotations

import sqlite3
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2ghub.settlement.ledger import (
    WITHDRAWN,
    Ledger,
    Lines,
    PostResult,
    Stream,
    StreamTotal,
)

PERIOD = "2025-07-16/Shenzhen/mpc"
SESSIONS = ("S1", "S2", "S3", "event:dr-7")
KINDS = ("charging", "discharge:owner-share", "discharge:aggregator-share", "regulation")
PARTIES = ("grid", "aggregator", "operator:site-7", "owner:S1", "owner:S2")
STREAMS = tuple(stream.value for stream in Stream)


class Row(NamedTuple):
    """One ledger line, as a test writes it."""

    session_id: str
    kind: str
    payer: str
    payee: str
    stream: str
    energy_wh: int
    rate: str
    amount_fen: int
    cause: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.session_id, self.kind)


def make_lines(rows: Sequence[Row]) -> Lines:
    def text(index: int) -> np.ndarray[Any, np.dtype[np.str_]]:
        return np.array([row[index] for row in rows], dtype=np.str_)

    return Lines(
        session_id=text(0),
        kind=text(1),
        payer=text(2),
        payee=text(3),
        stream=text(4),
        energy_wh=np.array([row.energy_wh for row in rows], dtype=np.int64),
        rate=[row.rate for row in rows],
        amount_fen=np.array([row.amount_fen for row in rows], dtype=np.int64),
        cause=text(8),
    )


def as_rows(lines: Lines) -> list[Row]:
    return [
        Row(*values)
        for values in zip(
            lines.session_id.tolist(),
            lines.kind.tolist(),
            lines.payer.tolist(),
            lines.payee.tolist(),
            lines.stream.tolist(),
            lines.energy_wh.tolist(),
            list(lines.rate),
            lines.amount_fen.tolist(),
            lines.cause.tolist(),
            strict=True,
        )
    ]


def expected_balances(rows: Sequence[Row]) -> dict[str, int]:
    """Received minus paid per party, counted here without the ledger."""
    received: defaultdict[str, int] = defaultdict(int)
    paid: defaultdict[str, int] = defaultdict(int)
    for row in rows:
        received[row.payee] += row.amount_fen
        paid[row.payer] += row.amount_fen
    return {party: received[party] - paid[party] for party in received.keys() | paid.keys()}


def expected_totals(rows: Sequence[Row]) -> list[StreamTotal]:
    received: defaultdict[tuple[str, str], int] = defaultdict(int)
    paid: defaultdict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        received[row.payee, row.stream] += row.amount_fen
        paid[row.payer, row.stream] += row.amount_fen
    return [
        StreamTotal(party=party, stream=stream, received_fen=received[key], paid_fen=paid[key])
        for key in sorted(received.keys() | paid.keys())
        for party, stream in [key]
    ]


def stored_entries(path: Path) -> list[tuple[Any, ...]]:
    """Every stored entry, read through a connection of its own."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute("SELECT * FROM entries ORDER BY id").fetchall()
    finally:
        connection.close()


@st.composite
def rows(draw: st.DrawFn) -> Row:
    payer, payee = draw(st.lists(st.sampled_from(PARTIES), min_size=2, max_size=2, unique=True))
    rate = draw(st.one_of(st.just(""), st.decimals(min_value=0, max_value=5, places=5)))
    return Row(
        session_id=draw(st.sampled_from(SESSIONS)),
        kind=draw(st.sampled_from(KINDS)),
        payer=payer,
        payee=payee,
        stream=draw(st.sampled_from(STREAMS)),
        energy_wh=draw(st.integers(0, 10**9)),
        rate=str(rate),
        amount_fen=draw(st.one_of(st.integers(0, 3), st.integers(0, 10**15))),
        cause=draw(st.text(alphabet="abc 0123456789:.-", max_size=30)),
    )


batches = st.lists(rows(), max_size=16, unique_by=lambda row: row.key)


@st.composite
def post_sequences(draw: st.DrawFn) -> list[list[Row]]:
    """Batches for one period, each keeping, dropping or changing the lines of a pool."""
    pool = draw(batches)
    sequence = []
    for _ in range(draw(st.integers(1, 5))):
        batch = []
        for row in pool:
            action = draw(st.sampled_from(["keep", "keep", "drop", "amount", "cause", "other"]))
            if action == "keep":
                batch.append(row)
            elif action == "amount":
                batch.append(row._replace(amount_fen=draw(st.integers(0, 3))))
            elif action == "cause":
                batch.append(row._replace(cause=draw(st.sampled_from(["", "re-metered"]))))
            elif action == "other":
                batch.append(draw(rows())._replace(session_id=row.session_id, kind=row.kind))
        sequence.append(draw(st.permutations(batch)))
    return sequence


@given(batches)
def test_balances_are_double_entry_and_match_received_minus_paid(batch: list[Row]) -> None:
    with Ledger.open(":memory:") as ledger:
        result = ledger.post(PERIOD, make_lines(batch))
        balances = ledger.balances(PERIOD)
        assert result == PostResult(new=len(batch), unchanged=0, corrected=0, withdrawn=0)
        assert sum(balances.values()) == 0
        assert balances == expected_balances(batch)
        assert ledger.balances() == balances
        assert ledger.totals(PERIOD) == expected_totals(batch)
        assert as_rows(ledger.latest(PERIOD)) == sorted(batch, key=lambda row: row.key)


@settings(deadline=None, max_examples=50)
@given(batches)
def test_reposting_changes_nothing(batch: list[Row]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "ledger.sqlite"
        with Ledger.open(path) as ledger:
            ledger.post(PERIOD, make_lines(batch))
            before = (ledger.balances(), ledger.totals(), stored_entries(path))
            result = ledger.post(PERIOD, make_lines(batch[::-1]))  # order does not matter
            assert result == PostResult(new=0, unchanged=len(batch), corrected=0, withdrawn=0)
            assert (ledger.balances(), ledger.totals(), stored_entries(path)) == before


@given(post_sequences())
def test_posts_follow_the_versioning_rules(sequence: list[list[Row]]) -> None:
    # The model: every key's versions as (content, amount_fen, cause).
    versions: dict[tuple[str, str], list[Row]] = {}
    with Ledger.open(":memory:") as ledger:
        for batch in sequence:
            expected = dict.fromkeys(["new", "unchanged", "corrected", "withdrawn"], 0)
            for row in batch:
                if row.key not in versions:
                    expected["new"] += 1
                    versions[row.key] = [row]
                elif versions[row.key][-1] == row:
                    expected["unchanged"] += 1
                else:
                    expected["corrected"] += 1
                    versions[row.key].append(row)
            posted = {row.key for row in batch}
            for key, history in versions.items():
                last = history[-1]
                if key not in posted and (last.amount_fen, last.cause) != (0, WITHDRAWN):
                    expected["withdrawn"] += 1
                    history.append(
                        last._replace(energy_wh=0, rate="", amount_fen=0, cause=WITHDRAWN)
                    )

            assert ledger.post(PERIOD, make_lines(batch)) == PostResult(**expected)
            current = [history[-1] for history in versions.values()]
            current = [row for row in current if (row.amount_fen, row.cause) != (0, WITHDRAWN)]
            assert ledger.balances(PERIOD) == expected_balances(current)
            assert sum(ledger.balances().values()) == 0
            assert ledger.totals() == expected_totals(current)
            assert as_rows(ledger.latest(PERIOD)) == sorted(current, key=lambda row: row.key)
            for (session_id, kind), history in versions.items():
                assert ledger.history(period=PERIOD, session_id=session_id, kind=kind) == [
                    (version, row.amount_fen, row.cause) for version, row in enumerate(history, 1)
                ]


GOOD = [
    Row("S1", "charging", "owner:S1", "operator:site-7", "charging", 12_345, "0.7704", 951, "c"),
    Row("S1", "discharge:owner-share", "aggregator", "owner:S1", "discharge", 2_000, "", 154, "d"),
    Row("S2", "charging", "owner:S2", "operator:site-7", "charging", 3_000, "1.105", 332, "c"),
]


def test_a_correction_is_a_new_version_and_history_keeps_the_old_amount() -> None:
    corrected = [GOOD[0]._replace(amount_fen=952, cause="re-metered"), *GOOD[1:]]
    with Ledger.open(":memory:") as ledger:
        ledger.post(PERIOD, make_lines(GOOD))
        result = ledger.post(PERIOD, make_lines(corrected))
        assert result == PostResult(new=0, unchanged=2, corrected=1, withdrawn=0)
        assert ledger.history(period=PERIOD, session_id="S1", kind="charging") == [
            (1, 951, "c"),
            (2, 952, "re-metered"),
        ]
        assert ledger.balances() == expected_balances(corrected)
        assert ledger.post(PERIOD, make_lines(corrected)).unchanged == 3


def test_a_missing_line_is_withdrawn_once_and_can_come_back() -> None:
    with Ledger.open(":memory:") as ledger:
        ledger.post(PERIOD, make_lines(GOOD))
        result = ledger.post(PERIOD, make_lines(GOOD[1:]))
        assert result == PostResult(new=0, unchanged=2, corrected=0, withdrawn=1)
        assert ledger.history(period=PERIOD, session_id="S1", kind="charging") == [
            (1, 951, "c"),
            (2, 0, WITHDRAWN),
        ]
        assert ledger.balances() == expected_balances(GOOD[1:])
        assert as_rows(ledger.latest(PERIOD)) == GOOD[1:]

        again = ledger.post(PERIOD, make_lines(GOOD[1:]))
        assert again == PostResult(new=0, unchanged=2, corrected=0, withdrawn=0)
        back = ledger.post(PERIOD, make_lines(GOOD))
        assert back == PostResult(new=0, unchanged=2, corrected=1, withdrawn=0)
        assert ledger.history(period=PERIOD, session_id="S1", kind="charging")[-1] == (3, 951, "c")
        assert ledger.balances() == expected_balances(GOOD)


def test_an_empty_batch_withdraws_the_whole_period_and_leaves_others() -> None:
    with Ledger.open(":memory:") as ledger:
        ledger.post(PERIOD, make_lines(GOOD))
        ledger.post("2025-07-17/Shenzhen/mpc", make_lines(GOOD[:1]))
        result = ledger.post(PERIOD, make_lines([]))
        assert result == PostResult(new=0, unchanged=0, corrected=0, withdrawn=3)
        assert ledger.balances(PERIOD) == {}
        assert ledger.totals(PERIOD) == []
        assert len(ledger.latest(PERIOD)) == 0
        assert ledger.balances() == expected_balances(GOOD[:1])


def test_periods_are_separate_keys() -> None:
    with Ledger.open(":memory:") as ledger:
        ledger.post(PERIOD, make_lines(GOOD))
        assert ledger.post("2025-07-17/Shenzhen/mpc", make_lines(GOOD)).new == 3
        assert ledger.balances() == {
            party: 2 * fen for party, fen in expected_balances(GOOD).items()
        }
        assert ledger.balances(PERIOD) == expected_balances(GOOD)
        assert ledger.balances("no such period") == {}


def lines_with(rows: Sequence[Row], **columns: Any) -> Lines:
    return replace(make_lines(rows), **columns)


# A batch that, were it written, would change the ledger: one line corrected, one dropped.
NEXT = [GOOD[0]._replace(amount_fen=1_000), GOOD[2], GOOD[1]._replace(session_id="S3")]

BAD_BATCHES: list[tuple[str, Callable[[], Lines], str]] = [
    (
        "lengths",
        lambda: lines_with(NEXT, kind=np.array(["charging", "x"])),
        r"^columns have different lengths: session_id 3, kind 2, payer 3",
    ),
    (
        "negative amount",
        lambda: make_lines([NEXT[0], NEXT[1]._replace(amount_fen=-5), NEXT[2]]),
        r"^line 1, field amount_fen: -5 is negative \(fen must be >= 0\)$",
    ),
    (
        "float amount",
        lambda: lines_with(NEXT, amount_fen=np.array([1.0, 2.0, 3.0])),
        r"^field amount_fen: expected integers, got dtype float64",
    ),
    (
        "payer is payee",
        lambda: make_lines([*NEXT[:2], NEXT[2]._replace(payer="grid", payee="grid")]),
        r"^line 2, field payee: 'grid' is also the payer$",
    ),
    (
        "empty payer",
        lambda: make_lines([NEXT[0]._replace(payer=""), *NEXT[1:]]),
        r"^line 0, field payer: '' is empty$",
    ),
    (
        "blank payee",
        lambda: make_lines([*NEXT[:2], NEXT[2]._replace(payee="  ")]),
        r"^line 2, field payee: '  ' is empty$",
    ),
    (
        "empty session",
        lambda: make_lines([NEXT[0], NEXT[1]._replace(session_id=""), NEXT[2]]),
        r"^line 1, field session_id: '' is empty$",
    ),
    (
        "duplicate key",
        lambda: make_lines([*NEXT, NEXT[0]._replace(amount_fen=1)]),
        r"^line 3, fields session_id/kind: \('S1', 'charging'\) repeats line 0$",
    ),
    (
        "rate not a number",
        lambda: make_lines([NEXT[0], NEXT[1]._replace(rate="0,77"), NEXT[2]]),
        r"^line 1, field rate: '0,77' is not a decimal number$",
    ),
    (
        "rate NaN",
        lambda: make_lines([NEXT[0]._replace(rate="NaN"), *NEXT[1:]]),
        r"^line 0, field rate: 'NaN' is not a decimal number$",
    ),
    (
        "rate padded",
        lambda: make_lines([NEXT[0]._replace(rate=" 0.77"), *NEXT[1:]]),
        r"^line 0, field rate: ' 0.77' is not a decimal number$",
    ),
    (
        "rate negative",
        lambda: make_lines([*NEXT[:2], NEXT[2]._replace(rate="-0.1")]),
        r"^line 2, field rate: '-0.1' is negative$",
    ),
    (
        "rate as Decimal",
        lambda: lines_with(NEXT, rate=[Decimal("0.77"), "", ""]),
        r"^line 0, field rate: Decimal\('0.77'\) is not text",
    ),
    (
        "unknown stream",
        lambda: make_lines([NEXT[0]._replace(stream="solar"), *NEXT[1:]]),
        r"^line 0, field stream: 'solar' is not a stream \(one of charging, discharge, ",
    ),
    (
        # Found only while staging, inside the transaction: the rollback path.
        "lone surrogate",
        lambda: make_lines([*NEXT[:2], NEXT[2]._replace(cause="bad \ud800")]),
        r"^line 2, field cause: 'bad \\ud800' is not valid UTF-8 text$",
    ),
]


@pytest.mark.parametrize(
    ("bad_batch", "message"),
    [pytest.param(make, message, id=name) for name, make, message in BAD_BATCHES],
)
def test_a_bad_batch_is_refused_and_leaves_the_ledger_as_it_was(
    tmp_path: Path, bad_batch: Callable[[], Lines], message: str
) -> None:
    path = tmp_path / "ledger.sqlite"
    with Ledger.open(path) as ledger:
        ledger.post(PERIOD, make_lines(GOOD))
        before = stored_entries(path)
        with pytest.raises(ValueError, match=message):
            ledger.post(PERIOD, bad_batch())
        assert stored_entries(path) == before
        assert ledger.balances() == expected_balances(GOOD)
        assert as_rows(ledger.latest(PERIOD)) == GOOD
        # The ledger still works, and the good batch is still the one that counts.
        assert ledger.post(PERIOD, make_lines(GOOD)).unchanged == 3
        assert ledger.post(PERIOD, make_lines(NEXT)) == PostResult(
            new=1, unchanged=1, corrected=1, withdrawn=1
        )


def test_an_empty_period_is_refused() -> None:
    with (
        Ledger.open(":memory:") as ledger,
        pytest.raises(ValueError, match=r"^period: must not be empty$"),
    ):
        ledger.post(" ", make_lines(GOOD))


def test_a_reopened_ledger_shows_the_same_balances(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with Ledger.open(path) as ledger:
        ledger.post(PERIOD, make_lines(GOOD))
        ledger.post(PERIOD, make_lines(NEXT))
        balances, totals = ledger.balances(), ledger.totals()
    with Ledger.open(str(path)) as ledger:
        assert ledger.balances() == balances == expected_balances(NEXT)
        assert ledger.totals() == totals
        assert ledger.history(period=PERIOD, session_id="S1", kind="charging") == [
            (1, 951, "c"),
            (2, 1_000, "c"),
        ]
        assert ledger.post(PERIOD, make_lines(NEXT)).unchanged == 3


def test_the_database_is_durable_and_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with Ledger.open(path):
        pass
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        connection.execute("PRAGMA user_version = 99")
    finally:
        connection.close()
    with pytest.raises(ValueError, match="ledger schema version 99 is not supported"):
        Ledger.open(path)


@pytest.mark.parametrize("length", [2, 300], ids=["hashed", "compared exactly"])
def test_a_repeated_key_is_found_however_long_the_ids(length: int) -> None:
    session_id = "S" * length
    batch = [GOOD[0]._replace(session_id=session_id + "x"), GOOD[1], GOOD[0]]
    batch = [*batch, GOOD[0]._replace(session_id=session_id, amount_fen=7)]
    batch[2] = batch[2]._replace(session_id=session_id)
    with Ledger.open(":memory:") as ledger:
        with pytest.raises(
            ValueError, match=r"^line 3, fields session_id/kind: .* repeats line 2$"
        ):
            ledger.post(PERIOD, make_lines(batch))
        assert ledger.post(PERIOD, make_lines(batch[:3])).new == 3


def test_rates_may_come_as_a_numpy_column() -> None:
    with Ledger.open(":memory:") as ledger:
        ledger.post(PERIOD, lines_with(GOOD, rate=np.array([row.rate for row in GOOD])))
        assert ledger.latest(PERIOD).rate == [row.rate for row in GOOD]
        assert ledger.post(PERIOD, make_lines(GOOD)).unchanged == 3


def test_read_only_lists_periods_and_a_partys_latest_lines(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    july_17 = "2025-07-17/Shenzhen/mpc"
    with Ledger.open(path) as ledger:
        ledger.post(PERIOD, make_lines(GOOD))
        ledger.post(july_17, make_lines(GOOD[2:]))
        ledger.post("2025-08-01/Shenzhen/mpc", make_lines(GOOD[:1]))
        ledger.post(july_17, make_lines([]))  # withdrawn: listed, but no current line
    before = stored_entries(path)
    with Ledger.open_read_only(path) as ledger:
        assert ledger.periods("2025-07-") == [PERIOD, july_17]
        assert ledger.periods("2025-07-16/") == [PERIOD]
        assert ledger.periods("2025-09-") == []
        assert len(ledger.periods()) == 3
        assert as_rows(ledger.latest(PERIOD, party="owner:S1")) == GOOD[:2]
        assert as_rows(ledger.latest(PERIOD, party="owner:")) == GOOD
        assert as_rows(ledger.latest(PERIOD, party="operator:site-7")) == [GOOD[0], GOOD[2]]
        assert as_rows(ledger.latest(PERIOD, party="owner")) == []  # an id, not a group
        assert len(ledger.latest(july_17)) == 0
        with pytest.raises(ValueError, match=r"^the ledger is open read-only"):
            ledger.post(PERIOD, make_lines(GOOD))
    assert stored_entries(path) == before


def test_read_only_refuses_a_missing_file_and_never_creates_one(tmp_path: Path) -> None:
    missing = tmp_path / "none.sqlite"
    with pytest.raises(ValueError, match=r"none\.sqlite: no such ledger file$"):
        Ledger.open_read_only(missing)
    assert not missing.exists()
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).close()  # an empty SQLite file: no ledger tables
    with pytest.raises(ValueError, match=r"other\.sqlite: is not a v2ghub ledger of schema"):
        Ledger.open_read_only(other)
