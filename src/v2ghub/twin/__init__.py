"""The digital twin as a library: a :class:`Scenario`, a :class:`Twin` that runs it with
planner objects, and a :class:`TwinResult` that settles, writes and reports itself."""

from v2ghub.twin.result import RunInfo, TwinResult
from v2ghub.twin.scenario import Scenario
from v2ghub.twin.settlement import PeriodSettlement, Settlement
from v2ghub.twin.twin import Twin

__all__ = ["PeriodSettlement", "RunInfo", "Scenario", "Settlement", "Twin", "TwinResult"]
