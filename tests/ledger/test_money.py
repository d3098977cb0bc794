"""Money parsing is exact for any input length and bounded by BIGINT (issue 12, point 1).

The reference is `fractions.Fraction`, which never rounds: an amount parses to minor units only
when it is a whole, positive number of them that fits BIGINT, and then to exactly that number.
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.money import (
    MAX_AMOUNT_LENGTH,
    MAX_MINOR,
    AmountError,
    floor_minor,
    percent_of,
    round_ratio,
    times,
    to_major,
    to_minor,
)
from schemas.kyc_tier import minor_units

# ISO 4217 exponents, and the larger scales an institution may choose at setup.
CURRENCY_SCALES = {"JPY": 0, "KES": 2, "USD": 2, "EUR": 2, "KWD": 3, "BHD": 3, "CLF": 4, "X9": 9}
scales = st.sampled_from(sorted(set(CURRENCY_SCALES.values())))
digits = st.text(alphabet="0123456789", min_size=1, max_size=30)
modes = st.sampled_from(
    [decimal.ROUND_HALF_EVEN, decimal.ROUND_HALF_UP, decimal.ROUND_DOWN, decimal.ROUND_CEILING]
)


@st.composite
def amounts(draw: st.DrawFn) -> str:
    """Decimal strings as callers write them: signs, leading and trailing zeros, long fractions,
    exponents."""
    whole = draw(digits)
    fraction = draw(st.one_of(st.just(""), st.text(alphabet="0123456789", max_size=40)))
    text = whole + (f".{fraction}" if fraction or draw(st.booleans()) else "")
    if draw(st.booleans()):
        text += f"e{draw(st.integers(min_value=-45, max_value=25))}"
    return draw(st.sampled_from(["", "-", "+"])) + text


def expected(text: str, scale: int) -> int | None:
    exact = Fraction(Decimal(text)) * 10**scale
    if exact.denominator != 1 or not 0 < exact.numerator <= MAX_MINOR:
        return None
    return int(exact.numerator)


@settings(max_examples=2000, deadline=None)
@given(text=amounts(), scale=scales)
def test_to_minor_is_exact_or_refuses(text: str, scale: int) -> None:
    want = expected(text, scale) if len(text) <= MAX_AMOUNT_LENGTH else None
    if want is None:
        with pytest.raises(AmountError):
            to_minor(text, scale)
    else:
        assert to_minor(text, scale) == want


@settings(max_examples=500, deadline=None)
@given(
    minor=st.integers(min_value=1, max_value=MAX_MINOR),
    currency=st.sampled_from(sorted(CURRENCY_SCALES)),
)
def test_major_strings_round_trip(minor: int, currency: str) -> None:
    scale = CURRENCY_SCALES[currency]
    major = to_major(minor, scale)
    assert to_minor(major, scale) == minor
    assert Fraction(Decimal(major)) == Fraction(minor, 10**scale)


@pytest.mark.parametrize(
    ("text", "scale"),
    [
        ("1.000000000000000000000000000001", 2),  # the deposit that posted 1.00
        ("1." + "0" * 100 + "1", 9),
        ("92233720368547758.08", 2),  # BIGINT + 1 minor unit
        ("9223372036854775808", 0),
        ("1e999999999", 2),  # refused on digit counts, no power of ten is built
        ("1e-999999999", 2),
        ("1" * (MAX_AMOUNT_LENGTH + 1), 0),
        ("NaN", 2),
        ("-Infinity", 2),
        ("-0.01", 2),
        ("0", 2),
    ],
)
def test_refused_never_rounded(text: str, scale: int) -> None:
    with pytest.raises(AmountError):
        to_minor(text, scale)


def test_the_largest_amounts_are_exact() -> None:
    assert to_minor("92233720368547758.07", 2) == MAX_MINOR
    assert to_minor("9223372036.854775807", 9) == MAX_MINOR
    assert to_minor("1.50", 1) == 15
    assert to_minor("0.0", 2, allow_zero=True) == 0
    assert to_minor("1" + "0" * 17 + "e-17", 0) == 1


@settings(max_examples=1000, deadline=None)
@given(
    minor=st.integers(min_value=0, max_value=MAX_MINOR),
    factor=st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False),
    mode=modes,
)
def test_shares_of_an_amount_are_rounded_once_exactly(
    minor: int, factor: Decimal, mode: str
) -> None:
    assert percent_of(minor, factor, mode) == round_ratio(
        Fraction(minor) * Fraction(factor) / 100, mode
    )
    assert times(minor, factor, mode) == round_ratio(Fraction(minor) * Fraction(factor), mode)


def test_a_product_beyond_28_digits_is_not_rounded_first() -> None:
    """19 digits of minor units times 10 digits of factor: Decimal's default context would round
    the product to 28 digits before the rounding to a whole unit."""
    assert times(MAX_MINOR, Decimal("999.999999"), decimal.ROUND_DOWN) == (
        MAX_MINOR * 999999999 // 10**6
    )


@settings(max_examples=500, deadline=None)
@given(
    threshold=st.decimals(min_value=0, max_value=10**12, places=4, allow_nan=False),
    scale=scales,
    amount=st.integers(min_value=0, max_value=10**17),
)
def test_a_threshold_compares_exactly_in_minor_units(
    threshold: Decimal, scale: int, amount: int
) -> None:
    assert (amount > floor_minor(threshold, scale)) == (
        Fraction(amount, 10**scale) > Fraction(threshold)
    )


def test_a_basic_tier_limit_finer_than_28_digits_rounds_down_exactly() -> None:
    """Decimal's default context rounded 1500.0099...9 (31 digits) up to 1500.01 first: one
    minor unit more than the limit allows."""
    assert minor_units(Decimal("1500.009999999999999999999999999"), 2) == 150000
    assert minor_units(Decimal("1500.01"), 2) == 150001
    assert minor_units(Decimal("1e40"), 2) == MAX_MINOR  # beyond BIGINT: no limit at all
