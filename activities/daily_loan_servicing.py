"""One loan's days through a business date: arrears, the penalty each day in arrears adds (its
exact amount kept, the charge rounded from the cumulative so the residue carries forward), and
the interest an accrual product has earned. Plain functions over plain values, run by the daily
loan job's batches off the event loop."""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from domain.allocation import Due, arrears, daily_penalty, interest_earned_to

# A day's penalty is kept to the 12 decimals `loans.penalty_exact` stores, before it is added:
# a catch-up over many days then sums exactly what daily runs store day by day, and Postgres
# never rounds what is written.
DAY_PLACES = Decimal("1e-12")
# Digits the day's quotient is computed to before that rounding: enough that it never rounds
# twice (the 28 of the default context could, for amounts of 17 digits and more), so the
# rounding is of the exact rational, as Postgres computes it (`activities.daily_loan_sql`).
DAY_PRECISION = 80


def day_penalty(overdue_amount: int, annual_rate: Decimal) -> Decimal:
    """One day's penalty on `overdue_amount`: the exact rational rounded half-even to 12 places."""
    with decimal.localcontext(prec=DAY_PRECISION):
        exact = daily_penalty(overdue_amount, annual_rate)
        return exact.quantize(DAY_PLACES, rounding=decimal.ROUND_HALF_EVEN)


@dataclass(frozen=True)
class LoanRow:
    loan_id: int
    currency: str
    start: date = date.min
    penalty_exact: Decimal = Decimal(0)
    interest_recognized: int = 0
    penalty_rate: Decimal = Decimal(0)
    accrual: bool = False
    rounding: str = decimal.ROUND_HALF_EVEN


@dataclass(frozen=True)
class Serviced:
    """What one loan's days through D come to."""

    loan: LoanRow
    days_past_due: int
    bucket: str
    overdue_since: date | None
    overdue: int  # principal and interest overdue at the end of the date
    penalty_exact: Decimal
    penalty_charged: int
    penalty_installment: int | None
    accrual: int


def service_loan(loan: LoanRow, dues: list[Due], on: date) -> Serviced:
    """Pure: every day from `loan.start` through `on`. Each day in arrears adds its exact
    penalty on the overdue principal and interest; what is charged is the rounded cumulative
    minus what earlier days charged, so the rounding residue carries forward."""
    exact = loan.penalty_exact
    charged_before = sum(d.penalty for d in dues)
    # Nothing is paid or charged while the days run, so what is still open stays open: decided
    # once per loan, not once per day and installment (arrears looks at open ones only).
    open_dues = [d for d in dues if not d.complete]
    target: int | None = None
    day = loan.start
    late = None
    while day <= on:
        late = arrears(open_dues, day)
        if late.days_past_due > 0:
            exact += day_penalty(late.overdue_amount, loan.penalty_rate)
            target = min(
                (d for d in open_dues if d.due_on < day), key=lambda d: (d.due_on, d.number)
            ).number
        day += timedelta(days=1)
    charged = max(0, int(exact.to_integral_value(loan.rounding)) - charged_before)
    accrual = 0
    if loan.accrual:
        earned = interest_earned_to(dues, on, loan.rounding)
        accrual = max(0, earned - loan.interest_recognized)
    now = late if late is not None else arrears(open_dues, on)  # the loop's last day is `on`
    return Serviced(
        loan=loan,
        days_past_due=now.days_past_due,
        bucket=now.bucket,
        overdue_since=now.overdue_since,
        overdue=now.overdue_amount,
        penalty_exact=exact,
        penalty_charged=charged if target is not None else 0,
        penalty_installment=target,
        accrual=accrual,
    )


def service_all(loans: list[LoanRow], dues: dict[int, list[Due]], on: date) -> list[Serviced]:
    return [service_loan(loan, dues.get(loan.loan_id, []), on) for loan in loans]
