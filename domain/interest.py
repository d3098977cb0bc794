"""Savings interest for one account and one month, as Apache Fineract computes it.

Rules (DESIGN.md "Money", issue 7):
- a day's interest is the end-of-day balance x annual rate / days in year, kept at 9 decimal
  places (quantized with the product's rounding mode);
- no interest for a day whose end-of-day balance is below the product's minimum; only the days
  the account is open (opening day to closing day, inclusive) accrue;
- average daily balance averages the day balances over the compounding period (the month, or
  the day when compounding daily, where it equals the daily balance);
- compounding adds the unrounded interest to the base at each compounding boundary (every day,
  or every month end) until it is posted;
- at the end of a posting period (month, quarter, year) the accrued interest plus the residue
  carried from earlier postings is rounded once to the currency's decimals; what rounding left
  over is carried forward, so posted interest sums to the contractual interest;
- withholding tax is the posted interest x the tax rate, rounded the same way.

Amounts are in major units (Decimal); the caller converts minor units at the boundary. Nothing
here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Literal

from domain.periods import month_bounds

Method = Literal["daily_balance", "average_daily_balance"]
Compounding = Literal["daily", "monthly"]
PostingPeriod = Literal["monthly", "quarterly", "annually"]

NINE_PLACES = Decimal("0.000000001")
ZERO = Decimal(0)
# Enough digits that a balance of 10^15 times a rate keeps all 9 decimals before quantizing.
PRECISION = Context(prec=50)
POSTING_MONTHS: dict[str, frozenset[int]] = {
    "monthly": frozenset(range(1, 13)),
    "quarterly": frozenset({3, 6, 9, 12}),
    "annually": frozenset({12}),
}


@dataclass(frozen=True)
class Tier:
    """From `min_balance` (major units) upwards the whole balance earns `annual_rate`."""

    min_balance: Decimal
    annual_rate: Decimal


@dataclass(frozen=True)
class Terms:
    annual_rate: Decimal
    method: Method = "daily_balance"
    compounding: Compounding = "monthly"
    posting: PostingPeriod = "monthly"
    days_in_year: int = 365
    min_balance: Decimal = ZERO
    withholding_tax_rate: Decimal = ZERO
    rounding: str = ROUND_HALF_EVEN
    scale: int = 2
    tiers: tuple[Tier, ...] = ()

    def rate_for(self, balance: Decimal) -> Decimal:
        """The tier rate for a balance: the highest tier whose minimum it reaches."""
        rate = self.annual_rate
        for tier in sorted(self.tiers, key=lambda t: t.min_balance):
            if balance >= tier.min_balance:
                rate = tier.annual_rate
        return rate


@dataclass(frozen=True)
class Carry:
    """What an account carries from one month to the next.

    accrued: interest earned since the last posting (9 dp), compounding until posted;
    residue: what rounding left over at the last posting (9 dp, may be negative).
    """

    accrued: Decimal = ZERO
    residue: Decimal = ZERO


@dataclass(frozen=True)
class MonthInterest:
    earned: Decimal  # this month's interest, 9 dp
    posts: bool  # the month closes a posting period
    posted: Decimal  # rounded to the currency's scale; zero when nothing posts
    tax: Decimal  # withholding tax on `posted`
    days: int  # days of the month the account was open
    carry: Carry  # into the next month


def day_balances(
    start: date, end: date, closing_balance: Decimal, changes: Sequence[tuple[date, Decimal]]
) -> list[Decimal]:
    """End-of-day balances for each day start..end, from the balance at the end of `end` and the
    net change booked on each day (changes dated outside start..end are ignored)."""
    by_day: dict[date, Decimal] = {}
    for day, amount in changes:
        if start <= day <= end:
            by_day[day] = by_day.get(day, ZERO) + amount
    balances: list[Decimal] = []
    balance = closing_balance
    day = end
    while day >= start:
        balances.append(balance)
        balance -= by_day.get(day, ZERO)
        day -= timedelta(days=1)
    balances.reverse()
    return balances


def _day_interest(terms: Terms, base: Decimal, rate: Decimal, days: int = 1) -> Decimal:
    """`days` days of interest on `base` at `rate`; each day's interest is kept at 9 dp."""
    with localcontext(PRECISION):
        one_day = (base * rate / terms.days_in_year).quantize(NINE_PLACES, terms.rounding)
        return one_day * days


def _counted(terms: Terms, balance: Decimal) -> bool:
    return balance > ZERO and balance >= terms.min_balance


Runs = list[tuple[Decimal, int]]  # (end-of-day balance, consecutive open days at it)


def balance_runs(
    start: date,
    end: date,
    closing_balance: Decimal,
    changes: Sequence[tuple[date, Decimal]],
    opened_on: date | None = None,
    closed_on: date | None = None,
) -> Runs:
    """The open days of start..end as runs of equal end-of-day balance, oldest first.

    Same balances as `day_balances`, without a row per day: a million accounts of a few
    postings each are priced a run at a time (n x the day's 9 dp interest is exactly what n
    separate days give)."""
    first = max(start, opened_on) if opened_on else start
    last = min(end, closed_on) if closed_on else end
    if first > last:
        return []
    by_day: dict[date, Decimal] = {}
    for day, amount in changes:
        if start < day <= end:
            by_day[day] = by_day.get(day, ZERO) + amount
    runs: Runs = []
    balance, run_end = closing_balance, end

    def clipped(lo: date, hi: date) -> int:
        lo, hi = max(lo, first), min(hi, last)
        return (hi - lo).days + 1 if hi >= lo else 0

    for day in sorted(by_day, reverse=True):  # step back through the month, change by change
        runs.append((balance, clipped(day, run_end)))
        balance -= by_day[day]
        run_end = day - timedelta(days=1)
    runs.append((balance, clipped(start, run_end)))
    runs.reverse()
    return [(b, n) for b, n in runs if n > 0]


def _earned_daily_compounding(terms: Terms, runs: Runs, accrued: Decimal) -> Decimal:
    earned = ZERO
    for balance, days in runs:
        if not _counted(terms, balance):
            continue
        rate = terms.rate_for(balance)
        for _ in range(days):
            earned += _day_interest(terms, balance + accrued + earned, rate)
    return earned


def _earned_monthly_compounding(terms: Terms, runs: Runs, accrued: Decimal) -> Decimal:
    earned = ZERO
    for balance, days in runs:
        if _counted(terms, balance):
            earned += _day_interest(terms, balance + accrued, terms.rate_for(balance), days)
    return earned


def _earned_average(terms: Terms, runs: Runs, accrued: Decimal) -> Decimal:
    """Average daily balance over the month: days below the minimum count as zero."""
    open_days = sum(days for _, days in runs)
    if not open_days:
        return ZERO
    with localcontext(PRECISION):
        total = sum((b * days for b, days in runs if _counted(terms, b)), ZERO)
        average = (total / open_days).quantize(NINE_PLACES, terms.rounding)
    if average <= ZERO:
        return ZERO
    return _day_interest(terms, average + accrued, terms.rate_for(average), open_days)


def month_interest(
    terms: Terms,
    year: int,
    month: int,
    closing_balance: Decimal,
    changes: Sequence[tuple[date, Decimal]] = (),
    *,
    opened_on: date | None = None,
    closed_on: date | None = None,
    carry: Carry = Carry(),
) -> MonthInterest:
    """One month of interest for one account.

    `closing_balance` is the balance at the end of the month's last day and `changes` the net
    postings booked on each day of the month, so each day's end-of-day balance follows. Days
    before `opened_on` or after `closed_on` do not accrue.
    """
    start, end = month_bounds(year, month)
    runs = balance_runs(start, end, closing_balance, changes, opened_on, closed_on)
    if terms.compounding == "daily":
        earned = _earned_daily_compounding(terms, runs, carry.accrued)
    elif terms.method == "average_daily_balance":
        earned = _earned_average(terms, runs, carry.accrued)
    else:
        earned = _earned_monthly_compounding(terms, runs, carry.accrued)
    days = sum(n for _, n in runs)
    accrued = carry.accrued + earned
    if month not in POSTING_MONTHS[terms.posting]:
        return MonthInterest(earned, False, ZERO, ZERO, days, Carry(accrued, carry.residue))
    return _post(terms, earned, accrued + carry.residue, days)


def _post(terms: Terms, earned: Decimal, due: Decimal, days: int) -> MonthInterest:
    exponent = Decimal(1).scaleb(-terms.scale)
    posted = max(due.quantize(exponent, terms.rounding), ZERO)
    tax = (posted * terms.withholding_tax_rate).quantize(exponent, terms.rounding)
    return MonthInterest(earned, True, posted, tax, days, Carry(ZERO, due - posted))
