"""Settle a twin run: meter data in, ledger posted, statements and totals out.

``v2ghub settle RUN_DIR --out DIR`` reads a ``v2ghub simulate`` output folder
(:class:`~v2ghub.settlement.run_folder.RunFolder`), posts one ledger
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

A day of the live aggregator's meter data settles through the same :func:`settle_period`
(:mod:`~v2ghub.settlement.live_settle`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pa_csv

from v2ghub.errors import InputError
from v2ghub.files import (
    ANY_REGULAR_FILE,
    atomic_binary,
    check_replaceable,
    write_text_atomic,
    writing_into,
)
from v2ghub.settlement.contracts import SHARED_STREAMS, Contracts
from v2ghub.settlement.kpis import PilotKpis, pilot_kpis
from v2ghub.settlement.ledger import Ledger, Lines
from v2ghub.settlement.meter import meter_lines
from v2ghub.settlement.money import energy_wh, fen_to_cny
from v2ghub.settlement.rates import RateCard, rate_cards
from v2ghub.settlement.run_folder import RunFolder
from v2ghub.settlement.service_lines import add_service_lines
from v2ghub.settlement.streams import (
    LineColumns,
    PartyVocabulary,
    cny_text,
    joined_parties,
    kwh_text,
    sorted_codes,
)

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


@dataclass(frozen=True)
class _Flows:
    """Who pays whom how much, per line: all the totals need (no text). Streams and
    parties are codes into their sorted distinct values, made once."""

    amount_fen: npt.NDArray[np.int64]
    streams: list[str]
    stream_code: npt.NDArray[np.int64]
    parties: PartyVocabulary
    payer_code: npt.NDArray[np.int64]
    payee_code: npt.NDArray[np.int64]

    @staticmethod
    def of(amount_fen: npt.ArrayLike, stream: Any, payer: Any, payee: Any) -> _Flows:
        amount = np.asarray(amount_fen, dtype=np.int64)
        streams, stream_code = sorted_codes(np.asarray(stream))
        parties, codes = sorted_codes(np.concatenate((np.asarray(payee), np.asarray(payer))))
        n = amount.size
        vocabulary = PartyVocabulary.of_text(parties)
        return _Flows(amount, streams.tolist(), stream_code, vocabulary, codes[n:], codes[:n])

    @staticmethod
    def of_lines(lines: Lines) -> _Flows:
        return _Flows.of(lines.amount_fen, lines.stream, lines.payer, lines.payee)

    @staticmethod
    def of_columns(columns: LineColumns) -> _Flows:
        amount = np.asarray(columns.column("amount_fen"), dtype=np.int64)
        # One stream per chunk: coded by chunk, not by line.
        names = [str(chunk[0]) for chunk in columns.stream]
        streams = sorted(set(names))
        stream_code = np.repeat(
            np.array([streams.index(name) for name in names], dtype=np.int64),
            [chunk.size for chunk in columns.stream],
        )
        parties, (payer_code, payee_code) = joined_parties(columns.payer, columns.payee)
        return _Flows(amount, streams, stream_code, parties, payer_code, payee_code)

    def party(self, party_id: str) -> int:
        """A party's code, -1 when it has no line."""
        return self.parties.code(party_id)

    def stream(self, name: str) -> int:
        """A stream's code, -1 when it has no line."""
        return self.streams.index(name) if name in self.streams else -1

    def per_party(self, codes: npt.NDArray[np.int64], chosen: Any = None) -> npt.NDArray[np.int64]:
        """Fen per party of the (chosen) lines, by payer or payee code; exact (integer
        sums below 2**53)."""
        amount = self.amount_fen if chosen is None else self.amount_fen[chosen]
        codes = codes if chosen is None else codes[chosen]
        sums = np.bincount(codes, weights=amount, minlength=self.parties.size)
        return np.rint(sums).astype(np.int64)

    def net(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Net fen per party (received minus paid), and which parties have a line (the
        codes may also name parties whose lines were all 0 fen)."""
        net = self.per_party(self.payee_code) - self.per_party(self.payer_code)
        lines = np.bincount(np.concatenate((self.payee_code, self.payer_code)), minlength=net.size)
        return net, lines > 0

    def balances(self) -> dict[str, int]:
        """Net fen per party with a line (received minus paid), parties sorted."""
        net, named = self.net()
        ids = self.parties.text()
        return dict(zip(ids[named].tolist(), net[named].tolist(), strict=True))

    def group_of_party(self) -> npt.NDArray[np.int64]:
        """Each party's index in :data:`GROUPS` (``owner:S1`` -> owner, ``grid`` -> grid),
        ``len(GROUPS)`` for any other. The ids are sorted, so a group's are one run:
        found by bisection, not by reading a million ids."""
        group = np.full(self.parties.size, len(GROUPS), dtype=np.int64)
        for k, name in enumerate(GROUPS):
            # The group's own id, then its members: the ids from ``name:`` up to ``name;``
            # (';' follows ':') are exactly those that start with ``name:``.
            own = self.parties.code(name)
            if own >= 0:
                group[own] = k
            group[self.parties.codes_from(name + ":", name + ";")] = k
        return group


GROUPS = ("grid", "aggregator", "operator", "owner")
"""The party groups the totals are told for."""


def _period_totals(
    flows: _Flows, fees_fen: dict[str, int], *, owner_net: npt.NDArray[np.int64], balanced: bool
) -> dict[str, Any]:
    """Totals per party group and stream, owner earnings, and the balance checks
    (``owner_net``: each owner's net fen; ``balanced``: the parties' balances sum to 0)."""
    amount = flows.amount_fen
    group_of_party = flows.group_of_party()
    n_groups, n_streams = len(GROUPS) + 1, len(flows.streams)

    def summed(codes: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Fen per (group, stream); exact (integer sums below 2**53)."""
        cell = group_of_party[codes] * n_streams + flows.stream_code
        sums = np.bincount(cell, weights=amount, minlength=n_groups * n_streams)
        return np.rint(sums).astype(np.int64).reshape(n_groups, n_streams)

    paid_by, received_by = summed(flows.payer_code), summed(flows.payee_code)
    groups: dict[str, dict[str, dict[str, str]]] = {}
    for g, group in enumerate(GROUPS):
        per_stream = {}
        for k, name in enumerate(flows.streams):
            received, paid = int(received_by[g, k]), int(paid_by[g, k])
            if received or paid:
                per_stream[name] = {
                    "received_cny": str(fen_to_cny(received)),
                    "paid_cny": str(fen_to_cny(paid)),
                }
        groups[group] = per_stream
    grid, aggregator = flows.party("grid"), flows.party("aggregator")
    shared_ok = True
    for name in SHARED_STREAMS:
        in_stream = flows.stream_code == flows.stream(name)
        from_aggregator = flows.payer_code == aggregator
        revenue = amount[(flows.payer_code == grid) & (flows.payee_code == aggregator) & in_stream]
        payouts = amount[from_aggregator & (flows.payee_code != grid) & in_stream]
        shared_ok &= int(revenue.sum()) == int(payouts.sum()) + fees_fen.get(name, 0)
    # What each owner received outside charging (those who received anything).
    is_owner = group_of_party == GROUPS.index("owner")
    chosen = is_owner[flows.payee_code] & (flows.stream_code != flows.stream("charging"))
    earned = flows.per_party(flows.payee_code, chosen)
    income = earned[np.bincount(flows.payee_code[chosen], minlength=flows.parties.size) > 0]
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
        "balanced": bool(balanced and shared_ok),
    }


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


def statement_rows(period: str, lines: Lines) -> pa.Table:
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
    return _Flows.of_lines(lines).balances()


def settle_period(
    period: str, columns: LineColumns, *, ledger: Ledger, kpis: PilotKpis
) -> tuple[dict[str, Any], Lines]:
    """Post one period's lines and total them.

    Returns the period's entry of ``settlement.json`` (``posted``, the totals of
    :func:`_period_totals` and the KPIs) and the ledger's latest version of the period.
    """
    result = ledger.post(period, ledger_lines(columns))
    lines = ledger.latest(period)
    entry: dict[str, Any] = {
        "posted": {
            "new": result.new,
            "unchanged": result.unchanged,
            "corrected": result.corrected,
            "withdrawn": result.withdrawn,
        }
    }
    balances = ledger.balances(period)
    owner_net = np.array([v for k, v in balances.items() if k.startswith("owner:")], dtype=np.int64)
    entry.update(
        _period_totals(
            _Flows.of_lines(lines),
            columns.fees_fen,
            owner_net=owner_net,
            balanced=sum(balances.values()) == 0,
        )
    )
    entry["kpis"] = _kpis_json(kpis)
    return entry, lines


def period_totals(columns: LineColumns, *, kpis: PilotKpis) -> dict[str, Any]:
    """One period's entry of ``settlement.json`` from its lines, posted nowhere: the
    totals of :func:`_period_totals` (balanced from the lines) and the KPIs. The lines
    may be without their text (``LineColumns.empty(texts=False)``)."""
    flows = _Flows.of_columns(columns)
    net, named = flows.net()
    is_owner = flows.group_of_party() == GROUPS.index("owner")
    entry = _period_totals(
        flows, columns.fees_fen, owner_net=net[named & is_owner], balanced=int(net.sum()) == 0
    )
    entry["kpis"] = _kpis_json(kpis)
    return entry


OUTPUT_FILES = ("statements.csv", "settlement.json")
"""What settling writes into its folder (beside the ledger), each whole or not at all."""


def prepare_output_folder(out: Path) -> None:
    """Make ``out`` and refuse it before any work if a file settling writes there is not a
    regular file (a device or a symbolic link is never replaced: :mod:`v2ghub.files`)."""
    with writing_into(out):
        out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:
        check_replaceable(out / name, ANY_REGULAR_FILE)


def write_statements_csv(out: Path, table: pa.Table) -> None:
    """``statements.csv`` of one period's lines, whole or not at all."""
    with atomic_binary(out / "statements.csv") as handle:
        pa_csv.write_csv(table, handle)


def write_settlement_json(out: Path, document: dict[str, Any]) -> None:
    """``settlement.json``: ``document`` with ``balanced`` set from its periods'."""
    document["balanced"] = all(p["balanced"] for p in document["periods"].values())
    write_text_atomic(out / "settlement.json", json.dumps(document, indent=2) + "\n")


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
    prepare_output_folder(out)
    document: dict[str, Any] = {
        "run": str(folder),
        "date": run.date,
        "rates": {city: rates_json(card) for city, card in cards.items()},
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
                rows = run.meter_rows(city=city, planner=planner)
                columns = meter_lines(rows, card=cards[city], contracts=contracts, texts=statements)
                sales = [s for s in run.market if (s.city, s.planner) == (city, planner)]
                payments = [
                    payment
                    for hour in run.regulation
                    if (hour.city, hour.planner) == (city, planner)
                    for payment in hour.payments(cards[city])
                ]
                if sales or payments or _delivered_demand_response(run, city, planner):
                    add_service_lines(
                        columns,
                        sessions=run.session_rows(city=city, planner=planner),
                        sales=sales,
                        card=cards[city],
                        contracts=contracts,
                        payments=payments,
                    )
                metrics = run.metrics[(city, planner)]
                kpis = pilot_kpis(
                    city=city,
                    planner=planner,
                    peak_discharge_kw=run.peak_discharge_kw.get((city, planner), 0.0),
                    discharged_kwh_per_day=float(metrics["energy_discharged_kwh"]),
                    valley_share=float(metrics["valley_share"]),
                    valley_share_private=float(metrics["valley_share_private"]),
                )
                if ledger is None:
                    entry = period_totals(columns, kpis=kpis)
                else:
                    entry, lines = settle_period(period, columns, ledger=ledger, kpis=kpis)
                    table = statement_rows(period, lines)
                    if writer is None:  # one file over every period, renamed at the end
                        sink = stack.enter_context(atomic_binary(out / "statements.csv"))
                        writer = stack.enter_context(pa_csv.CSVWriter(sink, table.schema))
                    writer.write_table(table)
                document["periods"][period] = {"city": city, "planner": planner, **entry}
    write_settlement_json(out, document)
    return document


def _delivered_demand_response(run: RunFolder, city: str, planner: str) -> bool:
    """Whether a session of the period delivered a metered Wh of demand response: without
    it (nor sales, nor payments) :func:`add_service_lines` adds no line, and a million
    sessions' other columns are not read (their values were checked with the folder)."""
    rows = run.session_rows(city=city, planner=planner, columns=("dr_delivered_kwh",))
    delivered_kwh = rows.column("dr_delivered_kwh").to_numpy()
    return bool(np.any(energy_wh(np.asarray(delivered_kwh, dtype=np.float64)) > 0))


def rates_json(card: RateCard) -> dict[str, Any]:
    return {
        "demand_response_cny_per_kwh": str(card.demand_response_cny_per_kwh),
        "regulation_capacity_cny_per_mw_h": str(card.regulation_capacity_cny_per_mw_h),
        "regulation_mileage_cny_per_mw": str(card.regulation_mileage_cny_per_mw),
        "degradation_compensation_cny_per_kwh": str(card.degradation_compensation_cny_per_kwh),
        "sources": card.sources,
        "assumed": sorted(card.assumed),
    }


__all__ = [
    "STATEMENT_COLUMNS",
    "RunFolder",
    "ledger_lines",
    "line_balances",
    "period_totals",
    "rates_json",
    "settle_period",
    "settle_run",
    "statement_rows",
    "write_settlement_json",
]
