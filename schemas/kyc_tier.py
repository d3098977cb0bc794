"""The basic KYC tier: what a member who is not KYC-verified may take out and borrow.

Limits are per currency, in major units (an institution keeping KES and USD sets each; one
figure for every currency would need an exchange rate). A currency without a limit lets an
unverified member take out and borrow nothing in it: a forgotten setting fails closed.

Withdrawals and transfers to someone else count cumulatively per value date, not one movement at
a time: a per-movement cap is beaten by splitting one large withdrawal into many small ones
(structuring), which is exactly what tiered KYC exists to stop. Held movements waiting for a
supervisor count as soon as they are held; a refused, expired or reversed one does not.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from domain.money import floor_minor


class BasicTierLimit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    withdrawals_per_day: Decimal = Field(
        ge=0, description="withdrawals and transfers out, in all, per value date (major units)"
    )
    loan_principal: Decimal = Field(ge=0, description="the largest principal (major units)")


def minor_units(limit: Decimal, scale: int) -> int:
    """A limit in the currency's minor units. Rounded down, exactly (domain.money.floor_minor,
    not Decimal arithmetic at 28 digits): a limit set finer than the currency can count never
    lets more through than it says (it is a threshold, not money posted)."""
    return floor_minor(limit, scale)


DEFAULT_BASIC_TIER_LIMITS = {
    "USD": BasicTierLimit(withdrawals_per_day=Decimal("1500.00"), loan_principal=Decimal("1000.00"))
}
