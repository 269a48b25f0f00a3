"""The pilots' own yardsticks, with pass or fail.

Notice 发改办能源〔2024〕718号 asks each V2G pilot project for at least 500 kW of discharge
power and 100 MWh discharged a year, and at least 60% of the year's charging energy in
valley hours (80% at private chargers) (FACTS.md). A twin run covers one day: its
discharge capacity is the highest fleet discharge power it reached, and its yearly energy
is the day's times 365 (the simulated weekday taken as typical, which a weekend or a
winter day need not be). A city's fleet in the twin stands for one project.
"""

from __future__ import annotations

from dataclasses import dataclass

from v2ghub.model.valley_rule import VALLEY_SHARE_RULE, VALLEY_SHARE_RULE_PRIVATE
from v2ghub.units import KWH_PER_MWH

__all__ = ["VALLEY_SHARE_RULE", "VALLEY_SHARE_RULE_PRIVATE", "PilotKpis", "pilot_kpis"]
DISCHARGE_CAPACITY_MIN_KW = 500.0
DISCHARGED_MIN_MWH_PER_YEAR = 100.0
DAYS_PER_YEAR = 365


@dataclass(frozen=True)
class PilotKpis:
    """One city's (project's) KPIs under one planner, and whether each meets its rule."""

    city: str
    planner: str
    discharge_capacity_kw: float
    discharged_mwh_per_year: float
    valley_share: float
    valley_share_private: float

    @property
    def passes(self) -> dict[str, bool]:
        """Each rule: met or not."""
        return {
            "discharge_capacity": self.discharge_capacity_kw >= DISCHARGE_CAPACITY_MIN_KW,
            "discharged_energy": self.discharged_mwh_per_year >= DISCHARGED_MIN_MWH_PER_YEAR,
            "valley_share": self.valley_share >= VALLEY_SHARE_RULE,
            "valley_share_private": self.valley_share_private >= VALLEY_SHARE_RULE_PRIVATE,
        }

    @property
    def all_pass(self) -> bool:
        """Every rule met."""
        return all(self.passes.values())


def pilot_kpis(
    *,
    city: str,
    planner: str,
    peak_discharge_kw: float,
    discharged_kwh_per_day: float,
    valley_share: float,
    valley_share_private: float,
) -> PilotKpis:
    """The KPIs of one day of one city under one planner."""
    return PilotKpis(
        city=city,
        planner=planner,
        discharge_capacity_kw=peak_discharge_kw,
        discharged_mwh_per_year=discharged_kwh_per_day * DAYS_PER_YEAR / KWH_PER_MWH,
        valley_share=valley_share,
        valley_share_private=valley_share_private,
    )
