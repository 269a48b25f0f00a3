"""The control loop's grid-service duties at each instant: regulation and DR baselines.

- **Regulation.** The commitment in force (if any) goes into the plan (the planner keeps
  its headroom) and, after planning, into each participating EVSE's command as its share
  (:mod:`v2ghub.live.regulation_shares`); every share a station answered is recorded
  (``regulation_shares``), and the stations that accepted a ``CentralFrequency`` profile
  are the ones the signal is broadcast to (:mod:`v2ghub.live.regulation_signal`).
- **Demand-response baselines.** The first time the loop sees a demand-response grid
  event (in force or announced), it records the event's baseline: each of its site's
  planned power per step of the plan made at the previous instant, which did not know the
  event, over the part of the event that plan covers (``grid_event_baselines``). What the
  event delivered is measured against it. An event seen at the loop's first instant, with
  no earlier plan, gets no baseline (and is noted).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import numpy as np

from v2ghub.live.live_problem import LiveProblem
from v2ghub.live.outcomes import SendOutcome
from v2ghub.live.regulation_modes import RegulationShare
from v2ghub.live.regulation_shares import (
    FrequencyResponse,
    RegulationAssignment,
    assign_regulation,
)
from v2ghub.model.problem import Schedule
from v2ghub.store.grid_events import GridEvent, GridEventKind
from v2ghub.store.regulation import BaselineStep, Commitment, RegulationMode, Share

if TYPE_CHECKING:  # both import the control loop's module
    from v2ghub.live.control import SetpointCommand
    from v2ghub.live.regulation_signal import SignalBroadcaster

LOG = logging.getLogger(__name__)


class GridServicesStore(Protocol):
    def commitment_in_force(self, now: datetime) -> Commitment | None: ...

    def record_shares(self, shares: Sequence[Share]) -> None: ...

    def grid_events(
        self,
        *,
        site_ids: frozenset[str] | None = None,
        in_force_at: datetime | None = None,
        since: datetime | None = None,
        event_id: int | None = None,
        limit: int = 500,
    ) -> list[GridEvent]: ...

    def baselined_event_ids(self, event_ids: Sequence[int]) -> set[int]: ...

    def record_baselines(self, steps: Sequence[BaselineStep]) -> None: ...


@dataclass(frozen=True)
class PlanAt:
    """A plan and the instant it was made at."""

    live: LiveProblem
    schedule: Schedule
    at: datetime


class GridServices:
    """Regulation shares, their broadcast's participants, and DR baselines."""

    def __init__(
        self,
        store: GridServicesStore,
        *,
        frequency_response: FrequencyResponse | None = None,
        broadcaster: SignalBroadcaster | None = None,
    ) -> None:
        self.store = store
        self.frequency_response = frequency_response
        self.broadcaster = broadcaster
        self.latest: RegulationAssignment | None = None
        """The last instant's assignment (for the web API)."""
        self.commitment: Commitment | None = None
        self._baselined: set[int] = set()
        self._unbaselined_noted: set[int] = set()

    # --- regulation ---------------------------------------------------------------------

    def read_commitment(self, now: datetime) -> Commitment | None:
        """The commitment in force at ``now`` (a worker thread's read)."""
        return self.store.commitment_in_force(now)

    def assign(
        self,
        live: LiveProblem,
        commands: list[SetpointCommand],
        *,
        now: datetime,
        commitment: Commitment | None,
        previous: Mapping[tuple[str, int, str], RegulationShare] | None = None,
    ) -> list[SetpointCommand]:
        """``commands`` with the participating EVSEs' shares (those ``previous`` holds kept
        while they fit: :func:`~v2ghub.live.regulation_shares.sticky_shares`)."""
        assignment = assign_regulation(
            live,
            commands,
            now=now,
            commitment=commitment,
            frequency_response=self.frequency_response,
            previous=previous,
        )
        self.latest = assignment
        self.commitment = commitment
        if self.broadcaster is not None:
            self.broadcaster.commit(commitment)
        return assignment.commands

    def answered(
        self, finished: Iterable[tuple[SetpointCommand, SendOutcome, datetime]]
    ) -> list[Share]:
        """The shares of the frequency-mode commands that got an answer, to record."""
        return [
            Share(
                mode=command.regulation.mode,
                commitment_id=command.regulation.commitment_id,
                station_id=command.station_id,
                evse_id=command.evse_id,
                transaction_id=command.transaction_id,
                from_at=sent_at,
                baseline_kw=command.setpoint_kw,
                raise_share_kw=command.regulation.raise_share_kw,
                lower_share_kw=command.regulation.lower_share_kw,
                status=str(outcome),
            )
            for command, outcome, sent_at in finished
            if command.regulation is not None
        ]

    def following(self, in_force: Iterable[tuple[SetpointCommand, SendOutcome]]) -> None:
        """Tell the broadcaster which stations follow the signal now: those with an EVSE
        whose accepted command in force is a ``CentralFrequency`` share."""
        if self.broadcaster is None:
            return
        self.broadcaster.set_participants(
            frozenset(
                command.station_id
                for command, outcome in in_force
                if outcome.accepted
                and command.regulation is not None
                and command.regulation.mode is RegulationMode.CENTRAL_FREQUENCY
            )
        )

    # --- demand-response baselines ------------------------------------------------------

    def baselines(self, previous: PlanAt | None, now: datetime) -> list[BaselineStep]:
        """The baselines of demand-response events not baselined yet (a worker thread's
        read and computation); recorded by :meth:`record_baselines`."""
        events = [
            event
            for event in self.store.grid_events(since=now)
            if event.kind is GridEventKind.DEMAND_RESPONSE
            and event.cancelled_at is None
            and event.event_id not in self._baselined
        ]
        if not events:
            return []
        done = self.store.baselined_event_ids([e.event_id for e in events])
        self._baselined |= done
        new = [e for e in events if e.event_id not in done]
        if previous is None:
            for event in new:
                if event.event_id not in self._unbaselined_noted:
                    self._unbaselined_noted.add(event.event_id)
                    LOG.warning(
                        "grid event %d arrived before the first plan: no baseline",
                        event.event_id,
                    )
            return []
        steps = [step for event in new for step in event_baseline(previous, event)]
        self._baselined |= {e.event_id for e in new}
        return steps

    def record_baselines(self, steps: Sequence[BaselineStep]) -> None:
        if steps:
            self.store.record_baselines(steps)


def event_baseline(plan: PlanAt, event: GridEvent) -> list[BaselineStep]:
    """The event's site's planned power in each step of ``plan`` that overlaps the event
    (``[starts_at, ends_at)``; to the plan's end when the event has none)."""
    live = plan.live
    if event.site_id not in live.site_ids:
        return []
    site = live.site_ids.index(event.site_id)
    problem = live.problem
    n = problem.n_plugged
    rows = problem.site_index[:n] == site
    power_kw = plan.schedule.power_kw[:n][rows].sum(axis=0)
    step = problem.grid.step
    step_s = round(step.total_seconds())
    first = problem.grid.start
    ends_at = event.ends_at
    out = []
    for k in range(power_kw.shape[0]):  # the steps of one site: at most a day's
        at = first + k * step
        if at + step <= event.starts_at or (ends_at is not None and at >= ends_at):
            continue
        out.append(
            BaselineStep(
                event_id=event.event_id,
                site_id=event.site_id,
                at=at,
                baseline_kw=float(np.round(power_kw[k], 4)),
                step_s=step_s,
            )
        )
    return out
