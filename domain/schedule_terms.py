"""The repayment-schedule calculator's values: the terms it takes, the installments and schedule
it returns, and the refusal it raises. Plain values; no I/O. The calculator is `domain.schedule`.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

Frequency = Literal["days", "weeks", "months"]
InterestMethod = Literal["declining_balance", "flat"]
Amortization = Literal["equal_installments", "equal_principal"]
InterestPeriod = Literal["same_as_repayment", "daily"]
DaysInYear = Literal["actual", "360", "364", "365"]
DaysInMonth = Literal["actual", "30"]

ROUNDING_MODES = frozenset(
    {
        decimal.ROUND_HALF_EVEN,
        decimal.ROUND_HALF_UP,
        decimal.ROUND_HALF_DOWN,
        decimal.ROUND_UP,
        decimal.ROUND_DOWN,
        decimal.ROUND_CEILING,
        decimal.ROUND_FLOOR,
    }
)


class ScheduleError(ValueError):
    """Terms that do not make a schedule (a bad combination); the message is one line for people."""


@dataclass(frozen=True)
class ScheduleTerms:
    """A loan's repayment terms.

    principal_minor: the amount disbursed, in minor units at `scale` decimals.
    scale: the currency's decimals (2 for EUR); interest and installments round to it.
    annual_rate: nominal annual interest rate in percent (Decimal("12") is 12 % a year).
    repayments: number of installments; one every `every` `frequency`.
    first_repayment_on: default is one period after `disbursed_on`.
    installment_multiple: installments round to a multiple of this (major units; 0 = none).
    rounding: a `decimal.ROUND_*` name ("HALF_EVEN" also accepted), used for every rounding.
    grace_principal: the first n installments pay interest only.
    grace_interest_payment: interest of the first n installments is deferred to the first paying one.
    grace_interest_charged: the first n periods charge no interest at all.
    """

    principal_minor: int
    annual_rate: Decimal
    repayments: int
    disbursed_on: date
    scale: int = 2
    every: int = 1
    frequency: Frequency = "months"
    interest_method: InterestMethod = "declining_balance"
    amortization: Amortization = "equal_installments"
    interest_period: InterestPeriod = "same_as_repayment"
    days_in_year: DaysInYear = "actual"
    days_in_month: DaysInMonth = "actual"
    first_repayment_on: date | None = None
    installment_multiple: Decimal = Decimal(0)
    rounding: str = decimal.ROUND_HALF_EVEN
    grace_principal: int = 0
    grace_interest_payment: int = 0
    grace_interest_charged: int = 0


@dataclass(frozen=True)
class Installment:
    """One repayment: what is due on `due_date` for the period (`from_date`, `due_date`]."""

    number: int
    from_date: date
    due_date: date
    principal_minor: int
    interest_minor: int
    balance_minor: int  # principal outstanding after this installment

    @property
    def total_minor(self) -> int:
        return self.principal_minor + self.interest_minor


@dataclass(frozen=True)
class Schedule:
    scale: int
    installments: tuple[Installment, ...]

    @property
    def total_principal_minor(self) -> int:
        return sum(i.principal_minor for i in self.installments)

    @property
    def total_interest_minor(self) -> int:
        return sum(i.interest_minor for i in self.installments)

    @property
    def total_due_minor(self) -> int:
        return self.total_principal_minor + self.total_interest_minor


# Fineract's MoneyHelper.getMathContext(): 12 significant digits for rates.
