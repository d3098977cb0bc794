"""The batch journal's lines, without a database: one per currency and kind however many loans
the batch holds (the per-loan rows that sum to them are SQL: tests/daily_loan_job/
test_daily_loan_job.py and test_servicing_sql.py)."""

from __future__ import annotations

from activities.daily_loan_batch import journal_lines
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


def test_one_line_per_currency_and_kind() -> None:
    sums = {("USD", "accrual"): 100, ("KES", "penalty"): 3, ("USD", "penalty"): 12,
            ("KES", "accrual"): 100}  # fmt: skip
    lines, moves = journal_lines(sums, GL)
    usd, kes = GL["USD"], GL["KES"]
    pen = (PENALTIES_RECEIVABLE.number, PENALTY_INCOME.number)
    acc = (INTEREST_RECEIVABLE.number, INTEREST_INCOME.number)
    assert lines == [
        (kes[pen[0]], kes[pen[1]], 3, "KES"),
        (kes[acc[0]], kes[acc[1]], 100, "KES"),
        (usd[pen[0]], usd[pen[1]], 12, "USD"),
        (usd[acc[0]], usd[acc[1]], 100, "USD"),
    ]
    assert moves == {
        usd[pen[0]]: (12, 0), usd[pen[1]]: (0, 12), usd[acc[0]]: (100, 0), usd[acc[1]]: (0, 100),
        kes[pen[0]]: (3, 0), kes[pen[1]]: (0, 3), kes[acc[0]]: (100, 0), kes[acc[1]]: (0, 100),
    }  # fmt: skip


def test_nothing_booked_has_no_lines() -> None:
    assert journal_lines({}, GL) == ([], {})
    assert journal_lines({("USD", "penalty"): 0}, GL) == ([], {})
