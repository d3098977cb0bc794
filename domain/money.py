"""Conversion between decimal strings in major units and integer minor units.

Amounts live as integers in the currency's minor unit; JSON carries them as decimal strings in
major units. Conversion never rounds: an amount with more decimals than the currency's scale is an
error, because silently rounding a teller's input would move money nobody asked to move.

The conversion is integer arithmetic on the decimal's digits and exponent, never `Decimal`
arithmetic: that runs at the context's precision (28 digits by default) and would round
"1.000000000000000000000000000001" to 1.00 before any check could see the extra digits.
"""

from __future__ import annotations

import decimal
from decimal import Decimal, InvalidOperation
from fractions import Fraction

# BIGINT, the type of every *_minor column.
MAX_MINOR = 2**63 - 1
MAX_MINOR_DIGITS = len(str(MAX_MINOR))
# A major-unit string longer than this is not an amount anybody typed: "9223372036854775807"
# at scale 9 with its point and sign fits easily.
MAX_AMOUNT_LENGTH = 40


class AmountError(ValueError):
    """An amount that is not a valid positive money value for its currency."""


def _parse(amount: str | Decimal) -> Decimal:
    if isinstance(amount, Decimal):
        return amount
    text = str(amount).strip()
    if len(text) > MAX_AMOUNT_LENGTH:
        raise AmountError(f"an amount has at most {MAX_AMOUNT_LENGTH} characters")
    try:
        return Decimal(text)  # exact: construction from a string never rounds
    except InvalidOperation as exc:
        raise AmountError(f"{text!r} is not a decimal number") from exc


def to_minor(amount: str | Decimal, scale: int, *, allow_zero: bool = False) -> int:
    """Parse a major-unit decimal ("305.00") into minor units (30500 at scale 2), exactly.

    AmountError for anything that is not a finite decimal, has more than `scale` decimals (after
    trailing zeros: "1.50" is fine at scale 1), is negative or zero (unless `allow_zero`), or does
    not fit BIGINT minor units.
    """
    value = _parse(amount)
    if not value.is_finite():
        raise AmountError(f"{amount!r} is not a finite amount")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    significant = "".join(map(str, digits)).lstrip("0")
    stripped = significant.rstrip("0")
    if not stripped:
        minor = 0
    else:
        # The value is int(stripped) * 10**shift minor units; shift < 0 means digits below the
        # currency's smallest unit. Bounds are checked on digit counts, before any power of ten
        # is built, so "1e999999999" costs nothing.
        shift = exponent + len(significant) - len(stripped) + scale
        if shift < 0:
            raise AmountError(f"{amount} has more than {scale} decimal places")
        if len(stripped) + shift > MAX_MINOR_DIGITS:
            raise AmountError(f"{amount} is too large")
        minor = int(stripped) * 10**shift
    if sign and minor:
        raise AmountError(f"{amount} must be greater than zero")
    if minor == 0 and not allow_zero:
        raise AmountError(f"{amount} must be greater than zero")
    if minor > MAX_MINOR:
        raise AmountError(f"{amount} is too large")
    return minor


def floor_minor(amount: Decimal, scale: int) -> int:
    """The largest whole number of minor units not above `amount` (a threshold such as "500.005"
    at scale 2 is 500.00 < x for every amount x above it): exact, for comparisons only."""
    if not amount.is_finite():
        raise AmountError(f"{amount!r} is not a finite amount")
    return min(round_ratio(Fraction(amount) * 10**scale, decimal.ROUND_FLOOR), MAX_MINOR)


def to_major(minor: int, scale: int) -> str:
    """Format minor units as a major-unit decimal string with exactly `scale` decimals."""
    if scale == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, part = divmod(abs(minor), 10**scale)
    return f"{sign}{whole}.{part:0{scale}d}"


def round_ratio(value: Fraction, mode: str) -> int:
    """`value` rounded to an integer with a decimal rounding mode, exactly (no float, no
    intermediate decimal digits that could round twice)."""
    floor, rest = divmod(value.numerator, value.denominator)
    if rest == 0:
        return floor
    ceil, positive = floor + 1, value > 0
    twice = 2 * rest
    if mode == decimal.ROUND_FLOOR:
        return floor
    if mode == decimal.ROUND_CEILING:
        return ceil
    if mode == decimal.ROUND_DOWN:
        return floor if positive else ceil
    if mode == decimal.ROUND_UP:
        return ceil if positive else floor
    if twice != value.denominator:
        return floor if twice < value.denominator else ceil
    if mode == decimal.ROUND_HALF_UP:
        return ceil if positive else floor
    if mode == decimal.ROUND_HALF_DOWN:
        return floor if positive else ceil
    return floor if floor % 2 == 0 else ceil  # ROUND_HALF_EVEN


def percent_of(minor: int, pct: Decimal, rounding: str) -> int:
    """`pct` percent of `minor`, rounded once to a whole minor unit with `rounding`."""
    return round_ratio(Fraction(minor) * Fraction(pct) / 100, rounding)


def times(minor: int, factor: Decimal, rounding: str) -> int:
    """`minor` x `factor`, rounded once to a whole minor unit with `rounding`. Exact: `Decimal`
    arithmetic would first round the product to its context's 28 digits."""
    return round_ratio(Fraction(minor) * Fraction(factor), rounding)
