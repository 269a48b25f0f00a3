"""The report's "Feeders" section: what each planner's charging does to the distribution
feeders under the city's compounds (:mod:`v2ghub.network`), with AC power flow at every
step: feeder-steps overloaded or outside the voltage band per city and planner, the
loading and voltage duration curves, the worst feeders, and what the smart and V2G
planners buy the feeders against uncontrolled charging, beside what they cost the owners.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from v2ghub.network.feeder_summary import FeederSummary
from v2ghub.network.feeders import OVERLOAD, VOLTAGE_BAND_PU, sees_feeders
from v2ghub.report.plots import (
    PANEL_HEIGHT_IN,
    PANEL_WIDTH_IN,
    _figure,
    _grouped_bars,
    _png,
    cities_of,
    planner_colors,
    planners_of,
)
from v2ghub.settlement.money import fen_to_cny
from v2ghub.sim.metrics import RunSummary

REFERENCE = "uncontrolled"
FIGURE_HEADING = "Feeders under each planner's charging"
FIGURE_CAPTION = (
    "Left: every feeder-step's highest transformer or line loading, from the highest down "
    "(all cities' feeders together; above 100% is an overload). Middle: every feeder-step's "
    "lowest bus voltage, from the lowest up, with the band. Right: feeder-steps overloaded "
    "per city. AC power flow at every step of the run on pandapower's models of the feeders."
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _with_feeders(results: Sequence[RunSummary]) -> list[RunSummary]:
    return [r for r in results if r.feeders is not None and r.feeders.feeders]


def _pooled(curves: Sequence[np.ndarray], *, descending: bool) -> np.ndarray:
    """One duration curve from each city's (equal-length quantile samples pooled)."""
    values = np.concatenate([c for c in curves if c.size]) if curves else np.zeros(0)
    values = np.sort(values)
    return values[::-1] if descending else values


def feeders_png(results: Sequence[RunSummary]) -> bytes | None:
    """The section's figure; None without feeders."""
    runs = _with_feeders(results)
    if not runs:
        return None
    planners = planners_of(runs)
    colors = planner_colors(planners_of(results))
    cities = cities_of(runs)
    with _figure(
        1, 3, width_in=max(PANEL_WIDTH_IN * 3.4, 10.0), height_in=PANEL_HEIGHT_IN + 1.0
    ) as (fig, axes):
        loading_ax, voltage_ax, bars_ax = axes[0]
        overloads: dict[str, np.ndarray] = {}
        for planner in planners:
            mine = [r.feeders for r in runs if r.planner == planner and r.feeders is not None]
            loading = _pooled([s.loading_duration for s in mine], descending=True)
            voltage = _pooled([s.min_vm_duration for s in mine], descending=False)
            share = np.linspace(0, 100, loading.size) if loading.size else loading
            loading_ax.plot(share, loading * 100, color=colors[planner], label=planner)
            share = np.linspace(0, 100, voltage.size) if voltage.size else voltage
            voltage_ax.plot(share, voltage, color=colors[planner], label=planner)
            by_city = {r.metrics.city: r.feeders for r in runs if r.planner == planner}
            overloads[planner] = np.array(
                [
                    summary.overloaded_steps if (summary := by_city.get(c)) is not None else np.nan
                    for c in cities
                ],
                dtype=np.float64,
            )
        loading_ax.axhline(OVERLOAD * 100, color="#b22222", lw=0.9, ls="--")
        loading_ax.set_xlabel("share of feeder-steps (%)")
        loading_ax.set_ylabel("highest loading (% of rating)")
        loading_ax.set_title("Loading duration")
        loading_ax.legend(fontsize="small")
        low, high = VOLTAGE_BAND_PU
        for bound in (low, high):
            voltage_ax.axhline(bound, color="#b22222", lw=0.9, ls="--")
        voltage_ax.set_xlabel("share of feeder-steps (%)")
        voltage_ax.set_ylabel("lowest voltage (pu)")
        voltage_ax.set_title("Voltage duration")
        _grouped_bars(bars_ax, cities, overloads, colors)
        for label in bars_ax.get_xticklabels():  # a narrow panel: slanted names
            label.set_rotation(40)
            label.set_horizontalalignment("right")
        bars_ax.set_ylabel("feeder-steps overloaded")
        bars_ax.set_title("Overloads per city")
        fig.suptitle("The feeders under the compounds, step by step")
        return _png(fig)


def _cell(value: object) -> str:
    return f'<td class="num">{_e(value)}</td>'


def _vm(value: float) -> str:
    return f"{value:.3f}" if np.isfinite(value) else "\N{EN DASH}"


def _totals(runs: Sequence[RunSummary]) -> tuple[FeederSummary, ...]:
    return tuple(r.feeders for r in runs if r.feeders is not None)


def _comparison(results: Sequence[RunSummary], runs: Sequence[RunSummary]) -> str:
    """Per planner over all cities, against uncontrolled charging where it ran."""
    head = "".join(
        f'<th class="num">{_e(c)}</th>'
        for c in (
            "Feeder-steps overloaded",
            "Feeders overloaded",
            "Feeder-steps outside the band",
            "Highest loading",
            "Lowest voltage (pu)",
            "Overloads removed",
            "Energy short (kWh)",
            "Sees the feeders",
            "Owners' cost (CNY)",
            f"Cost against {REFERENCE} (CNY)",
        )
    )
    bills = {
        p: sum(r.total_bill_fen for r in results if r.planner == p) for p in planners_of(results)
    }
    overloaded = {
        p: sum(s.overloaded_steps for s in _totals([r for r in runs if r.planner == p]))
        for p in planners_of(runs)
    }
    short = {
        p: sum(
            r.metrics.unmet_energy_kwh - r.metrics.unavoidable_shortfall_kwh
            for r in runs
            if r.planner == p
        )
        for p in planners_of(runs)
    }
    reference = overloaded.get(REFERENCE)
    rows = []
    for planner in planners_of(runs):
        summaries = _totals([r for r in runs if r.planner == planner])
        steps = overloaded[planner]
        removed = f"{1 - steps / reference:.0%}" if reference else "\N{EN DASH}"
        cost = fen_to_cny(bills.get(planner, 0))
        against = (
            fen_to_cny(bills[planner] - bills[REFERENCE])
            if REFERENCE in bills and planner in bills
            else None
        )
        cells = (
            f"{steps:,}",
            f"{sum(s.feeders_overloaded for s in summaries):,} of "
            f"{sum(s.feeders for s in summaries):,}",
            f"{sum(s.voltage_out_steps for s in summaries):,}",
            f"{max(s.worst_loading for s in summaries):.0%}",
            _vm(min(s.min_vm_pu for s in summaries)),
            removed,
            f"{short[planner]:,.1f}",
            "yes" if sees_feeders(planner) else "no",
            f"{cost:,}",
            "\N{EN DASH}" if against is None else f"{against:+,}",
        )
        rows.append(f"<tr><td>{_e(planner)}</td>{''.join(_cell(c) for c in cells)}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr><th>Planner</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _worst(runs: Sequence[RunSummary]) -> str:
    """The worst feeders of each city under each planner."""
    rows = []
    for run in runs:
        if run.feeders is None:
            continue
        for worst in run.feeders.worst[:3]:
            cells = (
                worst.kind,
                f"{worst.worst_loading:.0%}",
                _vm(worst.min_vm_pu),
                f"{worst.overloaded_steps:,}",
                f"{worst.voltage_out_steps:,}",
            )
            rows.append(
                f"<tr><td>{_e(run.metrics.city)}</td><td>{_e(run.planner)}</td>"
                f"<td>{_e(worst.name)}</td>{''.join(_cell(c) for c in cells)}</tr>"
            )
    head = "<th>City</th><th>Planner</th><th>Feeder</th>" + "".join(
        f'<th class="num">{_e(c)}</th>'
        for c in (
            "Kind",
            "Highest loading",
            "Lowest voltage (pu)",
            "Steps overloaded",
            "Steps outside the band",
        )
    )
    return (
        f"<details><summary>The worst feeders of each city and planner</summary>"
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div></details>"
    )


def feeders_section(results: Sequence[RunSummary], figure: str = "") -> str:
    """The "Feeders" section ("" without feeders); ``figure`` is the figure's markup."""
    runs = _with_feeders(results)
    if not runs:
        return ""
    low, high = VOLTAGE_BAND_PU
    first = next(r.feeders for r in runs if r.feeders is not None)
    seconds = sum(s.power_flow_seconds for s in _totals(runs))
    caption = (
        f"{first.feeders:,} feeders a city, each under one residential compound of the "
        "city (its charging shared among the feeder's households): pandapower's Kerber "
        "suburb and village and CIGRE LV networks, their own loads following the city's "
        "base load with the transformer at 60% at the peak. An overload is a transformer "
        f"or line above {OVERLOAD:.0%} of its rating; the band is {low:.2f}-{high:.2f} pu "
        "(GB/T 12325-2008). AC power flow at every step of every run: "
        f"{seconds:,.1f} CPU s in all. The optimising planners plan within the feeders' "
        "limits (a model linearised around each step's base case: import caps per "
        "compound and step); uncontrolled, tou and v2g-rules stand for today's chargers "
        "and do not see them. Energy short: what owners lacked at departure beyond what "
        "their own plug time and charger made unavoidable."
    )
    return (
        '<section id="feeders"><h2>Feeders</h2>'
        f'{_comparison(results, runs)}<p class="caption">{_e(caption)}</p>'
        f"{figure}{_worst(runs)}</section>"
    )
