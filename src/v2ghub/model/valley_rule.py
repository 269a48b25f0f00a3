"""The pilots' valley rule as something a planner can aim at.

The V2G pilots ask that at least 60% of a project's charging energy fall in valley hours,
and 80% of the energy charged at private (home) chargers (notice 发改办能源〔2024〕718号;
:mod:`v2ghub.settlement.kpis` reports it). Charging energy is what the chargers import
from the grid. Over a day of which some is already metered, a group ``g`` of sessions (all,
or the private ones) with share ``s_g`` meets the rule when

    V_g_past + sum_{i in g} sum_t valley[t] c[i, t] dt_h
        >= s_g * (C_g_past + sum_{i in g} sum_t c[i, t] dt_h)

with ``c[i, t] = max(p[i, t], 0)`` the charging power, ``valley[t]`` 1 in valley steps,
and ``V_g_past``, ``C_g_past`` the valley and total charging energy metered so far. Where
the plugged hours make that impossible, a planner relaxes it at
``penalty_cny_per_kwh`` per kWh by which the left side falls short.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from v2ghub.model.tariff import PeriodKind

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

VALLEY_SHARE_RULE = 0.6  # at least 60% of charging energy in valley hours
VALLEY_SHARE_RULE_PRIVATE = 0.8  # and 80% at private (home) chargers
# Each kWh by which a planner misses the rule costs it this much: above any tariff's spread
# (peak over valley is at most about 1.5 CNY/kWh in the pilot provinces) and any battery
# wear, so planners meet the rule wherever they can, yet below the price of leaving a
# vehicle short, which always comes first.
VALLEY_RULE_PENALTY_CNY_PER_KWH = 5.0


@dataclass(frozen=True)
class ValleyRule:
    """The valley rule for one planning problem.

    ``private`` has one entry per problem row (forecast rows count as public chargers).
    The four ``*_kwh`` figures are the charging energy metered before the problem's first
    step: in valley steps and in all, for every session and for private chargers only.
    """

    private: BoolArray
    share: float = VALLEY_SHARE_RULE
    private_share: float = VALLEY_SHARE_RULE_PRIVATE
    valley_kwh: float = 0.0
    charged_kwh: float = 0.0
    private_valley_kwh: float = 0.0
    private_charged_kwh: float = 0.0
    penalty_cny_per_kwh: float = VALLEY_RULE_PENALTY_CNY_PER_KWH

    def __post_init__(self) -> None:
        for name in ("share", "private_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"ValleyRule.{name} must lie within 0..1, got {value}")
        if not self.penalty_cny_per_kwh > 0:
            raise ValueError(
                f"ValleyRule.penalty_cny_per_kwh must be > 0, got {self.penalty_cny_per_kwh}"
            )
        self.private.setflags(write=False)

    def groups(self) -> tuple[tuple[BoolArray | None, float, float, float], ...]:
        """Each rule as (rows or None for all, share, valley kWh so far, charged kWh so far)."""
        return (
            (None, self.share, self.valley_kwh, self.charged_kwh),
            (self.private, self.private_share, self.private_valley_kwh, self.private_charged_kwh),
        )

    def missing_kwh(
        self, charged_kwh: FloatArray, valley_charged_kwh: FloatArray
    ) -> tuple[float, float]:
        """By how much each rule (all, private) is missed, in kWh of valley charging.

        ``charged_kwh`` and ``valley_charged_kwh`` are per problem row: the charging energy
        a plan puts in all steps and in valley steps. The miss of group ``g`` is
        ``max(s_g * C_g - V_g, 0)`` over the day so far and the plan.
        """
        missing = []
        for rows, share, valley_so_far, charged_so_far in self.groups():
            valley = valley_so_far + float(
                valley_charged_kwh.sum() if rows is None else valley_charged_kwh[rows].sum()
            )
            charged = charged_so_far + float(
                charged_kwh.sum() if rows is None else charged_kwh[rows].sum()
            )
            missing.append(max(share * charged - valley, 0.0))
        return missing[0], missing[1]


def valley_steps(period_kind: npt.NDArray[np.int8]) -> BoolArray:
    """Which steps are valley hours."""
    return np.asarray(period_kind == PeriodKind.VALLEY, dtype=np.bool_)


RULES_SUFFIX = "+rules"  # as v2ghub.choices.RULES_SUFFIX, which the command line reads


def with_rules_name(name: str, *, keep_valley_rule: bool) -> str:
    """A planner's name, marked when it keeps the valley rule (``fast`` -> ``fast+rules``)."""
    return f"{name}{RULES_SUFFIX}" if keep_valley_rule else name
