"""Regulation committed without a market: paid at the rate card by performance, allocated
by plugged time and shared by contract; worked by hand, settled end to end from a twin
run's ``regulation.json``, and never paid twice when a market sold the hour."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.service_tables import amounts, sessions_table
from v2ghub.cli import main
from v2ghub.report import outputs
from v2ghub.settlement.contracts import SHARED_STREAMS, Contracts
from v2ghub.settlement.rates import rate_cards
from v2ghub.settlement.regulation_hours import CommittedHour
from v2ghub.settlement.service_lines import add_service_lines
from v2ghub.settlement.streams import LineColumns

SHENZHEN = rate_cards(["Shenzhen"])["Shenzhen"]
LOCAL = timezone(timedelta(hours=8))
DAY = datetime(2025, 7, 16, tzinfo=LOCAL)
HOUR_10 = CommittedHour(
    city="Shenzhen",
    planner="v2g-rules",
    start=DAY.replace(hour=10),
    capacity_kw=250,
    mileage_kw=3_200,
    performance=Decimal("0.8"),
)
CAPACITY_ID = "regulation:capacity:2025-07-16T10:00:00+08:00"
MILEAGE_ID = "regulation:mileage:2025-07-16T10:00:00+08:00"
PERIOD = "2025-07-16/Shenzhen/v2g-rules"
SIMULATE = ["simulate", "--vehicles", "300", "--cities", "Shenzhen", "--planners", "v2g-rules"]


def test_an_hour_is_paid_capacity_and_mileage_by_performance() -> None:
    # Shenzhen's card: 10 CNY/MW-h capacity, 12 CNY/MW mileage (placeholders, assumed).
    # 0.250 MW x 1 h x 10 x 0.8 = 2.00 CNY; 3.200 MW x 12 x 0.8 = 30.72 CNY.
    assert SHENZHEN.regulation_capacity_cny_per_mw_h == Decimal(10)
    assert SHENZHEN.regulation_mileage_cny_per_mw == Decimal(12)
    capacity, mileage = HOUR_10.payments(SHENZHEN)
    assert (capacity.payment_id, capacity.stream, capacity.amount_fen) == (
        CAPACITY_ID,
        "regulation_capacity",
        200,
    )
    assert (mileage.payment_id, mileage.stream, mileage.amount_fen) == (
        MILEAGE_ID,
        "regulation_mileage",
        3_072,
    )
    assert capacity.summary == (
        "regulation 10:00-11:00 committed without a market (0.250 MW for 1 h at 10 CNY/MW-h, "
        "performance 0.8: 2.00 CNY)"
    )
    # Rounded once, half away from zero: 0.001 MW x 10 x 0.625 = 0.00625 CNY -> 0.01.
    tiny = CommittedHour(
        city="Shenzhen",
        planner="v2g-rules",
        start=DAY,
        capacity_kw=1,
        mileage_kw=0,
        performance=Decimal("0.625"),
    )
    assert [p.amount_fen for p in tiny.payments(SHENZHEN)] == [1, 0]


def test_the_payments_are_shared_by_plugged_time_and_contract() -> None:
    # Plugged in during 10:00-11:00: A 60 min, B 30 min (from 10:30), D 15 min (until
    # 10:15); C arrives at 11:00, outside. Capacity 200 fen over 105 vehicle-minutes:
    # 114.29 / 57.14 / 28.57 -> 114 / 57 / 28, the fen left to D (0.57): 114 / 57 / 29.
    # A public 70/20/10 of 114: 79.8 / 22.8 / 11.4 -> 79 / 22 / 11, the 2 fen left to the
    # owner and the operator (0.8 each, owner first): 80 / 23 / 11. D at home 90/0/10 of
    # 29: 26.1 / 0 / 2.9 -> 26 / 0 / 2, the fen left to the aggregator: 26 / 0 / 3.
    # Mileage 3072 fen: 1755.43 / 877.71 / 438.86 -> 1755 / 877 / 438, the 2 fen left to
    # D (0.86) and B (0.71): 1755 / 878 / 439.
    lines = LineColumns.empty()
    add_service_lines(
        lines,
        sessions=sessions_table(
            DAY,
            [
                ("A", "P1", "public", 9, 12, 0.0),
                ("B", "P1", "public", 10.5, 13, 0.0),
                ("C", "P1", "public", 11, 14, 0.0),
                ("D", "home-4", "home", 8, 10.25, 0.0),
            ],
        ),
        sales=[],
        card=SHENZHEN,
        contracts=Contracts(),
        payments=HOUR_10.payments(SHENZHEN),
    )
    got = amounts(lines)
    assert got[f"A/{CAPACITY_ID}"] == ("grid", "aggregator", 114)
    assert got[f"B/{CAPACITY_ID}"] == ("grid", "aggregator", 57)
    assert got[f"D/{CAPACITY_ID}"] == ("grid", "aggregator", 29)
    assert got[f"A/{CAPACITY_ID}:owner-share"] == ("aggregator", "owner:A", 80)
    assert got[f"A/{CAPACITY_ID}:operator-share"] == ("aggregator", "operator:P1", 23)
    assert got[f"D/{CAPACITY_ID}:owner-share"] == ("aggregator", "owner:D", 26)
    assert f"D/{CAPACITY_ID}:operator-share" not in got  # 0 fen: no line
    assert [got[f"{s}/{MILEAGE_ID}"][2] for s in "ABD"] == [1755, 878, 439]
    assert not any(key.startswith("C/") for key in got)
    # Every fen the grid paid is paid out or kept: capacity A 11, B 6 (57 -> 39.9 / 11.4 /
    # 5.7 -> 40 / 11 / 6), D 3.
    assert lines.fees_fen["regulation_capacity"] == 11 + 6 + 3
    amount = lines.column("amount_fen")
    stream = lines.column("stream")
    payer = lines.column("payer")
    for name in ("regulation_capacity", "regulation_mileage"):
        revenue = int(amount[(stream == name) & (payer == "grid")].sum())
        payouts = int(amount[(stream == name) & (payer == "aggregator")].sum())
        assert revenue == payouts + lines.fees_fen[name]
    assert int(amount[(stream == "regulation_mileage") & (payer == "grid")].sum()) == 3_072


def test_an_hour_no_session_served_is_kept_by_the_aggregator() -> None:
    lines = LineColumns.empty()
    add_service_lines(
        lines,
        sessions=sessions_table(DAY, [("C", "P1", "public", 11, 14, 0.0)]),
        sales=[],
        card=SHENZHEN,
        contracts=Contracts(),
        payments=HOUR_10.payments(SHENZHEN),
    )
    assert amounts(lines) == {
        f"{CAPACITY_ID}/kept": ("grid", "aggregator", 200),
        f"{MILEAGE_ID}/kept": ("grid", "aggregator", 3_072),
    }
    assert lines.fees_fen == {"regulation_capacity": 200, "regulation_mileage": 3_072}
    assert (
        lines.column("cause")
        .tolist()[0]
        .endswith("no session was plugged in during the hour, so the aggregator keeps it")
    )


def test_no_regulation_writes_no_file(tmp_path: Path) -> None:
    assert outputs.write_regulation_json(tmp_path / "regulation.json", []) is False
    assert not (tmp_path / "regulation.json").exists()


@pytest.fixture(scope="module")
def regulation_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("regulation") / "run"
    assert main([*SIMULATE, "--regulation", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def market_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("market") / "run"
    assert main([*SIMULATE, "--market", "--out", str(out), "--quiet"]) == 0
    return out


def _settle(run: Path, out: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    assert main(["settle", str(run), "--out", str(out)]) == 0
    document = json.loads((out / "settlement.json").read_text(encoding="utf-8"))
    with (out / "statements.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return document, rows


def _paid_by_grid(rows: list[dict[str, str]], stream: str) -> Decimal:
    """What the aggregator received from the grid in ``stream`` (penalties, paid the other
    way, left out)."""
    received = (
        Decimal(r["amount_cny"])
        for r in rows
        if r["party"] == "aggregator" and r["counterparty"] == "grid" and r["stream"] == stream
    )
    return sum((amount for amount in received if amount > 0), Decimal(0))


def test_a_run_with_regulation_and_no_market_is_paid_its_hours(
    regulation_run: Path, tmp_path: Path
) -> None:
    assert not (regulation_run / "market.json").exists()
    hours = json.loads((regulation_run / "regulation.json").read_text(encoding="utf-8"))["hours"]
    assert [h["start"][11:16] for h in hours] == ["10:00", "11:00", "19:00", "20:00"]
    assert not any(h["sold_in_market"] for h in hours)
    document, rows = _settle(regulation_run, tmp_path / "settled")
    assert document["balanced"] is True
    # What the grid paid is, hour by hour, the file's quantities at Shenzhen's card.
    expected = {"regulation_capacity": Decimal(0), "regulation_mileage": Decimal(0)}
    for h in hours:
        score = Decimal(h["performance"])
        expected["regulation_capacity"] += (Decimal(h["capacity_mw"]) * 10 * score).quantize(
            Decimal("0.01")
        )
        expected["regulation_mileage"] += (Decimal(h["mileage_mw"]) * 12 * score).quantize(
            Decimal("0.01")
        )
    assert all(value > 0 for value in expected.values())
    for stream, total in expected.items():
        assert _paid_by_grid(rows, stream) == total
    period = document["periods"][PERIOD]
    assert {"regulation_capacity", "regulation_mileage"} <= set(period["parties"]["owner"])
    assert set(SHARED_STREAMS) >= set(period["aggregator_fees_cny"])
    # The report's own settlement (written by simulate) pays the same.
    in_report = json.loads((regulation_run / "settlement.json").read_text(encoding="utf-8"))
    assert in_report["periods"][PERIOD]["parties"] == period["parties"]


def test_a_market_run_pays_its_regulation_from_the_market_alone(
    market_run: Path, tmp_path: Path
) -> None:
    sales = json.loads((market_run / "market.json").read_text(encoding="utf-8"))["sales"]
    sold = {s["start"] for s in sales if s["product"] == "regulation"}
    hours = json.loads((market_run / "regulation.json").read_text(encoding="utf-8"))["hours"]
    assert sold
    assert {h["start"] for h in hours if h["sold_in_market"]} == sold
    market_pays = sum(
        (Decimal(s["capacity_cny"]) for s in sales if s["product"] == "regulation"), Decimal(0)
    )
    document, rows = _settle(market_run, tmp_path / "settled")
    assert document["balanced"] is True
    assert _paid_by_grid(rows, "regulation_capacity") == market_pays
    assert _paid_by_grid(rows, "regulation_mileage") == 0
    assert not any("committed without a market" in r["cause"] for r in rows)
    # Even a file that does not say the hours were sold pays nothing twice: market.json
    # sold them.
    unmarked = tmp_path / "unmarked"
    shutil.copytree(market_run, unmarked)
    for h in hours:
        h["sold_in_market"] = False
    (unmarked / "regulation.json").write_text(json.dumps({"hours": hours}), encoding="utf-8")
    _, again = _settle(unmarked, tmp_path / "settled-again")
    assert _paid_by_grid(again, "regulation_capacity") == market_pays
    assert _paid_by_grid(again, "regulation_mileage") == 0


@pytest.mark.parametrize(
    "case",
    [
        ("capacity_mw", "0.2505", "field hours[1].capacity_mw: Decimal input should have no "),
        ("performance", "1.5", "field hours[1].performance: Input should be less than or equal"),
        ("start", "2025-07-16T11:00:00", "field hours[1].start: Input should have timezone info"),
        ("planner", "lp", "field hours[1].city: Shenzhen / lp is no city and planner of this run"),
        (
            "start",
            "2025-07-16T02:00:00Z",
            "field hours[1].start: a second regulation hour at 2025-07-16T02:00:00+00:00",
        ),
    ],
)
def test_a_bad_regulation_file_names_file_and_field(
    regulation_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: tuple[str, str, str],
) -> None:
    field, value, message = case
    broken = tmp_path / "broken"
    shutil.copytree(regulation_run, broken)
    document = json.loads((broken / "regulation.json").read_text(encoding="utf-8"))
    document["hours"][1][field] = value  # 10:00 local is 02:00 UTC: the same hour as [0]
    (broken / "regulation.json").write_text(json.dumps(document), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["settle", str(broken), "--out", str(out)]) == 2
    assert f"{broken / 'regulation.json'}: {message}" in capsys.readouterr().err
    assert not (out / "ledger.sqlite").exists()
