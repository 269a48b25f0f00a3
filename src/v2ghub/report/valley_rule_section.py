"""The report's section on the pilots' valley rule kept as a planning goal.

Shown when some planner of the run keeps the rule (``<name>+rules``, ``--pilot-rules``):
per city and planner the valley shares reached, the most the day allowed
(:mod:`v2ghub.sim.valley_reach`), whether the rule was met, missed though the day allowed
it, or out of reach, and what keeping it cost the owners against the same planner without
it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from v2ghub.model.valley_rule import VALLEY_SHARE_RULE, VALLEY_SHARE_RULE_PRIVATE
from v2ghub.sim.metrics import CityMetrics, RunSummary
from v2ghub.sim.valley_reach import EXACT_MAX_SESSIONS

CAPTION = (
    "Reached: the share of the day's charging energy in valley hours. At most: the highest "
    "share the day allowed, knowing every session in advance (their plugged hours, chargers, "
    "batteries and site limits; a V2G vehicle may discharge before the valley and refill in "
    "it): no plan reaches more. Rule: met; missed (a plan that the chargers could follow "
    "step by step met both rules that day); out of reach (no plan could meet one of them); "
    "missed, reach unsettled (the day may or may not have allowed it). Figures marked "
    f"'bound' are a quicker estimate from above (used above {EXACT_MAX_SESSIONS:,} sessions "
    "a city), which settles no verdict. Cost of the rule: what the owners paid under the "
    "rule-keeping planner less what they paid under the same planner without it (CNY). "
    "Planners without +rules do not aim at the rule."
)
VERDICTS = ("met", "missed", "out of reach", "missed, reach unsettled")


def rule_verdict(m: CityMetrics) -> str:
    """Met; missed though the day allowed it; out of reach; or missed where the reach is
    not settled (only the quick bound, or no plan at whole steps found to meet both
    rules): one of ``VERDICTS``."""
    met = m.valley_share >= VALLEY_SHARE_RULE and m.valley_share_private >= (
        VALLEY_SHARE_RULE_PRIVATE
    )
    if met:
        return "met"
    if not m.valley_reach_exact:
        return VERDICTS[3]
    if (
        m.valley_share_reachable < VALLEY_SHARE_RULE
        or m.valley_share_private_reachable < VALLEY_SHARE_RULE_PRIVATE
    ):
        return "out of reach"
    return "missed" if m.valley_rule_met_stepwise else VERDICTS[3]


def _td(text: str, cls: str = "num") -> str:
    return f'<td class="{cls}">{html.escape(text)}</td>'


def _share(value: float) -> str:
    return f"{value:.1%}" if math.isfinite(value) else "-"


def _most(value: float, exact: bool) -> str:
    return _share(value) if exact or not math.isfinite(value) else f"{value:.1%} bound"


def valley_rule_section(results: Sequence[RunSummary]) -> str:
    """The section's HTML, or nothing when no run computed the rule's reach."""
    shown = [r for r in results if math.isfinite(r.metrics.valley_share_reachable)]
    if not shown:
        return ""
    columns = (
        "City",
        "Planner",
        f"Reached (rule {VALLEY_SHARE_RULE:.0%})",
        "At most",
        f"Private reached (rule {VALLEY_SHARE_RULE_PRIVATE:.0%})",
        "Private at most",
        "Rule",
        "Cost of the rule",
    )
    rows = []
    for result in shown:
        m = result.metrics
        verdict = rule_verdict(m)
        cost = m.valley_rule_cost_cny
        cells = [
            _td(m.city, ""),
            _td(m.planner, ""),
            _td(_share(m.valley_share)),
            _td(_most(m.valley_share_reachable, m.valley_reach_exact)),
            _td(_share(m.valley_share_private)),
            _td(_most(m.valley_share_private_reachable, m.valley_reach_exact)),
            _td(verdict, "flag" if verdict.startswith("missed") else ""),
            _td(f"{cost:,}" if cost is not None else "-"),
        ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    return (
        '<section id="valley-rule"><h2>The pilots\' valley rule</h2>'
        f"<p>{html.escape(keepers_summary(shown))}</p>"
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}'
        f'</tbody></table></div><p class="caption">{html.escape(CAPTION)}</p></section>'
    )


def keepers_summary(results: Sequence[RunSummary]) -> str:
    """One sentence per rule-keeping planner: in how many cities it met the rule."""
    parts = []
    for planner in dict.fromkeys(r.planner for r in results if r.planner.endswith("+rules")):
        verdicts = [rule_verdict(r.metrics) for r in results if r.planner == planner]
        unsettled = verdicts.count(VERDICTS[3])
        parts.append(
            f"{planner} met the rule in {verdicts.count('met')} of {len(verdicts)} cities "
            f"({verdicts.count('missed')} missed though the day allowed it, "
            f"{verdicts.count('out of reach')} out of reach"
            + (f", {unsettled} missed where the reach is unsettled" if unsettled else "")
            + ")."
        )
    return " ".join(parts)
