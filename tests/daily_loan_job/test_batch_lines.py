"""The batch journal's lines, without a database: one per currency and kind however many loans
the batch holds, and the per-loan rows that sum to them (cash loans and zero amounts post none)."""

from __future__ import annotations

from decimal import Decimal

from activities.daily_loan_batch import journal_lines
from activities.daily_loan_servicing import LoanRow, Serviced
from activities.ledger.chart import (
    INTEREST_INCOME,
    INTEREST_RECEIVABLE,
    PENALTIES_RECEIVABLE,
    PENALTY_INCOME,
)

GL = {
    cur: {gl.number: base + n for n, gl in enumerate(
        (INTEREST_RECEIVABLE, INTEREST_INCOME, PENALTIES_RECEIVABLE, PENALTY_INCOME))}
    for cur, base in (("USD", 10), ("KES", 20))
}  # fmt: skip


def serviced(
    loan_id: int, currency: str, penalty: int, accrual: int, *, cash: bool = False
) -> Serviced:
    return Serviced(
        loan=LoanRow(loan_id=loan_id, currency=currency, accrual=not cash),
        days_past_due=0,
        bucket="current",
        overdue_since=None,
        penalty_exact=Decimal(0),
        penalty_charged=penalty,
        penalty_installment=1 if penalty else None,
        accrual=accrual,
    )


def test_one_line_per_currency_and_kind_and_a_row_per_loan() -> None:
    batch = [
        serviced(1, "USD", 5, 100),
        serviced(2, "KES", 0, 70),
        serviced(3, "USD", 7, 0),
        serviced(4, "USD", 9, 0, cash=True),  # charged on the installment, not booked
        serviced(5, "KES", 3, 30),
    ]
    lines, moves, rows = journal_lines(batch, GL)
    usd, kes = GL["USD"], GL["KES"]
    pen = (PENALTIES_RECEIVABLE.number, PENALTY_INCOME.number)
    acc = (INTEREST_RECEIVABLE.number, INTEREST_INCOME.number)
    assert lines == [
        (kes[pen[0]], kes[pen[1]], 3, "KES"),
        (kes[acc[0]], kes[acc[1]], 100, "KES"),
        (usd[pen[0]], usd[pen[1]], 12, "USD"),
        (usd[acc[0]], usd[acc[1]], 100, "USD"),
    ]
    assert rows == [
        (1, "penalty", 5), (1, "accrual", 100), (2, "accrual", 70), (3, "penalty", 7),
        (5, "penalty", 3), (5, "accrual", 30),
    ]  # fmt: skip
    assert moves == {
        usd[pen[0]]: (12, 0), usd[pen[1]]: (0, 12), usd[acc[0]]: (100, 0), usd[acc[1]]: (0, 100),
        kes[pen[0]]: (3, 0), kes[pen[1]]: (0, 3), kes[acc[0]]: (100, 0), kes[acc[1]]: (0, 100),
    }  # fmt: skip


def test_a_batch_with_nothing_booked_has_no_lines() -> None:
    assert journal_lines([serviced(1, "USD", 4, 0, cash=True)], GL) == ([], {}, [])
