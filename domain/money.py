"""Conversion between decimal strings in major units and integer minor units.

Amounts live as integers in the currency's minor unit; JSON carries them as decimal strings in
major units. Conversion never rounds: an amount with more decimals than the currency's scale is an
error, because silently rounding a teller's input would move money nobody asked to move.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MAX_MINOR = 2**63 - 1


class AmountError(ValueError):
    """An amount that is not a valid positive money value for its currency."""


def to_minor(amount: str | Decimal, scale: int, *, allow_zero: bool = False) -> int:
    """Parse a major-unit decimal ("305.00") into minor units (30500 at scale 2), exactly."""
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount).strip())
    except InvalidOperation as exc:
        raise AmountError(f"{amount!r} is not a decimal number") from exc
    if not value.is_finite():
        raise AmountError(f"{amount!r} is not a finite amount")
    minor = value.scaleb(scale)
    if minor != minor.to_integral_value():
        raise AmountError(f"{amount} has more than {scale} decimal places")
    result = int(minor)
    if result < 0 or (result == 0 and not allow_zero):
        raise AmountError(f"{amount} must be greater than zero")
    if result > MAX_MINOR:
        raise AmountError(f"{amount} is too large")
    return result


def to_major(minor: int, scale: int) -> str:
    """Format minor units as a major-unit decimal string with exactly `scale` decimals."""
    if scale == 0:
        return str(minor)
    return f"{Decimal(minor).scaleb(-scale):.{scale}f}"
