"""Settling grid services: demand response per session and the day-ahead market's sales,
worked by hand, balanced for random sales, and a twin run with a market settled end to end."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.service_tables import Session, amounts, sessions_table
from v2ghub.cli import main
from v2ghub.settlement.contracts import SHARED_STREAMS, Contracts
from v2ghub.settlement.ledger import Ledger
from v2ghub.settlement.rates import rate_cards
from v2ghub.settlement.service_lines import (
    KEPT_KIND,
    PENALTY_KIND,
    MarketSale,
    add_service_lines,
    allocate_fen,
)
from v2ghub.settlement.settle import ledger_lines
from v2ghub.settlement.streams import LineColumns

SHENZHEN = rate_cards(["Shenzhen"])["Shenzhen"]
LOCAL = timezone(timedelta(hours=8))
DAY = datetime(2025, 7, 16, tzinfo=LOCAL)
REGULATION_10H = MarketSale(
    city="Shenzhen",
    planner="v2g-rules",
    start=DAY.replace(hour=10),
    product="regulation",
    sold_kw=200,
    price_cny_per_mw_h=Decimal(5),
    performance=Decimal("1"),
    missed_kw=Decimal("50"),
    capacity_fen=100,
    penalty_fen=25,
)
REGULATION_ID = "market:regulation:2025-07-16T10:00:00+08:00"


def _settle(rows: list[Session], sales: list[MarketSale]) -> LineColumns:
    lines = LineColumns.empty()
    add_service_lines(
        lines, sessions=sessions_table(DAY, rows), sales=sales, card=SHENZHEN, contracts=Contracts()
    )
    return lines


def test_called_demand_response_by_hand() -> None:
    # Shenzhen pays 5 CNY/kWh. S1 delivered 1.234 kWh: 6.17 CNY, shared 70/20/10 at a
    # public station: 431.9 / 123.4 / 61.7 fen, cut down 431 / 123 / 61, the 2 fen left
    # to the largest remainders (owner 0.9, aggregator 0.7): 432 / 123 / 62. S2: 0.5 kWh
    # = 2.50 CNY, 175 / 50 / 25 exactly. S3 delivered nothing and has no line.
    assert Decimal(5) == SHENZHEN.demand_response_cny_per_kwh
    lines = _settle(
        [
            ("S1", "P7", "public", 17, 20, 1.234),
            ("S2", "P7", "public", 17, 20, 0.5),
            ("S3", "P7", "public", 17, 20, 0.0),
        ],
        [],
    )
    assert amounts(lines) == {
        "S1/demand_response": ("grid", "aggregator", 617),
        "S1/demand_response:owner-share": ("aggregator", "owner:S1", 432),
        "S1/demand_response:operator-share": ("aggregator", "operator:P7", 123),
        "S2/demand_response": ("grid", "aggregator", 250),
        "S2/demand_response:owner-share": ("aggregator", "owner:S2", 175),
        "S2/demand_response:operator-share": ("aggregator", "operator:P7", 50),
    }
    assert lines.fees_fen == {"demand_response": 62 + 25}
    assert lines.column("energy_wh").tolist()[:1] == [1234]
    assert lines.column("cause").tolist()[0] == (
        "demand response delivered below the baseline: 1.234 kWh at 5 CNY/kWh"
    )


def test_regulation_sale_is_shared_by_plugged_time() -> None:
    # 1.00 CNY for 10:00-11:00. Plugged in the hour: A 60 min, B 30 min (from 10:30),
    # D 15 min (until 10:15); C arrives at 11:00, outside. Of 105 vehicle-minutes:
    # A 57.14, B 28.57, D 14.29 fen -> 57 / 28 / 14 and the fen left to B (0.57): 57 / 29 /
    # 14. A's 57 at a public station: 39.9 / 11.4 / 5.7 -> owner 40, operator 11, own 6.
    # D is at home: 14 -> owner 12.6 / aggregator 1.4 -> 13 / 1.
    lines = _settle(
        [
            ("A", "P1", "public", 9, 12, 0.0),
            ("B", "P1", "public", 10.5, 13, 0.0),
            ("C", "P1", "public", 11, 14, 0.0),
            ("D", "home-4", "home", 8, 10.25, 0.0),
        ],
        [REGULATION_10H],
    )
    got = amounts(lines)
    assert got[f"A/{REGULATION_ID}"] == ("grid", "aggregator", 57)
    assert got[f"B/{REGULATION_ID}"] == ("grid", "aggregator", 29)
    assert got[f"D/{REGULATION_ID}"] == ("grid", "aggregator", 14)
    assert got[f"A/{REGULATION_ID}:owner-share"] == ("aggregator", "owner:A", 40)
    assert got[f"A/{REGULATION_ID}:operator-share"] == ("aggregator", "operator:P1", 11)
    assert got[f"D/{REGULATION_ID}:owner-share"] == ("aggregator", "owner:D", 13)
    assert not any(key.startswith("C/") for key in got)
    # The penalty: 0.25 CNY from the aggregator to the grid, not shared.
    assert got[f"{REGULATION_ID}/{PENALTY_KIND}"] == ("aggregator", "grid", 25)
    # The aggregator's own: A 6, B 3 (29 -> 20.3 / 5.8 / 2.9 -> 20 / 6 / 3), D 1.
    assert lines.fees_fen == {"regulation_capacity": 6 + 3 + 1}
    assert set(lines.column("stream").tolist()) == {"regulation_capacity"}


def test_demand_response_sale_is_shared_by_delivered_energy_and_never_paid_twice() -> None:
    # 10.01 CNY for demand response 18:00-19:00. Plugged in that hour, S1 delivered 3 kWh
    # and S2 1 kWh: 1001 * 3/4 = 750.75 and 250.25 fen -> 750 / 250, the fen left to S1:
    # 751 / 250. Neither gets the 5 CNY/kWh of a called event for that energy. S3
    # delivered 2 kWh at noon, outside the sold hour: a called event's, 2 x 5 = 10.00 CNY.
    sale = replace(
        REGULATION_10H,
        start=DAY.replace(hour=18),
        product="demand_response",
        capacity_fen=1001,
        penalty_fen=40,
    )
    sale_id = "market:demand_response:2025-07-16T18:00:00+08:00"
    lines = _settle(
        [
            ("S1", "P1", "public", 17, 20, 3.0),
            ("S2", "P1", "public", 18.5, 22, 1.0),
            ("S3", "P1", "public", 11, 14, 2.0),
            ("S4", "P1", "public", 17, 20, 0.0),
        ],
        [sale],
    )
    got = amounts(lines)
    assert got[f"S1/{sale_id}"] == ("grid", "aggregator", 751)
    assert got[f"S2/{sale_id}"] == ("grid", "aggregator", 250)
    assert got["S3/demand_response"] == ("grid", "aggregator", 1000)
    assert f"S3/{sale_id}" not in got
    assert "S1/demand_response" not in got
    assert "S2/demand_response" not in got
    assert not any(key.startswith("S4/") for key in got)
    assert got[f"{sale_id}/{PENALTY_KIND}"] == ("aggregator", "grid", 40)
    cause = str(lines.column("cause")[lines.column("kind") == sale_id][0])  # S1's
    assert cause.startswith("demand response 18:00-19:00 sold in the day-ahead market")
    assert cause.endswith("shared by energy delivered: 3.000 of 4.000 kWh")


def test_a_sale_no_session_qualifies_for_stays_with_the_aggregator() -> None:
    lines = _settle([("A", "P1", "public", 12, 14, 0.0)], [REGULATION_10H])
    got = amounts(lines)
    assert got == {
        f"{REGULATION_ID}/{KEPT_KIND}": ("grid", "aggregator", 100),
        f"{REGULATION_ID}/{PENALTY_KIND}": ("aggregator", "grid", 25),
    }
    assert lines.fees_fen == {"regulation_capacity": 100}
    assert (
        lines.column("cause")
        .tolist()[0]
        .endswith("no session was plugged in during the hour, so the aggregator keeps it")
    )


def test_allocation_adds_up_and_refuses_nothing_to_weigh() -> None:
    assert allocate_fen(10, np.array([1, 1, 1])).tolist() == [4, 3, 3]
    assert allocate_fen(0, np.array([5, 0])).tolist() == [0, 0]
    with pytest.raises(ValueError, match="not all 0"):
        allocate_fen(10, np.array([0, 0]))


def test_a_sale_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="start must be timezone-aware"):
        replace(REGULATION_10H, start=datetime(2025, 7, 16, 10))  # noqa: DTZ001


_SESSION = st.tuples(
    st.sampled_from([("P1", "public"), ("W2", "workplace"), ("home-3", "home")]),
    st.integers(0, 47).map(lambda q: q / 2),  # arrival, local hour
    st.integers(0, 24).map(lambda q: q / 4),  # how long it stays, hours
    st.floats(0, 40, allow_nan=False),  # delivered kWh
)
_SALE = st.tuples(
    st.sampled_from(["regulation", "demand_response"]),
    st.integers(0, 23),  # hour
    st.integers(0, 10**7),  # capacity fen
    st.integers(0, 10**6),  # penalty fen
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_SESSION, max_size=8), st.lists(_SALE, max_size=6, unique_by=lambda s: s[:2]))
def test_ledger_balances_to_the_fen_for_random_sales(
    sessions: list[tuple[tuple[str, str], float, float, float]],
    sales: list[tuple[str, int, int, int]],
) -> None:
    rows = [
        (f"S{i}", site, kind, arrival, arrival + stay, kwh)
        for i, ((site, kind), arrival, stay, kwh) in enumerate(sessions)
    ]
    typed = [
        replace(
            REGULATION_10H,
            product="regulation" if product == "regulation" else "demand_response",
            start=DAY.replace(hour=hour),
            capacity_fen=capacity,
            penalty_fen=penalty,
        )
        for product, hour, capacity, penalty in sales
    ]
    columns = _settle(rows, typed)
    lines = ledger_lines(columns)
    with Ledger.open(":memory:") as ledger:
        ledger.post("2025-07-16/Shenzhen/v2g-rules", lines)
        assert sum(ledger.balances("2025-07-16/Shenzhen/v2g-rules").values()) == 0
    amount = lines.amount_fen
    payer, payee, stream = (np.asarray(x) for x in (lines.payer, lines.payee, lines.stream))
    from_grid = (payer == "grid") & (payee == "aggregator")
    for name in SHARED_STREAMS:
        revenue = int(amount[from_grid & (stream == name)].sum())
        payouts = int(amount[(payer == "aggregator") & (payee != "grid") & (stream == name)].sum())
        assert revenue == payouts + columns.fees_fen.get(name, 0)
    called = from_grid & (np.asarray(lines.kind) == "demand_response")
    assert int(amount[from_grid & ~called].sum()) == sum(s.capacity_fen for s in typed)
    assert int(amount[payee == "grid"].sum()) == sum(s.penalty_fen for s in typed)


@pytest.fixture(scope="module")
def market_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("market") / "run"
    args = ["simulate", "--vehicles", "300", "--cities", "Shenzhen", "--planners", "v2g-rules"]
    assert main([*args, "--market", "--out", str(out), "--quiet"]) == 0
    return out


def test_a_run_with_a_market_settles_balanced_and_pays_every_sale(
    market_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "settled"
    assert main(["settle", str(market_run), "--out", str(out)]) == 0
    document = json.loads((out / "settlement.json").read_text(encoding="utf-8"))
    assert document["balanced"] is True
    sales = json.loads((market_run / "market.json").read_text(encoding="utf-8"))["sales"]
    assert {s["product"] for s in sales} == {"regulation", "demand_response"}
    with (out / "statements.csv").open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["party"] == "aggregator"]
    market = [r for r in rows if r["counterparty"] == "grid" and "day-ahead market" in r["cause"]]
    penalties = [r for r in rows if r["cause"].startswith("penalty for ")]
    assert sum(Decimal(r["amount_cny"]) for r in market) == sum(
        Decimal(s["capacity_cny"]) for s in sales
    )
    assert -sum(Decimal(r["amount_cny"]) for r in penalties) == sum(
        Decimal(s["penalty_cny"]) for s in sales
    )
    period = document["periods"]["2025-07-16/Shenzhen/v2g-rules"]
    assert {"regulation_capacity", "demand_response"} <= set(period["parties"]["owner"])
    in_report = json.loads((market_run / "settlement.json").read_text(encoding="utf-8"))
    assert in_report["periods"]["2025-07-16/Shenzhen/v2g-rules"]["parties"] == period["parties"]


def test_settling_a_market_run_again_changes_nothing(market_run: Path, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite"
    documents = []
    for name in ("first", "second"):
        out = tmp_path / name
        assert main(["settle", str(market_run), "--out", str(out), "--ledger", str(ledger)]) == 0
        documents.append(json.loads((out / "settlement.json").read_text(encoding="utf-8")))
    one, two = (d["periods"]["2025-07-16/Shenzhen/v2g-rules"] for d in documents)
    assert two["posted"] == {
        "new": 0,
        "unchanged": one["posted"]["new"],
        "corrected": 0,
        "withdrawn": 0,
    }
    assert two["parties"] == one["parties"]
    assert two["aggregator_fees_cny"] == one["aggregator_fees_cny"]


def _broken_copy(run: Path, tmp_path: Path) -> Path:
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    return broken


@pytest.mark.parametrize(
    "case",
    [
        ("capacity_cny", "0.875", "field sales[1].capacity_cny: Decimal input should have no "),
        ("product", "frequency", "field sales[1].product: Input should be 'regulation' or"),
        ("start", "2025-07-16T10:00:00", "field sales[1].start: Input should have timezone info"),
        ("city", "Atlantis", "field sales[1].city: Atlantis / v2g-rules is no city and planner"),
    ],
)
def test_a_bad_market_file_names_file_and_field(
    market_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: tuple[str, str, str],
) -> None:
    field, value, message = case
    broken = _broken_copy(market_run, tmp_path)
    document = json.loads((broken / "market.json").read_text(encoding="utf-8"))
    document["sales"][1][field] = value
    (broken / "market.json").write_text(json.dumps(document), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["settle", str(broken), "--out", str(out)]) == 2
    assert f"{broken / 'market.json'}: {message}" in capsys.readouterr().err
    assert not (out / "ledger.sqlite").exists()


def test_market_json_that_is_not_json_is_refused(
    market_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = _broken_copy(market_run, tmp_path)
    (broken / "market.json").write_text('{"sales": [', encoding="utf-8")
    assert main(["settle", str(broken), "--out", str(tmp_path / "out")]) == 2
    assert f"{broken / 'market.json'}: Invalid JSON" in capsys.readouterr().err


def test_sessions_without_delivered_energy_are_refused(
    market_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = _broken_copy(market_run, tmp_path)
    sessions = pq.read_table(broken / "sessions.parquet").drop_columns(["dr_delivered_kwh"])
    pq.write_table(sessions, broken / "sessions.parquet")
    assert main(["settle", str(broken), "--out", str(tmp_path / "out")]) == 2
    assert f"{broken / 'sessions.parquet'}: field dr_delivered_kwh: missing column" in (
        capsys.readouterr().err
    )
