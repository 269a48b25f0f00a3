"""The run's files: ``summary.json``, ``summary.csv``, ``curves.csv``, ``envelope.csv``,
``sessions.parquet``, ``meter.parquet``, ``market.json``, ``regulation.json``.

``summary.json`` holds, for each planner and city (and the total over cities), the keys
``baseline_peak_kw`` (area load without EVs), ``peak_kw``, ``valley_share``,
``energy_charged_kwh``, ``energy_discharged_kwh``, ``unmet_energy_kwh`` and
``owner_cost_cny`` (an exact decimal string, since money is never a float), and more.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console, JustifyMethod
from rich.table import Table

from v2ghub.defaults import ENVELOPE_DURATIONS_H
from v2ghub.model.case import CityCase
from v2ghub.model.fleet import ChargerKind
from v2ghub.report.wear_columns import WEAR_TOTALS, wear_columns
from v2ghub.settlement.kpis import VALLEY_SHARE_RULE, VALLEY_SHARE_RULE_PRIVATE
from v2ghub.settlement.money import fen_to_cny
from v2ghub.sim.metrics import (
    CityMetrics,
    RunResult,
    RunSummary,
)
from v2ghub.units import KW_PER_MW, KWH_PER_MWH, MICROSECONDS_PER_SECOND, MINUTES_PER_HOUR

_ADDITIVE = (
    "sessions",
    "v2g_sessions",
    "energy_charged_kwh",
    "energy_discharged_kwh",
    "renewable_surplus_kwh",
    "renewable_absorbed_kwh",
    "required_energy_kwh",
    "delivered_energy_kwh",
    "unmet_energy_kwh",
    "unavoidable_shortfall_kwh",
    "vehicles_short",
    "site_limit_violations",
    "fallbacks",
    "regulation_hours",
    "regulation_capacity_up_mw",
    "regulation_capacity_down_mw",
    "regulation_committed_mw",
    "regulation_mileage_mw",
    "dr_events",
    "dr_requested_kwh",
    "dr_delivered_kwh",
    "market_sold_mw_h",
    "market_capacity_cny",
    "market_penalty_cny",
    *WEAR_TOTALS,
)


def _jsonable(metrics: CityMetrics) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in asdict(metrics).items():
        if key in ("city", "planner"):
            continue
        if isinstance(value, Decimal):
            out[key] = str(value)
        elif isinstance(value, float):
            # A figure not computed in this run (the valley rule's reach) is null.
            out[key] = round(value, 6) if math.isfinite(value) else None
        else:
            out[key] = value
    if math.isfinite(metrics.valley_share_reachable):
        out["valley_rule_reachable"] = (
            metrics.valley_share_reachable >= VALLEY_SHARE_RULE
            and metrics.valley_share_private_reachable >= VALLEY_SHARE_RULE_PRIVATE
        )
    return out


def planner_totals(results: Sequence[RunSummary], planner: str) -> dict[str, Any]:
    """Totals over the cities of one planner (sums; the peak of the summed curves)."""
    chosen = [r for r in results if r.planner == planner]
    total: dict[str, Any] = {key: sum(getattr(r.metrics, key) for r in chosen) for key in _ADDITIVE}
    base = sum(r.curves.base_load_kw for r in chosen)
    with_ev = sum(r.curves.total_load_kw for r in chosen)
    total["baseline_peak_kw"] = round(float(np.max(base)), 6) if chosen else 0.0
    total["peak_kw"] = round(float(np.max(with_ev)), 6) if chosen else 0.0
    charged = sum(r.metrics.energy_charged_kwh for r in chosen)
    valley = sum(r.metrics.valley_share * r.metrics.energy_charged_kwh for r in chosen)
    total["valley_share"] = round(valley / charged, 6) if charged > 0 else 1.0
    total["owner_cost_cny"] = str(fen_to_cny(sum(r.total_bill_fen for r in chosen)))
    total["degradation_cost_cny"] = str(
        sum((r.metrics.degradation_cost_cny for r in chosen), Decimal(0))
    )
    total["planner_seconds"] = round(sum(r.metrics.planner_seconds for r in chosen), 6)
    scored = [r.metrics for r in chosen if r.metrics.regulation_hours]
    hours = sum(m.regulation_hours for m in scored)
    total["regulation_score"] = (
        round(sum(m.regulation_score * m.regulation_hours for m in scored) / hours, 6)
        if hours
        else 0.0
    )
    for key in _ADDITIVE:
        if isinstance(total[key], float):
            total[key] = round(total[key], 6)
        elif isinstance(total[key], Decimal):
            total[key] = str(total[key])
    return total


def summary_document(
    results: Sequence[RunSummary], *, planners: Sequence[str], scenario: dict[str, Any]
) -> dict[str, Any]:
    """The content of ``summary.json``."""
    document: dict[str, Any] = {
        "scenario": scenario,
        "rules": {
            "valley_share_min": VALLEY_SHARE_RULE,
            "valley_share_private_min": VALLEY_SHARE_RULE_PRIVATE,
        },
        "planners": {},
    }
    for planner in planners:
        cities = {r.metrics.city: _jsonable(r.metrics) for r in results if r.planner == planner}
        document["planners"][planner] = {
            "cities": cities,
            "total": planner_totals(results, planner),
        }
    return document


def write_summary_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``summary.json``."""
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_summary_csv(path: Path, results: Sequence[RunSummary]) -> None:
    """One row per city and planner, every metric."""
    rows = [asdict(r.metrics) for r in results]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["city"])
        writer.writeheader()
        writer.writerows(rows)


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _curve_rows(results: Sequence[RunSummary]) -> Iterator[list[object]]:
    for result in results:
        grid = result.grid
        zone = ZoneInfo(result.timezone)
        curves = result.curves
        # One row per time step (96 a day), never per vehicle.
        for k in range(curves.base_load_kw.size):
            yield [
                result.metrics.city,
                result.planner,
                grid.time_at(k).astimezone(zone).isoformat(),
                f"{curves.base_load_kw[k]:.3f}",
                f"{curves.ev_load_kw[k]:.3f}",
                f"{curves.total_load_kw[k]:.3f}",
                f"{curves.charge_kw[k]:.3f}",
                f"{curves.discharge_kw[k]:.3f}",
                f"{curves.renewable_surplus_kw[k]:.3f}",
            ]


def write_curves_csv(path: Path, results: Sequence[RunSummary]) -> None:
    """The daily curves of every run, one row per city, planner and step (kW)."""
    header = (
        "city",
        "planner",
        "time",
        "base_load_kw",
        "ev_load_kw",
        "total_load_kw",
        "charge_kw",
        "discharge_kw",
        "renewable_surplus_kw",
    )
    _write_csv(path, header, _curve_rows(results))


def duration_label(duration_h: float, space: str = "") -> str:
    """A hold duration as people write it: ``15min``, ``90min``, ``1h``, ``4h``.

    Whole hours in hours, anything else in minutes; ``space`` goes between number and
    unit (``"15 min"`` for prose, none for column names).
    """
    if duration_h >= 1 and float(duration_h).is_integer():
        return f"{duration_h:g}{space}h"
    return f"{duration_h * MINUTES_PER_HOUR:g}{space}min"


def write_market_json(path: Path, results: Sequence[RunSummary]) -> bool:
    """The day-ahead market's sales of every run (``market.json``); False (and no file)
    when no market ran.

    One entry per city, planner and sale: the hour (ISO, local time), the product, kW
    offered and sold, the clearing price (CNY per MW and hour), the performance (0-1), kW
    missed, and what the sale earned and was charged (exact CNY text).
    """
    sales = [
        {
            "city": r.city,
            "planner": r.planner,
            "start": o.start.astimezone(ZoneInfo(r.timezone)).isoformat(),
            "product": o.product,
            "offered_kw": o.offered_kw,
            "sold_kw": o.sold_kw,
            "price_cny_per_mw_h": str(o.price_cny_per_mw_h),
            "performance": str(o.performance),
            "missed_kw": str(o.missed_kw),
            "capacity_cny": str(o.amounts.capacity_cny),
            "penalty_cny": str(o.amounts.penalty_cny),
        }
        for r in results
        for o in r.market
    ]
    if not any(r.market for r in results):
        return False
    path.write_text(json.dumps({"sales": sales}, indent=2) + "\n", encoding="utf-8")
    return True


def write_regulation_json(path: Path, results: Sequence[RunSummary]) -> bool:
    """The regulation hours of every run (``regulation.json``); False (and no file) when
    no run committed regulation.

    One entry per city, planner and hour committed: ``start`` (ISO, local time),
    ``capacity_mw`` (the symmetric capacity committed) and ``mileage_mw`` (the signal's
    mileage in the hour times the capacity), both exact text to the kW (half away from
    zero), ``performance`` (the hour's composite score, 0-1 to four decimals; 0 when
    nothing was committed) and ``sold_in_market`` (the day-ahead market sold the hour, so
    ``market.json`` pays it). ``v2ghub settle`` pays the hours not sold at the city's
    rate card (:mod:`v2ghub.settlement.regulation_hours`).
    """
    hours = []
    for r in results:
        sold = {o.start for o in r.market if o.product == "regulation"}
        zone = ZoneInfo(r.timezone)
        for hour in r.regulation_hours:  # hours, never vehicles
            score = hour.score
            hours.append(
                {
                    "city": r.city,
                    "planner": r.planner,
                    "start": hour.start.astimezone(zone).isoformat(),
                    "capacity_mw": _mw_text(hour.capacity_kw),
                    "mileage_mw": _mw_text(score.mileage_mw * KW_PER_MW if score else 0.0),
                    "performance": f"{min(max(score.composite, 0.0), 1.0):.4f}"
                    if score
                    else "0.0000",
                    "sold_in_market": hour.start in sold,
                }
            )
    if not hours:
        return False
    path.write_text(json.dumps({"hours": hours}, indent=2) + "\n", encoding="utf-8")
    return True


def _mw_text(kw: float) -> str:
    """kW (>= 0) as exact MW text to the kW, half away from zero (``250.4`` -> ``"0.250"``)."""
    return str(Decimal(int(np.floor(abs(kw) + 0.5))).scaleb(-3))


def write_envelope_csv(path: Path, results: Sequence[RunSummary]) -> None:
    """The flexibility envelope of every run, one row per city, planner and hour.

    Columns: ``city``, ``planner``, ``hour_start`` (ISO, local time), ``plugged``,
    ``planned_kw`` (the fleet's net power at the top of the hour, charging positive),
    then ``raise_kw_<duration>`` for each duration (how far the fleet's power could go up
    and hold that long) and ``lower_kw_<duration>`` likewise down (kW to the watt). The
    durations are every one that occurs (the engine's by default); a run without an
    envelope has no row, and a duration an hour lacks is left empty.
    """
    durations = sorted({d for r in results for h in r.envelope for d in h.durations_h})
    durations = durations or list(ENVELOPE_DURATIONS_H)
    labels = [duration_label(d) for d in durations]
    header = [
        "city",
        "planner",
        "hour_start",
        "plugged",
        "planned_kw",
        *(f"raise_kw_{label}" for label in labels),
        *(f"lower_kw_{label}" for label in labels),
    ]
    _write_csv(path, header, _envelope_rows(results, durations))


def _envelope_rows(
    results: Sequence[RunSummary], durations: Sequence[float]
) -> Iterator[list[object]]:
    for result in results:
        zone = ZoneInfo(result.timezone)
        for hour in result.envelope:  # hours, never vehicles
            raise_kw = dict(zip(hour.durations_h, hour.raise_kw.tolist(), strict=True))
            lower_kw = dict(zip(hour.durations_h, hour.lower_kw.tolist(), strict=True))
            yield [
                result.metrics.city,
                result.planner,
                hour.start.astimezone(zone).isoformat(),
                hour.plugged,
                f"{hour.planned_kw:.3f}",
                *(f"{raise_kw[d]:.3f}" if d in raise_kw else "" for d in durations),
                *(f"{lower_kw[d]:.3f}" if d in lower_kw else "" for d in durations),
            ]


def _labels(names: Sequence[str], index: npt.ArrayLike) -> pa.DictionaryArray:
    """Text per row from a few names and each row's index into them, as a dictionary array
    of the distinct names (no string made per row)."""
    distinct, position = np.unique(np.asarray(list(names), dtype=object), return_inverse=True)
    codes = position.astype(np.int32)[np.asarray(index)]
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(distinct, type=pa.string()))


def _repeated(name: str, n: int) -> pa.DictionaryArray:
    return _labels([name], np.zeros(n, dtype=np.int32))


def _as_text(table: pa.Table) -> pa.Table:
    """``table`` with its dictionary columns as plain text columns."""
    return pa.table(
        {
            name: column.cast(pa.string()) if pa.types.is_dictionary(column.type) else column
            for name, column in zip(table.column_names, table.columns, strict=True)
        }
    )


def _session_ids(case: CityCase) -> pa.Array:
    """Every session's id: the user's, or ``CITY-k`` for a synthetic fleet."""
    fleet = case.fleet
    if fleet.session_ids is not None:
        return pa.array(fleet.session_ids.astype(str), type=pa.string())
    numbers = pa.array(np.arange(fleet.n_sessions, dtype=np.int64)).cast(pa.string())
    return pc.binary_join_element_wise(f"{case.city}-", numbers, "")


def sessions_table(result: RunResult) -> pa.Table:
    """Per-session outcomes of one run as an Arrow table."""
    return _as_text(_coded_sessions_table(result))


def _coded_sessions_table(result: RunResult) -> pa.Table:
    """:func:`sessions_table` with its text columns of few values as dictionary arrays."""
    case = result.run.case
    fleet = case.fleet
    outcomes = result.outcomes
    n = fleet.n_sessions
    kinds = [k.name.lower() for k in ChargerKind]
    utc_us = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "session_id": _session_ids(case),
            "city": _repeated(case.city, n),
            "planner": _repeated(result.run.planner, n),
            "site_id": _labels(case.sites.site_ids, fleet.site_index),
            "charger_kind": _labels(kinds, fleet.charger_kind),
            "v2g_opt_in": pa.array(fleet.v2g_opt_in),
            "arrival": pa.array(fleet.arrival_s * MICROSECONDS_PER_SECOND, type=utc_us),
            "departure": pa.array(fleet.departure_s * MICROSECONDS_PER_SECOND, type=utc_us),
            "battery_kwh": pa.array(fleet.battery_kwh),
            "energy_arrival_kwh": pa.array(fleet.energy_arrival_kwh),
            "target_energy_kwh": pa.array(fleet.target_energy_kwh),
            "energy_departure_kwh": pa.array(result.run.energy_final_kwh),
            "required_kwh": pa.array(outcomes.required_kwh),
            "delivered_kwh": pa.array(outcomes.delivered_kwh),
            "unmet_kwh": pa.array(outcomes.unmet_kwh),
            "unavoidable_kwh": pa.array(outcomes.unavoidable_kwh),
            "energy_charged_kwh": pa.array(outcomes.charged_kwh),
            "energy_discharged_kwh": pa.array(outcomes.discharged_kwh),
            "bill_fen": pa.array(outcomes.bill_fen),
            "dr_delivered_kwh": pa.array(result.run.dr_delivered_kwh),
            **wear_columns(result),
        }
    )


def meter_table(result: RunResult) -> pa.Table:
    """What each session's meter recorded in one run, per price level, as an Arrow table.

    One row per session and price level with energy: ``import_wh`` drawn and ``export_wh``
    delivered (integer Wh, as billed), and the level's exact prices as decimal strings
    (CNY/kWh). This is what ``v2ghub settle`` settles; the live aggregator's meter values
    take the same form.
    """
    return _as_text(_coded_meter_table(result))


def _coded_meter_table(result: RunResult) -> pa.Table:
    """:func:`meter_table` with its text columns of few values as dictionary arrays."""
    case = result.run.case
    run = result.run
    prices = run.prices
    import_wh = result.outcomes.import_wh
    export_wh = result.outcomes.export_wh
    session, level = np.nonzero((import_wh != 0) | (export_wh != 0))
    fleet = case.fleet
    kinds = [k.name.lower() for k in ChargerKind]
    n = session.size
    return pa.table(
        {
            "session_id": _session_ids(case).take(pa.array(session)),
            "city": _repeated(case.city, n),
            "planner": _repeated(run.planner, n),
            "site_id": _labels(case.sites.site_ids, fleet.site_index[session]),
            "charger_kind": _labels(kinds, fleet.charger_kind[session]),
            "period": _labels([k.name.lower() for k in prices.level_kind], level),
            "import_price_cny_per_kwh": _labels(
                [str(p) for p in prices.import_price_cny_per_kwh], level
            ),
            "export_price_cny_per_kwh": _labels(
                [str(p) for p in prices.export_price_cny_per_kwh], level
            ),
            "import_wh": pa.array(import_wh[session, level], type=pa.int64()),
            "export_wh": pa.array(export_wh[session, level], type=pa.int64()),
        }
    )


# What TableWriter builds for each table: the text columns of few values (cities,
# planners, sites, kinds, periods, prices) as dictionary arrays, which the Parquet writer
# stores as the dictionary pages it would otherwise make by hashing every row's text.
_CODED: dict[Callable[[RunResult], pa.Table], Callable[[RunResult], pa.Table]] = {
    sessions_table: _coded_sessions_table,
    meter_table: _coded_meter_table,
}
UNIQUE_COLUMNS = ("session_id",)
"""Columns with a value per row: written without a dictionary or min-max statistics
(hashing and comparing a million distinct ids costs more than they could ever save)."""

# The most a column's dictionary page may grow before the column is written plainly. Most
# of the sessions table's numbers are one per session (energies, SoC, fade), which a
# dictionary only slows down, while its few-valued ones (battery sizes, targets) stay far
# below 64 KiB: a million sessions write in 0.34 s CPU instead of 0.46 s, the file 1.5%
# smaller. The meter table keeps Arrow's 1 MiB: its Wh values repeat enough to pay.
_DICTIONARY_PAGE_BYTES: dict[Callable[[RunResult], pa.Table], int] = {sessions_table: 64 * 1024}


class TableWriter:
    """Appends one Arrow table per run to a Parquet file as the runs finish.

    ``table_of`` turns a run into its rows (:func:`sessions_table`, :func:`meter_table`).
    Each table is written by a thread of its own while the next run simulates (Arrow
    writes without holding the interpreter), in order; a failed write is raised by the next
    call or on leaving. Use as a context manager.

    Dictionary columns are written as dictionary pages and without the Arrow schema in the
    footer, so that they read back as the text columns ``table_of`` stands for; columns
    with a value per row (:data:`UNIQUE_COLUMNS`) have neither dictionary nor statistics.
    """

    def __init__(self, path: Path, table_of: Callable[[RunResult], pa.Table]) -> None:
        self.path = path
        self.table_of = _CODED.get(table_of, table_of)
        self._dictionary_page_bytes = _DICTIONARY_PAGE_BYTES.get(table_of)
        self._writer: pq.ParquetWriter | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet")
        self._pending: Future[None] | None = None

    def write(self, result: RunResult) -> None:
        """Append one run (its table is made now, written in the background)."""
        table = self.table_of(result)
        self._wait()
        self._pending = self._pool.submit(self._append, table)

    def _append(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = _parquet_writer(
                self.path, table.schema, dictionary_page_bytes=self._dictionary_page_bytes
            )
        self._writer.write_table(table)

    def _wait(self) -> None:
        """Until the table being written is written (its error raised here)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def add_metadata(self, metadata: dict[bytes, bytes]) -> None:
        """Key-value metadata for the file's footer (after at least one run)."""
        self._wait()
        if self._writer is None:
            raise ValueError(f"{self.path}: no run written yet")
        self._writer.add_key_value_metadata(metadata)

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._wait()
        finally:
            self._pool.shutdown(wait=True)
            if self._writer is not None:
                self._writer.close()


def _parquet_writer(
    path: Path, schema: pa.Schema, *, dictionary_page_bytes: int | None = None
) -> pq.ParquetWriter:
    """A Parquet writer for tables of ``schema`` (see :class:`TableWriter`);
    ``dictionary_page_bytes``: Arrow's limit when None."""
    coded = [field.name for field in schema if pa.types.is_dictionary(field.type)]
    if not coded:
        return pq.ParquetWriter(path, schema)
    limit = (
        {}
        if dictionary_page_bytes is None
        else {"dictionary_pagesize_limit": dictionary_page_bytes}
    )
    return pq.ParquetWriter(
        path,
        schema,
        store_schema=False,
        use_dictionary=[name for name in schema.names if name not in UNIQUE_COLUMNS],
        write_statistics=[name for name in schema.names if name not in UNIQUE_COLUMNS],
        **limit,
    )


def _mw(kw: float) -> str:
    return f"{kw / KW_PER_MW:,.1f}"


def print_summary(console: Console, results: Sequence[RunSummary], planners: Sequence[str]) -> None:
    """The summary table in the terminal: one row per city and planner, then totals."""
    table = Table(title="v2ghub: one day per city and planner")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("city", "left"),
        ("planner", "left"),
        ("peak MW\nno EVs", "right"),
        ("peak MW\nwith EVs", "right"),
        (f"vs\n{planners[0]}", "right"),
        ("valley\nshare", "right"),
        ("charged\nMWh", "right"),
        ("V2G\nMWh", "right"),
        ("unmet\nkWh", "right"),
        ("owners pay\nCNY", "right"),
    )
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for result in results:
        m = result.metrics
        first = m.planner == planners[0]
        table.add_row(
            m.city if first else "",
            m.planner,
            _mw(m.baseline_peak_kw),
            _mw(m.peak_kw),
            "" if first else f"{-m.peak_reduction_kw / KW_PER_MW:+,.1f}",
            f"{m.valley_share:.0%}",
            f"{m.energy_charged_kwh / KWH_PER_MWH:,.1f}",
            f"{m.energy_discharged_kwh / KWH_PER_MWH:,.1f}",
            f"{m.unmet_energy_kwh:,.0f}",
            f"{m.owner_cost_cny:,.0f}",
            end_section=m.planner == planners[-1],
        )
    for planner in planners:
        total = planner_totals(results, planner)
        table.add_row(
            "all" if planner == planners[0] else "",
            planner,
            _mw(total["baseline_peak_kw"]),
            _mw(total["peak_kw"]),
            "",
            f"{total['valley_share']:.0%}",
            f"{total['energy_charged_kwh'] / KWH_PER_MWH:,.1f}",
            f"{total['energy_discharged_kwh'] / KWH_PER_MWH:,.1f}",
            f"{total['unmet_energy_kwh']:,.0f}",
            f"{Decimal(total['owner_cost_cny']):,.0f}",
            style="bold",
        )
    console.print(table)


def local_time_label(moment: datetime, timezone: str) -> str:
    """A local time for headings."""
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z")
