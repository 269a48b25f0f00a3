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

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from v2ghub.settlement.contracts import Shares
from v2ghub.settlement.money import amount_fen, price_nano

IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]
Text = StrArray | Callable[[], StrArray]
"""A text column of lines, or what makes it: lines kept without their text (only totals
wanted) never make it, and their text is most of the cost at a million sessions."""

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


@dataclass(frozen=True)
class Parties:
    """Party ids of lines as codes into their names: a million lines naming a million
    owners hold one string per owner, and totals group them by integer code. Every id is
    ``prefix`` followed by its name (``owner:`` and a session id), so the ids of a million
    owners need never be written out when only totals are wanted."""

    names: StrArray
    index: IntArray
    prefix: str = ""

    @staticmethod
    def of(ids: PartyIds) -> Parties:
        """Parties from ids given either way (text is encoded once, by hashing)."""
        if isinstance(ids, Parties):
            return ids
        names, index = sorted_codes(np.asarray(ids))
        return Parties(names, index)

    @staticmethod
    def same(name: str, n: int) -> Parties:
        """``n`` lines with the same party."""
        return Parties(np.array([name]), np.zeros(n, dtype=np.int64))

    @staticmethod
    def each(names: StrArray, *, prefix: str = "") -> Parties:
        """One line per name."""
        return Parties(np.asarray(names), np.arange(len(names), dtype=np.int64), prefix)

    def __len__(self) -> int:
        return int(self.index.size)

    def __getitem__(self, rows: npt.NDArray[np.bool_] | IntArray) -> Parties:
        return Parties(self.names, self.index[rows], self.prefix)

    def text(self) -> StrArray:
        """Each line's party id."""
        return _prefixed(self.prefix, self.names[self.index])

    def ids(self) -> StrArray:
        """The ids of ``names``."""
        return _prefixed(self.prefix, self.names)


def _prefixed(prefix: str, names: StrArray) -> StrArray:
    return np.asarray(np.char.add(prefix, names) if prefix else names)


PartyIds = StrArray | Parties
"""Party ids, as text per line or as :class:`Parties`."""


@dataclass(frozen=True)
class PartyVocabulary:
    """Sorted distinct party ids, coded ``0..size-1`` in their order, without writing out
    the largest group of them: ``block`` holds that group's names (sorted, distinct; each
    id is ``prefix`` + name) and ``block_code`` their codes; ``others`` holds every other id
    in full (sorted) and ``others_code`` theirs."""

    prefix: str
    block: StrArray
    block_code: IntArray
    others: StrArray
    others_code: IntArray

    @staticmethod
    def of_text(ids: StrArray) -> PartyVocabulary:
        """Ids already sorted and distinct."""
        names = np.asarray(ids)
        return PartyVocabulary(
            "", names, np.arange(names.size, dtype=np.int64), names[:0], np.zeros(0, np.int64)
        )

    @property
    def size(self) -> int:
        return int(self.block.size + self.others.size)

    def _block_position(self, party_id: str) -> int:
        """Where ``party_id`` falls among the block's ids (bisection, left side). An id that
        does not start with the prefix falls before or after them all, as it compares with
        the prefix."""
        if party_id.startswith(self.prefix):
            return int(np.searchsorted(self.block, party_id[len(self.prefix) :]))
        return 0 if party_id < self.prefix else int(self.block.size)

    def code(self, party_id: str) -> int:
        """A party's code, -1 when it is not here."""
        at = self._block_position(party_id)
        if at < self.block.size and self.prefix + str(self.block[at]) == party_id:
            return int(self.block_code[at])
        at = int(np.searchsorted(self.others, party_id))
        if at < self.others.size and self.others[at] == party_id:
            return int(self.others_code[at])
        return -1

    def codes_from(self, low: str, high: str) -> IntArray:
        """The codes of the ids from ``low`` (included) to ``high`` (excluded)."""
        block = self.block_code[self._block_position(low) : self._block_position(high)]
        lower, upper = np.searchsorted(self.others, [low, high])
        return np.concatenate((block, self.others_code[lower:upper]))

    def text(self) -> StrArray:
        """Every id, in code order."""
        ids = _prefixed(self.prefix, self.block)
        out = np.empty(self.size, dtype=np.result_type(ids, self.others))
        out[self.block_code] = ids
        out[self.others_code] = self.others
        return out


def joined_parties(*columns: Sequence[Parties]) -> tuple[PartyVocabulary, list[IntArray]]:
    """Party columns (each a list of chunks) in one code space: the sorted distinct ids of
    them all, and each column's codes into them. Costs in names, not lines."""
    chunks = [chunk for column in columns for chunk in column]
    if not chunks:
        empty = PartyVocabulary.of_text(np.zeros(0, dtype=str))
        return empty, [np.zeros(0, dtype=np.int64) for _ in columns]
    # Chunks often share one array of names (every owner's lines name the same owners):
    # each array is encoded once.
    vocabularies = list({(id(chunk.names), chunk.prefix): chunk for chunk in chunks}.values())
    distinct, code = _union(vocabularies)
    offsets = np.cumsum([0] + [chunk.names.size for chunk in vocabularies])
    offset_of = {
        (id(chunk.names), chunk.prefix): offsets[k] for k, chunk in enumerate(vocabularies)
    }
    coded = iter(code[offset_of[(id(chunk.names), chunk.prefix)] + chunk.index] for chunk in chunks)
    out = []
    for column in columns:
        parts = [next(coded) for _ in column]
        out.append(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))
    return distinct, out


def _union(vocabularies: list[Parties]) -> tuple[PartyVocabulary, IntArray]:
    """The sorted distinct ids of the ``vocabularies``' names, and each name's code (the
    vocabularies concatenated). When the largest's names are already sorted and distinct
    (the owners of a meter's sessions), they stay the vocabulary's block and the few other
    ids are placed among them by bisection: a million ids are neither encoded again nor
    written out."""
    largest = max(range(len(vocabularies)), key=lambda k: vocabularies[k].names.size)
    big, prefix = vocabularies[largest].names, vocabularies[largest].prefix
    if big.size < 2 or not bool(np.all(big[1:] > big[:-1])):
        distinct, code = sorted_codes(np.concatenate([v.ids() for v in vocabularies]))
        return PartyVocabulary.of_text(distinct), code
    others = [v.ids() for k, v in enumerate(vocabularies) if k != largest]
    small = np.unique(np.concatenate(others)) if others else np.zeros(0, dtype=str)
    at = _block_positions(big, prefix, small)
    found = np.minimum(at, big.size - 1)
    known = (at < big.size) & (np.char.add(prefix, big[found]) == small)
    inserted = at[~known]  # where the new ids go, in the largest's positions (sorted)
    # The largest's names move up by the new ids placed at or before them; a new id's code
    # is its position there plus the new ids before it.
    big_code = np.arange(big.size) + np.searchsorted(inserted, np.arange(big.size), side="right")
    new = small[~known]
    new_code = inserted + np.arange(new.size)
    vocabulary = PartyVocabulary(prefix, big, big_code, new, new_code)
    small_code = np.where(known, big_code[found], 0)
    small_code[~known] = new_code
    codes = [
        big_code if k == largest else small_code[np.searchsorted(small, v.ids())]
        for k, v in enumerate(vocabularies)
    ]
    return vocabulary, np.concatenate(codes).astype(np.int64)


def _block_positions(names: StrArray, prefix: str, ids: StrArray) -> IntArray:
    """Where each of ``ids`` falls among the ids ``prefix + names`` (sorted; bisection,
    left side): an id that does not start with the prefix falls before or after them all."""
    ids = np.asarray(ids)
    if not prefix:
        return np.asarray(np.searchsorted(names, ids), dtype=np.int64)
    at = np.where(ids < prefix, 0, names.size).astype(np.int64)
    starts = np.flatnonzero(np.char.startswith(ids, prefix))
    if starts.size:
        # Each id less its prefix: its characters after the prefix's, as text again.
        width = ids.dtype.itemsize // 4
        chars = np.ascontiguousarray(ids[starts]).view(np.uint32).reshape(starts.size, width)
        rest = np.zeros((starts.size, max(width - len(prefix), 1)), dtype=np.uint32)
        rest[:, : width - len(prefix)] = chars[:, len(prefix) :]
        at[starts] = np.searchsorted(names, rest.view(f"<U{rest.shape[1]}").reshape(-1))
    return at


@dataclass
class LineColumns:
    """Ledger lines being built, as growing lists of column chunks.

    ``fees_fen`` is, per stream, the aggregator's own share of the revenues it received
    (computed with the other shares, so ``revenue == payouts + fees`` is a real check).
    Lines made with ``texts=False`` keep no ``session_id``, ``kind``, ``rate`` or ``cause``
    (their :data:`Text` makers are never called): enough for totals and balances, not for
    a ledger or statements. Payers and payees are kept as :class:`Parties`.
    """

    session_id: list[StrArray]
    kind: list[StrArray]
    payer: list[Parties]
    payee: list[Parties]
    stream: list[StrArray]
    energy_wh: list[IntArray]
    rate: list[StrArray]
    amount_fen: list[IntArray]
    cause: list[StrArray]
    fees_fen: dict[str, int]
    texts: bool = field(default=True)

    @staticmethod
    def empty(*, texts: bool = True) -> LineColumns:
        """No lines yet."""
        return LineColumns([], [], [], [], [], [], [], [], [], {}, texts)

    def add(
        self,
        *,
        session_id: Text,
        kind: Text,
        payer: PartyIds,
        payee: PartyIds,
        stream: str,
        energy_wh: IntArray,
        rate: Text,
        amount_fen: IntArray,
        cause: Text,
    ) -> None:
        """Append lines; those with a zero amount are left out."""
        keep = np.asarray(amount_fen) != 0
        n = int(keep.sum())
        if n == 0:
            return
        self.payer.append(Parties.of(payer)[keep])
        self.payee.append(Parties.of(payee)[keep])
        # One name for every line of the chunk: a view, not n copies of the text.
        self.stream.append(np.broadcast_to(np.array(stream), (n,)))
        self.energy_wh.append(np.asarray(energy_wh, dtype=np.int64)[keep])
        self.amount_fen.append(np.asarray(amount_fen, dtype=np.int64)[keep])
        if self.texts:
            self.session_id.append(_kept(session_id, keep))
            self.kind.append(_kept(kind, keep))
            self.rate.append(_kept(rate, keep))
            self.cause.append(_kept(cause, keep))

    def column(self, name: str) -> npt.NDArray[np.generic]:
        """One column, all chunks joined (party ids as text)."""
        if name in ("session_id", "kind", "rate", "cause") and not self.texts:
            raise ValueError(f"these lines were made without their text: no {name!r} column")
        chunks = getattr(self, name)
        if name in ("payer", "payee"):
            chunks = [chunk.text() for chunk in chunks]
        if not chunks:
            return np.zeros(0, dtype=np.int64 if name in ("energy_wh", "amount_fen") else str)
        return np.concatenate(chunks)


def _kept(text: Text, keep: npt.NDArray[np.bool_]) -> StrArray:
    """The kept rows of a text column, made now if it is a maker."""
    values = text() if callable(text) else text
    return np.asarray(values)[keep].astype(str, copy=False)


def add_shared_revenue(
    lines: LineColumns,
    *,
    stream: str,
    session_id: Text,
    kind: Text,
    owner: PartyIds,
    operator: PartyIds,
    quantity: IntArray,
    rate: Text,
    revenue_fen: IntArray,
    share_index: IntArray,
    table: Sequence[Shares],
    cause: Text,
) -> None:
    """The grid pays the aggregator ``revenue_fen``; the aggregator pays owner and operator
    their shares (:func:`split_fen`); the aggregator's own share stays with it."""
    n = len(quantity)
    if n == 0:
        return
    session_text = made_once(session_id)
    kind_text, cause_text, rate_text = made_once(kind), made_once(cause), made_once(rate)
    lines.add(
        session_id=session_text,
        kind=kind_text,
        payer=Parties.same("grid", n),
        payee=Parties.same("aggregator", n),
        stream=stream,
        energy_wh=quantity,
        rate=rate_text,
        amount_fen=revenue_fen,
        cause=cause_text,
    )
    parts = split_fen(revenue_fen, share_index, table)
    lines.fees_fen[stream] = lines.fees_fen.get(stream, 0) + int(parts[:, 2].sum())

    def share_texts(who: str) -> tuple[Text, Text]:
        def share_kind() -> StrArray:
            return np.char.add(kind_text(), f":{who}-share")

        def share_cause() -> StrArray:
            shares = np.array([f"{s.owner}% / {s.operator}%" for s in table], dtype=str)
            return np.char.add(
                np.char.add(np.char.add(f"{who} share of ", cause_text()), " (owner / operator: "),
                np.char.add(shares[share_index], ")"),
            )

        return share_kind, share_cause

    for column, payee, who in ((0, owner, "owner"), (1, operator, "operator")):
        share_kind, share_cause = share_texts(who)
        lines.add(
            session_id=session_text,
            kind=share_kind,
            payer=Parties.same("aggregator", n),
            payee=payee,
            stream=stream,
            energy_wh=quantity,
            rate=rate_text,
            amount_fen=parts[:, column],
            cause=share_cause,
        )


def made_once(text: Text) -> Callable[[], StrArray]:
    """A text maker that makes its column at most once."""
    return functools.cache(text) if callable(text) else lambda: text


def column_text(table: pa.Table, name: str) -> StrArray:
    """A text column of a table as numpy text, each distinct value converted once (a few
    sites, kinds, periods and prices among a million rows)."""
    distinct, codes = sorted_codes(table.column(name))
    return distinct[codes]


def sorted_codes(values: pa.Array | pa.ChunkedArray | StrArray) -> tuple[StrArray, IntArray]:
    """Text values' distinct values, sorted, and each value's index into them: what
    ``np.unique(values, return_inverse=True)`` gives, by hashing instead of sorting every
    value (a few distinct prices or parties among millions of lines)."""
    if not isinstance(values, pa.Array | pa.ChunkedArray):
        text = np.asarray(values).astype(str, copy=False)
        # large_string: a million lines' party ids can pass the 2 GiB a string array holds.
        # Arrow reads numpy's text up to a NUL character: text holding one goes by Python.
        values = pa.array(text.tolist() if _has_inner_nul(text) else text, type=pa.large_string())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()  # dictionary chunks: their dictionaries unified
    distinct, index = _dictionary(values)
    order = np.asarray(pc.sort_indices(distinct), dtype=np.int64)
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    codes = rank[index]
    text = np.asarray(distinct.take(pa.array(order)).to_numpy(zero_copy_only=False)).astype(str)
    return text, codes


def _dictionary(values: pa.Array) -> tuple[pa.Array, IntArray]:
    """Distinct values and each value's index into them. A dictionary array (as Parquet
    text columns of few values are read) is taken as it is, its values never made per
    row; its dictionary may repeat a value or hold one no row uses, so it is made distinct
    and cut to the values used."""
    if not pa.types.is_dictionary(values.type) or values.null_count:
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        encoded = pc.dictionary_encode(values)
        return encoded.dictionary, np.asarray(encoded.indices, dtype=np.int64)
    inner = pc.dictionary_encode(values.dictionary)
    index = np.asarray(inner.indices, dtype=np.int64)[np.asarray(values.indices, dtype=np.int64)]
    used = np.flatnonzero(np.bincount(index, minlength=len(inner.dictionary)))
    if used.size == len(inner.dictionary):
        return inner.dictionary, index
    renumbered = np.zeros(len(inner.dictionary), dtype=np.int64)
    renumbered[used] = np.arange(used.size)
    return inner.dictionary.take(pa.array(used)), renumbered[index]


def _has_inner_nul(text: StrArray) -> bool:
    """Whether a value has a NUL character before its end (numpy pads with NULs)."""
    width = text.dtype.itemsize // 4
    if text.size == 0 or width < 2:
        return False
    chars = np.ascontiguousarray(text).view(np.uint32).reshape(text.size, width)
    return bool(np.any((chars[:, :-1] == 0) & (chars[:, 1:] != 0)))


def rate_nano_of(text: StrArray) -> IntArray:
    """Decimal rate texts (CNY per unit) as integer nano-CNY, exactly."""
    unique, index = np.unique(np.asarray(text).astype(str), return_inverse=True)
    nano = price_nano([Decimal(u) for u in unique.tolist()])
    return np.asarray(nano[index.reshape(-1)], dtype=np.int64)


__all__ = [
    "LineColumns",
    "Parties",
    "PartyIds",
    "PartyVocabulary",
    "Text",
    "add_shared_revenue",
    "amount_fen",
    "cny_text",
    "column_text",
    "joined_parties",
    "kwh_text",
    "made_once",
    "rate_nano_of",
    "scaled_rate_nano",
    "sorted_codes",
    "split_fen",
]
