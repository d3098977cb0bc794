"""Loan products: what the API accepts, what it shows, and the snapshot a LoanApproval carries.

A product is configured once (`POST /v1/loan-products`) and copied into every application at
submission (`ProductSnapshot`), so a later change to the product never changes the rules of an
application already in flight.
"""

from __future__ import annotations

import decimal
from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.schedule import (
    Amortization,
    DaysInMonth,
    DaysInYear,
    Frequency,
    InterestMethod,
    ScheduleTerms,
)
from domain.schedule import InterestPeriod as InterestCalculationPeriod
from schemas.types import Amount, CurrencyCode, Day, LongName, Multiple, Percent, ProductCode, Rate

# Roles that can sit on an approval level (the workflow checks decisions against them).
ApproverRole = Literal[
    "loan_officer", "branch_manager", "credit_committee", "compliance_officer", "finance"
]
RoundingMode = Literal["HALF_EVEN", "HALF_UP", "HALF_DOWN", "UP", "DOWN", "CEILING", "FLOOR"]
FeeKind = Literal["flat", "percent"]
# cash: interest and penalties are income when paid; accrual: the daily loan job books them as
# income (against receivables) as they are earned, and a repayment settles the receivable.
Accounting = Literal["cash", "accrual"]

# Who escalation hands a level to when a product names no `escalate_to`.
DEFAULT_ESCALATION: dict[str, str] = {
    "loan_officer": "branch_manager",
    "branch_manager": "credit_committee",
}


class ApprovalLevel(BaseModel):
    """One level of a tier: `quorum` distinct staff holding `role` must approve."""

    model_config = ConfigDict(extra="forbid")
    role: ApproverRole
    quorum: int = Field(default=1, ge=1, le=15)
    escalate_to: ApproverRole | None = Field(
        default=None, description="who may also decide after the escalation time (default chain)"
    )


class ApprovalTierIn(BaseModel):
    """Applications up to `up_to` (major units; null = no limit) go through `levels` in order."""

    model_config = ConfigDict(extra="forbid")
    up_to: Amount | None = None
    levels: list[ApprovalLevel] = Field(min_length=1, max_length=6)


class ApprovalTier(BaseModel):
    """A tier as stored and carried by the workflow: the bound in minor units."""

    up_to_minor: int | None
    levels: list[ApprovalLevel]


class DisbursementFee(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: FeeKind
    value: Amount = Field(description="flat: major units; percent: of the principal")


class GuaranteeRules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_guaranteed_by_others_pct: Percent = Field(
        default=Decimal(0), description="share of the principal other members guarantee"
    )
    own_savings_pct: Percent = Field(
        default=Decimal(0), description="share of the principal the applicant holds"
    )


class EligibilityRules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    require_kyc_verified: bool = True
    min_membership_days: int = Field(default=0, ge=0, le=36500)
    max_savings_multiple: Multiple | None = Field(
        default=None, description="principal at most K times the member's savings"
    )
    no_loan_in_arrears: bool = True


class ScheduleRules(BaseModel):
    """The repayment terms a product fixes (everything but principal, count and dates)."""

    model_config = ConfigDict(extra="forbid")
    annual_interest_rate: Rate = Field(description="nominal, percent per year")
    repayment_every: int = Field(default=1, ge=1, le=366)
    repayment_frequency: Frequency = "months"
    interest_method: InterestMethod = "declining_balance"
    amortization: Amortization = "equal_installments"
    interest_calculation_period: InterestCalculationPeriod = "same_as_repayment"
    days_in_year: DaysInYear = "actual"
    days_in_month: DaysInMonth = "actual"
    installment_multiple: Amount = Field(default="0", description="major units")
    rounding_mode: RoundingMode = "HALF_EVEN"
    grace_on_principal: int = Field(default=0, ge=0, le=600)
    grace_on_interest_payment: int = Field(default=0, ge=0, le=600)
    grace_on_interest_charged: int = Field(default=0, ge=0, le=600)


def plain(value: Decimal) -> Decimal:
    """A rate without trailing zeros or exponent: 18.000000 -> 18, 1.500 -> 1.5."""
    n = value.normalize()
    return n.quantize(Decimal(1)) if n == n.to_integral_value() else n


def schedule_terms(
    rules: ScheduleRules,
    *,
    principal_minor: int,
    repayments: int,
    scale: int,
    disbursed_on: date,
    first_repayment_on: date | None = None,
) -> ScheduleTerms:
    """The calculator's input for a loan under these rules (pure: workflows call it too)."""
    return ScheduleTerms(
        principal_minor=principal_minor,
        annual_rate=rules.annual_interest_rate,
        repayments=repayments,
        disbursed_on=disbursed_on,
        scale=scale,
        every=rules.repayment_every,
        frequency=rules.repayment_frequency,
        interest_method=rules.interest_method,
        amortization=rules.amortization,
        interest_period=rules.interest_calculation_period,
        days_in_year=rules.days_in_year,
        days_in_month=rules.days_in_month,
        first_repayment_on=first_repayment_on,
        installment_multiple=Decimal(rules.installment_multiple),
        rounding=getattr(decimal, f"ROUND_{rules.rounding_mode}"),
        grace_principal=rules.grace_on_principal,
        grace_interest_payment=rules.grace_on_interest_payment,
        grace_interest_charged=rules.grace_on_interest_charged,
    )


class LoanProductCreate(ScheduleRules):
    """A new loan product. Amounts are decimal strings in the product currency's major units."""

    code: ProductCode = Field(description="the product's id in URLs, e.g. SALARY")
    name: LongName
    currency: CurrencyCode
    min_principal: Amount
    max_principal: Amount
    min_repayments: int = Field(ge=1, le=600)
    max_repayments: int = Field(ge=1, le=600)
    disbursement_fee: DisbursementFee | None = None
    penalty_rate: Rate = Field(
        default=Decimal(0), description="percent per year on overdue amounts"
    )
    accounting: Accounting = "cash"
    auto_disburse: bool = Field(
        default=False, description="disburse to the member's savings as soon as it is approved"
    )
    guarantee: GuaranteeRules = Field(default_factory=GuaranteeRules)
    eligibility: EligibilityRules = Field(default_factory=EligibilityRules)
    approval_tiers: list[ApprovalTierIn] = Field(min_length=1, max_length=10)

    @model_validator(mode="after")
    def _ranges(self) -> LoanProductCreate:
        if self.min_repayments > self.max_repayments:
            raise ValueError("min_repayments is above max_repayments")
        grace = max(self.grace_on_principal, self.grace_on_interest_payment)
        if grace >= self.min_repayments:
            raise ValueError("grace periods must leave at least one full repayment")
        return self


class ProductSnapshot(ScheduleRules):
    """A product as an application carries it (amounts in minor units, fixed at submission)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str
    name: str
    currency: str
    scale: int
    min_principal_minor: int
    max_principal_minor: int
    min_repayments: int
    max_repayments: int
    disbursement_fee_kind: FeeKind | None = None
    disbursement_fee_flat_minor: int = 0
    disbursement_fee_pct: Percent = Decimal(0)
    penalty_rate: Rate = Decimal(0)
    # Defaults: histories recorded before these existed replay as cash, manual disbursement.
    accounting: Accounting = "cash"
    auto_disburse: bool = False
    guarantee: GuaranteeRules
    eligibility: EligibilityRules
    approval_tiers: list[ApprovalTier]

    def tier_for(self, principal_minor: int) -> tuple[int, ApprovalTier]:
        """The first tier whose bound covers the amount (the last tier covers everything)."""
        for index, tier in enumerate(self.approval_tiers):
            if tier.up_to_minor is None or principal_minor <= tier.up_to_minor:
                return index, tier
        return len(self.approval_tiers) - 1, self.approval_tiers[-1]


class ApprovalTierView(BaseModel):
    up_to: str | None
    levels: list[ApprovalLevel]


class LoanProductView(ScheduleRules):
    code: str
    name: str
    currency: str
    min_principal: str
    max_principal: str
    min_repayments: int
    max_repayments: int
    disbursement_fee: DisbursementFee | None
    penalty_rate: Rate
    accounting: Accounting
    auto_disburse: bool
    guarantee: GuaranteeRules
    eligibility: EligibilityRules
    approval_tiers: list[ApprovalTierView]
    status: str


class SchedulePreviewRequest(BaseModel):
    """Principal and number of repayments to preview under a product's terms."""

    model_config = ConfigDict(extra="forbid")
    principal: Amount
    repayments: int = Field(ge=1, le=600)
    disbursed_on: Day | None = Field(default=None, description="default today")
    first_repayment_on: Day | None = Field(default=None, description="default one period later")
