"""Loan servicing arithmetic: what an installment still owes, how a repayment is allocated, what
closes a loan on a date, and how far a loan is in arrears. Plain functions over plain values.

Allocation follows Fineract's default strategy ("penalties, fees, interest, principal order"):
installments in due-date order, which is overdue ones oldest first, then the current one, then in
advance on the next ones; within each installment penalty, then fee, then interest, then
principal. An amount that reaches the payoff quote closes the loan: interest of periods not yet
begun is waived, the current period's interest is cut to the days elapsed, and interest already
paid in advance beyond that is given back (applied to what the loan still owes), so a member who
pays a loan off early never pays interest for time they did not borrow. Anything beyond what the
loan owes is the overpayment.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

from domain.money import round_ratio

Component = Literal["penalty", "fee", "interest", "principal"]
# The allocation order within an installment.
COMPONENTS: tuple[Component, ...] = ("penalty", "fee", "interest", "principal")
Bucket = Literal["current", "1-30", "31-60", "61-90", "over_90"]
BUCKETS: tuple[Bucket, ...] = ("current", "1-30", "31-60", "61-90", "over_90")


@dataclass(frozen=True)
class Due:
    """One installment: what it charges (`principal`..`penalty`) and what has been paid of it.

    `interest_waived` is interest a payoff took off the installment; it is neither owed nor paid.
    """

    number: int
    from_on: date
    due_on: date
    principal: int
    interest: int
    fee: int = 0
    penalty: int = 0
    principal_paid: int = 0
    interest_paid: int = 0
    fee_paid: int = 0
    penalty_paid: int = 0
    interest_waived: int = 0

    # Spelled out rather than looked up by name: the daily loan job asks these of every
    # installment of every active loan, every day.
    def outstanding(self, component: Component) -> int:
        if component == "interest":
            return self.interest - self.interest_waived - self.interest_paid
        if component == "principal":
            return self.principal - self.principal_paid
        if component == "fee":
            return self.fee - self.fee_paid
        if component == "penalty":
            return self.penalty - self.penalty_paid
        raise ValueError(f"no component {component!r}")

    @property
    def total_outstanding(self) -> int:
        """The sum of `outstanding` over the four components."""
        return (
            self.principal - self.principal_paid
            + self.interest - self.interest_waived - self.interest_paid
            + self.fee - self.fee_paid
            + self.penalty - self.penalty_paid
        )  # fmt: skip

    @property
    def complete(self) -> bool:
        return self.total_outstanding == 0

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Due:
        """The installment whose fields, in declaration order, are `row` (a database row). Built
        without the frozen dataclass's `__init__`, which sets each field through
        `object.__setattr__`: the daily loan job builds tens of thousands a batch, and that
        was its largest cost in Python. All fields are required here, defaults included."""
        if len(row) != len(DUE_FIELDS):
            raise ValueError(f"an installment has {len(DUE_FIELDS)} fields, not {len(row)}")
        due = object.__new__(cls)
        due.__dict__.update(zip(DUE_FIELDS, row, strict=True))
        return due


DUE_FIELDS = tuple(f.name for f in fields(Due))


@dataclass(frozen=True)
class Portion:
    """What one repayment paid of one installment."""

    number: int
    penalty: int = 0
    fee: int = 0
    interest: int = 0
    principal: int = 0

    @property
    def total(self) -> int:
        return self.penalty + self.fee + self.interest + self.principal


@dataclass(frozen=True)
class Allocation:
    """A repayment split over installments. `waived`: interest a payoff took off, per installment
    number; `refunded`: interest paid in advance beyond what was earned, which a payoff gives
    back and applies with the amount (so the portions add up to amount + refund - overpayment);
    `closes`: nothing is owed afterwards."""

    amount: int
    portions: tuple[Portion, ...]
    overpayment: int
    waived: tuple[tuple[int, int], ...] = ()
    closes: bool = False
    refunded: tuple[tuple[int, int], ...] = ()

    def total(self, component: Component) -> int:
        return sum(int(getattr(p, component)) for p in self.portions)

    @property
    def refund(self) -> int:
        return sum(r for _, r in self.refunded)


@dataclass(frozen=True)
class Payoff:
    """What closes the loan on `on`: every amount owed, with interest earned only to that day;
    interest paid in advance for days not borrowed (`refunded`) is credited against it."""

    on: date
    principal: int
    interest: int
    fee: int
    penalty: int
    waived: tuple[tuple[int, int], ...]
    refunded: tuple[tuple[int, int], ...] = ()

    @property
    def refund(self) -> int:
        return sum(r for _, r in self.refunded)

    @property
    def amount(self) -> int:
        return self.principal + self.interest + self.fee + self.penalty - self.refund


def payoff(dues: Sequence[Due], on: date, rounding: str = decimal.ROUND_HALF_EVEN) -> Payoff:
    """The amount that closes the loan on `on`, the interest that closing waives and the interest
    paid in advance that it gives back (never more than the rest owed: a quote is not negative)."""
    principal = interest = fee = penalty = 0
    waived: list[tuple[int, int]] = []
    refunded: list[tuple[int, int]] = []
    for due in dues:
        principal += due.outstanding("principal")
        fee += due.outstanding("fee")
        penalty += due.outstanding("penalty")
        earned = earned_interest(due, on, rounding)
        owed = max(0, earned - due.interest_paid)
        interest += owed
        cut = due.outstanding("interest") - owed
        if cut > 0:
            waived.append((due.number, cut))
        if due.interest_paid > earned:
            refunded.append((due.number, due.interest_paid - earned))
    room = principal + interest + fee + penalty
    capped: list[tuple[int, int]] = []
    for number, amount in refunded:
        take = min(amount, room)
        room -= take
        if take:
            capped.append((number, take))
    return Payoff(on, principal, interest, fee, penalty, tuple(waived), tuple(capped))


def earned_interest(due: Due, on: date, rounding: str = decimal.ROUND_HALF_EVEN) -> int:
    """Interest of the installment earned by the end of `on`: all of it once the period is over,
    none before it begins, and in between the share of days elapsed (rounded once)."""
    charged = due.interest - due.interest_waived
    if on >= due.due_on:
        return charged
    if on <= due.from_on:
        return 0
    share = Fraction(charged * (on - due.from_on).days, (due.due_on - due.from_on).days)
    return round_ratio(share, rounding)


def allocate(
    dues: Sequence[Due], amount: int, on: date, rounding: str = decimal.ROUND_HALF_EVEN
) -> Allocation:
    """Split `amount` over the installments; an amount reaching the payoff quote closes the loan."""
    if amount <= 0:
        raise ValueError("a repayment must be greater than zero")
    quote = payoff(dues, on, rounding)
    closing = amount >= quote.amount
    waived, refunded = (quote.waived, quote.refunded) if closing else ((), ())
    owing = waive(dues, waived, refunded)
    left = amount + (quote.refund if closing else 0)
    portions: list[Portion] = []
    for due in sorted(owing, key=lambda d: (d.due_on, d.number)):
        paid: dict[str, int] = {}
        for component in COMPONENTS:
            take = min(left, due.outstanding(component))
            paid[component] = take
            left -= take
        if any(paid.values()):
            portions.append(Portion(due.number, **paid))
        if left == 0:
            break
    closes = all(d.complete for d in apply(owing, portions))
    return Allocation(amount, tuple(portions), left, waived, closes, refunded)


def waive(
    dues: Sequence[Due],
    waived: Sequence[tuple[int, int]],
    refunded: Sequence[tuple[int, int]] = (),
) -> list[Due]:
    """The installments with a payoff's waiver: interest not earned is taken off, and interest
    paid beyond what was earned is no longer paid (it is given back) but waived."""
    cuts, back = dict(waived), dict(refunded)
    return [
        replace(
            d,
            interest_waived=d.interest_waived + cuts.get(d.number, 0) + back.get(d.number, 0),
            interest_paid=d.interest_paid - back.get(d.number, 0),
        )
        for d in dues
    ]


def apply(dues: Sequence[Due], portions: Sequence[Portion]) -> list[Due]:
    """The installments after the portions were paid (a pure step used to replay repayments)."""
    paid = {p.number: p for p in portions}
    result = []
    for due in dues:
        p = paid.get(due.number)
        if p is None:
            result.append(due)
            continue
        result.append(
            replace(
                due,
                penalty_paid=due.penalty_paid + p.penalty,
                fee_paid=due.fee_paid + p.fee,
                interest_paid=due.interest_paid + p.interest,
                principal_paid=due.principal_paid + p.principal,
            )
        )
    return result


def settle(dues: Sequence[Due], allocation: Allocation) -> list[Due]:
    """The installments after a repayment: its waiver and refund applied, then its portions."""
    return apply(waive(dues, allocation.waived, allocation.refunded), allocation.portions)


@dataclass(frozen=True)
class Arrears:
    days_past_due: int
    overdue_since: date | None
    overdue_principal: int
    overdue_interest: int
    overdue_fee: int
    overdue_penalty: int

    @property
    def bucket(self) -> Bucket:
        return bucket(self.days_past_due)

    @property
    def overdue_amount(self) -> int:
        """Principal and interest overdue: what penalties are charged on."""
        return self.overdue_principal + self.overdue_interest


def arrears(dues: Sequence[Due], on: date) -> Arrears:
    """Arrears at the end of `on`: an installment is overdue once its due date has passed unpaid."""
    # One pass with the sums spelled out: the daily loan job asks this of every active loan.
    since: date | None = None
    principal = interest = fee = penalty = 0
    for d in dues:
        if d.due_on < on and not d.complete:
            if since is None or d.due_on < since:
                since = d.due_on
            principal += d.principal - d.principal_paid
            interest += d.interest - d.interest_waived - d.interest_paid
            fee += d.fee - d.fee_paid
            penalty += d.penalty - d.penalty_paid
    if since is None:
        return Arrears(0, None, 0, 0, 0, 0)
    return Arrears((on - since).days, since, principal, interest, fee, penalty)


def bucket(days_past_due: int) -> Bucket:
    """The ageing bucket of a loan `days_past_due` days in arrears."""
    if days_past_due <= 0:
        return "current"
    if days_past_due <= 30:
        return "1-30"
    if days_past_due <= 60:
        return "31-60"
    if days_past_due <= 90:
        return "61-90"
    return "over_90"


def interest_earned_to(
    dues: Sequence[Due], on: date, rounding: str = decimal.ROUND_HALF_EVEN
) -> int:
    """Contractual interest earned by the end of `on` over the whole loan (accrual target)."""
    return sum(earned_interest(d, on, rounding) for d in dues)


def daily_penalty(overdue_amount: int, annual_rate: Decimal, days: int = 1) -> Decimal:
    """Exact penalty on an overdue amount for `days` days at `annual_rate` percent a year
    (365-day year); rounded only when charged, with the residue carried by the caller."""
    return Decimal(overdue_amount) * annual_rate * days / Decimal(36500)
