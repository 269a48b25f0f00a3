"""Registers never go backwards in measurement time, whichever message brings a reading:
a transaction's events, the MeterValues of its EVSE while it runs, and an EVSE's
MeterValues outside any transaction; a transaction that ended takes no later reading.
On SQLite and on PostgreSQL (fixtures in conftest.py)."""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from v2ghub.store import schema
from v2ghub.store.repository import Store

from .test_store import add_v2x_station, event, minutes, sample


def outside(store: Store, evse_id: int) -> list[tuple[datetime, int, int]]:
    """An EVSE's readings outside any transaction: (time, import, export) in time order."""
    values = schema.meter_values.c
    query = (
        sa.select(values.measured_at, values.import_register_wh, values.export_register_wh)
        .where(values.station_id == "CP1", values.transaction_id == "", values.evse_id == evse_id)
        .order_by(values.measured_at)
    )
    with store.engine.connect() as connection:
        return [(row[0], row[1], row[2]) for row in connection.execute(query)]


def test_a_reading_outside_a_transaction_must_fit_between_its_neighbours_in_time(
    store: Store,
) -> None:
    add_v2x_station(store)
    store.add_meter_values("CP1", 1, [sample("", -1, 2000, at=minutes(10))], at=minutes(10))
    with pytest.raises(
        ValueError,
        match=r"^station 'CP1', EVSE 1, no transaction, MeterValues at 2026-03-01T08:00:00\+00:00: "
        r"a later reading's import_register_wh 2000 is below 5000$",
    ):
        store.add_meter_values("CP1", 1, [sample("", -1, 5000, at=minutes(0))], at=minutes(0))
    store.add_meter_values("CP1", 1, [sample("", -1, 3000, 40, at=minutes(20))], at=minutes(20))
    with pytest.raises(
        ValueError, match=r"EVSE 1, no transaction, MeterValues at .*: export_register_wh 0 is "
    ):
        store.add_meter_values("CP1", 1, [sample("", -1, 3500, 0, at=minutes(30))], at=minutes(30))
    with pytest.raises(ValueError, match=r"import_register_wh 1999 is below 2000 measured before"):
        store.add_meter_values("CP1", 1, [sample("", -1, 1999, at=minutes(15))], at=minutes(15))
    # Between its neighbours, or a replay, it is stored (once).
    store.add_meter_values("CP1", 1, [sample("", -1, 2500, at=minutes(15))], at=minutes(15))
    store.add_meter_values("CP1", 1, [sample("", -1, 2500, at=minutes(15))], at=minutes(15))
    # Another EVSE's meter is another meter.
    store.add_meter_values("CP1", 2, [sample("", -1, 5000, at=minutes(0))], at=minutes(0))
    assert [wh for _, wh, _ in outside(store, 1)] == [2000, 2500, 3000]
    assert outside(store, 2) == [(minutes(0), 5000, 0)]


def test_the_readings_of_one_message_may_not_go_backwards_among_themselves(store: Store) -> None:
    add_v2x_station(store)
    store.add_meter_values("CP1", 1, [sample("", -1, 3000, at=minutes(10))], at=minutes(10))
    late = [sample("", -1, 2000, at=minutes(2)), sample("", -1, 1000, at=minutes(4))]
    with pytest.raises(
        ValueError,
        match=r"at .*08:04:00.*: import_register_wh 1000 is below 2000 measured before it",
    ):
        store.add_meter_values("CP1", 1, late, at=minutes(2))
    event(store, "T1", 0, sample("T1", 0, 100, at=minutes(20)), event_type="Started")
    store.add_meter_values("CP1", 1, [sample("", -1, 900, at=minutes(40))], at=minutes(40))
    late = [sample("", -1, 600, at=minutes(25)), sample("", -1, 500, at=minutes(30))]
    with pytest.raises(
        ValueError, match=r"'T1', MeterValues at .*: import_register_wh 500 is below"
    ):
        store.add_meter_values("CP1", 1, late, at=minutes(25))
    assert store.count_meter_values() == 3


def test_an_event_is_held_between_the_transactions_readings_in_time(store: Store) -> None:
    """A MeterValues reading from a clock set ahead comes first: an event's reading
    measured before it with higher registers is refused, though it follows in seq_no."""
    add_v2x_station(store)
    event(store, "T1", 0, sample("T1", 0, 1000, at=minutes(0)), event_type="Started")
    store.add_meter_values("CP1", 1, [sample("", -1, 1100, at=minutes(180))], at=minutes(180))
    with pytest.raises(
        ValueError,
        match=r"^station 'CP1', transaction 'T1', seq_no 1 at 2026-03-01T08:01:00\+00:00: a "
        r"later reading's import_register_wh 1100 is below 1200$",
    ):
        event(store, "T1", 1, sample("T1", 1, 1200, at=minutes(1)))
    assert event(store, "T1", 1, sample("T1", 1, 1050, at=minutes(1)))
    [session] = store.sessions()
    # The latest reading in time stays the session's latest.
    assert (session.import_register_wh, session.last_meter_at) == (1100, minutes(180))
    assert [s.import_register_wh for s in store.meter_samples("CP1", "T1")] == [1000, 1050, 1100]


def test_the_session_keeps_its_latest_reading_in_time_whatever_the_seq_no(store: Store) -> None:
    add_v2x_station(store)
    event(store, "T1", 0, sample("T1", 0, 100, at=minutes(0)), event_type="Started")
    event(store, "T1", 5, sample("T1", 5, 500, at=minutes(5)))
    # Late in seq_no, but measured after everything stored: it becomes the latest.
    assert event(store, "T1", 3, sample("T1", 3, 500, at=minutes(6), soc=0.6))
    [session] = store.sessions()
    assert (session.import_register_wh, session.last_meter_at, session.soc) == (
        500,
        minutes(6),
        0.6,
    )
    # Next in seq_no, but measured before the latest: stored, and the latest stays.
    assert event(store, "T1", 6, sample("T1", 6, 500, at=minutes(4)))
    [session] = store.sessions()
    assert (session.import_register_wh, session.last_meter_at) == (500, minutes(6))
    # In seq_no order too: below seq_no 5's reading is refused even where time allows it.
    with pytest.raises(ValueError, match=r"seq_no 7: import_register_wh 450 is below 500 stored"):
        event(store, "T1", 7, sample("T1", 7, 450, at=minutes(1)))


def test_a_reading_after_the_transaction_ended_is_refused(store: Store) -> None:
    add_v2x_station(store)
    event(store, "T1", 0, sample("T1", 0, 1000, at=minutes(0)), event_type="Started")
    event(store, "T1", 2, sample("T1", 2, 1300, at=minutes(2)), event_type="Ended")
    with pytest.raises(
        ValueError,
        match=r"^station 'CP1', transaction 'T1', seq_no 3 at 2026-03-01T08:03:00\+00:00: "
        r"measured after the transaction ended at 2026-03-01T08:02:00\+00:00$",
    ):
        event(store, "T1", 3, sample("T1", 3, 5000, at=minutes(3)))
    # A late event measured before the end still fits in.
    assert event(store, "T1", 1, sample("T1", 1, 1200, at=minutes(1)))
    [session] = store.sessions()
    assert (session.import_register_wh, session.last_meter_at) == (1300, minutes(2))
    assert (session.ended_at, session.imported_wh) == (minutes(2), 300)


def test_meter_values_measured_after_the_end_are_not_the_transactions(store: Store) -> None:
    add_v2x_station(store)
    event(store, "T1", 0, sample("T1", 0, 1000, at=minutes(0)), event_type="Started")
    event(store, "T1", 2, sample("T1", 2, 1300, at=minutes(2)), event_type="Ended")
    readings = [sample("", -1, 1250, at=minutes(1)), sample("", -1, 1400, at=minutes(3))]
    store.add_meter_values("CP1", 1, readings, at=minutes(1))
    assert [s.import_register_wh for s in store.meter_samples("CP1", "T1")] == [1000, 1250, 1300]
    assert outside(store, 1) == [(minutes(3), 1400, 0)]
    # The next transaction on the EVSE takes what is measured while it runs.
    started = minutes(10)
    event(store, "T2", 0, sample("T2", 0, 1500, at=started), event_type="Started", at=started)
    readings = [sample("", -1, 1450, at=minutes(5)), sample("", -1, 1600, at=minutes(11))]
    store.add_meter_values("CP1", 1, readings, at=minutes(5))
    assert [s.import_register_wh for s in store.meter_samples("CP1", "T2")] == [1500, 1600]
    assert [wh for _, wh, _ in outside(store, 1)] == [1400, 1450]
    [first, second] = store.sessions()
    assert (first.import_register_wh, first.last_meter_at) == (1300, minutes(2))
    assert (second.import_register_wh, second.last_meter_at) == (1600, minutes(11))


_examples = itertools.count()


@settings(
    max_examples=30,
    deadline=None,
    # Examples share the fixture's store; each uses a transaction and EVSE of its own.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    readings=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 3000), st.integers(0, 300)),
        min_size=1,
        max_size=12,
    ),
    routes=st.lists(st.sampled_from(["event", "meter values", "outside"]), min_size=12),
)
def test_whatever_arrives_in_whatever_order_stored_readings_never_go_backwards(
    store: Store, readings: list[tuple[int, int, int]], routes: list[str]
) -> None:
    """Readings with any times and registers (clocks set wrong, meters replaced) arrive as
    events (``seq_no`` from the arrival), as MeterValues of the EVSE while a transaction
    runs, or outside any: whatever is stored goes forwards in time, the events' readings
    go forwards in ``seq_no``, and the session's latest is its latest reading in time."""
    if store.station("CP1") is None:
        add_v2x_station(store)
    number = next(_examples)
    transaction_id, evse_id = f"H{number}", 100 + 2 * number
    event(
        store,
        transaction_id,
        0,
        sample(transaction_id, 0, 0, at=minutes(0)),
        event_type="Started",
        evse_id=evse_id,
    )
    refusals: list[str] = []
    for seq_no, ((minute, import_wh, export_wh), route) in enumerate(
        zip(readings, routes, strict=False), start=1
    ):
        at = minutes(minute)
        try:
            if route == "event":
                reading = sample(transaction_id, seq_no, import_wh, export_wh, at=at)
                event(store, transaction_id, seq_no, reading, evse_id=evse_id)
            else:
                # The other EVSE has no transaction: its readings are outside any.
                evse = evse_id if route == "meter values" else evse_id + 1
                reading = sample("", -1, import_wh, export_wh, at=at)
                store.add_meter_values("CP1", evse, [reading], at=at)
        except ValueError as error:
            refusals.append(str(error))
    assert all(" is below " in refusal for refusal in refusals), refusals
    stored = store.meter_samples("CP1", transaction_id)
    # Of several readings at one instant, those that came later are not lower.
    in_time = sorted(
        stored, key=lambda s: (s.measured_at, s.import_register_wh, s.export_register_wh)
    )
    for ordered in (
        [(s.import_register_wh, s.export_register_wh) for s in in_time],
        [
            (s.import_register_wh, s.export_register_wh)
            for s in sorted(
                (s for s in stored if s.seq_no >= 0), key=lambda s: (s.seq_no, s.measured_at)
            )
        ],
        [registers for _, *registers in outside(store, evse_id + 1)],
    ):
        for before, after in itertools.pairwise(ordered):
            assert after[0] >= before[0], ordered
            assert after[1] >= before[1], ordered
    [session] = [s for s in store.sessions() if s.transaction_id == transaction_id]
    last = max(stored, key=lambda s: (s.measured_at, s.import_register_wh, s.export_register_wh))
    assert (session.import_register_wh, session.export_register_wh) == (
        last.import_register_wh,
        last.export_register_wh,
    )
    assert session.last_meter_at == last.measured_at
