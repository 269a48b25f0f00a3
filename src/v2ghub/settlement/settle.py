"""Settle a twin run: meter data in, ledger posted, statements and totals out.

``v2ghub settle RUN_DIR --out DIR`` reads a ``v2ghub simulate`` output folder
(``summary.json``, ``meter.parquet``, ``curves.csv``, ``sessions.parquet`` and, when a
market ran, ``market.json``, when regulation ran, ``regulation.json``), posts one ledger
period per city and planner (``DATE/CITY/PLANNER``): the meter's lines
(:mod:`~v2ghub.settlement.meter`) and the grid services' (demand response and market
sales, :mod:`~v2ghub.settlement.service_lines`; regulation hours committed without a
market, at the rate card, :mod:`~v2ghub.settlement.regulation_hours`), and writes:

- ``statements.csv``: one row per statement line, for both sides of every ledger line:
  ``period, party, counterparty, stream, energy_kwh, rate, amount_cny, cause`` (the
  amount is + received, - paid);
- ``settlement.json``: per period, the totals per party group and stream, the owners'
  earnings distribution, the pilot KPIs with pass/fail, and ``balanced``: the ledger's
  balances sum to zero and, for every shared stream, what the grid paid the aggregator
  equals the owners' and operators' shares plus the aggregator's own;
- ``ledger.sqlite`` unless ``--ledger`` names a ledger to post into (posting a period
  again leaves it unchanged; a changed period becomes a new version, with history).
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from v2ghub.errors import InputError
from v2ghub.settlement.contracts import SHARED_STREAMS, Contracts
from v2ghub.settlement.kpis import PilotKpis, pilot_kpis
from v2ghub.settlement.ledger import Ledger, Lines
from v2ghub.settlement.meter import METER_COLUMNS, meter_lines
from v2ghub.settlement.money import FEN, fen_to_cny
from v2ghub.settlement.rates import RateCard, rate_cards
from v2ghub.settlement.regulation_hours import CommittedHour
from v2ghub.settlement.service_lines import SESSION_COLUMNS, MarketSale, add_service_lines
from v2ghub.settlement.streams import LineColumns, cny_text, kwh_text
from v2ghub.units import KW_PER_MW

STATEMENT_COLUMNS = (
    "period",
    "party",
    "counterparty",
    "stream",
    "energy_kwh",
    "rate",
    "amount_cny",
    "cause",
)


@dataclass(frozen=True)
class RunFolder:
    """What settlement needs from a ``v2ghub simulate`` output folder."""

    date: str
    planners: list[str]
    cities: list[str]
    meter: pa.Table
    metrics: dict[tuple[str, str], dict[str, Any]]
    peak_discharge_kw: dict[tuple[str, str], float]
    sessions: pa.Table
    market: tuple[MarketSale, ...]
    regulation: tuple[CommittedHour, ...] = ()
    """Regulation hours committed without a market (sold hours are left out)."""

    @staticmethod
    def read(folder: Path) -> RunFolder:
        """Read and check the folder; a missing or foreign file is a clear error."""
        summary_path = folder / "summary.json"
        meter_path = folder / "meter.parquet"
        curves_path = folder / "curves.csv"
        for path in (summary_path, meter_path, curves_path):
            if not path.is_file():
                raise InputError(
                    "not found: settle reads the output folder of `v2ghub simulate`", file=path
                )
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
            date = str(summary["scenario"]["date"])
            planners = [str(p) for p in summary["planners"]]
            metrics = {
                (city, planner): values
                for planner, body in summary["planners"].items()
                for city, values in body["cities"].items()
            }
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise InputError(
                f"not a v2ghub summary ({type(error).__name__}: {error})", file=summary_path
            ) from None
        peak: dict[tuple[str, str], float] = {}
        with curves_path.open(newline="", encoding="utf-8") as handle:
            for row_number, row in enumerate(csv.DictReader(handle), start=2):
                try:
                    key = (row["city"], row["planner"])
                    peak[key] = max(peak.get(key, 0.0), float(row["discharge_kw"]))
                except (KeyError, ValueError) as error:
                    raise InputError(
                        f"bad value ({error})",
                        file=curves_path,
                        row=row_number,
                        field="discharge_kw",
                    ) from None
        cities = sorted({city for city, _ in metrics}, key=[c for c, _ in metrics].index)
        meter = _checked_meter(meter_path)
        market_path = folder / "market.json"
        market = _market_sales(market_path, set(metrics)) if market_path.is_file() else ()
        regulation_path = folder / "regulation.json"
        return RunFolder(
            date=date,
            planners=planners,
            cities=cities,
            meter=meter,
            metrics=metrics,
            peak_discharge_kw=peak,
            sessions=_checked_sessions(folder / "sessions.parquet"),
            market=market,
            regulation=_regulation_hours(regulation_path, set(metrics), market)
            if regulation_path.is_file()
            else (),
        )


def _period_rows(table: pa.Table, *, city: str, planner: str) -> pa.Table:
    """The rows of a run's table (meter or sessions) of one city and planner."""
    return table.filter(
        pc.and_(pc.equal(table.column("city"), city), pc.equal(table.column("planner"), planner))
    )


def _parquet(path: Path, columns: tuple[str, ...]) -> pa.Table:
    """A Parquet file of the run with (at least) ``columns`` and ``city``, ``planner``."""
    if not path.is_file():
        raise InputError(
            "not found: settle reads the output folder of `v2ghub simulate`", file=path
        )
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as error:
        raise InputError(f"not a Parquet file ({error})", file=path) from None
    for name in ("city", "planner", *columns):
        if name not in table.column_names:
            raise InputError("missing column", file=path, field=name)
    return table


def _checked_meter(path: Path) -> pa.Table:
    """The meter rows, refused with file, row and field if a column is missing or an
    energy is negative (meter data only ever adds energy)."""
    meter = _parquet(path, METER_COLUMNS)
    for name in ("import_wh", "export_wh"):
        values = np.asarray(meter.column(name).to_numpy(zero_copy_only=False), dtype=np.int64)
        bad = np.flatnonzero(values < 0)
        if bad.size:
            raise InputError(
                f"energy is negative ({values[bad[0]]} Wh)",
                file=path,
                row=int(bad[0]) + 1,
                field=name,
            )
    return meter


def _checked_sessions(path: Path) -> pa.Table:
    """The sessions' rows, refused with file, row and field if a column is missing, a
    plug-in time is not a timestamp or a delivered energy is not a number >= 0."""
    sessions = _parquet(path, SESSION_COLUMNS)
    for name in ("arrival", "departure"):
        if not pa.types.is_timestamp(sessions.schema.field(name).type):
            raise InputError(
                f"expected UTC timestamps, got {sessions.schema.field(name).type}",
                file=path,
                field=name,
            )
    column = sessions.column("dr_delivered_kwh")
    if not pa.types.is_floating(column.type) and not pa.types.is_integer(column.type):
        raise InputError(
            f"expected kWh as numbers, got {column.type}", file=path, field="dr_delivered_kwh"
        )
    dr_kwh = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    bad = np.flatnonzero(~(np.isfinite(dr_kwh) & (dr_kwh >= 0)))
    if bad.size:
        raise InputError(
            f"delivered energy is not a number >= 0 ({dr_kwh[bad[0]]} kWh)",
            file=path,
            row=int(bad[0]) + 1,
            field="dr_delivered_kwh",
        )
    return sessions


_Cny = Annotated[Decimal, Field(ge=0, decimal_places=2, allow_inf_nan=False)]
_NonNegative = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class _SaleRecord(BaseModel):
    """A row of ``market.json`` (:func:`v2ghub.report.outputs.write_market_json`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    city: str
    planner: str
    start: AwareDatetime
    product: Literal["regulation", "demand_response"]
    sold_kw: Annotated[int, Field(ge=0)]
    price_cny_per_mw_h: _NonNegative
    performance: Annotated[Decimal, Field(ge=0, le=1, allow_inf_nan=False)]
    missed_kw: _NonNegative
    capacity_cny: _Cny
    penalty_cny: _Cny


class _MarketFile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    sales: list[_SaleRecord]


def _market_sales(path: Path, periods: set[tuple[str, str]]) -> tuple[MarketSale, ...]:
    """The sales of ``market.json``, refused with file and field if one is malformed,
    names a city and planner the run lacks, or repeats an hour and product."""
    parsed = _validated(_MarketFile, path)
    sales: list[MarketSale] = []
    seen: set[tuple[str, str, str, str]] = set()
    for index, record in enumerate(parsed.sales):
        if (record.city, record.planner) not in periods:
            raise InputError(
                f"{record.city} / {record.planner} is no city and planner of this run",
                file=path,
                field=f"sales[{index}].city",
            )
        key = (record.city, record.planner, record.product, record.start.isoformat())
        if key in seen:
            raise InputError(
                f"a second {record.product} sale at {record.start.isoformat()}",
                file=path,
                field=f"sales[{index}].start",
            )
        seen.add(key)
        sales.append(
            MarketSale(
                **record.model_dump(exclude={"capacity_cny", "penalty_cny"}),
                capacity_fen=int(record.capacity_cny / FEN),
                penalty_fen=int(record.penalty_cny / FEN),
            )
        )
    return tuple(sales)


_Mw = Annotated[Decimal, Field(ge=0, decimal_places=3, allow_inf_nan=False)]


class _RegulationRecord(BaseModel):
    """A row of ``regulation.json`` (:func:`v2ghub.report.outputs.write_regulation_json`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    city: str
    planner: str
    start: AwareDatetime
    capacity_mw: _Mw
    mileage_mw: _Mw
    performance: Annotated[Decimal, Field(ge=0, le=1, allow_inf_nan=False)]
    sold_in_market: bool = False


class _RegulationFile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    hours: list[_RegulationRecord]


def _regulation_hours(
    path: Path, periods: set[tuple[str, str]], market: tuple[MarketSale, ...]
) -> tuple[CommittedHour, ...]:
    """The hours of ``regulation.json`` that no market sold, refused with file and field if
    one is malformed, names a city and planner the run lacks, or repeats an hour.

    An hour is left out (the market's sale pays it) when the file marks it sold or
    ``market.json`` has a regulation sale of the same city, planner and hour.
    """
    parsed = _validated(_RegulationFile, path)
    sold = {(s.city, s.planner, s.start) for s in market if s.product == "regulation"}
    hours: list[CommittedHour] = []
    seen: set[tuple[str, str, datetime]] = set()
    for index, record in enumerate(parsed.hours):
        key = (record.city, record.planner, record.start)
        if (record.city, record.planner) not in periods:
            raise InputError(
                f"{record.city} / {record.planner} is no city and planner of this run",
                file=path,
                field=f"hours[{index}].city",
            )
        if key in seen:
            raise InputError(
                f"a second regulation hour at {record.start.isoformat()}",
                file=path,
                field=f"hours[{index}].start",
            )
        seen.add(key)
        if record.sold_in_market or key in sold:
            continue
        hours.append(
            CommittedHour(
                city=record.city,
                planner=record.planner,
                start=record.start,
                capacity_kw=int(record.capacity_mw * KW_PER_MW),
                mileage_kw=int(record.mileage_mw * KW_PER_MW),
                performance=record.performance,
            )
        )
    return tuple(hours)


_Model = TypeVar("_Model", bound=BaseModel)


def _validated(model: type[_Model], path: Path) -> _Model:
    """``path``'s JSON as ``model``; the first problem names the file and the field."""
    try:
        return model.model_validate_json(path.read_bytes())
    except ValidationError as error:
        first = error.errors()[0]
        field = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]
        ).removeprefix(".")
        raise InputError(first["msg"], file=path, field=field or None) from None


def ledger_lines(columns: LineColumns) -> Lines:
    """Lines being built, as the ledger takes them."""
    return Lines(
        session_id=np.asarray(columns.column("session_id")).astype(str),
        kind=np.asarray(columns.column("kind")).astype(str),
        payer=np.asarray(columns.column("payer")).astype(str),
        payee=np.asarray(columns.column("payee")).astype(str),
        stream=np.asarray(columns.column("stream")).astype(str),
        energy_wh=np.asarray(columns.column("energy_wh"), dtype=np.int64),
        rate=np.asarray(columns.column("rate")).astype(str).tolist(),
        amount_fen=np.asarray(columns.column("amount_fen"), dtype=np.int64),
        cause=np.asarray(columns.column("cause")).astype(str),
    )


def _groups(parties: npt.ArrayLike) -> npt.NDArray[np.str_]:
    """Each party's group: ``owner:S1`` -> ``owner``, ``grid`` -> ``grid``."""
    return np.asarray(np.char.partition(np.asarray(parties).astype(str), ":")[:, 0])


def _period_totals(
    lines: Lines, fees_fen: dict[str, int], balances: dict[str, int]
) -> dict[str, Any]:
    """Totals per party group and stream, owner earnings, and the balance checks."""
    amount = np.asarray(lines.amount_fen, dtype=np.int64)
    stream = np.asarray(lines.stream).astype(str)
    payer = _groups(lines.payer)
    payee = _groups(lines.payee)
    groups: dict[str, dict[str, dict[str, str]]] = {}
    for group in ("grid", "aggregator", "operator", "owner"):
        per_stream = {}
        for name in sorted(set(stream.tolist())):
            received = int(amount[(payee == group) & (stream == name)].sum())
            paid = int(amount[(payer == group) & (stream == name)].sum())
            if received or paid:
                per_stream[name] = {
                    "received_cny": str(fen_to_cny(received)),
                    "paid_cny": str(fen_to_cny(paid)),
                }
        groups[group] = per_stream
    shared_ok = True
    for name in SHARED_STREAMS:
        revenue = int(amount[(payer == "grid") & (payee == "aggregator") & (stream == name)].sum())
        payouts = int(amount[(payer == "aggregator") & (payee != "grid") & (stream == name)].sum())
        shared_ok &= revenue == payouts + fees_fen.get(name, 0)
    owner_net = np.array([v for k, v in balances.items() if k.startswith("owner:")], dtype=np.int64)
    income = _received_by_party(lines, "owner:", exclude_stream="charging")
    return {
        "parties": groups,
        "aggregator_fees_cny": {k: str(fen_to_cny(v)) for k, v in sorted(fees_fen.items())},
        "owners": {
            "count": int(owner_net.size),
            "net_cny_total": str(fen_to_cny(int(owner_net.sum()))),
            "earning": int(income.size),
            "earnings_cny_total": str(fen_to_cny(int(income.sum()))),
            "earnings_cny_percentiles": _percentiles(income),
        },
        "balanced": bool(sum(balances.values()) == 0 and shared_ok),
    }


def _received_by_party(lines: Lines, prefix: str, *, exclude_stream: str) -> npt.NDArray[np.int64]:
    """What each party whose id starts with ``prefix`` received, outside one stream (fen)."""
    payee = np.asarray(lines.payee).astype(str)
    chosen = np.char.startswith(payee, prefix) & (np.asarray(lines.stream) != exclude_stream)
    parties, index = np.unique(payee[chosen], return_inverse=True)
    sums = np.bincount(
        index.reshape(-1), weights=np.asarray(lines.amount_fen)[chosen], minlength=parties.size
    )
    return np.rint(sums).astype(np.int64)


def _percentiles(values_fen: npt.NDArray[np.int64]) -> dict[str, str]:
    if values_fen.size == 0:
        return {}
    points = {"p10": 10, "p50": 50, "p90": 90, "max": 100}
    return {
        name: str(fen_to_cny(int(np.percentile(values_fen, q, method="lower"))))
        for name, q in points.items()
    }


def _kpis_json(kpis: PilotKpis) -> dict[str, Any]:
    return {
        "discharge_capacity_kw": round(kpis.discharge_capacity_kw, 1),
        "discharged_mwh_per_year": round(kpis.discharged_mwh_per_year, 1),
        "valley_share": round(kpis.valley_share, 4),
        "valley_share_private": round(kpis.valley_share_private, 4),
        "passes": kpis.passes,
        "all_pass": kpis.all_pass,
    }


def _statement_rows(period: str, lines: Lines) -> pa.Table:
    """Both sides of every line: the payee's (+) and the payer's (-)."""
    amount = np.asarray(lines.amount_fen, dtype=np.int64)
    cny = cny_text(amount).astype(object)
    minus = cny_text(-amount).astype(object)
    kwh = kwh_text(np.asarray(lines.energy_wh, dtype=np.int64))
    payer = np.asarray(lines.payer).astype(object)
    payee = np.asarray(lines.payee).astype(object)
    n = amount.size

    def both(first: np.ndarray, second: np.ndarray) -> pa.Array:
        return pa.array(np.concatenate((first, second)).astype(object), type=pa.string())

    def twice(values: Any) -> pa.Array:
        array = np.asarray(values).astype(object)
        return pa.array(np.concatenate((array, array)), type=pa.string())

    return pa.table(
        {
            "period": pa.array(np.full(2 * n, period, dtype=object), type=pa.string()),
            "party": both(payee, payer),
            "counterparty": both(payer, payee),
            "stream": twice(lines.stream),
            "energy_kwh": twice(kwh),
            "rate": twice(np.asarray(list(lines.rate), dtype=object)),
            "amount_cny": both(cny, minus),
            "cause": twice(lines.cause),
        }
    )


def line_balances(lines: Lines) -> dict[str, int]:
    """Net fen per party (received minus paid) of a batch of lines."""
    amount = np.asarray(lines.amount_fen, dtype=np.int64)
    parties, index = np.unique(
        np.concatenate((np.asarray(lines.payee), np.asarray(lines.payer))).astype(str),
        return_inverse=True,
    )
    signed = np.concatenate((amount, -amount))
    net = np.zeros(parties.size, dtype=np.int64)
    np.add.at(net, index.reshape(-1), signed)
    return dict(zip(parties.tolist(), net.tolist(), strict=True))


def settle_run(
    folder: Path,
    *,
    out: Path,
    planners: list[str] | None = None,
    contracts: Contracts | None = None,
    rates_file: Path | None = None,
    ledger_path: Path | None = None,
    statements: bool = True,
    on_period: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Settle ``folder`` into ``out``; returns what ``settlement.json`` holds.

    With ``statements=False`` only ``settlement.json`` is written and no ledger is kept
    (the simulate report's view: the same lines and totals, balanced from the lines).
    """
    run = RunFolder.read(folder)
    chosen = planners if planners is not None else run.planners
    unknown = [p for p in chosen if p not in run.planners]
    if unknown:
        raise InputError(
            f"planner(s) {', '.join(unknown)} not in this run (it has {', '.join(run.planners)})",
            file=folder / "summary.json",
            field="planners",
        )
    contracts = contracts if contracts is not None else Contracts()
    cards: dict[str, RateCard] = rate_cards(run.cities, overrides=rates_file)
    out.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "run": str(folder),
        "date": run.date,
        "rates": {city: _rates_json(card) for city, card in cards.items()},
        "periods": {},
    }
    with contextlib.ExitStack() as stack:
        ledger = (
            stack.enter_context(
                Ledger.open(ledger_path if ledger_path is not None else out / "ledger.sqlite")
            )
            if statements
            else None
        )
        writer: pa_csv.CSVWriter | None = None
        for planner in chosen:
            for city in run.cities:
                period = f"{run.date}/{city}/{planner}"
                if on_period is not None:
                    on_period(period)
                rows = _period_rows(run.meter, city=city, planner=planner)
                columns = meter_lines(rows, card=cards[city], contracts=contracts)
                add_service_lines(
                    columns,
                    sessions=_period_rows(run.sessions, city=city, planner=planner),
                    sales=[s for s in run.market if (s.city, s.planner) == (city, planner)],
                    card=cards[city],
                    contracts=contracts,
                    payments=[
                        payment
                        for hour in run.regulation
                        if (hour.city, hour.planner) == (city, planner)
                        for payment in hour.payments(cards[city])
                    ],
                )
                lines = ledger_lines(columns)
                posted: dict[str, int] | None = None
                if ledger is not None:
                    result = ledger.post(period, lines)
                    posted = {
                        "new": result.new,
                        "unchanged": result.unchanged,
                        "corrected": result.corrected,
                        "withdrawn": result.withdrawn,
                    }
                    lines = ledger.latest(period)
                    balances = ledger.balances(period)
                else:
                    balances = line_balances(lines)
                metrics = run.metrics[(city, planner)]
                kpis = pilot_kpis(
                    city=city,
                    planner=planner,
                    peak_discharge_kw=run.peak_discharge_kw.get((city, planner), 0.0),
                    discharged_kwh_per_day=float(metrics["energy_discharged_kwh"]),
                    valley_share=float(metrics["valley_share"]),
                    valley_share_private=float(metrics["valley_share_private"]),
                )
                document["periods"][period] = {
                    "city": city,
                    "planner": planner,
                    **({"posted": posted} if posted is not None else {}),
                    **_period_totals(lines, columns.fees_fen, balances),
                    "kpis": _kpis_json(kpis),
                }
                if statements:
                    table = _statement_rows(period, lines)
                    if writer is None:
                        writer = stack.enter_context(
                            pa_csv.CSVWriter(out / "statements.csv", table.schema)
                        )
                    writer.write_table(table)
    document["balanced"] = all(p["balanced"] for p in document["periods"].values())
    (out / "settlement.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return document


def _rates_json(card: RateCard) -> dict[str, Any]:
    return {
        "demand_response_cny_per_kwh": str(card.demand_response_cny_per_kwh),
        "regulation_capacity_cny_per_mw_h": str(card.regulation_capacity_cny_per_mw_h),
        "regulation_mileage_cny_per_mw": str(card.regulation_mileage_cny_per_mw),
        "degradation_compensation_cny_per_kwh": str(card.degradation_compensation_cny_per_kwh),
        "sources": card.sources,
        "assumed": sorted(card.assumed),
    }


__all__ = ["STATEMENT_COLUMNS", "RunFolder", "ledger_lines", "line_balances", "settle_run"]
