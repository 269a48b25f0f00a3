"""Tables the grid-service settlement tests build by hand, and how they read its lines."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa

from v2ghub.settlement.streams import LineColumns

Session = tuple[str, str, str, float, float, float]
"""session_id, site_id, charger_kind, arrival and departure (hours after ``day``), DR kWh."""


def sessions_table(day: datetime, rows: list[Session]) -> pa.Table:
    """The sessions columns :func:`~v2ghub.settlement.service_lines.add_service_lines` reads."""
    utc_us = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "session_id": pa.array([r[0] for r in rows], type=pa.string()),
            "site_id": pa.array([r[1] for r in rows], type=pa.string()),
            "charger_kind": pa.array([r[2] for r in rows], type=pa.string()),
            "arrival": pa.array([day + timedelta(hours=r[3]) for r in rows], type=utc_us),
            "departure": pa.array([day + timedelta(hours=r[4]) for r in rows], type=utc_us),
            "dr_delivered_kwh": pa.array([r[5] for r in rows], type=pa.float64()),
        }
    )


def amounts(lines: LineColumns) -> dict[str, tuple[str, str, int]]:
    """``session/kind`` -> (payer, payee, fen)."""
    columns = [
        lines.column(name).tolist()
        for name in ("session_id", "kind", "payer", "payee", "amount_fen")
    ]
    return {f"{s}/{k}": (p, q, int(a)) for s, k, p, q, a in zip(*columns, strict=True)}
