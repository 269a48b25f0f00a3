"""Statements per party over a day or a month of the ledger, and ``v2ghub statement``."""

from __future__ import annotations

import csv
import json
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from tests.test_ledger import PARTIES, Row, make_lines, post_sequences
from v2ghub.cli import main
from v2ghub.errors import InputError
from v2ghub.settlement.ledger import Ledger, StreamTotal
from v2ghub.settlement.money import fen_to_cny
from v2ghub.settlement.statements import STATEMENT_CSV_COLUMNS, Statement, statement

JUL16_MPC = "2025-07-16/Shenzhen/mpc"
JUL16_TOU = "2025-07-16/Shenzhen/tou"
JUL17_MPC = "2025-07-17/Shenzhen/mpc"
JUL17_GUANGZHOU = "2025-07-17/Guangzhou/mpc"
AUG01_MPC = "2025-08-01/Shenzhen/mpc"

S1_CHARGING_JUL17 = Row(
    "S1", "charging", "owner:S1", "operator:site-7", "charging", 12_000, "0.3501", 420, "c 12 kWh"
)
S1_DEMAND_RESPONSE = Row(
    "event:dr-7", "dr:S1", "aggregator", "owner:S1", "demand_response", 3_000, "3", 900, "dr-7"
)
POSTS: dict[str, list[Row]] = {
    JUL16_MPC: [
        Row(
            "S1", "charging", "owner:S1", "operator:site-7", "charging", 20_000, "0.3501", 700, "c"
        ),
        Row("S1", "discharge", "grid", "aggregator", "discharge", 8_000, "1.2", 960, "d 8 kWh"),
        Row("S1", "discharge:owner", "aggregator", "owner:S1", "discharge", 8_000, "", 672, "70%"),
        Row(
            "S2", "charging", "owner:S2", "operator:site-7", "charging", 10_000, "0.3501", 350, "c"
        ),
    ],
    JUL16_TOU: [
        Row(
            "S1", "charging", "owner:S1", "operator:site-7", "charging", 15_000, "0.3501", 525, "c"
        ),
    ],
    JUL17_MPC: [S1_CHARGING_JUL17, S1_DEMAND_RESPONSE],
    JUL17_GUANGZHOU: [
        Row("S2", "charging", "owner:S2", "operator:site-9", "charging", 5_000, "0.31", 155, "c"),
    ],
    AUG01_MPC: [
        Row("S1", "charging", "owner:S1", "operator:site-7", "charging", 9_000, "0.3501", 315, "c"),
    ],
}
JULY = (JUL16_MPC, JUL16_TOU, JUL17_GUANGZHOU, JUL17_MPC)  # sorted, as a statement lists them


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.sqlite"
    with Ledger.open(path) as ledger:
        for period, rows in POSTS.items():
            ledger.post(period, make_lines(rows))
    return path


def stated(result: Statement) -> list[tuple[Any, ...]]:
    """Each statement line as (period, session_id, party, counterparty, stream, Wh, rate, fen,
    cause)."""
    columns = (
        result.period,
        result.session_id,
        result.party_id,
        result.counterparty,
        result.stream,
        result.energy_wh,
        result.rate,
        result.amount_fen,
        result.cause,
    )
    return list(zip(*(column.tolist() for column in columns), strict=True))


def test_a_month_statement_of_one_owner_has_its_lines_and_net(ledger_path: Path) -> None:
    result = statement(ledger_path, party="owner:S1", month="2025-07")
    site = "operator:site-7"
    assert result.periods == JULY
    assert stated(result) == [
        (JUL16_MPC, "S1", "owner:S1", site, "charging", 20_000, "0.3501", -700, "c"),
        (JUL16_MPC, "S1", "owner:S1", "aggregator", "discharge", 8_000, "", 672, "70%"),
        (JUL16_TOU, "S1", "owner:S1", site, "charging", 15_000, "0.3501", -525, "c"),
        (JUL17_MPC, "S1", "owner:S1", site, "charging", 12_000, "0.3501", -420, "c 12 kWh"),
        (
            JUL17_MPC,
            "event:dr-7",
            "owner:S1",
            "aggregator",
            "demand_response",
            3_000,
            "3",
            900,
            "dr-7",
        ),
    ]
    assert result.net_fen == {"owner:S1": -700 + 672 - 525 - 420 + 900}  # -73: -0.73 CNY
    assert result.totals == (
        StreamTotal("owner:S1", "charging", received_fen=0, paid_fen=1_645),
        StreamTotal("owner:S1", "demand_response", received_fen=900, paid_fen=0),
        StreamTotal("owner:S1", "discharge", received_fen=672, paid_fen=0),
    )


def test_a_day_statement_covers_only_that_day(ledger_path: Path) -> None:
    result = statement(ledger_path, party="owner:S1", day="2025-07-16")
    assert result.periods == (JUL16_MPC, JUL16_TOU)
    assert result.amount_fen.tolist() == [-700, 672, -525]
    assert result.net_fen == {"owner:S1": -553}
    august = statement(ledger_path, party="owner:S1", month="2025-08")
    assert (august.periods, august.net_fen) == ((AUG01_MPC,), {"owner:S1": -315})


def test_a_city_or_a_planner_limits_the_periods(ledger_path: Path) -> None:
    mpc = statement(ledger_path, party="owner:S1", day="2025-07-16", planner="mpc")
    assert (mpc.periods, mpc.net_fen) == ((JUL16_MPC,), {"owner:S1": -28})
    guangzhou = statement(ledger_path, party="owner:", month="2025-07", city="Guangzhou")
    assert (guangzhou.periods, guangzhou.net_fen) == ((JUL17_GUANGZHOU,), {"owner:S2": -155})


def test_a_group_prefix_states_every_party_of_the_group(ledger_path: Path) -> None:
    owners = statement(ledger_path, party="owner:", month="2025-07")
    assert owners.net_fen == {"owner:S1": -73, "owner:S2": -350 - 155}
    assert set(owners.party_id.tolist()) == {"owner:S1", "owner:S2"}
    assert len(owners) == 7
    operators = statement(ledger_path, party="operator:", month="2025-07")
    assert operators.net_fen == {"operator:site-7": 700 + 350 + 525 + 420, "operator:site-9": 155}
    # Every party: both sides of every line, so the nets sum to exactly zero.
    everyone = statement(ledger_path, party=None, month="2025-07")
    assert len(everyone) == 2 * sum(len(POSTS[period]) for period in JULY)
    assert sum(everyone.net_fen.values()) == 0
    assert everyone.net_fen["aggregator"] == 960 - 672 - 900


def test_a_correction_shows_the_latest_version_only(ledger_path: Path) -> None:
    corrected = S1_CHARGING_JUL17._replace(energy_wh=12_600, amount_fen=441, cause="re-metered")
    with Ledger.open(ledger_path) as ledger:
        assert ledger.post(JUL17_MPC, make_lines([corrected, S1_DEMAND_RESPONSE])).corrected == 1
        assert len(ledger.history(period=JUL17_MPC, session_id="S1", kind="charging")) == 2
    result = statement(ledger_path, party="owner:S1", day="2025-07-17")
    assert stated(result)[0] == (
        JUL17_MPC, "S1", "owner:S1", "operator:site-7", "charging", 12_600, "0.3501", -441,
        "re-metered",
    )  # fmt: skip
    assert result.amount_fen.tolist() == [-441, 900]


def test_withdrawn_keys_are_left_out(ledger_path: Path) -> None:
    with Ledger.open(ledger_path) as ledger:
        assert ledger.post(JUL17_MPC, make_lines([S1_CHARGING_JUL17])).withdrawn == 1
    result = statement(ledger_path, party="owner:S1", month="2025-07")
    assert "event:dr-7" not in result.session_id.tolist()
    assert result.net_fen == {"owner:S1": -73 - 900}
    everyone = statement(ledger_path, party=None, day="2025-07-17")
    assert "withdrawn" not in everyone.cause.tolist()


@settings(deadline=None, max_examples=30)
@given(post_sequences(), post_sequences())
def test_every_party_s_net_is_its_ledger_balance(
    first: list[list[Row]], second: list[list[Row]]
) -> None:
    periods = (JUL16_MPC, JUL17_MPC)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "ledger.sqlite"
        with Ledger.open(path) as ledger:
            for period, sequence in zip(periods, (first, second), strict=True):
                for batch in sequence:
                    ledger.post(period, make_lines(batch))
            balances = [ledger.balances(period) for period in periods]
            lines = sum(len(ledger.latest(period)) for period in periods)
        if lines == 0:
            with pytest.raises(
                InputError, match=r"has no (period posted|line that is not withdrawn)"
            ):
                statement(path, party=None, month="2025-07")
            return
        everyone = statement(path, party=None, month="2025-07")
        assert len(everyone) == 2 * lines
        for party in PARTIES:
            expected = sum(balance.get(party, 0) for balance in balances)
            assert everyone.net_fen.get(party, 0) == expected
            if party in everyone.net_fen:
                alone = statement(path, party=party, month="2025-07")
                assert alone.net_fen == {party: expected}
                assert sorted(stated(alone)) == sorted(
                    line for line in stated(everyone) if line[2] == party
                )


def test_the_cli_writes_lines_and_totals_that_match_the_ledger(
    ledger_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "statement"
    arguments = ["--ledger", str(ledger_path), "--month", "2025-07", "--party", "owner:"]
    assert main(["statement", *arguments, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "7 lines over 4 periods, 2 parties" in printed
    assert "owner:S1 -0.73 CNY" in printed
    with (out / "statement.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == STATEMENT_CSV_COLUMNS
        rows = list(reader)
    document = json.loads((out / "statement.json").read_text(encoding="utf-8"))
    assert document["lines"] == len(rows) == 7
    assert document["periods"] == list(JULY)
    assert rows[0] == {
        "period": JUL16_MPC,
        "session_id": "S1",
        "kind": "charging",
        "party": "owner:S1",
        "counterparty": "operator:site-7",
        "stream": "charging",
        "energy_kwh": "20.000",
        "rate": "0.3501",
        "amount_cny": "-7.00",
        "cause": "c",
    }
    with Ledger.open(ledger_path) as ledger:
        balances = [ledger.balances(period) for period in JULY]
        totals = [total for period in JULY for total in ledger.totals(period)]
    for party in ("owner:S1", "owner:S2"):
        net_fen = sum(balance[party] for balance in balances if party in balance)
        assert document["net_cny"][party] == str(fen_to_cny(net_fen))
        in_csv = sum(Decimal(row["amount_cny"]) for row in rows if row["party"] == party)
        assert in_csv == fen_to_cny(net_fen)
        for stream in ("charging", "discharge", "demand_response"):
            mine = [t for t in totals if (t.party, t.stream) == (party, stream)]
            stated_totals = [
                t for t in document["totals"] if (t["party"], t["stream"]) == (party, stream)
            ]
            if not mine:
                assert stated_totals == []
                continue
            assert stated_totals[0]["received_cny"] == str(
                fen_to_cny(sum(t.received_fen for t in mine))
            )
            assert stated_totals[0]["paid_cny"] == str(fen_to_cny(sum(t.paid_fen for t in mine)))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"month": "2025-13"}, r"^field month: '2025-13' is not a month YYYY-MM$"),
        ({"month": "2025-7"}, r"^field month: '2025-7' is not a month YYYY-MM$"),
        ({"day": "20250716"}, r"^field day: '20250716' is not a day YYYY-MM-DD$"),
        ({"day": "2025-07-32"}, r"^field day: '2025-07-32' is not a day YYYY-MM-DD$"),
        ({"day": "2025-02-29"}, r"^field day: '2025-02-29' is not a day YYYY-MM-DD$"),
        ({}, r"^give exactly one of a month \(YYYY-MM\) and a day \(YYYY-MM-DD\)$"),
        ({"month": "2025-07", "day": "2025-07-16"}, r"^give exactly one of a month"),
        ({"month": "2025-09"}, r"ledger\.sqlite: field month: has no period posted for 2025-09$"),
        ({"day": "2025-07-18"}, r"ledger\.sqlite: field day: has no period posted for 2025-07-18$"),
        (
            {"month": "2025-07", "city": "Atlantis"},
            r"field city: has no period of 2025-07 for city 'Atlantis' "
            r"\(posted: Guangzhou, Shenzhen\)$",
        ),
        (
            {"day": "2025-07-17", "planner": "tou"},
            r"field planner: has no period of 2025-07-17 for planner 'tou' \(posted: mpc\)$",
        ),
        (
            {"month": "2025-07", "party": "owner:S9"},
            r"ledger\.sqlite: field party: has no line for party 'owner:S9' in 2025-07 "
            r"\(a group is written with a trailing colon, e.g. owner:\)$",
        ),
        ({"month": "2025-07", "party": " "}, r"^field party: must not be empty"),
    ],
)
def test_bad_input_is_refused_with_a_message_naming_the_field(
    ledger_path: Path, arguments: dict[str, str], message: str
) -> None:
    selection: dict[str, Any] = {"party": "owner:S1", **arguments}
    with pytest.raises(InputError, match=message):
        statement(ledger_path, **selection)


def test_a_missing_or_foreign_ledger_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.sqlite"
    with pytest.raises(InputError, match=r"nowhere\.sqlite: no such ledger file$"):
        statement(missing, party=None, month="2025-07")
    assert not missing.exists()
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database, but long enough to have a header " * 4, encoding="utf-8")
    with pytest.raises(InputError, match=r"notes\.sqlite: cannot read the ledger \("):
        statement(text, party=None, month="2025-07")
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    with pytest.raises(InputError, match=r"empty\.sqlite: is not a v2ghub ledger of schema"):
        statement(empty, party=None, month="2025-07")


def test_the_cli_refuses_bad_input_with_one_line_and_writes_nothing(
    ledger_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "statement"
    arguments = ["--ledger", str(ledger_path), "--month", "2025-13", "--out", str(out)]
    assert main(["statement", *arguments]) == 2
    assert capsys.readouterr().err == "error: field month: '2025-13' is not a month YYYY-MM\n"
    assert not out.exists()
    with pytest.raises(SystemExit) as raised:  # argparse: --month and --day exclude each other
        main(["statement", *arguments, "--day", "2025-07-16"])
    assert raised.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
