"""What a settled twin run comes back as: :class:`Settlement`."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv


@dataclass(frozen=True)
class PeriodSettlement:
    """One city and planner's day: what each party received and paid per stream (CNY,
    exact), the owners' earnings, the pilot KPIs and whether the lines balance."""

    period: str
    city: str
    planner: str
    balanced: bool
    parties: dict[str, dict[str, dict[str, Decimal]]]
    owners_net_cny: Decimal
    owners_earning: int
    kpis: dict[str, Any]

    def net_cny(self, party: str) -> Decimal:
        """What ``party`` (``grid``, ``aggregator``, ``operator``, ``owner``) received less
        what it paid, over every stream."""
        streams = self.parties.get(party, {})
        return sum(
            (amounts["received_cny"] - amounts["paid_cny"] for amounts in streams.values()),
            Decimal(0),
        )


@dataclass(frozen=True)
class Settlement:
    """A settled run: one :class:`PeriodSettlement` per city and planner; ``document`` is
    what ``settlement.json`` holds; ``folder`` holds ``statements.csv`` (one row per
    ledger line) and the ledger, when statements were asked for."""

    periods: dict[str, PeriodSettlement]
    document: dict[str, Any]
    folder: Path | None = None

    @property
    def balanced(self) -> bool:
        """Every period's lines add up to zero."""
        return all(period.balanced for period in self.periods.values())

    def period(self, city: str, planner: str) -> PeriodSettlement:
        """The settlement of ``planner`` in ``city``."""
        for period in self.periods.values():
            if (period.city, period.planner) == (city, planner):
                return period
        raise KeyError(f"no period for {city} / {planner}")

    def statements(self) -> pa.Table:
        """Every statement line (``period, party, counterparty, stream, energy_kwh, rate,
        amount_cny, cause``)."""
        if self.folder is None or not (self.folder / "statements.csv").is_file():
            raise ValueError("this settlement kept no statements (settle with statements=True)")
        return pa_csv.read_csv(self.folder / "statements.csv")

    @classmethod
    def of(cls, document: dict[str, Any], folder: Path | None = None) -> Settlement:
        """The settlement ``settlement.json`` describes."""
        periods = {
            name: PeriodSettlement(
                period=name,
                city=str(entry["city"]),
                planner=str(entry["planner"]),
                balanced=bool(entry["balanced"]),
                parties={
                    party: {
                        stream: {key: Decimal(value) for key, value in amounts.items()}
                        for stream, amounts in streams.items()
                    }
                    for party, streams in entry["parties"].items()
                },
                owners_net_cny=Decimal(entry["owners"]["net_cny_total"]),
                owners_earning=int(entry["owners"]["earning"]),
                kpis=dict(entry["kpis"]),
            )
            for name, entry in document["periods"].items()
        }
        return cls(periods=periods, document=document, folder=folder)
