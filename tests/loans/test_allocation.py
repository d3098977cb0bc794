"""Worked examples of domain/allocation.py, computed by hand (amounts in cents).

The loan: three monthly installments of 100.00 principal; interest 10.00, 9.00 and 8.00.
Installment 1 runs 2026-01-01..02-01 (31 days), 2 runs 02-01..03-01 (28), 3 runs 03-01..04-01 (31).
"""

from __future__ import annotations

import decimal
from dataclasses import FrozenInstanceError, replace
from datetime import date, timedelta

import pytest

from domain.allocation import (
    Due,
    Portion,
    allocate,
    arrears,
    bucket,
    earned_interest,
    interest_earned_to,
    payoff,
    settle,
)

D1, D2, D3, D4 = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1), date(2026, 4, 1)


def loan(penalty_1: int = 0) -> list[Due]:
    return [
        Due(1, D1, D2, principal=100_00, interest=10_00, penalty=penalty_1),
        Due(2, D2, D3, principal=100_00, interest=9_00),
        Due(3, D3, D4, principal=100_00, interest=8_00),
    ]


def test_a_partial_payment_pays_the_first_installments_interest_then_principal() -> None:
    a = allocate(loan(), 50_00, date(2026, 1, 20))
    assert a.portions == (Portion(1, interest=10_00, principal=40_00),)
    assert (a.overpayment, a.waived, a.closes) == (0, (), False)
    after = settle(loan(), a)
    assert after[0].outstanding("principal") == 60_00 and not after[0].complete
    assert after[1] == loan()[1]


def test_an_overdue_installment_pays_its_penalty_first_then_the_next_installment() -> None:
    # 115.00 on 02-20: installment 1 owes 1.50 penalty + 10.00 + 100.00 = 111.50; the other
    # 3.50 goes to installment 2's interest (penalty, fee, interest, principal within each).
    a = allocate(loan(penalty_1=1_50), 115_00, date(2026, 2, 20))
    assert a.portions == (
        Portion(1, penalty=1_50, interest=10_00, principal=100_00),
        Portion(2, interest=3_50),
    )
    assert (a.total("penalty"), a.total("interest"), a.total("principal")) == (1_50, 13_50, 100_00)
    assert not a.closes
    after = settle(loan(penalty_1=1_50), a)
    assert after[0].complete and after[1].outstanding("interest") == 5_50


def test_a_prepayment_runs_into_the_next_installments() -> None:
    # 120.00 on 01-10: installment 1 in full (110.00), then 9.00 interest and 1.00 principal of 2.
    a = allocate(loan(), 120_00, date(2026, 1, 10))
    assert a.portions == (
        Portion(1, interest=10_00, principal=100_00),
        Portion(2, interest=9_00, principal=1_00),
    )
    assert (a.overpayment, a.waived, a.closes) == (0, (), False)


def test_payoff_mid_period_cuts_the_current_interest_and_waives_later_periods() -> None:
    # On 02-15 installment 1 is fully earned (10.00); installment 2 has run 14 of 28 days:
    # 9.00 * 14/28 = 4.50; installment 3 has not begun: its 8.00 is waived.
    quote = payoff(loan(), date(2026, 2, 15))
    assert (quote.principal, quote.interest, quote.fee, quote.penalty) == (300_00, 14_50, 0, 0)
    assert quote.amount == 314_50
    assert quote.waived == ((2, 4_50), (3, 8_00))
    a = allocate(loan(), 314_50, date(2026, 2, 15))
    assert a.closes and a.overpayment == 0 and a.waived == quote.waived
    assert a.portions[1] == Portion(2, interest=4_50, principal=100_00)
    assert a.portions[2] == Portion(3, principal=100_00)
    after = settle(loan(), a)
    assert all(d.complete for d in after)
    assert [d.interest_waived for d in after] == [0, 4_50, 8_00]


def test_payoff_gives_back_interest_paid_in_advance() -> None:
    # 150.00 on 01-11 pays installment 1 (10.00 interest, 100.00 principal) and then 9.00
    # interest and 31.00 principal of installment 2, none of whose days had begun.
    prepaid = settle(loan(), allocate(loan(), 150_00, date(2026, 1, 11)))
    # On 01-21, 20 of 31 days of installment 1 are earned: 10.00 * 20/31 = 6.45; the other
    # 3.55 and all 9.00 paid on installment 2 are given back against the 169.00 principal left.
    quote = payoff(prepaid, date(2026, 1, 21))
    assert quote.refunded == ((1, 3_55), (2, 9_00))
    assert (quote.principal, quote.interest, quote.amount) == (169_00, 0, 169_00 - 12_55)
    a = allocate(prepaid, quote.amount, date(2026, 1, 21))
    assert a.closes and a.overpayment == 0 and a.refund == 12_55
    assert sum(p.total for p in a.portions) == quote.amount + a.refund
    after = settle(prepaid, a)
    assert all(d.complete for d in after)
    # The member paid 150.00 + 156.45 = 300.00 principal and exactly the 6.45 earned.
    assert sum(d.interest_paid for d in after) == 6_45
    assert sum(d.principal_paid for d in after) == 300_00


def test_payoff_rounds_the_earned_share_once_with_the_products_mode() -> None:
    # 15 of 31 days of 10.00 = 4.8387... -> 4.84; installments 2 and 3 are waived in full.
    quote = payoff(loan(), date(2026, 1, 16))
    assert quote.interest == 4_84 and quote.waived == ((1, 5_16), (2, 9_00), (3, 8_00))
    # A half cent: 3 cents over 2 days, one day elapsed = 1.5 cents.
    due = Due(1, D1, date(2026, 1, 3), principal=100, interest=3)
    assert earned_interest(due, date(2026, 1, 2)) == 2  # HALF_EVEN: 1.5 -> 2
    assert earned_interest(due, date(2026, 1, 2), decimal.ROUND_DOWN) == 1
    assert earned_interest(due, D1) == 0 and earned_interest(due, date(2026, 1, 9)) == 3
    assert interest_earned_to(loan(), date(2026, 3, 1)) == 19_00


def test_an_amount_beyond_the_payoff_is_the_overpayment() -> None:
    a = allocate(loan(), 320_00, date(2026, 2, 15))
    assert a.closes and a.overpayment == 5_50
    assert sum(p.total for p in a.portions) == 314_50


def test_a_payment_just_short_of_the_payoff_waives_nothing() -> None:
    # One cent short: no waiver, so the advance pays installment 3's interest before principal
    # and the loan stays open.
    a = allocate(loan(), 314_49, date(2026, 2, 15))
    assert not a.closes and a.waived == ()
    assert a.portions[2] == Portion(3, interest=8_00, principal=87_49)  # 314.49 - 110 - 109 - 8


def test_a_repayment_must_be_positive() -> None:
    with pytest.raises(ValueError):
        allocate(loan(), 0, D2)


@pytest.mark.parametrize(
    ("days", "expected_bucket"),
    [
        (0, "current"),
        (1, "1-30"),
        (30, "1-30"),
        (31, "31-60"),
        (60, "31-60"),
        (61, "61-90"),
        (90, "61-90"),
        (91, "over_90"),
    ],
)
def test_arrears_age_from_the_oldest_unpaid_due_date(days: int, expected_bucket: str) -> None:
    # Installment 1 falls due 02-01; on the due date itself it is not overdue yet.
    dues = loan(penalty_1=75)
    late = arrears(dues, D2 + timedelta(days=days))
    assert late.days_past_due == days and late.bucket == expected_bucket
    assert bucket(days) == expected_bucket
    if days == 0:
        assert late.overdue_since is None and late.overdue_amount == 0
    elif days < 28:
        assert late.overdue_since == D2
        assert (late.overdue_principal, late.overdue_interest, late.overdue_penalty) == (
            100_00,
            10_00,
            75,
        )


def test_an_installment_from_a_row_is_the_one_its_fields_make() -> None:
    fields = (2, D2, D3, 100_00, 9_00, 5_00, 40, 30_00, 4_00, 1_00, 20, 2_00)
    due = Due.from_row(fields)
    assert due == Due(*fields) and hash(due) == hash(Due(*fields))
    assert due.outstanding("interest") == 3_00 and not due.complete
    assert replace(due, principal_paid=0).principal_paid == 0 and due.principal_paid == 30_00
    with pytest.raises(FrozenInstanceError):
        due.penalty = 0  # type: ignore[misc]
    with pytest.raises(ValueError):
        Due.from_row(fields[:-1])  # a field left out is refused, not defaulted


def test_arrears_sums_each_component_of_every_overdue_installment() -> None:
    dues = [
        Due(1, D1, D2, principal=100_00, interest=10_00, fee=5_00, penalty=70,
            principal_paid=30_00, interest_paid=4_00, fee_paid=1_00, penalty_paid=20),
        Due(2, D2, D3, principal=100_00, interest=9_00, fee=5_00, penalty=40, interest_waived=2_00),
        Due(3, D3, D4, principal=100_00, interest=8_00, fee=5_00),
        Due(4, D4, date(2026, 5, 1), principal=100_00, interest=7_00),
    ]  # fmt: skip
    for on, since, parts in (
        (D2, None, (0, 0, 0, 0)),
        (D3, D2, (70_00, 6_00, 4_00, 50)),
        (D4, D2, (170_00, 13_00, 9_00, 90)),
        (date(2026, 4, 2), D2, (270_00, 21_00, 14_00, 90)),
    ):
        late = arrears(dues, on)
        assert late.overdue_since == since
        assert late.days_past_due == ((on - since).days if since else 0)
        parts_found = (late.overdue_principal, late.overdue_interest, late.overdue_fee,
                       late.overdue_penalty)  # fmt: skip
        assert parts_found == parts
    # A complete installment is never overdue, however old.
    paid = [replace(dues[0], principal_paid=100_00, interest_paid=10_00, fee_paid=5_00,
                    penalty_paid=70), *dues[1:]]  # fmt: skip
    assert arrears(paid, D4).overdue_since == D3


def test_a_paid_installment_is_not_in_arrears_and_a_part_paid_one_is() -> None:
    paid = settle(loan(), allocate(loan(), 110_00, date(2026, 1, 31)))
    assert arrears(paid, date(2026, 2, 20)).days_past_due == 0
    part = settle(loan(), allocate(loan(), 60_00, date(2026, 1, 31)))
    late = arrears(part, date(2026, 2, 20))
    assert late.days_past_due == 19 and late.overdue_principal == 50_00
    assert late.overdue_interest == 0 and late.bucket == "1-30"
