"""``v2ghub settle --live``: a day of the live store's meter registers, settled to the fen.

The store is a real SQLite ``Store`` filled by hand with TransactionEvents. Prices are
Shenzhen's in March (``data/cities.toml``: base 0.65 CNY/kWh, ratios valley 0.38, flat 1,
peak 1.7; valley 0-8, flat 8-10, 12-14, 19-24, peak 10-12, 14-19; discharge 0.453 CNY/kWh
times the ratio) and the rates of ``data/settlement.toml`` (battery wear 0.2 CNY/kWh); the
public contract shares discharge 70/20/10 (owner/operator/aggregator).

The day (2026-03-10, Asia/Shanghai):

- ``S1/T1`` at site ``depot``: plugged 22:00 the evening before at 1,000 Wh, 9,000 Wh at
  02:00 (8,000 Wh over 4 h: 4,000 Wh before midnight, 4,000 Wh valley on the day), idle
  until 09:00, then 6,000 Wh discharged up to 11:00 (3,000 Wh flat 09-10, 3,000 Wh peak
  10-11).
- ``S2/T2`` at site ``mall``: 4,000 Wh charged 23:00-01:00, 2,000 Wh (flat) on the day.

Amounts (fen, half up): T1 charging 4,000 Wh x 0.247 = 98.8 -> 99; discharge flat 3,000 Wh
x 0.453 = 135.9 -> 136, split 95.2/27.2/13.6 -> 95/27/14 (largest remainder to the
aggregator); discharge peak 3,000 Wh x 0.7701 = 231.03 -> 231, split 161.7/46.2/23.1 ->
162/46/23; wear 6,000 Wh x 0.2 = 120. T2 charging 2,000 Wh x 0.65 = 130.
Net: owner T1 -99 + 95 + 162 + 120 = +278; owner T2 -130; operator depot 27 + 46 = 73;
grid 99 + 130 - 136 - 231 = -138; aggregator 367 - 257 - 73 - 120 = -83.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from v2ghub.cli import main
from v2ghub.errors import InputError
from v2ghub.live.security import hash_password
from v2ghub.scenarios.catalog import pilot_cities
from v2ghub.settlement.ledger import Ledger
from v2ghub.settlement.live_settle import LiveTransaction, settle_live
from v2ghub.store.records import MeterSample, Station
from v2ghub.store.repository import Store

BEIJING = timezone(timedelta(hours=8))
DAY = "2026-03-10"
PERIOD = f"{DAY}/Shenzhen/live"


def local(day: int, hour: int) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=BEIJING)


def post(
    store: Store,
    station_id: str,
    transaction_id: str,
    readings: Sequence[tuple[datetime, int, int]],
) -> None:
    """One TransactionEvent per reading: Started, Updated..., Ended."""
    for seq_no, (at, import_wh, export_wh) in enumerate(readings):
        event_type = (
            "Started" if seq_no == 0 else "Ended" if seq_no == len(readings) - 1 else "Updated"
        )
        store.transaction_event(
            station_id=station_id,
            evse_id=1 if seq_no == 0 else None,
            transaction_id=transaction_id,
            event_type=event_type,
            seq_no=seq_no,
            at=at,
            trigger_reason="MeterValuePeriodic",
            samples=[
                MeterSample(
                    station_id=station_id,
                    transaction_id=transaction_id,
                    seq_no=seq_no,
                    measured_at=at,
                    import_register_wh=import_wh,
                    export_register_wh=export_wh,
                )
            ],
        )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    with Store.open(data_dir=folder) as store:
        password = hash_password("correct horse")
        store.add_station("S1", site_id="depot", password_hash=password, v2x_allowed=True)
        store.add_station("S2", site_id="mall", password_hash=password)
        post(
            store,
            "S1",
            "T1",
            [
                (local(9, 22), 1_000, 0),
                (local(10, 2), 9_000, 0),
                (local(10, 9), 9_000, 0),
                (local(10, 11), 9_000, 6_000),
            ],
        )
        post(store, "S2", "T2", [(local(10, 23), 0, 0), (local(11, 1), 4_000, 0)])
    return folder


def settle_cli(data_dir: Path, out: Path, *extra: str) -> int:
    return main(
        ["settle", "--live", "--data-dir", str(data_dir), "--out", str(out), *extra]
        + (["--day", DAY] if "--day" not in extra else [])
        + (["--city", "shenzhen"] if "--city" not in extra else [])
    )


def statement_rows(out: Path) -> list[dict[str, str]]:
    with (out / "statements.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_live_day_settles_to_the_hand_worked_fen(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert settle_cli(data_dir, out) == 0
    with Ledger.open(out / "ledger.sqlite") as ledger:
        assert ledger.periods() == [PERIOD]
        assert ledger.balances(PERIOD) == {
            "aggregator": -83,
            "grid": -138,
            "operator:depot": 73,
            "owner:S1/T1": 278,
            "owner:S2/T2": -130,
        }
    rows = statement_rows(out)
    paid_by_owner = {
        (r["party"], r["stream"], r["energy_kwh"], r["rate"]): r["amount_cny"]
        for r in rows
        if r["party"].startswith("owner:")
    }
    assert paid_by_owner[("owner:S1/T1", "charging", "4.000", "0.2470")] == "-0.99"
    assert paid_by_owner[("owner:S2/T2", "charging", "2.000", "0.65")] == "-1.30"
    assert paid_by_owner[("owner:S1/T1", "degradation", "6.000", "0.2")] == "1.20"
    document = json.loads((out / "settlement.json").read_text(encoding="utf-8"))
    period = document["periods"][PERIOD]
    assert document["balanced"] is True
    assert period["sessions"] == 2
    assert period["posted"] == {
        "new": len(rows) // 2,
        "unchanged": 0,
        "corrected": 0,
        "withdrawn": 0,
    }
    assert period["parties"]["grid"]["discharge"] == {"received_cny": "0.00", "paid_cny": "3.67"}
    assert "not metered live yet" in document["not_settled"]
    # KPIs: 6 kWh discharged; 3 kWh in the best hour; 4 of 6 kWh charged in the valley.
    assert period["kpis"]["discharge_capacity_kw"] == 3.0
    assert period["kpis"]["valley_share"] == round(4 / 6, 4)


def test_settling_the_day_again_changes_nothing(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert settle_cli(data_dir, out) == 0
    with Ledger.open(out / "ledger.sqlite") as ledger:
        before = ledger.balances()
    assert settle_cli(data_dir, out) == 0
    with Ledger.open(out / "ledger.sqlite") as ledger:
        assert ledger.balances() == before
    posted = json.loads((out / "settlement.json").read_text(encoding="utf-8"))["periods"][PERIOD][
        "posted"
    ]
    assert posted["new"] == posted["corrected"] == posted["withdrawn"] == 0
    assert posted["unchanged"] > 0


def test_consecutive_days_add_up_to_the_transactions(data_dir: Path, tmp_path: Path) -> None:
    """Cut at midnight, the days before and after take the rest: T1's 4,000 Wh flat on the
    9th (22-24) is 260 fen; T2's 2,000 Wh valley on the 11th (0-1) is 49.4 -> 49 fen."""
    ledger_path = tmp_path / "ledger.sqlite"
    for day in ("2026-03-09", DAY, "2026-03-11"):
        out = tmp_path / day
        assert settle_cli(data_dir, out, "--day", day, "--ledger", str(ledger_path)) == 0
    with Ledger.open(ledger_path) as ledger:
        assert ledger.balances("2026-03-09/Shenzhen/live")["owner:S1/T1"] == -260
        assert ledger.balances("2026-03-11/Shenzhen/live") == {
            "grid": 49,
            "owner:S2/T2": -49,
        }
        charged_wh = sum(
            int(energy)
            for period in ledger.periods()
            for energy, stream in zip(
                ledger.latest(period).energy_wh, ledger.latest(period).stream, strict=True
            )
            if stream == "charging"
        )
    assert charged_wh == 8_000 + 4_000


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--day", "2026-04-01"], "no metered transaction of Shenzhen on 2026-04-01"),
        (["--city", "Atlantis"], "unknown city 'Atlantis'; known: "),
        (["--planners", "lp"], "--planners applies to RUN_DIR only"),
    ],
)
def test_the_cli_refuses_in_one_line(
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "out"
    assert settle_cli(data_dir, out, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ")
    assert message in err
    assert "\n" not in err
    assert not (out / "ledger.sqlite").exists()


def test_run_dir_and_live_are_exclusive(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["settle", str(tmp_path), "--live", "--out", str(tmp_path / "o")]) == 2
    assert "RUN_DIR (a simulate run) or --live, exactly one" in capsys.readouterr().err
    assert main(["settle", str(tmp_path), "--day", DAY, "--out", str(tmp_path / "o")]) == 2
    assert "--day apply to --live only" in capsys.readouterr().err


def test_a_data_dir_without_a_database_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert settle_cli(tmp_path / "nowhere", tmp_path / "out") == 2
    assert "no live database here" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


class _Record:
    def __init__(self, station_id: str, transaction_id: str, started_at: datetime) -> None:
        self.station_id = station_id
        self.transaction_id = transaction_id
        self.started_at = started_at
        self.ended_at: datetime | None = None


class _Source:
    """A store whose registers went backwards (the store itself refuses that on write)."""

    def stations(self) -> list[Station]:
        return [Station("S1", "depot", "-", v2x_allowed=True, max_power_kw=11.0)]

    def sessions(self, *, since: datetime | None = None) -> list[LiveTransaction]:
        return [_Record("S1", "T9", local(10, 1))]

    def meter_samples(self, station_id: str, transaction_id: str) -> list[MeterSample]:
        return [
            MeterSample(station_id, transaction_id, seq_no, local(10, hour), wh, 0)
            for seq_no, hour, wh in ((0, 1, 100), (1, 2, 900), (2, 3, 800))
        ]


def test_a_register_going_backwards_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    with pytest.raises(
        InputError,
        match=r"^station S1 transaction T9 seq_no 2: Energy\.Active\.Import\.Register went "
        r"backwards \(800 Wh at 2026-03-09T19:00:00\+00:00 after 900 Wh",
    ):
        settle_live(
            _Source(),
            day=date(2026, 3, 10),
            city="Shenzhen",
            tariff=pilot_cities()["Shenzhen"].tariff(),
            out=out,
        )
    assert not out.exists()


def test_events_with_several_readings_and_meter_values_settle_in_time_order(
    tmp_path: Path,
) -> None:
    """One event may carry several readings (one seq_no) and MeterValues readings carry
    seq_no -1: settled in the order measured. 2,000 Wh flat (08-10) x 0.65 = 130 fen."""
    folder = tmp_path / "data"
    with Store.open(data_dir=folder) as store:
        store.add_station("S3", site_id="yard", password_hash=hash_password("pw"))
        post(store, "S3", "T3", [(local(10, 8), 0, 0)])  # Started only
        reading = MeterSample("S3", "T3", 0, local(10, 9), 1_000, 0)
        store.add_meter_values("S3", 1, [reading], at=local(10, 9))
        store.transaction_event(
            station_id="S3",
            evse_id=None,
            transaction_id="T3",
            event_type="Ended",
            seq_no=1,
            at=datetime(2026, 3, 10, 10, tzinfo=BEIJING),
            trigger_reason="EVDeparted",
            samples=[
                MeterSample("S3", "T3", 1, local(10, 8) + timedelta(minutes=90), 1_500, 0),
                MeterSample("S3", "T3", 1, local(10, 10), 2_000, 0),
            ],
        )
    out = tmp_path / "out"
    assert settle_cli(folder, out) == 0
    with Ledger.open(out / "ledger.sqlite") as ledger:
        assert ledger.balances(PERIOD) == {"grid": 130, "owner:S3/T3": -130}
