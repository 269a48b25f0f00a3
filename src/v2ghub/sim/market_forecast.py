"""What the fleet can deliver of demand response, forecast a day ahead by the twin itself.

A demand-response sale is delivered by :func:`~v2ghub.regulation.demand_response.allocate_reduction`
against the baseline of the run without the event
(:mod:`v2ghub.sim.demand_response_service`), so that is what an honest offer is sized by:
the aggregator forecasts its day by running its own control (the same planner, the
regulation it sold, the events it must answer anyway) on the sessions as booked, and in
each traded hour asks the fleet for everything it has (a *probe*: an event of the fleet's
ceiling, every charger's charging plus discharging power). The same service answers it,
so the room found is the allocation's own: held for the rest of the event, within every
departure need, SoC window, charger and site limit, measured against the real-time
baseline. The reduction the probe delivered in *every* step (:attr:`EventResult.held_kw`)
can be sold for the hour: a smaller request, taken pro rata, leaves each vehicle more
energy for the later steps, so it is delivered in full whenever the fleet behaves as
forecast (back-to-back hours are probed together, each at the most the hour before
could take, which only errs low).

What a day ahead cannot know is the day's regulation signal and frequency: the
``expected`` forecast (the default) follows neither, as a signal that averages out
leaves the plan where it was; the ``perfect`` one follows the day's own, as the twin will
live it, to measure what the forecast error costs. The forecast stops once the last
probe has been answered: the rest of the day cannot change what was offered.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from v2ghub.model.case import CityCase
from v2ghub.model.problem import Planner
from v2ghub.regulation.demand_response import DemandResponseEvent
from v2ghub.regulation.signals import RegulationSignal
from v2ghub.sim.demand_response_service import (
    DemandResponseService,
    EventResult,
    first_step_from,
)
from v2ghub.sim.engine import Simulator
from v2ghub.sim.regulation_service import RegulationFollower
from v2ghub.units import KW_PER_MW, SECONDS_PER_HOUR

ForecastSignal = Literal["expected", "perfect"]


class _AnsweredError(Exception):
    """Raised by the forecast's step hook once the last probe has been answered."""


def fleet_ceiling_kw(case: CityCase) -> float:
    """More than the fleet could ever reduce: every charger's charging plus discharging
    power, kW (a probe asks for this, so it is given all there is)."""
    fleet = case.fleet
    return float(np.sum(fleet.max_charge_kw) + np.sum(fleet.discharge_limit_kw))


def expected_signal(follower: RegulationFollower, *, timezone: str) -> RegulationFollower:
    """The same regulation service following no signal and no frequency deviation: what
    a day ahead expects of a signal that averages out. Commitments and the value of
    headroom (hence every plan) are the service's own."""
    offer = follower.offer
    samples = round(SECONDS_PER_HOUR / offer.step_s)
    quiet = replace(
        offer,
        signal_trace=RegulationSignal(
            start=follower.grid.start, step_s=offer.step_s, values=np.zeros(samples)
        ),
        frequency_response=False,
        frequency_trace=None,
    )
    return RegulationFollower(
        follower.grid,
        timezone=timezone,
        offer=quiet,
        value_cny_per_mw_h=follower.value_cny_per_kw_h * KW_PER_MW,
        commitments_kw=follower.commitments_kw,
    )


@dataclass(frozen=True)
class TwinForecast:
    """The day-ahead forecast of one city and planner (see the module docstring).

    ``planner`` is the forecast's own copy (it is run); ``follower`` makes the run's
    regulation service from the regulation sold (kW by local hour), None when there is
    none; ``events`` are the demand-response events the run answers besides the market's.
    """

    case: CityCase
    planner: Planner
    follower: Callable[[Mapping[int, float]], RegulationFollower | None]
    events: Sequence[DemandResponseEvent] = ()
    control_steps: int = 1
    signal: ForecastSignal = "expected"

    def __call__(
        self, *, regulation_kw: Mapping[int, float], probes: Sequence[DemandResponseEvent]
    ) -> list[EventResult]:
        """The probes as the fleet would answer them, in time order."""
        if not probes:
            return []
        case = self.case
        follower = self.follower(regulation_kw)
        if follower is not None and self.signal == "expected":
            follower = expected_signal(follower, timezone=case.tariff.timezone)
        responder = DemandResponseService(case, [*self.events, *probes])
        done_at = max(first_step_from(p.end, case) for p in probes)

        def stop_when_answered(steps_done: int) -> None:
            if steps_done >= done_at:
                raise _AnsweredError

        with contextlib.suppress(_AnsweredError):
            Simulator(
                case,
                self.planner,
                control_steps=self.control_steps,
                on_step=stop_when_answered,
                regulation=follower,
                demand_response=responder,
            ).run()
        starts = {p.start for p in probes}
        return [r for r in responder.results() if r.start in starts]
