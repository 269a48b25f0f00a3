"""Ledger lines for a period's metered energy: charging, discharge and battery wear.

The meter data has one row per session and price level (``meter.parquet`` of a twin run,
:func:`v2ghub.report.outputs.meter_table`; the live aggregator's meter values later):
``session_id, site_id, charger_kind, period, import_price_cny_per_kwh,
export_price_cny_per_kwh, import_wh, export_wh``. The streams and the rounding are those
of :mod:`v2ghub.settlement.streams`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from v2ghub.settlement.contracts import Contracts
from v2ghub.settlement.rates import RateCard
from v2ghub.settlement.streams import (
    LineColumns,
    StrArray,
    add_shared_revenue,
    amount_fen,
    kwh_text,
    rate_nano_of,
)

METER_COLUMNS = (
    "session_id",
    "site_id",
    "charger_kind",
    "period",
    "import_price_cny_per_kwh",
    "export_price_cny_per_kwh",
    "import_wh",
    "export_wh",
)


def _text(table: pa.Table, name: str) -> StrArray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False)).astype(str)


def meter_lines(meter: pa.Table, *, card: RateCard, contracts: Contracts) -> LineColumns:
    """The ledger lines of one period's meter rows."""
    missing = [c for c in METER_COLUMNS if c not in meter.column_names]
    if missing:
        raise ValueError(f"meter data lacks column(s) {', '.join(missing)}")
    session = _text(meter, "session_id")
    site = _text(meter, "site_id")
    kind_of_charger = _text(meter, "charger_kind")
    period = _text(meter, "period")
    import_price = _text(meter, "import_price_cny_per_kwh")
    export_price = _text(meter, "export_price_cny_per_kwh")
    import_wh = np.asarray(meter.column("import_wh").to_numpy(), dtype=np.int64)
    export_wh = np.asarray(meter.column("export_wh").to_numpy(), dtype=np.int64)
    if np.any(import_wh < 0) or np.any(export_wh < 0):
        row = int(np.flatnonzero((import_wh < 0) | (export_wh < 0))[0])
        raise ValueError(f"meter row {row + 1}: energy is negative")
    owner = np.char.add("owner:", session)
    operator = np.char.add("operator:", site)
    lines = LineColumns.empty()

    level = np.char.add(np.char.add(period, ":"), import_price)
    at = np.char.add(np.char.add(np.char.add(" in ", period), " hours at "), import_price)
    lines.add(
        session_id=session,
        kind=np.char.add("charging:", level),
        payer=owner,
        payee=np.full(session.shape[0], "grid"),
        stream="charging",
        energy_wh=import_wh,
        rate=import_price,
        amount_fen=amount_fen(import_wh, rate_nano_of(import_price)),
        cause=np.char.add(np.char.add(np.char.add("charged ", kwh_text(import_wh)), " kWh"), at)
        + " CNY/kWh",
    )

    discharged = export_wh > 0
    share_index, table = contracts.shares(
        "discharge", site_id=site[discharged], charger_kind=kind_of_charger[discharged]
    )
    sold_at = np.char.add(
        np.char.add(np.char.add(" in ", period[discharged]), " hours at "),
        export_price[discharged],
    )
    add_shared_revenue(
        lines,
        stream="discharge",
        session_id=session[discharged],
        kind=np.char.add(
            "discharge:",
            np.char.add(np.char.add(period[discharged], ":"), export_price[discharged]),
        ),
        owner=owner[discharged],
        operator=operator[discharged],
        quantity=export_wh[discharged],
        rate=export_price[discharged],
        revenue_fen=amount_fen(export_wh[discharged], rate_nano_of(export_price[discharged])),
        share_index=share_index,
        table=table,
        cause=np.char.add(
            np.char.add(np.char.add("discharged ", kwh_text(export_wh[discharged])), " kWh"),
            sold_at,
        )
        + " CNY/kWh",
    )

    # Battery wear: per session, on all it discharged in the period.
    sessions, first, inverse = np.unique(session, return_index=True, return_inverse=True)
    total_wh = np.bincount(inverse.reshape(-1), weights=export_wh, minlength=sessions.size)
    total_wh = np.rint(total_wh).astype(np.int64)  # sums of integers, exact below 2**53
    rate = card.degradation_compensation_cny_per_kwh
    rate_text = np.full(sessions.size, str(rate))
    lines.add(
        session_id=sessions,
        kind=np.full(sessions.size, "degradation"),
        payer=np.full(sessions.size, "aggregator"),
        payee=owner[first],
        stream="degradation",
        energy_wh=total_wh,
        rate=rate_text,
        amount_fen=amount_fen(total_wh, rate_nano_of(rate_text)),
        cause=np.char.add(
            np.char.add("battery wear on ", kwh_text(total_wh)),
            f" kWh discharged at {rate} CNY/kWh",
        ),
    )
    return lines
