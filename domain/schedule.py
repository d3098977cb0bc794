"""Repayment schedule calculator: Apache Fineract's classic (cumulative) generator, rounding included.

Plain values in, plain values out; no I/O. Amounts are integers in the currency's minor unit
(`principal_minor` at `scale` decimals, 500000 = 5000.00 at scale 2), like everywhere else in
bankflow; rates and the installment multiple are `Decimal` (percent per year, major units).

What Fineract does, and so what this does (LoanApplicationTerms, Cumulative*ScheduleGenerator):
- rates are worked out with 12 significant digits (Fineract's MathContext(12)) in the product's
  rounding mode; every money amount is then rounded once, to the currency's decimals, in the same
  mode: balance x periodic rate for interest, principal / n for equal principal, and so on;
- same_as_repayment: periodic rate = annual / periods per year (12, 52, or days in year for daily
  repayments, 365 when "actual") x every; daily: annual / days in year ("actual" is 365, leap
  years included) x the days of the period (30 x every for months when days_in_month is 30). The
  first period's interest runs from one period before the first due date (Fineract's "ideal
  disbursement date"), so a longer or shorter first period costs a standard period's interest;
- equal installments: the installment is PMT over the repayments after principal grace, at the
  periodic rate of a standard period (30-day months when daily), computed once and rounded to the
  installment multiple (else to the currency's decimals);
- the last installment takes whatever principal remains, and no installment takes more principal
  than remains (the schedule ends early if a rounded-up installment repays the loan sooner).

Where the two differ on purpose (see `_flat_principal`): a principal-grace installment of a flat
loan with an installment multiple carries no principal; Fineract would add the multiple's rounding
difference of the interest to it and could make its principal negative.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Context, Decimal
from fractions import Fraction

from domain.dates import due_dates, step
from domain.money import AmountError, round_ratio, to_major, to_minor
from domain.schedule_terms import (
    ROUNDING_MODES,
    Amortization,
    DaysInMonth,
    DaysInYear,
    Frequency,
    Installment,
    InterestMethod,
    InterestPeriod,
    Schedule,
    ScheduleError,
    ScheduleTerms,
)

# The calculator's public values, importable from here with it.
__all__ = [
    "ROUNDING_MODES",
    "Amortization",
    "DaysInMonth",
    "DaysInYear",
    "Frequency",
    "Installment",
    "InterestMethod",
    "InterestPeriod",
    "Schedule",
    "ScheduleError",
    "ScheduleTerms",
    "generate_schedule",
    "rounding_mode",
]

RATE_DIGITS = 12
# PMT needs more than the rate's digits: (1 + r)^n of a 12-digit r over hundreds of periods.
PMT_CONTEXT = Context(prec=50)
MAX_REPAYMENTS = 1200
MAX_SCALE = 9
HUNDRED = Decimal(100)


def rounding_mode(name: str) -> str:
    """A `decimal.ROUND_*` name from either spelling ("ROUND_HALF_EVEN" or "HALF_EVEN")."""
    mode = name.upper() if name.upper().startswith("ROUND_") else "ROUND_" + name.upper()
    if mode not in ROUNDING_MODES:
        raise ScheduleError(f"unknown rounding mode {name!r}")
    return mode


@dataclass
class _Rules:
    """Derived once from the terms: the rounding, the rates and the grace bounds."""

    terms: ScheduleTerms
    mode: str
    multiple_minor: int
    dates: list[date]
    first_start: date  # one period before the first due date (Fineract's ideal disbursement)
    rate_context: Context = field(init=False)

    def __post_init__(self) -> None:
        self.rate_context = Context(prec=RATE_DIGITS, rounding=self.mode)

    def round(self, value: Fraction | Decimal | int) -> int:
        return round_ratio(Fraction(value), self.mode)

    def to_multiple(self, minor: Fraction | int) -> int:
        """Fineract's Money.roundToMultiplesOf: nearest multiple in the rounding mode."""
        if not self.multiple_minor:
            return self.round(minor)
        return round_ratio(Fraction(minor) / self.multiple_minor, self.mode) * self.multiple_minor

    def periods_per_year(self) -> int:
        t = self.terms
        if t.interest_period == "daily":
            return 365 if t.days_in_year == "actual" else int(t.days_in_year)
        if t.frequency == "days":
            return 365 if t.days_in_year == "actual" else int(t.days_in_year)
        return 52 if t.frequency == "weeks" else 12

    def unit_rate(self) -> Decimal:
        """Annual rate / periods per year / 100, at 12 digits: per day when daily."""
        c = self.rate_context
        return c.divide(c.divide(self.terms.annual_rate, self.periods_per_year()), HUNDRED)

    def period_rate(self, start: date, end: date) -> Decimal:
        t = self.terms
        if t.interest_period == "same_as_repayment":
            return self.unit_rate() * t.every
        days = (end - start).days
        if t.frequency == "months" and t.days_in_month == "30":
            days = 30 * t.every
        return self.rate_context.multiply(self.unit_rate(), days)

    def pmt_rate(self) -> Decimal:
        """The rate Fineract's pmtForInstallment uses: a standard period, 30-day months."""
        t = self.terms
        if t.interest_period == "same_as_repayment":
            return self.unit_rate() * t.every
        days = {"days": t.every, "weeks": 7 * t.every, "months": 30 * t.every}[t.frequency]
        return self.rate_context.multiply(self.unit_rate(), days)

    def interest_start(self, number: int) -> date:
        """Period 1 runs from one period before the first due date (Fineract's ideal
        disbursement date); later periods from the previous due date."""
        return self.first_start if number == 1 else self.dates[number - 2]


def _validate(t: ScheduleTerms) -> str:
    choices: tuple[tuple[str, object, tuple[str, ...]], ...] = (
        ("frequency", t.frequency, ("days", "weeks", "months")),
        ("interest_method", t.interest_method, ("declining_balance", "flat")),
        ("amortization", t.amortization, ("equal_installments", "equal_principal")),
        ("interest_period", t.interest_period, ("same_as_repayment", "daily")),
        ("days_in_year", t.days_in_year, ("actual", "360", "364", "365")),
        ("days_in_month", t.days_in_month, ("actual", "30")),
    )
    for name, value, allowed in choices:
        if value not in allowed:
            raise ScheduleError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    if not 0 <= t.scale <= MAX_SCALE:
        raise ScheduleError(f"currency scale must be between 0 and {MAX_SCALE}")
    if t.principal_minor <= 0:
        raise ScheduleError("principal must be greater than zero")
    if not t.annual_rate.is_finite() or t.annual_rate < 0:
        raise ScheduleError("annual rate must be zero or more")
    if not 1 <= t.repayments <= MAX_REPAYMENTS:
        raise ScheduleError(f"repayments must be between 1 and {MAX_REPAYMENTS}")
    if t.every < 1:
        raise ScheduleError("repayment frequency 'every' must be at least 1")
    if t.first_repayment_on is not None and t.first_repayment_on <= t.disbursed_on:
        raise ScheduleError("the first repayment must fall after the disbursement date")
    for name, grace in (
        ("principal", t.grace_principal),
        ("interest payment", t.grace_interest_payment),
        ("interest charged", t.grace_interest_charged),
    ):
        if not 0 <= grace < t.repayments:
            raise ScheduleError(f"grace on {name} must be from 0 to repayments - 1 periods")
    paying = t.repayments - t.grace_interest_payment - t.grace_interest_charged
    if t.interest_method == "flat" and t.amortization == "equal_installments" and paying < 1:
        # Fineract spreads flat interest over the periods outside both graces.
        raise ScheduleError(
            "a flat loan in equal installments needs a period outside both interest graces"
        )
    return rounding_mode(t.rounding)


def _multiple_minor(t: ScheduleTerms) -> int:
    """The installment multiple in minor units, exactly (never rounded to fit the currency)."""
    try:
        return to_minor(t.installment_multiple, t.scale, allow_zero=True)
    except AmountError as exc:
        raise ScheduleError(
            f"installment multiple must be zero or a positive amount with at most {t.scale} "
            "decimals"
        ) from exc


def _calendar(t: ScheduleTerms) -> tuple[list[date], date]:
    """The due dates and the first period's start; terms whose dates leave the calendar
    (before year 1 or after 9999: date arithmetic overflows) make no schedule."""
    try:
        dates = due_dates(t.disbursed_on, t.first_repayment_on, t.repayments, t.every, t.frequency)
        return dates, step(dates[0], -t.every, t.frequency)
    except (OverflowError, ValueError) as exc:
        raise ScheduleError("the repayment dates run past the end of the calendar") from exc


def generate_schedule(terms: ScheduleTerms) -> Schedule:
    """The repayment schedule for `terms`; ScheduleError for a combination that makes none."""
    mode = _validate(terms)
    multiple_minor = _multiple_minor(terms)
    rules = _Rules(terms, mode, multiple_minor, *_calendar(terms))
    if terms.interest_method == "flat":
        installments = _flat(rules)
    else:
        installments = _declining(rules)
    return Schedule(scale=terms.scale, installments=tuple(installments))


def _installment(
    rules: _Rules, number: int, principal: int, interest: int, balance: int
) -> Installment:
    start = rules.terms.disbursed_on if number == 1 else rules.dates[number - 2]
    return Installment(number, start, rules.dates[number - 1], principal, interest, balance)


def _cap_principal(t: ScheduleTerms, number: int, principal: int, repaid: int) -> int:
    """Fineract's adjustPrincipalIfLastRepaymentPeriod: never more than what remains; the last
    installment takes all that remains."""
    remaining = t.principal_minor - repaid - principal
    if remaining < 0 or number == t.repayments:
        return principal + remaining
    return principal


def _emi(rules: _Rules) -> int:
    """The equal installment: PMT over the periods after principal grace, rounded once."""
    t = rules.terms
    periods = t.repayments - t.grace_principal
    rate = rules.pmt_rate()
    if rate == 0:
        exact = Fraction(t.principal_minor, periods)
    else:
        growth = PMT_CONTEXT.power(1 + rate, periods)
        exact = Fraction(PMT_CONTEXT.divide(t.principal_minor * rate * growth, growth - 1))
    return rules.to_multiple(exact)


def _declining(rules: _Rules) -> list[Installment]:
    t = rules.terms
    equal_installments = t.amortization == "equal_installments"
    emi = _emi(rules) if equal_installments else 0
    fixed_principal = rules.round(Fraction(t.principal_minor, t.repayments - t.grace_principal))
    balance, deferred, repaid = t.principal_minor, 0, 0
    rows: list[Installment] = []
    for number in range(1, t.repayments + 1):
        if balance == 0:
            break
        accrued = rules.round(
            Fraction(balance)
            * Fraction(rules.period_rate(rules.interest_start(number), rules.dates[number - 1]))
        )
        before = deferred
        if number <= t.grace_interest_charged:
            interest = 0
        elif number <= t.grace_interest_payment:
            interest, deferred = 0, deferred + accrued
        elif accrued > 0:
            interest, deferred = deferred + accrued, 0
        else:
            interest = 0
        # The principal part comes out of the installment net of this period's own interest.
        own_interest = interest - before if interest > 0 else deferred - before
        if number <= t.grace_principal:
            principal = 0
        elif equal_installments:
            if emi < interest:
                raise ScheduleError(
                    f"installment {number} owes {to_major(interest, t.scale)} interest, more than the "
                    f"installment of {to_major(emi, t.scale)}; shorten the interest grace or lower "
                    "the installment multiple"
                )
            principal = emi - own_interest
        else:
            principal = fixed_principal
        if principal < 0:
            raise ScheduleError(
                f"installment {number} does not cover its interest; lower the installment multiple"
            )
        principal = _cap_principal(t, number, principal, repaid)
        repaid += principal
        balance -= principal
        rows.append(_installment(rules, number, principal, interest, balance))
    return _sweep_deferred(rows, deferred)


def _sweep_deferred(rows: list[Installment], deferred: int) -> list[Installment]:
    """Interest still deferred by grace when the schedule ends goes on the last installment."""
    if deferred:
        last = rows[-1]
        rows[-1] = Installment(
            last.number,
            last.from_date,
            last.due_date,
            last.principal_minor,
            last.interest_minor + deferred,
            last.balance_minor,
        )
    return rows


def _flat_total_interest(rules: _Rules) -> int:
    """Principal x annual rate x term: the term in repayment periods, or in days when daily
    (from the disbursement date to the last due date)."""
    t = rules.terms
    if t.interest_period == "daily":
        term = (rules.dates[-1] - t.disbursed_on).days
    else:
        term = t.repayments * t.every
    return rules.round(Fraction(t.principal_minor) * Fraction(rules.unit_rate() * term))


def _flat_principal(rules: _Rules, number: int, interest: int) -> int:
    """principal / n rounded to the currency; with an installment multiple, Fineract rounds it
    and the interest to the multiple and keeps the interest exact: principal = round_m(principal
    / n) + round_m(interest) - interest, so the installment total is a multiple."""
    t = rules.terms
    if number <= t.grace_principal:
        return 0  # interest only, as principal grace means (see the module docstring)
    share = rules.round(Fraction(t.principal_minor, t.repayments - t.grace_principal))
    if not rules.multiple_minor:
        return share
    return rules.to_multiple(share) + rules.to_multiple(interest) - interest


def _flat(rules: _Rules) -> list[Installment]:
    t = rules.terms
    total = _flat_total_interest(rules)
    per_installment = rules.round(Fraction(total, t.repayments))
    # Rounding per_installment up can make the grace's share exceed the total on tiny loans;
    # Fineract would then charge negative interest. A grace never costs the borrower.
    total_due = max(0, total - per_installment * t.grace_interest_charged)
    paying = t.repayments - t.grace_interest_payment - t.grace_interest_charged
    averaged = rules.round(Fraction(total_due, max(paying, 1)))
    balance, deferred, repaid, charged = t.principal_minor, 0, 0, 0
    rows: list[Installment] = []
    for number in range(1, t.repayments + 1):
        if balance == 0:
            break
        in_payment_grace = number <= t.grace_interest_payment
        if in_payment_grace or number <= t.grace_interest_charged:
            interest = 0
            if in_payment_grace and t.amortization == "equal_principal":
                deferred += per_installment  # paid with the first installment after the grace
        elif t.amortization == "equal_installments":
            interest = averaged  # equal installments spread the grace's interest instead
        elif number == t.grace_interest_payment + 1:
            interest, deferred = deferred + per_installment, 0
        else:
            interest = per_installment
        principal = _flat_principal(rules, number, interest)
        if principal < 0:
            raise ScheduleError(
                f"installment {number} has negative principal; lower the installment multiple"
            )
        principal = _cap_principal(t, number, principal, repaid)
        # adjustInterestIfLastRepaymentPeriod: interest sums to the contractual total.
        over = charged + interest - total_due
        if over > 0 or number == t.repayments:
            interest -= over
        repaid += principal
        charged += interest
        balance -= principal
        rows.append(_installment(rules, number, principal, interest, balance))
    return _sweep_deferred(rows, deferred)
