"""The report's figures: each function takes the runs of one simulation and returns a PNG.

Every function draws with the non-interactive Agg backend inside its own
``rc_context`` (so no style leaks into the caller's matplotlib settings) and closes its
figure before returning. Runs are grouped by city and planner in the order they first
appear in ``results``; the first planner is the reference. The grid-services figures
(envelope, regulation, demand response) return None when no run has their data.

Energy per hour folds the reported day's power curve (kW per step) onto local hours::

    energy_mwh[h] = sum(power_kw[k] * dt_h for steps k starting in hour h) / 1000
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")  # set before pyplot is imported: reports render without a display

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MultipleLocator, PercentFormatter
from matplotlib.typing import RcKeyType

from v2ghub.regulation.envelope import EnvelopeHour
from v2ghub.report.outputs import duration_label
from v2ghub.settlement.kpis import VALLEY_SHARE_RULE, VALLEY_SHARE_RULE_PRIVATE
from v2ghub.sim.metrics import (
    RunSummary,
)
from v2ghub.units import KW_PER_MW, MINUTES_PER_HOUR, SECONDS_PER_HOUR

FloatArray = npt.NDArray[np.float64]

HOURS_PER_DAY = 24
FEN_PER_CNY = 100
DPI = 110
PANEL_WIDTH_IN = 3.6
PANEL_HEIGHT_IN = 2.5
WIDE_FIGURE_IN = 10.5
MAX_UPRIGHT_LABELS = 10  # more cities than this and their names are set at a slant

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PLANNER_COLORS = ("#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
CITY_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
BASE_LOAD_COLOR = "#808080"
SURPLUS_COLOR = "#f2c12e"
RULE_COLOR = "#333333"
FLEET_COLOR = "#0072B2"
REQUESTED_COLOR = "#D55E00"
CLOCK_TICKS_H = (0.25, 0.5, 1.0, 2.0, 3.0, 6.0)  # tick spacings that read as clock times

_STYLE: dict[RcKeyType, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "legend.frameon": False,
    "legend.fontsize": 8.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
}


# --------------------------------------------------------------------------- grouping


def cities_of(results: Sequence[RunSummary]) -> list[str]:
    """Cities in the order they first appear."""
    return list(dict.fromkeys(r.metrics.city for r in results))


def planners_of(results: Sequence[RunSummary]) -> list[str]:
    """Planners in the order they first appear; the first is the reference."""
    return list(dict.fromkeys(r.metrics.planner for r in results))


def by_city_and_planner(results: Sequence[RunSummary]) -> dict[tuple[str, str], RunSummary]:
    """Each run keyed by ``(city, planner)``; a repeated key is an error."""
    keyed: dict[tuple[str, str], RunSummary] = {}
    for result in results:
        key = (result.metrics.city, result.metrics.planner)
        if key in keyed:
            raise ValueError(f"two runs for city {key[0]!r} with planner {key[1]!r}")
        keyed[key] = result
    return keyed


def planner_colors(planners: Sequence[str]) -> dict[str, str]:
    """A fixed colour per planner, by position."""
    return {p: PLANNER_COLORS[i % len(PLANNER_COLORS)] for i, p in enumerate(planners)}


# --------------------------------------------------------------------------- numbers


def discharge_by_hour_mwh(discharge_kw: FloatArray, *, dt_h: float) -> FloatArray:
    """Discharge energy per local hour of the reported day (MWh, 24 values).

    ``discharge_kw`` is the daily curve (one value per step from local midnight). Each
    step counts in the hour in which it starts:
    ``energy_mwh[h] = sum(discharge_kw[k] * dt_h, k * dt_h in [h, h + 1)) / 1000``.
    """
    if dt_h <= 0:
        raise ValueError(f"dt_h must be > 0, got {dt_h}")
    hour = np.floor(np.arange(discharge_kw.size) * dt_h + 1e-9).astype(np.int64)
    inside = hour < HOURS_PER_DAY
    energy_kwh = np.bincount(
        hour[inside], weights=discharge_kw[inside] * dt_h, minlength=HOURS_PER_DAY
    )
    return np.asarray(energy_kwh / KW_PER_MW, dtype=np.float64)


def soc_band(soc_sample: FloatArray, *, low: float = 10, high: float = 90) -> FloatArray:
    """The ``low`` and ``high`` percentiles of SoC per step, ignoring unplugged (NaN).

    Returns shape ``(2, n_steps)``; a step with no plugged sample vehicle is NaN (computed
    only where a value exists, so numpy warns about nothing).
    """
    band = np.full((2, soc_sample.shape[1]), np.nan)
    has_value = ~np.all(np.isnan(soc_sample), axis=0)
    if has_value.any():
        band[:, has_value] = np.nanpercentile(soc_sample[:, has_value], [low, high], axis=0)
    return band


def _step_curve(values: FloatArray, dt_h: float) -> tuple[FloatArray, FloatArray]:
    """x (h) and y for a step plot that holds each value over its whole step."""
    x = np.arange(values.size + 1, dtype=np.float64) * dt_h
    y = np.append(values, values[-1] if values.size else np.nan).astype(np.float64)
    return x, y


# --------------------------------------------------------------------------- drawing


@contextmanager
def _figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    width_in: float,
    height_in: float,
    sharex: bool = False,
    sharey: bool = False,
    width_ratios: Sequence[float] | None = None,
) -> Iterator[tuple[Figure, list[list[Axes]]]]:
    """A figure with a grid of axes (rows of columns), in the report style, always closed."""
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(
            nrows,
            ncols,
            figsize=(width_in, height_in),
            squeeze=False,
            sharex=sharex,
            sharey=sharey,
            width_ratios=width_ratios,
            layout="constrained",
        )
        try:
            yield fig, [list(row) for row in axes]
        finally:
            plt.close(fig)


@contextmanager
def _small_multiples(
    count: int, *, sharex: bool = True
) -> Iterator[tuple[Figure, list[Axes], int]]:
    """``count`` panels in a near-square grid (the unused ones hidden), and its columns."""
    ncols = math.ceil(math.sqrt(count))
    nrows = math.ceil(count / ncols)
    with _figure(
        nrows,
        ncols,
        width_in=max(PANEL_WIDTH_IN * ncols, 6.0),
        height_in=PANEL_HEIGHT_IN * nrows + 0.6,
        sharex=sharex,
    ) as (fig, axes):
        panels = [ax for row in axes for ax in row]
        for ax in panels[count:]:
            ax.set_visible(False)
        yield fig, panels[:count], ncols


def _png(fig: Figure) -> bytes:
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _hour_axis(ax: Axes, end_h: float) -> None:
    """Ticks every 6 h labelled as local clock time; past the day's end marked +1d."""
    ax.set_xlim(0, end_h)
    ticks = np.arange(0, end_h + 1e-9, 6.0)
    ax.set_xticks(ticks)
    labels = []
    for tick in ticks:
        if end_h <= HOURS_PER_DAY:
            labels.append(f"{int(tick):02d}:00")  # one day: its end reads 24:00
            continue
        day, hour = divmod(int(tick), HOURS_PER_DAY)
        labels.append(f"{hour:02d}:00" + (f"\n+{day}d" if day else ""))
    ax.set_xticklabels(labels)


def _thousands(value: float, _position: int | None = None) -> str:
    return f"{value:,.0f}"


def _grouped_bars(
    ax: Axes,
    categories: Sequence[str],
    values: dict[str, FloatArray],
    colors: dict[str, str],
) -> None:
    """One group per category, one bar per series (NaN bars are left out)."""
    n = max(len(values), 1)
    width = 0.8 / n
    x = np.arange(len(categories))
    for i, (name, heights) in enumerate(values.items()):
        ax.bar(x + (i - (n - 1) / 2) * width, heights, width, label=name, color=colors[name])
    ax.set_xticks(x)
    rotate = len(categories) > MAX_UPRIGHT_LABELS
    ax.set_xticklabels(categories, rotation=30 if rotate else 0, ha="right" if rotate else "center")
    ax.grid(axis="x", visible=False)


def _per_city(
    results: Sequence[RunSummary], field: str, scale: float = 1.0
) -> dict[str, FloatArray]:
    """A metric as one array over cities per planner (NaN where a run is missing)."""
    keyed = by_city_and_planner(results)
    cities = cities_of(results)
    out: dict[str, FloatArray] = {}
    for planner in planners_of(results):
        row = [
            float(getattr(keyed[c, planner].metrics, field)) * scale
            if (c, planner) in keyed
            else np.nan
            for c in cities
        ]
        out[planner] = np.asarray(row, dtype=np.float64)
    return out


def _require(results: Sequence[RunSummary]) -> None:
    if not results:
        raise ValueError("no runs to plot")


# --------------------------------------------------------------------------- figures


def load_curves_png(results: Sequence[RunSummary]) -> bytes:
    """Load over the reported day per city: base load, total load per planner, surplus.

    One panel per city (a near-square grid), MW against local hour; the base load
    without EVs is grey and dashed, the renewable surplus a light area.
    """
    _require(results)
    keyed = by_city_and_planner(results)
    cities = cities_of(results)
    planners = planners_of(results)
    colors = planner_colors(planners)
    with _small_multiples(len(cities)) as (fig, panels, ncols):
        for ax, city in zip(panels, cities, strict=True):
            city_runs = [keyed[city, p] for p in planners if (city, p) in keyed]
            first = city_runs[0]
            dt_h = first.grid.dt_h
            x, surplus = _step_curve(first.curves.renewable_surplus_kw / KW_PER_MW, dt_h)
            ax.fill_between(x, 0, surplus, step="post", color=SURPLUS_COLOR, alpha=0.35, lw=0)
            x, base = _step_curve(first.curves.base_load_kw / KW_PER_MW, dt_h)
            ax.plot(x, base, drawstyle="steps-post", color=BASE_LOAD_COLOR, ls="--", lw=1.1)
            for result in city_runs:
                x, total = _step_curve(result.curves.total_load_kw / KW_PER_MW, dt_h)
                ax.plot(
                    x, total, drawstyle="steps-post", color=colors[result.metrics.planner], lw=1.3
                )
            ax.set_title(city)
            ax.set_ylim(bottom=0)
            _hour_axis(ax, HOURS_PER_DAY)
        fig.supylabel("Load (MW)")
        fig.supxlabel("Local time")
        handles = [
            Line2D([], [], color=BASE_LOAD_COLOR, ls="--", label="Base load (no EVs)"),
            *[Line2D([], [], color=colors[p], lw=1.6, label=f"Total, {p}") for p in planners],
            Patch(color=SURPLUS_COLOR, alpha=0.35, label="Renewable surplus"),
        ]
        legend_columns = len(handles) if ncols >= 3 else 3  # narrow figures: two rows
        fig.legend(handles=handles, loc="outside upper center", ncols=legend_columns)
        return _png(fig)


def soc_png(results: Sequence[RunSummary]) -> bytes:
    """Mean SoC of plugged vehicles over the whole run, one panel per planner.

    Thin lines: the mean per city. Band: the 10th-90th percentile of the first city's
    sampled vehicles (those plugged at the step).
    """
    _require(results)
    keyed = by_city_and_planner(results)
    cities = cities_of(results)
    planners = planners_of(results)
    city_colors = {c: CITY_COLORS[i % len(CITY_COLORS)] for i, c in enumerate(cities)}
    band_city = cities[0]
    end_h = max(r.grid.length * r.grid.dt_h for r in results)
    end_h = math.ceil(end_h / 6) * 6
    ncols = len(planners)
    with _figure(
        1,
        ncols,
        width_in=max(3.6 * ncols, 6.0),
        height_in=3.6,
        sharey=True,
    ) as (fig, axes):
        for ax, planner in zip(axes[0], planners, strict=True):
            band_run = keyed.get((band_city, planner))
            if band_run is not None:
                grid = band_run.grid
                band = soc_band(band_run.soc_sample) * 100
                x = np.arange(grid.length) * grid.dt_h
                ax.fill_between(x, band[0], band[1], color=city_colors[band_city], alpha=0.18, lw=0)
            for city in cities:
                if (city, planner) not in keyed:
                    continue
                run = keyed[city, planner]
                x = np.arange(run.grid.length) * run.grid.dt_h
                ax.plot(x, run.mean_soc * 100, color=city_colors[city], lw=0.9)
            ax.axvline(HOURS_PER_DAY, color=RULE_COLOR, lw=0.6, ls=":")
            ax.set_title(planner)
            ax.set_ylim(0, 100)
            ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
            _hour_axis(ax, end_h)
        axes[0][0].set_ylabel("SoC of plugged vehicles")
        fig.supxlabel("Local time (from midnight of the reported day)")
        handles: list[Line2D | Patch] = [
            Line2D([], [], color=city_colors[c], lw=1.2, label=c) for c in cities
        ]
        handles.append(
            Patch(color=city_colors[band_city], alpha=0.18, label=f"{band_city} p10-p90")
        )
        fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 5))
        return _png(fig)


def discharge_by_hour_png(results: Sequence[RunSummary]) -> bytes:
    """V2G discharge energy per local hour, summed over cities, bars per planner (MWh)."""
    _require(results)
    planners = planners_of(results)
    colors = planner_colors(planners)
    per_planner = {p: np.zeros(HOURS_PER_DAY) for p in planners}
    for result in results:
        per_planner[result.metrics.planner] += discharge_by_hour_mwh(
            result.curves.discharge_kw, dt_h=result.grid.dt_h
        )
    discharging = [p for p in planners if per_planner[p].any()]
    idle = [p for p in planners if p not in discharging]
    with _figure(width_in=WIDE_FIGURE_IN, height_in=3.6) as (fig, axes):
        ax = axes[0][0]
        n = max(len(discharging), 1)
        width = 0.8 / n
        hours = np.arange(HOURS_PER_DAY)
        for i, planner in enumerate(discharging):
            total = float(per_planner[planner].sum())
            ax.bar(
                hours + 0.5 + (i - (n - 1) / 2) * width,
                per_planner[planner],
                width,
                color=colors[planner],
                label=f"{planner} ({total:,.2f} MWh in the day)",
            )
        if idle:  # a legend line without a bar
            ax.plot([], [], lw=0, label="No discharge: " + ", ".join(idle))
        peak_mwh = max((float(per_planner[p].max()) for p in discharging), default=0.0)
        ax.set_ylim(0, peak_mwh * 1.3 if peak_mwh > 0 else 1.0)  # room for the legend
        ax.legend(loc="upper left")
        ax.set_xlim(0, HOURS_PER_DAY)
        ax.xaxis.set_major_locator(MultipleLocator(3))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{int(v):02d}:00"))
        ax.grid(axis="x", visible=False)
        ax.set_ylabel("Discharge (MWh per hour)")
        ax.set_xlabel("Local hour of the reported day")
        ax.set_title("V2G discharge to the grid, all cities")
        return _png(fig)


def owner_cost_png(results: Sequence[RunSummary]) -> bytes:
    """Owners' net cost per city and planner (CNY), and the spread of session bills.

    Left: the sum of bills per city. Right: per-session net bills over all cities, as
    box plots (box = quartiles, whiskers = 5th-95th percentile, outliers not drawn).
    """
    _require(results)
    cities = cities_of(results)
    planners = planners_of(results)
    colors = planner_colors(planners)
    cost = _per_city(results, "owner_cost_cny")
    bills_cny = [
        np.concatenate([r.bill_sample_fen / FEN_PER_CNY for r in results if r.metrics.planner == p])
        for p in planners
    ]
    with _figure(
        1,
        2,
        width_in=WIDE_FIGURE_IN,
        height_in=4.0,
        width_ratios=[max(len(cities), 2), 2],
    ) as (fig, axes):
        ax = axes[0][0]
        _grouped_bars(ax, cities, cost, colors)
        ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
        ax.axhline(0, color=RULE_COLOR, lw=0.8)
        ax.set_ylabel("Owners' net cost (CNY)")
        ax.set_title("Net cost of all owners per city")
        fig.legend(loc="outside upper center", ncols=len(planners))

        ax = axes[0][1]
        boxes = ax.boxplot(
            bills_cny,
            tick_labels=planners,
            whis=(5, 95),
            showfliers=False,
            patch_artist=True,
            medianprops={"color": "black"},
        )
        for patch, planner in zip(boxes["boxes"], planners, strict=True):
            patch.set_facecolor(colors[planner])
            patch.set_alpha(0.7)
        ax.axhline(0, color=RULE_COLOR, lw=0.8)
        ax.set_ylabel("Net bill per session (CNY)")
        ax.set_title("Session bills, all cities")
        ax.tick_params(axis="x", rotation=30 if len(planners) > 3 else 0)
        return _png(fig)


def valley_share_png(results: Sequence[RunSummary]) -> bytes:
    """Share of charging energy in valley hours per city and planner, against the rules.

    Top: all chargers, rule 60%. Bottom: private (home) chargers, rule 80%. Where a
    planner kept the rule, a black line over each city marks the most the day allowed.
    """
    _require(results)
    cities = cities_of(results)
    colors = planner_colors(planners_of(results))
    panels = (
        ("valley_share", VALLEY_SHARE_RULE, "All chargers"),
        ("valley_share_private", VALLEY_SHARE_RULE_PRIVATE, "Private (home) chargers"),
    )
    with _figure(2, 1, width_in=WIDE_FIGURE_IN, height_in=6.4, sharex=True) as (fig, axes):
        for ax, (field, rule, title) in zip((row[0] for row in axes), panels, strict=True):
            _grouped_bars(ax, cities, _per_city(results, field, scale=100), colors)
            reach = np.nanmax(
                np.vstack(list(_per_city(results, f"{field}_reachable", scale=100).values())),
                axis=0,
                initial=-np.inf,
            )
            for i, most in enumerate(reach):
                if np.isfinite(most):  # the most the day allowed (runs keeping the rule)
                    ax.plot(
                        [i - 0.42, i + 0.42],
                        [most, most],
                        color="black",
                        lw=1.5,
                        label="most the day allowed" if i == 0 else None,
                    )
            ax.axhline(rule * 100, color=RULE_COLOR, lw=1.2, ls="--")
            ax.annotate(
                f"pilot rule {rule:.0%}",
                xy=(1, rule * 100),
                xycoords=("axes fraction", "data"),
                xytext=(-4, 3),
                textcoords="offset points",
                ha="right",
                fontsize=8,
            )
            ax.set_ylim(0, 105)
            ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
            ax.set_ylabel("Charging energy in valley")
            ax.set_title(title)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside upper center", ncols=len(colors))
        return _png(fig)


def owner_earnings_png(periods: Sequence[dict[str, Any]], planners: Sequence[str]) -> bytes:
    """What owners earned from V2G per city and planner: the spread over earning owners.

    One bar per city and planner from the 10th to the 90th percentile of an earning
    owner's receipts (discharge share and battery-wear compensation, CNY), the median
    marked; ``periods`` are ``settlement.json`` periods.
    """
    cities = list(dict.fromkeys(p["city"] for p in periods))
    colors = planner_colors(planners)
    # Charge-only planners earn nothing: leave them out rather than leave gaps.
    planners = [
        name
        for name in planners
        if any(p["planner"] == name and p["owners"]["earnings_cny_percentiles"] for p in periods)
    ]
    width = 0.8 / max(len(planners), 1)
    with _figure(1, 1, width_in=WIDE_FIGURE_IN, height_in=3.6) as (fig, axes):
        ax = axes[0][0]
        for j, planner in enumerate(planners):
            for i, city in enumerate(cities):
                found = [p for p in periods if p["city"] == city and p["planner"] == planner]
                spread = found[0]["owners"]["earnings_cny_percentiles"] if found else {}
                if not spread:
                    continue
                low, mid, high = (float(spread[k]) for k in ("p10", "p50", "p90"))
                x = i - 0.4 + (j + 0.5) * width
                ax.bar(x, high - low, bottom=low, width=width * 0.9, color=colors[planner])
                ax.plot([x - width * 0.45, x + width * 0.45], [mid, mid], color="black", lw=1)
        ax.set_xticks(range(len(cities)), cities, rotation=30 if len(cities) > 4 else 0)
        ax.set_ylabel("Earned per owner (CNY)")
        ax.set_title("Owners' V2G earnings: 10th-90th percentile, median marked")
        handles = [Patch(color=colors[p], label=p) for p in planners]
        fig.legend(handles=handles, loc="outside upper center", ncols=len(planners))
        return _png(fig)


# --------------------------------------------------------------------------- grid services


@dataclass(frozen=True)
class DailyEnvelope:
    """A run's flexibility envelope folded onto the 24 hours of the reported day (kW).

    ``raise_kw`` and ``lower_kw`` have shape ``(24, len(durations_h))``: how far the
    fleet's power could go up or down from ``planned_kw`` at the top of each hour and
    hold for each duration.
    """

    durations_h: tuple[float, ...]
    planned_kw: FloatArray
    raise_kw: FloatArray
    lower_kw: FloatArray


def daily_envelope(
    hours: Sequence[EnvelopeHour], *, day_start: datetime, days: int = 1
) -> DailyEnvelope:
    """Fold envelope hours onto the day from ``day_start``, as the daily curves are.

    The value at hour ``h`` sums every envelope hour that starts ``h``, ``h + 24``, ...
    hours after ``day_start`` (the sessions still plugged the next morning fill the
    day's early hours), divided by ``days``, the number of arrival days. Hours before
    ``day_start`` are left out. Every hour must have the same durations.
    """
    durations = hours[0].durations_h if hours else ()
    if any(h.durations_h != durations for h in hours):
        raise ValueError("envelope hours with different durations cannot be folded together")
    offset_h = np.array(
        [round((h.start - day_start).total_seconds() / SECONDS_PER_HOUR) for h in hours],
        dtype=np.int64,
    )
    inside = offset_h >= 0
    hour = offset_h[inside] % HOURS_PER_DAY
    planned = np.array([h.planned_kw for h in hours], dtype=np.float64)[inside]
    shape = (HOURS_PER_DAY, len(durations))
    raise_kw, lower_kw = np.zeros(shape), np.zeros(shape)
    if hours:
        np.add.at(raise_kw, hour, np.stack([h.raise_kw for h in hours])[inside])
        np.add.at(lower_kw, hour, np.stack([h.lower_kw for h in hours])[inside])
    return DailyEnvelope(
        durations_h=durations,
        planned_kw=np.bincount(hour, weights=planned, minlength=HOURS_PER_DAY) / days,
        raise_kw=raise_kw / days,
        lower_kw=lower_kw / days,
    )


def service_runs(
    results: Sequence[RunSummary],
    has_data: Callable[[RunSummary], bool],
    planner: str | None = None,
) -> list[RunSummary]:
    """Per city (in order), the run whose grid services are drawn.

    ``planner``'s run if given; otherwise the last planner of the run whose run has data
    (``has_data``): the planners are listed simplest first, so usually the optimiser.
    Cities without such a run are left out.
    """
    keyed = by_city_and_planner(results)
    candidates = [planner] if planner is not None else planners_of(results)[::-1]
    chosen = []
    for city in cities_of(results):
        runs = [keyed[city, p] for p in candidates if (city, p) in keyed]
        chosen.extend([r for r in runs if has_data(r)][:1])
    return chosen


def _clock(value: float, _position: int | None = None) -> str:
    """Hours from midnight as a local clock time (``HH:MM``, past 24 h wrapped)."""
    minutes = round(value * MINUTES_PER_HOUR) % (HOURS_PER_DAY * MINUTES_PER_HOUR)
    return f"{minutes // MINUTES_PER_HOUR:02d}:{minutes % MINUTES_PER_HOUR:02d}"


def _local(moment: datetime, timezone: str) -> datetime:
    return moment.astimezone(ZoneInfo(timezone))


def envelope_png(results: Sequence[RunSummary], *, planner: str | None = None) -> bytes | None:
    """The fleet's planned power over the reported day and how far it could move, per city.

    One panel per city, MW against local hour, for the run chosen by
    :func:`service_runs` (``planner``, or the last planner with an envelope). The line is
    the planned net power at the top of each hour (charging positive); the bands reach
    from ``planned - lower`` to ``planned + raise`` that the fleet could hold for 1 h
    (dark) and 15 min (light). Hours past midnight are folded onto the day (one arrival
    day, as the synthetic scenarios). None when no run has an envelope.
    """
    runs = service_runs(results, lambda r: bool(r.envelope), planner)
    if not runs:
        return None
    bands = {0.25: 0.18, 1.0: 0.38}  # duration (h): opacity, the longer hold darker
    with _small_multiples(len(runs)) as (fig, panels, _ncols):
        for ax, run in zip(panels, runs, strict=True):
            folded = daily_envelope(run.envelope, day_start=run.grid.start, days=run.arrival_days)
            planned = folded.planned_kw / KW_PER_MW
            for duration_h, alpha in bands.items():
                if duration_h not in folded.durations_h:
                    continue
                k = folded.durations_h.index(duration_h)
                x, high = _step_curve(planned + folded.raise_kw[:, k] / KW_PER_MW, 1.0)
                x, low = _step_curve(planned - folded.lower_kw[:, k] / KW_PER_MW, 1.0)
                ax.fill_between(x, low, high, step="post", color=FLEET_COLOR, alpha=alpha, lw=0)
            x, line = _step_curve(planned, 1.0)
            ax.plot(x, line, drawstyle="steps-post", color=FLEET_COLOR, lw=1.3)
            ax.axhline(0, color=RULE_COLOR, lw=0.6)
            ax.set_title(f"{run.city} ({run.planner})")
            _hour_axis(ax, HOURS_PER_DAY)
        fig.supylabel("Fleet net power (MW)")
        fig.supxlabel("Local time")
        handles: list[Line2D | Patch] = [
            Line2D([], [], color=FLEET_COLOR, lw=1.6, label="Planned"),
            *[
                Patch(color=FLEET_COLOR, alpha=a, label=f"Can move for {duration_label(d, ' ')}")
                for d, a in bands.items()
            ],
        ]
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles))
        return _png(fig)


def regulation_png(results: Sequence[RunSummary], *, planner: str | None = None) -> bytes | None:
    """Each city's first regulation hour: the change of fleet power asked and delivered.

    One panel per city (the run chosen by :func:`service_runs`), MW per signal sample
    against minutes into the hour, positive = more charging; dotted: the committed
    capacity either way. The title gives the hour's PJM composite score. None when no
    run has a regulation hour.
    """
    runs = service_runs(results, lambda r: bool(r.regulation_hours), planner)
    if not runs:
        return None
    with _small_multiples(len(runs)) as (fig, panels, _ncols):
        for ax, run in zip(panels, runs, strict=True):
            hour = run.regulation_hours[0]
            samples = max(hour.requested_kw.size, 1)
            minutes = np.arange(hour.requested_kw.size) * (MINUTES_PER_HOUR / samples)
            # Requested wide and pale beneath: a close follower leaves it visible at the edges.
            ax.plot(
                minutes, hour.requested_kw / KW_PER_MW, color=REQUESTED_COLOR, lw=2.2, alpha=0.5
            )
            ax.plot(minutes, hour.delivered_kw / KW_PER_MW, color=FLEET_COLOR, lw=0.8)
            for capacity_mw in (hour.capacity_kw / KW_PER_MW, -hour.capacity_kw / KW_PER_MW):
                ax.axhline(capacity_mw, color=RULE_COLOR, lw=0.8, ls=":")
            score = f"score {hour.score.composite:.2f}" if hour.score is not None else "no score"
            start = _local(hour.start, run.timezone)
            ax.set_title(f"{run.city} {start:%H:%M} ({run.planner}): {score}")
            ax.set_xlim(0, MINUTES_PER_HOUR)
            ax.xaxis.set_major_locator(MultipleLocator(15))
        fig.supylabel("Fleet power change (MW)")
        fig.supxlabel("Minutes into the hour")
        handles = [
            Line2D([], [], color=REQUESTED_COLOR, lw=2.2, alpha=0.5, label="Requested"),
            Line2D([], [], color=FLEET_COLOR, lw=1.2, label="Delivered"),
            Line2D([], [], color=RULE_COLOR, lw=1.0, ls=":", label="Committed capacity"),
        ]
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles))
        return _png(fig)


def demand_response_png(
    results: Sequence[RunSummary], *, planner: str | None = None
) -> bytes | None:
    """Each demand-response event: the fleet's baseline, its actual load and the request.

    One panel per city and event (the run chosen by :func:`service_runs`), MW per step
    against local time: the baseline (the fleet without the event), the actual net load
    (``baseline - delivered``) and the level requested (``baseline - requested``). None
    when no run has an event.
    """
    runs = service_runs(results, lambda r: bool(r.demand_response_events), planner)
    events = [(run, event) for run in runs for event in run.demand_response_events]
    if not events:
        return None
    with _small_multiples(len(events), sharex=False) as (fig, panels, _ncols):
        for ax, (run, event) in zip(panels, events, strict=True):
            first = _local(run.grid.time_at(event.first_step), run.timezone)
            first_h = first.hour + first.minute / MINUTES_PER_HOUR
            baseline = event.baseline_kw / KW_PER_MW
            for values, color, line_style in (
                (baseline, BASE_LOAD_COLOR, "--"),
                (baseline - event.delivered_kw / KW_PER_MW, FLEET_COLOR, "-"),
                (baseline - event.requested_kw / KW_PER_MW, REQUESTED_COLOR, ":"),
            ):
                x, y = _step_curve(values, event.step_h)
                ax.plot(x + first_h, y, drawstyle="steps-post", color=color, ls=line_style, lw=1.3)
            start, end = _local(event.start, run.timezone), _local(event.end, run.timezone)
            ax.set_title(
                f"{run.city} ({run.planner})\n{start:%H:%M}-{end:%H:%M}: "
                f"{event.delivered_kwh:,.0f} of {event.requested_kwh:,.0f} kWh delivered"
            )
            span_h = event.requested_kw.size * event.step_h
            tick_h = next((t for t in CLOCK_TICKS_H if span_h / t <= 6), CLOCK_TICKS_H[-1])
            ax.xaxis.set_major_locator(MultipleLocator(tick_h))
            ax.xaxis.set_major_formatter(FuncFormatter(_clock))
        fig.supylabel("Fleet net load (MW)")
        fig.supxlabel("Local time")
        handles = [
            Line2D([], [], color=BASE_LOAD_COLOR, ls="--", label="Baseline (no event)"),
            Line2D([], [], color=FLEET_COLOR, label="Actual"),
            Line2D([], [], color=REQUESTED_COLOR, ls=":", label="Requested level"),
        ]
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles))
        return _png(fig)
