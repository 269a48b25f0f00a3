"""The report as one self-contained HTML file: inline CSS, figures as base64 PNGs, no JS.

Sections: a header (title, reported day, time grid), "About these figures" (the caller's
notes), totals per planner, a table per city and planner, who is paid what (with a
settlement), grid services (when any run has a flexibility envelope, regulation hours or
demand-response events), and the figures of :mod:`v2ghub.report.plots`. Every piece of
text is HTML-escaped. The file is written to a temporary file beside ``path`` and moved
into place, so a reader never sees half a report and a failure leaves any earlier report
untouched.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from v2ghub import __version__
from v2ghub.files import write_text_atomic
from v2ghub.report.feeders_section import FIGURE_CAPTION as FEEDERS_CAPTION
from v2ghub.report.feeders_section import FIGURE_HEADING as FEEDERS_HEADING
from v2ghub.report.feeders_section import feeders_png, feeders_section
from v2ghub.report.plots import (
    by_city_and_planner,
    cities_of,
    demand_response_png,
    discharge_by_hour_png,
    envelope_png,
    load_curves_png,
    owner_cost_png,
    owner_earnings_png,
    planners_of,
    regulation_png,
    soc_png,
    valley_share_png,
)
from v2ghub.report.valley_rule_section import valley_rule_section
from v2ghub.report.wear_section import FIGURE_CAPTION, FIGURE_HEADING, owner_wear_png, wear_section
from v2ghub.settlement.kpis import VALLEY_SHARE_RULE, VALLEY_SHARE_RULE_PRIVATE
from v2ghub.sim.metrics import (
    CityMetrics,
    RunSummary,
)
from v2ghub.units import KW_PER_MW, SECONDS_PER_HOUR, SECONDS_PER_MINUTE

# Unmet energy above the unavoidable shortfall by more than this is flagged (float sums).
Settled = dict[str, Any] | Callable[[], dict[str, Any]]
"""A settlement document (``settlement.json``), or a function that returns it."""

SHORTFALL_FLAG_KWH = 1e-3
DASH = "\N{EN DASH}"

_CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --band: #f6f8fa;
        --pass: #1a7f37; --fail: #cf222e; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto,
       "Noto Sans", "PingFang SC", "Microsoft YaHei", sans-serif; color: var(--ink);
       background: #fff; }
main, header { max-width: 1240px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 28px; padding-bottom: 12px; border-bottom: 1px solid var(--line); }
h1 { font-size: 1.7em; margin: 0 0 6px; }
h2 { font-size: 1.25em; margin: 34px 0 10px; padding-bottom: 4px;
     border-bottom: 1px solid var(--line); }
.meta { color: var(--muted); margin: 2px 0; }
.about { background: var(--band); border-left: 4px solid #0072b2; padding: 10px 18px;
         margin-top: 18px; }
.about h2 { border: 0; margin: 4px 0; font-size: 1.05em; }
.about ul { margin: 4px 0 8px; padding-left: 20px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { background: var(--band); text-align: left; vertical-align: bottom; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:hover { background: #fafbfc; }
td.city { font-weight: 600; vertical-align: top; background: #fff; }
td.ref { color: var(--muted); }
.pass { color: var(--pass); font-weight: 600; }
.fail { color: var(--fail); font-weight: 600; }
.flag { color: var(--fail); }
.caption { color: var(--muted); font-size: 13px; margin: 6px 0 0; }
figure { margin: 26px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
footer { max-width: 1240px; margin: 30px auto; padding: 10px 24px; color: var(--muted);
         font-size: 12px; border-top: 1px solid var(--line); }
"""


# --------------------------------------------------------------------------- numbers


@dataclass(frozen=True)
class PlannerTotals:
    """One planner summed over the cities it ran in.

    ``peak_reduction_kw`` sums, over the cities that also ran the reference planner,
    ``reference peak_kw - this planner's peak_kw``; the reference itself has 0.
    ``valley_share`` is weighted by charged energy:
    ``sum(valley_share_c * charged_c) / sum(charged_c)``.
    """

    planner: str
    cities: int
    peak_reduction_kw: float
    energy_charged_mwh: float
    energy_discharged_mwh: float
    valley_share: float
    cities_meeting_valley_rule: int
    unmet_energy_kwh: float
    unavoidable_shortfall_kwh: float
    owner_cost_cny: Decimal
    degradation_cost_cny: Decimal
    planner_seconds: float
    simulate_seconds: float
    site_limit_violations: int
    fallbacks: int


def peak_reduction_kw(results: Sequence[RunSummary]) -> dict[tuple[str, str], float]:
    """Per ``(city, planner)``: the reference planner's peak minus this one's (kW).

    The reference is the first planner in ``results``; cities without a reference run
    are left out.
    """
    reference = planners_of(results)[0]
    keyed = by_city_and_planner(results)
    out: dict[tuple[str, str], float] = {}
    for (city, planner), result in keyed.items():
        if (city, reference) in keyed:
            reference_peak = keyed[city, reference].metrics.peak_kw
            out[city, planner] = reference_peak - result.metrics.peak_kw
    return out


def planner_totals(results: Sequence[RunSummary]) -> list[PlannerTotals]:
    """Totals per planner over cities, planners in the order they first appear."""
    if not results:
        raise ValueError("no runs to summarise")
    reduction = peak_reduction_kw(results)
    totals = []
    for planner in planners_of(results):
        runs = [r for r in results if r.metrics.planner == planner]
        metrics = [r.metrics for r in runs]
        charged_kwh = sum(m.energy_charged_kwh for m in metrics)
        valley_kwh = sum(m.valley_share * m.energy_charged_kwh for m in metrics)
        totals.append(
            PlannerTotals(
                planner=planner,
                cities=len(metrics),
                peak_reduction_kw=sum(reduction.get((m.city, planner), 0.0) for m in metrics),
                energy_charged_mwh=charged_kwh / KW_PER_MW,
                energy_discharged_mwh=sum(m.energy_discharged_kwh for m in metrics) / KW_PER_MW,
                valley_share=valley_kwh / charged_kwh if charged_kwh > 0 else math.nan,
                cities_meeting_valley_rule=sum(m.valley_rule_met for m in metrics),
                unmet_energy_kwh=sum(m.unmet_energy_kwh for m in metrics),
                unavoidable_shortfall_kwh=sum(m.unavoidable_shortfall_kwh for m in metrics),
                owner_cost_cny=sum((m.owner_cost_cny for m in metrics), Decimal(0)),
                degradation_cost_cny=sum((m.degradation_cost_cny for m in metrics), Decimal(0)),
                planner_seconds=sum(m.planner_seconds for m in metrics),
                simulate_seconds=sum(m.simulate_seconds for m in metrics),
                site_limit_violations=sum(m.site_limit_violations for m in metrics),
                fallbacks=sum(m.fallbacks for m in metrics),
            )
        )
    return totals


def _number(value: float, decimals: int = 0) -> str:
    """``value`` with thousands separators; an en dash for NaN or infinity."""
    return f"{value:,.{decimals}f}" if math.isfinite(value) else DASH


def _share(value: float) -> str:
    return f"{value:.1%}" if math.isfinite(value) else DASH


# --------------------------------------------------------------------------- markup


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _td(text: str, css: str = "num", *, extra: str = "") -> str:
    """A table cell; ``text`` is escaped here, ``extra`` is trusted markup of ours."""
    attribute = f' class="{css}"' if css else ""
    return f"<td{attribute}>{_e(text)}{extra}</td>"


def _verdict(passed: bool) -> str:
    return ' <span class="pass">pass</span>' if passed else ' <span class="fail">fail</span>'


def _head(columns: Sequence[tuple[str, bool]]) -> str:
    """A header row; each column is ``(label, numeric)``."""
    cells = "".join(
        f'<th class="num">{_e(label)}</th>' if numeric else f"<th>{_e(label)}</th>"
        for label, numeric in columns
    )
    return f"<thead><tr>{cells}</tr></thead>"


def _header(results: Sequence[RunSummary], title: str) -> str:
    grid = results[0].grid
    zone = results[0].timezone
    start = grid.start.astimezone(ZoneInfo(zone))
    step_minutes = grid.step_s / SECONDS_PER_MINUTE
    span_h = grid.length * grid.step_s / SECONDS_PER_HOUR
    planners = planners_of(results)
    cities = cities_of(results)
    sessions = sum(r.metrics.sessions for r in results if r.metrics.planner == planners[0])
    offset = start.strftime("%z")
    lines = [
        f"Reported day: {start:%A} {start.date().isoformat()}",
        f"Time grid: from {start:%Y-%m-%d %H:%M} {zone} (UTC{offset[:3]}:{offset[3:]}), "
        f"{step_minutes:g}-minute steps, {grid.length:,} steps ({span_h:g} h, running on "
        "until the last session leaves)",
        f"{len(cities)} {'city' if len(cities) == 1 else 'cities'}, "
        f"{sessions:,} charging sessions; planners: {', '.join(planners)} "
        f"(reference: {planners[0]})",
    ]
    meta = "".join(f'<p class="meta">{_e(line)}</p>' for line in lines)
    return f"<header><h1>{_e(title)}</h1>{meta}</header>"


def _about(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    items = "".join(f"<li>{_e(note)}</li>" for note in notes)
    return f'<section class="about"><h2>About these figures</h2><ul>{items}</ul></section>'


def _summary_table(results: Sequence[RunSummary]) -> str:
    reference = planners_of(results)[0]
    columns = [
        ("Planner", False),
        ("Cities", True),
        (f"Peak reduction vs {reference} (kW)", True),
        ("Charged (MWh)", True),
        ("Discharged (MWh)", True),
        ("Valley share", True),
        ("Cities meeting valley rules", True),
        ("Unmet (kWh)", True),
        ("Unavoidable (kWh)", True),
        ("Owners' net cost (CNY)", True),
        ("Battery wear (CNY)", True),
        ("Planning (s)", True),
        ("Simulation (s)", True),
        ("Site limit violations", True),
        ("Fallbacks", True),
    ]
    rows = []
    for t in planner_totals(results):
        cells = [
            _td(t.planner, "ref" if t.planner == reference else ""),
            _td(f"{t.cities:,}"),
            _td(_number(t.peak_reduction_kw)),
            _td(_number(t.energy_charged_mwh, 2)),
            _td(_number(t.energy_discharged_mwh, 2)),
            _td(_share(t.valley_share)),
            _td(f"{t.cities_meeting_valley_rule:,} of {t.cities:,}"),
            _td(_number(t.unmet_energy_kwh, 1)),
            _td(_number(t.unavoidable_shortfall_kwh, 1)),
            _td(f"{t.owner_cost_cny:,}"),
            _td(f"{t.degradation_cost_cny:,}"),
            _td(_number(t.planner_seconds, 2)),
            _td(_number(t.simulate_seconds, 2)),
            _td(f"{t.site_limit_violations:,}", "num flag" if t.site_limit_violations else "num"),
            _td(f"{t.fallbacks:,}", "num flag" if t.fallbacks else "num"),
        ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    caption = (
        "Sums over cities. Peak reduction adds each city's drop in peak load against "
        f"{reference}; valley share is weighted by charged energy; the valley rules are "
        f"{VALLEY_SHARE_RULE:.0%} of charging energy in valley hours overall and "
        f"{VALLEY_SHARE_RULE_PRIVATE:.0%} on private chargers."
    )
    return (
        '<section id="summary"><h2>Totals per planner</h2><div class="scroll"><table>'
        f"{_head(columns)}<tbody>{''.join(rows)}</tbody></table></div>"
        f'<p class="caption">{_e(caption)}</p></section>'
    )


def _city_cells(m: CityMetrics, reduction_kw: float | None) -> list[str]:
    avoidable = m.unmet_energy_kwh > m.unavoidable_shortfall_kwh + SHORTFALL_FLAG_KWH
    return [
        _td(m.planner, ""),
        _td(f"{m.sessions:,} ({m.v2g_sessions:,})"),
        _td(_number(m.baseline_peak_kw)),
        _td(_number(m.peak_kw)),
        _td(_number(reduction_kw) if reduction_kw is not None else DASH),
        _td(_number(m.valley_kw)),
        _td(_share(m.valley_share), extra=_verdict(m.valley_share >= VALLEY_SHARE_RULE)),
        _td(
            _share(m.valley_share_private),
            extra=_verdict(m.valley_share_private >= VALLEY_SHARE_RULE_PRIVATE),
        ),
        _td(_number(m.energy_charged_kwh / KW_PER_MW, 2)),
        _td(_number(m.energy_discharged_kwh / KW_PER_MW, 2)),
        _td(f"{_number(m.renewable_absorbed_kwh)} / {_number(m.renewable_surplus_kwh)}"),
        _td(
            f"{_number(m.unmet_energy_kwh, 1)} / {_number(m.unavoidable_shortfall_kwh, 1)}",
            "num flag" if avoidable else "num",
        ),
        _td(str(m.owner_cost_cny)),  # exactly the Decimal, as settled
        _td(f"{m.degradation_cost_cny:,}"),
        _td(_number(m.planner_seconds, 2)),
        _td(_number(m.simulate_seconds, 2)),
        _td(f"{m.site_limit_violations:,}", "num flag" if m.site_limit_violations else "num"),
        _td(f"{m.fallbacks:,}", "num flag" if m.fallbacks else "num"),
    ]


def _rows_by_city(
    results: Sequence[RunSummary], cells_of: Callable[[CityMetrics], list[str]]
) -> str:
    """Table rows grouped by city (its name spanning its planners' rows), planners in
    order; ``cells_of`` gives the cells after the city's."""
    keyed = by_city_and_planner(results)
    planners = planners_of(results)
    rows = []
    for city in cities_of(results):
        city_runs = [keyed[city, p] for p in planners if (city, p) in keyed]
        for i, result in enumerate(city_runs):
            lead = f'<td class="city" rowspan="{len(city_runs)}">{_e(city)}</td>' if i == 0 else ""
            rows.append(f"<tr>{lead}{''.join(cells_of(result.metrics))}</tr>")
    return "".join(rows)


def _city_table(results: Sequence[RunSummary]) -> str:
    planners = planners_of(results)
    reduction = peak_reduction_kw(results)
    columns = [
        ("City", False),
        ("Planner", False),
        ("Sessions (V2G)", True),
        ("Peak, no EVs (kW)", True),
        ("Peak (kW)", True),
        (f"Peak reduction vs {planners[0]} (kW)", True),
        ("Valley load (kW)", True),
        (f"Valley share (rule {VALLEY_SHARE_RULE:.0%})", True),
        (f"Private valley share (rule {VALLEY_SHARE_RULE_PRIVATE:.0%})", True),
        ("Charged (MWh)", True),
        ("Discharged (MWh)", True),
        ("Renewable absorbed / surplus (kWh)", True),
        ("Unmet / unavoidable (kWh)", True),
        ("Owners' net cost (CNY)", True),
        ("Battery wear (CNY)", True),
        ("Planning (s)", True),
        ("Simulation (s)", True),
        ("Site limit violations", True),
        ("Fallbacks", True),
    ]
    rows = _rows_by_city(results, lambda m: _city_cells(m, reduction.get((m.city, m.planner))))
    caption = (
        "Loads are over the reported day (sessions past midnight folded onto its early "
        "hours). Unmet energy is what owners missed at departure; the unavoidable part "
        "could not be charged even at full power from arrival (red: the planner missed "
        "more). Owners' net cost is the exact sum of session bills, charging minus V2G "
        "revenue."
    )
    return (
        '<section id="cities"><h2>Cities</h2><div class="scroll"><table>'
        f"{_head(columns)}<tbody>{rows}</tbody></table></div>"
        f'<p class="caption">{_e(caption)}</p></section>'
    )


_FIGURES: tuple[tuple[str, Callable[[Sequence[RunSummary]], bytes], str], ...] = (
    (
        "Load over the reported day",
        load_curves_png,
        "Load per city (MW): the base load without EVs (grey, dashed), the total with "
        "each planner's fleet, and the renewable surplus (shaded).",
    ),
    (
        "State of charge",
        soc_png,
        "Mean state of charge of the plugged vehicles per city over the whole run, one "
        "panel per planner; the band is the 10th-90th percentile of the first city's "
        "sampled vehicles.",
    ),
    (
        "V2G discharge by hour",
        discharge_by_hour_png,
        "Energy discharged to the grid in each local hour (MWh), summed over cities.",
    ),
    (
        "Owners' cost",
        owner_cost_png,
        "Owners' net cost per city (CNY), and per-session net bills over all cities "
        "(box: quartiles; whiskers: 5th-95th percentile).",
    ),
    (
        "Valley charging",
        valley_share_png,
        "Share of charging energy in valley hours per city, against the pilot rules "
        f"({VALLEY_SHARE_RULE:.0%} overall, {VALLEY_SHARE_RULE_PRIVATE:.0%} on private "
        "chargers).",
    ),
)


def _figure(heading: str, png: bytes, caption: str) -> str:
    """A figure: the PNG inline, its heading as alt text and in the caption."""
    encoded = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{encoded}" alt="{_e(heading)}">'
        f"<figcaption><strong>{_e(heading)}.</strong> {_e(caption)}</figcaption></figure>"
    )


def _figures(results: Sequence[RunSummary]) -> str:
    figures = "".join(
        _figure(heading, draw(results), caption) for heading, draw, caption in _FIGURES
    )
    return f'<section id="figures"><h2>Figures</h2>{figures}</section>'


def _settlement(settlement: dict[str, Any]) -> str:
    """Who is paid what, per city and planner, and the pilot KPIs (``settlement.json``)."""
    periods = list(settlement["periods"].values())
    planners = list(dict.fromkeys(p["planner"] for p in periods))
    head = _head(
        [
            ("City", False),
            ("Planner", False),
            ("Owners earning", True),
            ("Earned, CNY", True),
            ("Median owner", True),
            ("90th pct", True),
            ("Operators, CNY", True),
            ("Aggregator net, CNY", True),
            ("Discharge kW", True),
            ("MWh / year", True),
            ("Valley share", True),
            ("Private", True),
        ]
    )
    rows = []
    for period in periods:
        owners = period["owners"]
        parties = period["parties"]
        operators = sum(Decimal(v["received_cny"]) for v in parties.get("operator", {}).values())
        aggregator = sum(
            Decimal(v["received_cny"]) - Decimal(v["paid_cny"])
            for v in parties.get("aggregator", {}).values()
        )
        kpis = period["kpis"]
        passes = kpis["passes"]
        spread = owners["earnings_cny_percentiles"]
        cells = [
            _td(period["city"], ""),
            _td(period["planner"], ""),
            _td(f"{owners['earning']:,} of {owners['count']:,}"),
            _td(owners["earnings_cny_total"]),
            _td(spread.get("p50", "-")),
            _td(spread.get("p90", "-")),
            _td(str(operators)),
            _td(str(aggregator)),
            _td(
                _number(kpis["discharge_capacity_kw"]), extra=_verdict(passes["discharge_capacity"])
            ),
            _td(
                _number(kpis["discharged_mwh_per_year"], 1),
                extra=_verdict(passes["discharged_energy"]),
            ),
            _td(_share(kpis["valley_share"]), extra=_verdict(passes["valley_share"])),
            _td(
                _share(kpis["valley_share_private"]),
                extra=_verdict(passes["valley_share_private"]),
            ),
        ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    caption = (
        "Settled exactly to the fen (v2ghub settle writes every statement line): owners pay "
        "charging at the TOU tariff; the grid pays V2G discharge at the city's discharge "
        "price to the aggregator, who shares it by contract (default: owner 90% at home; "
        "owner 70%, operator 20% at stations; aggregator 10%) and pays owners battery wear. "
        "Earned = discharge shares plus wear compensation. Pilot KPIs per city "
        "(notice 2024-718): at least 500 kW of discharge, 100 MWh a year (the day x 365), "
        "60% of charging in valley hours, 80% at private chargers."
        + ("" if settlement["balanced"] else " WARNING: the ledger does not balance.")
    )
    figure = _figure(
        "Owners' V2G earnings", owner_earnings_png(periods, planners), _EARNINGS_CAPTION
    )
    return (
        '<section id="settlement"><h2>Who is paid what</h2><div class="scroll"><table>'
        f"{head}<tbody>{''.join(rows)}</tbody></table></div>"
        f'<p class="caption">{_e(caption)}</p>{figure}</section>'
    )


_EARNINGS_CAPTION = (
    "Per city and planner, what an owner whose car discharged received: the bar spans the "
    "10th to the 90th percentile, the line is the median."
)


def _has_grid_services(result: RunSummary) -> bool:
    return bool(result.envelope or result.regulation_hours or result.demand_response_events)


def _grid_service_cells(m: CityMetrics) -> list[str]:
    regulated = m.regulation_hours > 0
    requested = m.dr_requested_kwh
    return [
        _td(m.planner, ""),
        _td(f"{m.regulation_hours:,}"),
        _td(_number(m.regulation_capacity_up_mw, 2) if regulated else DASH),
        _td(_number(m.regulation_capacity_down_mw, 2) if regulated else DASH),
        _td(_number(m.regulation_committed_mw, 2) if regulated else DASH),
        _td(_number(m.regulation_score, 2) if regulated else DASH),
        _td(_number(m.regulation_mileage_mw, 1) if regulated else DASH),
        _td(f"{m.dr_events:,}"),
        _td(_number(requested, 1) if m.dr_events else DASH),
        _td(_number(m.dr_delivered_kwh, 1) if m.dr_events else DASH),
        _td(_share(m.dr_delivered_kwh / requested) if requested > 0 else DASH),
    ]


_GRID_SERVICES_CAPTION = (
    "Up and down are the grid's: regulation up means the fleet takes less from the grid "
    "(charges less or discharges more), regulation down that it takes more. Offered: the "
    "mean headroom each way over the offered hours that the fleet could hold for the whole "
    "hour; committed: the mean symmetric capacity promised; score: the mean PJM-style "
    "composite of correlation, delay and precision (0-1); mileage: how far the signal "
    "moved the fleet in all, MW. Demand response: the energy requested below the baseline "
    "(the fleet without the event) and delivered, each step credited up to its request."
)
_GRID_SERVICE_FIGURES: tuple[
    tuple[str, Callable[[Sequence[RunSummary]], bytes | None], str], ...
] = (
    (
        "Flexibility envelope",
        envelope_png,
        "Per city, the fleet's planned net power at the top of each hour (MW, charging "
        "positive) and how far it could move up (more charging: the grid's regulation down) "
        "or down (the grid's regulation up) and hold for 1 h (dark band) or 15 min (light "
        "band). Drawn for the last planner of the run that has an envelope, usually the "
        "optimiser; hours past midnight are folded onto the day as in the load figure.",
    ),
    (
        "Regulation: requested and delivered",
        regulation_png,
        "Per city, the first regulation hour of the same planner: the change of fleet "
        "power the signal asked for and the change delivered (MW, 2-s samples, charging "
        "positive), the committed capacity dotted, and the hour's composite score.",
    ),
    (
        "Demand response",
        demand_response_png,
        "Per city and event, the fleet's net load without the event (baseline), with it "
        "(actual: baseline minus the delivered reduction) and the level requested "
        "(baseline minus the requested reduction), MW per step.",
    ),
)


def _grid_services(results: Sequence[RunSummary]) -> str:
    """Regulation and demand response per city and planner, and their figures; nothing
    when no run has any of them."""
    if not any(_has_grid_services(r) for r in results):
        return ""
    columns = [
        ("City", False),
        ("Planner", False),
        ("Regulation hours", True),
        ("Up offered (MW)", True),
        ("Down offered (MW)", True),
        ("Committed (MW)", True),
        ("Score", True),
        ("Mileage (MW)", True),
        ("DR events", True),
        ("DR requested (kWh)", True),
        ("DR delivered (kWh)", True),
        ("Delivered share", True),
    ]
    rows = _rows_by_city(results, _grid_service_cells)
    figures = []
    for heading, draw, caption in _GRID_SERVICE_FIGURES:
        png = draw(results)
        if png is not None:
            figures.append(_figure(heading, png, caption))
    return (
        '<section id="grid-services"><h2>Grid services</h2><div class="scroll"><table>'
        f"{_head(columns)}<tbody>{rows}</tbody></table></div>"
        f'<p class="caption">{_e(_GRID_SERVICES_CAPTION)}</p>{"".join(figures)}</section>'
    )


def _battery_wear(results: Sequence[RunSummary]) -> str:
    png = owner_wear_png(results)
    return wear_section(results, _figure(FIGURE_HEADING, png, FIGURE_CAPTION) if png else "")


def _feeders(results: Sequence[RunSummary]) -> str:
    png = feeders_png(results)
    return feeders_section(results, _figure(FEEDERS_HEADING, png, FEEDERS_CAPTION) if png else "")


def render_html(
    results: Sequence[RunSummary],
    *,
    title: str,
    notes: Sequence[str],
    settlement: Settled | None = None,
) -> str:
    """The whole report as one HTML document (no file written). ``settlement`` may be a
    function that returns the document: it is called once the figures are drawn, so a
    settlement made meanwhile (on another thread) is waited for only then."""
    if not results:
        raise ValueError("no runs to report: results is empty")
    # The sections are made in this order, the figures (most of the time) first.
    grid_services = _grid_services(results)
    battery_wear = _battery_wear(results)
    valley_rule = valley_rule_section(results)
    feeders = _feeders(results)
    figures = _figures(results)
    settled = settlement() if callable(settlement) else settlement
    body = "".join(
        (
            _header(results, title),
            "<main>",
            _about(notes),
            _summary_table(results),
            _city_table(results),
            _settlement(settled) if settled is not None else "",
            grid_services,
            battery_wear,
            valley_rule,
            feeders,
            figures,
            "</main>",
            f"<footer>{_e(f'Made with v2ghub {__version__}.')}</footer>",
        )
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def write_html_report(
    path: Path,
    results: list[RunSummary],
    *,
    title: str,
    notes: list[str],
    settlement: Settled | None = None,
) -> None:
    """Write the report of ``results`` to ``path`` as one self-contained HTML file.

    Parameters
    ----------
    path:
        The report file (its directory must exist); replaced atomically if present.
    results:
        One run per city and planner; the first planner is the reference.
    title:
        The report's title (plain text; escaped).
    notes:
        Plain-text notes shown under "About these figures" (escaped), for example
        which inputs are synthetic and which tariffs are assumed.
    settlement:
        The run's ``settlement.json`` document, for the "Who is paid what" section, or a
        function that returns it (called once the figures are drawn).
    """
    document = render_html(
        results, title=title, notes=notes, settlement=settlement
    )  # before touching the disk
    write_text_atomic(Path(path), document)
