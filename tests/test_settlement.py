"""Settlement: every stream by hand, exact splits, contracts, rates, and a whole run settled."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2ghub.cli import main
from v2ghub.errors import InputError
from v2ghub.settlement.contracts import Contracts, Shares
from v2ghub.settlement.kpis import pilot_kpis
from v2ghub.settlement.meter import METER_COLUMNS, meter_lines
from v2ghub.settlement.money import amount_fen, price_nano
from v2ghub.settlement.rates import rate_cards
from v2ghub.settlement.settle import period_totals
from v2ghub.settlement.streams import (
    LineColumns,
    Parties,
    add_shared_revenue,
    joined_parties,
    scaled_rate_nano,
    sorted_codes,
    split_fen,
)

SHENZHEN = rate_cards(["Shenzhen"])["Shenzhen"]


def _meter(rows: list[tuple[str, str, str, str, str, str, int, int]]) -> pa.Table:
    names = METER_COLUMNS
    columns = list(zip(*rows, strict=True))
    return pa.table(
        {
            name: pa.array(column, type=pa.int64() if name.endswith("_wh") else pa.string())
            for name, column in zip(names, columns, strict=True)
        }
    )


def _by_kind(lines: LineColumns) -> dict[str, tuple[str, str, int]]:
    kinds = lines.column("kind").tolist()
    session = lines.column("session_id").tolist()
    return {
        f"{s}/{k}": (p, q, int(a))
        for s, k, p, q, a in zip(
            session,
            kinds,
            lines.column("payer").tolist(),
            lines.column("payee").tolist(),
            lines.column("amount_fen").tolist(),
            strict=True,
        )
    }


def test_charging_discharge_and_wear_by_hand() -> None:
    # S1 at a public station: 20.5 kWh in the valley at 0.2470 (5.0635 -> 5.06 CNY) and
    # 3.333 kWh at peak at 1.105 (3.683 -> 3.68); it discharged 10 kWh at peak for 0.7701
    # CNY/kWh (7.701 -> 7.70 CNY, the grid pays the aggregator), shared 70/20/10:
    # owner 5.39, operator 1.54, aggregator 0.77. Wear: 10 kWh x 0.2 = 2.00 CNY.
    meter = _meter(
        [
            ("S1", "P7", "public", "valley", "0.2470", "0.1", 20_500, 0),
            ("S1", "P7", "public", "peak", "1.105", "0.7701", 3_333, 10_000),
        ]
    )
    lines = meter_lines(meter, card=SHENZHEN, contracts=Contracts())
    got = _by_kind(lines)
    assert got["S1/charging:valley:0.2470"] == ("owner:S1", "grid", 506)
    assert got["S1/charging:peak:1.105"] == ("owner:S1", "grid", 368)
    assert got["S1/discharge:peak:0.7701"] == ("grid", "aggregator", 770)
    assert got["S1/discharge:peak:0.7701:owner-share"] == ("aggregator", "owner:S1", 539)
    assert got["S1/discharge:peak:0.7701:operator-share"] == ("aggregator", "operator:P7", 154)
    assert got["S1/degradation"] == ("aggregator", "owner:S1", 200)
    assert lines.fees_fen == {"discharge": 77}
    assert len(got) == 6


def test_home_discharge_keeps_no_operator_share() -> None:
    # At home the owner keeps 90%: 1.00 CNY -> owner 0.90, aggregator 0.10, no operator line.
    meter = _meter([("H1", "home-1", "home", "peak", "1", "1", 0, 1_000)])
    got = _by_kind(meter_lines(meter, card=SHENZHEN, contracts=Contracts()))
    assert got["H1/discharge:peak:1:owner-share"] == ("aggregator", "owner:H1", 90)
    assert "H1/discharge:peak:1:operator-share" not in got


def test_lines_without_text_pay_the_same_and_say_nothing() -> None:
    # The simulate report's totals need no text: the same lines, amounts and parties.
    meter = _meter(
        [
            ("S2", "P7", "public", "valley", "0.2470", "0.1", 20_500, 0),
            ("S1", "P7", "public", "peak", "1.105", "0.7701", 3_333, 10_000),
            ("H1", "home-1", "home", "peak", "1", "1", 0, 1_000),
        ]
    )
    full = meter_lines(meter, card=SHENZHEN, contracts=Contracts())
    bare = meter_lines(meter, card=SHENZHEN, contracts=Contracts(), texts=False)
    for name in ("payer", "payee", "stream", "energy_wh", "amount_fen"):
        assert bare.column(name).tolist() == full.column(name).tolist(), name
    assert bare.fees_fen == full.fees_fen == {"discharge": 77 + 10}
    assert (
        full.column("cause").tolist()[0] == "charged 20.500 kWh in valley hours at 0.2470 CNY/kWh"
    )
    for name in ("session_id", "cause"):
        with pytest.raises(ValueError, match=f"made without their text: no '{name}' column"):
            bare.column(name)


@given(
    st.lists(st.text(alphabet="abc:", max_size=4), max_size=30),
    st.lists(st.lists(st.text(alphabet="abc:;", max_size=4), max_size=5), max_size=3),
    st.sampled_from(["", "a:", "ab", "owner:"]),
)
def test_joined_parties_are_the_distinct_ids_of_every_line(
    owners: list[str], others: list[list[str]], prefix: str
) -> None:
    # The largest vocabulary sorted and distinct (a meter's owners, kept as a prefix and
    # names) is merged with the others by bisection; any other case by encoding: the same
    # codes either way.
    big = np.unique(np.array(owners, dtype=str))
    columns = [
        [Parties.each(big, prefix=prefix), Parties.same("grid", 2)],
        [Parties.of(np.array(names, dtype=str)) for names in others if names],
    ]
    vocabulary, (first, second) = joined_parties(*columns)
    distinct = vocabulary.text()
    ids = [chunk.text().tolist() for column in columns for chunk in column]
    every = [party for chunk in ids for party in chunk]
    assert distinct.tolist() == sorted(set(every))
    assert distinct[np.concatenate((first, second))].tolist() == every
    for party in [*every, "a", "a:", "a;", "owner", "zz"]:
        code = vocabulary.code(party)
        assert code == (distinct.tolist().index(party) if party in every else -1)
    members = sorted(vocabulary.codes_from("a:", "a;").tolist())
    assert members == [k for k, party in enumerate(distinct) if party.startswith("a:")]


def test_an_owner_whose_lines_round_to_nothing_is_not_counted() -> None:
    # Z1 drew 10 Wh at 0.247 CNY/kWh: 0.247 fen, no line; so it is no owner of the period.
    meter = _meter(
        [
            ("S1", "P7", "public", "valley", "0.2470", "0.1", 20_500, 0),
            ("Z1", "P7", "public", "valley", "0.2470", "0.1", 10, 0),
        ]
    )
    kpis = pilot_kpis(
        city="Shenzhen",
        planner="tou",
        peak_discharge_kw=0.0,
        discharged_kwh_per_day=0.0,
        valley_share=1.0,
        valley_share_private=1.0,
    )
    bare = meter_lines(meter, card=SHENZHEN, contracts=Contracts(), texts=False)
    owners = period_totals(bare, kpis=kpis)["owners"]
    assert owners["count"] == 1
    assert owners["net_cny_total"] == "-5.06"


@given(st.lists(st.text(max_size=6), max_size=40))
def test_sorted_codes_are_numpys_unique(values: list[str]) -> None:
    array = np.array(values, dtype=str)
    distinct, codes = sorted_codes(array)
    expected, inverse = np.unique(array, return_inverse=True)
    assert distinct.tolist() == expected.tolist()
    assert codes.tolist() == inverse.reshape(-1).tolist()
    assert distinct[codes].tolist() == array.tolist()


def test_demand_response_and_regulation_by_hand() -> None:
    lines = LineColumns.empty()
    station = Shares(owner=Decimal(70), operator=Decimal(20), aggregator=Decimal(10))
    # Demand response: 12.345 kWh delivered against the baseline at Shenzhen's 5 CNY/kWh
    # = 61.725 -> 61.73 CNY; owner 43.211 -> 43.21, operator 12.346 -> 12.34 (+1 fen by
    # the largest remainder: 0.6 of a fen beats the owner's 0.1 and aggregator's 0.3).
    rate = SHENZHEN.demand_response_cny_per_kwh
    revenue = amount_fen(np.array([12_345]), price_nano([rate]))
    assert revenue.tolist() == [6173]
    add_shared_revenue(
        lines,
        stream="demand_response",
        session_id=np.array(["S1"]),
        kind=np.array(["dr:event-1"]),
        owner=np.array(["owner:S1"]),
        operator=np.array(["operator:P7"]),
        quantity=np.array([12_345]),
        rate=np.array([str(rate)]),
        revenue_fen=revenue,
        share_index=np.array([0]),
        table=[station],
        cause=np.array(["event 1"]),
    )
    got = _by_kind(lines)
    assert got["S1/dr:event-1:owner-share"][2] == 4321
    assert got["S1/dr:event-1:operator-share"][2] == 1235
    assert lines.fees_fen["demand_response"] == 6173 - 4321 - 1235 == 617
    # Regulation capacity: 2.5 MW offered for 1 h at 10 CNY/MW-h with a score of 0.9
    # = 22.50 CNY; quantity in kW-h (thousandths of a MW-h), the rate scaled by the score.
    capacity = amount_fen(
        np.array([2_500]),
        scaled_rate_nano(SHENZHEN.regulation_capacity_cny_per_mw_h, np.array([0.9])),
    )
    assert capacity.tolist() == [2250]
    # Mileage: 37.2 MW moved at 12 CNY/MW with a score of 0.85 = 379.44 CNY.
    mileage = amount_fen(
        np.array([37_200]),
        scaled_rate_nano(SHENZHEN.regulation_mileage_cny_per_mw, np.array([0.85])),
    )
    assert mileage.tolist() == [37944]


@given(
    revenue=st.lists(st.integers(0, 10**9), min_size=1, max_size=30),
    owner=st.integers(0, 100),
    operator=st.integers(0, 100),
)
def test_shares_add_up_to_the_revenue_to_the_fen(
    revenue: list[int], owner: int, operator: int
) -> None:
    operator = min(operator, 100 - owner)
    shares = Shares(
        owner=Decimal(owner), operator=Decimal(operator), aggregator=Decimal(100 - owner - operator)
    )
    fen = np.array(revenue, dtype=np.int64)
    parts = split_fen(fen, np.zeros(fen.size, dtype=np.int64), [shares])
    np.testing.assert_array_equal(parts.sum(axis=1), fen)
    exact = fen[:, None] * np.array([owner, operator, 100 - owner - operator]) / 100
    assert np.all(np.abs(parts - exact) < 1.0)
    assert np.all(parts >= 0)


def test_contract_shares_must_make_one_hundred(tmp_path: Path) -> None:
    path = tmp_path / "contracts.toml"
    path.write_text(
        '[[contract]]\nmatch = "*"\n[[contract]]\nmatch = "public"\n'
        "discharge = { owner = 70, operator = 20, aggregator = 5 }\n",
        encoding="utf-8",
    )
    with pytest.raises(
        InputError, match=r"contracts.toml: row 2, field discharge: shares add up to 95%"
    ):
        Contracts.load(path)


def test_unknown_contract_party_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "contracts.toml"
    path.write_text(
        '[[contract]]\nmatch = "home"\ndischarge = { owner = 90, landlord = 10 }\n',
        encoding="utf-8",
    )
    with pytest.raises(InputError, match=r"row 1, field discharge.landlord: unknown party"):
        Contracts.load(path)


def test_a_site_contract_wins_over_its_kind(tmp_path: Path) -> None:
    path = tmp_path / "contracts.toml"
    path.write_text(
        '[[contract]]\nmatch = "P7"\ndischarge = { owner = 50, operator = 50 }\n'
        '[[contract]]\nmatch = "public"\n'
        "discharge = { owner = 60, operator = 30, aggregator = 10 }\n",
        encoding="utf-8",
    )
    index, table = Contracts.load(path).shares(
        "discharge",
        site_id=np.array(["P7", "P8", "home-1"]),
        charger_kind=np.array(["public", "public", "home"]),
    )
    chosen = [table[i] for i in index]
    assert [s.owner for s in chosen] == [Decimal(50), Decimal(60), Decimal(90)]


def test_negative_rate_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rates.toml"
    path.write_text('[cities.Shenzhen]\ndemand_response_cny_per_kwh = "-1"\n', encoding="utf-8")
    with pytest.raises(
        InputError, match=r"rates.toml: field cities.Shenzhen.demand_response_cny_per_kwh"
    ):
        rate_cards(["Shenzhen"], overrides=path)


def test_overridden_rate_names_its_file(tmp_path: Path) -> None:
    path = tmp_path / "rates.toml"
    path.write_text('[cities.Kunming]\ndemand_response_cny_per_kwh = "2.2"\n', encoding="utf-8")
    card = rate_cards(["Kunming"], overrides=path)["Kunming"]
    assert card.demand_response_cny_per_kwh == Decimal("2.2")
    assert card.sources["demand_response"] == f"rates file {path}"
    assert "demand_response" not in card.assumed
    assert "demand_response" in rate_cards(["Kunming"])["Kunming"].assumed


def test_pilot_kpis_by_hand() -> None:
    # 0.3 MWh a day is 109.5 MWh a year (>= 100); 480 kW of discharge misses 500.
    kpis = pilot_kpis(
        city="Shenzhen",
        planner="mpc",
        peak_discharge_kw=480.0,
        discharged_kwh_per_day=300.0,
        valley_share=0.61,
        valley_share_private=0.79,
    )
    assert kpis.discharged_mwh_per_year == pytest.approx(109.5)
    assert kpis.passes == {
        "discharge_capacity": False,
        "discharged_energy": True,
        "valley_share": True,
        "valley_share_private": False,
    }
    assert not kpis.all_pass


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    args = ["simulate", "--out", str(out), "--vehicles", "80", "--cities", "Shenzhen,Haikou"]
    assert main([*args, "--planners", "tou,v2g-rules", "--quiet"]) == 0
    return out


def test_a_run_settles_balanced_and_states_every_line(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "settled"
    assert main(["settle", str(run_dir), "--out", str(out)]) == 0
    document = json.loads((out / "settlement.json").read_text(encoding="utf-8"))
    assert document["balanced"] is True
    assert sorted(document["periods"]) == [
        "2025-07-16/Haikou/tou",
        "2025-07-16/Haikou/v2g-rules",
        "2025-07-16/Shenzhen/tou",
        "2025-07-16/Shenzhen/v2g-rules",
    ]
    with (out / "statements.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    # Both sides of every line: the statement amounts cancel to the fen.
    assert sum(Decimal(r["amount_cny"]) for r in rows) == 0
    # What the owners paid for charging is the twin's bill for it, line by line.
    sessions = pq.read_table(run_dir / "sessions.parquet").to_pylist()
    meter = pq.read_table(run_dir / "meter.parquet").to_pylist()
    tou = [r for r in rows if r["period"] == "2025-07-16/Shenzhen/tou" and r["party"] == "grid"]
    charged = sum(Decimal(r["amount_cny"]) for r in tou)
    bills = sum(
        s["bill_fen"] for s in sessions if s["city"] == "Shenzhen" and s["planner"] == "tou"
    )
    assert charged == Decimal(bills) / 100
    exports = [m for m in meter if m["planner"] == "v2g-rules" and m["export_wh"] > 0]
    assert exports  # the rules discharged, so discharge lines exist
    discharge = [r for r in rows if r["stream"] == "discharge" and r["counterparty"] == "grid"]
    assert sum(Decimal(r["amount_cny"]) for r in discharge if r["party"] == "aggregator") > 0
    # The simulate report settled the same lines, from the lines alone (no ledger).
    in_report = json.loads((run_dir / "settlement.json").read_text(encoding="utf-8"))
    for name, body in document["periods"].items():
        assert in_report["periods"][name]["parties"] == body["parties"]
        assert in_report["periods"][name]["owners"] == body["owners"]
    assert "Who is paid what" in (run_dir / "report.html").read_text(encoding="utf-8")
    period = document["periods"]["2025-07-16/Shenzhen/v2g-rules"]
    assert set(period["kpis"]["passes"]) == {
        "discharge_capacity",
        "discharged_energy",
        "valley_share",
        "valley_share_private",
    }


def test_settling_again_changes_nothing(run_dir: Path, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite"
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["settle", str(run_dir), "--out", str(first), "--ledger", str(ledger)]) == 0
    assert main(["settle", str(run_dir), "--out", str(second), "--ledger", str(ledger)]) == 0
    one = json.loads((first / "settlement.json").read_text(encoding="utf-8"))
    two = json.loads((second / "settlement.json").read_text(encoding="utf-8"))
    for period, body in two["periods"].items():
        assert body["posted"]["new"] == 0
        assert body["posted"]["corrected"] == 0
        assert body["posted"]["unchanged"] == one["periods"][period]["posted"]["new"]
        assert body["parties"] == one["periods"][period]["parties"]


def test_settle_refuses_a_folder_that_is_no_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["settle", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "summary.json: not found: settle reads the output folder of `v2ghub simulate`" in (
        capsys.readouterr().err
    )


def test_settle_refuses_an_unknown_planner(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["settle", str(run_dir), "--out", str(tmp_path / "o"), "--planners", "lp"])
    assert code == 2
    assert "planner(s) lp not in this run (it has tou, v2g-rules)" in capsys.readouterr().err


def test_negative_metered_energy_is_refused_and_nothing_is_posted(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("summary.json", "curves.csv"):
        (broken / name).write_bytes((run_dir / name).read_bytes())
    meter = pq.read_table(run_dir / "meter.parquet")
    export = meter.column("export_wh").to_numpy().copy()
    export[2] = -5
    index = meter.column_names.index("export_wh")
    pq.write_table(meter.set_column(index, "export_wh", pa.array(export)), broken / "meter.parquet")
    out = tmp_path / "out"
    assert main(["settle", str(broken), "--out", str(out)]) == 2
    assert "meter.parquet: row 3, field export_wh: energy is negative (-5 Wh)" in (
        capsys.readouterr().err
    )
    assert not (out / "ledger.sqlite").exists()


def test_amounts_and_energies_print_exactly() -> None:
    from v2ghub.settlement.streams import cny_text, kwh_text  # noqa: PLC0415

    assert cny_text(np.array([-1205, 7, 0, 100])).tolist() == ["-12.05", "0.07", "0.00", "1.00"]
    assert kwh_text(np.array([12_345, -5, 1_000])).tolist() == ["12.345", "-0.005", "1.000"]
    assert kwh_text(np.array([], dtype=np.int64)).tolist() == []
