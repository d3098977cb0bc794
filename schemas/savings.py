"""Savings products and the accounts enrolled in them: API bodies and views."""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_UP, Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.interest import Compounding, Method, PostingPeriod
from schemas.types import AccountNumber, Amount, CurrencyCode, Day, LongName, ProductCode

RoundingMode = Literal["ROUND_HALF_EVEN", "ROUND_HALF_UP", "ROUND_DOWN", "ROUND_UP"]
ROUNDING_MODES: tuple[str, ...] = (ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_DOWN, ROUND_UP)
PRODUCT_ADMIN_ROLES = ("finance",)
ENROLLING_ROLES = ("teller", "branch_manager")
# Rates are fractions (0.045 = 4.5 % a year), exact to 9 decimals.
Rate = Decimal


class TierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_balance: Amount = Field(description='major units, e.g. "10000.00"')
    annual_rate: Rate = Field(ge=0, le=1, max_digits=12, decimal_places=9)


class ProductCreate(BaseModel):
    """A savings product. Rates are fractions: 0.045 is 4.5 % a year."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    code: ProductCode
    name: LongName
    currency: CurrencyCode
    annual_rate: Rate = Field(ge=0, le=1, max_digits=12, decimal_places=9)
    tiers: list[TierIn] = Field(default_factory=list, max_length=20)
    calculation: Method = "daily_balance"
    compounding: Compounding = "monthly"
    posting: PostingPeriod = "monthly"
    days_in_year: Literal[360, 365] = 365
    min_balance: Amount = Field(default="0", description="major units")
    withholding_tax_rate: Rate = Field(
        default=Decimal(0), ge=0, lt=1, max_digits=12, decimal_places=9
    )
    rounding: RoundingMode = "ROUND_HALF_EVEN"

    @model_validator(mode="after")
    def _tiers_distinct(self) -> ProductCreate:
        minimums = [t.min_balance for t in self.tiers]
        if len(set(minimums)) != len(minimums):
            raise ValueError("two tiers start at the same balance")
        return self


class TierView(BaseModel):
    min_balance: str
    annual_rate: Decimal


class ProductView(BaseModel):
    id: int
    code: str
    name: str
    currency: str
    annual_rate: Decimal
    tiers: list[TierView]
    calculation: str
    compounding: str
    posting: str
    days_in_year: int
    min_balance: str
    withholding_tax_rate: Decimal
    rounding: str
    accounts: int = Field(description="savings accounts enrolled")
    created_at: datetime


class EnrollRequest(BaseModel):
    """Put an existing savings account on this product from `opened_on` (default: its opening)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    account: AccountNumber
    opened_on: Day | None = None


class EnrollmentView(BaseModel):
    account: str
    product: str
    opened_on: date
