"""Repayment-schedule preview: the request `POST /v1/loans/schedule-preview` and `bankflow loans
schedule` take, and the schedule both print (amounts as decimal strings in major units).

The field names are the CLI's flags with underscores, so a script can move between the two.
"""

from __future__ import annotations

import decimal
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.money import AmountError, to_major, to_minor
from domain.schedule import (
    MAX_REPAYMENTS,
    Amortization,
    DaysInMonth,
    DaysInYear,
    Frequency,
    InterestMethod,
    InterestPeriod,
    Schedule,
    ScheduleError,
    ScheduleTerms,
)
from schemas.types import Amount, CurrencyCode, Day, Rate

RoundingName = Literal["HALF_EVEN", "HALF_UP", "HALF_DOWN", "UP", "DOWN", "CEILING", "FLOOR"]
MAX_GRACE = MAX_REPAYMENTS - 1


class SchedulePreviewRequest(BaseModel):
    """A loan's terms. Only principal is required; the rest default to a monthly declining-balance
    loan in equal installments, disbursed today, first repayment one period later."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    principal: Amount = Field(description='major units, e.g. "5000.00"')
    currency: CurrencyCode = "USD"
    annual_rate: Rate = Field(default=Decimal(12), description="nominal, percent per year")
    repayments: int = Field(default=12, ge=1, le=MAX_REPAYMENTS)
    every: int = Field(default=1, ge=1, le=366, description="repay every N frequency units")
    frequency: Frequency = "months"
    interest_method: InterestMethod = "declining_balance"
    amortization: Amortization = "equal_installments"
    interest_period: InterestPeriod = "same_as_repayment"
    days_in_year: DaysInYear = "actual"
    days_in_month: DaysInMonth = "actual"
    disbursed_on: Day | None = Field(default=None, description="default today")
    first_repayment_on: Day | None = Field(
        default=None, description="default one period after disbursement"
    )
    installment_multiple: Amount = Field(
        default="0", description="round installments to this (major units; 0 none)"
    )
    rounding: RoundingName = "HALF_EVEN"
    grace_principal: int = Field(default=0, ge=0, le=MAX_GRACE)
    grace_interest_payment: int = Field(default=0, ge=0, le=MAX_GRACE)
    grace_interest_charged: int = Field(default=0, ge=0, le=MAX_GRACE)

    def terms(self, scale: int, today: date) -> ScheduleTerms:
        """The calculator's input; ScheduleError for an amount the currency cannot carry."""
        try:
            principal_minor = to_minor(self.principal, scale)
        except AmountError as exc:
            raise ScheduleError(f"principal: {exc}") from exc
        try:
            multiple = Decimal(self.installment_multiple)
        except InvalidOperation as exc:
            raise ScheduleError("installment multiple must be a decimal number") from exc
        return ScheduleTerms(
            principal_minor=principal_minor,
            annual_rate=self.annual_rate,
            repayments=self.repayments,
            disbursed_on=self.disbursed_on or today,
            scale=scale,
            every=self.every,
            frequency=self.frequency,
            interest_method=self.interest_method,
            amortization=self.amortization,
            interest_period=self.interest_period,
            days_in_year=self.days_in_year,
            days_in_month=self.days_in_month,
            first_repayment_on=self.first_repayment_on,
            installment_multiple=multiple,
            rounding=getattr(decimal, f"ROUND_{self.rounding}"),
            grace_principal=self.grace_principal,
            grace_interest_payment=self.grace_interest_payment,
            grace_interest_charged=self.grace_interest_charged,
        )


class InstallmentView(BaseModel):
    number: int
    due_date: date
    principal: str
    interest: str
    total: str
    balance: str = Field(description="principal outstanding after this installment")


class ScheduleView(BaseModel):
    currency: str
    installments: list[InstallmentView]
    total_principal: str
    total_interest: str
    total_due: str

    @classmethod
    def of(cls, schedule: Schedule, currency: str) -> ScheduleView:
        s = schedule.scale
        return cls(
            currency=currency,
            installments=[
                InstallmentView(
                    number=i.number,
                    due_date=i.due_date,
                    principal=to_major(i.principal_minor, s),
                    interest=to_major(i.interest_minor, s),
                    total=to_major(i.total_minor, s),
                    balance=to_major(i.balance_minor, s),
                )
                for i in schedule.installments
            ],
            total_principal=to_major(schedule.total_principal_minor, s),
            total_interest=to_major(schedule.total_interest_minor, s),
            total_due=to_major(schedule.total_due_minor, s),
        )
