"""``v2ghub settle --live`` pays the grid services measured live: a regulation hour scored
from the chargers' power readings and a demand-response event measured against its
baseline, to the fen, on SQLite and PostgreSQL.

The day, 2026-03-10 in Shenzhen (Asia/Shanghai), at site ``depot`` (rates of
``data/settlement.toml``: regulation capacity 10 CNY/MW-h, mileage 12 CNY/MW, Shenzhen's
demand response 5 CNY/kWh; the public contract shares 70/20/10 owner/operator/aggregator):

**Regulation**, commitment 10:00-11:00 of 100 kW. The signal is +0.5 from 10:00:00 and
flips sign every minute: on the 2-s grid 59 changes of 1.0, a mileage of 59 x 0.1 MW =
5.9 MW (5,900 kW). ``S1/T1`` follows perfectly (baseline 20 kW; 100 kW per unit of signal
until 10:30, then 60); ``S2/T2`` is told 40 kW per unit from 10:30 and sends no power at
all, so it counts as its baseline and the response is the signal until 10:30 and 0.6 of
it after. Precision ``1 - 0.1 / 0.5 = 0.8``; correlation at delay 0
``(900 x 0.25 + 900 x 0.15) / sqrt(1800 x 0.25 x (900 x 0.25 + 900 x 0.09)) =
360 / sqrt(450 x 306) = 0.97014``; delay score 1; performance 0.9234. Capacity
``100 kW x 10 x 0.9234 / 1000 = 0.9234 -> 92`` fen; mileage ``5,900 x 12 x 0.9234 / 1000
= 65.37672 -> 6,538`` fen. Served (share in force, within plugged time): T1 3,600 s, T2
1,800 s, so capacity 61.33/30.67 -> 61/31 and mileage 4,358.67/2,179.33 -> 4,359/2,179
(largest remainder). By contract: T1 61 -> 43/12/6, T2 31 -> 22/6/3, T1 4,359 ->
3,051/872/436, T2 2,179 -> 1,525/436/218.

**Demand response**, event 18:00-19:00 asking 10 kW less, cancelled at 18:50; baseline
steps of 15 min: 20, 20, 20, 5 kW. Counted: three whole steps and 18:45-18:50. Baseline
5,000, 5,000, 5,000, 417 Wh (5 kW x 300 s); requested 2,500 x 3 and 833 Wh. Measured from
the registers (linear between readings): ``S1/T3`` 10,000 Wh at 18:00 to 13,000 Wh at
19:00: 750, 750, 750, 250; ``S2/T4`` 10,000 at 18:00, 13,000 at 18:30, 13,000 at 18:40,
16,000 at 19:00: 1,500, 1,500, 750, 750. Site: 2,250, 2,250, 1,500, 1,000. Credited
``min(B - M, R)``: 2,500, 2,500, 2,500 (overshoot not paid) and -583 (above the baseline:
against the rest): 6,917 Wh. T3 and T4 were plugged in throughout: 3,458.5 each ->
3,459/3,458 Wh (the earlier on the tie), paid 17.295 -> 1,730 and 17.29 -> 1,729 fen;
by contract 1,211/346/173 and 1,210/346/173.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from v2ghub.live.security import hash_password
from v2ghub.regulation.live_score import RegulationSource
from v2ghub.settlement.ledger import Ledger
from v2ghub.settlement.live_demand_response import (
    BaselineColumns,
    EventWindow,
    Transaction,
    delivered_event,
)
from v2ghub.settlement.live_services import LiveServicesSource
from v2ghub.store.grid_events import GridEventKind
from v2ghub.store.records import MeterSample
from v2ghub.store.regulation import BaselineStep, RegulationMode, Share, SignalSample
from v2ghub.store.repository import Store
from v2ghub.workflows.settle import settle_live_day

BEIJING = timezone(timedelta(hours=8))
DAY = date(2026, 3, 10)
PERIOD = "2026-03-10/Shenzhen/live"
HOUR = datetime(2026, 3, 10, 10, tzinfo=BEIJING)
STEPS = 1800


def local(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, 10, hour, minute, tzinfo=BEIJING)


def post(
    store: Store, station_id: str, transaction_id: str, readings: Sequence[tuple[datetime, int]]
) -> None:
    """One TransactionEvent per (time, import register): Started, Updated..., Ended."""
    for seq_no, (at, import_wh) in enumerate(readings):
        last = seq_no == len(readings) - 1
        store.transaction_event(
            station_id=station_id,
            evse_id=1 if seq_no == 0 else None,
            transaction_id=transaction_id,
            event_type="Started" if seq_no == 0 else "Ended" if last else "Updated",
            seq_no=seq_no,
            at=at,
            trigger_reason="MeterValuePeriodic",
            samples=[MeterSample(station_id, transaction_id, seq_no, at, import_wh, 0)],
        )


def signal_values() -> np.ndarray:
    """+0.5 for a minute, -0.5 for the next, on the 2-s grid."""
    return np.where((np.arange(STEPS) // 30) % 2 == 0, 0.5, -0.5)


def fill(store: Store) -> None:
    password = hash_password("pw")
    store.add_station("S1", site_id="depot", password_hash=password, v2x_allowed=True)
    store.add_station("S2", site_id="depot", password_hash=password, v2x_allowed=True)
    # Regulation: T1 follows with power readings every 2 s; T2 sends registers only.
    store.transaction_event(
        station_id="S1",
        evse_id=1,
        transaction_id="T1",
        event_type="Started",
        seq_no=0,
        at=local(9),
        trigger_reason="CablePluggedIn",
        samples=[MeterSample("S1", "T1", 0, local(9), 0, 0)],
    )
    s = signal_values()
    power_kw = np.where(np.arange(STEPS) < STEPS // 2, 20 + 100 * s, 20 + 60 * s)
    wh_per_step = power_kw * 2 / 3.6  # kW over 2 s, Wh
    imported = np.floor(np.cumsum(np.append(0, np.maximum(wh_per_step, 0))[:-1]))
    exported = np.floor(np.cumsum(np.append(0, np.maximum(-wh_per_step, 0))[:-1]))
    readings = [
        MeterSample(
            "S1",
            "T1",
            -1,
            HOUR + timedelta(seconds=2 * k),
            int(imported[k]),
            int(exported[k]),
            power_kw=float(power_kw[k]),
        )
        for k in range(STEPS)
    ]
    store.add_meter_values("S1", 1, readings, at=local(11))
    store.transaction_event(
        station_id="S1",
        evse_id=None,
        transaction_id="T1",
        event_type="Ended",
        seq_no=1,
        at=local(12),
        trigger_reason="EVDeparted",
        samples=[MeterSample("S1", "T1", 1, local(12), int(imported[-1]), int(exported[-1]))],
    )
    post(store, "S2", "T2", [(local(9), 0), (local(12), 1_000)])
    commitment = store.add_commitment(
        starts_at=HOUR, ends_at=local(11), capacity_kw=100.0, source="api:grid", at=local(9)
    )
    store.add_signals(
        [SignalSample(HOUR + timedelta(minutes=m), 0.5 if m % 2 == 0 else -0.5) for m in range(60)],
        source="api:grid",
        at=local(11),
    )
    mode = RegulationMode.CENTRAL_FREQUENCY
    store.record_shares(
        [
            Share(mode, commitment, "S1", 1, "T1", HOUR, 20.0, 100.0, 100.0, "Accepted"),
            Share(mode, commitment, "S1", 1, "T1", local(10, 30), 20.0, 60.0, 60.0, "Accepted"),
            Share(mode, commitment, "S2", 1, "T2", local(10, 30), 0.0, 40.0, 40.0, "Accepted"),
        ]
    )
    # Demand response at the same site in the evening.
    post(
        store,
        "S1",
        "T3",
        [(local(17), 0), (local(18), 10_000), (local(19), 13_000), (local(20), 13_000)],
    )
    post(
        store,
        "S2",
        "T4",
        [
            (local(17), 0),
            (local(18), 10_000),
            (local(18, 30), 13_000),
            (local(18, 40), 13_000),
            (local(19), 16_000),
            (local(19, 30), 16_000),
        ],
    )
    event = store.add_site_limit(
        "depot",
        import_limit_kw=10.0,
        export_limit_kw=None,
        starts_at=local(18),
        ends_at=local(19),
        reason="evening peak",
        at=local(17, 30),
        kind=GridEventKind.DEMAND_RESPONSE,
        source="api:grid",
        requested_reduction_kw=10.0,
    )
    store.record_baselines(
        [
            BaselineStep(event, "depot", local(18) + timedelta(minutes=15 * i), kw, 900)
            for i, kw in enumerate((20.0, 20.0, 20.0, 5.0))
        ]
    )
    assert store.cancel_grid_event(event, by="api:grid", at=local(18, 50))


def net_by_party_and_stream(out: Path) -> dict[tuple[str, str], Decimal]:
    with (out / "statements.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    net: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for row in rows:
        net[(row["party"], row["stream"])] += Decimal(row["amount_cny"])
    return dict(net)


def test_settle_live_pays_regulation_and_demand_response_by_hand(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    fill(store)
    services: LiveServicesSource = store  # the store is what settlement reads
    assert isinstance(services, LiveServicesSource)
    out = tmp_path / "out"
    document = settle_live_day(day=DAY, city="shenzhen", out=out, database_url=database_url)

    [hour] = document["services"]["regulation"]
    correlation = 360 / math.sqrt(450 * 306)
    assert hour["correlation"] == pytest.approx(round(correlation, 4))
    assert (hour["delay"], hour["precision"]) == (1.0, 0.8)
    assert f"{(correlation + 1 + 0.8) / 3:.4f}" == "0.9234"
    assert hour["composite"] == 0.9234
    assert hour["mileage_mw"] == pytest.approx(5.9)
    assert (hour["capacity_cny"], hour["mileage_cny"]) == ("0.92", "65.38")
    assert (hour["evse_count"], hour["samples"]) == (2, STEPS)
    [event] = document["services"]["demand_response"]
    assert event["baseline_kwh"] == 15.417
    assert event["measured_kwh"] == 7.0
    assert event["requested_kwh"] == 8.333
    assert event["delivered_kwh"] == event["paid_kwh"] == 6.917

    net = net_by_party_and_stream(out)
    expected = {
        ("grid", "regulation_capacity"): "-0.92",
        ("owner:S1/T1", "regulation_capacity"): "0.43",
        ("owner:S2/T2", "regulation_capacity"): "0.22",
        ("operator:depot", "regulation_capacity"): "0.18",
        ("aggregator", "regulation_capacity"): "0.09",
        ("grid", "regulation_mileage"): "-65.38",
        ("owner:S1/T1", "regulation_mileage"): "30.51",
        ("owner:S2/T2", "regulation_mileage"): "15.25",
        ("operator:depot", "regulation_mileage"): "13.08",
        ("aggregator", "regulation_mileage"): "6.54",
        ("grid", "demand_response"): "-34.59",
        ("owner:S1/T3", "demand_response"): "12.11",
        ("owner:S2/T4", "demand_response"): "12.10",
        ("operator:depot", "demand_response"): "6.92",
        ("aggregator", "demand_response"): "3.46",
    }
    services_net = {
        key: str(value)
        for key, value in net.items()
        if key[1] in {"regulation_capacity", "regulation_mileage", "demand_response"}
    }
    assert services_net == expected
    assert document["balanced"] is True
    with Ledger.open(out / "ledger.sqlite") as ledger:
        assert sum(ledger.balances(PERIOD).values()) == 0
        kinds = set(ledger.latest(PERIOD).kind)
    assert "regulation:capacity:2026-03-10T10:00:00+08:00" in kinds
    assert "demand_response" in kinds
    assert "market sales are not metered live yet" in document["not_settled"]

    # Settling the day again changes nothing.
    again = settle_live_day(day=DAY, city="shenzhen", out=out, database_url=database_url)
    posted = again["periods"][PERIOD]["posted"]
    assert posted["new"] == posted["corrected"] == posted["withdrawn"] == 0
    assert posted["unchanged"] > 0
    assert net_by_party_and_stream(out) == net
    written = json.loads((out / "settlement.json").read_text(encoding="utf-8"))
    assert written["services"] == document["services"]


def test_power_readings_come_back_as_columns_in_the_order_asked(store: Store) -> None:
    fill(store)
    source: RegulationSource = store
    found = source.power_readings(
        [("S2", "T2"), ("S1", "T1"), ("S1", "T3")],
        start=HOUR + timedelta(seconds=10),
        end=HOUR + timedelta(seconds=20),
    )
    assert found.pair.tolist() == [1] * 5  # T2 and T3 sent registers only
    assert found.measured_at_us.tolist() == [
        int((HOUR + timedelta(seconds=s)).timestamp()) * 1_000_000 for s in (10, 12, 14, 16, 18)
    ]
    assert found.power_kw.tolist() == [70.0, 70.0, 70.0, 70.0, 70.0]
    with pytest.raises(ValueError, match="start"):
        store.power_readings([("S1", "T1")], start=datetime(2026, 3, 10), end=HOUR)  # noqa: DTZ001


# --- the demand-response rule in small ---------------------------------------------------

H_US = 3_600_000_000


def site(*registers: int) -> Transaction:
    """One transaction whose import register reads ``registers`` on the hour from 0."""
    return Transaction(
        site_id="depot",
        at_us=np.arange(len(registers), dtype=np.int64) * H_US,
        registers_wh=np.array([(r, 0) for r in registers], dtype=np.int64).reshape(-1, 2),
        started_us=0,
        ended_us=len(registers) * H_US,
    )


def baseline(*kw: float) -> BaselineColumns:
    return BaselineColumns(
        at_us=np.arange(len(kw), dtype=np.int64) * H_US,
        step_s=np.full(len(kw), 3600, dtype=np.int64),
        baseline_kw=np.array(kw, dtype=np.float64),
    )


@pytest.mark.parametrize(
    ("requested_kw", "registers", "delivered_wh"),
    [
        (None, (0, 2_000, 4_000), 16_000),  # 8 kW under each hour, no cap
        (5.0, (0, 2_000, 4_000), 10_000),  # overshoot past 5 kW not paid
        (None, (0, 2_000, 16_000), 4_000),  # hour 2 above the baseline: 8 - 4
        (None, (0, 12_000, 30_000), 0),  # never below zero
    ],
)
def test_delivered_is_capped_per_step_netted_and_never_negative(
    requested_kw: float | None, registers: tuple[int, ...], delivered_wh: int
) -> None:
    event = delivered_event(
        EventWindow(1, "depot", 0, 2 * H_US, requested_kw),
        baseline(10.0, 10.0),
        {("S1", "T1"): site(*registers)},
        period_start_us=0,
        period_end_us=24 * H_US,
    )
    assert event.delivered_wh == delivered_wh
    assert sum(event.sessions.values()) == delivered_wh


def test_an_event_nobody_was_plugged_in_for_is_not_paid() -> None:
    away = Transaction("depot", np.zeros(0, dtype=np.int64), np.zeros((0, 2), dtype=np.int64), 0, 0)
    event = delivered_event(
        EventWindow(1, "depot", 0, H_US, None),
        baseline(10.0),
        {("S1", "T1"): away},
        period_start_us=0,
        period_end_us=24 * H_US,
    )
    assert (event.delivered_wh, event.sessions) == (10_000, {})
