"""Properties of every schedule the engine accepts to make: the principal adds up to the loan,
no balance goes negative, the totals add up, and the installments have the shape their
amortization promises."""

from __future__ import annotations

import decimal
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.money import round_ratio
from domain.schedule import (
    ROUNDING_MODES,
    Schedule,
    ScheduleError,
    ScheduleTerms,
    generate_schedule,
)

MODES = sorted(ROUNDING_MODES)


@st.composite
def schedule_terms(draw: st.DrawFn) -> ScheduleTerms:
    repayments = draw(st.integers(1, 60))
    grace = st.integers(0, max(0, min(3, repayments - 1)))
    scale = draw(st.sampled_from([0, 2, 3]))
    disbursed_on = draw(st.dates(date(2000, 1, 1), date(2040, 12, 31)))
    first = draw(st.none() | st.integers(1, 70).map(lambda d: disbursed_on + timedelta(days=d)))
    return ScheduleTerms(
        principal_minor=draw(st.integers(1, 10**11)),
        scale=scale,
        annual_rate=draw(st.decimals(0, 60, places=3)),
        repayments=repayments,
        disbursed_on=disbursed_on,
        every=draw(st.integers(1, 4)),
        frequency=draw(st.sampled_from(["days", "weeks", "months"])),
        interest_method=draw(st.sampled_from(["declining_balance", "flat"])),
        amortization=draw(st.sampled_from(["equal_installments", "equal_principal"])),
        interest_period=draw(st.sampled_from(["same_as_repayment", "daily"])),
        days_in_year=draw(st.sampled_from(["actual", "360", "364", "365"])),
        days_in_month=draw(st.sampled_from(["actual", "30"])),
        first_repayment_on=first,
        installment_multiple=draw(
            st.sampled_from([Decimal(0), Decimal(0), Decimal(1), Decimal(5)])
        ),
        rounding=draw(st.sampled_from(MODES)),
        grace_principal=draw(grace),
        grace_interest_payment=draw(grace),
        grace_interest_charged=draw(grace),
    )


def generated(terms: ScheduleTerms) -> Schedule | None:
    try:
        return generate_schedule(terms)
    except ScheduleError as exc:
        # Only the combinations the engine documents as bad may be refused.
        assert str(exc) and "\n" not in str(exc)
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule_terms())
def test_principal_balances_and_totals_add_up(terms: ScheduleTerms) -> None:
    schedule = generated(terms)
    if schedule is None:
        return
    items = schedule.installments
    assert 1 <= len(items) <= terms.repayments
    assert schedule.total_principal_minor == terms.principal_minor
    assert schedule.total_due_minor == sum(i.total_minor for i in items)
    assert (
        schedule.total_due_minor == schedule.total_principal_minor + schedule.total_interest_minor
    )
    repaid = 0
    for item in items:
        repaid += item.principal_minor
        assert item.balance_minor == terms.principal_minor - repaid
        assert item.balance_minor >= 0
        assert item.interest_minor >= 0
        assert item.principal_minor >= 0
    assert items[-1].balance_minor == 0
    assert all(i.balance_minor > 0 for i in items[:-1])  # the schedule stops once repaid
    dues = [i.due_date for i in items]
    assert dues == sorted(set(dues)) and dues[0] > terms.disbursed_on
    assert [i.number for i in items] == list(range(1, len(items) + 1))


@settings(max_examples=200, deadline=None)
@given(schedule_terms())
def test_installments_have_the_shape_of_their_amortization(terms: ScheduleTerms) -> None:
    schedule = generated(terms)
    if schedule is None or len(schedule.installments) < 3:
        return
    paying = schedule.installments[terms.grace_principal : -1]
    graced = schedule.installments[: terms.grace_principal]
    assert all(i.principal_minor == 0 for i in graced)  # principal grace pays interest only
    multiple = int(terms.installment_multiple.scaleb(terms.scale))
    interest_graces = terms.grace_interest_payment + terms.grace_interest_charged
    if terms.interest_method == "declining_balance":
        if terms.amortization == "equal_principal":
            assert len({i.principal_minor for i in paying}) <= 1
        elif interest_graces == 0:
            assert len({i.total_minor for i in paying}) <= 1
            if multiple:
                assert all(i.total_minor % multiple == 0 for i in paying)
    elif interest_graces == 0 and terms.grace_principal == 0 and multiple:
        # Flat interest rounded per period can exceed the contractual total (a unit or two spread
        # over more periods, rounded up): the engine caps interest at that total, and a capped
        # installment cannot keep the multiple. Otherwise every paying installment keeps it.
        if len({i.interest_minor for i in paying}) == 1:
            assert all(i.total_minor % multiple == 0 for i in paying)
        else:  # the cap only ever takes interest away from the later installments
            interests = [i.interest_minor for i in paying]
            assert interests == sorted(interests, reverse=True)


@settings(max_examples=200, deadline=None)
@given(schedule_terms())
def test_flat_interest_is_the_contractual_total(terms: ScheduleTerms) -> None:
    if (
        terms.interest_method != "flat"
        or terms.grace_interest_payment
        or terms.grace_interest_charged
    ):
        return
    schedule = generated(terms)
    if schedule is None or len(schedule.installments) < terms.repayments:
        return
    # principal x annual rate x term, the rate per period at 12 digits like Fineract.
    ctx = decimal.Context(prec=12, rounding=terms.rounding)
    if terms.interest_period == "daily":
        per_year = 365 if terms.days_in_year == "actual" else int(terms.days_in_year)
        term = (schedule.installments[-1].due_date - terms.disbursed_on).days
    else:
        per_year = {"weeks": 52, "months": 12}.get(terms.frequency) or (
            365 if terms.days_in_year == "actual" else int(terms.days_in_year)
        )
        term = terms.repayments * terms.every
    rate = ctx.divide(ctx.divide(terms.annual_rate, per_year), 100) * term
    exact = Decimal(terms.principal_minor) * rate
    expected = int(
        exact.quantize(Decimal(1), rounding=terms.rounding, context=decimal.Context(prec=60))
    )
    assert schedule.total_interest_minor == expected


@given(
    st.decimals(-(10**12), 10**12, places=6, allow_nan=False, allow_infinity=False),
    st.sampled_from(MODES),
)
def test_round_ratio_agrees_with_decimal_quantize(value: Decimal, mode: str) -> None:
    expected = value.quantize(Decimal(1), rounding=mode, context=decimal.Context(prec=40))
    assert round_ratio(Fraction(value), mode) == int(expected)
