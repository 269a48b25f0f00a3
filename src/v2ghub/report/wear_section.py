"""The report's "Battery wear" section: capacity fade per planner, the part V2G caused and
its value beside what V2G paid the owners, and a figure of both per owner.

The figures come from :mod:`v2ghub.sim.wear` (per run's metrics and a seeded sample of the
owners who discharged); the caption states the model's assumptions from the shipped data.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from v2ghub.model.battery_ageing import AgeingModel
from v2ghub.report.outputs import planner_totals
from v2ghub.report.plots import (
    PANEL_HEIGHT_IN,
    PANEL_WIDTH_IN,
    _figure,
    _png,
    planner_colors,
    planners_of,
)
from v2ghub.scenarios.ageing_data import ageing_model
from v2ghub.sim.metrics import RunSummary
from v2ghub.units import DAYS_PER_YEAR

FEN_PER_CNY = 100
MAX_PANELS_PER_ROW = 4
FIGURE_HEADING = "Wear and pay per owner"
FIGURE_CAPTION = (
    "One dot per owner who discharged (a seeded sample of at most 5,000 per city and "
    "planner): what the discharge earned at the export prices, against the value of the "
    "capacity the discharge wore away. Dots above the dashed line lost more battery value "
    "than V2G paid them."
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _row(planner: str, t: dict[str, Any]) -> str:
    """One planner's row from its ``summary.json`` totals."""
    discharged = float(t["energy_discharged_kwh"])
    value = Decimal(t["v2g_fade_value_cny"])
    cells = (
        f"{t['capacity_fade_kwh']:,.2f}",
        f"{t['cycle_fade_kwh']:,.2f}",
        f"{t['v2g_fade_kwh']:,.3f}",
        f"{value:,}",
        f"{value / Decimal(str(discharged)):.3f}" if discharged else "\N{EN DASH}",
        f"{Decimal(t['v2g_payment_cny']):,}",
        f"{t['v2g_owners']:,}",
        f"{t['v2g_owners_wear_above_payment']:,}",
    )
    numbers = "".join(f'<td class="num">{_e(c)}</td>' for c in cells)
    return f"<tr><td>{_e(planner)}</td>{numbers}</tr>"


def _caption(model: AgeingModel) -> str:
    a = model.assumptions
    return (
        "Capacity fade is kWh of battery capacity lost over each vehicle's day: calendar "
        "ageing at the day's mean SoC plus cycle ageing of the energy charged (LFP: Naumann "
        "et al. 2018 and 2020; NMC: Schmalstieg et al. 2014; coefficients and sources in "
        "data/battery_ageing.toml). V2G fade is the cycle fade beyond what the same vehicle "
        "would have had charging only what it kept. It is valued at "
        f"{a.fade_value_cny_per_kwh:,.0f} CNY per kWh of capacity (pack price "
        f"{a.replacement_cny_per_kwh:,.1f} CNY/kWh over {a.end_of_life_fade:.0%} fade to end "
        "of life) and set beside what the discharge earned at the export prices. Assumed: "
        f"cells at {a.temperature_c:g} \N{DEGREE SIGN}C, every vehicle {a.age_years:g} years "
        f"old having driven {a.daily_driving_kwh * DAYS_PER_YEAR:,.0f} kWh a year; the "
        "square-root laws make the same cycles cost more on a newer battery."
    )


def owner_wear_png(results: Sequence[RunSummary]) -> bytes | None:
    """Per planner with V2G, each sampled owner's V2G payment against the value of its
    V2G wear (CNY), the line where they are equal; None when no owner discharged."""
    planners = [
        p
        for p in planners_of(results)
        if any(r.metrics.planner == p and r.owner_wear.payment_fen.size for r in results)
    ]
    if not planners:
        return None
    colors = planner_colors(planners_of(results))
    ncols = min(len(planners), MAX_PANELS_PER_ROW)
    nrows = -(-len(planners) // ncols)
    with _figure(
        nrows,
        ncols,
        width_in=max(PANEL_WIDTH_IN * ncols, 6.0),
        height_in=PANEL_HEIGHT_IN * nrows + 0.8,
        sharex=True,
        sharey=True,
    ) as (fig, axes):
        panels = [ax for row in axes for ax in row]
        for ax in panels[len(planners) :]:
            ax.set_visible(False)
        for ax, planner in zip(panels, planners, strict=False):
            runs = [r for r in results if r.metrics.planner == planner]
            paid = np.concatenate([r.owner_wear.payment_fen for r in runs]) / FEN_PER_CNY
            wear = np.concatenate([r.owner_wear.wear_value_fen for r in runs]) / FEN_PER_CNY
            top = float(max(paid.max(), wear.max(), 0.01))
            ax.plot([0, top], [0, top], color="#333333", lw=0.8, ls="--")
            ax.scatter(paid, wear, s=6, alpha=0.5, color=colors[planner], linewidths=0)
            above = int(np.count_nonzero(wear > paid))
            ax.set_title(f"{planner}: {paid.size:,} owners, {above:,} worn beyond pay")
            ax.set_xlabel("V2G paid (CNY)")
            ax.set_ylabel("V2G wear value (CNY)")
        fig.suptitle("Each owner's V2G payment and the value of the wear it caused")
        return _png(fig)


def wear_section(results: Sequence[RunSummary], figure: str = "") -> str:
    """The "Battery wear" section; ``figure`` is the figure's markup (trusted, ours)."""
    columns = (
        "Capacity fade (kWh)",
        "of it cycle (kWh)",
        "V2G fade (kWh)",
        "V2G wear value (CNY)",
        "per kWh discharged (CNY)",
        "V2G paid owners (CNY)",
        "Owners who discharged",
        "Worn beyond pay",
    )
    head = "<th>Planner</th>" + "".join(f'<th class="num">{_e(c)}</th>' for c in columns)
    rows = "".join(_row(p, planner_totals(results, p)) for p in planners_of(results))
    return (
        '<section id="battery-wear"><h2>Battery wear</h2><div class="scroll"><table>'
        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
        f'<p class="caption">{_e(_caption(ageing_model()))}</p>{figure}</section>'
    )
