"""Read a ``v2ghub simulate`` output folder for settlement: :class:`RunFolder`.

The folder holds ``summary.json``, ``meter.parquet``, ``curves.csv``, ``sessions.parquet``
and, when a market ran, ``market.json``, when regulation ran, ``regulation.json``. Every
file is checked as it is read: a missing or foreign file, a missing column or a bad value is
an :class:`~v2ghub.errors.InputError` naming the file, row and field.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from v2ghub.errors import InputError
from v2ghub.settlement.meter import METER_COLUMNS
from v2ghub.settlement.money import FEN
from v2ghub.settlement.regulation_hours import CommittedHour
from v2ghub.settlement.service_lines import SESSION_COLUMNS, MarketSale
from v2ghub.units import KW_PER_MW


@dataclass(frozen=True)
class RunFolder:
    """What settlement needs from a ``v2ghub simulate`` output folder."""

    date: str
    planners: list[str]
    cities: list[str]
    meter_path: Path
    metrics: dict[tuple[str, str], dict[str, Any]]
    peak_discharge_kw: dict[tuple[str, str], float]
    sessions_path: Path
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
        _check_meter(meter_path)
        sessions_path = folder / "sessions.parquet"
        _check_sessions(sessions_path)
        market_path = folder / "market.json"
        market = _market_sales(market_path, set(metrics)) if market_path.is_file() else ()
        regulation_path = folder / "regulation.json"
        return RunFolder(
            date=date,
            planners=planners,
            cities=cities,
            meter_path=meter_path,
            metrics=metrics,
            peak_discharge_kw=peak,
            sessions_path=sessions_path,
            market=market,
            regulation=_regulation_hours(regulation_path, set(metrics), market)
            if regulation_path.is_file()
            else (),
        )

    def meter_rows(self, *, city: str, planner: str) -> pa.Table:
        """The meter rows of one city and planner (:data:`METER_COLUMNS`)."""
        return _period_rows(self.meter_path, METER_COLUMNS, city=city, planner=planner)

    def session_rows(
        self, *, city: str, planner: str, columns: tuple[str, ...] = SESSION_COLUMNS
    ) -> pa.Table:
        """The sessions' rows of one city and planner (:data:`SESSION_COLUMNS`, or only
        ``columns``)."""
        return _period_rows(self.sessions_path, columns, city=city, planner=planner)


FEW_VALUES = (
    "city",
    "planner",
    "site_id",
    "charger_kind",
    "period",
    "import_price_cny_per_kwh",
    "export_price_cny_per_kwh",
)
"""Text columns of few distinct values, read as dictionary arrays: their values are never
made per row (a million rows name a few sites, kinds, periods and prices)."""


def _period_rows(path: Path, columns: tuple[str, ...], *, city: str, planner: str) -> pa.Table:
    """One city and planner's rows of a run's Parquet file, with ``columns``: read one
    period at a time (each run is its own row groups), so a million sessions' day of
    several planners is never all in memory. The row groups are chosen by their
    statistics when each holds one city and planner, as a run writes them; otherwise the
    rows are filtered."""
    wanted = list(dict.fromkeys(("city", "planner", *columns)))
    try:
        file = pq.ParquetFile(path)
        names = file.schema_arrow.names
        as_dictionary = [name for name in wanted if name in FEW_VALUES and name in names]
        groups = _row_groups_of(file.metadata, city=city, planner=planner)
        if groups is not None:
            file = pq.ParquetFile(path, read_dictionary=as_dictionary)
            return file.read_row_groups(groups, columns=wanted)
        return pq.read_table(
            path,
            columns=wanted,
            filters=[("city", "=", city), ("planner", "=", planner)],
            read_dictionary=as_dictionary,
        )
    except (OSError, pa.ArrowInvalid) as error:
        raise InputError(f"not a Parquet file ({error})", file=path) from None


def _row_groups_of(metadata: pq.FileMetaData, *, city: str, planner: str) -> list[int] | None:
    """The row groups of ``city`` and ``planner``, or None unless every row group's
    statistics say it holds a single city and planner (and no nulls)."""
    if metadata.num_row_groups == 0:
        return None
    first = metadata.row_group(0)
    paths = [first.column(i).path_in_schema for i in range(first.num_columns)]
    if "city" not in paths or "planner" not in paths:
        return None
    columns = (paths.index("city"), paths.index("planner"))
    groups = []
    for k in range(metadata.num_row_groups):
        group = metadata.row_group(k)
        values = []
        for column in columns:
            stats = group.column(column).statistics
            if (
                stats is None
                or not stats.has_min_max
                or not stats.has_null_count
                or stats.null_count
                or stats.min != stats.max
            ):
                return None
            values.append(stats.min)
        if values == [city, planner]:
            groups.append(k)
    return groups


def _parquet(path: Path, required: tuple[str, ...], read: tuple[str, ...]) -> pa.Table:
    """Columns ``read`` of a Parquet file of the run, which must hold ``required`` and
    ``city``, ``planner``."""
    if not path.is_file():
        raise InputError(
            "not found: settle reads the output folder of `v2ghub simulate`", file=path
        )
    try:
        names = pq.read_schema(path).names
        for name in ("city", "planner", *required):
            if name not in names:
                raise InputError("missing column", file=path, field=name)
        return pq.read_table(path, columns=list(read))
    except (OSError, pa.ArrowInvalid) as error:
        raise InputError(f"not a Parquet file ({error})", file=path) from None


def _check_meter(path: Path) -> None:
    """Refuse the meter rows, with file, row and field, if a column is missing or an
    energy is negative (meter data only ever adds energy)."""
    meter = _parquet(path, METER_COLUMNS, ("import_wh", "export_wh"))
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


def _check_sessions(path: Path) -> None:
    """Refuse the sessions' rows, with file, row and field, if a column is missing, a
    plug-in time is not a timestamp or a delivered energy is not a number >= 0."""
    sessions = _parquet(path, SESSION_COLUMNS, ("arrival", "departure", "dr_delivered_kwh"))
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


__all__ = ["RunFolder"]
