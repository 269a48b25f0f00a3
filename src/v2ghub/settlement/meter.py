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
    IntArray,
    LineColumns,
    Parties,
    StrArray,
    add_shared_revenue,
    amount_fen,
    column_text,
    kwh_text,
    made_once,
    rate_nano_of,
    sorted_codes,
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


def _rate_nano(table: pa.Table, name: str) -> IntArray:
    """A price column as nano-CNY per row, exactly (each distinct price parsed once)."""
    distinct, codes = sorted_codes(table.column(name))
    return rate_nano_of(distinct)[codes]


def meter_lines(
    meter: pa.Table, *, card: RateCard, contracts: Contracts, texts: bool = True
) -> LineColumns:
    """The ledger lines of one period's meter rows (without their text when ``texts`` is
    false: for totals only, see :class:`~v2ghub.settlement.streams.LineColumns`)."""
    missing = [c for c in METER_COLUMNS if c not in meter.column_names]
    if missing:
        raise ValueError(f"meter data lacks column(s) {', '.join(missing)}")
    import_wh = np.asarray(meter.column("import_wh").to_numpy(), dtype=np.int64)
    export_wh = np.asarray(meter.column("export_wh").to_numpy(), dtype=np.int64)
    if np.any(import_wh < 0) or np.any(export_wh < 0):
        row = int(np.flatnonzero((import_wh < 0) | (export_wh < 0))[0])
        raise ValueError(f"meter row {row + 1}: energy is negative")
    sessions, session_code = sorted_codes(meter.column("session_id"))
    session = made_once(lambda: sessions[session_code])
    sites, site_code = sorted_codes(meter.column("site_id"))
    kinds, kind_code = sorted_codes(meter.column("charger_kind"))
    import_nano = _rate_nano(meter, "import_price_cny_per_kwh")
    export_nano = _rate_nano(meter, "export_price_cny_per_kwh")
    # Each session's owner is ``owner:`` and its id, a site's operator ``operator:`` and the
    # site's: kept as prefix and names, never written out when only totals are wanted.
    owner = Parties(sessions, session_code, prefix="owner:")
    operator = Parties(sites, site_code, prefix="operator:")
    lines = LineColumns.empty(texts=texts)
    period_text = made_once(lambda: column_text(meter, "period"))
    import_text = made_once(lambda: column_text(meter, "import_price_cny_per_kwh"))
    export_text = made_once(lambda: column_text(meter, "export_price_cny_per_kwh"))

    def charging_kind() -> StrArray:
        return np.char.add("charging:", np.char.add(np.char.add(period_text(), ":"), import_text()))

    def charging_cause() -> StrArray:
        at = np.char.add(
            np.char.add(np.char.add(" in ", period_text()), " hours at "), import_text()
        )
        charged = np.char.add(np.char.add("charged ", kwh_text(import_wh)), " kWh")
        return np.char.add(np.char.add(charged, at), " CNY/kWh")

    lines.add(
        session_id=session,
        kind=charging_kind,
        payer=owner,
        payee=Parties.same("grid", len(owner)),
        stream="charging",
        energy_wh=import_wh,
        rate=import_text,
        amount_fen=amount_fen(import_wh, import_nano),
        cause=charging_cause,
    )

    discharged = export_wh > 0
    share_index, table = contracts.shares(
        "discharge",
        site_id=sites[site_code[discharged]],
        charger_kind=kinds[kind_code[discharged]],
    )

    def discharge_kind() -> StrArray:
        level = np.char.add(np.char.add(period_text()[discharged], ":"), export_text()[discharged])
        return np.char.add("discharge:", level)

    def discharge_cause() -> StrArray:
        sold_at = np.char.add(
            np.char.add(np.char.add(" in ", period_text()[discharged]), " hours at "),
            export_text()[discharged],
        )
        sold = np.char.add(np.char.add("discharged ", kwh_text(export_wh[discharged])), " kWh")
        return np.char.add(np.char.add(sold, sold_at), " CNY/kWh")

    add_shared_revenue(
        lines,
        stream="discharge",
        session_id=lambda: session()[discharged],
        kind=discharge_kind,
        owner=owner[discharged],
        operator=operator[discharged],
        quantity=export_wh[discharged],
        rate=lambda: export_text()[discharged],
        revenue_fen=amount_fen(export_wh[discharged], export_nano[discharged]),
        share_index=share_index,
        table=table,
        cause=discharge_cause,
    )

    # Battery wear: per session, on all it discharged in the period.
    total_wh = np.bincount(session_code, weights=export_wh, minlength=sessions.size)
    total_wh = np.rint(total_wh).astype(np.int64)  # sums of integers, exact below 2**53
    rate = card.degradation_compensation_cny_per_kwh
    rate_text = np.broadcast_to(np.array(str(rate)), (sessions.size,))
    wear_nano = np.full(sessions.size, rate_nano_of(np.array([str(rate)]))[0], dtype=np.int64)
    lines.add(
        session_id=sessions,
        kind=lambda: np.full(sessions.size, "degradation"),
        payer=Parties.same("aggregator", sessions.size),
        payee=Parties.each(sessions, prefix="owner:"),
        stream="degradation",
        energy_wh=total_wh,
        rate=rate_text,
        amount_fen=amount_fen(total_wh, wear_nano),
        cause=lambda: np.char.add(
            np.char.add("battery wear on ", kwh_text(total_wh)),
            f" kWh discharged at {rate} CNY/kWh",
        ),
    )
    return lines
