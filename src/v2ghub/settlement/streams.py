"""From metered energy and service deliveries to ledger lines, exactly, for whole fleets.

A line's amount is its quantity times its rate, rounded to the fen half away from zero
(:func:`~v2ghub.settlement.money.amount_fen`, the one rounding rule). A revenue the
aggregator receives is then split by the contract's percentages: each party
gets its exact share cut down to the fen, and the fen left over (at most two) go one
each to the largest remainders, owner first on ties; so the shares add up to the
revenue exactly and each is within a fen of its exact value.

Streams and who pays whom:

- ``charging``: the owner pays the grid company for each kWh drawn, at the TOU price of
  its step (one line per session and price level);
- ``discharge``: the grid company pays the aggregator for each kWh delivered at the
  city's discharge price, and the aggregator pays the owner and the site's operator their
  shares;
- ``degradation``: the aggregator pays the owner battery wear per kWh discharged;
- ``demand_response``: the grid company pays the aggregator per kWh delivered against the
  baseline, shared as discharge is;
- ``regulation_capacity`` and ``regulation_mileage``: the market pays the aggregator per
  MW-h of capacity and per MW of mileage, scaled by the performance score, shared alike.

Everything is vectorised over lines: integer numpy arithmetic, no loop per session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from v2ghub.settlement.contracts import Shares
from v2ghub.settlement.money import amount_fen, price_nano

IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]

PPM_PER_PERCENT = 10_000
PPM = 1_000_000


def scaled_rate_nano(rate: Decimal, score: npt.NDArray[np.float64]) -> IntArray:
    """A rate times a performance score (0-1), as nano-CNY, the score to six decimals."""
    score_ppm = np.rint(np.clip(score, 0.0, 1.0) * PPM).astype(np.int64)
    rate_n = int(price_nano([rate])[0])
    # Exact: rate_n * score_ppm / PPM, rounded half up (both non-negative).
    return np.asarray((rate_n * score_ppm + PPM // 2) // PPM, dtype=np.int64)


def _share_ppm(shares: Shares) -> tuple[int, int, int]:
    out = []
    for value in (shares.owner, shares.operator, shares.aggregator):
        ppm = value * PPM_PER_PERCENT
        if ppm != ppm.to_integral_value():
            raise ValueError(f"share {value}% has more than 4 decimals")
        out.append(int(ppm))
    return out[0], out[1], out[2]


def split_fen(revenue_fen: IntArray, share_index: IntArray, table: Sequence[Shares]) -> IntArray:
    """Split each revenue (fen, >= 0) into (owner, operator, aggregator) fen, exactly.

    ``table[share_index[i]]`` are line ``i``'s shares. Returns shape ``(n, 3)``; each row
    adds up to its revenue.
    """
    revenue = np.asarray(revenue_fen, dtype=np.int64)
    if np.any(revenue < 0):
        raise ValueError("a revenue to split is negative")
    ppm = np.array([_share_ppm(s) for s in table], dtype=np.int64).reshape(-1, 3)
    line_ppm = ppm[share_index]
    exact = revenue[:, None] * line_ppm  # fen * ppm
    parts = exact // PPM
    remainder = exact % PPM
    left = revenue - parts.sum(axis=1)
    # Largest remainder first; on ties the owner, then the operator (stable order).
    rank = np.argsort(-remainder, axis=1, kind="stable")
    bonus = (np.arange(3)[None, :] < left[:, None]).astype(np.int64)
    np.put_along_axis(parts, rank, np.take_along_axis(parts, rank, axis=1) + bonus, axis=1)
    return np.asarray(parts, dtype=np.int64)


def _fixed_point_text(value: IntArray, places: int) -> StrArray:
    """Integers in units of ``10**-places`` as exact decimal text (``-1205, 2`` -> ``"-12.05"``)."""
    units = np.asarray(value, dtype=np.int64)
    if units.size == 0:  # numpy's zfill cannot take an empty array
        return np.zeros(0, dtype=str)
    scale = 10**places
    sign = np.where(units < 0, "-", "")
    whole = (np.abs(units) // scale).astype(str)
    part = np.char.zfill((np.abs(units) % scale).astype(str), places)
    return np.asarray(np.char.add(np.char.add(np.char.add(sign, whole), "."), part))


def kwh_text(energy_wh: IntArray) -> StrArray:
    """Integer Wh as exact kWh text with three decimals (``12345`` -> ``"12.345"``)."""
    return _fixed_point_text(energy_wh, 3)


def cny_text(amount_fen: IntArray) -> StrArray:
    """Integer fen as exact CNY text with two decimals (``-1205`` -> ``"-12.05"``)."""
    return _fixed_point_text(amount_fen, 2)


@dataclass
class LineColumns:
    """Ledger lines being built, as growing lists of column chunks.

    ``fees_fen`` is, per stream, the aggregator's own share of the revenues it received
    (computed with the other shares, so ``revenue == payouts + fees`` is a real check).
    """

    session_id: list[StrArray]
    kind: list[StrArray]
    payer: list[StrArray]
    payee: list[StrArray]
    stream: list[StrArray]
    energy_wh: list[IntArray]
    rate: list[StrArray]
    amount_fen: list[IntArray]
    cause: list[StrArray]
    fees_fen: dict[str, int]

    @staticmethod
    def empty() -> LineColumns:
        """No lines yet."""
        return LineColumns([], [], [], [], [], [], [], [], [], {})

    def add(
        self,
        *,
        session_id: StrArray,
        kind: StrArray,
        payer: StrArray,
        payee: StrArray,
        stream: str,
        energy_wh: IntArray,
        rate: StrArray,
        amount_fen: IntArray,
        cause: StrArray,
    ) -> None:
        """Append lines; those with a zero amount are left out."""
        keep = np.asarray(amount_fen) != 0
        n = int(keep.sum())
        if n == 0:
            return
        self.session_id.append(np.asarray(session_id)[keep].astype(str))
        self.kind.append(np.asarray(kind)[keep].astype(str))
        self.payer.append(np.asarray(payer)[keep].astype(str))
        self.payee.append(np.asarray(payee)[keep].astype(str))
        self.stream.append(np.full(n, stream))
        self.energy_wh.append(np.asarray(energy_wh, dtype=np.int64)[keep])
        self.rate.append(np.asarray(rate)[keep].astype(str))
        self.amount_fen.append(np.asarray(amount_fen, dtype=np.int64)[keep])
        self.cause.append(np.asarray(cause)[keep].astype(str))

    def column(self, name: str) -> npt.NDArray[np.generic]:
        """One column, all chunks joined."""
        chunks = getattr(self, name)
        if not chunks:
            return np.zeros(0, dtype=np.int64 if name in ("energy_wh", "amount_fen") else str)
        return np.concatenate(chunks)


def add_shared_revenue(
    lines: LineColumns,
    *,
    stream: str,
    session_id: StrArray,
    kind: StrArray,
    owner: StrArray,
    operator: StrArray,
    quantity: IntArray,
    rate: StrArray,
    revenue_fen: IntArray,
    share_index: IntArray,
    table: Sequence[Shares],
    cause: StrArray,
) -> None:
    """The grid pays the aggregator ``revenue_fen``; the aggregator pays owner and operator
    their shares (:func:`split_fen`); the aggregator's own share stays with it."""
    if session_id.shape[0] == 0:
        return
    lines.add(
        session_id=session_id,
        kind=kind,
        payer=np.full(session_id.shape[0], "grid"),
        payee=np.full(session_id.shape[0], "aggregator"),
        stream=stream,
        energy_wh=quantity,
        rate=rate,
        amount_fen=revenue_fen,
        cause=cause,
    )
    parts = split_fen(revenue_fen, share_index, table)
    lines.fees_fen[stream] = lines.fees_fen.get(stream, 0) + int(parts[:, 2].sum())
    shares_text = np.array([f"{s.owner}% / {s.operator}%" for s in table], dtype=str)[share_index]
    for column, payee, who in ((0, owner, "owner"), (1, operator, "operator")):
        lines.add(
            session_id=session_id,
            kind=np.char.add(kind, f":{who}-share"),
            payer=np.full(session_id.shape[0], "aggregator"),
            payee=payee,
            stream=stream,
            energy_wh=quantity,
            rate=rate,
            amount_fen=parts[:, column],
            cause=np.char.add(
                np.char.add(np.char.add(f"{who} share of ", cause), " (owner / operator: "),
                np.char.add(shares_text, ")"),
            ),
        )


def rate_nano_of(text: StrArray) -> IntArray:
    """Decimal rate texts (CNY per unit) as integer nano-CNY, exactly."""
    unique, index = np.unique(np.asarray(text).astype(str), return_inverse=True)
    nano = price_nano([Decimal(u) for u in unique.tolist()])
    return np.asarray(nano[index.reshape(-1)], dtype=np.int64)


__all__ = [
    "LineColumns",
    "add_shared_revenue",
    "amount_fen",
    "cny_text",
    "kwh_text",
    "rate_nano_of",
    "scaled_rate_nano",
    "split_fen",
]
