"""Regulation rows in the store: commitments, signals, shares, grid-event baselines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from v2ghub.store.regulation import BaselineStep, RegulationMode, Share, SignalSample
from v2ghub.store.repository import Store

T0 = datetime(2026, 7, 16, 10, tzinfo=UTC)


def test_the_commitment_in_force_is_the_last_recorded_and_a_cancel_ends_it(store: Store) -> None:
    first = store.add_commitment(
        starts_at=T0, ends_at=T0 + timedelta(hours=2), capacity_kw=50.0, source="cli", at=T0
    )
    second = store.add_commitment(
        starts_at=T0 + timedelta(hours=1),
        ends_at=T0 + timedelta(hours=2),
        capacity_kw=80.0,
        source="api:grid",
        at=T0 + timedelta(minutes=1),
        external_id="h11",
    )
    assert store.commitment_in_force(T0 + timedelta(minutes=30)).commitment_id == first  # type: ignore[union-attr]
    in_force = store.commitment_in_force(T0 + timedelta(hours=1, minutes=5))
    assert in_force is not None
    assert (in_force.commitment_id, in_force.capacity_kw, in_force.external_id) == (
        second,
        80.0,
        "h11",
    )
    assert store.cancel_commitment(second, by="api:grid", at=T0 + timedelta(minutes=2))
    assert not store.cancel_commitment(second, by="api:grid", at=T0 + timedelta(minutes=3))
    assert store.commitment_in_force(T0 + timedelta(hours=1, minutes=5)).commitment_id == first  # type: ignore[union-attr]
    assert store.commitment_in_force(T0 + timedelta(hours=2)) is None
    overlapping = store.commitments(
        overlapping=(T0 + timedelta(hours=1), T0 + timedelta(hours=3)), include_cancelled=False
    )
    assert [c.commitment_id for c in overlapping] == [first]


@pytest.mark.parametrize(
    ("capacity_kw", "ends_in_h", "message"),
    [(0.0, 1, "capacity_kw must be > 0 kW, got 0.0"), (5.0, 0, "is not after starts_at")],
)
def test_a_commitment_that_cannot_hold_is_refused(
    store: Store, capacity_kw: float, ends_in_h: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        store.add_commitment(
            starts_at=T0,
            ends_at=T0 + timedelta(hours=ends_in_h),
            capacity_kw=capacity_kw,
            source="cli",
            at=T0,
        )
    assert store.commitments() == []


def test_signals_hold_from_their_time_and_a_bad_batch_writes_nothing(store: Store) -> None:
    samples = [SignalSample(T0 + timedelta(seconds=4 * k), k / 10) for k in range(5)]
    assert store.add_signals(samples, source="file:reg.csv", at=T0) == 5
    window = store.signals(start=T0 + timedelta(seconds=6), end=T0 + timedelta(seconds=16))
    assert [(s.at - T0).total_seconds() for s in window] == [4.0, 8.0, 12.0]
    assert [s.signal for s in window] == [0.1, 0.2, 0.3]
    bad = [
        SignalSample(T0 + timedelta(seconds=40), 0.5),
        SignalSample(T0 + timedelta(seconds=44), 1.5),
    ]
    with pytest.raises(ValueError, match=r"must be within -1\.\.1, got 1\.5"):
        store.add_signals(bad, source="api:grid", at=T0)
    assert len(store.signals(start=T0, end=T0 + timedelta(minutes=5))) == 5


def test_shares_and_baselines_round_trip_and_a_baseline_is_kept_once(store: Store) -> None:
    share = Share(
        mode=RegulationMode.CENTRAL_FREQUENCY,
        commitment_id=3,
        station_id="CS-1",
        evse_id=1,
        transaction_id="tx-1",
        from_at=T0,
        baseline_kw=4.5,
        raise_share_kw=2.0,
        lower_share_kw=6.5,
        status="Accepted",
    )
    store.record_shares([share])
    assert store.shares(commitment_id=3) == [share]
    assert store.shares(mode=RegulationMode.LOCAL_FREQUENCY) == []
    steps = [BaselineStep(7, "S1", T0 + timedelta(minutes=15 * k), 20.0 + k, 900) for k in range(3)]
    store.record_baselines(steps[:2])
    store.record_baselines([BaselineStep(7, "S1", T0, 99.0, 900), steps[2]])
    assert [s.baseline_kw for s in store.baselines([7])] == [20.0, 21.0, 22.0]
    assert store.baselined_event_ids([7, 8]) == {7}
