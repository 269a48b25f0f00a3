"""Live register readings to meter rows: worked by hand, refused when a register goes back,
and the energy conserved whatever the period split."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import guangdong_like_tariff
from v2ghub.settlement.contracts import Contracts
from v2ghub.settlement.live_meter import LiveSession, live_meter_table
from v2ghub.settlement.meter import METER_COLUMNS, meter_lines
from v2ghub.settlement.rates import rate_cards
from v2ghub.store.records import MeterSample

# Valley 0-8, flat 8-10, 12-14 and 19-24, peak 10-12 and 14-19, local time (+08:00).
# Import: 0.65 CNY/kWh flat x 0.38 / 1 / 1.7; discharge 0.9 x the same ratios.
TARIFF = guangdong_like_tariff("Asia/Shanghai")
LOCAL = timezone(timedelta(hours=8))
DAY = datetime(2025, 7, 16, tzinfo=LOCAL)
SESSIONS = {
    ("CP-7", "T-1"): LiveSession("S1", "P7", "public"),
    ("CP-7", "T-2"): LiveSession("S2", "home-4", "home"),
}


def _sample(
    transaction: str, seq_no: int, hours: float, import_wh: int, export_wh: int = 0
) -> MeterSample:
    return MeterSample(
        station_id="CP-7",
        transaction_id=transaction,
        seq_no=seq_no,
        measured_at=DAY + timedelta(hours=hours),
        import_register_wh=import_wh,
        export_register_wh=export_wh,
    )


def _rows(table: pa.Table) -> list[tuple[object, ...]]:
    columns = table.to_pydict()
    return list(zip(*(columns[name] for name in METER_COLUMNS), strict=True))


HAND = [
    _sample("T-2", 2, 25, 7_000),  # 01:00 the next day
    _sample("T-1", 3, 8.25, 11_400),
    _sample("T-1", 1, 7.5, 10_000),
    _sample("T-1", 2, 7.75, 10_500),
    _sample("T-1", 3, 8.25, 11_400),  # a replay of seq_no 3: counted once
    _sample("T-1", 4, 8.75, 11_400),
    _sample("T-1", 5, 10 + 10 / 60, 11_400, 1_000),
    _sample("T-2", 1, 23, 0),
]


def test_readings_to_meter_rows_by_hand() -> None:
    # T-1: 07:30-07:45 +500 Wh, all valley. 07:45-08:15 +900 Wh across the 08:00 valley/
    # flat boundary: 15 of 30 minutes each, 450 / 450. 08:15-08:45 nothing. 08:45-10:10
    # exported +1000 Wh over 85 minutes, 75 flat and 10 peak: up to 10:00 round(1000 x
    # 75/85 = 882.35) = 882 flat, the rest 118 peak. T-2: 23:00-01:00 +7000 Wh, an hour
    # flat and an hour valley: 3500 / 3500.
    table = live_meter_table(HAND, sessions=SESSIONS, tariff=TARIFF)
    assert table.column_names == list(METER_COLUMNS)
    assert _rows(table) == [
        ("S1", "P7", "public", "valley", "0.2470", "0.342", 950, 0),
        ("S1", "P7", "public", "flat", "0.65", "0.9", 450, 882),
        ("S1", "P7", "public", "peak", "1.105", "1.53", 0, 118),
        ("S2", "home-4", "home", "valley", "0.2470", "0.342", 3_500, 0),
        ("S2", "home-4", "home", "flat", "0.65", "0.9", 3_500, 0),
    ]


def test_meter_lines_settle_the_live_rows() -> None:
    # Charging: S1 950 Wh x 0.2470 = 23.465 fen -> 23; 450 x 0.65 = 29.25 -> 29. S2 3500 x
    # 0.2470 = 86.45 -> 86; 3500 x 0.65 = 227.5 -> 228. Discharge: 882 Wh x 0.9 = 79.38 ->
    # 79 fen; 118 x 1.53 = 18.054 -> 18.
    table = live_meter_table(HAND, sessions=SESSIONS, tariff=TARIFF)
    card = rate_cards(["Guangzhou"])["Guangzhou"]
    lines = meter_lines(table, card=card, contracts=Contracts())
    stream = lines.column("stream")
    amount = lines.column("amount_fen")
    session = lines.column("session_id")
    charging = stream == "charging"
    kind = lines.column("kind")[charging]
    assert list(
        zip(session[charging].tolist(), kind.tolist(), amount[charging].tolist(), strict=True)
    ) == [
        ("S1", "charging:valley:0.2470", 23),
        ("S1", "charging:flat:0.65", 29),
        ("S2", "charging:valley:0.2470", 86),
        ("S2", "charging:flat:0.65", 228),
    ]
    from_grid = (stream == "discharge") & (lines.column("payer") == "grid")
    assert amount[from_grid].tolist() == [79, 18]


def test_a_register_going_backwards_is_refused_naming_the_reading() -> None:
    samples = [
        _sample("T-1", 11, 9, 2_000, 5_300),
        _sample("T-1", 12, 9.5, 2_100, 5_210),
    ]
    message = (
        r"^station CP-7 transaction T-1 seq_no 12: Energy\.Active\.Export\.Register went "
        r"backwards \(5210 Wh after 5300 Wh\)$"
    )
    with pytest.raises(ValueError, match=message):
        live_meter_table(samples, sessions=SESSIONS, tariff=TARIFF)
    samples = [_sample("T-2", 1, 9, 2_000), _sample("T-2", 2, 9.5, 1_999)]
    with pytest.raises(
        ValueError,
        match=r"^station CP-7 transaction T-2 seq_no 2: Energy\.Active\.Import\.Register went "
        r"backwards \(1999 Wh after 2000 Wh\)$",
    ):
        live_meter_table(samples, sessions=SESSIONS, tariff=TARIFF)


def test_other_bad_readings_are_refused_naming_the_reading() -> None:
    earlier = [_sample("T-1", 1, 9, 0), _sample("T-1", 2, 8, 10)]
    with pytest.raises(
        ValueError,
        match=r"^station CP-7 transaction T-1 seq_no 2: measured_at went backwards "
        r"\(2025-07-16T00:00:00\+00:00 after 2025-07-16T01:00:00\+00:00\)$",
    ):
        live_meter_table(earlier, sessions=SESSIONS, tariff=TARIFF)
    twice = [_sample("T-1", 4, 9, 10), _sample("T-1", 4, 9, 11)]
    with pytest.raises(
        ValueError,
        match=r"^station CP-7 transaction T-1 seq_no 4: two different readings under one seq_no$",
    ):
        live_meter_table(twice, sessions=SESSIONS, tariff=TARIFF)
    stranger = [_sample("T-9", 1, 9, 10)]
    with pytest.raises(
        ValueError, match=r"^station CP-7 transaction T-9: no session given for it$"
    ):
        live_meter_table(stranger, sessions=SESSIONS, tariff=TARIFF)
    naive = MeterSample("CP-7", "T-1", 3, datetime(2025, 7, 16, 9), 0, 0)  # noqa: DTZ001
    with pytest.raises(
        ValueError, match=r"^station CP-7 transaction T-1 seq_no 3: measured_at must be timezone"
    ):
        live_meter_table([naive], sessions=SESSIONS, tariff=TARIFF)


def test_no_energy_gives_no_rows() -> None:
    # One reading is only a baseline; equal readings move nothing.
    for samples in (
        [],
        [_sample("T-1", 1, 9, 500)],
        [_sample("T-1", 1, 9, 5), _sample("T-1", 2, 12, 5)],
    ):
        table = live_meter_table(samples, sessions=SESSIONS, tariff=TARIFF)
        assert table.column_names == list(METER_COLUMNS)
        assert table.num_rows == 0


_readings = st.lists(
    st.tuples(
        st.integers(0, 3 * 3600),  # seconds after the previous reading
        st.integers(0, 20_000),  # import Wh since then
        st.integers(0, 5_000),  # export Wh since then
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(_readings, min_size=1, max_size=2),
    st.integers(0, 47 * 3600),
    st.randoms(use_true_random=False),
)
def test_energy_out_is_the_registers_increase_whatever_the_split(
    transactions: list[list[tuple[int, int, int]]], first_s: int, shuffle: random.Random
) -> None:
    samples: list[MeterSample] = []
    expected: dict[str, tuple[int, int]] = {}
    for name, readings in zip(("T-1", "T-2"), transactions, strict=False):
        at = DAY + timedelta(seconds=first_s)
        import_wh, export_wh = 123_456, 7_890  # registers count from the meter's installation
        for seq_no, (gap_s, more_import, more_export) in enumerate(readings):
            at += timedelta(seconds=gap_s)
            import_wh += more_import
            export_wh += more_export
            sample = MeterSample("CP-7", name, seq_no, at, import_wh, export_wh)
            if seq_no == 0:
                start = (import_wh, export_wh)  # the first reading is the baseline
            samples.append(sample)
            if seq_no % 3 == 0:
                samples.append(sample)  # a replay
        session = SESSIONS[("CP-7", name)].session_id
        expected[session] = (import_wh - start[0], export_wh - start[1])
    shuffle.shuffle(samples)
    table = live_meter_table(samples, sessions=SESSIONS, tariff=TARIFF)
    columns = table.to_pydict()
    imported = np.array(columns["import_wh"], dtype=np.int64)
    exported = np.array(columns["export_wh"], dtype=np.int64)
    assert np.all(imported >= 0)
    assert np.all(exported >= 0)
    assert np.all((imported > 0) | (exported > 0))
    session_of_row = np.array(columns["session_id"], dtype=str)
    for name, (total_import, total_export) in expected.items():
        assert int(imported[session_of_row == name].sum()) == total_import
        assert int(exported[session_of_row == name].sum()) == total_export
    # Each price level at most once per session.
    pairs = list(zip(columns["session_id"], columns["period"], strict=True))
    assert len(pairs) == len(set(pairs))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 24 * 3600), st.integers(1, 30 * 3600), st.integers(0, 10**7))
def test_an_interval_is_split_pro_rata_by_time_within_a_watt_hour(
    start_s: int, duration_s: int, energy: int
) -> None:
    begin = DAY + timedelta(seconds=start_s)
    end = begin + timedelta(seconds=duration_s)
    samples = [
        MeterSample("CP-7", "T-1", 1, begin, 0, 0),
        MeterSample("CP-7", "T-1", 2, end, energy, 0),
    ]
    table = live_meter_table(samples, sessions=SESSIONS, tariff=TARIFF)
    got = dict(
        zip(table.column("period").to_pylist(), table.column("import_wh").to_pylist(), strict=True)
    )
    # The exact share of each period kind: seconds of the interval in it, by local hour.
    seconds: dict[str, Decimal] = {}
    pieces: dict[str, int] = {}
    moment, previous = begin, ""
    while moment < end:
        following = min(end, (moment + timedelta(hours=1)).replace(minute=0, second=0))
        kind = TARIFF.period_kinds[moment.month - 1][moment.astimezone(LOCAL).hour]
        name = kind.name.lower()
        seconds[name] = seconds.get(name, Decimal(0)) + Decimal(
            (following - moment).total_seconds()
        )
        pieces[name] = pieces.get(name, 0) + (name != previous)
        moment, previous = following, name
    assert set(got) <= set(seconds)
    for name, part in seconds.items():
        exact = Decimal(energy) * part / Decimal(duration_s)
        # Cumulative rounding: every running total is within half a Wh of exact, so each
        # piece is within 1 Wh; a kind may recur (flat before and after the peak).
        assert abs(Decimal(got.get(name, 0)) - exact) <= pieces[name]
    assert sum(got.values()) == energy
