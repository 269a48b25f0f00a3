"""Exact money: integer Wh, Decimal prices, one rounding to the fen per bill line."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2ghub.settlement.money import (
    bills_fen,
    energy_wh,
    fen_to_cny,
    price_nano,
    round_fen,
    row_sums,
)


def test_meter_rounds_half_away_from_zero() -> None:
    assert energy_wh(np.array([0.0005, 0.0004999, 12.3455, -0.0005])).tolist() == [1, 0, 12346, -1]


def test_hand_worked_bill() -> None:
    # Each line rounded to the fen: 12.345 kWh at 0.247 = 3.049215 -> 3.05; 3 kWh at
    # 1.105 = 3.315 -> 3.32; 2 kWh discharged at 0.77 = 1.54. Bill 3.05 + 3.32 - 1.54 = 4.83.
    bill = bills_fen(
        import_wh=np.array([[12_345, 3_000]], dtype=np.int64),
        export_wh=np.array([[0, 2_000]], dtype=np.int64),
        import_price_cny_per_kwh=[Decimal("0.247"), Decimal("1.105")],
        export_price_cny_per_kwh=[Decimal("0.17214"), Decimal("0.77")],
    )
    assert bill.tolist() == [483]
    assert fen_to_cny(int(bill[0])) == Decimal("4.83")


def test_half_fen_rounds_away_from_zero() -> None:
    prices = [Decimal("0.125")]
    charge = bills_fen(
        import_wh=np.array([[1000]]),
        export_wh=np.array([[0]]),
        import_price_cny_per_kwh=prices,
        export_price_cny_per_kwh=prices,
    )
    paid = bills_fen(
        import_wh=np.array([[0]]),
        export_wh=np.array([[1000]]),
        import_price_cny_per_kwh=prices,
        export_price_cny_per_kwh=prices,
    )
    assert charge.tolist() == [13]
    assert paid.tolist() == [-13]
    assert round_fen(Decimal("0.125")) == Decimal("0.13")


def test_price_with_too_many_decimals_is_refused() -> None:
    with pytest.raises(ValueError, match=r"price 0.1234567891 CNY/kWh has more than 9 decimals"):
        price_nano([Decimal("0.1234567891")])


def test_overflowing_bill_is_refused() -> None:
    with pytest.raises(ValueError, match="too large to bill exactly"):
        bills_fen(
            import_wh=np.array([[10**12]]),
            export_wh=np.array([[0]]),
            import_price_cny_per_kwh=[Decimal(5)],
            export_price_cny_per_kwh=[Decimal(1)],
        )


prices = st.decimals(min_value=0, max_value=5, places=6)


@given(
    st.lists(st.tuples(st.integers(0, 500_000), st.integers(0, 500_000)), min_size=1, max_size=4),
    st.data(),
)
def test_vectorised_bill_equals_decimal_arithmetic(
    energies: list[tuple[int, int]], data: st.DataObject
) -> None:
    n_levels = len(energies)
    import_prices = [data.draw(prices) for _ in range(n_levels)]
    export_prices = [data.draw(prices) for _ in range(n_levels)]
    imports = np.array([[e[0] for e in energies]], dtype=np.int64)
    exports = np.array([[e[1] for e in energies]], dtype=np.int64)

    def line(energy: int, price: Decimal) -> Decimal:
        return (Decimal(energy) * price / 1000).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    rounded = sum(
        (
            line(i, p) - line(x, q)
            for (i, x), p, q in zip(energies, import_prices, export_prices, strict=True)
        ),
        Decimal(0),
    )
    bill = bills_fen(
        import_wh=imports,
        export_wh=exports,
        import_price_cny_per_kwh=import_prices,
        export_price_cny_per_kwh=export_prices,
    )
    assert fen_to_cny(int(bill[0])) == rounded


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=50))
def test_meter_reading_is_the_half_away_rounding_of_the_kwh_times_1000(kwh: list[float]) -> None:
    energy_kwh = np.array(kwh)
    by_definition = np.sign(energy_kwh) * np.floor(np.abs(energy_kwh) * 1000 + 0.5)
    assert energy_wh(energy_kwh).tolist() == by_definition.astype(np.int64).tolist()


@given(st.lists(st.lists(st.integers(-(2**40), 2**40), min_size=3, max_size=3), max_size=20))
def test_row_sums_add_each_rows_levels(lines: list[list[int]]) -> None:
    array = np.array(lines, dtype=np.int64).reshape(len(lines), 3)
    assert row_sums(array).tolist() == [sum(row) for row in lines]
